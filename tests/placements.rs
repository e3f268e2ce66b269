//! Placements and coupling over real HTTP: a channel's placements share the ranked
//! offers out (no offer in two), `atomic` coupling empties them all when one is empty,
//! `partial` ships the filled ones, a flow's `couplingOverride` wins over the channel, and
//! a request that names a placement decides that one.

mod support;

use serde_json::{json, Value};
use support::{flow_spec, tutorial_formula, tutorial_setup, Client, TestServer, Tutorial};

const CARD: &str = "Rewards credit card";
const SAVINGS: &str = "High-yield savings";

/// A channel `web` with three one-slot placements, in this order.
async fn web_channel(api: &Client, coupling: &str) -> String {
    let spec = json!({"name": "web", "channelType": "web", "status": "active", "couplingMode": coupling,
                      "placements": [{"name": "Hero banner"}, {"name": "Sidebar", "key": "side"},
                                     {"name": "Footer", "slotType": "text"}]});
    api.create("/api/v1/channels", &spec).await["id"].as_str().unwrap().to_string()
}

async fn on_web(api: &Client, customer: &str, extra: Value) -> Value {
    let mut body = json!({"customerId": customer, "channel": "web", "decisionFlowKey": "cross-sell"});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    api.post("/api/v1/recommend?explain=true", &body).await.expect(200)
}

fn names(decisions: &Value) -> Vec<&str> {
    decisions.as_array().unwrap().iter().map(|d| d["offerName"].as_str().unwrap()).collect()
}

/// Each placement's key and offer names.
fn placements(d: &Value) -> Vec<(&str, Vec<&str>)> {
    let list = d["placements"].as_array().unwrap_or_else(|| panic!("placements: {d}"));
    list.iter().map(|p| (p["key"].as_str().unwrap(), names(&p["decisions"]))).collect()
}

async fn publish_with_override(api: &Client, t: &Tutorial, coupling: &str) {
    let mut spec = flow_spec("cross-sell", &t.schema, tutorial_formula());
    spec["draftConfig"]["flowConfig"]["couplingOverride"] = json!(coupling);
    let put =
        api.put(&format!("/api/v1/decision-flows/{}", t.flow), &json!({"draftConfig": spec["draftConfig"]})).await;
    put.expect(200);
    api.post("/api/v1/decision-flows/publish", &json!({"id": t.flow})).await.expect(200);
}

#[tokio::test]
async fn placements_share_offers_out_and_coupling_decides_what_ships() {
    let server = TestServer::start().await;
    let api = server.client(Some(support::ADMIN_KEY));
    let t = tutorial_setup(&api).await;
    let web = web_channel(&api, "atomic").await;
    // Four open offers: savings, card, wealth and mortgage all qualify.
    let mut wide = support::tutorial_customer("cust_wide");
    wide["avgMonthlyBalance"] = json!(80_000);
    wide["hasMortgage"] = json!(false);
    api.create(&format!("/api/v1/schemas/{}/data", t.schema), &json!({"rows": [wide]})).await;

    // Enough offers for every placement: each gets one, none twice, and the flat list is
    // all of them in rank order.
    let d = on_web(&api, "cust_wide", json!({})).await;
    let filled = placements(&d);
    assert_eq!(filled.iter().map(|p| p.0).collect::<Vec<_>>(), ["hero_banner", "side", "footer"], "{d}");
    assert!(filled.iter().all(|p| p.1.len() == 1), "{d}");
    let mut shown: Vec<&str> = filled.iter().flat_map(|p| p.1.clone()).collect();
    assert_eq!(names(&d["decisions"]), shown, "the flat list is the placements' offers in order");
    shown.sort();
    shown.dedup();
    assert_eq!(shown.len(), 3, "no offer in two placements: {d}");
    assert_eq!(d["count"], 3);
    assert!(d["meta"].get("channelCoupling").is_none(), "{d}");
    // The receipt says which placement each offer was in.
    let receipt = api.get(&format!("/api/v1/interactions/{}", d["interactionId"].as_str().unwrap())).await.expect(200);
    let logged: Vec<(&str, &str)> = receipt["offers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["offerName"].as_str().unwrap(), o["placement"].as_str().unwrap_or("none")))
        .collect();
    let expected: Vec<(&str, &str)> = filled.iter().map(|(key, offers)| (offers[0], *key)).collect();
    assert_eq!(logged, expected, "{receipt}");

    // cust_42 qualifies for two offers: the footer stays empty and atomic coupling empties
    // the hero and the sidebar too, and says why.
    let d = on_web(&api, "cust_42", json!({})).await;
    assert_eq!(placements(&d), [("hero_banner", vec![]), ("side", vec![]), ("footer", vec![])], "{d}");
    assert_eq!(d["decisions"], json!([]), "{d}");
    assert_eq!(d["meta"]["channelCoupling"], json!([{"channel": "web", "cascaded": true, "emptyPlacement": "footer"}]));
    let removed = d["explanation"]["removed"].as_array().unwrap();
    let coupled: Vec<&str> = removed
        .iter()
        .filter(|r| r["nodeType"] == "coupling")
        .inspect(|r| assert_eq!(r["reason"], "coupling: placement `footer` of channel `web` is empty (atomic)"))
        .map(|r| r["offerName"].as_str().unwrap())
        .collect();
    assert_eq!(coupled, [CARD, SAVINGS], "{d}");
    // Nothing was shown, so nothing was contacted.
    let contacts = api.get("/api/v1/customers/cust_42/contacts").await;
    assert_eq!(contacts.status, 404, "{}", contacts.text());

    // Partial coupling ships the filled placements.
    api.put(&format!("/api/v1/channels/{web}"), &json!({"couplingMode": "partial"})).await.expect(200);
    let d = on_web(&api, "cust_42", json!({})).await;
    assert_eq!(placements(&d), [("hero_banner", vec![CARD]), ("side", vec![SAVINGS]), ("footer", vec![])], "{d}");
    assert_eq!(names(&d["decisions"]), [CARD, SAVINGS]);
    assert_eq!(
        d["meta"]["channelCoupling"],
        json!([{"channel": "web", "cascaded": false, "emptyPlacement": "footer"}])
    );

    // The flow's override wins over the channel, both ways.
    publish_with_override(&api, &t, "atomic").await;
    let d = on_web(&api, "cust_42", json!({})).await;
    assert_eq!(d["decisions"], json!([]), "the flow's atomic override empties a partial channel: {d}");
    api.put(&format!("/api/v1/channels/{web}"), &json!({"couplingMode": "atomic"})).await.expect(200);
    publish_with_override(&api, &t, "partial").await;
    let d = on_web(&api, "cust_42", json!({})).await;
    assert_eq!(names(&d["decisions"]), [CARD, SAVINGS], "the flow's partial override ships: {d}");

    // A request naming a placement (by key or by name) decides that one: one slot, the
    // top offer, no placements list and no coupling.
    for placement in ["side", "Sidebar"] {
        let d = on_web(&api, "cust_42", json!({"placement": placement})).await;
        assert_eq!(names(&d["decisions"]), [CARD], "{d}");
        assert!(d.get("placements").is_none() && d["meta"].get("channelCoupling").is_none(), "{d}");
    }
    // An unknown placement is a warning, and the request's limit applies.
    let d = on_web(&api, "cust_42", json!({"placement": "popup", "limit": 2})).await;
    assert_eq!(names(&d["decisions"]), [CARD, SAVINGS], "{d}");
    assert_eq!(d["meta"]["warnings"][0], "unknown placement `popup` on channel `web`: up to `limit` offers are shown");

    // The placements API: list, replace one, add one, remove one; decisions follow.
    let list = api.get(&format!("/api/v1/channels/{web}/placements")).await.expect(200);
    let keys: Vec<&str> = list["data"].as_array().unwrap().iter().map(|p| p["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["hero_banner", "side", "footer"], "{list}");
    assert_eq!((list["couplingMode"].as_str(), list["data"][2]["slotType"].as_str()), (Some("atomic"), Some("text")));
    let path = |key: &str| format!("/api/v1/channels/{web}/placements/{key}");
    api.put(&path("hero_banner"), &json!({"name": "Hero banner", "maxSlots": 2})).await.expect(200);
    assert_eq!(api.delete(&path("footer")).await.status, 204);
    assert_eq!(api.delete(&path("footer")).await.status, 404);
    let d = on_web(&api, "cust_wide", json!({})).await;
    assert_eq!(placements(&d).iter().map(|p| p.1.len()).collect::<Vec<_>>(), [2, 1], "{d}");
    let added = api.put(&path("popup"), &json!({"name": "Pop-up", "status": "inactive"})).await.expect(200);
    assert_eq!(added["data"].as_array().unwrap().len(), 3, "{added}");
    let d = on_web(&api, "cust_wide", json!({})).await;
    assert_eq!(placements(&d).len(), 2, "an inactive placement is left out: {d}");
    let bad = api.put(&path("popup"), &json!({"name": "Pop-up", "maxSlots": 0})).await;
    assert!(bad.expect_error(400, "BAD_REQUEST").contains("maxSlots"));

    // A channel without placements decides as before.
    let d = support::recommend(&api, "cust_42").await;
    assert!(d.get("placements").is_none(), "{d}");
    server.stop().await;
}

#[tokio::test]
async fn placement_keys_are_unique_within_a_channel() {
    let server = TestServer::start().await;
    let api = server.client(Some(support::ADMIN_KEY));
    let spec = json!({"name": "web", "placements": [{"name": "Hero"}, {"name": "Top", "key": "hero"}]});
    let message = api.post("/api/v1/channels", &spec).await.expect_error(400, "BAD_REQUEST");
    assert!(message.contains("placements[1].key"), "{message}");
    let spec = json!({"name": "web", "placements": [{"name": "Hero", "maxSlots": 51}]});
    let message = api.post("/api/v1/channels", &spec).await.expect_error(400, "BAD_REQUEST");
    assert!(message.contains("placements[0].maxSlots"), "{message}");
    server.stop().await;
}
