//! A small method + path router.
//!
//! The API has a few dozen routes, so a linear scan over pre-split patterns is as fast as a trie
//! and much easier to read. Matching allocates nothing until a route wins (then one `Vec` for
//! its parameters, and a `String` per parameter).
//!
//! Rules, chosen so handlers never see surprising matches:
//! * a pattern segment is either literal text or a whole-segment `{name}` parameter;
//! * a parameter never matches an empty segment (`/schemas//data` is a 404);
//! * when several patterns match, the one with a literal at the first position where they
//!   differ wins, independent of registration order (`/decision-flows/versions` beats
//!   `/decision-flows/{id}`) — and it wins for every method: `DELETE
//!   /decision-flows/versions` is a 405 listing the methods of `versions`, not a delete of
//!   the flow `versions`, so a path is one resource and `Allow` lists its methods only;
//! * one trailing slash is ignored;
//! * `HEAD` falls back to the `GET` route (hyper sends no body for `HEAD`);
//! * a path that matches only under other methods is a 405 listing them, not a 404.

use hyper::Method;

use super::error::ApiError;
use super::percent;

/// Paths with more segments than this match nothing; keeps the split on the stack.
const MAX_SEGMENTS: usize = 16;

/// Routes from `(method, pattern)` to a caller-chosen route id `R` (an enum or a `&'static str`).
#[derive(Debug, Clone)]
pub struct Router<R> {
    routes: Vec<Route<R>>,
}

#[derive(Debug, Clone)]
struct Route<R> {
    method: Method,
    pattern: &'static str,
    segments: Vec<Segment>,
    id: R,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment {
    Literal(&'static str),
    Param(&'static str),
}

/// Why no route answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No pattern matches the path under any method.
    NotFound,
    /// Patterns match the path, but only under these methods.
    MethodNotAllowed {
        /// In registration order, without duplicates.
        allowed: Vec<Method>,
    },
}

impl RouteError {
    /// The client-facing error, naming the method and path.
    pub fn into_api_error(self, method: &Method, path: &str) -> ApiError {
        match self {
            RouteError::NotFound => ApiError::NotFound(format!("no endpoint {method} {path}")),
            RouteError::MethodNotAllowed { allowed } => {
                let list = allowed.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
                let message = format!("{method} is not allowed on {path}; allowed: {list}");
                ApiError::MethodNotAllowed { message, allowed }
            }
        }
    }
}

/// The decoded `{name}` values of a matched path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(&'static str, String)>,
}

impl Params {
    /// The percent-decoded value of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(key, _)| *key == name).map(|(_, value)| value.as_str())
    }

    /// `(name, value)` in pattern order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.pairs.iter().map(|(key, value)| (*key, value.as_str()))
    }

    /// How many parameters the pattern had.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True for patterns without parameters.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

impl<R> Default for Router<R> {
    fn default() -> Self {
        Router { routes: Vec::new() }
    }
}

impl<R: Copy> Router<R> {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `method pattern` as route `id`.
    ///
    /// # Panics
    /// On a malformed pattern or a duplicate `(method, pattern shape)`: patterns are constants,
    /// so this is a programming error that any test building the router catches.
    pub fn add(&mut self, method: Method, pattern: &'static str, id: R) -> &mut Self {
        let segments = parse_pattern(pattern).unwrap_or_else(|why| panic!("route pattern {pattern:?}: {why}"));
        let duplicate = self.routes.iter().find(|r| r.method == method && same_shape(&r.segments, &segments));
        if let Some(existing) = duplicate {
            panic!("route {method} {pattern:?} duplicates {:?}", existing.pattern);
        }
        self.routes.push(Route { method, pattern, segments, id });
        self
    }

    /// Every registered `(method, pattern, id)`, in registration order (for the OpenAPI check).
    pub fn routes(&self) -> impl Iterator<Item = (&Method, &'static str, R)> + '_ {
        self.routes.iter().map(|r| (&r.method, r.pattern, r.id))
    }

    /// The route for `method path` (path without the query string) and its parameters.
    pub fn match_route(&self, method: &Method, path: &str) -> Result<(R, Params), RouteError> {
        let mut storage = [""; MAX_SEGMENTS];
        let Some(segments) = split_path(path, &mut storage) else {
            return Err(RouteError::NotFound);
        };
        // The resource: the most specific pattern that matches, whatever the method.
        let Some(resource) = self.best(segments, |_| true).map(|r| &r.segments) else {
            return Err(RouteError::NotFound);
        };
        let on_resource = |m: &Method| self.routes.iter().find(|r| r.method == *m && same_shape(&r.segments, resource));
        let found =
            on_resource(method).or_else(|| (*method == Method::HEAD).then(|| on_resource(&Method::GET)).flatten());
        match found {
            Some(route) => Ok((route.id, extract_params(&route.segments, segments))),
            None => Err(self.not_allowed(resource)),
        }
    }

    /// The most specific route accepted by `method_ok` whose pattern matches `segments`.
    fn best(&self, segments: &[&str], method_ok: impl Fn(&Method) -> bool) -> Option<&Route<R>> {
        let candidates = self.routes.iter().filter(|r| method_ok(&r.method) && pattern_matches(&r.segments, segments));
        candidates.fold(None, |best: Option<&Route<R>>, route| match best {
            Some(b) if !more_specific(&route.segments, &b.segments) => Some(b),
            _ => Some(route),
        })
    }

    /// 405 listing the methods of the resource's pattern.
    fn not_allowed(&self, resource: &[Segment]) -> RouteError {
        let mut allowed: Vec<Method> = Vec::new();
        for route in self.routes.iter().filter(|r| same_shape(&r.segments, resource)) {
            if !allowed.contains(&route.method) {
                allowed.push(route.method.clone());
            }
        }
        RouteError::MethodNotAllowed { allowed }
    }
}

/// Splits `/a/b/c` (one trailing `/` ignored) into `storage`; `None` if the path does not start
/// with `/` or has too many segments.
fn split_path<'p, 's>(path: &'p str, storage: &'s mut [&'p str; MAX_SEGMENTS]) -> Option<&'s [&'p str]> {
    let rest = path.strip_prefix('/')?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Some(&storage[..0]);
    }
    let mut count = 0;
    for segment in rest.split('/') {
        *storage.get_mut(count)? = segment;
        count += 1;
    }
    Some(&storage[..count])
}

fn parse_pattern(pattern: &'static str) -> Result<Vec<Segment>, String> {
    let rest = pattern.strip_prefix('/').ok_or("must start with '/'")?;
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let segments = rest.split('/').map(parse_segment).collect::<Result<Vec<_>, _>>()?;
    if segments.len() > MAX_SEGMENTS {
        return Err(format!("more than {MAX_SEGMENTS} segments"));
    }
    let names: Vec<&str> =
        segments.iter().filter_map(|s| if let Segment::Param(n) = s { Some(*n) } else { None }).collect();
    if let Some(name) = names.iter().enumerate().find_map(|(i, n)| names[..i].contains(n).then_some(n)) {
        return Err(format!("parameter {{{name}}} appears twice"));
    }
    Ok(segments)
}

fn parse_segment(segment: &'static str) -> Result<Segment, String> {
    if segment.is_empty() {
        return Err("empty segment".to_string());
    }
    match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        Some(name) if is_param_name(name) => Ok(Segment::Param(name)),
        Some(name) => Err(format!("bad parameter name {name:?}")),
        None if segment.contains(['{', '}']) => Err(format!("a parameter must be a whole segment: {segment:?}")),
        None => Ok(Segment::Literal(segment)),
    }
}

fn is_param_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn pattern_matches(pattern: &[Segment], segments: &[&str]) -> bool {
    pattern.len() == segments.len()
        && pattern.iter().zip(segments).all(|(p, s)| match p {
            Segment::Literal(text) => text == s,
            Segment::Param(_) => !s.is_empty(),
        })
}

/// True if `a` has a literal where `b` has a parameter, at the first position they differ in
/// kind. Both matched the same path, so they have the same length.
fn more_specific(a: &[Segment], b: &[Segment]) -> bool {
    let first_difference = a.iter().zip(b).find(|(x, y)| is_param(x) != is_param(y));
    matches!(first_difference, Some((x, _)) if !is_param(x))
}

fn is_param(segment: &Segment) -> bool {
    matches!(segment, Segment::Param(_))
}

/// Same kinds at the same positions and equal literals: two such patterns can never be told
/// apart, whatever the parameter names.
fn same_shape(a: &[Segment], b: &[Segment]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Segment::Literal(l), Segment::Literal(r)) => l == r,
            (Segment::Param(_), Segment::Param(_)) => true,
            _ => false,
        })
}

fn extract_params(pattern: &[Segment], segments: &[&str]) -> Params {
    let pairs = pattern
        .iter()
        .zip(segments)
        .filter_map(|(p, s)| match p {
            Segment::Param(name) => Some((*name, percent::decode(s, false).into_owned())),
            Segment::Literal(_) => None,
        })
        .collect();
    Params { pairs }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum R {
        ListSchemas,
        CreateSchema,
        GetSchema,
        DeleteSchema,
        LoadRows,
        ReadRows,
        FlowVersions,
        GetFlow,
        Root,
    }

    fn router() -> Router<R> {
        let mut router = Router::new();
        router
            .add(Method::GET, "/api/v1/schemas", R::ListSchemas)
            .add(Method::POST, "/api/v1/schemas", R::CreateSchema)
            .add(Method::GET, "/api/v1/schemas/{id}", R::GetSchema)
            .add(Method::DELETE, "/api/v1/schemas/{id}", R::DeleteSchema)
            .add(Method::POST, "/api/v1/schemas/{id}/data", R::LoadRows)
            .add(Method::GET, "/api/v1/schemas/{id}/data", R::ReadRows)
            // Registered before the literal on purpose: specificity, not order, decides.
            .add(Method::GET, "/api/v1/decision-flows/{id}", R::GetFlow)
            .add(Method::GET, "/api/v1/decision-flows/versions", R::FlowVersions)
            .add(Method::GET, "/", R::Root);
        router
    }

    fn ok(method: Method, path: &str) -> (R, Params) {
        router().match_route(&method, path).unwrap_or_else(|e| panic!("{method} {path}: {e:?}"))
    }

    #[test]
    fn literal_and_parameter_routes() {
        let cases = [
            (Method::GET, "/api/v1/schemas", R::ListSchemas, None),
            (Method::POST, "/api/v1/schemas", R::CreateSchema, None),
            (Method::GET, "/api/v1/schemas/s1", R::GetSchema, Some("s1")),
            (Method::DELETE, "/api/v1/schemas/s1", R::DeleteSchema, Some("s1")),
            (Method::POST, "/api/v1/schemas/s1/data", R::LoadRows, Some("s1")),
            (Method::GET, "/api/v1/schemas/s1/data/", R::ReadRows, Some("s1")),
            (Method::GET, "/", R::Root, None),
        ];
        for (method, path, expected, id) in cases {
            let (route, params) = ok(method, path);
            assert_eq!(route, expected, "{path}");
            assert_eq!(params.get("id"), id, "{path}");
        }
    }

    #[test]
    fn parameters_are_percent_decoded() {
        let (_, params) = ok(Method::GET, "/api/v1/schemas/caf%C3%A9%20%2F1");
        assert_eq!(params.get("id"), Some("café /1"));
        assert_eq!(params.iter().collect::<Vec<_>>(), vec![("id", "café /1")]);
        assert_eq!(params.get("other"), None);
    }

    #[test]
    fn literal_beats_parameter_regardless_of_order() {
        assert_eq!(ok(Method::GET, "/api/v1/decision-flows/versions").0, R::FlowVersions);
        assert_eq!(ok(Method::GET, "/api/v1/decision-flows/f1").0, R::GetFlow);
    }

    #[test]
    fn a_literal_path_is_its_own_resource_for_every_method() {
        let mut router = router();
        router.add(Method::DELETE, "/api/v1/decision-flows/{id}", R::DeleteSchema);
        let error = router.match_route(&Method::DELETE, "/api/v1/decision-flows/versions").unwrap_err();
        assert_eq!(error, RouteError::MethodNotAllowed { allowed: vec![Method::GET] });
        assert_eq!(router.match_route(&Method::DELETE, "/api/v1/decision-flows/f1").unwrap().0, R::DeleteSchema);
    }

    #[test]
    fn not_found_versus_method_not_allowed() {
        let router = router();
        let not_found = ["/api/v1/nope", "/api/v1/schemas//data", "api/v1/schemas", "/api/v1/schemas/a/b/c"];
        for path in not_found {
            assert_eq!(router.match_route(&Method::GET, path).unwrap_err(), RouteError::NotFound, "{path}");
        }
        let error = router.match_route(&Method::PUT, "/api/v1/schemas/s1").unwrap_err();
        assert_eq!(error, RouteError::MethodNotAllowed { allowed: vec![Method::GET, Method::DELETE] });
        let api = error.into_api_error(&Method::PUT, "/api/v1/schemas/s1");
        assert_eq!(api.status().as_u16(), 405);
        assert_eq!(api.message(), "PUT is not allowed on /api/v1/schemas/s1; allowed: GET, DELETE");
    }

    #[test]
    fn head_falls_back_to_get() {
        assert_eq!(ok(Method::HEAD, "/api/v1/schemas").0, R::ListSchemas);
    }

    #[test]
    fn too_many_segments_is_not_found() {
        let path = "/a".repeat(MAX_SEGMENTS + 1);
        assert_eq!(router().match_route(&Method::GET, &path).unwrap_err(), RouteError::NotFound);
    }

    #[test]
    fn routes_are_listed_in_registration_order() {
        let router = router();
        let listed: Vec<_> = router.routes().map(|(m, p, r)| (m.clone(), p, r)).collect();
        assert_eq!(listed.len(), 9);
        assert_eq!(listed[0], (Method::GET, "/api/v1/schemas", R::ListSchemas));
        assert_eq!(listed[4], (Method::POST, "/api/v1/schemas/{id}/data", R::LoadRows));
    }

    #[test]
    fn malformed_patterns_panic_with_the_reason() {
        let bad = [
            ("api/x", "must start"),
            ("/a//b", "empty segment"),
            ("/a/x{id}", "whole segment"),
            ("/a/{}", "bad parameter"),
            ("/a/{id}/{id}", "twice"),
        ];
        for (pattern, reason) in bad {
            let outcome = std::panic::catch_unwind(|| Router::new().add(Method::GET, pattern, 0u8).routes().count());
            let payload = outcome.expect_err(pattern);
            let message = payload.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(message.contains(reason), "{pattern}: {message}");
        }
    }

    #[test]
    fn duplicate_routes_panic() {
        let outcome = std::panic::catch_unwind(|| {
            let mut router = Router::new();
            router.add(Method::GET, "/a/{id}", 1u8).add(Method::GET, "/a/{name}", 2u8);
        });
        assert!(outcome.is_err());
    }
}
