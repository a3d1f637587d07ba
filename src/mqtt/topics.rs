//! Topic names, and which register a command topic addresses.

use std::collections::HashMap;

use crate::config::Config;

#[derive(Debug, Clone)]
pub struct Topics {
    base: String,
    /// State topic per device, per register.
    values: Vec<Vec<String>>,
    /// Command topic per device, per register.
    command_topics: Vec<Vec<String>>,
    /// Command topic -> (device, register), for every register, writable or not, so a
    /// set on a read-only one can be refused by name.
    commands: HashMap<String, (usize, usize)>,
}

impl Topics {
    pub fn new(config: &Config) -> Topics {
        let base = config.mqtt.base_topic.clone();
        let mut commands = HashMap::new();
        let mut command_topics = Vec::new();
        let values = config
            .devices
            .iter()
            .enumerate()
            .map(|(d, device)| {
                let mut device_commands = Vec::new();
                let values = device
                    .registers
                    .iter()
                    .enumerate()
                    .map(|(r, register)| {
                        let state = register
                            .topic
                            .clone()
                            .unwrap_or_else(|| format!("{base}/{}/{}", device.name, register.name));
                        let command = register
                            .command_topic
                            .clone()
                            .unwrap_or_else(|| format!("{state}/set"));
                        commands.insert(command.clone(), (d, r));
                        device_commands.push(command);
                        state
                    })
                    .collect();
                command_topics.push(device_commands);
                values
            })
            .collect();
        Topics {
            base,
            values,
            command_topics,
            commands,
        }
    }

    pub fn value(&self, device: usize, register: usize) -> &str {
        &self.values[device][register]
    }

    /// Where a register takes commands (whether it is writable or not).
    pub fn command_of(&self, device: usize, register: usize) -> &str {
        &self.command_topics[device][register]
    }

    /// Every value topic.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.values.iter().flatten().map(String::as_str)
    }

    pub fn availability(&self, device_name: &str) -> String {
        format!("{}/{device_name}/availability", self.base)
    }

    pub fn bridge_state(&self) -> String {
        format!("{}/bridge/state", self.base)
    }

    pub fn bridge_error(&self) -> String {
        format!("{}/bridge/error", self.base)
    }

    pub fn bridge_stats(&self) -> String {
        format!("{}/bridge/stats", self.base)
    }

    /// What to subscribe to: every `{base}/+/+/set` (so sets on unknown or read-only
    /// registers can be refused out loud) and the command topics outside that pattern.
    pub fn subscriptions(&self) -> Vec<String> {
        let wildcard = format!("{}/+/+/set", self.base);
        let mut topics: Vec<String> = self
            .commands
            .keys()
            .filter(|t| !self.under_wildcard(t))
            .cloned()
            .collect();
        topics.sort();
        topics.insert(0, wildcard);
        topics
    }

    fn under_wildcard(&self, topic: &str) -> bool {
        topic
            .strip_prefix(&self.base)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|rest| {
                let parts: Vec<&str> = rest.split('/').collect();
                parts.len() == 3 && parts[2] == "set"
            })
    }

    /// The register a command topic addresses.
    pub fn command(&self, topic: &str) -> Option<(usize, usize)> {
        self.commands.get(topic).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_custom_topics() {
        let text = crate::config::EXAMPLE.replace(
            "name = \"test\"\naddress = 3",
            "name = \"test\"\naddress = 3\ntopic = \"gladys/master/device/test/state\"\ncommand_topic = \"gladys/master/device/test/set\"",
        );
        let config = crate::config::parse(&text, std::path::Path::new("t")).unwrap();
        let topics = Topics::new(&config);
        assert_eq!(topics.value(0, 0), "rtu2mqtt/climate/temperature");
        assert_eq!(topics.value(0, 3), "gladys/master/device/test/state");
        assert_eq!(topics.command("rtu2mqtt/climate/pwm/set"), Some((0, 2)));
        assert_eq!(
            topics.command("gladys/master/device/test/set"),
            Some((0, 3))
        );
        assert_eq!(topics.command("rtu2mqtt/climate/nothing/set"), None);
        assert_eq!(topics.command_of(0, 2), "rtu2mqtt/climate/pwm/set");
        assert_eq!(topics.command_of(0, 3), "gladys/master/device/test/set");
        assert_eq!(
            topics.subscriptions(),
            ["rtu2mqtt/+/+/set", "gladys/master/device/test/set"]
        );
        assert_eq!(
            topics.availability("climate"),
            "rtu2mqtt/climate/availability"
        );
    }
}
