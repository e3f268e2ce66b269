//! `/channels/{id}/placements`: a channel's placements one at a time (the body of a `PUT`
//! is a placement as the channel holds it). They are part of the channel entity (also
//! writable with `PUT /channels/{id}`); each change here is a patch of the channel made
//! only if nobody changed the channel in between (its version).

use hyper::body::Incoming;
use hyper::Request;
use serde::Serialize;

use crate::http::body::read_json_body;
use crate::model::parse_json;

use crate::http::error::ApiError;
use crate::http::response::{json as json_response, no_content, HttpResponse};
use crate::model::channel::{Channel, CouplingMode, PlacementSpec};
use crate::model::ValidationError;
use crate::tenant::command::{Get, Patch};
use crate::tenant::TenantHandle;

type Reply = Result<HttpResponse, ApiError>;

/// `GET /channels/{id}/placements` and the answer of a `PUT`: each placement with its
/// key resolved.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Placements {
    pub channel_id: String,
    pub coupling_mode: CouplingMode,
    pub data: Vec<PlacementSpec>,
}

fn view(c: &Channel) -> Placements {
    let resolved = |p: &PlacementSpec| PlacementSpec { key: Some(p.key()), ..p.clone() };
    let data = c.spec.placements.iter().map(resolved).collect();
    Placements { channel_id: c.meta.id.clone(), coupling_mode: c.spec.coupling_mode, data }
}

pub async fn list(t: &TenantHandle, channel: String) -> Reply {
    let c = t.ask(Get::<Channel>::new(channel)).await?;
    json_response(hyper::StatusCode::OK, &view(&c))
}

/// Adds the placement, or replaces the one with this key. The channel is looked up
/// before the body is read: an unknown (or another tenant's) channel is a 404 whatever
/// was sent.
pub async fn put(t: &TenantHandle, channel: String, key: String, req: Request<Incoming>, limit: usize) -> Reply {
    let c = t.ask(Get::<Channel>::new(channel.clone())).await?;
    let mut spec: PlacementSpec = parse_json(&read_json_body(req, limit).await?)?;
    if spec.key.as_ref().is_some_and(|k| *k != key) {
        return Err(ValidationError::one("key", format!("must be the path's, `{key}`, or left out")).into());
    }
    // Checked here, not only with the channel: a bad body is a 400 even when the
    // channel changed meanwhile (which the write would refuse with 412).
    let mut errors = Vec::new();
    spec.check("", &mut errors);
    ValidationError::check(errors)?;
    spec.key = Some(key.clone());
    let mut placements = c.spec.placements.clone();
    match placements.iter_mut().find(|p| p.key() == key) {
        Some(p) => *p = spec,
        None => placements.push(spec),
    }
    let updated = patch(t, &c, channel, placements).await?;
    json_response(hyper::StatusCode::OK, &view(&updated))
}

pub async fn delete(t: &TenantHandle, channel: String, key: String) -> Reply {
    let c = t.ask(Get::<Channel>::new(channel.clone())).await?;
    let mut placements = c.spec.placements.clone();
    let before = placements.len();
    placements.retain(|p| p.key() != key);
    if placements.len() == before {
        return Err(ApiError::NotFound(format!("the channel has no placement `{key}`")));
    }
    patch(t, &c, channel, placements).await?;
    Ok(no_content())
}

/// Writes the channel's new placements, if it is still at the version read.
async fn patch(
    t: &TenantHandle,
    read: &Channel,
    id: String,
    placements: Vec<PlacementSpec>,
) -> Result<Channel, ApiError> {
    let mut changes = serde_json::Map::new();
    changes.insert("placements".into(), serde_json::to_value(placements).expect("placements serialise"));
    Ok(t.ask(Patch::<Channel>::new(id, changes, Some(read.meta.version))).await?)
}
