//! Topic names, and what a topic the gateway subscribes to asks for: the topic rules in
//! one place.

use std::collections::HashMap;

use crate::config::{Config, Register};

/// The segment under `{base}` of the gateway's own topics (`{base}/bridge/state`, ...).
pub const BRIDGE_TOPIC: &str = "bridge";
/// Names a register cannot have: `{base}/{device}/{name}` is a topic of the device itself.
pub const RESERVED_REGISTER_NAMES: [&str; 3] = ["availability", "get", "poll"];

/// What a message on a subscribed topic asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A write to a register (device, register).
    Set(usize, usize),
    /// A read now of one register, or of the whole device.
    Get(usize, Option<usize>),
    /// A new poll interval for a device.
    Poll(usize),
}

/// The topics of a device of its own, under `{base}/{device}/`, and what each is for.
pub const DEVICE_TOPICS: [(&str, &str); 4] = [
    ("availability", "the availability"),
    ("get", "the reads on request"),
    ("poll", "the poll interval"),
    ("poll/set", "the poll interval commands"),
];

/// The topics of one register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterTopics {
    pub state: String,
    pub command: String,
    pub get: String,
}

impl RegisterTopics {
    /// Under `prefix`, `{base}/{device}`, unless the register gives its own.
    pub fn new(prefix: &str, register: &Register) -> RegisterTopics {
        let default = format!("{prefix}/{}", register.name);
        let state = register.topic.clone().unwrap_or_else(|| default.clone());
        let command = register
            .command_topic
            .clone()
            .unwrap_or_else(|| format!("{state}/set"));
        RegisterTopics {
            state,
            command,
            get: format!("{default}/get"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Topics {
    base: String,
    /// State topic per device, per register.
    values: Vec<Vec<String>>,
    /// Command topic per device, per register.
    commands: Vec<Vec<String>>,
    /// Every topic that asks for something. Commands cover every register, writable or
    /// not, so a set on a read-only one can be refused by name.
    routes: HashMap<String, Route>,
}

impl Topics {
    pub fn new(config: &Config) -> Topics {
        let base = config.mqtt.base_topic.clone();
        let mut routes = HashMap::new();
        let mut values = Vec::new();
        let mut commands = Vec::new();
        for (d, device) in config.devices.iter().enumerate() {
            let prefix = format!("{base}/{}", device.name);
            routes.insert(format!("{prefix}/get"), Route::Get(d, None));
            routes.insert(format!("{prefix}/poll/set"), Route::Poll(d));
            if let Some(topic) = &device.poll_command_topic {
                routes.insert(topic.clone(), Route::Poll(d));
            }
            let mut states = Vec::new();
            let mut device_commands = Vec::new();
            for (r, register) in device.registers.iter().enumerate() {
                let RegisterTopics {
                    state,
                    command,
                    get,
                } = RegisterTopics::new(&prefix, register);
                routes.insert(get, Route::Get(d, Some(r)));
                routes.insert(command.clone(), Route::Set(d, r));
                states.push(state);
                device_commands.push(command);
            }
            values.push(states);
            commands.push(device_commands);
        }
        Topics {
            base,
            values,
            commands,
            routes,
        }
    }

    pub fn value(&self, device: usize, register: usize) -> &str {
        &self.values[device][register]
    }

    /// Every value topic.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.values.iter().flatten().map(String::as_str)
    }

    /// Where commands to a register come.
    pub fn command_of(&self, device: usize, register: usize) -> &str {
        &self.commands[device][register]
    }

    /// Whether commands to a register come on its own state topic (ioBroker's scheme): the
    /// gateway then hears its own publishes there.
    pub fn shares_state_topic(&self, device: usize, register: usize) -> bool {
        self.value(device, register) == self.command_of(device, register)
    }

    pub fn availability(&self, device_name: &str) -> String {
        format!("{}/{device_name}/availability", self.base)
    }

    /// Where the poll interval in force is published.
    pub fn poll(&self, device_name: &str) -> String {
        format!("{}/{device_name}/poll", self.base)
    }

    fn bridge(&self, topic: &str) -> String {
        format!("{}/{BRIDGE_TOPIC}/{topic}", self.base)
    }

    pub fn bridge_state(&self) -> String {
        self.bridge("state")
    }

    pub fn bridge_error(&self) -> String {
        self.bridge("error")
    }

    pub fn bridge_stats(&self) -> String {
        self.bridge("stats")
    }

    /// The topic under which errors about a device as a whole are reported.
    pub fn device(&self, device_name: &str) -> String {
        format!("{}/{device_name}", self.base)
    }

    /// The topic under which errors about the port are reported.
    pub fn bridge_topic(&self) -> String {
        format!("{}/{BRIDGE_TOPIC}", self.base)
    }

    /// The wildcards under `{base}` (so requests for unknown or read-only registers can be
    /// refused out loud) and the topics outside them.
    pub fn subscriptions(&self) -> Vec<String> {
        let wildcards = self.wildcards();
        let mut topics: Vec<String> = self
            .routes
            .keys()
            .filter(|topic| !wildcards.iter().any(|w| matches(w, topic)))
            .cloned()
            .collect();
        topics.sort();
        wildcards.into_iter().chain(topics).collect()
    }

    fn wildcards(&self) -> Vec<String> {
        let base = &self.base;
        vec![
            format!("{base}/+/+/set"),
            format!("{base}/+/+/get"),
            format!("{base}/+/get"),
        ]
    }

    /// What a message on `topic` asks for; `None` for a topic under a wildcard that names
    /// nothing configured.
    pub fn route(&self, topic: &str) -> Option<Route> {
        self.routes.get(topic).copied()
    }
}

/// Whether a topic matches a filter with single-level wildcards.
fn matches(filter: &str, topic: &str) -> bool {
    let (mut filter, mut topic) = (filter.split('/'), topic.split('/'));
    loop {
        match (filter.next(), topic.next()) {
            (None, None) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_custom_and_shared_topics_and_what_they_ask_for() {
        let text = crate::config::EXAMPLE
            .replace(
                "name = \"test\"\naddress = 3",
                "name = \"test\"\naddress = 3\ntopic = \"gladys/master/device/test/state\"\ncommand_topic = \"gladys/device/test/state\"",
            )
            .replace(
                "name = \"pwm\"\naddress = 2",
                "name = \"pwm\"\naddress = 2\ntopic = \"modbusgateway/led\"\ncommand_topic = \"modbusgateway/led\"",
            )
            .replace(
                "poll = \"2s\"",
                "poll = \"2s\"\npoll_command_topic = \"modbusgateway/send_interval\"",
            );
        let config = crate::config::parse(&text, std::path::Path::new("t")).unwrap();
        let topics = Topics::new(&config);
        assert_eq!(topics.value(0, 0), "rtu2mqtt/climate/temperature");
        assert_eq!(topics.value(0, 3), "gladys/master/device/test/state");
        let route = |topic| topics.route(topic);
        assert_eq!(
            route("rtu2mqtt/climate/temperature/set"),
            Some(Route::Set(0, 0))
        );
        assert_eq!(route("gladys/device/test/state"), Some(Route::Set(0, 3)));
        assert_eq!(route("modbusgateway/led"), Some(Route::Set(0, 2)));
        assert_eq!(
            route("rtu2mqtt/climate/pwm/get"),
            Some(Route::Get(0, Some(2)))
        );
        assert_eq!(route("rtu2mqtt/climate/get"), Some(Route::Get(0, None)));
        assert_eq!(route("rtu2mqtt/climate/poll/set"), Some(Route::Poll(0)));
        assert_eq!(route("modbusgateway/send_interval"), Some(Route::Poll(0)));
        assert_eq!(route("rtu2mqtt/climate/nothing/set"), None);
        assert_eq!(route("rtu2mqtt/climate/temperature"), None);
        assert!(topics.shares_state_topic(0, 2));
        assert!(!topics.shares_state_topic(0, 0));
        assert!(!topics.shares_state_topic(0, 3));
        assert_eq!(topics.command_of(0, 2), "modbusgateway/led");
        assert_eq!(topics.command_of(0, 3), "gladys/device/test/state");
        assert_eq!(topics.command_of(0, 0), "rtu2mqtt/climate/temperature/set");
        assert_eq!(
            topics.subscriptions(),
            [
                "rtu2mqtt/+/+/set",
                "rtu2mqtt/+/+/get",
                "rtu2mqtt/+/get",
                "gladys/device/test/state",
                "modbusgateway/led",
                "modbusgateway/send_interval"
            ]
        );
        assert_eq!(
            topics.availability("climate"),
            "rtu2mqtt/climate/availability"
        );
        assert_eq!(topics.poll("climate"), "rtu2mqtt/climate/poll");
    }

    #[test]
    fn single_level_wildcards() {
        assert!(matches("a/+/+/set", "a/b/c/set"));
        assert!(!matches("a/+/+/set", "a/b/set"));
        assert!(!matches("a/+/get", "a/b/c/get"));
        assert!(matches("a/+/get", "a/b/get"));
    }
}
