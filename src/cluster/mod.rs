//! Scale-out: several arbiter nodes sharing one configuration over NATS JetStream.
//!
//! Every write of configuration (the records behind entities, rule files sent through
//! the API, versions, publishes, rollbacks, tenants, API keys and customer rows) is a
//! [`Batch`](crate::store::Batch) of the embedded store. In a cluster, the node that
//! makes a change publishes its batch to the replicated stream [`CONFIG_STREAM`] first,
//! on the tenant's own subject, with compare-and-set on that subject's last sequence
//! (`Nats-Expected-Last-Subject-Sequence`): a node that has not applied every earlier
//! change of the tenant is refused (409) instead of overwriting it. Once JetStream has
//! stored the batch on a quorum the node writes it to its own store, and every other
//! node applies it from the stream in order ([`follow`]), writes it, and makes it live.
//! The records are the same everywhere, so versions and ids are too.
//!
//! Events — decisions and responses — go to a second replicated stream,
//! [`EVENTS_STREAM`], as they are appended to the node's own log ([`events`]); every
//! other node mirrors them into its log, so each log holds every node's events, and the
//! learned state derived from it (counters, contacts, experiments) converges. Each
//! customer of a tenant has one owner node, by rendezvous hash over the live nodes
//! ([`members`]): `/recommend` and `/respond` for the customer run there, other nodes
//! forward them over NATS ([`calls`]), so contact caps hold across nodes.
//!
//! Module map: [`store`] is the replicating `Storage`; [`follow`] applies the
//! configuration stream; [`events`] publishes and mirrors the event stream; [`members`]
//! knows the live nodes and each customer's owner; [`calls`] forwards requests to owners.

mod calls;
mod events;
mod follow;
mod members;
mod store;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;

pub use calls::{Answer, Call, CallOp, ServeCall};
pub use events::{catch_up_events, follow_events, OnRecord};
pub use follow::{catch_up, follow, Applied};
pub use members::Members;
pub use store::ReplicatedStore;

/// The stream of configuration batches. Subjects: `arbiter.config.{tenant hex}` for a
/// tenant's records, `arbiter.config.registry` for the tenant list and the key pepper.
pub const CONFIG_STREAM: &str = "ARBITER_CONFIG";
const SUBJECT_PREFIX: &str = "arbiter.config.";
pub(super) const REGISTRY_SUBJECT: &str = "arbiter.config.registry";

/// A batch is split into messages of at most this many bytes (NATS refuses payloads over
/// its `max_payload`, 1 MiB by default). Only large row loads are ever split.
const MAX_MESSAGE_BYTES: usize = 512 * 1024;

/// How long a node waits for JetStream to acknowledge a change or an event before
/// refusing it: longer than a NATS server's failover and a stream's leader election
/// (which waits 4–9 s before it starts; 10–12 s were measured here after kill -9 of
/// the server that led the stream).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(20);

/// The stream of decisions and responses. Subjects: `arbiter.events.{tenant hex}`.
pub const EVENTS_STREAM: &str = "ARBITER_EVENTS";
const EVENTS_PREFIX: &str = "arbiter.events.";

/// The node name a data folder was first joined with: its decision ids carry that
/// name's tag, so the folder may not be used under another name.
const NODE_ID_KEY: &[u8] = b"cluster/node-id";

/// Checks that `local` was not joined under another node name, and records the name the
/// first time.
pub fn claim_data_folder(local: &dyn crate::store::Storage, node_id: &str) -> Result<(), ClusterError> {
    match local.get(NODE_ID_KEY)? {
        Some(stored) if stored != node_id.as_bytes() => Err(ClusterError::NodeId {
            stored: String::from_utf8_lossy(&stored).into_owned(),
            given: node_id.to_string(),
        }),
        Some(_) => Ok(()),
        None => {
            let mut b = crate::store::Batch::new();
            b.put(NODE_ID_KEY.to_vec(), node_id.as_bytes().to_vec());
            Ok(local.write(b)?.wait()?)
        }
    }
}

/// How long a follower's pull from a stream waits for messages before it pulls again.
const FOLLOW_EXPIRES: Duration = Duration::from_secs(1);

/// `arbiter serve --cluster`: where the NATS servers are and who this node is.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// NATS server URLs (any of them; the client fails over between them).
    pub urls: Vec<String>,
    /// This node's name, unique in the cluster.
    pub node_id: String,
    /// Replicas of the streams (3 on a cluster of 3 or more NATS servers).
    pub replicas: usize,
    /// How long the event stream keeps decisions and responses (the log's retention).
    pub retention: Duration,
}

/// Why the cluster cannot be joined or used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("could not connect to NATS at {urls}: {error}")]
    Connect { urls: String, error: String },
    #[error("JetStream stream `{stream}`: {error}")]
    Stream { stream: &'static str, error: String },
    #[error("reading the configuration stream: {0}")]
    Follow(String),
    #[error("the local store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("this data folder belongs to cluster node `{stored}`, not `{given}`: start it with --node-id {stored}, or give the new node a data folder of its own")]
    NodeId { stored: String, given: String },
}

/// A connection to the cluster's JetStream, shared by the replicating store and the
/// follower.
pub struct Cluster {
    pub options: ClusterOptions,
    /// This node's tag: the first part of its decision ids (`ids::node_tag`).
    pub tag: u32,
    client: async_nats::Client,
    js: jetstream::Context,
    /// The runtime the publishes run on (writes come from actor threads).
    runtime: tokio::runtime::Handle,
    /// The live nodes and each customer's owner.
    pub members: Members,
    /// The last sequence of the event stream this node has handled (mirrored, or
    /// recognised as its own).
    events_consumed: tokio::sync::watch::Sender<u64>,
    /// How often the connection to NATS was lost: a call in flight then may never be
    /// answered, and is sent again.
    disconnects: Arc<std::sync::atomic::AtomicU64>,
}

impl Cluster {
    /// Connects and makes sure both streams exist with the options' replicas.
    pub async fn connect(options: ClusterOptions) -> Result<Arc<Cluster>, ClusterError> {
        let urls = options.urls.join(",");
        let disconnects = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = disconnects.clone();
        let client = async_nats::ConnectOptions::new()
            .name(format!("arbiter {}", options.node_id))
            .event_callback(move |event| {
                if matches!(event, async_nats::Event::Disconnected) {
                    counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                tracing::info!(%event, "NATS connection");
                std::future::ready(())
            })
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(options.urls.as_slice())
            .await
            .map_err(|e| ClusterError::Connect { urls: urls.clone(), error: e.to_string() })?;
        let js = jetstream::new(client.clone());
        let stream = |name: &str, prefix: &str| jetstream::stream::Config {
            name: name.into(),
            subjects: vec![format!("{prefix}>")],
            num_replicas: options.replicas,
            storage: jetstream::stream::StorageType::File,
            retention: jetstream::stream::RetentionPolicy::Limits,
            ..Default::default()
        };
        // Configuration is kept whole: a joining node replays all of it.
        create_stream(&js, CONFIG_STREAM, stream(CONFIG_STREAM, SUBJECT_PREFIX)).await?;
        let events = jetstream::stream::Config {
            // Events are kept as long as the log keeps them; a node that joins later
            // than that starts from what is left, as a log after retention does.
            max_age: options.retention,
            // A publish retried after a lost acknowledgement is stored once.
            duplicate_window: Duration::from_secs(120),
            ..stream(EVENTS_STREAM, EVENTS_PREFIX)
        };
        create_stream(&js, EVENTS_STREAM, events).await?;
        let tag = crate::ids::set_node_tag(&options.node_id);
        let members = Members::new(options.node_id.clone());
        Ok(Arc::new(Cluster {
            options,
            tag,
            client,
            js,
            runtime: tokio::runtime::Handle::current(),
            members,
            events_consumed: tokio::sync::watch::Sender::new(0),
            disconnects,
        }))
    }

    /// Starts taking part: answers calls forwarded to this node with `serve`, says it is
    /// alive and hears the others. Called once the node's tenants are loaded, since other
    /// nodes forward its customers to it from then on.
    pub fn take_part(self: &Arc<Self>, serve: ServeCall) {
        self.serve_calls(serve);
        members::start(self);
    }

    /// This node's name.
    pub fn node_id(&self) -> &str {
        &self.options.node_id
    }

    /// A stream's last sequence now (what a catch-up must reach).
    async fn last_sequence(&self, stream: &'static str) -> Result<u64, ClusterError> {
        Ok(self.sequences(stream).await?.1)
    }

    /// A stream's first and last sequence now (0 and the last when it holds nothing).
    async fn sequences(&self, stream: &'static str) -> Result<(u64, u64), ClusterError> {
        let error = |e: String| ClusterError::Stream { stream, error: e };
        let mut handle = self.js.get_stream(stream).await.map_err(|e| error(e.to_string()))?;
        let state = &handle.info().await.map_err(|e| error(e.to_string()))?.state;
        let first = if state.messages == 0 { state.last_sequence + 1 } else { state.first_sequence };
        Ok((first, state.last_sequence))
    }
}

type Ordered = jetstream::consumer::pull::Ordered;

/// The next message of a catch-up (which reads up to a sequence it knows is there);
/// `after` names where it is, for the error.
async fn next_within(messages: &mut Ordered, after: u64) -> Result<jetstream::Message, ClusterError> {
    use futures_util::StreamExt;
    match tokio::time::timeout(Duration::from_secs(30), messages.next()).await {
        Ok(Some(Ok(m))) => Ok(m),
        Ok(Some(Err(e))) => Err(ClusterError::Follow(e.to_string())),
        Ok(None) => Err(ClusterError::Follow("the stream ended".into())),
        Err(_) => Err(ClusterError::Follow(format!("no message after sequence {after} in 30 s"))),
    }
}

impl Cluster {
    /// The messages of `stream` under `prefix` from sequence `from` on, in order.
    async fn read_from(&self, stream: &'static str, prefix: &str, from: u64) -> Result<Ordered, ClusterError> {
        use jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
        let error = |e: String| ClusterError::Stream { stream, error: e };
        let handle = self.js.get_stream(stream).await.map_err(|e| error(e.to_string()))?;
        let config = OrderedConfig {
            filter_subject: format!("{prefix}>"),
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from },
            // Pulls expire after a second and idle heartbeats come every half second, so
            // a consumer lost with its NATS server is recreated within about a second (the
            // defaults, 30 s and 15 s, would stall the follower for half a minute).
            max_expires: FOLLOW_EXPIRES,
            ..Default::default()
        };
        let consumer = handle.create_consumer(config).await.map_err(|e| error(e.to_string()))?;
        consumer.messages().await.map_err(|e| error(e.to_string()))
    }
}

/// Creates a stream, or checks it is there. It may be being created by another node at
/// the same moment, and the cluster may still be electing its leaders: retried for a while.
async fn create_stream(
    js: &jetstream::Context,
    stream: &'static str,
    config: jetstream::stream::Config,
) -> Result<(), ClusterError> {
    let mut last = String::new();
    for _ in 0..60 {
        match js.get_or_create_stream(config.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(ClusterError::Stream { stream, error: last })
}

/// A tenant's subject under `prefix`, its id in hex: an id may hold characters that mean
/// something in a subject (`.`, `*`).
fn tenant_subject(prefix: &str, tenant: &str) -> String {
    tenant.bytes().fold(prefix.to_string(), |mut s, b| {
        s.push_str(&format!("{b:02x}"));
        s
    })
}

/// The subject a store key's batch goes to: its tenant's, or the registry's for the
/// records outside any tenant. `None` for node-local records (the cluster bookkeeping).
fn subject_of(key: &[u8]) -> Option<String> {
    if key.starts_with(store::LOCAL_PREFIX) {
        return None;
    }
    match crate::store::keys::parse(key) {
        Some(k) => Some(tenant_subject(SUBJECT_PREFIX, &k.tenant)),
        None => Some(REGISTRY_SUBJECT.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::keys::{key, Kind};

    #[test]
    fn a_tenants_records_share_its_subject_and_the_registry_has_its_own() {
        let offer = subject_of(&key("acme", Kind::Offer, &["o1"])).unwrap();
        let row = subject_of(&key("acme", Kind::Row, &["s", "c1"])).unwrap();
        assert_eq!(offer, row);
        let other = subject_of(&key("a.b c", Kind::Offer, &["o1"])).unwrap();
        assert_ne!(offer, other);
        assert!(!other[SUBJECT_PREFIX.len()..].contains(['.', ' ', '*', '>']), "{other}");
        assert_eq!(subject_of(b"registry/tenants").as_deref(), Some(REGISTRY_SUBJECT));
        assert_eq!(subject_of(b"cluster/consumed"), None);
    }
}
