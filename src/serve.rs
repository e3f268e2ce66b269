//! `arbiter serve`: the server on an embedded store. Options come from flags or the
//! environment ([`ServeArgs`], parsed by clap) into a plain [`Config`]; the entry point
//! for tests takes an already-bound listener and a shutdown future, so tests run a real
//! server on port 0 in-process.

use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::api::handlers::issue_key;
use crate::api::App;
use crate::cluster::{ClusterOptions, ReplicatedStore};
use crate::http::auth::{KeyIndex, KeyRecord, Role};
use crate::store::{SledStore, Storage};
use crate::tenant::{plugins, Registry, TenantError};

/// Uplift models retrain every 5 minutes unless configured otherwise.
pub const DEFAULT_TRAIN_INTERVAL_SECS: u64 = 300;

/// Requests slower than this are logged at warn unless configured otherwise.
pub const DEFAULT_SLOW_REQUEST_MS: u64 = crate::api::SLOW_REQUEST_MS;

/// What `serve` runs with. A plain struct: the command line fills it from [`ServeArgs`],
/// tests build it directly.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data: PathBuf,
    pub plugins: PathBuf,
    pub tenant: String,
    pub admin_key: Option<String>,
    pub pepper: Option<String>,
    /// How often uplift models retrain in the background (`None`: on demand only).
    pub train_interval: Option<Duration>,
    /// Requests that take at least this long are logged at warn.
    pub slow_request: Duration,
    /// Event-log segments last written longer ago than this are dropped.
    pub retention: Duration,
    /// Set: this node shares its configuration with the others over NATS JetStream.
    pub cluster: Option<ClusterOptions>,
}

/// How long decisions are kept, in days, unless configured otherwise.
pub const DEFAULT_RETENTION_DAYS: u64 = 90;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event (colours only on a terminal).
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `arbiter serve`'s options. Flags override the environment, which overrides the defaults.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "RUST_LOG sets the log filter (default info).\n\
On first run a tenant and an admin key are created and the key is printed once; \
ARBITER_ADMIN_KEY=<key> arbiter serve accepts (and stores) that admin key instead.")]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, env = "ARBITER_LISTEN", value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Data folder (sled), created on first run
    #[arg(long, env = "ARBITER_DATA", value_name = "DIR", default_value = "./data")]
    pub data: PathBuf,
    /// Rule files folder, loaded at start and watched
    #[arg(long, env = "ARBITER_PLUGINS", value_name = "DIR", default_value = "./plugins")]
    pub plugins: PathBuf,
    /// Uplift retraining period in seconds; 0 = on demand only
    #[arg(long, env = "ARBITER_TRAIN_INTERVAL_SECS", value_name = "N", default_value_t = DEFAULT_TRAIN_INTERVAL_SECS)]
    pub train_interval_secs: u64,
    /// The default (operator) tenant's id
    #[arg(long = "tenant", env = "ARBITER_TENANT_ID", value_name = "ID", default_value = "default")]
    pub tenant: String,
    /// An admin key to accept (else one is generated on first run and printed once);
    /// prefer the environment variable, which other users cannot see in `ps`
    #[arg(long, env = "ARBITER_ADMIN_KEY", value_name = "KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Secret mixed into stored key hashes (else generated once and kept in the data folder)
    #[arg(long = "key-pepper", env = "ARBITER_KEY_PEPPER", value_name = "SECRET", hide_env_values = true)]
    pub pepper: Option<String>,
    /// Log format on stderr
    #[arg(long, env = "ARBITER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log requests that take at least this many milliseconds at warn
    #[arg(long, env = "ARBITER_SLOW_REQUEST_MS", value_name = "MS", default_value_t = DEFAULT_SLOW_REQUEST_MS)]
    pub slow_request_ms: u64,
    /// Keep logged decisions this many days (whole log segments are dropped after it)
    #[arg(long, env = "ARBITER_RETENTION_DAYS", value_name = "DAYS", default_value_t = DEFAULT_RETENTION_DAYS,
          value_parser = clap::value_parser!(u64).range(1..=36_500))]
    pub retention_days: u64,
    /// Join a cluster: NATS server URLs, comma-separated (nats://h1:4222,nats://h2:4222)
    #[arg(long, env = "ARBITER_CLUSTER", value_name = "URLS", value_delimiter = ',')]
    pub cluster: Vec<String>,
    /// This node's name in the cluster (default: the host name)
    #[arg(long, env = "ARBITER_NODE_ID", value_name = "NAME")]
    pub node_id: Option<String>,
    /// Replicas of the cluster's streams (at most the NATS servers)
    #[arg(long, env = "ARBITER_CLUSTER_REPLICAS", value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(1..=5))]
    pub cluster_replicas: u64,
}

impl ServeArgs {
    pub fn config(&self) -> Config {
        // An empty variable (`ARBITER_ADMIN_KEY=`) means "not set", as it did before flags.
        let set = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        Config {
            listen: self.listen,
            data: self.data.clone(),
            plugins: self.plugins.clone(),
            tenant: set(&Some(self.tenant.clone())).unwrap_or_else(|| "default".into()),
            admin_key: set(&self.admin_key),
            pepper: set(&self.pepper),
            train_interval: (self.train_interval_secs > 0).then(|| Duration::from_secs(self.train_interval_secs)),
            slow_request: Duration::from_millis(self.slow_request_ms),
            retention: Duration::from_secs(self.retention_days * 86_400),
            cluster: (!self.cluster.is_empty()).then(|| ClusterOptions {
                urls: self.cluster.clone(),
                node_id: self.node_id.clone().filter(|n| !n.is_empty()).unwrap_or_else(host_name),
                replicas: self.cluster_replicas as usize,
                retention: Duration::from_secs(self.retention_days * 86_400),
            }),
        }
    }
}

/// A started server's parts, for the caller to serve and later shut down.
pub struct Started {
    pub app: Arc<App>,
    /// Printed once when a key was generated on first run.
    pub new_admin_key: Option<String>,
    _watcher: Option<notify::RecommendedWatcher>,
}

/// Why `serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("data folder {}: {error}", folder.display())]
    DataFolder { folder: PathBuf, error: std::io::Error },
    #[error("opening the store in {}: {error}", folder.display())]
    Store { folder: PathBuf, error: crate::store::StoreError },
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error("the first admin key could not be stored: {0}")]
    AdminKey(String),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// Opens the store, restores tenants, makes sure the default tenant and an admin key
/// exist, and loads and watches the plugins folder.
pub async fn start(config: &Config) -> Result<Started, ServeError> {
    let folder = |error| ServeError::DataFolder { folder: config.data.clone(), error };
    std::fs::create_dir_all(&config.data).map_err(folder)?;
    let store =
        SledStore::open(&config.data).map_err(|error| ServeError::Store { folder: config.data.clone(), error })?;
    let (store, replicated) = join_cluster(Arc::new(store), config).await?;
    let registry = Registry::start(store)?;
    registry.ensure_tenant(&config.tenant).await?;
    if let Some(interval) = config.train_interval {
        registry.start_trainer(interval);
    }
    registry.start_log_maintenance(config.retention);
    registry.start_journeys();
    let pepper = pepper(&registry, config).await?;
    let keys = KeyIndex::new(pepper);
    for (_, hash, record) in registry.api_keys()? {
        if let (Some(hash), Ok(record)) = (from_hex(&hash), serde_json::from_value::<KeyRecord>(record)) {
            keys.insert_hash(hash, record);
        }
    }
    let mut app = App::new(registry.clone(), keys, config.tenant.clone());
    app.slow_request = config.slow_request;
    app.cluster = replicated.as_ref().map(|r| r.cluster().clone());
    let app = Arc::new(app);
    let new_admin_key = admin_key(&app, config).await?;
    if let Some(replicated) = replicated {
        take_part(&app, &replicated);
    }
    let watcher = load_plugins(&registry, config).await;
    Ok(Started { app, new_admin_key, _watcher: watcher })
}

/// In a cluster, the store replicates every shared write; before anything is loaded, the
/// node applies what the cluster has that it has not (a joining or restarted node).
async fn join_cluster(
    local: Arc<dyn Storage>,
    config: &Config,
) -> Result<(Arc<dyn Storage>, Option<ReplicatedStore>), ServeError> {
    let Some(options) = &config.cluster else { return Ok((local, None)) };
    crate::cluster::claim_data_folder(local.as_ref(), &options.node_id)?;
    let cluster = crate::cluster::Cluster::connect(options.clone()).await?;
    let replicated = ReplicatedStore::new(local, cluster).map_err(TenantError::from)?;
    let applied = crate::cluster::catch_up(&replicated).await?;
    // Mirrored into the log before the learned state is restored from it.
    let mirrored = crate::cluster::catch_up_events(&replicated).await?;
    tracing::info!(node = %options.node_id, applied, mirrored, "joined the cluster");
    Ok((Arc::new(replicated.clone()), Some(replicated)))
}

/// Once the tenants are loaded: follows both streams (configuration made live, other
/// nodes' events taken into the learned state) and answers calls for its customers.
fn take_part(app: &Arc<App>, replicated: &ReplicatedStore) {
    let live = app.clone();
    crate::cluster::follow(replicated, Arc::new(move |applied| make_live(&live, applied)));
    let registry = app.registry.clone();
    let on_record: crate::cluster::OnRecord = Arc::new(move |tenant, at, record| {
        if let Some(t) = registry.tenant(tenant) {
            t.learning.apply_mirrored(tenant, at, record);
        }
    });
    crate::cluster::follow_events(replicated, on_record);
    let cluster = replicated.cluster().clone();
    app.registry.set_journey_owner(Arc::new(move |tenant, customer| {
        cluster.members.owner(tenant, customer) == cluster.node_id()
    }));
    let serving = app.clone();
    replicated
        .cluster()
        .take_part(Arc::new(move |call| Box::pin(crate::api::handlers::answer_call(serving.clone(), call))));
}

/// Makes a change another node made live here: new tenants start, API keys are
/// accepted (or revoked), and the tenant's actor takes its records.
fn make_live(app: &App, mut applied: crate::cluster::Applied) {
    use crate::store::keys::{self, Kind};
    use crate::store::Op;
    if applied.ops.iter().any(|op| keys::parse(op.key()).is_none()) {
        if let Err(e) = app.registry.start_stored_tenants() {
            tracing::error!(error = %e, "could not start a tenant another node created");
        }
    }
    let mut tenant = None;
    for op in &applied.ops {
        let Some(k) = keys::parse(op.key()) else { continue };
        if k.kind == Kind::ApiKey {
            let hash = k.parts.first().and_then(|h| from_hex(h));
            match (op, hash) {
                (Op::Put { value, .. }, Some(hash)) => {
                    if let Ok(record) = serde_json::from_slice::<KeyRecord>(value) {
                        app.keys.insert_hash(hash, record);
                    }
                }
                (Op::Delete { .. }, Some(hash)) => {
                    app.keys.remove_hash(&hash);
                }
                _ => {}
            }
        }
        tenant.get_or_insert(k.tenant);
    }
    match tenant.and_then(|t| app.registry.tenant(&t)) {
        Some(t) => {
            let ops = std::mem::take(&mut applied.ops);
            t.notify(crate::tenant::command::Replicated { ops, then: Box::new(move || applied.mark()) });
        }
        // The registry's records, or a tenant that just started from the store.
        None => applied.mark(),
    }
}

/// The machine's host name, the default node id.
fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "arbiter".into())
}

/// The pepper: from the environment, else generated on first run and kept in the store.
async fn pepper(registry: &Registry, config: &Config) -> Result<Vec<u8>, ServeError> {
    if let Some(p) = &config.pepper {
        return Ok(p.as_bytes().to_vec());
    }
    const KEY: &[u8] = b"registry/pepper";
    if let Some(p) = registry.store().get(KEY).map_err(TenantError::from)? {
        return Ok(p);
    }
    let p = crate::http::auth::generate_key().into_bytes();
    let mut b = crate::store::Batch::new();
    b.put(KEY.to_vec(), p.clone());
    registry.store().write(b).map_err(TenantError::from)?.await.map_err(TenantError::from)?;
    Ok(p)
}

/// Accepts `ARBITER_ADMIN_KEY` if set; on a first run without one, issues a key and
/// returns it to be printed once.
async fn admin_key(app: &App, config: &Config) -> Result<Option<String>, ServeError> {
    if let Some(key) = &config.admin_key {
        if app.keys.lookup(key).is_none() {
            let record = KeyRecord {
                tenant_id: config.tenant.clone(),
                role: Role::Admin,
                name: "admin (ARBITER_ADMIN_KEY)".into(),
                created_at: crate::ids::now_rfc3339(),
            };
            let hash = app.keys.hash(key);
            let stored = serde_json::to_value(&record).expect("a key record serialises");
            let hex = crate::http::auth::to_hex(&hash);
            app.registry.put_api_key(&config.tenant, &hex, &stored).await?;
            app.keys.insert_hash(hash, record);
        }
        return Ok(None);
    }
    if !app.keys.is_empty() {
        return Ok(None);
    }
    let (secret, _) = issue_key(app, &config.tenant, Role::Admin, "admin (first run)".into())
        .await
        .map_err(|e| ServeError::AdminKey(e.message().to_string()))?;
    Ok(Some(secret))
}

async fn load_plugins(registry: &Arc<Registry>, config: &Config) -> Option<notify::RecommendedWatcher> {
    if !config.plugins.is_dir() {
        tracing::info!(folder = %config.plugins.display(), "no plugins folder; rule files can still be sent to /api/v1/plugins");
        return None;
    }
    // Watch first, so an edit made while the folder loads is not missed.
    let watcher = match plugins::watch(registry.clone(), config.plugins.clone(), config.tenant.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!("cannot watch {}: {e}; edits need a restart", config.plugins.display());
            None
        }
    };
    match plugins::load_all(registry, &config.plugins, &config.tenant).await {
        Ok(n) => tracing::info!(folder = %config.plugins.display(), files = n, "rule files loaded"),
        Err(e) => tracing::error!("loading rule files: {e}"),
    }
    watcher
}

fn from_hex(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Serves `app` on `listener` until `shutdown`, then flushes and stops the tenants.
pub async fn run(started: Started, listener: TcpListener, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    let app = started.app.clone();
    let handler = move |req| app.clone().handle(req);
    let served = crate::http::serve(listener, shutdown, handler).await;
    started.app.registry.shutdown();
    served
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// `arbiter serve` from the command line. The port is bound before anything else, so a
/// busy port fails before the data folder, the tenant or a first-run key exist (a key
/// created by a run that then exits would never be shown).
pub fn main(args: &ServeArgs) -> ExitCode {
    let config = args.config();
    init_logging(args.log_format);
    let fail = |message: String| {
        match args.log_format {
            LogFormat::Text => eprintln!("error: {message}"),
            LogFormat::Json => tracing::error!("{message}"),
        }
        ExitCode::FAILURE
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async {
        let listener = match TcpListener::bind(config.listen).await {
            Ok(l) => l,
            Err(e) => return fail(listen_error(config.listen, &e)),
        };
        let started = match start(&config).await {
            Ok(s) => s,
            Err(e) => return fail(e.to_string()),
        };
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        if let Some(key) = &started.new_admin_key {
            say(&format!("admin API key for tenant `{}` (shown once, store it now): {key}", config.tenant));
            say("serve keeps this terminal (stop it with Ctrl-C); if the key is lost, \
                 `ARBITER_ADMIN_KEY=<a new secret> arbiter serve` adds that admin key");
        }
        // Last, and on one line: scripts wait for it and may stop reading after it.
        say(&format!(
            "arbiter listening on http://{addr} (tenant `{}`, data {}); stop with Ctrl-C",
            config.tenant,
            config.data.display()
        ));
        match run(started, listener, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e.to_string()),
        }
    })
}

/// A line on stdout; a reader that went away (`| head`) must not stop the server.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

fn listen_error(addr: SocketAddr, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "cannot listen on {addr}: the address is already in use (another arbiter?); \
             stop it or choose another address with --listen or ARBITER_LISTEN"
        ),
        _ => format!("cannot listen on {addr}: {e}"),
    }
}

/// Logs go to stderr: colours only when it is a terminal, JSON lines on request.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}
