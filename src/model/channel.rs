//! Delivery channels (email, in-app, branch …) and their placements.

use serde::{Deserialize, Serialize};

use super::{non_blank, FieldError, Meta, ValidationError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelType {
    Email,
    Push,
    Sms,
    InApp,
    Web,
    Webhook,
    Whatsapp,
    DirectMail,
}

impl ChannelType {
    pub fn name(self) -> &'static str {
        match self {
            ChannelType::Email => "email",
            ChannelType::Push => "push",
            ChannelType::Sms => "sms",
            ChannelType::InApp => "in_app",
            ChannelType::Web => "web",
            ChannelType::Webhook => "webhook",
            ChannelType::Whatsapp => "whatsapp",
            ChannelType::DirectMail => "direct_mail",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelStatus {
    Draft,
    Active,
    Paused,
    Archived,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CouplingMode {
    Partial,
    Atomic,
}

fn email() -> ChannelType {
    ChannelType::Email
}
fn draft() -> ChannelStatus {
    ChannelStatus::Draft
}
fn partial() -> CouplingMode {
    CouplingMode::Partial
}
fn one() -> u32 {
    1
}

/// The most offers one placement shows: as many as a request's `limit` may ask for.
pub const MAX_SLOTS: u32 = 50;

fn banner() -> String {
    "banner".to_string()
}

/// Whether a placement takes part in decisions (`inactive` ones are left out).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PlacementStatus {
    #[default]
    Active,
    Inactive,
}

/// A slot group of a channel (`hero_banner`, `sidebar` …). A `/recommend` for a channel
/// with placements fills each with up to `maxSlots` offers, no offer in two of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlacementSpec {
    #[schemars(length(min = 1, max = 255), regex(pattern = r"\S"))]
    pub name: String,
    /// How requests name it (`"placement": "hero_banner"`); unique within the channel.
    /// Default: the name in lower case, with `_` for every run of other characters.
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 50))]
    pub max_slots: u32,
    #[serde(default = "banner")]
    pub slot_type: String,
    #[serde(default)]
    pub status: PlacementStatus,
}

impl PlacementSpec {
    /// The checks of one placement on its own, with `path` before each field (its key's
    /// uniqueness is the channel's to check).
    pub fn check(&self, path: &str, errors: &mut Vec<FieldError>) {
        non_blank(errors, &format!("{path}name"), &self.name);
        if !(1..=MAX_SLOTS).contains(&self.max_slots) {
            let message = format!("must be between 1 and {MAX_SLOTS}, got {}", self.max_slots);
            errors.push(FieldError::new(format!("{path}maxSlots"), message));
        }
    }

    /// The key requests name it by: `key`, or one derived from the name.
    pub fn key(&self) -> String {
        match &self.key {
            Some(k) => k.clone(),
            None => {
                let mut key = String::new();
                for c in self.name.trim().chars() {
                    if c.is_alphanumeric() {
                        key.extend(c.to_lowercase());
                    } else if !key.ends_with('_') {
                        key.push('_');
                    }
                }
                key.trim_matches('_').to_string()
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelSpec {
    #[schemars(length(min = 1, max = 255), regex(pattern = r"\S"))]
    pub name: String,
    #[serde(default = "email")]
    pub channel_type: ChannelType,
    #[serde(default = "draft")]
    pub status: ChannelStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default = "partial")]
    pub coupling_mode: CouplingMode,
    #[serde(default)]
    pub placements: Vec<PlacementSpec>,
}

impl ChannelSpec {
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = Vec::new();
        non_blank(&mut errors, "name", &self.name);
        let mut keys = std::collections::HashSet::new();
        for (i, p) in self.placements.iter().enumerate() {
            p.check(&format!("placements[{i}]."), &mut errors);
            let key = p.key();
            if key.is_empty() {
                errors.push(FieldError::new(format!("placements[{i}].key"), "must not be empty"));
            } else if !keys.insert(key.clone()) {
                let message = format!("`{key}` is already the key of another placement of this channel");
                errors.push(FieldError::new(format!("placements[{i}].key"), message));
            }
        }
        ValidationError::check(errors)
    }
}

/// A channel as stored and returned: its spec and the stored fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Channel {
    #[serde(flatten)]
    pub meta: Meta,
    #[serde(flatten)]
    pub spec: ChannelSpec,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_json;

    #[test]
    fn tutorial_channel_parses() {
        let spec: ChannelSpec =
            parse_json(br#"{ "name": "in_app", "status": "active", "couplingMode": "partial" }"#).unwrap();
        assert_eq!(spec.channel_type, ChannelType::Email);
        assert!(spec.validate().is_ok());
    }

    #[test]
    fn placement_keys_default_from_names_and_are_unique() {
        let spec: ChannelSpec = parse_json(
            br#"{ "name": "web", "placements": [{"name": "Hero banner"}, {"name": "Side bar", "maxSlots": 2}] }"#,
        )
        .unwrap();
        let keys: Vec<String> = spec.placements.iter().map(PlacementSpec::key).collect();
        assert_eq!(keys, ["hero_banner", "side_bar"]);
        assert_eq!(spec.placements[0].slot_type, "banner");
        assert!(spec.validate().is_ok());
        let twice: ChannelSpec =
            parse_json(br#"{ "name": "web", "placements": [{"name": "Hero"}, {"name": "x", "key": "hero"}] }"#)
                .unwrap();
        let err = twice.validate().unwrap_err().to_string();
        assert!(err.contains("placements[1].key") && err.contains("already the key"), "{err}");
        let zero: ChannelSpec =
            parse_json(br#"{ "name": "web", "placements": [{"name": "Hero", "maxSlots": 0}] }"#).unwrap();
        assert!(zero.validate().unwrap_err().to_string().contains("placements[0].maxSlots"));
    }

    #[test]
    fn unknown_coupling_mode_is_an_error() {
        let err = parse_json::<ChannelSpec>(br#"{ "name": "x", "couplingMode": "loose" }"#).unwrap_err();
        assert!(err.to_string().starts_with("couplingMode: unknown variant `loose`"), "{err}");
    }
}
