//! The OpenAPI 3.1 document, generated from the route table (every operation) and each
//! route's [`Contract`] (the serde types its handler parses and serialises), so it can
//! neither miss a route nor drift from the JSON the server reads and writes.
//!
//! Schemas come from `schemars` (JSON Schema 2020-12, which OpenAPI 3.1 uses). Request
//! bodies are described as serde deserialises them (aliases, defaults, unknown fields
//! refused) and responses as serde serialises them, with two generators; a type whose
//! two descriptions differ is published twice, the request one as `<Name>Input`.

use schemars::generate::SchemaSettings;
use schemars::SchemaGenerator;
use serde_json::{json, Map, Value};

use super::routes::{table, Body, Contract, Route};

const COMPONENTS: &str = "#/components/schemas/";

pub fn document() -> Value {
    let settings = SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = "/components/schemas".into();
        s.meta_schema = None;
    });
    let mut requests = settings.clone().for_deserialize().into_generator();
    let mut responses = settings.for_serialize().into_generator();
    let mut patches = Vec::new();
    let mut paths: Map<String, Value> = Map::new();
    for row in table() {
        let contract = row.route.contract();
        let op = operation(row.route, row.path, &row.summary, &contract, &mut requests, &mut responses, &mut patches);
        let entry = paths.entry(row.path.to_string()).or_insert_with(|| json!({}));
        entry[row.method.to_lowercase()] = op;
    }
    let error = responses.subschema_for::<crate::http::error::Envelope>();
    let mut schemas = merge(requests.take_definitions(true), responses.take_definitions(true), &mut paths);
    for schema in schemas.values_mut() {
        tidy_defaults(schema);
    }
    for (name, stored) in patches {
        let patch = patch_schema(&schemas, &name, stored);
        schemas.insert(format!("{name}Patch"), patch);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "arbiter", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Real-time decisioning: offers, rules, flows, recommend and respond."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"}
            },
            "responses": {"Error": {"description": "The error envelope: a stable `code` and a message naming the field",
                "content": {"application/json": {"schema": Value::from(error)}}}}
        }
    })
}

fn operation(
    route: Route,
    path: &str,
    summary: &str,
    contract: &Contract,
    requests: &mut SchemaGenerator,
    responses: &mut SchemaGenerator,
    patches: &mut Vec<(String, &'static [&'static str])>,
) -> Value {
    let mut op = json!({"operationId": route.operation_id(), "summary": summary});
    let mut params: Vec<Value> = path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    params.extend(contract.query.iter().map(|q| {
        let mut schema = json!({"type": q.kind});
        let (low, high) = match q.kind {
            "integer" => ("minimum", "maximum"),
            _ => ("minLength", "maxLength"),
        };
        if let Some((lo, hi)) = q.range {
            schema[low] = lo.into();
            if hi != u64::MAX {
                schema[high] = hi.into();
            }
        }
        json!({"name": q.name, "in": "query", "required": q.required, "description": q.description, "schema": schema})
    }));
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    let takes_body = !matches!(contract.request, Body::None);
    match &contract.request {
        Body::None => {}
        Body::Json(schema) => {
            let schema = Value::from(schema(requests));
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": schema}}});
        }
        Body::Patch(schema, stored) => {
            let name = ref_name(&Value::from(schema(requests))).expect("a PUT body is a named type").to_string();
            let schema = json!({"$ref": format!("{COMPONENTS}{name}Patch")});
            patches.push((name, *stored));
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": schema}}});
        }
        Body::Text(content_type) => {
            op["requestBody"] = json!({"required": true, "content": {*content_type: {"schema": {"type": "string"}}}});
        }
    }
    let mut replies = Map::new();
    for status in contract.statuses {
        replies.insert(status.to_string(), success(*status, &contract.success, responses));
    }
    for status in error_statuses(route, path, takes_body) {
        replies.insert(status.to_string(), json!({"$ref": "#/components/responses/Error"}));
    }
    op["responses"] = Value::Object(replies);
    if route.role().is_some() {
        op["security"] = json!([{"apiKey": []}, {"bearer": []}]);
    }
    op
}

fn success(status: u16, body: &Body, responses: &mut SchemaGenerator) -> Value {
    let description = match status {
        201 => "Created",
        204 => "No content",
        422 => "Every item failed",
        _ => "OK",
    };
    match body {
        Body::None => json!({"description": description}),
        Body::Json(schema) | Body::Patch(schema, _) => json!({"description": description,
            "content": {"application/json": {"schema": Value::from(schema(responses))}}}),
        Body::Text(content_type) => json!({"description": description,
            "content": {*content_type: {"schema": {"type": "string"}}}}),
    }
}

/// The error statuses an operation can answer; each is the error envelope.
fn error_statuses(route: Route, path: &str, takes_body: bool) -> Vec<&'static str> {
    let mut out = Vec::new();
    // Query parameters and path ids are checked too, so every operation may answer 400.
    out.push("400");
    if route.role().is_some() {
        out.extend(["401", "403"]);
    }
    if path.contains('{') || route.role().is_some() {
        out.push("404");
    }
    if matches!(route.contract().request, Body::Patch(..)) {
        out.push("412");
    }
    if takes_body {
        out.extend(["409", "413", "415"]);
    } else if path.contains('{') {
        out.push("409");
    }
    out.extend(["4XX", "500", "5XX"]);
    out
}

/// `$ref: #/components/schemas/Name` → `Name`.
fn ref_name(schema: &Value) -> Option<&str> {
    schema.get("$ref")?.as_str()?.strip_prefix(COMPONENTS)
}

/// The request and response definitions as one `components/schemas`: shared where equal,
/// the request one renamed `<Name>Input` (and its references rewritten) where not.
fn merge(
    mut requests: Map<String, Value>,
    responses: Map<String, Value>,
    paths: &mut Map<String, Value>,
) -> Map<String, Value> {
    let renamed: Vec<String> =
        requests.iter().filter(|(k, v)| responses.get(*k).is_some_and(|r| r != *v)).map(|(k, _)| k.clone()).collect();
    let mut out = responses;
    let rename = |value: &mut Value| rewrite_refs(value, &renamed, "Input");
    for (name, mut schema) in std::mem::take(&mut requests) {
        rename(&mut schema);
        let name = if renamed.contains(&name) { format!("{name}Input") } else { name };
        out.insert(name, schema);
    }
    for (_, item) in paths.iter_mut() {
        for (_, op) in item.as_object_mut().into_iter().flatten() {
            if let Some(body) = op.get_mut("requestBody") {
                rename(body);
            }
        }
    }
    out
}

fn rewrite_refs(value: &mut Value, names: &[String], suffix: &str) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        if let Some(name) = r.strip_prefix(COMPONENTS).filter(|n| names.iter().any(|m| m == n)) {
                            *r = format!("{COMPONENTS}{name}{suffix}");
                        }
                    }
                    (_, v) => rewrite_refs(v, names, suffix),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, names, suffix)),
        _ => {}
    }
}

/// A PUT body: the spec's fields, none required, plus the stored fields a client may echo
/// back from a GET (ignored).
fn patch_schema(schemas: &Map<String, Value>, name: &str, stored: &[&str]) -> Value {
    let spec = schemas.get(&format!("{name}Input")).or_else(|| schemas.get(name)).cloned().unwrap_or_default();
    let mut patch = spec;
    if let Value::Object(map) = &mut patch {
        map.remove("required");
        map.insert("description".into(), json!("The fields to change; the others keep their values."));
        let properties = map.entry("properties").or_insert_with(|| json!({}));
        for field in stored {
            if properties.get(field).is_none() {
                properties[field] = json!({"description": "Sent back from a GET body; ignored."});
            }
        }
    }
    patch
}

/// Removes `default`s a client can never use and validators reject: on required fields
/// (`customerId` is defaulted to "" only so that its absence is reported with the other
/// problems), and `null` beside a `$ref` that does not allow null (a raw `config`).
fn tidy_defaults(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.contains_key("$ref") && map.get("default") == Some(&Value::Null) {
                map.remove("default");
            }
            let required: Vec<String> = map
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
            if let Some(Value::Object(properties)) = map.get_mut("properties") {
                for name in &required {
                    if let Some(Value::Object(p)) = properties.get_mut(name) {
                        p.remove("default");
                    }
                }
            }
            map.values_mut().for_each(tidy_defaults);
        }
        Value::Array(items) => items.iter_mut().for_each(tidy_defaults),
        _ => {}
    }
}
