//! One small function per endpoint. Each parses its input (errors name the field),
//! calls the tenant, and serialises the reply.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::entity::EntityApi;
use super::routes::{Op, Route, ENTITIES};
use super::App;
use crate::catalog::{FlowCandidate, LoadMode};
use crate::cluster::{Answer, Call, CallOp};
use crate::engine::RecommendRequest;
use crate::http::auth::{generate_key, to_hex, KeyRecord, Role};
use crate::http::body::{read_json_body, JsonRowStream};
use crate::http::error::ApiError;
use crate::http::pagination::{query_param, Page};
use crate::http::response::{bytes, json as json_response, no_content, HttpResponse};
use crate::http::router::Params;
use crate::learn::uplift::Learner;
use crate::model::{parse_json, FieldError, ValidationError};
use crate::tenant::command as c;
use crate::tenant::interaction::{outcome_types, RespondInput};
use crate::tenant::{measure, views};
use crate::tenant::{RecommendOptions, TenantHandle};

type Reply = Result<HttpResponse, ApiError>;

/// Authenticates (where the route needs it) and runs the route's handler.
pub async fn dispatch(app: &Arc<App>, route: Route, params: Params, req: Request<Incoming>) -> Reply {
    let Some(role) = route.role() else { return public(app, route, &params) };
    let (key, tenant) = authorize(app, role, &req).inspect_err(|e| auth_failed(&req, e))?;
    let id = || params.get("id").unwrap_or_default().to_string();
    match route {
        Route::WhoAmI => ok(&WhoAmI { tenant_id: key.tenant_id.clone(), role: key.role, name: key.name.clone() }),
        Route::CreateTenant => create_tenant(app, &key, req).await,
        Route::CreateKey => create_key(app, &key, req).await,
        Route::Entity(kind, op) => entity(ENTITIES[kind].api, op, &tenant, id(), req, app.body_limit).await,
        Route::InsertRows => load_rows(&tenant, id(), req, app.data_limit, LoadMode::InsertOrIgnore).await,
        Route::UpsertRows => load_rows(&tenant, id(), req, app.data_limit, LoadMode::Upsert).await,
        Route::Rows => rows(&tenant, id(), &req).await,
        Route::Publish => publish(app, &tenant, req).await,
        Route::Simulate => {
            let input: crate::tenant::simulate::SimulateInput = body(req, app.body_limit).await?;
            ok(&tenant.simulate(input).await?)
        }
        Route::Versions => versions(&tenant, &req).await,
        Route::Rollback => rollback(app, &tenant, req).await,
        Route::Plugins => ok(&tenant.ask(c::Plugins).await?),
        Route::Plugin => ok(&tenant.ask(c::Plugin(name_of(&params))).await?),
        Route::PutPlugin => put_plugin(&tenant, name_of(&params), req, app.body_limit).await,
        Route::CheckPlugin => check_plugin(&tenant, name_of(&params), req, app.body_limit).await,
        Route::DeletePlugin => {
            tenant.ask(c::DeletePlugin { name: name_of(&params), from_disk: false }).await?;
            Ok(no_content())
        }
        Route::Recommend => recommend(app, &tenant, req).await,
        Route::Respond => respond(app, &tenant, req).await,
        Route::RespondBulk => respond_bulk(&tenant, req, app.body_limit).await,
        Route::OutcomeTypes => ok(&outcome_types()),
        Route::ExperimentResults => experiment_results(&tenant, id()),
        Route::CustomerContacts => {
            let found = views::customer_contacts(&tenant.learning, &id());
            // The id is not echoed: another tenant's customer ids are not ours to confirm.
            ok(&found.ok_or_else(|| ApiError::NotFound("no contacts are recorded for this customer".into()))?)
        }
        Route::PolicyConflicts => ok(&tenant.ask(c::AnalyzePolicies).await?),
        Route::Placements => super::placements::list(&tenant, id()).await,
        Route::PutPlacement => {
            let key = params.get("key").unwrap_or_default().to_string();
            super::placements::put(&tenant, id(), key, req, app.body_limit).await
        }
        Route::DeletePlacement => {
            super::placements::delete(&tenant, id(), params.get("key").unwrap_or_default().to_string()).await
        }
        Route::CustomerSuppressions => {
            // Every live flow compiles all of the tenant's active policies: any one tells.
            let snapshot = tenant.snapshot.load();
            let flow = snapshot.flows.values().next().map(|f| &**f);
            let found = views::customer_suppressions(&tenant.learning, flow, &id());
            ok(&found
                .ok_or_else(|| ApiError::NotFound("no contacts or outcomes are recorded for this customer".into()))?)
        }
        Route::CustomerInteractions => {
            let page = Page::from_query(req.uri().query())?;
            let found = tenant.customer_interactions(&id(), page.limit, page.cursor.as_deref())?;
            ok(&found.ok_or_else(|| ApiError::NotFound("no logged decisions for this customer".into()))?)
        }
        Route::Interaction => {
            let found = tenant.interaction(&id())?;
            ok(&found.ok_or_else(|| ApiError::NotFound(format!("interaction `{}` not found", id())))?)
        }
        Route::ReplayInteraction => ok(&tenant.replay(id()).await?),
        Route::EnrollJourney => enroll(app, &tenant, id(), req).await,
        Route::JourneyEnrollments => {
            let customer = query_param(req.uri().query(), "customerId");
            ok(&tenant.journeys.enrollments(&id(), customer.as_deref())?)
        }
        Route::TestJourney => {
            let b: JourneyTestBody = body(req, app.body_limit).await?;
            let customer = b.customer()?;
            ok(&tenant.journeys.test(&*tenant, &id(), &customer, &b.events)?)
        }
        Route::Models => {
            let flows: Vec<_> = tenant.snapshot.load().flows.values().cloned().collect();
            let data =
                flows.iter().map(|f| measure::summary(f, tenant.learning.uplift_models(&f.key).as_deref())).collect();
            ok(&ModelList { data })
        }
        Route::Model => {
            let flow = live_flow(&tenant, &id())?;
            ok(&measure::model_summary(&flow, tenant.learning.uplift_models(&flow.key).as_deref()))
        }
        Route::TrainModel => train_model(tenant, id()).await,
        Route::ModelUplift => model_uplift(&tenant, id(), &req),
        Route::Metrics if key.tenant_id != app.default_tenant => Err(ApiError::Forbidden(
            "metrics cover every tenant: only the operator tenant's admin keys may read them".into(),
        )),
        Route::VersionConfig => {
            let version = params.get("version").unwrap_or_default();
            let version = version.parse::<u32>().map_err(|_| {
                ApiError::BadRequest(format!("version: expected a version number in the path, got `{version}`"))
            })?;
            ok(&tenant.ask(c::VersionConfig { flow_id: id(), version }).await?)
        }
        Route::ModelQini => model_qini(tenant, id()).await,
        Route::Health | Route::Metrics | Route::OpenApi | Route::Console | Route::ConsoleAsset => {
            public(app, route, &params)
        }
    }
}

/// The caller's key (at least `role`) and its tenant.
fn authorize(app: &App, role: Role, req: &Request<Incoming>) -> Result<(KeyRecord, Arc<TenantHandle>), ApiError> {
    let key = app.keys.authenticate(req.headers())?;
    key.require(role)?;
    let tenant = app
        .registry
        .tenant(&key.tenant_id)
        .ok_or_else(|| ApiError::Forbidden(format!("tenant `{}` is not available", key.tenant_id)))?;
    Ok((key, tenant))
}

/// A refused key is logged at warn for operators (a probe, a rotated key, a wrong role);
/// the reason is the message the caller got, which never contains the presented key.
fn auth_failed(req: &Request<Incoming>, e: &ApiError) {
    let request_id = req.extensions().get::<crate::http::RequestId>().map(|r| r.0.as_str()).unwrap_or_default();
    let what = if e.status() == StatusCode::UNAUTHORIZED { "authentication failed" } else { "access refused" };
    tracing::warn!(
        method = %req.method(), path = req.uri().path(), status = e.status().as_u16(), reason = e.to_string(),
        request_id, "{what}"
    );
}

fn name_of(params: &Params) -> String {
    params.get("name").unwrap_or_default().to_string()
}

fn public(app: &App, route: Route, params: &Params) -> Reply {
    match route {
        Route::Console => Ok(super::console::page()),
        Route::ConsoleAsset => super::console::asset(params.get("asset").unwrap_or_default()),
        Route::Metrics => {
            app.metrics.set_tenants(app.registry.tenant_ids().len() as i64);
            app.metrics.set_event_log_syncs(app.registry.store().events().syncs());
            let text = app.metrics.render();
            Ok(bytes(StatusCode::OK, crate::http::metrics::CONTENT_TYPE, text.into()))
        }
        Route::OpenApi => ok(&super::openapi::document()),
        _ => {
            let storage = app.registry.store().degraded();
            ok(&Health { status: if storage.is_some() { "degraded" } else { "ok" }, storage })
        }
    }
}

fn ok<T: serde::Serialize + ?Sized>(value: &T) -> Reply {
    json_response(StatusCode::OK, value)
}

fn created<T: serde::Serialize + ?Sized>(value: &T) -> Reply {
    json_response(StatusCode::CREATED, value)
}

/// Reads and parses a JSON body; errors name the field.
async fn body<T: DeserializeOwned>(req: Request<Incoming>, limit: usize) -> Result<T, ApiError> {
    let bytes = read_json_body(req, limit).await?;
    Ok(parse_json(&bytes)?)
}

/// An entity kind's endpoint: the input parsed here, the rest is the kind's `EntityApi`.
async fn entity(
    api: &dyn EntityApi,
    op: Op,
    t: &TenantHandle,
    id: String,
    req: Request<Incoming>,
    limit: usize,
) -> Reply {
    match op {
        Op::List => api.list(t, Page::from_query(req.uri().query())?).await,
        Op::Create => api.create(t, read_json_body(req, limit).await?).await,
        Op::Get => api.get(t, id).await,
        // PUT changes the fields given and keeps the rest, as the platform does. The merge
        // is the actor's; `If-Match: "<version>"` (or `version` in the body) makes it
        // conditional: 412 when the entity has moved on.
        Op::Update => {
            let if_version = if_match(&req)?;
            let changes: Value = body(req, limit).await?;
            let Value::Object(changes) = changes else {
                return Err(ApiError::BadRequest("the body must be a JSON object of the fields to change".into()));
            };
            api.update(t, id, changes, if_version).await
        }
        Op::Delete => api.delete(t, id).await,
    }
}

/// The version an `If-Match` header names (`"3"`, `3` or `W/"3"`); 400 for anything else.
fn if_match(req: &Request<Incoming>) -> Result<Option<u64>, ApiError> {
    let Some(value) = req.headers().get(hyper::header::IF_MATCH) else { return Ok(None) };
    let text = value.to_str().unwrap_or_default().trim();
    let tag = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    tag.parse()
        .map(Some)
        .map_err(|_| ApiError::BadRequest(format!("If-Match: expected the entity's version, e.g. \"3\", got `{text}`")))
}

async fn load_rows(t: &TenantHandle, schema_id: String, req: Request<Incoming>, limit: usize, mode: LoadMode) -> Reply {
    // Rows are cut from the body stream one at a time and sent as raw JSON; the actor
    // parses each against the schema, so no JSON tree of the whole body is ever held.
    let mut stream = JsonRowStream::new(req, limit)?;
    let mut rows = Vec::new();
    while let Some(row) = stream.next_raw().await? {
        rows.push(row);
    }
    created(&t.ask(c::LoadRows { schema_id, rows, mode }).await?)
}

async fn rows(t: &TenantHandle, schema_id: String, req: &Request<Incoming>) -> Reply {
    let query = req.uri().query();
    let number = |name: &str, default: usize, max: usize| -> Result<usize, ApiError> {
        match query_param(query, name) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n <= max => Ok(n),
                _ => Err(ApiError::BadRequest(format!("{name}: must be a whole number up to {max}, got `{v}`"))),
            },
        }
    };
    let limit = number("limit", 50, 500)?.max(1);
    let offset = number("offset", 0, usize::MAX)?;
    ok(&t.ask(c::Rows { schema_id, limit, offset }).await?)
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishBody {
    id: String,
    #[serde(default)]
    notes: Option<String>,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollbackBody {
    id: String,
    version: u32,
    #[serde(default)]
    notes: Option<String>,
}

async fn publish(app: &App, t: &TenantHandle, req: Request<Incoming>) -> Reply {
    let b: PublishBody = body(req, app.body_limit).await?;
    let flow = t.ask(c::Publish { id: b.id, notes: b.notes }).await?;
    app.metrics.record_publish();
    ok(&flow)
}

async fn rollback(app: &App, t: &TenantHandle, req: Request<Incoming>) -> Reply {
    let b: RollbackBody = body(req, app.body_limit).await?;
    let flow = t.ask(c::Rollback { id: b.id, version: b.version, notes: b.notes }).await?;
    app.metrics.record_publish();
    ok(&flow)
}

async fn versions(t: &TenantHandle, req: &Request<Incoming>) -> Reply {
    let id = query_param(req.uri().query(), "id")
        .ok_or_else(|| ApiError::BadRequest("id: the flow id is required (?id=...)".into()))?;
    let page = Page::from_query(req.uri().query())?;
    let after = match page.cursor {
        None => None,
        Some(c) => Some(c.parse::<u32>().map_err(|_| {
            ApiError::BadRequest(format!("cursor: expected a version number (pagination.cursor), got `{c}`"))
        })?),
    };
    ok(&t.ask(c::Versions { flow_id: id, limit: page.limit, after }).await?)
}

/// A rule file is sent as text. A rejected file answers 400 with every diagnostic.
async fn put_plugin(t: &TenantHandle, name: String, req: Request<Incoming>, limit: usize) -> Reply {
    let source = rule_file(&name, req, limit).await?;
    ok(&t.ask(c::PutPlugin { name, source, from_disk: false }).await?)
}

/// Checks a rule file as `PUT` would, installing nothing: 200 with `ok` and every
/// diagnostic whether or not the file is clean (`arbiter check --server`).
async fn check_plugin(t: &TenantHandle, name: String, req: Request<Incoming>, limit: usize) -> Reply {
    let source = rule_file(&name, req, limit).await?;
    ok(&t.ask(c::CheckPlugin { name, source }).await?)
}

/// A rule file's name (from the path) and its text body.
async fn rule_file(name: &str, req: Request<Incoming>, limit: usize) -> Result<String, ApiError> {
    if !name.ends_with(".rules") || name.contains('/') || name.len() > 200 {
        return Err(ApiError::BadRequest(format!("name: `{name}` must be a file name ending in .rules")));
    }
    let raw = text_body(req, limit).await?;
    String::from_utf8(raw.to_vec()).map_err(|_| ApiError::BadRequest("the rule file must be UTF-8".into()))
}

/// A non-JSON body (a rule file), bounded by `limit`.
async fn text_body(req: Request<Incoming>, limit: usize) -> Result<bytes::Bytes, ApiError> {
    crate::http::body::read_body(req, limit).await
}

async fn recommend(app: &App, t: &TenantHandle, req: Request<Incoming>) -> Reply {
    let flag = |name| query_param(req.uri().query(), name).is_some_and(|v| v == "true" || v == "1");
    let (explain, dry_run) = (flag("explain"), flag("dryRun"));
    let bytes = read_json_body(req, app.body_limit).await?;
    let r: RecommendRequest = parse_json(&bytes)?;
    let call = || Call {
        tenant: t.id.to_string(),
        op: CallOp::Recommend,
        explain,
        dry_run,
        idempotency_key: None,
        target: None,
        body: bytes.to_vec(),
    };
    if let Some(answer) = forward(app, &t.id, &r.customer_id, call).await {
        return answer;
    }
    decide(app, t, r, explain, dry_run).await
}

/// `/recommend` on the node that owns the customer.
async fn decide(app: &App, t: &TenantHandle, r: RecommendRequest, explain: bool, dry_run: bool) -> Reply {
    let decision = match candidate_flow(&r, dry_run)? {
        Some(which) => {
            // Checked before the compile, which a bad request should not cost.
            r.validate()?;
            let key = r.decision_flow_key.clone().unwrap_or_default();
            let flow = t.ask(c::CompileCandidate { flow: key, which }).await?;
            t.dry_run(&flow, &r, explain)?
        }
        None => {
            let (decision, replicated) = t.recommend_logged(&r, RecommendOptions { explain, dry_run })?;
            if let Some(replicated) = replicated {
                replicated.await.map_err(crate::tenant::TenantError::from)?;
            }
            decision
        }
    };
    if !decision.dry_run {
        app.metrics.record_decision(&decision.decision_flow_key);
    }
    ok(&decision)
}

/// In a cluster, runs a customer's request on the node that owns the customer: the
/// owner's answer when that is another node, `None` to run it here. An owner that does
/// not answer is taken as gone and the next one tried; this node runs it once it is
/// the owner (after its mirror of the event stream caught up), or after three tries.
async fn forward(app: &App, tenant: &str, customer: &str, call: impl FnOnce() -> Call) -> Option<Reply> {
    let cluster = app.cluster.as_ref()?;
    if customer.trim().is_empty() {
        // Refused here, with the other problems of the body.
        return None;
    }
    let (mut make, mut built, mut failed) = (Some(call), None, false);
    for _ in 0..3 {
        let owner = cluster.members.owner(tenant, customer);
        if owner == cluster.node_id() {
            break;
        }
        let call: &Call = match &mut built {
            Some(call) => call,
            None => built.insert(make.take()?()),
        };
        if call.body.len() > MAX_FORWARDED {
            return Some(Err(ApiError::PayloadTooLarge(format!(
                "in a cluster, a body forwarded to the customer's node may be at most {} KiB; this one is {} bytes",
                MAX_FORWARDED / 1024,
                call.body.len()
            ))));
        }
        match cluster.call(&owner, call).await {
            Ok(answer) => return Some(Ok(answered(answer))),
            // Sent again: the owner may have decided already (a second decision), and a
            // respond is recorded once per idempotency key.
            Err(e) if e.lost => tracing::warn!(error = %e, "forwarding to a customer's owner again"),
            Err(e) => {
                tracing::warn!(error = %e, "forwarding to a customer's owner failed; taking it as gone");
                cluster.members.failed(&owner);
                failed = true;
            }
        }
    }
    if failed {
        // The gone owner's last events must be mirrored here first.
        cluster.catch_up_now().await;
    } else {
        cluster.ready().await;
    }
    None
}

/// The largest body or answer forwarded between nodes: NATS refuses messages over its
/// `max_payload` (1 MiB by default), and a call carries a little more than its body.
const MAX_FORWARDED: usize = 900 * 1024;

fn answered(answer: Answer) -> HttpResponse {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    bytes(status, "application/json", answer.body.into())
}

/// Runs a request another node forwarded to this one, the customer's owner (the other
/// node authenticated it and parsed its body).
pub async fn answer_call(app: Arc<App>, call: Call) -> Answer {
    let reply = match app.registry.tenant(&call.tenant) {
        None => Err(ApiError::NotFound(format!("tenant `{}` is not on this node yet", call.tenant))),
        Some(t) => {
            if let Some(cluster) = &app.cluster {
                cluster.ready().await;
            }
            match call.op {
                CallOp::Recommend => match parse_json::<RecommendRequest>(&call.body) {
                    Ok(r) => decide(&app, &t, r, call.explain, call.dry_run).await,
                    Err(e) => Err(e.into()),
                },
                CallOp::Respond => match parse_json::<RespondInput>(&call.body) {
                    Ok(input) => record_response(app.cluster.as_deref(), &t, input, call.idempotency_key).await,
                    Err(e) => Err(e.into()),
                },
                CallOp::EnrollJourney => match parse_json::<EnrollBody>(&call.body).map(EnrollBody::customer) {
                    Ok(Ok(customer)) => enroll_here(&t, call.target.as_deref().unwrap_or_default(), &customer).await,
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(e.into()),
                },
            }
        }
    };
    let answer = answer_of(reply.unwrap_or_else(|e| e.into_response(&crate::ids::new_id()))).await;
    if answer.body.len() <= MAX_FORWARDED {
        return answer;
    }
    let e = ApiError::PayloadTooLarge(format!(
        "the answer ({} bytes) is larger than one node may send another ({} KiB): ask for fewer offers, or without explain",
        answer.body.len(),
        MAX_FORWARDED / 1024
    ));
    answer_of(e.into_response(&crate::ids::new_id())).await
}

async fn answer_of(response: HttpResponse) -> Answer {
    let status = response.status().as_u16();
    let body = http_body_util::BodyExt::collect(response.into_body()).await.map(|b| b.to_bytes()).unwrap_or_default();
    Answer { status, body: body.to_vec() }
}

/// The flow a dry run names in its body instead of the live one: `flowVersion` or
/// `draft: true`. Either one without `?dryRun=true` is refused, since a draft or a past
/// version never makes a decision that counts.
fn candidate_flow(r: &RecommendRequest, dry_run: bool) -> Result<Option<FlowCandidate>, ApiError> {
    let which = match (r.flow_version, r.draft == Some(true)) {
        (Some(_), true) => {
            return Err(ValidationError::one("draft", "give flowVersion or draft: true, not both").into());
        }
        (Some(n), false) => FlowCandidate::Version(n),
        (None, true) => FlowCandidate::Draft,
        (None, false) => return Ok(None),
    };
    let field = if r.flow_version.is_some() { "flowVersion" } else { "draft" };
    if !dry_run {
        return Err(ValidationError::one(field, "is only accepted with ?dryRun=true").into());
    }
    if r.decision_flow_key.as_deref().is_none_or(|k| k.trim().is_empty()) {
        return Err(ValidationError::one("decisionFlowKey", "is required").into());
    }
    Ok(Some(which))
}

/// A live flow named by id or key in the path; 404 otherwise.
fn live_flow(t: &TenantHandle, id: &str) -> Result<Arc<crate::engine::CompiledFlow>, ApiError> {
    t.live_flow(id).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no published decision flow with id or key `{id}` (models exist per published flow)"
        ))
    })
}

/// From the aggregates kept as decisions and outcomes happen: no scan of the log.
fn experiment_results(t: &TenantHandle, id: String) -> Reply {
    let flow = live_flow(t, &id)?;
    let conversions = crate::tenant::interaction::conversion_mask(&flow);
    ok(&measure::experiment_results(&flow, t.learning.experiments.totals(&flow.key, conversions)))
}

async fn train_model(t: Arc<TenantHandle>, id: String) -> Reply {
    let flow = live_flow(&t, &id)?;
    let summary =
        tokio::task::spawn_blocking(move || t.train_uplift(&flow).map(|m| measure::model_summary(&flow, Some(&m))))
            .await
            .map_err(|e| ApiError::internal("uplift training", &e))?
            .map_err(crate::tenant::TenantError::from)?;
    ok(&summary)
}

async fn model_qini(t: Arc<TenantHandle>, id: String) -> Reply {
    let flow = live_flow(&t, &id)?;
    let curves = tokio::task::spawn_blocking(move || t.uplift_curves(&flow))
        .await
        .map_err(|e| ApiError::internal("the Qini curves", &e))?
        .map_err(crate::tenant::TenantError::from)?;
    ok(&curves)
}

fn model_uplift(t: &TenantHandle, id: String, req: &Request<Incoming>) -> Reply {
    let flow = live_flow(t, &id)?;
    let query = req.uri().query();
    let customer = query_param(query, "customerId")
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| ApiError::BadRequest("customerId: is required (?customerId=...)".into()))?;
    // The platform's default is the T-learner; `chosen` is what decisions use.
    let learner = match query_param(query, "method").as_deref() {
        None => Some(Learner::TLearner),
        Some("chosen") => None,
        Some(name) => Some(Learner::parse(name).ok_or_else(|| {
            ApiError::BadRequest(format!("method: `{name}` is not one of t_learner, x_learner, dr_learner, chosen"))
        })?),
    };
    let models = t.learning.uplift_for(&flow);
    ok(&measure::customer_uplift(&flow, models.as_deref(), &customer, learner))
}

async fn respond(app: &App, t: &TenantHandle, req: Request<Incoming>) -> Reply {
    let header_key = idempotency_header(&req);
    let bytes = read_json_body(req, app.body_limit).await?;
    let input: RespondInput = parse_json(&bytes)?;
    let call = || Call {
        tenant: t.id.to_string(),
        op: CallOp::Respond,
        explain: false,
        dry_run: false,
        idempotency_key: header_key.clone(),
        target: None,
        body: bytes.to_vec(),
    };
    if let Some(answer) = forward(app, &t.id, &input.customer_id, call).await {
        return answer;
    }
    record_response(app.cluster.as_deref(), t, input, header_key).await
}

/// `POST /journeys/{id}/enroll`, on the node that owns the customer (its first steps
/// decide for the customer, and its later ones run there).
async fn enroll(app: &App, t: &TenantHandle, journey: String, req: Request<Incoming>) -> Reply {
    let bytes = read_json_body(req, app.body_limit).await?;
    let customer = parse_json::<EnrollBody>(&bytes)?.customer()?;
    let call = || Call {
        tenant: t.id.to_string(),
        op: CallOp::EnrollJourney,
        explain: false,
        dry_run: false,
        idempotency_key: None,
        target: Some(journey.clone()),
        body: bytes.to_vec(),
    };
    if let Some(answer) = forward(app, &t.id, &customer, call).await {
        return answer;
    }
    enroll_here(t, &journey, &customer).await
}

async fn enroll_here(t: &TenantHandle, journey: &str, customer: &str) -> Reply {
    let reply = t.journeys.enroll(t, journey, customer).await?;
    let status = if reply.enrolled { StatusCode::CREATED } else { StatusCode::OK };
    json_response(status, &reply)
}

/// `/respond` on the node that owns the customer.
async fn record_response(
    cluster: Option<&crate::cluster::Cluster>,
    t: &TenantHandle,
    mut input: RespondInput,
    header_key: Option<String>,
) -> Reply {
    if input.idempotency_key.is_none() {
        input.idempotency_key = header_key;
    }
    let reply = match cluster.filter(|_| names_foreign(&input)) {
        None => t.respond(input).await?,
        Some(cluster) => match t.respond(input.clone()).await {
            // Another node's decision, not mirrored here yet: once the mirror has all
            // the stream holds now (that node had the stream store it before it answered).
            Err(crate::tenant::TenantError::NotFound(_)) => {
                cluster.catch_up_now().await;
                t.respond(input).await?
            }
            reply => reply?,
        },
    };
    let status = if reply.duplicate { StatusCode::OK } else { StatusCode::CREATED };
    json_response(status, &reply)
}

/// Whether a respond names a decision another node of the cluster made.
fn names_foreign(input: &RespondInput) -> bool {
    let id = input.recommendation_id.as_deref().or(input.interaction_id.as_deref()).unwrap_or_default();
    crate::tenant::interaction::DecisionId::parse(id).is_some_and(|d| d.is_foreign())
}

fn idempotency_header(req: &Request<Incoming>) -> Option<String> {
    req.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string)
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    /// Each item is a `/respond` body; items are parsed one by one, so one bad item fails alone.
    #[schemars(with = "Vec<RespondInput>", length(min = 1, max = 1000))]
    outcomes: Vec<Value>,
}

/// Items are recorded one by one; a failed item does not stop the others. 200 when any
/// succeeded, 422 when all failed.
async fn respond_bulk(t: &TenantHandle, req: Request<Incoming>, limit: usize) -> Reply {
    let b: BulkBody = body(req, limit).await?;
    if b.outcomes.is_empty() || b.outcomes.len() > 1000 {
        return Err(
            ValidationError::one("outcomes", format!("must hold 1 to 1000 items, got {}", b.outcomes.len())).into()
        );
    }
    let mut errors = Vec::new();
    let mut results = Vec::new();
    // Items are parsed one by one (a bad one fails alone); the good ones are recorded as
    // one batch, so their appends share group commits.
    let mut inputs = Vec::new();
    let mut positions = Vec::new();
    for (i, item) in b.outcomes.iter().enumerate() {
        match crate::model::parse_value::<RespondInput>(&format!("outcomes[{i}]"), item) {
            Ok(input) => {
                inputs.push(input);
                positions.push(i);
            }
            Err(e) => errors.push(BulkError { index: i, error: ApiError::from(e).message().to_string() }),
        }
    }
    for (i, outcome) in positions.into_iter().zip(t.respond_all(inputs).await) {
        match outcome {
            Ok(reply) => results.push(reply),
            Err(e) => errors.push(BulkError { index: i, error: ApiError::from(e).message().to_string() }),
        }
    }
    errors.sort_by_key(|e| e.index);
    let status = if results.is_empty() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let reply =
        BulkReply { processed: b.outcomes.len(), succeeded: results.len(), failed: errors.len(), errors, results };
    json_response(status, &reply)
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantBody {
    /// 1-64 letters, digits, `-` or `_`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    id: String,
    #[serde(default)]
    name: Option<String>,
}

/// Operators (admin keys of the default tenant) create tenants; the reply carries the
/// new tenant's first admin key, shown this once.
async fn create_tenant(app: &App, key: &KeyRecord, req: Request<Incoming>) -> Reply {
    if key.tenant_id != app.default_tenant {
        return Err(ApiError::Forbidden("only admin keys of the operator tenant may create tenants".into()));
    }
    let b: TenantBody = body(req, app.body_limit).await?;
    let valid =
        !b.id.is_empty() && b.id.len() <= 64 && b.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(ValidationError(vec![FieldError::new("id", "must be 1-64 letters, digits, - or _")]).into());
    }
    if app.registry.tenant(&b.id).is_some() {
        return Err(ApiError::Conflict(format!("tenant `{}` already exists", b.id)));
    }
    app.registry.ensure_tenant(&b.id).await?;
    let (secret, record) = issue_key(app, &b.id, Role::Admin, b.name.unwrap_or_else(|| "admin".into())).await?;
    created(&NewTenant { id: b.id, api_key: secret, key: record })
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyBody {
    name: String,
    role: Role,
}

async fn create_key(app: &App, key: &KeyRecord, req: Request<Incoming>) -> Reply {
    let b: KeyBody = body(req, app.body_limit).await?;
    let (secret, record) = issue_key(app, &key.tenant_id, b.role, b.name).await?;
    created(&NewKey { api_key: secret, key: record })
}

/// Creates a key, stores only its hash (durably), and returns the secret once.
pub async fn issue_key(app: &App, tenant: &str, role: Role, name: String) -> Result<(String, KeyRecord), ApiError> {
    let secret = generate_key();
    let record = KeyRecord { tenant_id: tenant.to_string(), role, name, created_at: crate::ids::now_rfc3339() };
    let hash = app.keys.hash(&secret);
    let stored = serde_json::to_value(&record).map_err(|e| ApiError::internal("key", &e))?;
    app.registry.put_api_key(tenant, &to_hex(&hash), &stored).await?;
    app.keys.insert_hash(hash, record.clone());
    Ok((secret, record))
}

// Replies built here; the OpenAPI document uses the same types.

/// `GET /healthz`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct Health {
    /// `ok`, or `degraded` while the store's writes fail (decisions and reads go on).
    pub status: &'static str,
    /// Why the store is degraded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
}

/// `GET /whoami`.
#[derive(serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmI {
    pub tenant_id: String,
    pub role: Role,
    pub name: String,
}

/// `GET /algorithm-models`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct ModelList {
    pub data: Vec<measure::ModelSummary>,
}

/// `POST /respond/bulk`: 200 when any item succeeded, 422 when all failed.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct BulkReply {
    pub processed: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub errors: Vec<BulkError>,
    /// The reply of each recorded item, as `/respond` gives it.
    pub results: Vec<crate::tenant::command::RespondReply>,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct BulkError {
    /// The item's position in `outcomes`.
    pub index: usize,
    pub error: String,
}

/// `POST /tenants`: the new tenant and its first admin key, shown this once.
#[derive(serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewTenant {
    pub id: String,
    pub api_key: String,
    pub key: KeyRecord,
}

/// `POST /keys`: the secret, shown this once, and what the server keeps.
#[derive(serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewKey {
    pub api_key: String,
    pub key: KeyRecord,
}

/// `POST|PUT /schemas/{id}/data`. Not deserialised as a whole: `JsonRowStream` reads the
/// `rows` array one row at a time; this type only describes the body.
#[derive(schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RowsBody {
    /// Each row as column name → value, checked against the schema's fields.
    #[schemars(length(min = 1))]
    pub rows: Vec<serde_json::Map<String, Value>>,
}

/// `POST /journeys/{id}/enroll`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("required" = ["customerId"]))]
pub struct EnrollBody {
    /// Required; defaulted so that its absence is a named 400.
    #[serde(default)]
    #[schemars(length(min = 1, max = 256))]
    pub customer_id: String,
}

impl EnrollBody {
    fn customer(self) -> Result<String, ApiError> {
        customer_id(self.customer_id)
    }
}

/// `POST /journeys/{id}/test`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("required" = ["customerId"]))]
pub struct JourneyTestBody {
    #[serde(default)]
    #[schemars(length(min = 1, max = 256))]
    pub customer_id: String,
    /// Outcome types that arrive at the journey's waits (a wait for one not listed takes
    /// its timeout branch, or ends the walk).
    #[serde(default)]
    pub events: Vec<String>,
}

impl JourneyTestBody {
    fn customer(&self) -> Result<String, ApiError> {
        customer_id(self.customer_id.clone())
    }
}

fn customer_id(id: String) -> Result<String, ApiError> {
    if id.trim().is_empty() || id.len() > 256 {
        return Err(ValidationError::one("customerId", "is required (1 to 256 characters)").into());
    }
    Ok(id)
}
