//! The route table: every endpoint, its method and path, and the role it needs.

use hyper::Method;

use crate::http::auth::Role;
use crate::http::router::Router;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Health,
    Metrics,
    OpenApi,
    WhoAmI,
    CreateTenant,
    CreateKey,
    Schemas,
    CreateSchema,
    Schema,
    UpdateSchema,
    DeleteSchema,
    InsertRows,
    UpsertRows,
    Rows,
    Offers,
    CreateOffer,
    Offer,
    UpdateOffer,
    DeleteOffer,
    Rules,
    CreateRule,
    Rule,
    UpdateRule,
    DeleteRule,
    Channels,
    CreateChannel,
    Channel,
    UpdateChannel,
    DeleteChannel,
    Policies,
    CreatePolicy,
    Policy,
    UpdatePolicy,
    DeletePolicy,
    Flows,
    CreateFlow,
    Flow,
    UpdateFlow,
    DeleteFlow,
    Publish,
    Versions,
    Rollback,
    Plugins,
    Plugin,
    PutPlugin,
    DeletePlugin,
    CheckPlugin,
    Recommend,
    Respond,
    RespondBulk,
    OutcomeTypes,
    ExperimentResults,
    Models,
    Model,
    TrainModel,
    ModelUplift,
}

use Route::*;

/// (method, path, route, summary). The OpenAPI document is generated from this table.
pub const TABLE: &[(&str, &str, Route, &str)] = &[
    ("GET", "/healthz", Health, "Liveness"),
    ("GET", "/metrics", Metrics, "Prometheus metrics (operator admin keys)"),
    ("GET", "/api/v1/openapi.json", OpenApi, "This API description"),
    ("GET", "/api/v1/whoami", WhoAmI, "The calling key's tenant and role"),
    ("POST", "/api/v1/tenants", CreateTenant, "Create a tenant and its first admin key (operators)"),
    ("POST", "/api/v1/keys", CreateKey, "Create an API key for the caller's tenant"),
    ("GET", "/api/v1/schemas", Schemas, "List schemas"),
    ("POST", "/api/v1/schemas", CreateSchema, "Create a schema"),
    ("GET", "/api/v1/schemas/{id}", Schema, "Get a schema"),
    ("PUT", "/api/v1/schemas/{id}", UpdateSchema, "Update a schema (fields may only be added)"),
    ("DELETE", "/api/v1/schemas/{id}", DeleteSchema, "Delete a schema and its rows"),
    ("POST", "/api/v1/schemas/{id}/data", InsertRows, "Insert rows; existing keys are skipped"),
    ("PUT", "/api/v1/schemas/{id}/data", UpsertRows, "Insert or replace rows by the unique field"),
    ("GET", "/api/v1/schemas/{id}/data", Rows, "Read rows (limit, offset)"),
    ("GET", "/api/v1/offers", Offers, "List offers"),
    ("POST", "/api/v1/offers", CreateOffer, "Create an offer"),
    ("GET", "/api/v1/offers/{id}", Offer, "Get an offer"),
    ("PUT", "/api/v1/offers/{id}", UpdateOffer, "Update an offer (given fields change)"),
    ("DELETE", "/api/v1/offers/{id}", DeleteOffer, "Delete an offer"),
    ("GET", "/api/v1/qualification-rules", Rules, "List qualification rules"),
    ("POST", "/api/v1/qualification-rules", CreateRule, "Create a qualification rule"),
    ("GET", "/api/v1/qualification-rules/{id}", Rule, "Get a qualification rule"),
    ("PUT", "/api/v1/qualification-rules/{id}", UpdateRule, "Update a qualification rule"),
    ("DELETE", "/api/v1/qualification-rules/{id}", DeleteRule, "Delete a qualification rule"),
    ("GET", "/api/v1/channels", Channels, "List channels"),
    ("POST", "/api/v1/channels", CreateChannel, "Create a channel"),
    ("GET", "/api/v1/channels/{id}", Channel, "Get a channel"),
    ("PUT", "/api/v1/channels/{id}", UpdateChannel, "Update a channel"),
    ("DELETE", "/api/v1/channels/{id}", DeleteChannel, "Delete a channel"),
    ("GET", "/api/v1/contact-policies", Policies, "List contact policies (highest priority first)"),
    ("POST", "/api/v1/contact-policies", CreatePolicy, "Create a contact policy"),
    ("GET", "/api/v1/contact-policies/{id}", Policy, "Get a contact policy"),
    ("PUT", "/api/v1/contact-policies/{id}", UpdatePolicy, "Update a contact policy"),
    ("DELETE", "/api/v1/contact-policies/{id}", DeletePolicy, "Delete a contact policy"),
    ("GET", "/api/v1/decision-flows", Flows, "List decision flows"),
    ("POST", "/api/v1/decision-flows", CreateFlow, "Create a decision flow (draft)"),
    ("POST", "/api/v1/decision-flows/publish", Publish, "Publish a flow's draft as a new version"),
    ("GET", "/api/v1/decision-flows/versions", Versions, "A flow's published versions (?id=)"),
    ("POST", "/api/v1/decision-flows/rollback", Rollback, "Publish an old version again"),
    ("GET", "/api/v1/decision-flows/{id}", Flow, "Get a decision flow"),
    ("PUT", "/api/v1/decision-flows/{id}", UpdateFlow, "Update a flow's draft"),
    ("DELETE", "/api/v1/decision-flows/{id}", DeleteFlow, "Delete an unpublished flow"),
    ("GET", "/api/v1/plugins", Plugins, "List rule files"),
    ("GET", "/api/v1/plugins/{name}", Plugin, "Get a rule file's source"),
    ("PUT", "/api/v1/plugins/{name}", PutPlugin, "Check and install a rule file (text body)"),
    ("DELETE", "/api/v1/plugins/{name}", DeletePlugin, "Remove a rule file"),
    (
        "POST",
        "/api/v1/plugins/{name}/check",
        CheckPlugin,
        "Check a rule file against the tenant without installing it (text body)",
    ),
    ("POST", "/api/v1/recommend", Recommend, "Decide which offers to show (?explain=true)"),
    ("POST", "/api/v1/respond", Respond, "Record what the customer did"),
    ("POST", "/api/v1/respond/bulk", RespondBulk, "Record up to 1,000 outcomes"),
    ("GET", "/api/v1/outcome-types", OutcomeTypes, "Outcome types and their classification"),
    (
        "GET",
        "/api/v1/experiments/{id}/results",
        ExperimentResults,
        "Holdout vs treated statistics of a flow (key or id)",
    ),
    ("GET", "/api/v1/algorithm-models", Models, "Uplift models: one per live flow"),
    ("GET", "/api/v1/algorithm-models/{id}", Model, "A flow's uplift model (flow id or key)"),
    ("POST", "/api/v1/algorithm-models/{id}/train", TrainModel, "Retrain a flow's uplift model now"),
    (
        "GET",
        "/api/v1/algorithm-models/{id}/uplift",
        ModelUplift,
        "Per-offer uplift for one customer (?customerId=&method=)",
    ),
];

impl Route {
    /// The least role that may call the route; `None` for unauthenticated routes.
    pub fn role(self) -> Option<Role> {
        match self {
            Health | OpenApi => None,
            // Metrics name every tenant's flows: operators only (checked in the handler).
            Metrics => Some(Role::Admin),
            // As on the platform: keys, qualification rules and rollback are admin work;
            // reading versions needs an editor.
            CreateTenant | CreateKey | CreateRule | UpdateRule | DeleteRule | Rollback | CreatePolicy
            | UpdatePolicy | DeletePolicy => Some(Role::Admin),
            Versions => Some(Role::Editor),
            WhoAmI | Schemas | Schema | Rows | Offers | Offer | Rules | Rule | Channels | Channel | Policies
            | Policy | Flows | Flow | Plugins | Plugin | OutcomeTypes | Recommend | Respond | RespondBulk
            | ExperimentResults | Models | Model | ModelUplift => Some(Role::Viewer),
            _ => Some(Role::Editor),
        }
    }

    /// A stable name for metrics labels.
    pub fn name(self) -> &'static str {
        TABLE.iter().find(|(_, _, r, _)| *r == self).map_or("unknown", |(_, path, _, _)| path)
    }
}

pub fn router() -> Router<Route> {
    let mut router = Router::new();
    for &(method, path, route, _) in TABLE {
        let method = Method::from_bytes(method.as_bytes()).expect("valid method");
        router.add(method, path, route);
    }
    router
}

/// What a route takes and answers, for the OpenAPI document. The types are the ones the
/// handler parses and serialises, so the document follows the code.
pub struct Contract {
    pub request: Body,
    /// The success statuses, all with the `success` body.
    pub statuses: &'static [u16],
    pub success: Body,
    pub query: &'static [QueryParam],
}

/// A request or response body.
pub enum Body {
    None,
    /// JSON of this type.
    Json(SchemaFn),
    /// JSON of a `PUT`: the type's fields, all optional (the given ones change), and the
    /// stored fields a client may send back from a GET (ignored).
    Patch(SchemaFn, &'static [&'static str]),
    /// Text of this content type.
    Text(&'static str),
}

pub type SchemaFn = fn(&mut schemars::SchemaGenerator) -> schemars::Schema;

fn json<T: schemars::JsonSchema>() -> Body {
    Body::Json(|g| g.subschema_for::<T>())
}

fn patch<T: schemars::JsonSchema>() -> Body {
    Body::Patch(|g| g.subschema_for::<T>(), crate::api::handlers::STORED_FIELDS)
}

#[derive(Debug, Clone, Copy)]
pub struct QueryParam {
    pub name: &'static str,
    /// A JSON Schema type: `string`, `integer` or `boolean`.
    pub kind: &'static str,
    pub required: bool,
    /// The bounds the handler checks: of the value for an integer, of the length for a
    /// string (`u64::MAX`: no upper bound).
    pub range: Option<(u64, u64)>,
    pub description: &'static str,
}

const fn param(name: &'static str, kind: &'static str, description: &'static str) -> QueryParam {
    QueryParam { name, kind, required: false, range: None, description }
}

const LIST: &[QueryParam] = &[
    QueryParam { range: Some((1, 100)), ..param("limit", "integer", "Items per page, 1 to 100 (default 25)") },
    param("cursor", "string", "`pagination.cursor` of the previous page"),
];
const ROWS: &[QueryParam] = &[
    QueryParam { range: Some((0, 500)), ..param("limit", "integer", "Rows per page, up to 500 (default 50)") },
    QueryParam { range: Some((0, u64::MAX)), ..param("offset", "integer", "Rows to skip, in key order") },
];
const VERSIONS: &[QueryParam] = &[
    QueryParam { required: true, ..param("id", "string", "The flow id") },
    QueryParam { range: Some((1, 100)), ..param("limit", "integer", "Versions per page, 1 to 100 (default 25)") },
    param("cursor", "string", "`pagination.cursor` of the previous page (a version number)"),
];
const EXPLAIN: &[QueryParam] = &[param("explain", "boolean", "Explain each score and every removed offer")];
const UPLIFT: &[QueryParam] = &[
    QueryParam { required: true, range: Some((1, u64::MAX)), ..param("customerId", "string", "The customer") },
    param("method", "string", "`t_learner` or `x_learner` (default `t_learner`)"),
];

impl Route {
    /// The route's request and response bodies and query parameters.
    pub fn contract(self) -> Contract {
        use crate::api::handlers as h;
        use crate::http::pagination::Paginated;
        use crate::model::flow::FlowView;
        use crate::model::policy::{ContactPolicy, ContactPolicySpec};
        use crate::model::{Channel as ChannelEntity, ChannelSpec, FlowSpec, Offer as OfferEntity, OfferSpec};
        use crate::model::{QualificationRule as RuleEntity, RuleSpec, Schema as SchemaEntity, SchemaSpec};
        use crate::tenant::command as c;
        type Page<T> = Paginated<'static, T>;
        let (request, statuses, success, query): (Body, &'static [u16], Body, &'static [QueryParam]) = match self {
            Health => (Body::None, &[200], json::<h::Health>(), &[]),
            Metrics => (Body::None, &[200], Body::Text(crate::http::metrics::CONTENT_TYPE), &[]),
            OpenApi => (Body::None, &[200], json::<serde_json::Map<String, serde_json::Value>>(), &[]),
            WhoAmI => (Body::None, &[200], json::<h::WhoAmI>(), &[]),
            CreateTenant => (json::<h::TenantBody>(), &[201], json::<h::NewTenant>(), &[]),
            CreateKey => (json::<h::KeyBody>(), &[201], json::<h::NewKey>(), &[]),
            Schemas => (Body::None, &[200], json::<Page<SchemaEntity>>(), LIST),
            CreateSchema => (json::<SchemaSpec>(), &[201], json::<SchemaEntity>(), &[]),
            Schema => (Body::None, &[200], json::<SchemaEntity>(), &[]),
            UpdateSchema => (patch::<SchemaSpec>(), &[200], json::<SchemaEntity>(), &[]),
            InsertRows | UpsertRows => (json::<h::RowsBody>(), &[201], json::<c::LoadReply>(), &[]),
            Rows => (Body::None, &[200], json::<c::RowsPage>(), ROWS),
            Offers => (Body::None, &[200], json::<Page<OfferEntity>>(), LIST),
            CreateOffer => (json::<OfferSpec>(), &[201], json::<OfferEntity>(), &[]),
            Offer => (Body::None, &[200], json::<OfferEntity>(), &[]),
            UpdateOffer => (patch::<OfferSpec>(), &[200], json::<OfferEntity>(), &[]),
            Rules => (Body::None, &[200], json::<Page<RuleEntity>>(), LIST),
            CreateRule => (json::<RuleSpec>(), &[201], json::<RuleEntity>(), &[]),
            Rule => (Body::None, &[200], json::<RuleEntity>(), &[]),
            UpdateRule => (patch::<RuleSpec>(), &[200], json::<RuleEntity>(), &[]),
            Channels => (Body::None, &[200], json::<Page<ChannelEntity>>(), LIST),
            CreateChannel => (json::<ChannelSpec>(), &[201], json::<ChannelEntity>(), &[]),
            Channel => (Body::None, &[200], json::<ChannelEntity>(), &[]),
            UpdateChannel => (patch::<ChannelSpec>(), &[200], json::<ChannelEntity>(), &[]),
            Policies => (Body::None, &[200], json::<Page<ContactPolicy>>(), LIST),
            CreatePolicy => (json::<ContactPolicySpec>(), &[201], json::<ContactPolicy>(), &[]),
            Policy => (Body::None, &[200], json::<ContactPolicy>(), &[]),
            UpdatePolicy => (patch::<ContactPolicySpec>(), &[200], json::<ContactPolicy>(), &[]),
            Flows => (Body::None, &[200], json::<Page<FlowView>>(), LIST),
            CreateFlow => (json::<FlowSpec>(), &[201], json::<FlowView>(), &[]),
            Flow => (Body::None, &[200], json::<FlowView>(), &[]),
            UpdateFlow => {
                let body = Body::Patch(|g| g.subschema_for::<FlowSpec>(), h::STORED_FLOW_FIELDS);
                (body, &[200], json::<FlowView>(), &[])
            }
            Publish => (json::<h::PublishBody>(), &[200], json::<FlowView>(), &[]),
            Versions => (Body::None, &[200], json::<c::VersionList>(), VERSIONS),
            Rollback => (json::<h::RollbackBody>(), &[200], json::<FlowView>(), &[]),
            Plugins => (Body::None, &[200], json::<Vec<c::PluginSummary>>(), &[]),
            Plugin => (Body::None, &[200], json::<c::PluginSource>(), &[]),
            PutPlugin => (Body::Text("text/plain"), &[200], json::<c::PluginInstalled>(), &[]),
            CheckPlugin => (Body::Text("text/plain"), &[200], json::<c::PluginCheck>(), &[]),
            Recommend => {
                (json::<crate::engine::RecommendRequest>(), &[200], json::<crate::engine::Decision>(), EXPLAIN)
            }
            // 201 when recorded, 200 when the idempotency key was seen (`duplicate: true`).
            Respond => {
                (json::<crate::tenant::interaction::RespondInput>(), &[201, 200], json::<c::RespondReply>(), &[])
            }
            // 200 when any item was recorded, 422 when every item failed.
            RespondBulk => (json::<h::BulkBody>(), &[200, 422], json::<h::BulkReply>(), &[]),
            OutcomeTypes => (Body::None, &[200], json::<Vec<crate::tenant::interaction::OutcomeType>>(), &[]),
            ExperimentResults => (Body::None, &[200], json::<crate::tenant::measure::ExperimentResults>(), &[]),
            Models => (Body::None, &[200], json::<h::ModelList>(), &[]),
            Model | TrainModel => (Body::None, &[200], json::<crate::tenant::measure::ModelSummary>(), &[]),
            ModelUplift => (Body::None, &[200], json::<crate::tenant::measure::CustomerUplift>(), UPLIFT),
            DeleteSchema | DeleteOffer | DeleteRule | DeleteChannel | DeletePolicy | DeleteFlow | DeletePlugin => {
                (Body::None, &[204], Body::None, &[])
            }
        };
        Contract { request, statuses, success, query }
    }
}
