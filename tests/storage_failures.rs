//! Acknowledged means durable and not acknowledged means not visible, also when the disk
//! fails: writes refused at once and writes whose flush fails change nothing that is
//! served, and a response whose write failed is not remembered as a duplicate.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use arbiter::demo;
use arbiter::engine::RecommendRequest;
use arbiter::http::ApiError;
use arbiter::model::parse_json;
use arbiter::model::Offer;
use arbiter::store::fault::FaultyStore;
use arbiter::store::SledStore;
use arbiter::tenant::command::{Create, List};
use arbiter::tenant::interaction::RespondInput;
use arbiter::tenant::{RecommendOptions, Registry, TenantHandle};

async fn setup() -> (Arc<Registry>, Arc<FaultyStore>, Arc<TenantHandle>) {
    let store = Arc::new(FaultyStore::new(Arc::new(SledStore::temporary().unwrap())));
    let registry = Registry::start(store.clone()).unwrap();
    let t = registry.ensure_tenant("default").await.unwrap();
    demo::send_tutorial(&t, None, demo::FLOW).await.unwrap();
    (registry, store, t)
}

async fn offer_names(t: &TenantHandle) -> Vec<String> {
    t.ask(List::<Offer>::new()).await.unwrap().into_iter().map(|o| o.spec.name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_flush_fails_is_not_visible() {
    let (registry, store, t) = setup().await;
    for switch in [&store.fail_writes, &store.fail_flushes] {
        switch.store(true, Ordering::SeqCst);
        let offer = parse_json(br#"{"name": "Travel insurance", "status": "active", "priority": 99}"#).unwrap();
        let err = t.ask(Create::<Offer>(offer)).await.unwrap_err();
        assert_eq!(ApiError::from(err).status().as_u16(), 507);
        assert!(registry.store().degraded().is_some(), "health says degraded while writes fail");
        switch.store(false, Ordering::SeqCst);
        assert!(!offer_names(&t).await.contains(&"Travel insurance".to_string()), "the failed write is not visible");
        let d = t.recommend(&demo::request(), RecommendOptions::default()).unwrap();
        assert_eq!(d.count, 2, "decisions are unchanged: {:?}", d.decisions);
    }
    // Once the disk is back, the same change goes through.
    let offer = parse_json(br#"{"name": "Travel insurance", "status": "active", "priority": 99}"#).unwrap();
    t.ask(Create::<Offer>(offer)).await.unwrap();
    assert!(offer_names(&t).await.contains(&"Travel insurance".to_string()));
    assert_eq!(registry.store().degraded(), None, "healthy again without a restart");
    registry.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_whose_write_fails_can_be_retried() {
    let (registry, store, t) = setup().await;
    let req = RecommendRequest { ..demo::request() };
    let d = t.recommend(&req, RecommendOptions::default()).unwrap();
    let input = RespondInput {
        customer_id: "cust_42".into(),
        recommendation_id: Some(d.recommendation_id.clone()),
        rank: Some(1),
        outcome: "convert".into(),
        idempotency_key: Some("retry-me".into()),
        ..RespondInput::default()
    };
    store.fail_flushes.store(true, Ordering::SeqCst);
    let err = t.respond(input.clone()).await.unwrap_err();
    assert_eq!(ApiError::from(err).status().as_u16(), 507);
    store.fail_flushes.store(false, Ordering::SeqCst);
    let reply = t.respond(input.clone()).await.unwrap();
    assert!(!reply.duplicate, "the failed attempt left no idempotency record: {reply:?}");
    assert!(reply.recorded);
    let replay = t.respond(input).await.unwrap();
    assert!(replay.duplicate);
    assert_eq!(replay.response.response_id, reply.response.response_id);
    registry.shutdown();
}

/// A batch of responses shares one barrier: when its sync fails, every item fails and none
/// is remembered, so the retried batch records them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_sync_fails_can_be_retried_whole() {
    let (registry, store, t) = setup().await;
    let d = t.recommend(&demo::request(), RecommendOptions::default()).unwrap();
    let inputs: Vec<RespondInput> = (0..3)
        .map(|i| RespondInput {
            customer_id: "cust_42".into(),
            recommendation_id: Some(d.recommendation_id.clone()),
            rank: Some(1),
            outcome: "click".into(),
            idempotency_key: Some(format!("batch-{i}")),
            ..RespondInput::default()
        })
        .collect();
    store.fail_flushes.store(true, Ordering::SeqCst);
    for result in t.respond_all(inputs.clone()).await {
        assert_eq!(ApiError::from(result.unwrap_err()).status().as_u16(), 507);
    }
    store.fail_flushes.store(false, Ordering::SeqCst);
    let replies: Vec<_> = t.respond_all(inputs.clone()).await.into_iter().map(Result::unwrap).collect();
    assert!(replies.iter().all(|r| r.recorded && !r.duplicate), "{replies:?}");
    let again: Vec<_> = t.respond_all(inputs).await.into_iter().map(Result::unwrap).collect();
    assert!(again.iter().all(|r| r.duplicate), "the second batch replays the first: {again:?}");
    registry.shutdown();
}
