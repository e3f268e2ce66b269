//! The five endpoints every entity kind has — list, create, get, update (a merge patch)
//! and delete — written once, generic over [`Entity`]. A route-table row
//! (`routes::ENTITIES`) names a kind's path and roles and points at its `Api<E>`.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use hyper::StatusCode;
use serde_json::Value;

use super::routes::{json, Body, Contract, QueryParam, LIST};
use crate::catalog::Entity;
use crate::http::error::ApiError;
use crate::http::pagination::{paginate, Page, Paginated};
use crate::http::response::{json as json_response, no_content, HttpResponse};
use crate::tenant::command::{Create, Delete, Get, List, Patch};
use crate::tenant::TenantHandle;

type Reply = Result<HttpResponse, ApiError>;
type BoxReply<'a> = Pin<Box<dyn Future<Output = Reply> + Send + 'a>>;

/// One of the five operations on an entity kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    List,
    Create,
    Get,
    Update,
    Delete,
}

impl Op {
    pub const ALL: [Op; 5] = [Op::List, Op::Create, Op::Get, Op::Update, Op::Delete];

    pub fn method(self) -> &'static str {
        match self {
            Op::List | Op::Get => "GET",
            Op::Create => "POST",
            Op::Update => "PUT",
            Op::Delete => "DELETE",
        }
    }

    /// Whether it addresses one entity (`…/{id}`) rather than the collection.
    pub fn on_item(self) -> bool {
        matches!(self, Op::Get | Op::Update | Op::Delete)
    }
}

/// An entity kind's endpoints, with the kind erased so the route table can hold them all.
pub trait EntityApi: Sync {
    fn list<'a>(&'a self, t: &'a TenantHandle, page: Page) -> BoxReply<'a>;
    fn create<'a>(&'a self, t: &'a TenantHandle, body: bytes::Bytes) -> BoxReply<'a>;
    fn get<'a>(&'a self, t: &'a TenantHandle, id: String) -> BoxReply<'a>;
    fn update<'a>(
        &'a self,
        t: &'a TenantHandle,
        id: String,
        changes: serde_json::Map<String, Value>,
        if_version: Option<u64>,
    ) -> BoxReply<'a>;
    fn delete<'a>(&'a self, t: &'a TenantHandle, id: String) -> BoxReply<'a>;
    /// What the operation takes and answers, for the OpenAPI document.
    fn contract(&self, op: Op) -> Contract;
}

/// The endpoints of the entity kind `E`.
pub struct Api<E>(PhantomData<fn() -> E>);

impl<E> Api<E> {
    pub const NEW: Api<E> = Api(PhantomData);
}

impl<E: Entity> EntityApi for Api<E> {
    fn list<'a>(&'a self, t: &'a TenantHandle, page: Page) -> BoxReply<'a> {
        Box::pin(async move {
            let items = t.ask(List::<E>::new()).await?;
            json_response(StatusCode::OK, &paginate(&items, E::view_id, &page)?)
        })
    }

    fn create<'a>(&'a self, t: &'a TenantHandle, body: bytes::Bytes) -> BoxReply<'a> {
        Box::pin(async move {
            let spec: E::Spec = crate::model::parse_json(&body)?;
            json_response(StatusCode::CREATED, &t.ask(Create::<E>(spec)).await?)
        })
    }

    fn get<'a>(&'a self, t: &'a TenantHandle, id: String) -> BoxReply<'a> {
        Box::pin(async move { json_response(StatusCode::OK, &t.ask(Get::<E>::new(id)).await?) })
    }

    fn update<'a>(
        &'a self,
        t: &'a TenantHandle,
        id: String,
        changes: serde_json::Map<String, Value>,
        if_version: Option<u64>,
    ) -> BoxReply<'a> {
        Box::pin(async move { json_response(StatusCode::OK, &t.ask(Patch::<E>::new(id, changes, if_version)).await?) })
    }

    fn delete<'a>(&'a self, t: &'a TenantHandle, id: String) -> BoxReply<'a> {
        Box::pin(async move {
            t.ask(Delete::<E>::new(id)).await?;
            Ok(no_content())
        })
    }

    fn contract(&self, op: Op) -> Contract {
        const NONE: &[QueryParam] = &[];
        let (request, statuses, success, query): (Body, &'static [u16], Body, &'static [QueryParam]) = match op {
            Op::List => (Body::None, &[200], json::<Paginated<'static, E::View>>(), LIST),
            Op::Create => (json::<E::Spec>(), &[201], json::<E::View>(), NONE),
            Op::Get => (Body::None, &[200], json::<E::View>(), NONE),
            Op::Update => {
                (Body::Patch(|g| g.subschema_for::<E::Spec>(), E::STORED_FIELDS), &[200], json::<E::View>(), NONE)
            }
            Op::Delete => (Body::None, &[204], Body::None, NONE),
        };
        Contract { request, statuses, success, query }
    }
}
