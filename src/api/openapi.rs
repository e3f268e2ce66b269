//! The OpenAPI 3 document, generated from the route table so it cannot miss a route.

use serde_json::{json, Map, Value};

use super::routes::TABLE;

pub fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for &(method, path, route, summary) in TABLE {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        let mut op = json!({
            "operationId": format!("{route:?}"),
            "summary": summary,
            "responses": {"200": {"description": "OK"}, "4XX": {"$ref": "#/components/responses/Error"}},
        });
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        if route.role().is_some() {
            op["security"] = json!([{"apiKey": []}, {"bearer": []}]);
        }
        entry[method.to_lowercase()] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "arbiter", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Real-time decisioning: offers, rules, flows, recommend and respond."},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"}
            },
            "responses": {"Error": {"description": "The error envelope",
                "content": {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "object",
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "status": {"type": "integer"},
                                   "requestId": {"type": "string"}}}}}}}}}
        }
    })
}
