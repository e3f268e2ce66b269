//! `/channels/{id}/placements`: a channel's placements one at a time. They are part of
//! the channel entity (also writable with `PUT /channels/{id}`); each change here is a
//! patch of the channel made only if nobody changed the channel in between (its version).

use hyper::body::Incoming;
use hyper::Request;
use serde::{Deserialize, Serialize};

use crate::http::body::read_json_body;
use crate::model::parse_json;

use crate::http::error::ApiError;
use crate::http::response::{json as json_response, no_content, HttpResponse};
use crate::model::channel::{Channel, CouplingMode, PlacementSpec, PlacementStatus};
use crate::tenant::command::{Get, Patch};
use crate::tenant::TenantHandle;

type Reply = Result<HttpResponse, ApiError>;

/// `GET /channels/{id}/placements`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Placements {
    pub channel_id: String,
    pub coupling_mode: CouplingMode,
    pub data: Vec<PlacementView>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementView {
    pub key: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub max_slots: u32,
    pub slot_type: String,
    pub status: PlacementStatus,
}

/// `PUT /channels/{id}/placements/{key}`: the placement's fields (its key is the path's).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlacementBody {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub max_slots: Option<u32>,
    #[serde(default)]
    pub slot_type: Option<String>,
    #[serde(default)]
    pub status: Option<PlacementStatus>,
}

fn view(c: &Channel) -> Placements {
    let data = c
        .spec
        .placements
        .iter()
        .map(|p| PlacementView {
            key: p.key(),
            name: p.name.clone(),
            description: p.description.clone(),
            max_slots: p.max_slots,
            slot_type: p.slot_type.clone(),
            status: p.status,
        })
        .collect();
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
    let body: PlacementBody = parse_json(&read_json_body(req, limit).await?)?;
    let mut placements = c.spec.placements.clone();
    let spec = PlacementSpec {
        name: body.name,
        key: Some(key.clone()),
        description: body.description,
        max_slots: body.max_slots.unwrap_or(1),
        slot_type: body.slot_type.unwrap_or_else(|| "banner".to_string()),
        status: body.status.unwrap_or_default(),
    };
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
