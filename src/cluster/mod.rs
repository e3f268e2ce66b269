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
//! Module map: [`store`] is the replicating `Storage`; [`follow`] applies the stream.

mod follow;
mod store;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;

pub use follow::{catch_up, follow, Applied};
pub use store::ReplicatedStore;

/// The stream of configuration batches. Subjects: `arbiter.config.{tenant hex}` for a
/// tenant's records, `arbiter.config.registry` for the tenant list and the key pepper.
pub const CONFIG_STREAM: &str = "ARBITER_CONFIG";
const SUBJECT_PREFIX: &str = "arbiter.config.";
pub(super) const REGISTRY_SUBJECT: &str = "arbiter.config.registry";

/// A batch is split into messages of at most this many bytes (NATS refuses payloads over
/// its `max_payload`, 1 MiB by default). Only large row loads are ever split.
const MAX_MESSAGE_BYTES: usize = 512 * 1024;

/// How long a node waits for JetStream to acknowledge a change before refusing it.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// `arbiter serve --cluster`: where the NATS servers are and who this node is.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// NATS server URLs (any of them; the client fails over between them).
    pub urls: Vec<String>,
    /// This node's name, unique in the cluster.
    pub node_id: String,
    /// Replicas of the configuration stream (3 on a cluster of 3 or more NATS servers).
    pub replicas: usize,
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
}

/// A connection to the cluster's JetStream, shared by the replicating store and the
/// follower.
pub struct Cluster {
    pub options: ClusterOptions,
    js: jetstream::Context,
    /// The runtime the publishes run on (writes come from actor threads).
    runtime: tokio::runtime::Handle,
}

impl Cluster {
    /// Connects and makes sure the configuration stream exists with the options' replicas.
    pub async fn connect(options: ClusterOptions) -> Result<Arc<Cluster>, ClusterError> {
        let urls = options.urls.join(",");
        let client = async_nats::ConnectOptions::new()
            .name(format!("arbiter {}", options.node_id))
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(options.urls.as_slice())
            .await
            .map_err(|e| ClusterError::Connect { urls: urls.clone(), error: e.to_string() })?;
        let js = jetstream::new(client);
        let config = jetstream::stream::Config {
            name: CONFIG_STREAM.into(),
            subjects: vec![format!("{SUBJECT_PREFIX}>")],
            num_replicas: options.replicas,
            storage: jetstream::stream::StorageType::File,
            // Configuration is kept whole: a joining node replays all of it.
            retention: jetstream::stream::RetentionPolicy::Limits,
            ..Default::default()
        };
        // The stream may be being created by another node at the same moment, and the
        // cluster may still be electing its leaders: retry for a while.
        let mut last = String::new();
        for _ in 0..60 {
            match js.get_or_create_stream(config.clone()).await {
                Ok(_) => return Ok(Arc::new(Cluster { options, js, runtime: tokio::runtime::Handle::current() })),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(ClusterError::Stream { stream: CONFIG_STREAM, error: last })
    }

    /// The stream's last sequence now (what a catch-up must reach).
    async fn last_sequence(&self) -> Result<u64, ClusterError> {
        let mut stream = self.js.get_stream(CONFIG_STREAM).await.map_err(|e| stream_error(e.to_string()))?;
        let info = stream.info().await.map_err(|e| stream_error(e.to_string()))?;
        Ok(info.state.last_sequence)
    }
}

fn stream_error(error: String) -> ClusterError {
    ClusterError::Stream { stream: CONFIG_STREAM, error }
}

/// The subject a store key's batch goes to: its tenant's, or the registry's for the
/// records outside any tenant. `None` for node-local records (the cluster bookkeeping).
fn subject_of(key: &[u8]) -> Option<String> {
    if key.starts_with(store::LOCAL_PREFIX) {
        return None;
    }
    match crate::store::keys::parse(key) {
        // Hex: a tenant id may hold characters that mean something in a subject (`.`, `*`).
        Some(k) => Some(k.tenant.bytes().fold(SUBJECT_PREFIX.to_string(), |mut s, b| {
            s.push_str(&format!("{b:02x}"));
            s
        })),
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
