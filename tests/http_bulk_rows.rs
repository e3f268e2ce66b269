//! 100,000 customer rows in one request, streamed row by row, then decided on.

mod support;

use std::time::Instant;

use serde_json::json;
use support::{customer_schema, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_100k_rows_in_one_request() {
    let server = TestServer::start().await;
    let api = &server.admin;
    let schema = api.create("/api/v1/schemas", &customer_schema()).await["id"].as_str().unwrap().to_string();
    let mut body = String::from("{\"rows\": [");
    for i in 0..100_000 {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            "{{\"customer_id\": \"c{i}\", \"tenureMonths\": {}, \"tier\": \"premium\", \"hasChecking\": true, \
             \"hasSavings\": false, \"hasCreditCard\": {}, \"avgMonthlyBalance\": {}}}",
            i % 120,
            i % 2 == 0,
            i * 3
        ));
    }
    body.push_str("]}");
    let started = Instant::now();
    let path = format!("/api/v1/schemas/{schema}/data");
    let reply = api.send("POST", &path, &[("Content-Type", "application/json")], Some(body.as_bytes())).await;
    let loaded = reply.expect(201);
    assert_eq!(loaded["inserted"], 100_000, "{loaded}");
    eprintln!("100k rows ({} MB) loaded in {:?}", body.len() / 1_000_000, started.elapsed());
    let rows = api.get(&format!("{path}?limit=2&offset=99998")).await.expect(200);
    assert_eq!(rows["total"], 100_000);
    assert_eq!(rows["rows"].as_array().unwrap().len(), 2);
    let one = api.get(&format!("{path}?limit=1")).await.expect(200);
    assert_eq!(one["rows"][0]["customer_id"], json!("c0"));
    server.stop().await;
}
