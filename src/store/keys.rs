//! Key layout helpers (the table is in the [module doc](super)).
//!
//! A key is `t/{tenant}/{kind}/{part}/{part}...`, each component escaped so it contains no `/`.
//! Every prefix ends in `/`, so tenant `a`'s prefix `t/a/` never matches tenant `ab`'s keys.

/// The entity kinds, one sub-prefix each under a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `t/{tenant}/meta` — the tenant record (no further parts).
    Meta,
    /// `t/{tenant}/key/{key_hash}` — an API key record.
    ApiKey,
    /// `t/{tenant}/schema/{id}`.
    Schema,
    /// `t/{tenant}/offer/{id}`.
    Offer,
    /// `t/{tenant}/rule/{id}`.
    Rule,
    /// `t/{tenant}/channel/{id}`.
    Channel,
    /// `t/{tenant}/flow/{id}` — flow JSON including its published versions.
    Flow,
    /// `t/{tenant}/row/{schema_id}/{row_key}` — a customer row.
    Row,
    /// `t/{tenant}/plugin/{name}` — rule-file source.
    Plugin,
    /// `t/{tenant}/interaction/{id}` — a decision log record.
    Interaction,
    /// `t/{tenant}/response/{id}`.
    Response,
    /// `t/{tenant}/idem/{idempotency_key}` — the first `respond` result for that key.
    Idem,
    /// `t/{tenant}/counter/{...}` — learning counters.
    Counter,
    /// `t/{tenant}/policy/{id}` — a contact policy.
    Policy,
    /// `t/{tenant}/journey/{id}`.
    Journey,
    /// `t/{tenant}/enrollment/{journey_id}/{id}` — a customer's place in a journey.
    Enrollment,
    /// `t/{tenant}/retained/{digest}` — what a flow was compiled from, or a set of uplift
    /// models, as decisions' receipts name it; `…/{digest}/retired` — since when nothing
    /// live uses it (Unix seconds).
    Retained,
}

impl Kind {
    /// Every kind, for parsing and tests.
    pub const ALL: [Kind; 17] = [
        Kind::Meta,
        Kind::ApiKey,
        Kind::Schema,
        Kind::Offer,
        Kind::Rule,
        Kind::Channel,
        Kind::Flow,
        Kind::Row,
        Kind::Plugin,
        Kind::Interaction,
        Kind::Response,
        Kind::Idem,
        Kind::Counter,
        Kind::Policy,
        Kind::Journey,
        Kind::Enrollment,
        Kind::Retained,
    ];

    /// The key segment naming this kind.
    pub fn segment(self) -> &'static str {
        match self {
            Kind::Meta => "meta",
            Kind::ApiKey => "key",
            Kind::Schema => "schema",
            Kind::Offer => "offer",
            Kind::Rule => "rule",
            Kind::Channel => "channel",
            Kind::Flow => "flow",
            Kind::Row => "row",
            Kind::Plugin => "plugin",
            Kind::Interaction => "interaction",
            Kind::Response => "response",
            Kind::Idem => "idem",
            Kind::Counter => "counter",
            Kind::Policy => "policy",
            Kind::Journey => "journey",
            Kind::Enrollment => "enrollment",
            Kind::Retained => "retained",
        }
    }

    fn from_segment(segment: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.segment() == segment)
    }
}

/// The key for `parts` of `kind` under `tenant`: `t/{tenant}/{kind}/{part}/...`, each component
/// escaped. `Kind::Meta` takes no parts.
pub fn key(tenant: &str, kind: Kind, parts: &[&str]) -> Vec<u8> {
    let mut out = kind_root(tenant, kind);
    for part in parts {
        out.push('/');
        escape_into(part, &mut out);
    }
    out.into_bytes()
}

/// The prefix of every key of `kind` under `tenant`: `t/{tenant}/{kind}/`.
pub fn prefix(tenant: &str, kind: Kind) -> Vec<u8> {
    sub_prefix(tenant, kind, &[])
}

/// The prefix of every key of `kind` under `tenant` whose first parts are `parts`, e.g. one
/// schema's rows: `sub_prefix(t, Kind::Row, &[schema_id])` → `t/{tenant}/row/{schema_id}/`.
pub fn sub_prefix(tenant: &str, kind: Kind, parts: &[&str]) -> Vec<u8> {
    let mut out = key(tenant, kind, parts);
    out.push(b'/');
    out
}

/// The prefix of all of `tenant`'s data: `t/{tenant}/`.
pub fn tenant_prefix(tenant: &str) -> Vec<u8> {
    let mut out = String::from("t/");
    escape_into(tenant, &mut out);
    out.push('/');
    out.into_bytes()
}

/// Keys under this prefix belong to one node of a cluster and are never replicated: what
/// it has applied of the cluster's streams, and the index of the records it mirrored.
pub const NODE_LOCAL_PREFIX: &[u8] = b"cluster/";

/// Where this node keeps the local position of another node's event-log record, by that
/// node's tag and the record's position there (big-endian: one node's records sort in
/// its log order, so the index grows at its end).
pub fn mirrored(node: u32, segment: u32, offset: u32) -> Vec<u8> {
    let mut out = [NODE_LOCAL_PREFIX, b"mirror/"].concat();
    out.extend(node.to_be_bytes());
    out.extend(segment.to_be_bytes());
    out.extend(offset.to_be_bytes());
    out
}

/// A key split back into its unescaped components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey {
    pub tenant: String,
    pub kind: Kind,
    /// The components after the kind, unescaped.
    pub parts: Vec<String>,
}

/// Splits a key built by [`key`] back into tenant, kind and parts; `None` if it is not one.
pub fn parse(key: &[u8]) -> Option<ParsedKey> {
    let text = std::str::from_utf8(key).ok()?;
    let mut components = text.split('/');
    if components.next()? != "t" {
        return None;
    }
    let tenant = unescape(components.next()?)?;
    let kind = Kind::from_segment(components.next()?)?;
    let parts = components.map(unescape).collect::<Option<Vec<_>>>()?;
    Some(ParsedKey { tenant, kind, parts })
}

/// The last component of `key`, unescaped (e.g. the entity id); `None` if the key is not UTF-8
/// or the component is badly escaped.
pub fn last_component(key: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(key).ok()?;
    unescape(text.rsplit('/').next()?)
}

/// Appends `component` with `%` → `%25` and `/` → `%2F`.
fn escape_into(component: &str, out: &mut String) {
    for ch in component.chars() {
        match ch {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            other => out.push(other),
        }
    }
}

/// Inverts [`escape_into`]; `None` on any `%` not followed by `25` or `2F`, or on a raw `/`.
fn unescape(component: &str) -> Option<String> {
    let mut out = String::with_capacity(component.len());
    let mut rest = component;
    while let Some(at) = rest.find(['%', '/']) {
        out.push_str(&rest[..at]);
        let escaped = rest.get(at..at + 3)?;
        out.push(match escaped {
            "%25" => '%',
            "%2F" => '/',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// `t/{tenant}/{kind}` without a trailing `/`.
fn kind_root(tenant: &str, kind: Kind) -> String {
    let mut out = String::from("t/");
    escape_into(tenant, &mut out);
    out.push('/');
    out.push_str(kind.segment());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn layout_matches_the_documented_table() {
        let cases: &[(Vec<u8>, &str)] = &[
            (key("acme", Kind::Meta, &[]), "t/acme/meta"),
            (key("acme", Kind::ApiKey, &["ab12"]), "t/acme/key/ab12"),
            (key("acme", Kind::Schema, &["s1"]), "t/acme/schema/s1"),
            (key("acme", Kind::Offer, &["o1"]), "t/acme/offer/o1"),
            (key("acme", Kind::Rule, &["r1"]), "t/acme/rule/r1"),
            (key("acme", Kind::Channel, &["web"]), "t/acme/channel/web"),
            (key("acme", Kind::Flow, &["f1"]), "t/acme/flow/f1"),
            (key("acme", Kind::Row, &["s1", "cust-9"]), "t/acme/row/s1/cust-9"),
            (key("acme", Kind::Plugin, &["churn.rules"]), "t/acme/plugin/churn.rules"),
            (key("acme", Kind::Interaction, &["i1"]), "t/acme/interaction/i1"),
            (key("acme", Kind::Response, &["p1"]), "t/acme/response/p1"),
            (key("acme", Kind::Idem, &["k1"]), "t/acme/idem/k1"),
            (key("acme", Kind::Counter, &["f1", "o1"]), "t/acme/counter/f1/o1"),
            (prefix("acme", Kind::Offer), "t/acme/offer/"),
            (sub_prefix("acme", Kind::Row, &["s1"]), "t/acme/row/s1/"),
            (tenant_prefix("acme"), "t/acme/"),
        ];
        for (built, expected) in cases {
            assert_eq!(std::str::from_utf8(built).unwrap(), *expected);
        }
    }

    #[test]
    fn escaping_round_trips() {
        for component in ["", "plain", "a/b", "%", "%2F", "a%2Fb/c%", "//", "ünïcode/ключ", "%25%"] {
            let built = key("t/x%", Kind::Row, &[component, "end"]);
            let parsed = parse(&built).unwrap_or_else(|| panic!("unparsable key for {component:?}"));
            assert_eq!(
                parsed,
                ParsedKey { tenant: "t/x%".into(), kind: Kind::Row, parts: vec![component.into(), "end".into()] }
            );
            assert_eq!(last_component(&key("a", Kind::Offer, &[component])).as_deref(), Some(component));
        }
    }

    #[test]
    fn slash_in_an_id_cannot_forge_another_key() {
        assert_eq!(text(key("a", Kind::Row, &["s1/x"])), "t/a/row/s1%2Fx");
        assert_ne!(key("a", Kind::Row, &["s1/x"]), key("a", Kind::Row, &["s1", "x"]));
        assert_eq!(text(tenant_prefix("a/offer")), "t/a%2Foffer/");
    }

    #[test]
    fn a_tenant_prefix_never_matches_a_longer_tenant_id() {
        let data = key("ab", Kind::Offer, &["o1"]);
        assert!(!data.starts_with(&tenant_prefix("a")));
        assert!(!data.starts_with(&prefix("a", Kind::Offer)));
        assert!(data.starts_with(&tenant_prefix("ab")));
        assert!(data.starts_with(&prefix("ab", Kind::Offer)));
    }

    #[test]
    fn a_kind_prefix_never_matches_another_kind_or_a_longer_id() {
        assert!(!key("a", Kind::Meta, &[]).starts_with(&prefix("a", Kind::Meta)));
        assert!(!key("a", Kind::Row, &["s10", "r"]).starts_with(&sub_prefix("a", Kind::Row, &["s1"])));
        assert!(key("a", Kind::Row, &["s1", "r"]).starts_with(&sub_prefix("a", Kind::Row, &["s1"])));
        for kind in Kind::ALL {
            assert_eq!(parse(&key("a", kind, &["x"])).map(|p| p.kind), Some(kind));
        }
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        for bad in [&b"x/a/meta"[..], b"t/a/nope/x", b"t/a/offer/%2", b"t/a/offer/%41", b"t", b"t/a", b"\xff"] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(last_component(b"t/a/offer/%zz"), None);
    }
}
