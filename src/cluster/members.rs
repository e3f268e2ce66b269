//! Which nodes are live, and which one owns a customer.
//!
//! Every node says it is alive on a plain NATS subject every [`HEARTBEAT`]; a node not
//! heard from for [`LIVENESS`] is taken as gone, and so is one a forwarded call just
//! failed to reach, until it is heard from again. A customer's owner is the live node
//! with the highest rendezvous hash of (node, tenant, customer): when a node goes, only
//! its customers move, each to the node that ranks next for it.
//!
//! When the live set changes, a node may become the owner of customers whose last
//! decisions another node made. Before it decides for any customer as owner, it waits
//! until it has mirrored the event stream up to where the stream was when it saw the
//! change ([`Members::ready`]), so the contacts a cap counts include the other node's,
//! and a respond finds the decisions it made. (A node that made a decision had the
//! stream store it before it answered.)

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use parking_lot::Mutex;

use super::{Cluster, EVENTS_STREAM};

/// How often a node says it is alive.
pub const HEARTBEAT: Duration = Duration::from_millis(200);
/// A node not heard from for this long is taken as gone.
pub const LIVENESS: Duration = Duration::from_millis(1000);
/// The longest an owner waits for its mirror to catch up before deciding anyway (the
/// stream may be electing a new leader): less than a forwarded call's timeout, so that a
/// waiting owner still answers it.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const ALIVE_SUBJECT: &str = "arbiter.nodes.alive";

pub struct Members {
    me: String,
    state: Mutex<State>,
    /// The event-stream sequence this node must have mirrored before it decides as an
    /// owner (0: nothing to wait for), and how many reads of a newer one are under way.
    ready_at: tokio::sync::watch::Sender<ReadyPoint>,
}

#[derive(Default)]
struct State {
    /// When each other node was last heard from.
    heard: HashMap<String, Instant>,
    /// When a call to a node last failed: it is gone until heard from after that.
    failed: HashMap<String, Instant>,
}

impl State {
    fn is_live(&self, node: &str, heard: Instant, now: Instant) -> bool {
        now.duration_since(heard) < LIVENESS && self.failed.get(node).is_none_or(|f| heard > *f)
    }
}

impl Members {
    pub fn new(me: String) -> Members {
        Members { me, state: Mutex::default(), ready_at: tokio::sync::watch::Sender::new(ReadyPoint::default()) }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// The live nodes, this one included, sorted.
    pub fn live(&self) -> BTreeSet<String> {
        let now = Instant::now();
        let state = self.state.lock();
        let others = state.heard.iter().filter(|(n, h)| state.is_live(n, **h, now)).map(|(n, _)| n.clone());
        others.chain([self.me.clone()]).collect()
    }

    /// The node that owns `customer` of `tenant` now.
    pub fn owner(&self, tenant: &str, customer: &str) -> String {
        let now = Instant::now();
        let state = self.state.lock();
        let others = state.heard.iter().filter(|(n, h)| state.is_live(n, **h, now)).map(|(n, _)| n.as_str());
        let best = others.chain([self.me.as_str()]).max_by_key(|n| (rendezvous(n, tenant, customer), *n));
        best.unwrap_or(&self.me).to_string()
    }

    /// Takes `node` as gone until it is heard from again (a call to it failed).
    pub fn failed(&self, node: &str) {
        self.state.lock().failed.insert(node.to_string(), Instant::now());
    }

    fn heard(&self, node: &str) {
        if node != self.me {
            self.state.lock().heard.insert(node.to_string(), Instant::now());
        }
    }

    /// Waits until this node has mirrored the event stream as far as the last change of
    /// the live set requires (at most [`READY_TIMEOUT`]).
    pub async fn ready(&self, consumed: &tokio::sync::watch::Sender<u64>) {
        let (mut points, mut mirrored) = (self.ready_at.subscribe(), consumed.subscribe());
        let wait = async {
            let target = points.wait_for(|p| p.reading == 0).await.ok()?.seq;
            mirrored.wait_for(|seq| *seq >= target).await.ok()
        };
        if tokio::time::timeout(READY_TIMEOUT, wait).await.is_err() {
            tracing::warn!(consumed = *consumed.borrow(), "deciding before the event mirror caught up");
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct ReadyPoint {
    seq: u64,
    /// Reads of the stream's position under way: owners wait for them.
    reading: u32,
}

/// The rendezvous weight of `node` for a customer: FNV-1a over the three names, mixed.
fn rendezvous(node: &str, tenant: &str, customer: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [node, tenant, customer] {
        for byte in part.bytes().chain([0xff]) {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    // FNV's low bits mix poorly for short keys: a final avalanche (splitmix64's).
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

/// Says this node is alive, hears the others, and sets the catch-up point whenever the
/// live set changes, for as long as the process runs.
pub fn start(cluster: &Arc<Cluster>) {
    let c = cluster.clone();
    cluster.runtime.spawn(async move {
        let mut ticks = tokio::time::interval(HEARTBEAT);
        let mut live = c.members.live();
        loop {
            ticks.tick().await;
            if let Err(e) = c.client.publish(ALIVE_SUBJECT, c.members.me.clone().into()).await {
                tracing::debug!(error = %e, "could not say this node is alive");
            }
            let now = c.members.live();
            if now != live {
                tracing::info!(live = ?now, "the cluster's live nodes changed");
                live = now;
                // Marked as under way at once; read on a task of its own, so that a slow
                // stream never holds back the heartbeat.
                c.members.ready_at.send_modify(|p| p.reading += 1);
                let c = c.clone();
                tokio::spawn(async move {
                    c.set_ready_point().await;
                    c.members.ready_at.send_modify(|p| p.reading -= 1);
                });
            }
        }
    });
    let c = cluster.clone();
    cluster.runtime.spawn(async move {
        loop {
            match c.client.subscribe(ALIVE_SUBJECT).await {
                Ok(mut heard) => {
                    while let Some(message) = heard.next().await {
                        c.members.heard(&String::from_utf8_lossy(&message.payload));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not hear the other nodes"),
            }
            tokio::time::sleep(HEARTBEAT).await;
        }
    });
}

impl Cluster {
    /// After a change of the live set, the event stream's last sequence becomes what this
    /// node must mirror before it decides as an owner; owners wait while it is read.
    async fn set_ready_point(&self) {
        self.members.ready_at.send_modify(|p| p.reading += 1);
        let read = self.last_sequence(EVENTS_STREAM).await;
        if let Err(e) = &read {
            tracing::warn!(error = %e, "could not read the event stream's position");
        }
        self.members.ready_at.send_modify(|p| {
            p.reading -= 1;
            p.seq = p.seq.max(read.unwrap_or(0));
        });
    }

    /// Waits until an owner may decide here ([`Members::ready`]).
    pub async fn ready(&self) {
        self.members.ready(&self.events_consumed).await;
    }

    /// Waits until this node has mirrored everything the event stream holds now: after a
    /// call to a customer's owner failed, before this node decides for the customer.
    pub async fn catch_up_now(&self) {
        self.set_ready_point().await;
        self.ready().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_spread_and_only_a_gone_nodes_customers_move() {
        let nodes = ["a", "b", "c"];
        fn owner<'a>(live: &[&'a str], c: &str) -> &'a str {
            live.iter().copied().max_by_key(|n| (rendezvous(n, "t", c), *n)).unwrap()
        }
        let customers: Vec<String> = (0..3000).map(|i| format!("cust_{i}")).collect();
        let mut counts = HashMap::new();
        for c in &customers {
            *counts.entry(owner(&nodes, c)).or_insert(0) += 1;
            let without_c = owner(&["a", "b"], c);
            if owner(&nodes, c) != "c" {
                assert_eq!(without_c, owner(&nodes, c), "{c} moved though its owner stayed");
            }
        }
        for n in nodes {
            assert!((800..1200).contains(&counts[n]), "{counts:?}");
        }
    }

    #[test]
    fn a_node_is_gone_after_a_failed_call_until_heard_again() {
        let m = Members::new("a".into());
        m.heard("b");
        assert!(m.live().contains("b"));
        m.failed("b");
        assert!(!m.live().contains("b"));
        std::thread::sleep(Duration::from_millis(2));
        m.heard("b");
        assert!(m.live().contains("b"));
        assert_eq!(m.owner("t", "x"), m.owner("t", "x"));
    }
}
