//! `[homeassistant]` and the discovery keys of devices and registers, and the ids Home
//! Assistant knows devices and entities by: built here, where the config is checked, so that
//! a map whose names would give two entities one id is refused like any other mistake.

use std::collections::{BTreeMap, HashMap};

use toml::Spanned;

use super::raw::RawHomeAssistant;
use super::{HomeAssistant, Validator};

const DEFAULT_PREFIX: &str = "homeassistant";

/// The bridge's own device within the node: `{node}_bridge`.
pub const BRIDGE_DEVICE: &str = "bridge";
/// Object ids of the bridge device's entities, beside those of the registers.
pub const BRIDGE_CONNECTION: &str = "bridge_connection_state";
pub const BRIDGE_UTILISATION: &str = "bridge_line_utilisation";

/// `text` with every character outside `[A-Za-z0-9_-]` replaced by `_`: what Home
/// Assistant's node and object ids (and MQTT client ids, everywhere) may hold.
pub fn safe_id(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The id of a register's entity within its node, in its discovery topic and entity id.
pub fn object_id(device: &str, register: &str) -> String {
    safe_id(&format!("{device}_{register}"))
}

/// A device's and its registers' names as written, for [`Validator::entity_ids`].
pub(super) type Names = (Spanned<String>, Vec<Spanned<String>>);

impl Validator<'_> {
    pub(super) fn homeassistant(&mut self, raw: Option<RawHomeAssistant>) -> HomeAssistant {
        let (discovery, prefix) = raw.map_or((None, None), |raw| (raw.discovery, raw.prefix));
        HomeAssistant {
            discovery: discovery.unwrap_or(false),
            prefix: self.topic_root(prefix, "prefix", DEFAULT_PREFIX),
        }
    }

    /// Refuses names that Home Assistant would see as one: `a.b` and `a_b` make one device
    /// id, and device `a_b` with register `c` the same entity as device `a` with `b_c`.
    /// Names that are simply equal are reported by the checks of names already.
    pub(super) fn entity_ids(&mut self, devices: &[Names]) {
        // The name of the bridge device itself is refused with or without discovery.
        let mut device_ids: HashMap<String, &str> = HashMap::new();
        let mut object_ids: HashMap<String, (&str, &str)> = HashMap::from([
            (
                BRIDGE_CONNECTION.to_owned(),
                ("", "the bridge's connection state"),
            ),
            (
                BRIDGE_UTILISATION.to_owned(),
                ("", "the bridge's line utilisation"),
            ),
        ]);
        for (device, registers) in devices {
            let id = safe_id(device.get_ref());
            match device_ids.get(&id) {
                Some(other) if *other != device.get_ref() => {
                    let other = other.to_string();
                    self.problem(
                        device.span(),
                        "name",
                        format!(
                            "Home Assistant would know this device as {id:?}, as it knows {other}: rename one"
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    device_ids.insert(id, device.get_ref());
                }
            }
            for register in registers {
                let id = object_id(device.get_ref(), register.get_ref());
                let this = (device.get_ref().as_str(), register.get_ref().as_str());
                match object_ids.get(&id) {
                    Some(other) if *other != this => {
                        let other = match other {
                            ("", what) => (*what).to_owned(),
                            (d, r) => format!("register {r:?} of device {d:?}"),
                        };
                        self.problem(
                            register.span(),
                            "name",
                            format!(
                                "Home Assistant would know this register as {id:?}, as it knows {other}: rename one"
                            ),
                        );
                    }
                    Some(_) => {}
                    None => {
                        object_ids.insert(id, this);
                    }
                }
            }
        }
    }

    /// A register's `homeassistant = { … }` as JSON, to merge into its discovery config.
    pub(super) fn extra(
        &mut self,
        raw: Option<BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut extra = serde_json::Map::new();
        for (key, value) in raw.unwrap_or_default() {
            match json(value.get_ref()) {
                Some(json) => {
                    extra.insert(key.get_ref().clone(), json);
                }
                None => self.problem(
                    value.span(),
                    key.get_ref(),
                    "JSON has no nan or infinity: write a number",
                ),
            }
        }
        extra
    }
}

/// A TOML value as JSON; dates become their text. None where a float is not finite.
fn json(value: &toml::Value) -> Option<serde_json::Value> {
    use serde_json::Value as Json;
    Some(match value {
        toml::Value::String(s) => Json::String(s.clone()),
        toml::Value::Integer(i) => Json::from(*i),
        toml::Value::Float(f) => Json::Number(serde_json::Number::from_f64(*f)?),
        toml::Value::Boolean(b) => Json::Bool(*b),
        toml::Value::Datetime(d) => Json::String(d.to_string()),
        toml::Value::Array(items) => Json::Array(items.iter().map(json).collect::<Option<_>>()?),
        toml::Value::Table(table) => Json::Object(
            table
                .iter()
                .map(|(k, v)| Some((k.clone(), json(v)?)))
                .collect::<Option<_>>()?,
        ),
    })
}
