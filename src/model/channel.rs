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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlacementSpec {
    #[schemars(length(min = 1, max = 255), regex(pattern = r"\S"))]
    pub name: String,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub max_slots: u32,
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
        for (i, p) in self.placements.iter().enumerate() {
            non_blank(&mut errors, &format!("placements[{i}].name"), &p.name);
            if p.max_slots == 0 {
                errors.push(FieldError::new(format!("placements[{i}].maxSlots"), "must be at least 1"));
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
    fn unknown_coupling_mode_is_an_error() {
        let err = parse_json::<ChannelSpec>(br#"{ "name": "x", "couplingMode": "loose" }"#).unwrap_err();
        assert!(err.to_string().starts_with("couplingMode: unknown variant `loose`"), "{err}");
    }
}
