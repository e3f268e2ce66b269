//! `arbiter serve`: the server on an embedded store. Options come from flags or the
//! environment; the entry point for tests takes an already-bound listener and a
//! shutdown future, so tests run a real server on port 0 in-process.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::api::handlers::issue_key;
use crate::api::App;
use crate::http::auth::{KeyIndex, KeyRecord, Role};
use crate::store::SledStore;
use crate::tenant::{plugins, Registry};

pub const USAGE: &str = "arbiter serve [--listen ADDR] [--data DIR] [--plugins DIR]
  --listen   address to listen on          (ARBITER_LISTEN,  default 127.0.0.1:8080)
  --data     sled data folder              (ARBITER_DATA,    default ./data)
  --plugins  rule files folder, watched    (ARBITER_PLUGINS, default ./plugins)
  --train-interval-secs  uplift retraining period, 0 = on demand only
                         (ARBITER_TRAIN_INTERVAL_SECS, default 300)
environment:
  ARBITER_TENANT_ID   the default tenant's id (default `default`)
  ARBITER_ADMIN_KEY   the admin key to accept (else one is generated on first run and printed once)
  ARBITER_KEY_PEPPER  secret mixed into stored key hashes (else generated once and kept in the data folder)
  RUST_LOG            log filter (default info)";

/// Uplift models retrain every 5 minutes unless configured otherwise.
pub const DEFAULT_TRAIN_INTERVAL_SECS: u64 = 300;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data: PathBuf,
    pub plugins: PathBuf,
    pub tenant: String,
    pub admin_key: Option<String>,
    pub pepper: Option<String>,
    /// How often uplift models retrain in the background (`None`: on demand only).
    pub train_interval: Option<std::time::Duration>,
}

impl Config {
    /// Flags override the environment, which overrides the defaults.
    pub fn from_args(args: &[String]) -> Result<Config, String> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut listen = env("ARBITER_LISTEN").unwrap_or_else(|| "127.0.0.1:8080".into());
        let mut data = env("ARBITER_DATA").unwrap_or_else(|| "./data".into());
        let mut plugins = env("ARBITER_PLUGINS").unwrap_or_else(|| "./plugins".into());
        let mut train = env("ARBITER_TRAIN_INTERVAL_SECS").unwrap_or_else(|| DEFAULT_TRAIN_INTERVAL_SECS.to_string());
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--listen" => listen = value?.clone(),
                "--data" => data = value?.clone(),
                "--plugins" => plugins = value?.clone(),
                "--train-interval-secs" => train = value?.clone(),
                other => return Err(format!("unknown option {other}")),
            }
        }
        let listen = listen.parse().map_err(|e| format!("--listen `{listen}`: {e}"))?;
        let train: u64 =
            train.parse().map_err(|_| format!("--train-interval-secs `{train}`: expected whole seconds (0 = off)"))?;
        Ok(Config {
            listen,
            data: data.into(),
            plugins: plugins.into(),
            tenant: env("ARBITER_TENANT_ID").unwrap_or_else(|| "default".into()),
            admin_key: env("ARBITER_ADMIN_KEY"),
            pepper: env("ARBITER_KEY_PEPPER"),
            train_interval: (train > 0).then(|| std::time::Duration::from_secs(train)),
        })
    }
}

/// A started server's parts, for the caller to serve and later shut down.
pub struct Started {
    pub app: Arc<App>,
    /// Printed once when a key was generated on first run.
    pub new_admin_key: Option<String>,
    _watcher: Option<notify::RecommendedWatcher>,
}

/// Opens the store, restores tenants, makes sure the default tenant and an admin key
/// exist, and loads and watches the plugins folder.
pub async fn start(config: &Config) -> Result<Started, String> {
    std::fs::create_dir_all(&config.data).map_err(|e| format!("data folder {}: {e}", config.data.display()))?;
    let store = SledStore::open(&config.data).map_err(|e| format!("opening {}: {e}", config.data.display()))?;
    let registry = Registry::start(Arc::new(store)).map_err(|e| e.to_string())?;
    registry.ensure_tenant(&config.tenant).await.map_err(|e| e.to_string())?;
    if let Some(interval) = config.train_interval {
        registry.start_trainer(interval);
    }
    let pepper = pepper(&registry, config).await?;
    let keys = KeyIndex::new(pepper);
    for (_, hash, record) in registry.api_keys().map_err(|e| e.to_string())? {
        if let (Some(hash), Ok(record)) = (from_hex(&hash), serde_json::from_value::<KeyRecord>(record)) {
            keys.insert_hash(hash, record);
        }
    }
    let app = Arc::new(App::new(registry.clone(), keys, config.tenant.clone()));
    let new_admin_key = admin_key(&app, config).await?;
    let watcher = load_plugins(&registry, config).await;
    Ok(Started { app, new_admin_key, _watcher: watcher })
}

/// The pepper: from the environment, else generated on first run and kept in the store.
async fn pepper(registry: &Registry, config: &Config) -> Result<Vec<u8>, String> {
    if let Some(p) = &config.pepper {
        return Ok(p.as_bytes().to_vec());
    }
    const KEY: &[u8] = b"registry/pepper";
    if let Some(p) = registry.store().get(KEY).map_err(|e| e.to_string())? {
        return Ok(p);
    }
    let p = crate::http::auth::generate_key().into_bytes();
    let mut b = crate::store::Batch::new();
    b.put(KEY.to_vec(), p.clone());
    registry.store().write(b).map_err(|e| e.to_string())?.await.map_err(|e| e.to_string())?;
    Ok(p)
}

/// Accepts `ARBITER_ADMIN_KEY` if set; on a first run without one, issues a key and
/// returns it to be printed once.
async fn admin_key(app: &App, config: &Config) -> Result<Option<String>, String> {
    if let Some(key) = &config.admin_key {
        if app.keys.lookup(key).is_none() {
            let record = KeyRecord {
                tenant_id: config.tenant.clone(),
                role: Role::Admin,
                name: "admin (ARBITER_ADMIN_KEY)".into(),
                created_at: crate::ids::now_rfc3339(),
            };
            let hash = app.keys.hash(key);
            let stored = serde_json::to_value(&record).map_err(|e| e.to_string())?;
            let hex = crate::http::auth::to_hex(&hash);
            app.registry.put_api_key(&config.tenant, &hex, &stored).await.map_err(|e| e.to_string())?;
            app.keys.insert_hash(hash, record);
        }
        return Ok(None);
    }
    if !app.keys.is_empty() {
        return Ok(None);
    }
    let (secret, _) = issue_key(app, &config.tenant, Role::Admin, "admin (first run)".into())
        .await
        .map_err(|e| e.message().to_string())?;
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

/// `arbiter serve` from the command line.
pub fn main(args: &[String]) -> std::process::ExitCode {
    let config = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}\n\nusage: {USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let started = match start(&config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let listener = match TcpListener::bind(config.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", config.listen);
                return std::process::ExitCode::FAILURE;
            }
        };
        if let Some(key) = &started.new_admin_key {
            println!("admin API key for tenant `{}` (shown once, store it now): {key}", config.tenant);
        }
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        println!("arbiter listening on http://{addr} (tenant `{}`, data {})", config.tenant, config.data.display());
        match run(started, listener, shutdown_signal()).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
