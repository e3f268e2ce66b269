//! Recording a response: one read (the decision, by the position its id names), one
//! acknowledged append to the event log, and the counters once it is durable. It runs on
//! the request's own task, not the tenant's actor, so responses of one tenant are recorded
//! in parallel and share the log's group commits.
//!
//! Idempotency: the key's digest is checked and inserted under the tenant's key lock, in
//! the same step as the append, so two concurrent uses of one key record once. A replay
//! answers with the first response, and only once that one is durable: it waits for a
//! log barrier and reads the record back; if the first write failed (nothing is there),
//! the replay records the response itself.

use super::command::RespondReply;
use super::idempotency::{self, KeyDigest};
use super::interaction::{self, classification_of, resolve_offer, RespondInput, Response};
use super::learning::Learning;
use super::TenantError;
use crate::store::{Storage, StoreError};

/// How often a respond starts over after finding its key taken by a write that then
/// failed (each retry means another failed write: the disk is refusing them).
const ATTEMPTS: usize = 3;

/// Records `input` for `tenant`; resolves once durable.
pub async fn record(
    store: &dyn Storage,
    tenant: &str,
    learning: &Learning,
    input: RespondInput,
) -> Result<RespondReply, TenantError> {
    let key = input.idempotency_key.clone().unwrap_or_default();
    for _ in 0..ATTEMPTS {
        match begin(store, tenant, learning, &input, true)? {
            Begun::Appended(mut appended) => {
                let durable = appended.durable.take().expect("an acknowledged append has a Durable");
                return appended.complete(learning, durable.await);
            }
            Begun::Known(digest) => {
                if let Some(first) = replayed(store, tenant, learning, &digest).await? {
                    return Ok(first);
                }
            }
        }
    }
    Err(TenantError::Unavailable(format!("the response for idempotency key `{key}` could not be recorded; retry")))
}

/// Records a batch (`/respond/bulk`): every new response is appended first, then one log
/// barrier makes them all durable at once — one group commit for the batch. Items whose
/// key is known go the way of `record`.
pub async fn record_all(
    store: &dyn Storage,
    tenant: &str,
    learning: &Learning,
    inputs: Vec<RespondInput>,
) -> Vec<Result<RespondReply, TenantError>> {
    let begun: Vec<(RespondInput, Result<Begun, TenantError>)> = inputs
        .into_iter()
        .map(|input| {
            let begun = begin(store, tenant, learning, &input, false);
            (input, begun)
        })
        .collect();
    let durable = store.events().barrier().await;
    let finishing = begun.into_iter().map(|(input, begun)| {
        let durable = durable.clone();
        async move {
            match begun? {
                // In a cluster, also once the event stream has it.
                Begun::Appended(mut appended) => match (durable, appended.durable.take()) {
                    (Ok(()), Some(replicated)) => {
                        let replicated = replicated.await;
                        appended.complete(learning, replicated)
                    }
                    (durable, _) => appended.complete(learning, durable),
                },
                Begun::Known(_) => record(store, tenant, learning, input).await,
            }
        }
    });
    futures_util::future::join_all(finishing).await
}

/// A respond's first step, which never waits: the response appended, or its key known.
enum Begun {
    /// Boxed: a response is a few hundred bytes, the other variant a digest.
    Appended(Box<Appended>),
    /// The key was recorded before (or a concurrent respond with it came first).
    Known(KeyDigest),
}

/// A response appended to the log, not yet durable.
struct Appended {
    response: Response,
    digest: KeyDigest,
    at: crate::store::eventlog::Position,
    /// When it was recorded (Unix milliseconds), as its log record says.
    recorded_ms: i64,
    /// Its own acknowledgement, unless it is part of a batch that waits for one barrier.
    durable: Option<crate::store::Durable>,
}

impl Appended {
    /// Given whether its write became durable: counts it and answers; if the write failed,
    /// takes its key out again, so a retry with the same key records it (not acknowledged,
    /// so not kept).
    fn complete(
        self: Box<Self>,
        learning: &Learning,
        durable: Result<(), StoreError>,
    ) -> Result<RespondReply, TenantError> {
        match durable {
            Ok(()) => {
                learning.count(&self.response, self.recorded_ms);
                Ok(RespondReply { response: self.response, recorded: true, duplicate: false })
            }
            Err(e) => {
                learning.keys.lock().remove(&self.digest, self.at);
                Err(e.into())
            }
        }
    }
}

/// Appends the response of `input` (`ack`: with its own acknowledgement) unless its key is known.
fn begin(
    store: &dyn Storage,
    tenant: &str,
    learning: &Learning,
    input: &RespondInput,
    ack: bool,
) -> Result<Begun, TenantError> {
    let interaction_id = input.validate()?;
    let key = input.idempotency_key.clone().unwrap_or_default();
    let digest = idempotency::digest(&key);
    if learning.keys.lock().get(&digest, crate::ids::unix_now_millis()).is_some() {
        return Ok(Begun::Known(digest));
    }
    let decision = interaction::find_decision(store, tenant, &interaction_id)?
        .ok_or_else(|| TenantError::NotFound(format!("recommendation `{interaction_id}` not found")))?;
    let offer = resolve_offer(input, &decision)?;
    let response = Response {
        response_id: crate::ids::new_id(),
        interaction_id: decision.id.clone(),
        customer_id: decision.customer_id.clone(),
        offer_id: offer.offer_id.clone(),
        category: offer.category.clone(),
        channel: decision.channel_name.clone(),
        rank: offer.rank,
        outcome: input.outcome.clone(),
        classification: classification_of(&input.outcome),
        control_group: decision.control_group,
        decision_flow_key: decision.decision_flow_key.clone(),
        conversion_value: input.conversion_value,
        timestamp: input.timestamp.clone().unwrap_or_else(crate::ids::now_rfc3339),
        idempotency_key: key,
    };
    let now_ms = crate::ids::unix_now_millis();
    let record = interaction::response_record(tenant, &response, now_ms);
    let mut keys = learning.keys.lock();
    if keys.get(&digest, now_ms).is_some() {
        // A concurrent respond with this key came first: answer with its result.
        return Ok(Begun::Known(digest));
    }
    let (at, durable) = store.events().append(&record, ack)?;
    keys.insert(digest, at, now_ms);
    Ok(Begun::Appended(Box::new(Appended { response, digest, at, recorded_ms: now_ms, durable })))
}

/// The first result recorded under `digest`, once durable; `None` if the key is new, or its
/// first write failed.
async fn replayed(
    store: &dyn Storage,
    tenant: &str,
    learning: &Learning,
    digest: &KeyDigest,
) -> Result<Option<RespondReply>, TenantError> {
    let Some(at) = learning.keys.lock().get(digest, crate::ids::unix_now_millis()) else { return Ok(None) };
    store.events().barrier().await?;
    let first = store.events().read(at)?.and_then(|payload| interaction::read_response(&payload));
    match first {
        Some((t, response, _)) if t == tenant => Ok(Some(RespondReply { response, recorded: true, duplicate: true })),
        _ => {
            learning.keys.lock().remove(digest, at);
            Ok(None)
        }
    }
}
