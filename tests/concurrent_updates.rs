//! A PUT's read-merge-write happens on the tenant actor: two concurrent PUTs to
//! different fields of one offer both land, and a conditional PUT (`If-Match`, or
//! `version` in the body) for a version the offer is no longer at is refused with 412.

mod support;

use serde_json::json;
use support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_to_different_fields_both_land() {
    let server = TestServer::start().await;
    let api = server.admin.clone();
    for round in 0..20 {
        let offer = api.create("/api/v1/offers", &json!({"name": format!("o{round}"), "status": "active"})).await;
        let path = format!("/api/v1/offers/{}", offer["id"].as_str().unwrap());
        let (a, b) = (api.clone(), api.clone());
        let (p1, p2) = (path.clone(), path.clone());
        let priority = tokio::spawn(async move { a.put(&p1, &json!({"priority": 91})).await });
        let value = tokio::spawn(async move { b.put(&p2, &json!({"businessValue": 17})).await });
        priority.await.unwrap().expect(200);
        value.await.unwrap().expect(200);
        let stored = api.get(&path).await.expect(200);
        assert_eq!(
            (stored["priority"].as_f64(), stored["businessValue"].as_f64()),
            (Some(91.0), Some(17.0)),
            "round {round}: an acknowledged update was lost: {stored}"
        );
        assert_eq!(stored["version"], 3, "round {round}: {stored}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_put_for_an_old_version_is_refused() {
    let server = TestServer::start().await;
    let api = &server.admin;
    let offer = api.create("/api/v1/offers", &json!({"name": "card", "status": "active"})).await;
    let path = format!("/api/v1/offers/{}", offer["id"].as_str().unwrap());
    assert_eq!(offer["version"], 1);
    // If-Match with the current version applies; the same again is stale.
    let put = |tag: &'static str, body: serde_json::Value| {
        let bytes = serde_json::to_vec(&body).unwrap();
        let path = path.clone();
        async move { api.send("PUT", &path, &[("Content-Type", "application/json"), ("If-Match", tag)], Some(&bytes)).await }
    };
    put("\"1\"", json!({"priority": 60})).await.expect(200);
    let message = put("\"1\"", json!({"priority": 70})).await.expect_error(412, "PRECONDITION_FAILED");
    assert!(message.contains("is at version 2, not 1"), "{message}");
    // `version` in the body says the same: an edited GET body applies once.
    let mut body = api.get(&path).await.expect(200);
    body["priority"] = json!(80);
    api.put(&path, &body).await.expect(200);
    api.put(&path, &body).await.expect_error(412, "PRECONDITION_FAILED");
    assert_eq!(api.get(&path).await.expect(200)["priority"].as_f64(), Some(80.0));
    let bad = put("soon", json!({"priority": 1})).await.expect_error(400, "BAD_REQUEST");
    assert!(bad.contains("If-Match"), "{bad}");
    server.stop().await;
}
