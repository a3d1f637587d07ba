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
pub mod executor;
pub mod topics;

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, QoS};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::codec::Value;
use crate::config::{Config, PublishMode};
use crate::scheduler::{Event, SchedulerStats};
use crate::stats::BusStats;
use connection::{LinkEvent, Outbox};
use discovery::Discovery;
use executor::{Action, CommandError, Outcome, Queue, Queued, Request};
use topics::Route;
pub use topics::Topics;

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
    /// Values published lately on a topic that is also the register's command topic: what
    /// comes back there soon after is their echo (ours, or another client's), no command.
    echoes: VecDeque<(String, Instant)>,
    /// On a shared state and command topic: the payloads of the commands accepted for it
    /// and not yet done (waiting or on the bus).
    commanded: Vec<String>,
}

/// How long after subscribing retained messages on a shared state and command topic are
/// taken for what the subscription brings: the states kept, no commands.
const SUBSCRIBE_REPLAY: Duration = Duration::from_secs(5);

/// Recent publishes kept per register; older ones are forgotten.
const ECHOES_KEPT: usize = 8;
/// How long after a publish its value coming back is taken for an echo. The broker returns
/// our own within milliseconds, and ioBroker's adapter its copy (`ack=true`) as fast; a
/// command for a value published this recently is taken for an echo too (see README).
const ECHO_WAIT: Duration = Duration::from_secs(2);

impl RegisterState {
    /// Whether a message on the register's shared state and command topic is a value
    /// published there in the last [`ECHO_WAIT`] coming back (ours, and ioBroker's adapter
    /// sending states back with `ack` — the copy of an older value may come after a newer
    /// one, and must not be written back), or the value last published there (ioBroker
    /// replays its states when it reconnects), or a command still being carried out
    /// (ioBroker's adapter sends its own command back as the state within milliseconds,
    /// before the device has it): then it is no command.
    fn is_own_state(&mut self, text: &str, value: Option<&Value>) -> bool {
        if self.commanded.iter().any(|c| c == text) {
            return true;
        }
        self.echoes.retain(|(_, at)| at.elapsed() < ECHO_WAIT);
        if self.echoes.iter().any(|(echo, _)| echo == text) {
            return true;
        }
        match (&self.published, value) {
            (Some((last, last_text, _)), value) => last_text == text || value == Some(last),
            (None, _) => false,
        }
    }
}

/// Where the bridge reads the counters it reports on `bridge/stats`.
#[derive(Debug, Clone)]
pub struct Monitors {
    pub bus: Arc<BusStats>,
    pub scheduler: Arc<SchedulerStats>,
}

/// The channels between the bridge and the tasks built from one config.
#[derive(Debug)]
pub struct Channels {
    pub events: mpsc::UnboundedReceiver<Event>,
    pub outcomes: mpsc::UnboundedReceiver<Outcome>,
    pub requests: Arc<Queue>,
    /// New poll intervals for the scheduler (device index, interval).
    pub intervals: mpsc::UnboundedSender<(usize, Duration)>,
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
    /// Poll intervals set at run time, per device; `None` keeps the configured one.
    intervals: Vec<Option<Duration>>,
    /// Registers the devices refuse to read, as (device, register).
    set_aside: BTreeSet<(usize, usize)>,
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
    /// When subscriptions were last made (a connect, a reload): the retained messages a
    /// subscription brings come soon after.
    subscribed_at: Instant,
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
            subscribed_at: Instant::now(),
            topics,
            qos: connection::qos(config.mqtt.qos),
            value_qos: connection::qos(config.mqtt.value_qos),
            availability: vec![None; config.devices.len()],
            intervals: vec![None; config.devices.len()],
            set_aside: BTreeSet::new(),
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
            mut requests,
            mut intervals,
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
                            self.on_message(&topic, &payload, retained, &requests, &intervals);
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
                        Channels { events, outcomes, requests, intervals } = channels;
                        self.apply(config, monitors, &intervals);
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
    fn apply(
        &mut self,
        config: Arc<Config>,
        monitors: Monitors,
        scheduler: &mpsc::UnboundedSender<(usize, Duration)>,
    ) {
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
        let kept = |device: &crate::config::Device| {
            self.config
                .devices
                .iter()
                .position(|old| old.name == device.name)
        };
        let availability = config
            .devices
            .iter()
            .map(|device| kept(device).and_then(|d| self.availability[d]))
            .collect();
        // An interval set at run time outlives a reload, as the device does.
        let intervals: Vec<Option<Duration>> = config
            .devices
            .iter()
            .map(|device| kept(device).and_then(|d| self.intervals[d]))
            .collect();
        for (d, interval) in intervals.iter().enumerate() {
            if let Some(interval) = interval {
                let _ = scheduler.send((d, *interval));
            }
        }

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
            .flat_map(|d| [self.topics.availability(&d.name), self.topics.poll(&d.name)])
            .collect();
        tracing::info!(
            added,
            removed = cleared.len(),
            devices_removed = gone_devices.len() / 2,
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
            self.subscribed_at = Instant::now();
        }
        self.config = config;
        self.topics = topics;
        self.registers = registers;
        self.availability = availability;
        self.intervals = intervals;
        // The new scheduler finds out again what the devices refuse.
        self.set_aside.clear();
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
        self.subscribed_at = Instant::now();
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
                if let Some(value) = self.registers[d][r].latest.clone() {
                    let text = self.config.devices[d].registers[r].codec.format(&value);
                    self.publish_value(d, r, value, text);
                }
            }
        }
        for (d, online) in self.availability.iter().enumerate() {
            if let Some(online) = online {
                let topic = self.topics.availability(&self.config.devices[d].name);
                self.publish(&topic, availability(*online), true);
            }
        }
        for device in 0..self.config.devices.len() {
            self.publish_interval(device);
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
                if !self.set_aside.is_empty() {
                    for (register, _) in &values {
                        self.set_aside.remove(&(device, *register));
                    }
                }
                for (register, value) in values {
                    self.on_value(device, register, value, false);
                }
            }
            Event::Failed {
                device,
                registers,
                error,
            } => self.report_read(device, &registers, &error),
            Event::NotAValue {
                device,
                register,
                error,
            } => self.report_read(device, &[register], &error),
            Event::SetAside { device, registers } => {
                self.report_read(
                    device,
                    &registers,
                    &"the device refuses it even alone (exception 2, illegal data address); set aside, tried again every 10 minutes",
                );
                self.set_aside
                    .extend(registers.into_iter().map(|r| (device, r)));
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

    /// Says on `bridge/error` that reading some registers of a device failed.
    fn report_read(&self, device: usize, registers: &[usize], error: &dyn std::fmt::Display) {
        let d = &self.config.devices[device];
        let names: Vec<&str> = registers
            .iter()
            .map(|r| d.registers[*r].name.as_str())
            .collect();
        let message = format!("reading {} of {}: {error}", names.join(", "), d.name);
        self.report_error(&self.topics.device(&d.name), None, &message);
    }

    fn report_port(&self, error: &str) {
        self.report_error(&self.topics.bridge_topic(), None, error);
    }

    /// Keeps a new value and publishes it when due, or at once when `asked` (a command or
    /// a `/get` wants to hear it).
    fn on_value(&mut self, device: usize, register: usize, value: Value, asked: bool) {
        let spec = &self.config.devices[device].registers[register];
        let text = spec.codec.format(&value);
        let state = &mut self.registers[device][register];
        state.latest = Some(value.clone());
        let due = match (&state.published, spec.publish) {
            _ if asked => true,
            (None, _) | (_, PublishMode::Always) => true,
            (Some((last, last_text, at)), PublishMode::Change) => {
                changed(last, last_text, &value, &text, spec.deadband)
                    || spec.republish.is_some_and(|every| at.elapsed() >= every)
            }
        };
        if due {
            self.publish_value(device, register, value, text);
        }
    }

    /// Publishes a value (not while the broker is away). At QoS 0 it goes out with the
    /// others of its read, in one write (see [`Outbox`]).
    fn publish_value(&mut self, device: usize, register: usize, value: Value, text: String) {
        if !self.is_connected() {
            return;
        }
        let topic = self.topics.value(device, register);
        let retain = self.config.mqtt.retain;
        if self.value_qos == QoS::AtMostOnce {
            self.outbox.push(topic, text.clone(), retain);
        } else {
            self.send(topic, self.value_qos, text.clone(), retain);
        }
        let state = &mut self.registers[device][register];
        if self.topics.shares_state_topic(device, register) {
            if state.echoes.len() == ECHOES_KEPT {
                state.echoes.pop_front();
            }
            state.echoes.push_back((text.clone(), Instant::now()));
        }
        state.published = Some((value, text, Instant::now()));
    }

    /// Publishes the poll interval in force for a device, in seconds.
    fn publish_interval(&self, device: usize) {
        let spec = &self.config.devices[device];
        let interval = self.intervals[device].unwrap_or(spec.poll);
        self.publish(
            &self.topics.poll(&spec.name),
            interval.as_secs_f64().to_string(),
            true,
        );
    }

    fn on_stats(&self) {
        let scheduler = &self.monitors.scheduler;
        let overruns = scheduler.overruns.swap(0, Ordering::Relaxed);
        let not_values = scheduler.take_not_values();
        let report = self.monitors.bus.take().report(
            &self.config.devices,
            overruns,
            &not_values,
            &self.set_aside,
        );
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

    /// A message on a subscribed topic: a command, a `/get`, or a new poll interval.
    fn on_message(
        &mut self,
        topic: &str,
        payload: &[u8],
        retained: bool,
        requests: &Queue,
        intervals: &mpsc::UnboundedSender<(usize, Duration)>,
    ) {
        let quoted = command::quote(payload);
        let action = match self.topics.route(topic) {
            Some(Route::Set(d, r)) if self.topics.shares_state_topic(d, r) => {
                // What a new subscription brings there is the last state, not a command;
                // nor is our own publish coming back. (Only then: ioBroker's broker flags
                // every message it forwards as retained, commands too.)
                let replayed = retained && self.subscribed_at.elapsed() < SUBSCRIBE_REPLAY;
                let value = std::str::from_utf8(payload)
                    .ok()
                    .and_then(|text| self.config.devices[d].registers[r].codec.parse(text).ok());
                if replayed || self.registers[d][r].is_own_state(&quoted, value.as_ref()) {
                    tracing::debug!(topic, payload = %quoted, retained, "state, not a command");
                    return;
                }
                command::parse(&self.config, Some((d, r)), topic, payload).map(Action::Write)
            }
            Some(Route::Set(d, r)) => {
                command::parse(&self.config, Some((d, r)), topic, payload).map(Action::Write)
            }
            Some(Route::Get(device, register)) => Ok(Action::Read { device, register }),
            Some(Route::Poll(device)) => {
                match command::parse_interval(payload) {
                    Ok(interval) => self.set_interval(device, interval, intervals),
                    Err(reason) => self.refuse(topic, &quoted, &reason),
                }
                return;
            }
            None if topic.ends_with("/get") => Err(format!(
                "no register or device is read by the topic {topic}"
            )),
            None => command::parse(&self.config, None, topic, payload).map(Action::Write),
        };
        let action = match action {
            Ok(action) => action,
            Err(reason) => return self.refuse(topic, &quoted, &reason),
        };
        tracing::info!(topic, payload = %quoted, "command accepted");
        // Only a shared topic hears its commands back.
        if let Action::Write(command) = &action
            && self
                .topics
                .shares_state_topic(command.device, command.register)
        {
            self.registers[command.device][command.register]
                .commanded
                .push(quoted.clone());
        }
        let request = Request {
            action,
            topic: topic.to_owned(),
            payload: quoted,
        };
        match requests.push(request) {
            Queued::Waiting => {}
            Queued::Replaced(older) => {
                tracing::debug!(topic, payload = %older.payload, "replaced by a newer command before its turn");
                self.done(&older);
            }
            Queued::Closed(request) => {
                self.done(&request);
                self.refuse(
                    topic,
                    &request.payload,
                    &CommandError::Withdrawn.to_string(),
                );
            }
        }
    }

    /// A new poll interval for a device (`None`: the configured one), for the scheduler
    /// and on `{base}/{device}/poll`.
    fn set_interval(
        &mut self,
        device: usize,
        interval: Option<Duration>,
        scheduler: &mpsc::UnboundedSender<(usize, Duration)>,
    ) {
        let spec = &self.config.devices[device];
        let in_force = interval.unwrap_or(spec.poll);
        tracing::info!(device = %spec.name, interval = %humantime::format_duration(in_force), configured = interval.is_none(), "poll interval set");
        self.intervals[device] = interval;
        let _ = scheduler.send((device, in_force));
        self.publish_interval(device);
    }

    fn refuse(&self, topic: &str, payload: &str, reason: &str) {
        tracing::warn!(topic, payload, reason, "command refused");
        self.report_error(topic, Some(payload), reason);
    }

    /// A request will not be carried out any more, or has been.
    fn done(&mut self, request: &Request) {
        if let Action::Write(command) = &request.action {
            let commanded = &mut self.registers[command.device][command.register].commanded;
            if let Some(at) = commanded.iter().position(|c| *c == request.payload) {
                commanded.remove(at);
            }
        }
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        let Outcome {
            request,
            values,
            error,
        } = outcome;
        self.done(&request);
        let device = request.device();
        for (register, value) in values {
            self.on_value(device, register, value, true);
        }
        if let Some(error) = error {
            let (topic, payload) = (&request.topic, &request.payload);
            if matches!(error, CommandError::NotReadBack(_)) {
                tracing::warn!(topic, payload, %error, "command written, not read back");
            } else {
                tracing::warn!(topic, payload, %error, "command failed");
            }
            self.report_error(topic, Some(payload), &error.to_string());
        }
    }
}

fn availability(online: bool) -> String {
    if online { "online" } else { "offline" }.to_owned()
}

/// Whether a new value differs from the last published one by more than the deadband.
/// Bools and texts (strings, `values`) change when their text does.
fn changed(last: &Value, last_text: &str, new: &Value, new_text: &str, deadband: f64) -> bool {
    match (last.as_f64(), new.as_f64()) {
        (Some(a), Some(b)) if deadband > 0.0 => (a - b).abs() > deadband,
        _ => last_text != new_text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadband_decides_what_is_a_change() {
        let n = Value::Number;
        assert!(!changed(&n(21.5), "21.5", &n(21.5), "21.5", 0.0));
        assert!(changed(&n(21.5), "21.5", &n(21.6), "21.6", 0.0));
        assert!(!changed(&n(21.5), "21.5", &n(21.9), "21.9", 0.5));
        assert!(changed(&n(21.5), "21.5", &n(22.1), "22.1", 0.5));
        let bools = (Value::Bool(true), Value::Bool(false));
        assert!(changed(&bools.0, "true", &bools.1, "false", 0.5));
        // Exact integers have deadbands too; texts change when the text does.
        let i = Value::Integer;
        assert!(!changed(&i(1000), "1000", &i(1003), "1003", 5.0));
        assert!(changed(&i(1000), "1000", &i(1006), "1006", 5.0));
        let text = |t: &str| Value::Text(t.to_owned());
        assert!(changed(&text("heat"), "heat", &text("cool"), "cool", 5.0));
        assert!(!changed(&text("heat"), "heat", &text("heat"), "heat", 0.0));
        // An enumeration's unknown raw number next to a text.
        assert!(changed(&text("heat"), "heat", &i(7), "7", 5.0));
    }
}
