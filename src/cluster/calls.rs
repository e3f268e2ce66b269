//! Forwarding a customer's `/recommend` or `/respond` to the node that owns the customer,
//! as a NATS request on that node's own subject. The node that took the HTTP request has
//! authenticated it and parsed its body; the owner runs it as if it had taken it, and
//! its answer (status and JSON body) goes back as it is. The NATS subjects are the
//! cluster's own: whoever may publish on `arbiter.call.*` may decide for any tenant, so
//! the NATS servers must admit the arbiter nodes only.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_nats::RequestErrorKind;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::Cluster;

/// How long a forwarded call may take before the owner is taken as gone. A node that
/// died is known at once (NATS has no responder for it); a live owner may be waiting
/// for JetStream while the stream elects a new leader (up to the publish timeout) or for
/// its mirror to catch up, and is not to be taken as gone for that.
const CALL_TIMEOUT: Duration = Duration::from_secs(45);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallOp {
    Recommend,
    Respond,
    /// `POST /journeys/{target}/enroll`: a journey's first steps decide for the customer.
    EnrollJourney,
}

/// A request forwarded to its customer's owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Call {
    pub tenant: String,
    pub op: CallOp,
    /// The query flags the request sent (`explain`, `dryRun`).
    pub explain: bool,
    pub dry_run: bool,
    /// The `Idempotency-Key` header, for a respond.
    pub idempotency_key: Option<String>,
    /// The path's id, for a call on one entity (the journey of an enroll).
    #[serde(default)]
    pub target: Option<String>,
    /// The JSON body, as sent.
    pub body: Vec<u8>,
}

/// The owner's answer: an HTTP status and a JSON body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// How this node answers calls (the API's handlers).
pub type ServeCall = Arc<dyn Fn(Call) -> Pin<Box<dyn Future<Output = Answer> + Send>> + Send + Sync>;

/// Why a call did not get an answer: the owner is to be taken as gone, unless it was
/// this node's connection to NATS that broke (`lost`: the call may be sent again).
#[derive(Debug, thiserror::Error)]
#[error("node `{node}` did not answer: {reason}")]
pub struct CallError {
    pub node: String,
    pub reason: String,
    pub lost: bool,
}

fn subject(node: &str) -> String {
    // Hex, as tenant subjects: a node name may hold `.` or `*`.
    super::tenant_subject("arbiter.call.", node)
}

impl Cluster {
    /// Sends `call` to `node` and waits for its answer.
    pub async fn call(&self, node: &str, call: &Call) -> Result<Answer, CallError> {
        let error = |reason: String| CallError { node: node.to_string(), reason, lost: false };
        let disconnects = || self.disconnects.load(std::sync::atomic::Ordering::Relaxed);
        let connection = disconnects();
        let payload = postcard::to_allocvec(call).map_err(|e| error(e.to_string()))?;
        let request = async_nats::Request::new().payload(payload.into()).timeout(Some(CALL_TIMEOUT));
        let sent = self.client.send_request(subject(node), request);
        // A node that dies with the call in flight never answers, nor does one whose
        // request or answer went with a NATS server that died: given up on as soon as its
        // heartbeats stop, or this node's connection broke, not after the whole timeout.
        let gone = async {
            loop {
                tokio::time::sleep(super::members::HEARTBEAT).await;
                if disconnects() != connection {
                    return true;
                }
                if !self.members.live().contains(node) {
                    return false;
                }
            }
        };
        let reply = tokio::select! {
            reply = sent => reply,
            lost = gone => {
                let reason = if lost { "the connection to NATS broke" } else { "its heartbeats stopped" };
                return Err(CallError { lost, ..error(reason.into()) });
            }
        };
        let reply = reply.map_err(|e| match e.kind() {
            RequestErrorKind::NoResponders => error("it is not connected".into()),
            RequestErrorKind::TimedOut => error(format!("no answer within {} s", CALL_TIMEOUT.as_secs())),
            _ => error(e.to_string()),
        })?;
        postcard::from_bytes(&reply.payload).map_err(|e| error(format!("an unreadable answer: {e}")))
    }

    /// Answers the calls sent to this node with `serve`, each on a task of its own, for
    /// as long as the process runs.
    pub fn serve_calls(self: &Arc<Self>, serve: ServeCall) {
        let c = self.clone();
        self.runtime.spawn(async move {
            loop {
                match c.client.subscribe(subject(c.members.me())).await {
                    Ok(mut calls) => {
                        while let Some(message) = calls.next().await {
                            let (client, serve) = (c.client.clone(), serve.clone());
                            tokio::spawn(async move {
                                let Some(reply) = message.reply else { return };
                                let answer = match postcard::from_bytes::<Call>(&message.payload) {
                                    Ok(call) => serve(call).await,
                                    Err(e) => Answer { status: 400, body: format!("{{\"error\":\"{e}\"}}").into() },
                                };
                                let bytes = postcard::to_allocvec(&answer).unwrap_or_default();
                                if let Err(e) = client.publish(reply, bytes.into()).await {
                                    tracing::warn!(error = %e, "could not answer a forwarded call");
                                }
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not take forwarded calls"),
                }
                tokio::time::sleep(super::members::HEARTBEAT).await;
            }
        });
    }
}
