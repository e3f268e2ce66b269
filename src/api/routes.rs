//! The route table: every endpoint, its method and path, and the role it needs.

use hyper::Method;

use crate::http::auth::Role;
use crate::http::router::Router;

pub use super::entity::Op;
use super::entity::{Api, EntityApi};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Health,
    Metrics,
    OpenApi,
    WhoAmI,
    CreateTenant,
    CreateKey,
    /// An operation on the entity kind `ENTITIES[kind]`.
    Entity(usize, Op),
    InsertRows,
    UpsertRows,
    Rows,
    Publish,
    Simulate,
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
    CustomerContacts,
    CustomerSuppressions,
    PolicyConflicts,
    Placements,
    PutPlacement,
    DeletePlacement,
    CustomerInteractions,
    Interaction,
    ReplayInteraction,
    Models,
    Model,
    TrainModel,
    ModelUplift,
    EnrollJourney,
    JourneyEnrollments,
    TestJourney,
    VersionConfig,
    ModelQini,
    Console,
    ConsoleAsset,
}

use Route::*;

/// An entity kind's row: its endpoints are `GET|POST {path}` and `GET|PUT|DELETE
/// {path}/{id}`, all served by `api` (one generic implementation per kind).
pub struct EntityRoutes {
    pub path: &'static str,
    /// `{path}/{id}`.
    pub item: &'static str,
    /// In operation ids (`CreateOffer`, `Offers`) and summaries ("Create an offer").
    pub one: &'static str,
    pub many: &'static str,
    pub a_one: &'static str,
    pub plural: &'static str,
    /// The least role that may create, change or delete one (reading needs a viewer).
    pub writes: Role,
    /// Summaries that say more than the generic one.
    pub notes: &'static [(Op, &'static str)],
    pub api: &'static dyn EntityApi,
}

/// Every entity kind. As on the platform, qualification rules and contact policies are
/// admin work; the rest needs an editor.
pub const ENTITIES: &[EntityRoutes] = &[
    EntityRoutes {
        path: "/api/v1/schemas",
        item: "/api/v1/schemas/{id}",
        one: "Schema",
        many: "Schemas",
        a_one: "a schema",
        plural: "schemas",
        writes: Role::Editor,
        notes: &[
            (Op::Update, "Update a schema (fields may only be added)"),
            (Op::Delete, "Delete a schema and its rows"),
        ],
        api: &Api::<crate::model::Schema>::NEW,
    },
    EntityRoutes {
        path: "/api/v1/offers",
        item: "/api/v1/offers/{id}",
        one: "Offer",
        many: "Offers",
        a_one: "an offer",
        plural: "offers",
        writes: Role::Editor,
        notes: &[(Op::Update, "Update an offer (given fields change)")],
        api: &Api::<crate::model::Offer>::NEW,
    },
    EntityRoutes {
        path: "/api/v1/qualification-rules",
        item: "/api/v1/qualification-rules/{id}",
        one: "Rule",
        many: "Rules",
        a_one: "a qualification rule",
        plural: "qualification rules",
        writes: Role::Admin,
        notes: &[],
        api: &Api::<crate::model::QualificationRule>::NEW,
    },
    EntityRoutes {
        path: "/api/v1/channels",
        item: "/api/v1/channels/{id}",
        one: "Channel",
        many: "Channels",
        a_one: "a channel",
        plural: "channels",
        writes: Role::Editor,
        notes: &[],
        api: &Api::<crate::model::Channel>::NEW,
    },
    EntityRoutes {
        path: "/api/v1/contact-policies",
        item: "/api/v1/contact-policies/{id}",
        one: "Policy",
        many: "Policies",
        a_one: "a contact policy",
        plural: "contact policies",
        writes: Role::Admin,
        notes: &[(Op::List, "List contact policies (highest priority first)")],
        api: &Api::<crate::model::policy::ContactPolicy>::NEW,
    },
    EntityRoutes {
        path: "/api/v1/decision-flows",
        item: "/api/v1/decision-flows/{id}",
        one: "Flow",
        many: "Flows",
        a_one: "a decision flow",
        plural: "decision flows",
        writes: Role::Editor,
        notes: &[
            (Op::Create, "Create a decision flow (draft)"),
            (Op::Update, "Update a flow's draft"),
            (Op::Delete, "Delete an unpublished flow"),
        ],
        api: &Api::<crate::model::DecisionFlow>::NEW,
    },
    EntityRoutes {
        path: "/api/v1/journeys",
        item: "/api/v1/journeys/{id}",
        one: "Journey",
        many: "Journeys",
        a_one: "a journey",
        plural: "journeys",
        writes: Role::Editor,
        notes: &[(Op::Delete, "Delete a journey and its enrollments")],
        api: &Api::<crate::model::journey::Journey>::NEW,
    },
];

impl EntityRoutes {
    fn summary(&self, op: Op) -> String {
        if let Some((_, note)) = self.notes.iter().find(|(o, _)| *o == op) {
            return note.to_string();
        }
        match op {
            Op::List => format!("List {}", self.plural),
            Op::Create => format!("Create {}", self.a_one),
            Op::Get => format!("Get {}", self.a_one),
            Op::Update => format!("Update {}", self.a_one),
            Op::Delete => format!("Delete {}", self.a_one),
        }
    }
}

/// The endpoints that are not an entity kind's: (method, path, route, summary).
const FIXED: &[(&str, &str, Route, &str)] = &[
    ("GET", "/healthz", Health, "Liveness"),
    ("GET", "/metrics", Metrics, "Prometheus metrics (operator admin keys)"),
    ("GET", "/api/v1/openapi.json", OpenApi, "This API description"),
    ("GET", "/api/v1/whoami", WhoAmI, "The calling key's tenant and role"),
    ("POST", "/api/v1/tenants", CreateTenant, "Create a tenant and its first admin key (operators)"),
    ("POST", "/api/v1/keys", CreateKey, "Create an API key for the caller's tenant"),
    ("POST", "/api/v1/schemas/{id}/data", InsertRows, "Insert rows; existing keys are skipped"),
    ("PUT", "/api/v1/schemas/{id}/data", UpsertRows, "Insert or replace rows by the unique field"),
    ("GET", "/api/v1/schemas/{id}/data", Rows, "Read rows (limit, offset)"),
    ("POST", "/api/v1/decision-flows/publish", Publish, "Publish a flow's draft as a new version"),
    ("GET", "/api/v1/decision-flows/versions", Versions, "A flow's published versions (?id=)"),
    ("POST", "/api/v1/decision-flows/rollback", Rollback, "Publish an old version again"),
    (
        "POST",
        "/api/v1/decision-flows/simulate",
        Simulate,
        "Send the live flow's recent logged requests through its draft; records nothing",
    ),
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
    ("POST", "/api/v1/recommend", Recommend, "Decide which offers to show (?explain=true, ?dryRun=true)"),
    ("POST", "/api/v1/respond", Respond, "Record what the customer did"),
    ("POST", "/api/v1/respond/bulk", RespondBulk, "Record up to 1,000 outcomes"),
    ("GET", "/api/v1/outcome-types", OutcomeTypes, "Outcome types and their classification"),
    (
        "GET",
        "/api/v1/experiments/{id}/results",
        ExperimentResults,
        "Holdout vs treated statistics of a flow (key or id)",
    ),
    ("GET", "/api/v1/customers/{id}/contacts", CustomerContacts, "The contacts a customer's policies count"),
    ("GET", "/api/v1/channels/{id}/placements", Placements, "A channel's placements and its coupling mode"),
    ("PUT", "/api/v1/channels/{id}/placements/{key}", PutPlacement, "Add or replace the channel's placement `key`"),
    ("DELETE", "/api/v1/channels/{id}/placements/{key}", DeletePlacement, "Remove the channel's placement `key`"),
    (
        "POST",
        "/api/v1/policy-conflicts/analyze",
        PolicyConflicts,
        "Conflicts among the active contact policies (dead scopes, overlaps, ties, contradictions, gaps)",
    ),
    (
        "GET",
        "/api/v1/customers/{id}/suppressions",
        CustomerSuppressions,
        "What suppressing policies block for a customer now, and until when",
    ),
    (
        "GET",
        "/api/v1/customers/{id}/interactions",
        CustomerInteractions,
        "A customer's logged decisions, newest first (limit, cursor)",
    ),
    (
        "GET",
        "/api/v1/interactions/{id}",
        Interaction,
        "A logged decision (an interaction or recommendation id) with what reproducing it needs",
    ),
    (
        "POST",
        "/api/v1/interactions/{id}/replay",
        ReplayInteraction,
        "Decide a logged decision again from its receipt and compare, field by field; records nothing",
    ),
    ("POST", "/api/v1/journeys/{id}/enroll", EnrollJourney, "Enroll a customer in an active journey"),
    (
        "GET",
        "/api/v1/journeys/{id}/enrollments",
        JourneyEnrollments,
        "A journey's enrollments with their current step and history (?customerId=)",
    ),
    (
        "POST",
        "/api/v1/journeys/{id}/test",
        TestJourney,
        "Walk a journey for a customer now, with dry-run decisions; records nothing",
    ),
    (
        "GET",
        "/api/v1/decision-flows/{id}/versions/{version}",
        VersionConfig,
        "One published version of a flow, with its config",
    ),
    (
        "GET",
        "/api/v1/algorithm-models/{id}/qini",
        ModelQini,
        "Per offer, the uplift models' segments and Qini curve on the training sample",
    ),
    ("GET", "/console", Console, "The web console (HTML; it signs in with an API key)"),
    ("GET", "/console/{asset}", ConsoleAsset, "The console's script and style sheet"),
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

/// One endpoint: the router, the OpenAPI document and the metrics labels read these.
#[derive(Debug, Clone)]
pub struct RouteRow {
    pub method: &'static str,
    pub path: &'static str,
    pub route: Route,
    pub summary: String,
}

/// Every endpoint: each entity kind's five, then the others.
pub fn table() -> &'static [RouteRow] {
    static TABLE: std::sync::LazyLock<Vec<RouteRow>> = std::sync::LazyLock::new(|| {
        let entities = ENTITIES.iter().enumerate().flat_map(|(kind, e)| {
            Op::ALL.into_iter().map(move |op| RouteRow {
                method: op.method(),
                path: if op.on_item() { e.item } else { e.path },
                route: Entity(kind, op),
                summary: e.summary(op),
            })
        });
        let fixed = FIXED.iter().map(|&(method, path, route, summary)| RouteRow {
            method,
            path,
            route,
            summary: summary.to_string(),
        });
        entities.chain(fixed).collect()
    });
    &TABLE
}

impl Route {
    /// The least role that may call the route; `None` for unauthenticated routes.
    pub fn role(self) -> Option<Role> {
        match self {
            Health | OpenApi | Console | ConsoleAsset => None,
            // Metrics name every tenant's flows: operators only (checked in the handler).
            Metrics => Some(Role::Admin),
            // As on the platform: keys and rollback are admin work; reading versions
            // needs an editor.
            CreateTenant | CreateKey | Rollback => Some(Role::Admin),
            Entity(_, Op::List | Op::Get) => Some(Role::Viewer),
            Entity(kind, Op::Create | Op::Update | Op::Delete) => Some(ENTITIES[kind].writes),
            InsertRows | UpsertRows | Publish | Simulate | Versions | PutPlugin | DeletePlugin | CheckPlugin
            | TrainModel | PutPlacement | DeletePlacement | EnrollJourney | VersionConfig => Some(Role::Editor),
            WhoAmI | Rows | Plugins | Plugin | OutcomeTypes | Recommend | Respond | RespondBulk | ExperimentResults
            | Models | Model | ModelUplift | CustomerContacts | CustomerSuppressions | PolicyConflicts | Placements
            | CustomerInteractions | Interaction | ReplayInteraction | JourneyEnrollments | TestJourney | ModelQini => {
                Some(Role::Viewer)
            }
        }
    }

    /// A stable name for metrics labels: the route's path pattern.
    pub fn name(self) -> &'static str {
        table().iter().find(|r| r.route == self).map_or("unknown", |r| r.path)
    }

    /// The OpenAPI `operationId`: `CreateOffer`, `Offers`, `Recommend`.
    pub fn operation_id(self) -> String {
        match self {
            Entity(kind, op) => {
                let e = &ENTITIES[kind];
                match op {
                    Op::List => e.many.to_string(),
                    Op::Get => e.one.to_string(),
                    Op::Create => format!("Create{}", e.one),
                    Op::Update => format!("Update{}", e.one),
                    Op::Delete => format!("Delete{}", e.one),
                }
            }
            other => format!("{other:?}"),
        }
    }
}

pub fn router() -> Router<Route> {
    let mut router = Router::new();
    for row in table() {
        let method = Method::from_bytes(row.method.as_bytes()).expect("valid method");
        router.add(method, row.path, row.route);
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

pub(super) fn json<T: schemars::JsonSchema>() -> Body {
    Body::Json(|g| g.subschema_for::<T>())
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

pub(super) const LIST: &[QueryParam] = &[
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
const INTERACTIONS: &[QueryParam] = &[
    QueryParam { range: Some((1, 100)), ..param("limit", "integer", "Interactions per page, 1 to 100 (default 25)") },
    param("cursor", "string", "`pagination.cursor` of the previous page (an interaction id)"),
];
const ENROLLMENTS: &[QueryParam] =
    &[param("customerId", "string", "Only this customer's enrollments (else the newest 1,000)")];
const RECOMMEND: &[QueryParam] = &[
    param("explain", "boolean", "Explain each score and every removed offer"),
    param(
        "dryRun",
        "boolean",
        "Decide and record nothing (no id, contacts, log or counters); the body may then name `flowVersion` or `draft: true`",
    ),
];
const UPLIFT: &[QueryParam] = &[
    QueryParam { required: true, range: Some((1, u64::MAX)), ..param("customerId", "string", "The customer") },
    param(
        "method",
        "string",
        "`t_learner`, `x_learner`, `dr_learner` or `chosen` (each offer's chosen learner; default `t_learner`)",
    ),
];

impl Route {
    /// The route's request and response bodies and query parameters.
    pub fn contract(self) -> Contract {
        use crate::api::handlers as h;
        use crate::model::flow::FlowView;
        use crate::tenant::command as c;
        use crate::tenant::journeys;
        let (request, statuses, success, query): (Body, &'static [u16], Body, &'static [QueryParam]) = match self {
            Entity(kind, op) => return ENTITIES[kind].api.contract(op),
            Health => (Body::None, &[200], json::<h::Health>(), &[]),
            Metrics => (Body::None, &[200], Body::Text(crate::http::metrics::CONTENT_TYPE), &[]),
            OpenApi => (Body::None, &[200], json::<serde_json::Map<String, serde_json::Value>>(), &[]),
            WhoAmI => (Body::None, &[200], json::<h::WhoAmI>(), &[]),
            CreateTenant => (json::<h::TenantBody>(), &[201], json::<h::NewTenant>(), &[]),
            CreateKey => (json::<h::KeyBody>(), &[201], json::<h::NewKey>(), &[]),
            InsertRows | UpsertRows => (json::<h::RowsBody>(), &[201], json::<c::LoadReply>(), &[]),
            Rows => (Body::None, &[200], json::<c::RowsPage>(), ROWS),
            Publish => (json::<h::PublishBody>(), &[200], json::<FlowView>(), &[]),
            Simulate => (
                json::<crate::tenant::simulate::SimulateInput>(),
                &[200],
                json::<crate::tenant::simulate::Simulation>(),
                &[],
            ),
            Versions => (Body::None, &[200], json::<c::VersionList>(), VERSIONS),
            Rollback => (json::<h::RollbackBody>(), &[200], json::<FlowView>(), &[]),
            Plugins => (Body::None, &[200], json::<Vec<c::PluginSummary>>(), &[]),
            Plugin => (Body::None, &[200], json::<c::PluginSource>(), &[]),
            PutPlugin => (Body::Text("text/plain"), &[200], json::<c::PluginInstalled>(), &[]),
            CheckPlugin => (Body::Text("text/plain"), &[200], json::<c::PluginCheck>(), &[]),
            Recommend => {
                (json::<crate::engine::RecommendRequest>(), &[200], json::<crate::engine::Decision>(), RECOMMEND)
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
            CustomerContacts => (Body::None, &[200], json::<crate::tenant::views::CustomerContacts>(), &[]),
            CustomerSuppressions => (Body::None, &[200], json::<crate::tenant::views::CustomerSuppressions>(), &[]),
            PolicyConflicts => (Body::None, &[200], json::<crate::catalog::conflicts::ConflictReport>(), &[]),
            Placements => (Body::None, &[200], json::<super::placements::Placements>(), &[]),
            PutPlacement => {
                (json::<crate::model::channel::PlacementSpec>(), &[200], json::<super::placements::Placements>(), &[])
            }
            DeletePlacement => (Body::None, &[204], Body::None, &[]),
            CustomerInteractions => {
                (Body::None, &[200], json::<crate::tenant::views::CustomerInteractions>(), INTERACTIONS)
            }
            Interaction => (Body::None, &[200], json::<crate::tenant::interaction::Interaction>(), &[]),
            ReplayInteraction => (Body::None, &[200], json::<crate::tenant::replay::ReplayReport>(), &[]),
            Model | TrainModel => (Body::None, &[200], json::<crate::tenant::measure::ModelSummary>(), &[]),
            ModelUplift => (Body::None, &[200], json::<crate::tenant::measure::CustomerUplift>(), UPLIFT),
            DeletePlugin => (Body::None, &[204], Body::None, &[]),
            // 201 when enrolled, 200 when not (already active, or the entry condition).
            EnrollJourney => (json::<h::EnrollBody>(), &[201, 200], json::<journeys::EnrollReply>(), &[]),
            JourneyEnrollments => (Body::None, &[200], json::<journeys::EnrollmentList>(), ENROLLMENTS),
            TestJourney => (json::<h::JourneyTestBody>(), &[200], json::<journeys::JourneyTest>(), &[]),
            VersionConfig => (Body::None, &[200], json::<crate::model::flow::PublishedVersion>(), &[]),
            ModelQini => (Body::None, &[200], json::<crate::tenant::qini::UpliftCurves>(), &[]),
            Console => (Body::None, &[200], Body::Text("text/html"), &[]),
            ConsoleAsset => (Body::None, &[200], Body::Text("text/javascript"), &[]),
        };
        Contract { request, statuses, success, query }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entity kind is one row: its five endpoints are routed to it, reads need a viewer
    /// and writes the row's role, and every operation id is distinct.
    #[test]
    fn each_entity_row_gives_its_kind_five_routed_endpoints() {
        let router = router();
        for (kind, e) in ENTITIES.iter().enumerate() {
            for op in Op::ALL {
                let path = if op.on_item() { e.item.replace("{id}", "x1") } else { e.path.to_string() };
                let method = Method::from_bytes(op.method().as_bytes()).unwrap();
                let (route, _) =
                    router.match_route(&method, &path).unwrap_or_else(|_| panic!("{} {path}", op.method()));
                assert_eq!(route, Entity(kind, op), "{} {path}", op.method());
                let role = if matches!(op, Op::List | Op::Get) { Role::Viewer } else { e.writes };
                assert_eq!(route.role(), Some(role), "{} {path}", op.method());
            }
        }
        let mut ids: Vec<String> = table().iter().map(|r| r.route.operation_id()).collect();
        let all = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), all, "operation ids repeat");
    }
}
