//! Entities to storage records and back. Values are the entities' JSON (the same shape
//! the API returns); rows keep the JSON object the client sent. On restart a tenant's
//! catalog is rebuilt kind by kind, in dependency order.

use serde::de::DeserializeOwned;

use crate::catalog::Catalog;
use crate::model::flow::PublishedVersion;
use crate::model::DecisionFlow;
use crate::store::keys::{self, Kind};
use crate::store::{Storage, StoreError};

pub fn row_key(tenant: &str, schema_id: &str, row_key: &str) -> Vec<u8> {
    keys::key(tenant, Kind::Row, &[schema_id, row_key])
}

/// Rebuilds a tenant's catalog from storage. Records that no longer load (a row that
/// does not fit its schema, a rule file with errors) are skipped and described in the
/// returned warnings rather than stopping the tenant from starting.
pub fn load_catalog(store: &dyn Storage, tenant: &str) -> Result<(Catalog, Vec<String>), StoreError> {
    let (mut catalog, mut warnings) = load_entities(store, tenant)?;
    let schemas: Vec<String> = catalog.schemas.iter().map(|s| s.meta.id.clone()).collect();
    load_rows(store, tenant, &mut catalog, &schemas, &mut warnings)?;
    load_plugins(store, tenant, &mut catalog, &mut warnings)?;
    Ok((catalog, warnings))
}

/// The tenant's entities as stored now, on top of `old` (a change another cluster node
/// made): schemas that `old` had keep their loaded rows, new ones are read in, and the
/// rule files sent through the API are read again. Folder rule files are the caller's.
pub fn reload_catalog(store: &dyn Storage, tenant: &str, old: &Catalog) -> Result<(Catalog, Vec<String>), StoreError> {
    let (mut catalog, mut warnings) = load_entities(store, tenant)?;
    let fresh = catalog.keep_tables(old);
    load_rows(store, tenant, &mut catalog, &fresh, &mut warnings)?;
    load_plugins(store, tenant, &mut catalog, &mut warnings)?;
    Ok((catalog, warnings))
}

fn load_entities(store: &dyn Storage, tenant: &str) -> Result<(Catalog, Vec<String>), StoreError> {
    let mut catalog = Catalog::new();
    let mut warnings = Vec::new();
    for schema in entities(store, tenant, Kind::Schema, &mut warnings)? {
        catalog.restore_schema(schema);
    }
    catalog.offers = entities(store, tenant, Kind::Offer, &mut warnings)?;
    catalog.rules = entities(store, tenant, Kind::Rule, &mut warnings)?;
    catalog.channels = entities(store, tenant, Kind::Channel, &mut warnings)?;
    catalog.policies = entities(store, tenant, Kind::Policy, &mut warnings)?;
    catalog.flows = flows(store, tenant, &mut warnings)?;
    catalog.journeys = entities(store, tenant, Kind::Journey, &mut warnings)?;
    catalog.finish_restore();
    Ok((catalog, warnings))
}

/// The stored rows of the schemas named.
fn load_rows(
    store: &dyn Storage,
    tenant: &str,
    catalog: &mut Catalog,
    schemas: &[String],
    warnings: &mut Vec<String>,
) -> Result<(), StoreError> {
    for schema in schemas {
        for (key, value) in store.scan_prefix(&keys::sub_prefix(tenant, Kind::Row, &[schema]))? {
            let row = serde_json::from_slice::<serde_json::Value>(&value).ok();
            match row.map(|row| catalog.restore_row(schema, &row)) {
                Some(Ok(())) => {}
                Some(Err(e)) => warnings.push(format!("row {}: {e}", String::from_utf8_lossy(&key))),
                None => warnings.push(format!("unreadable row record {}", String::from_utf8_lossy(&key))),
            }
        }
    }
    Ok(())
}

/// The rule files sent through the API (stored; the folder's are not).
fn load_plugins(
    store: &dyn Storage,
    tenant: &str,
    catalog: &mut Catalog,
    warnings: &mut Vec<String>,
) -> Result<(), StoreError> {
    for (key, value) in store.scan_prefix(&keys::prefix(tenant, Kind::Plugin))? {
        let name = keys::last_component(&key).unwrap_or_default();
        let source = String::from_utf8_lossy(&value).into_owned();
        if let Err(diags) = catalog.put_plugin(&name, &source) {
            warnings.push(format!("rule file {name} no longer checks ({} diagnostics); not loaded", diags.len()));
        }
    }
    Ok(())
}

/// Flow records with their version records attached (keys `flow/{id}/v/{n}` sort in
/// version order).
fn flows(store: &dyn Storage, tenant: &str, warnings: &mut Vec<String>) -> Result<Vec<DecisionFlow>, StoreError> {
    let mut flows: Vec<DecisionFlow> = Vec::new();
    for (key, value) in store.scan_prefix(&keys::prefix(tenant, Kind::Flow))? {
        let parts = keys::parse(&key).map(|k| k.parts).unwrap_or_default();
        let loaded = match parts.as_slice() {
            [_] => serde_json::from_slice(&value).map(|f| flows.push(f)),
            [id, _, _] => serde_json::from_slice::<PublishedVersion>(&value).map(|v| {
                if let Some(f) = flows.iter_mut().find(|f| &f.meta.id == id) {
                    f.published_versions.push(std::sync::Arc::new(v));
                }
            }),
            _ => Ok(()),
        };
        if let Err(e) = loaded {
            warnings.push(format!("unreadable record {}: {e}", String::from_utf8_lossy(&key)));
        }
    }
    Ok(flows)
}

fn entities<T: DeserializeOwned>(
    store: &dyn Storage,
    tenant: &str,
    kind: Kind,
    warnings: &mut Vec<String>,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for (key, value) in store.scan_prefix(&keys::prefix(tenant, kind))? {
        match serde_json::from_slice(&value) {
            Ok(entity) => out.push(entity),
            Err(e) => warnings.push(format!("unreadable record {}: {e}", String::from_utf8_lossy(&key))),
        }
    }
    Ok(out)
}
