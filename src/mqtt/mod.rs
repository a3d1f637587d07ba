//! The MQTT bridge: values to topics, `/set` topics to writes, availability and errors.
//!
//! The bridge never waits on the broker: it hands messages to rumqttc with `try_publish`
//! and keeps the current state itself, so that after every (re)connect it can publish all
//! of it again for new subscribers.
//!
//! A reload hands it a new config with the channels of the tasks built from it; the bridge
//! keeps the broker session, carries the state of what stayed over by name and clears the
//! retained topics of what went away.

pub mod command;
pub mod connection;
pub mod discovery;
pub mod topics;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rumqttc::{AsyncClient, QoS};
use serde::Serialize;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::bus::{BusError, BusHandle};
use crate::codec::Value;
use crate::config::{Config, PublishMode};
use crate::plan::ReadRequest;
use crate::scheduler::{Event, SchedulerStats};
use crate::stats::BusStats;
use command::Command;
use connection::{LinkEvent, Outbox};
use discovery::Discovery;
pub use topics::Topics;

/// What became of a command once the bus had it.
#[derive(Debug)]
pub struct Outcome {
    pub command: Command,
    pub topic: String,
    pub payload: String,
    pub result: Result<Value, CommandError>,
}

/// Why an accepted command came to nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A reload stopped the executor before the command's turn: its register may be gone.
    #[error("not written: the config was reloaded before its turn; send it again")]
    Withdrawn,
}

/// The JSON published on `bridge/error`.
#[derive(Debug, Serialize)]
struct ErrorReport<'a> {
    topic: &'a str,
    payload: Option<&'a str>,
    error: &'a str,
}

#[derive(Debug, Default, Clone)]
struct RegisterState {
    /// Latest value read (formatted again when it is published again on connect: no copy
    /// of the text per poll).
    latest: Option<Value>,
    /// Last value published and when.
    published: Option<(Value, String, Instant)>,
}

/// Where the bridge reads the counters it reports on `bridge/stats`.
#[derive(Debug, Clone)]
pub struct Monitors {
    pub bus: Arc<BusStats>,
    pub scheduler: Arc<SchedulerStats>,
}

/// A command for the executor: the command, its topic and its payload as quoted back.
pub type Accepted = (Command, String, String);

/// The channels between the bridge and the tasks built from one config.
#[derive(Debug)]
pub struct Channels {
    pub events: mpsc::UnboundedReceiver<Event>,
    pub outcomes: mpsc::UnboundedReceiver<Outcome>,
    pub commands: mpsc::Sender<Accepted>,
}

/// What a reload brings the bridge.
#[derive(Debug)]
pub enum Reload {
    /// A new config, with the channels of its tasks (the old ones have stopped).
    Apply {
        config: Arc<Config>,
        monitors: Monitors,
        channels: Channels,
    },
    /// The config file could not be used; the running config stays.
    Refused { file: PathBuf, error: String },
}

#[derive(Debug)]
pub struct Bridge {
    config: Arc<Config>,
    topics: Topics,
    client: AsyncClient,
    /// QoS 0 values that go out with the value published before them.
    outbox: Outbox,
    qos: QoS,
    value_qos: QoS,
    connected: watch::Sender<bool>,
    registers: Vec<Vec<RegisterState>>,
    availability: Vec<Option<bool>>,
    /// Why the port is down, while it is: said again to a broker that was not there when
    /// it happened (at boot the adapter and the broker may both be late).
    port_error: Option<String>,
    monitors: Monitors,
    /// Retained topics to clear (an empty retained message) once the broker is there.
    stale: Vec<String>,
    discovery: Option<Discovery>,
    /// Until when the retained discovery configs under our node are looked through for
    /// stale ones, after a connect.
    scan_until: Option<tokio::time::Instant>,
}

/// How long the retained discovery configs under our node are listened to after a connect:
/// the broker sends them at once; then the subscription ends, so that our own configs do
/// not come back each time they are published (zigbee2mqtt waits as long).
const DISCOVERY_SCAN: std::time::Duration = std::time::Duration::from_secs(5);

impl Bridge {
    pub fn new(
        config: Arc<Config>,
        client: AsyncClient,
        outbox: Outbox,
        monitors: Monitors,
    ) -> Bridge {
        let registers = config
            .devices
            .iter()
            .map(|d| vec![RegisterState::default(); d.registers.len()])
            .collect();
        let topics = Topics::new(&config);
        Bridge {
            discovery: Discovery::new(&config, &topics),
            scan_until: None,
            topics,
            qos: connection::qos(config.mqtt.qos),
            value_qos: connection::qos(config.mqtt.value_qos),
            availability: vec![None; config.devices.len()],
            port_error: None,
            registers,
            config,
            client,
            outbox,
            connected: watch::Sender::new(false),
            monitors,
            stale: Vec::new(),
        }
    }

    /// Whether the broker connection is up right now.
    pub fn connected(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
    }

    fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Runs until `shutdown`, then says `offline` and disconnects.
    pub async fn run(
        mut self,
        channels: Channels,
        mut link: mpsc::Receiver<LinkEvent>,
        mut reloads: mpsc::Receiver<Reload>,
        shutdown: CancellationToken,
    ) {
        let Channels {
            mut events,
            mut outcomes,
            mut commands,
        } = channels;
        let every = self.config.mqtt.stats_interval;
        let mut stats = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(event) = events.recv() => self.on_event(event),
                Some(outcome) = outcomes.recv() => self.on_outcome(outcome),
                _ = stats.tick() => self.on_stats(),
                () = tokio::time::sleep_until(
                    self.scan_until.unwrap_or_else(tokio::time::Instant::now)
                ), if self.scan_until.is_some() => self.end_discovery_scan(),
                Some(message) = link.recv() => match message {
                    LinkEvent::Connected => self.on_connect(),
                    LinkEvent::Disconnected => {
                        self.connected.send_replace(false);
                        self.status();
                    }
                    LinkEvent::Message { topic, payload, retained } => {
                        if !self.on_discovery_message(&topic, &payload, retained) {
                            self.on_command(&topic, &payload, &commands);
                        }
                    }
                },
                Some(reload) = reloads.recv() => match reload {
                    Reload::Apply { config, monitors, channels } => {
                        // The old tasks have stopped: what they said last still belongs
                        // to the old config.
                        while let Ok(event) = events.try_recv() {
                            self.on_event(event);
                        }
                        while let Ok(outcome) = outcomes.try_recv() {
                            self.on_outcome(outcome);
                        }
                        self.apply(config, monitors);
                        Channels { events, outcomes, commands } = channels;
                    }
                    Reload::Refused { file, error } => {
                        self.report_error(&file.display().to_string(), None, &error);
                    }
                },
            }
        }
        for device in &self.config.devices {
            self.publish(
                &self.topics.availability(&device.name),
                availability(false),
                true,
            );
        }
        self.publish(&self.topics.bridge_state(), "offline".to_owned(), true);
        if let Err(e) = self.client.try_disconnect() {
            tracing::debug!(error = %e, "disconnect not sent");
        }
    }

    fn publish(&self, topic: &str, payload: String, retain: bool) {
        self.send(topic, self.qos, payload, retain);
    }

    fn send(&self, topic: &str, qos: QoS, payload: String, retain: bool) {
        if !self.is_connected() {
            return;
        }
        tracing::trace!(topic, payload, "publish");
        if let Err(e) = self.client.try_publish(topic, qos, retain, payload) {
            tracing::warn!(topic, error = %e, "publish dropped: the MQTT queue is full");
        }
    }

    /// Switches to a new config: the state of registers and devices that stayed (by name)
    /// is kept, the retained topics of those that went away are cleared, and the
    /// subscriptions follow the new command topics.
    fn apply(&mut self, config: Arc<Config>, monitors: Monitors) {
        let topics = Topics::new(&config);
        let discovery = Discovery::new(&config, &topics);
        let mut added = 0;
        let registers: Vec<Vec<RegisterState>> = config
            .devices
            .iter()
            .map(|device| {
                device
                    .registers
                    .iter()
                    .map(|register| {
                        self.find(&device.name, &register.name)
                            .map(|(d, r)| self.registers[d][r].clone())
                            .unwrap_or_else(|| {
                                added += 1;
                                RegisterState::default()
                            })
                    })
                    .collect()
            })
            .collect();
        let availability = config
            .devices
            .iter()
            .map(|device| {
                self.config
                    .devices
                    .iter()
                    .position(|old| old.name == device.name)
                    .and_then(|d| self.availability[d])
            })
            .collect();

        let values: HashSet<&str> = topics.values().collect();
        let cleared: Vec<String> = self
            .topics
            .values()
            .filter(|topic| !values.contains(topic))
            .map(str::to_owned)
            .collect();
        let devices: HashSet<&str> = config.devices.iter().map(|d| d.name.as_str()).collect();
        let gone_devices: Vec<String> = self
            .config
            .devices
            .iter()
            .filter(|d| !devices.contains(d.name.as_str()))
            .map(|d| self.topics.availability(&d.name))
            .collect();
        tracing::info!(
            added,
            removed = cleared.len(),
            devices_removed = gone_devices.len(),
            "new register map in force"
        );
        self.stale.extend(cleared);
        self.stale.extend(gone_devices);
        self.switch_discovery(discovery);

        if self.is_connected() {
            let old: HashSet<String> = self.topics.subscriptions().into_iter().collect();
            let new: HashSet<String> = topics.subscriptions().into_iter().collect();
            for topic in old.difference(&new) {
                if let Err(e) = self.client.try_unsubscribe(topic) {
                    tracing::error!(topic, error = %e, "cannot unsubscribe");
                }
            }
            self.subscribe(new.difference(&old).cloned());
        }
        self.config = config;
        self.topics = topics;
        self.registers = registers;
        self.availability = availability;
        self.monitors = monitors;
        self.clear_stale();
        self.publish_configs();
        self.status();
    }

    /// Where a register is in the running config, by device and register name.
    fn find(&self, device: &str, register: &str) -> Option<(usize, usize)> {
        let d = self.config.devices.iter().position(|d| d.name == device)?;
        let r = self.config.devices[d]
            .registers
            .iter()
            .position(|r| r.name == register)?;
        Some((d, r))
    }

    fn clear_stale(&mut self) {
        if self.is_connected() {
            for topic in std::mem::take(&mut self.stale) {
                self.publish(&topic, String::new(), true);
            }
        }
    }

    fn subscribe(&self, topics: impl IntoIterator<Item = String>) {
        let filters: Vec<_> = topics
            .into_iter()
            .map(|t| rumqttc::SubscribeFilter::new(t, self.qos))
            .collect();
        if filters.is_empty() {
            return;
        }
        if let Err(e) = self.client.try_subscribe_many(filters) {
            tracing::error!(error = %e, "cannot subscribe to the command topics");
        }
    }

    fn report_error(&self, topic: &str, payload: Option<&str>, error: &str) {
        let report = ErrorReport {
            topic,
            payload,
            error,
        };
        match serde_json::to_string(&report) {
            Ok(json) => self.publish(&self.topics.bridge_error(), json, false),
            Err(e) => tracing::error!(error = %e, "cannot encode an error report"),
        }
    }

    fn on_connect(&mut self) {
        self.connected.send_replace(true);
        self.status();
        self.discovery_connected();
        self.publish(&self.topics.bridge_state(), "online".to_owned(), true);
        self.subscribe(self.topics.subscriptions());
        self.clear_stale();
        // A new session: everything current goes out again for new subscribers.
        self.publish_current();
        if let Some(error) = &self.port_error {
            self.report_port(error);
        }
    }

    /// Every value and availability known.
    fn publish_current(&mut self) {
        for d in 0..self.registers.len() {
            for r in 0..self.registers[d].len() {
                if let Some(value) = self.registers[d][r].latest {
                    let text = self.config.devices[d].registers[r].codec.format(value);
                    self.publish_value(d, r, value, text, false);
                }
            }
        }
        for (d, online) in self.availability.iter().enumerate() {
            if let Some(online) = online {
                let topic = self.topics.availability(&self.config.devices[d].name);
                self.publish(&topic, availability(*online), true);
            }
        }
    }

    /// After a connect, with discovery on: the configs go out before any value, so that
    /// Home Assistant has the entities when their states come; then the retained configs
    /// under our node are looked through for those of registers that left the map.
    fn discovery_connected(&mut self) {
        let Some(discovery) = &self.discovery else {
            return;
        };
        self.publish_configs();
        self.subscribe([discovery.status_topic(), discovery.node_filter()]);
        self.scan_until = Some(tokio::time::Instant::now() + DISCOVERY_SCAN);
    }

    /// The discovery of a new config: the configs of the old one that it lacks are cleared,
    /// and Home Assistant's status is listened to where the new one says.
    fn switch_discovery(&mut self, discovery: Option<Discovery>) {
        if self.scan_until.is_some() {
            self.end_discovery_scan();
        }
        let old = self.discovery.as_ref();
        self.stale.extend(
            old.iter()
                .flat_map(|old| old.configs())
                .map(|(topic, _)| topic)
                .filter(|topic| !discovery.as_ref().is_some_and(|new| new.is_current(topic)))
                .cloned(),
        );
        let status = |d: Option<&Discovery>| d.map(Discovery::status_topic);
        let (old, new) = (status(old), status(discovery.as_ref()));
        if old != new && self.is_connected() {
            if let Some(old) = old
                && let Err(e) = self.client.try_unsubscribe(&old)
            {
                tracing::error!(topic = old, error = %e, "cannot unsubscribe");
            }
            self.subscribe(new);
        }
        self.discovery = discovery;
    }

    fn end_discovery_scan(&mut self) {
        self.scan_until = None;
        // A lost session took its subscriptions with it.
        if let (Some(discovery), true) = (&self.discovery, self.is_connected())
            && let Err(e) = self.client.try_unsubscribe(discovery.node_filter())
        {
            tracing::warn!(error = %e, "cannot unsubscribe from the discovery configs");
        }
    }

    fn publish_configs(&self) {
        for (topic, payload) in self.discovery.iter().flat_map(Discovery::configs) {
            self.publish(topic, payload.clone(), true);
        }
    }

    /// Home Assistant's status and the discovery configs under our node; whether `topic`
    /// was one of them.
    fn on_discovery_message(&mut self, topic: &str, payload: &[u8], retained: bool) -> bool {
        let Some(discovery) = &self.discovery else {
            return false;
        };
        if topic == discovery.status_topic() {
            // Home Assistant says `online` once it has taken the retained configs (after
            // its discovery cool-down), so its entities are subscribed by now.
            if payload.eq_ignore_ascii_case(b"online") {
                tracing::info!(
                    "Home Assistant started: discovery configs and values published again"
                );
                self.publish_configs();
                self.publish_current();
            }
            return true;
        }
        if discovery.is_stale(topic) {
            // What the broker kept from an earlier map; an empty one is cleared already,
            // and a live one is not ours to judge.
            if retained && !payload.is_empty() {
                tracing::info!(
                    topic,
                    "discovery config of a register no longer in the map cleared"
                );
                self.publish(topic, String::new(), true);
            }
            return true;
        }
        discovery.is_current(topic)
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Values { device, values } => {
                self.port_error = None;
                // The first value published goes to the client, the others of the read
                // with it.
                let mut batched = false;
                for (register, value) in values {
                    batched |= self.on_value(device, register, value, batched);
                }
            }
            Event::Failed {
                device,
                registers,
                error,
            } => {
                let d = &self.config.devices[device];
                let names: Vec<&str> = registers
                    .iter()
                    .map(|r| d.registers[*r].name.as_str())
                    .collect();
                let message = format!("reading {} of {}: {error}", names.join(", "), d.name);
                let topic = format!("{}/{}", self.config.mqtt.base_topic, d.name);
                self.report_error(&topic, None, &message);
            }
            Event::PortDown(error) => {
                let error = error.to_string();
                self.report_port(&error);
                self.port_error = Some(error);
            }
            Event::Availability { device, online } => {
                let name = &self.config.devices[device].name;
                if online {
                    tracing::info!(device = %name, "device online");
                } else {
                    tracing::warn!(device = %name, "device offline");
                }
                self.availability[device] = Some(online);
                self.publish(&self.topics.availability(name), availability(online), true);
                self.status();
            }
        }
    }

    fn report_port(&self, error: &str) {
        let topic = format!("{}/bridge", self.config.mqtt.base_topic);
        self.report_error(&topic, None, error);
    }

    /// Keeps a new value and publishes it when due; whether it was published. `batched` as
    /// for [`Bridge::publish_value`].
    fn on_value(&mut self, device: usize, register: usize, value: Value, batched: bool) -> bool {
        let spec = &self.config.devices[device].registers[register];
        let text = spec.codec.format(value);
        let state = &mut self.registers[device][register];
        state.latest = Some(value);
        let due = match (&state.published, spec.publish) {
            (None, _) | (_, PublishMode::Always) => true,
            (Some((last, last_text, at)), PublishMode::Change) => {
                changed(*last, last_text, value, &text, spec.deadband)
                    || spec.republish.is_some_and(|every| at.elapsed() >= every)
            }
        };
        due && self.publish_value(device, register, value, text, batched)
    }

    /// Publishes a value; whether it went out (not while the broker is away). `batched`:
    /// another value of the same read has just been handed to the client, so at QoS 0 this
    /// one goes out with it (see [`Outbox`]).
    fn publish_value(
        &mut self,
        device: usize,
        register: usize,
        value: Value,
        text: String,
        batched: bool,
    ) -> bool {
        if !self.is_connected() {
            return false;
        }
        let topic = self.topics.value(device, register);
        let retain = self.config.mqtt.retain;
        if batched && self.value_qos == QoS::AtMostOnce {
            self.outbox.push(topic, text.clone(), retain);
        } else {
            self.send(topic, self.value_qos, text.clone(), retain);
        }
        self.registers[device][register].published = Some((value, text, Instant::now()));
        true
    }

    fn on_stats(&self) {
        let overruns = self.monitors.scheduler.overruns.swap(0, Ordering::Relaxed);
        let report = self
            .monitors
            .bus
            .take()
            .report(&self.config.devices, overruns);
        self.publish(&self.topics.bridge_stats(), report.to_string(), false);
    }

    /// The one-line status systemd shows (`systemctl status`).
    fn status(&self) {
        let online = self
            .availability
            .iter()
            .filter(|a| **a == Some(true))
            .count();
        let line = format!(
            "{online} of {} devices answering; broker {}",
            self.availability.len(),
            if self.is_connected() {
                "connected"
            } else {
                "unreachable"
            }
        );
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&line)]);
    }

    fn on_command(&self, topic: &str, payload: &[u8], commands: &mpsc::Sender<Accepted>) {
        let quoted = command::quote(payload);
        match command::parse(&self.config, self.topics.command(topic), topic, payload) {
            Ok(command) => {
                tracing::info!(topic, payload = %quoted, "command accepted");
                match commands.try_send((command, topic.to_owned(), quoted.clone())) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        self.refuse(topic, &quoted, "too many commands waiting for the bus");
                    }
                    Err(TrySendError::Closed(_)) => {
                        self.refuse(topic, &quoted, &CommandError::Withdrawn.to_string());
                    }
                }
            }
            Err(reason) => self.refuse(topic, &quoted, &reason),
        }
    }

    fn refuse(&self, topic: &str, payload: &str, reason: &str) {
        tracing::warn!(topic, payload, reason, "command refused");
        self.report_error(topic, Some(payload), reason);
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        let Outcome {
            command,
            topic,
            payload,
            result,
        } = outcome;
        match result {
            Ok(value) => {
                self.on_value(command.device, command.register, value, false);
            }
            Err(error) => {
                tracing::warn!(topic, payload, %error, "command failed");
                self.report_error(&topic, Some(&payload), &error.to_string());
            }
        }
    }
}

fn availability(online: bool) -> String {
    if online { "online" } else { "offline" }.to_owned()
}

/// Whether a new value differs from the last published one by more than the deadband.
fn changed(last: Value, last_text: &str, new: Value, new_text: &str, deadband: f64) -> bool {
    match (last, new) {
        (Value::Number(a), Value::Number(b)) if deadband > 0.0 => (a - b).abs() > deadband,
        _ => last_text != new_text,
    }
}

/// Executes accepted commands one at a time, in order: the write, then a read-back of the
/// register so the published value is the device's, not the request's. When `stop` fires,
/// the commands still waiting come back as [`CommandError::Withdrawn`] rather than vanish.
pub async fn execute_commands(
    config: Arc<Config>,
    bus: BusHandle,
    mut commands: mpsc::Receiver<Accepted>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    stop: CancellationToken,
) {
    loop {
        let (command, topic, payload) = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            Some(next) = commands.recv() => next,
            else => return,
        };
        let register = &config.devices[command.device].registers[command.register];
        let read_back = ReadRequest {
            unit: command.write.unit,
            table: register.table,
            address: register.address,
            count: register.width(),
        };
        let result = match bus.write(command.write.clone()).await {
            Ok(()) => bus.read_now(read_back).await.and_then(|data| {
                register
                    .codec
                    .decode(&data.words())
                    .ok_or_else(|| BusError::BadFrame("short read-back".to_owned()))
            }),
            Err(e) => Err(e),
        };
        let _ = outcomes.send(Outcome {
            command,
            topic,
            payload,
            result: result.map_err(CommandError::from),
        });
    }
    commands.close();
    while let Ok((command, topic, payload)) = commands.try_recv() {
        let _ = outcomes.send(Outcome {
            command,
            topic,
            payload,
            result: Err(CommandError::Withdrawn),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commands_still_waiting_when_the_executor_stops_are_withdrawn_not_lost() {
        let config = Arc::new(
            crate::config::parse(crate::config::EXAMPLE, std::path::Path::new("t")).unwrap(),
        );
        // No bus task runs: a command that reached the bus would never finish.
        let (bus, _not_running) = crate::bus::bus(&config);
        let (commands_tx, commands) = mpsc::channel(4);
        let (outcomes_tx, mut outcomes) = mpsc::unbounded_channel();
        for value in [b"1", b"2"] {
            let pwm = command::parse(&config, Some((0, 2)), "pwm/set", value).unwrap();
            commands_tx
                .try_send((pwm, "pwm/set".to_owned(), command::quote(value)))
                .unwrap();
        }
        let stop = CancellationToken::new();
        stop.cancel();
        execute_commands(config, bus, commands, outcomes_tx, stop).await;
        for _ in 0..2 {
            let outcome = outcomes.try_recv().unwrap();
            assert_eq!(outcome.result, Err(CommandError::Withdrawn));
        }
        assert!(commands_tx.is_closed());
    }

    #[test]
    fn deadband_decides_what_is_a_change() {
        let n = Value::Number;
        assert!(!changed(n(21.5), "21.5", n(21.5), "21.5", 0.0));
        assert!(changed(n(21.5), "21.5", n(21.6), "21.6", 0.0));
        assert!(!changed(n(21.5), "21.5", n(21.9), "21.9", 0.5));
        assert!(changed(n(21.5), "21.5", n(22.1), "22.1", 0.5));
        assert!(changed(
            Value::Bool(true),
            "true",
            Value::Bool(false),
            "false",
            0.5
        ));
    }
}
