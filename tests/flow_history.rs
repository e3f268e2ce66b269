//! A flow's history does not weigh on reading or changing it: GET returns the draft and
//! the live version (not every version), so a flow read back can be PUT back however
//! many versions it has, and `/versions` pages through them.

mod support;

use serde_json::json;
use support::{customer_schema, flow_spec, tutorial_formula, TestServer};

#[tokio::test]
async fn many_versions_read_back_put_back_and_page() {
    let server = TestServer::start().await;
    let api = &server.admin;
    let schema = api.create("/api/v1/schemas", &customer_schema()).await;
    let flow = api
        .create("/api/v1/decision-flows", &flow_spec("history", schema["id"].as_str().unwrap(), tutorial_formula()))
        .await;
    let id = flow["id"].as_str().unwrap().to_string();
    const VERSIONS: usize = 60;
    for n in 0..VERSIONS {
        api.post("/api/v1/decision-flows/publish", &json!({"id": id, "notes": format!("v{}", n + 1)}))
            .await
            .expect(200);
    }
    let path = format!("/api/v1/decision-flows/{id}");
    let reply = api.get(&path).await;
    let got = reply.expect(200);
    assert_eq!(got["versionCount"], VERSIONS, "{got}");
    assert_eq!(got["liveVersion"]["version"], VERSIONS);
    assert!(got.get("publishedVersions").is_none(), "GET no longer carries every version");
    let one_version = serde_json::to_vec(&got["liveVersion"]).unwrap().len();
    assert!(reply.body.len() < 4 * one_version, "GET is {} bytes for a {one_version}-byte version", reply.body.len());
    // The whole GET body goes back as a PUT.
    api.put(&path, &got).await.expect(200);
    // And the versions page, oldest first.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = cursor.as_ref().map_or(String::new(), |c| format!("&cursor={c}"));
        let page = api.get(&format!("/api/v1/decision-flows/versions?id={id}&limit=25{query}")).await.expect(200);
        seen.extend(page["versions"].as_array().unwrap().iter().map(|v| v["version"].as_u64().unwrap()));
        assert_eq!(page["pagination"]["total"], VERSIONS);
        match page["pagination"]["cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, (1..=VERSIONS as u64).collect::<Vec<_>>());
    server.stop().await;
}
