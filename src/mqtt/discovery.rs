//! Home Assistant MQTT discovery (SPEC "Home Assistant discovery"): the retained config of
//! every register's entity and of the bridge device's own, built from the config and the
//! topics alone. The bridge publishes them; nothing here talks to the broker.
//!
//! One config per entity under `{prefix}/{component}/{node}/{object}/config`, `node` being
//! the base topic as an id. Entities keep the gateway's plain-text topics: a value is its
//! state, `true`/`false` a bool's, and commands go to the `/set` topics (or the register's
//! own `command_topic`).

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::Topics;
use crate::codec::{self, ValueType};
use crate::config::{
    BRIDGE_CONNECTION, BRIDGE_DEVICE, BRIDGE_UTILISATION, Config, Device, Register, object_id,
    safe_id,
};

/// Home Assistant refuses a number whose step is finer than this.
const MIN_STEP: f64 = 1e-3;

/// The discovery configs of one register map.
#[derive(Debug, Clone)]
pub struct Discovery {
    prefix: String,
    node: String,
    /// Topic and JSON payload of every config.
    configs: Vec<(String, String)>,
    current: HashSet<String>,
}

impl Discovery {
    /// The configs of `config`'s map; `None` while discovery is off.
    pub fn new(config: &Config, topics: &Topics) -> Option<Discovery> {
        let ha = &config.homeassistant;
        if !ha.discovery {
            return None;
        }
        let builder = Builder::new(config, topics);
        let mut entities = vec![builder.connection(), builder.utilisation()];
        for (d, device) in config.devices.iter().enumerate() {
            for (r, register) in device.registers.iter().enumerate() {
                entities.push(builder.register(d, device, r, register));
            }
        }
        let configs: Vec<(String, String)> = entities
            .into_iter()
            .map(|(component, object, json)| {
                let topic = format!("{}/{component}/{}/{object}/config", ha.prefix, builder.node);
                (topic, Value::Object(json).to_string())
            })
            .collect();
        Some(Discovery {
            prefix: ha.prefix.clone(),
            current: configs.iter().map(|(topic, _)| topic.clone()).collect(),
            node: builder.node,
            configs,
        })
    }

    /// Every config, as topic and JSON payload, the bridge device's first.
    pub fn configs(&self) -> &[(String, String)] {
        &self.configs
    }

    /// Whether `topic` is the config of an entity of this map.
    pub fn is_current(&self, topic: &str) -> bool {
        self.current.contains(topic)
    }

    /// Where Home Assistant announces itself (`online`) after a start.
    pub fn status_topic(&self) -> String {
        format!("{}/status", self.prefix)
    }

    /// Every config under this node, of this map or an earlier one.
    pub fn node_filter(&self) -> String {
        format!("{}/+/{}/+/config", self.prefix, self.node)
    }

    /// Whether `topic` is a config under this node that this map no longer has: one to
    /// clear. A config of another node, or any other topic under the prefix, never is.
    pub fn is_stale(&self, topic: &str) -> bool {
        let Some(rest) = topic
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
        else {
            return false;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        matches!(parts.as_slice(), [_, node, _, "config"] if *node == self.node)
            && !self.is_current(topic)
    }
}

/// An entity's component, object id and config.
type Entity = (&'static str, String, Map<String, Value>);

/// What every config of one map shares.
struct Builder<'a> {
    config: &'a Config,
    topics: &'a Topics,
    node: String,
    origin: Value,
    bridge_state: String,
}

impl<'a> Builder<'a> {
    fn new(config: &'a Config, topics: &'a Topics) -> Builder<'a> {
        let mut origin = json!({
            "name": "rtu2mqtt",
            "sw_version": env!("CARGO_PKG_VERSION"),
        });
        let repository = env!("CARGO_PKG_REPOSITORY");
        if !repository.is_empty() {
            origin["support_url"] = json!(repository);
        }
        Builder {
            config,
            topics,
            node: safe_id(&config.mqtt.base_topic),
            origin,
            bridge_state: topics.bridge_state(),
        }
    }

    /// The keys of every entity: its ids, its device and where it comes from.
    fn entity(
        &self,
        component: &str,
        object: &str,
        name: &str,
        device: Value,
    ) -> Map<String, Value> {
        let unique_id = format!("{}_{object}", self.node);
        let mut entity = Map::new();
        entity.insert("name".into(), json!(name));
        entity.insert("unique_id".into(), json!(unique_id));
        // The entity id is the unique id, not one derived from the names (which HA would
        // suffix with `_2` where another integration has a `sensor.climate_temperature`).
        // `object_id` for HA before 2025.10, `default_entity_id` for later ones, which
        // warn about `object_id`; each drops the key it does not know.
        let slug = slug(&unique_id);
        if !slug.is_empty() {
            entity.insert("object_id".into(), json!(slug));
            entity.insert(
                "default_entity_id".into(),
                json!(format!("{component}.{slug}")),
            );
        }
        entity.insert("device".into(), device);
        entity.insert("origin".into(), self.origin.clone());
        entity.insert("qos".into(), json!(self.config.mqtt.qos));
        entity
    }

    fn availability(topic: &str) -> Value {
        json!({
            "topic": topic,
            "payload_available": "online",
            "payload_not_available": "offline",
        })
    }

    fn bridge_device(&self) -> Value {
        json!({
            "identifiers": [format!("{}_{BRIDGE_DEVICE}", self.node)],
            "name": format!("{} bridge", self.config.mqtt.base_topic),
            "manufacturer": "rtu2mqtt",
            "model": "Modbus to MQTT bridge",
            "sw_version": env!("CARGO_PKG_VERSION"),
        })
    }

    /// The broker connection: `online`/`offline` on `bridge/state`. It has no availability
    /// of its own, so that `offline` shows as disconnected rather than unavailable.
    fn connection(&self) -> Entity {
        let component = "binary_sensor";
        let mut entity = self.entity(
            component,
            BRIDGE_CONNECTION,
            "Connection state",
            self.bridge_device(),
        );
        entity.insert("state_topic".into(), json!(self.bridge_state));
        entity.insert("payload_on".into(), json!("online"));
        entity.insert("payload_off".into(), json!("offline"));
        entity.insert("device_class".into(), json!("connectivity"));
        entity.insert("entity_category".into(), json!("diagnostic"));
        (component, BRIDGE_CONNECTION.to_owned(), entity)
    }

    /// The share of time the line was busy, from `bridge/stats` (a fraction there).
    fn utilisation(&self) -> Entity {
        let component = "sensor";
        let mut entity = self.entity(
            component,
            BRIDGE_UTILISATION,
            "Line utilisation",
            self.bridge_device(),
        );
        entity.insert("state_topic".into(), json!(self.topics.bridge_stats()));
        entity.insert(
            "value_template".into(),
            json!("{{ (value_json.bus.utilisation * 100) | round(1) }}"),
        );
        entity.insert("unit_of_measurement".into(), json!("%"));
        entity.insert("state_class".into(), json!("measurement"));
        entity.insert("entity_category".into(), json!("diagnostic"));
        entity.insert(
            "availability".into(),
            json!([Self::availability(&self.bridge_state)]),
        );
        (component, BRIDGE_UTILISATION.to_owned(), entity)
    }

    fn register(&self, d: usize, device: &Device, r: usize, register: &Register) -> Entity {
        let codec = &register.codec;
        let is_bool = codec.kind == ValueType::Bool;
        let is_text = codec.kind == ValueType::String;
        let texts: Option<Vec<&str>> = codec.values.as_ref().map(|values| {
            values
                .entries()
                .iter()
                .map(|(_, text)| text.as_str())
                .collect()
        });
        let component = match (register.writable, is_bool, is_text, texts.is_some()) {
            (false, true, ..) => "binary_sensor",
            (false, ..) => "sensor",
            (true, true, ..) => "switch",
            (true, _, true, _) => "text",
            (true, _, _, true) => "select",
            (true, ..) => "number",
        };
        let object = object_id(&device.name, &register.name);
        let mut device_block = json!({
            "identifiers": [format!("{}_{}", self.node, safe_id(&device.name))],
            "name": device.name,
            "via_device": format!("{}_{BRIDGE_DEVICE}", self.node),
        });
        if let Some(manufacturer) = &device.homeassistant.manufacturer {
            device_block["manufacturer"] = json!(manufacturer);
        }
        if let Some(model) = &device.homeassistant.model {
            device_block["model"] = json!(model);
        }
        let mut entity = self.entity(component, &object, &register.name, device_block);
        entity.insert("state_topic".into(), json!(self.topics.value(d, r)));
        entity.insert(
            "availability".into(),
            json!([
                Self::availability(&self.bridge_state),
                Self::availability(&self.topics.availability(&device.name)),
            ]),
        );
        entity.insert("availability_mode".into(), json!("all"));
        let options = &register.homeassistant;
        let given = [
            ("unit_of_measurement", &register.unit_of_measurement),
            ("device_class", &options.device_class),
            ("state_class", &options.state_class),
        ];
        for (key, value) in given {
            // Home Assistant refuses an enumeration with either (`check` warns).
            let measured = matches!(key, "unit_of_measurement" | "state_class");
            if texts.is_some() && measured {
                continue;
            }
            if let Some(value) = value {
                entity.insert(key.into(), json!(value));
            }
        }
        if register.writable {
            entity.insert("command_topic".into(), json!(self.topics.command_of(d, r)));
        }
        if let Some(texts) = texts {
            // The texts the gateway publishes and takes; a sensor of them is an `enum`.
            entity.insert("options".into(), json!(texts));
            if !register.writable {
                entity.insert("device_class".into(), json!("enum"));
            }
        } else if is_text {
            if register.writable {
                // Two characters per register.
                entity.insert("max".into(), json!(2 * codec.length));
            }
        } else if is_bool {
            // What the gateway publishes for a bool, and takes as a command.
            for (key, payload) in [("payload_on", "true"), ("payload_off", "false")] {
                entity.insert(key.into(), json!(payload));
            }
            if register.writable {
                for (key, payload) in [("state_on", "true"), ("state_off", "false")] {
                    entity.insert(key.into(), json!(payload));
                }
            }
        } else if register.writable {
            let (min, max) = range(register);
            entity.insert("min".into(), json!(min));
            entity.insert("max".into(), json!(max));
            entity.insert(
                "step".into(),
                json!(register.codec.scale.abs().max(MIN_STEP)),
            );
            entity.insert("mode".into(), json!("box"));
        }
        for (key, value) in &options.extra {
            entity.insert(key.clone(), value.clone());
        }
        (component, object, entity)
    }
}

/// What a writable number may be set to: its `min`/`max`, else all its type holds after
/// scaling, without the float noise of the scaling (as the value would be published).
fn range(register: &Register) -> (f64, f64) {
    let codec = &register.codec;
    let scaled = |raw: f64| {
        let value = raw * codec.scale + codec.offset;
        codec
            .format(&codec::Value::Number(value))
            .parse()
            .unwrap_or(value)
    };
    let (raw_low, raw_high) = match codec.kind.integer_range() {
        // Exact enough: Home Assistant takes the bounds as floats anyway.
        Some((low, high)) => (low as f64, high as f64),
        None if codec.kind == codec::ValueType::F32 => (f64::from(f32::MIN), f64::from(f32::MAX)),
        None => (f64::MIN, f64::MAX),
    };
    let (a, b) = (scaled(raw_low), scaled(raw_high));
    (codec.min.unwrap_or(a.min(b)), codec.max.unwrap_or(a.max(b)))
}

/// An entity id's object part as Home Assistant accepts it: lower case letters, digits and
/// single underscores, none at either end.
fn slug(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    words.join("_")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn discovery(text: &str) -> Discovery {
        let config = crate::config::parse(text, Path::new("t")).unwrap();
        Discovery::new(&config, &Topics::new(&config)).expect("discovery on")
    }

    fn example_on() -> String {
        crate::config::EXAMPLE.replace("discovery = false", "discovery = true")
    }

    /// The config published on `topic`, parsed.
    fn config(discovery: &Discovery, topic: &str) -> Value {
        let (_, payload) = discovery
            .configs()
            .iter()
            .find(|(t, _)| t == topic)
            .unwrap_or_else(|| panic!("no config on {topic}: {:?}", discovery.configs()));
        serde_json::from_str(payload).unwrap()
    }

    #[test]
    fn off_by_default() {
        let config = crate::config::parse(crate::config::EXAMPLE, Path::new("t")).unwrap();
        assert!(Discovery::new(&config, &Topics::new(&config)).is_none());
    }

    #[test]
    fn the_example_map_gives_one_config_per_register_and_two_for_the_bridge() {
        let discovery = discovery(&example_on());
        let topics: Vec<&str> = discovery
            .configs()
            .iter()
            .map(|(t, _)| t.as_str())
            .collect();
        assert_eq!(
            topics,
            [
                "homeassistant/binary_sensor/rtu2mqtt/bridge_connection_state/config",
                "homeassistant/sensor/rtu2mqtt/bridge_line_utilisation/config",
                "homeassistant/sensor/rtu2mqtt/climate_temperature/config",
                "homeassistant/sensor/rtu2mqtt/climate_humidity/config",
                "homeassistant/number/rtu2mqtt/climate_pwm/config",
                "homeassistant/sensor/rtu2mqtt/climate_test/config",
            ]
        );
        assert_eq!(discovery.status_topic(), "homeassistant/status");
        assert_eq!(discovery.node_filter(), "homeassistant/+/rtu2mqtt/+/config");
    }

    fn origin() -> Value {
        json!({"name": "rtu2mqtt", "sw_version": env!("CARGO_PKG_VERSION")})
    }

    fn availability() -> Value {
        json!([
            {"topic": "rtu2mqtt/bridge/state", "payload_available": "online", "payload_not_available": "offline"},
            {"topic": "rtu2mqtt/climate/availability", "payload_available": "online", "payload_not_available": "offline"},
        ])
    }

    #[test]
    fn a_read_only_number_is_a_sensor_of_its_device() {
        let temperature = config(
            &discovery(&example_on()),
            "homeassistant/sensor/rtu2mqtt/climate_temperature/config",
        );
        assert_eq!(
            temperature,
            json!({
                "name": "temperature",
                "unique_id": "rtu2mqtt_climate_temperature",
                "object_id": "rtu2mqtt_climate_temperature",
                "default_entity_id": "sensor.rtu2mqtt_climate_temperature",
                "state_topic": "rtu2mqtt/climate/temperature",
                "unit_of_measurement": "°C",
                "device_class": "temperature",
                "state_class": "measurement",
                "availability": availability(),
                "availability_mode": "all",
                "device": {
                    "identifiers": ["rtu2mqtt_climate"],
                    "name": "climate",
                    "via_device": "rtu2mqtt_bridge",
                },
                "origin": origin(),
                "qos": 1,
            })
        );
    }

    #[test]
    fn a_writable_number_is_a_number_box_with_its_range_and_the_scale_as_step() {
        let pwm = config(
            &discovery(&example_on()),
            "homeassistant/number/rtu2mqtt/climate_pwm/config",
        );
        assert_eq!(pwm["command_topic"], "rtu2mqtt/climate/pwm/set");
        assert_eq!(pwm["state_topic"], "rtu2mqtt/climate/pwm");
        assert_eq!(pwm["min"], 0.0);
        assert_eq!(pwm["max"], 1023.0);
        assert_eq!(pwm["step"], 1.0);
        assert_eq!(pwm["mode"], "box");
        assert_eq!(pwm["unique_id"], "rtu2mqtt_climate_pwm");
        assert_eq!(pwm["default_entity_id"], "number.rtu2mqtt_climate_pwm");
        assert_eq!(pwm["availability"], availability());
        assert_eq!(pwm["availability_mode"], "all");
        assert_eq!(pwm["device"]["identifiers"], json!(["rtu2mqtt_climate"]));
        assert!(pwm.get("unit_of_measurement").is_none());
    }

    #[test]
    fn without_min_and_max_a_number_spans_its_type_after_scaling() {
        let text = example_on().replace(
            "name = \"test\"\naddress = 3\ntype = \"i16\"",
            "name = \"test\"\naddress = 3\ntype = \"i16\"\nwritable = true\nscale = 0.5\noffset = 10\nmin = -5",
        );
        let test = config(
            &discovery(&text),
            "homeassistant/number/rtu2mqtt/climate_test/config",
        );
        assert_eq!(test["min"], -5.0);
        assert_eq!(test["max"], 32767.0 * 0.5 + 10.0);
        assert_eq!(test["step"], 0.5);
        let text = example_on()
            .replace("name = \"pwm\"", "name = \"pwm\"\nscale = -0.0001")
            .replace("min = 0\nmax = 1023\n", "");
        let pwm = config(
            &discovery(&text),
            "homeassistant/number/rtu2mqtt/climate_pwm/config",
        );
        assert_eq!(
            (pwm["min"].as_f64(), pwm["max"].as_f64()),
            (Some(-6.5535), Some(0.0))
        );
        assert_eq!(
            pwm["step"], MIN_STEP,
            "the finest step Home Assistant takes"
        );
    }

    #[test]
    fn enumerations_are_selects_or_enum_sensors_strings_text_and_bits_switches() {
        let text = "[homeassistant]\ndiscovery = true\n[bus]\nport = \"/dev/null\"\n\
             [[device]]\nname = \"pump\"\nunit = 1\nregister = [\n\
             { name = \"mode\", address = 0, values = { 0 = \"off\", 1 = \"heat\", 2 = \"cool\" }, writable = true },\n\
             { name = \"state\", address = 1, values = { 0 = \"idle\", 1 = \"running\" }, unit_of_measurement = \"W\", state_class = \"measurement\" },\n\
             { name = \"serial\", address = 2, length = 4 },\n\
             { name = \"label\", address = 6, length = 8, writable = true },\n\
             { name = \"heating\", address = 14, bit = 3, writable = true },\n\
             { name = \"alarm\", address = 14, bit = 15 },\n]\n";
        let discovery = discovery(text);
        let at = |component: &str, register: &str| {
            config(
                &discovery,
                &format!("homeassistant/{component}/rtu2mqtt/pump_{register}/config"),
            )
        };
        let mode = at("select", "mode");
        assert_eq!(mode["options"], json!(["off", "heat", "cool"]));
        assert_eq!(mode["command_topic"], "rtu2mqtt/pump/mode/set");
        assert!(mode.get("device_class").is_none() && mode.get("min").is_none());
        let state = at("sensor", "state");
        assert_eq!(state["device_class"], "enum");
        assert_eq!(state["options"], json!(["idle", "running"]));
        // Home Assistant refuses an enum sensor with either.
        assert!(state.get("unit_of_measurement").is_none() && state.get("state_class").is_none());
        let serial = at("sensor", "serial");
        assert!(serial.get("options").is_none() && serial.get("unit_of_measurement").is_none());
        let label = at("text", "label");
        assert_eq!(label["max"], 16);
        assert_eq!(label["command_topic"], "rtu2mqtt/pump/label/set");
        assert_eq!(at("switch", "heating")["payload_on"], "true");
        assert_eq!(at("binary_sensor", "alarm")["payload_off"], "false");
    }

    #[test]
    fn bools_are_binary_sensors_and_switches_in_the_gateways_words() {
        let text = "[homeassistant]\ndiscovery = true\n[mqtt]\nbase_topic = \"site/b 2\"\nqos = 0\n\
             [bus]\nport = \"/dev/null\"\n[[device]]\nname = \"relays\"\nunit = 1\n\
             manufacturer = \"Acme\"\nmodel = \"R4\"\n\
             [[device.register]]\nname = \"out1\"\naddress = 0\ntable = \"coil\"\nwritable = true\n\
             device_class = \"outlet\"\ncommand_topic = \"plugs/one\"\n\
             [[device.register]]\nname = \"in1\"\naddress = 0\ntable = \"discrete\"\n\
             device_class = \"door\"\nhomeassistant = { icon = \"mdi:door\", name = \"Front door\", enabled_by_default = false }\n";
        let discovery = discovery(text);
        let switch = config(
            &discovery,
            "homeassistant/switch/site_b_2/relays_out1/config",
        );
        assert_eq!(switch["state_topic"], "site/b 2/relays/out1");
        assert_eq!(switch["command_topic"], "plugs/one");
        for (key, payload) in [
            ("payload_on", "true"),
            ("payload_off", "false"),
            ("state_on", "true"),
            ("state_off", "false"),
        ] {
            assert_eq!(switch[key], payload, "{key}");
        }
        assert_eq!(switch["device_class"], "outlet");
        assert_eq!(switch["unique_id"], "site_b_2_relays_out1");
        assert_eq!(switch["default_entity_id"], "switch.site_b_2_relays_out1");
        assert_eq!(switch["qos"], 0);
        assert_eq!(
            switch["device"],
            json!({
                "identifiers": ["site_b_2_relays"],
                "name": "relays",
                "manufacturer": "Acme",
                "model": "R4",
                "via_device": "site_b_2_bridge",
            })
        );
        assert_eq!(
            switch["availability"][1]["topic"],
            "site/b 2/relays/availability"
        );
        let door = config(
            &discovery,
            "homeassistant/binary_sensor/site_b_2/relays_in1/config",
        );
        assert_eq!(door["payload_on"], "true");
        assert_eq!(door["payload_off"], "false");
        assert!(door.get("command_topic").is_none() && door.get("state_on").is_none());
        assert_eq!(door["device_class"], "door");
        // The register's own table goes in as written, over the gateway's keys.
        assert_eq!(door["icon"], "mdi:door");
        assert_eq!(door["name"], "Front door");
        assert_eq!(door["enabled_by_default"], false);
    }

    #[test]
    fn the_bridge_device_shows_the_connection_and_the_line_utilisation_in_percent() {
        let discovery = discovery(&example_on());
        let bridge = json!({
            "identifiers": ["rtu2mqtt_bridge"],
            "name": "rtu2mqtt bridge",
            "manufacturer": "rtu2mqtt",
            "model": "Modbus to MQTT bridge",
            "sw_version": env!("CARGO_PKG_VERSION"),
        });
        let state = config(
            &discovery,
            "homeassistant/binary_sensor/rtu2mqtt/bridge_connection_state/config",
        );
        assert_eq!(
            state,
            json!({
                "name": "Connection state",
                "unique_id": "rtu2mqtt_bridge_connection_state",
                "object_id": "rtu2mqtt_bridge_connection_state",
                "default_entity_id": "binary_sensor.rtu2mqtt_bridge_connection_state",
                "state_topic": "rtu2mqtt/bridge/state",
                "payload_on": "online",
                "payload_off": "offline",
                "device_class": "connectivity",
                "entity_category": "diagnostic",
                "device": bridge,
                "origin": origin(),
                "qos": 1,
            })
        );
        let line = config(
            &discovery,
            "homeassistant/sensor/rtu2mqtt/bridge_line_utilisation/config",
        );
        assert_eq!(line["state_topic"], "rtu2mqtt/bridge/stats");
        assert_eq!(line["unit_of_measurement"], "%");
        assert_eq!(line["state_class"], "measurement");
        assert_eq!(line["device"], bridge);
        assert_eq!(line["availability"], json!([availability()[0]]));
        assert_eq!(
            line["value_template"],
            "{{ (value_json.bus.utilisation * 100) | round(1) }}"
        );
    }

    #[test]
    fn only_configs_of_this_node_that_left_the_map_are_stale() {
        let discovery = discovery(&example_on());
        let ours = "homeassistant/sensor/rtu2mqtt/climate_temperature/config";
        assert!(discovery.is_current(ours) && !discovery.is_stale(ours));
        assert!(discovery.is_stale("homeassistant/sensor/rtu2mqtt/climate_gone/config"));
        assert!(discovery.is_stale("homeassistant/number/rtu2mqtt/climate_temperature/config"));
        for foreign in [
            "homeassistant/sensor/other_node/climate_gone/config",
            "homeassistant/sensor/climate_gone/config",
            "homeassistant/sensor/rtu2mqtt/climate_gone/state",
            "homeassistant/status",
            "homeassistant2/sensor/rtu2mqtt/climate_gone/config",
            "rtu2mqtt/climate/temperature",
        ] {
            assert!(!discovery.is_stale(foreign), "{foreign}");
        }
    }

    #[test]
    fn entity_ids_are_what_home_assistant_accepts() {
        assert_eq!(
            slug("rtu2mqtt_climate_temperature"),
            "rtu2mqtt_climate_temperature"
        );
        assert_eq!(slug("Site-B__2_x_"), "site_b_2_x");
        assert_eq!(slug("___"), "");
    }
}
