//! Configuration: the TOML register map of SPEC.md, parsed ([`raw`]) and then validated into
//! the model ([`model`]) by one pass that reports every problem with its file, line and key.

mod device;
mod homeassistant;
mod model;
mod raw;
mod transport;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::codec::{Value, ValueType};
use crate::mqtt::topics::BRIDGE_TOPIC;
pub use homeassistant::{BRIDGE_CONNECTION, BRIDGE_DEVICE, BRIDGE_UTILISATION, object_id, safe_id};
pub use model::*;
use raw::{RawBus, RawConfig, RawEcho, RawMqtt, SimValue};
pub use transport::Transport;

/// The example config of the reference device, also what `demo` runs.
pub const EXAMPLE: &str = include_str!("../../configs/example.toml");

/// One thing wrong with a config file, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub key: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", Problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

struct Problems<'a>(&'a Path, &'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Problems(path, problems) = self;
        let count = problems.len();
        write!(
            f,
            "{} has {count} error{}:",
            path.display(),
            if count == 1 { "" } else { "s" }
        )?;
        for p in *problems {
            write!(
                f,
                "\n  {}:{}:{}: `{}`: {}",
                path.display(),
                p.line,
                p.column,
                p.key,
                p.message
            )?;
        }
        Ok(())
    }
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_warnings(path).map(|(config, _)| config)
}

/// Reads and validates a config file, with what in it is legal but probably wrong.
pub fn load_with_warnings(path: &Path) -> Result<(Config, Vec<Problem>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_with_warnings(&text, path)
}

/// Validates config text; `path` is only used in messages.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    parse_with_warnings(text, path).map(|(config, _)| config)
}

/// Validates config text, and says what in it is legal but probably wrong.
pub fn parse_with_warnings(text: &str, path: &Path) -> Result<(Config, Vec<Problem>), ConfigError> {
    let mut v = Validator {
        text,
        problems: Vec::new(),
        warnings: Vec::new(),
        base: String::new(),
        topics: HashMap::new(),
    };
    let config = match toml::from_str::<RawConfig>(text) {
        Ok(raw) => Some(v.config(raw, path)),
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim().to_owned();
            // A missing key is named only in the message; the span is the table lacking it.
            let key =
                missing_field(&message).map_or_else(|| key_at(text, span.start), str::to_owned);
            v.problem(span, &key, message);
            None
        }
    };
    match config {
        Some(config) if v.problems.is_empty() => Ok((config, v.warnings)),
        _ => Err(ConfigError::Invalid {
            path: path.to_owned(),
            problems: v.problems,
        }),
    }
}

/// The key written on the line at `offset`: for errors serde reports against a value. A
/// line that names none (`[` cut short, `= 1`) is quoted whole.
fn key_at(text: &str, offset: usize) -> String {
    let start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("").trim();
    let key = match line.split_once('=') {
        Some((key, _)) => key.trim(),
        None => line.trim_matches(['[', ']']),
    };
    if key.is_empty() { line } else { key }.to_owned()
}

/// The key of serde's "missing field `port`".
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

struct Validator<'a> {
    text: &'a str,
    problems: Vec<Problem>,
    /// Legal but probably wrong (`check` shows them; `run` logs them).
    warnings: Vec<Problem>,
    /// The base topic, once `[mqtt]` is read.
    base: String,
    /// Every topic the gateway publishes on or listens to, with what it is for (whose it
    /// is, and what): two things on one topic would take each other's messages.
    topics: HashMap<String, (String, &'static str)>,
}

const DEFAULT_BASE_TOPIC: &str = "rtu2mqtt";
const STATE_TOPIC: &str = "the state topic";
const COMMAND_TOPIC: &str = "the command topic";
const DEFAULT_POLL: Duration = Duration::from_secs(1);
const DEFAULT_MAX_GAP: u16 = 16;
/// `timeout` and `frame_gap` when the config gives none.
pub const DEFAULT_TIMING: Timing = Timing {
    timeout: Duration::from_millis(300),
    frame_gap: Duration::ZERO,
};
const DEFAULT_OFFLINE_POLL: Duration = Duration::from_secs(60);
/// The bus pets systemd's watchdog (30 s, petted every 15 s) between transactions: one
/// transaction with every retry, 4 × (3 s + its line time), must stay well within it.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_RETRIES: u32 = 3;
const MAX_FRAME_GAP: Duration = Duration::from_secs(1);
const MAX_OFFLINE_POLL: Duration = Duration::from_secs(24 * 3600);
/// A response timeout below this misses the answers of many devices.
const SHORT_TIMEOUT: Duration = Duration::from_millis(20);
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// A command that waited longer than this for its device would surprise whoever sent it.
const MAX_COMMAND_TIMEOUT: Duration = Duration::from_secs(3600);

impl Validator<'_> {
    fn problem(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        let problem = self.locate(span, key, message);
        self.problems.push(problem);
    }

    /// Takes `topic` for `owner`'s `what`, refusing it at `span` when something else has it
    /// already, except a register's own state and commands.
    fn claim(
        &mut self,
        topic: &str,
        span: Range<usize>,
        key: &str,
        owner: &str,
        what: &'static str,
    ) {
        // A register's state and commands may share a topic (ioBroker's scheme).
        let shared = [STATE_TOPIC, COMMAND_TOPIC];
        match self.topics.get(topic) {
            // The same owner twice is a name used twice, which the names' check reports.
            Some((other, other_what))
                if other != owner
                    || (*other_what != what
                        && !(shared.contains(other_what) && shared.contains(&what))) =>
            {
                let message = format!("{topic} is already {other_what} of {other}");
                self.problem(span, key, message);
            }
            Some(_) => {}
            None => {
                self.topics
                    .insert(topic.to_owned(), (owner.to_owned(), what));
            }
        }
    }

    fn warning(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        let warning = self.locate(span, key, message);
        self.warnings.push(warning);
    }

    fn locate(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> Problem {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        Problem {
            line,
            column,
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn duration(&mut self, value: Option<&Spanned<String>>, key: &str) -> Option<Duration> {
        let value = value?;
        match humantime::parse_duration(value.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(
                    value.span(),
                    key,
                    format!("{e} (write a duration such as \"300ms\" or \"2s\")"),
                );
                None
            }
        }
    }

    fn positive_duration(
        &mut self,
        value: Option<&Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Duration {
        self.optional_positive_duration(value, key)
            .unwrap_or(default)
    }

    fn optional_positive_duration(
        &mut self,
        value: Option<&Spanned<String>>,
        key: &str,
    ) -> Option<Duration> {
        match self.duration(value, key) {
            Some(d) if d.is_zero() => {
                if let Some(v) = value {
                    self.problem(v.span(), key, "must be longer than zero");
                }
                None
            }
            d => d,
        }
    }

    /// `timeout` and `frame_gap`, each falling back to `default`'s.
    fn timing(
        &mut self,
        timeout: Option<&Spanned<String>>,
        frame_gap: Option<&Spanned<String>>,
        default: Timing,
    ) -> Timing {
        let (timeout_span, gap_span) = (timeout.map(Spanned::span), frame_gap.map(Spanned::span));
        let timeout = self.positive_duration(timeout, "timeout", default.timeout);
        if let Some(span) = timeout_span.clone().filter(|_| timeout < SHORT_TIMEOUT) {
            self.warning(
                span,
                "timeout",
                format!(
                    "devices commonly take 5 to 50 ms to start answering; under {} many answers \
                     will be missed (the answer's own line time comes on top of the timeout)",
                    humantime::format_duration(SHORT_TIMEOUT)
                ),
            );
        }
        let frame_gap = self
            .duration(frame_gap, "frame_gap")
            .unwrap_or(default.frame_gap);
        Timing {
            timeout: self.at_most(timeout, MAX_TIMEOUT, "timeout", timeout_span),
            frame_gap: self.at_most(frame_gap, MAX_FRAME_GAP, "frame_gap", gap_span),
        }
    }

    /// `value`, or `most` with a problem at `span` when it is longer.
    fn at_most(
        &mut self,
        value: Duration,
        most: Duration,
        key: &str,
        span: Option<Range<usize>>,
    ) -> Duration {
        match span {
            Some(span) if value > most => {
                self.problem(
                    span,
                    key,
                    format!("at most {}", humantime::format_duration(most)),
                );
                most
            }
            _ => value.min(most),
        }
    }

    /// A serial line's key under Modbus TCP.
    fn no_serial_line(&mut self, span: Range<usize>, key: &str) {
        self.problem(
            span,
            key,
            "Modbus TCP (port = \"tcp://…\") has no serial line: remove this key, or use rtu+tcp:// for a serial device server",
        );
    }

    fn name(&mut self, name: &Spanned<String>, key: &str) {
        let n = name.get_ref();
        if n.is_empty() || n.contains(['/', '+', '#']) || n.chars().any(char::is_whitespace) {
            self.problem(
                name.span(),
                key,
                format!("{n:?} is not usable as a topic segment (no spaces, '/', '+' or '#')"),
            );
        }
    }

    fn topic(&mut self, topic: Option<&Spanned<String>>, key: &str) -> Option<String> {
        let topic = topic?;
        if topic.get_ref().is_empty() || topic.get_ref().contains(['+', '#']) {
            self.problem(
                topic.span(),
                key,
                "a topic must be non-empty and free of the wildcards '+' and '#'",
            );
        }
        Some(topic.get_ref().clone())
    }

    /// A topic that others start with (`base_topic`, the discovery `prefix`), without a
    /// trailing `/`.
    fn topic_root(&mut self, value: Option<Spanned<String>>, key: &str, default: &str) -> String {
        let Some(value) = value else {
            return default.to_owned();
        };
        let trimmed = value.get_ref().trim_end_matches('/').to_owned();
        if trimmed.is_empty() || trimmed.contains(['+', '#']) {
            self.problem(
                value.span(),
                key,
                "must be non-empty and free of '+' and '#'",
            );
        }
        trimmed
    }

    fn config(&mut self, raw: RawConfig, path: &Path) -> Config {
        let mqtt = self.mqtt(raw.mqtt, path);
        self.base = mqtt.base_topic.clone();
        for topic in ["state", "error", "stats"] {
            let topic = format!("{}/{BRIDGE_TOPIC}/{topic}", self.base);
            self.claim(&topic, 0..0, "", BRIDGE_TOPIC, "the gateway's own topic");
        }
        let bus = self.bus(raw.bus);
        let homeassistant = self.homeassistant(raw.homeassistant);
        if homeassistant.discovery {
            let names: Vec<homeassistant::Names> = raw
                .devices
                .iter()
                .map(|d| {
                    let d = d.get_ref();
                    let registers = d.registers.iter().map(|r| r.get_ref().name.clone());
                    (d.name.clone(), registers.collect())
                })
                .collect();
            self.entity_ids(&names);
        }
        let mut devices: Vec<Device> = Vec::new();
        // Where each device's poll interval is set (or the device is named).
        let mut poll_spans = Vec::new();
        let mut names = HashSet::new();
        let mut units = HashSet::new();
        for raw_device in raw.devices {
            let name = raw_device.get_ref().name.clone();
            let unit = raw_device.get_ref().unit.clone();
            let poll_span = raw_device
                .get_ref()
                .poll
                .as_ref()
                .map_or(name.span(), Spanned::span);
            if let (Some(gap), false) = (&raw_device.get_ref().frame_gap, bus.transport.has_line())
            {
                self.no_serial_line(gap.span(), "frame_gap");
            }
            if let Some(device) = self.device(raw_device.into_inner(), bus.timing) {
                if !names.insert(device.name.clone()) {
                    self.problem(name.span(), "name", "another device already has this name");
                }
                if !units.insert(device.unit) {
                    self.problem(
                        unit.span(),
                        "unit",
                        "another device already uses this unit id",
                    );
                }
                devices.push(device);
                poll_spans.push(poll_span);
            }
        }
        let sim = self.sim(raw.sim, &devices);
        self.line_time(&bus, &devices, &poll_spans);
        Config {
            source: path.to_owned(),
            mqtt,
            bus,
            devices,
            homeassistant,
            sim,
        }
    }

    fn mqtt(&mut self, raw: Option<RawMqtt>, path: &Path) -> Mqtt {
        let raw = raw.unwrap_or(RawMqtt {
            host: None,
            port: None,
            socket: None,
            client_id: None,
            username: None,
            password_file: None,
            keepalive: None,
            base_topic: None,
            qos: None,
            value_qos: None,
            retain: None,
            stats_interval: None,
            tls: None,
        });
        let tls = raw.tls.map(|tls| {
            let client_auth = match (tls.cert_file, tls.key_file) {
                (Some(cert), Some(key)) => {
                    Some((cert.into_inner().into(), key.into_inner().into()))
                }
                (None, None) => None,
                (Some(one), None) | (None, Some(one)) => {
                    self.problem(
                        one.span(),
                        "tls",
                        "cert_file and key_file go together: give both or neither",
                    );
                    None
                }
            };
            Tls {
                ca_file: tls.ca_file.map(PathBuf::from),
                client_auth,
            }
        });
        let socket = raw.socket.as_ref().and_then(|socket| {
            let beside = [
                raw.host.as_ref().map(|h| (h.span(), "host")),
                raw.port.as_ref().map(|p| (p.span(), "port")),
            ];
            for (span, key) in beside.into_iter().flatten() {
                self.warning(
                    span,
                    key,
                    "not used: the broker is reached through `socket`",
                );
            }
            if tls.is_some() {
                self.problem(
                    socket.span(),
                    "socket",
                    "a Unix socket to a broker on this machine takes no [mqtt.tls]",
                );
            }
            let path = PathBuf::from(socket.get_ref());
            if path.is_absolute() {
                Some(path)
            } else {
                self.problem(
                    socket.span(),
                    "socket",
                    "the absolute path of the broker's Unix socket, such as \
                     /run/mosquitto/mqtt.sock (mosquitto: `listener 0 /run/mosquitto/mqtt.sock`)",
                );
                None
            }
        });
        let port = raw
            .port
            .map_or(if tls.is_some() { 8883 } else { 1883 }, Spanned::into_inner);
        let qos = self.qos(raw.qos, "qos", 1);
        let value_qos = self.qos(raw.value_qos, "value_qos", qos);
        let base_topic = self.topic_root(raw.base_topic, "base_topic", DEFAULT_BASE_TOPIC);
        Mqtt {
            host: raw
                .host
                .map_or_else(|| "127.0.0.1".to_owned(), Spanned::into_inner),
            port,
            socket,
            client_id: raw
                .client_id
                .map_or_else(|| default_client_id(path, &base_topic), Spanned::into_inner),
            username: raw.username.map(Spanned::into_inner),
            password_file: raw.password_file.map(|p| password_path(p.get_ref(), path)),
            keepalive: self.positive_duration(
                raw.keepalive.as_ref(),
                "keepalive",
                Duration::from_secs(60),
            ),
            base_topic,
            qos,
            value_qos,
            retain: raw.retain.unwrap_or(true),
            stats_interval: self.positive_duration(
                raw.stats_interval.as_ref(),
                "stats_interval",
                Duration::from_secs(60),
            ),
            tls,
        }
    }

    fn qos(&mut self, raw: Option<Spanned<u8>>, key: &str, default: u8) -> u8 {
        match raw {
            Some(q) if *q.get_ref() > 2 => {
                self.problem(q.span(), key, "must be 0, 1 or 2");
                default
            }
            Some(q) => q.into_inner(),
            None => default,
        }
    }

    /// Warns of a plan that needs more line time than there is: polls will be skipped. Said
    /// at the `poll` of the device that takes most of the line.
    fn line_time(&mut self, bus: &Bus, devices: &[Device], poll_spans: &[Range<usize>]) {
        if !bus.transport.has_line() {
            return;
        }
        let reads = crate::plan::plan(devices);
        let share = crate::plan::utilisation(&reads, &bus.line);
        let busiest = (0..devices.len()).max_by(|a, b| {
            let of = |d: usize| {
                let own: Vec<_> = reads.iter().filter(|r| r.device == d).cloned().collect();
                crate::plan::utilisation(&own, &bus.line)
            };
            of(*a).total_cmp(&of(*b))
        });
        if let (true, Some(busiest)) = (share > 1.0, busiest) {
            self.warning(
                poll_spans[busiest].clone(),
                "poll",
                format!(
                    "the reads need {:.0}% of the line's time at {} before any device answers: \
                     the line can never keep up, and about {:.0}% of the polls will be skipped \
                     (overruns in bridge/stats); poll less often, or raise the baud",
                    share * 100.0,
                    bus.line.describe(),
                    (1.0 - 1.0 / share) * 100.0
                ),
            );
        }
    }

    fn bus(&mut self, raw: Spanned<RawBus>) -> Bus {
        let raw = raw.into_inner();
        if raw.port.get_ref().starts_with("/dev/ttyUSB")
            || raw.port.get_ref().starts_with("/dev/ttyACM")
        {
            self.warning(
                raw.port.span(),
                "port",
                "ttyUSB and ttyACM numbers change when adapters are plugged in another order: \
                 prefer the adapter's link under /dev/serial/by-id/ (ls -l /dev/serial/by-id/)",
            );
        }
        let transport = match Transport::parse(raw.port.get_ref()) {
            Ok(transport) => transport,
            Err(e) => {
                self.problem(raw.port.span(), "port", e);
                Transport::Serial(raw.port.get_ref().clone())
            }
        };
        if !transport.has_line() {
            let serial_keys = [
                ("baud", raw.baud.as_ref().map(Spanned::span)),
                ("parity", raw.parity.as_ref().map(Spanned::span)),
                ("data_bits", raw.data_bits.as_ref().map(Spanned::span)),
                ("stop_bits", raw.stop_bits.as_ref().map(Spanned::span)),
                ("frame_gap", raw.frame_gap.as_ref().map(Spanned::span)),
                ("echo", raw.echo.as_ref().map(Spanned::span)),
            ];
            for (key, span) in serial_keys {
                if let Some(span) = span {
                    self.no_serial_line(span, key);
                }
            }
        }
        let baud = match raw.baud {
            Some(b) if *b.get_ref() == 0 => {
                self.problem(b.span(), "baud", "must be a positive rate such as 9600");
                9600
            }
            Some(b) => b.into_inner(),
            None => 9600,
        };
        let data_bits = match raw.data_bits {
            Some(d) if !(5..=8).contains(d.get_ref()) => {
                self.problem(d.span(), "data_bits", "must be 5, 6, 7 or 8");
                8
            }
            Some(d) => d.into_inner(),
            None => 8,
        };
        let stop_bits = match raw.stop_bits {
            Some(s) if !(1..=2).contains(s.get_ref()) => {
                self.problem(s.span(), "stop_bits", "must be 1 or 2");
                1
            }
            Some(s) => s.into_inner(),
            None => 1,
        };
        let offline_after = match raw.offline_after {
            Some(o) if *o.get_ref() == 0 => {
                self.problem(o.span(), "offline_after", "must be at least 1");
                3
            }
            Some(o) => o.into_inner(),
            None => 3,
        };
        let echo = match raw.echo {
            None => Echo::Auto,
            Some(e) => match e.get_ref() {
                RawEcho::Fixed(true) => Echo::On,
                RawEcho::Fixed(false) => Echo::Off,
                RawEcho::Word(word) if word == "auto" => Echo::Auto,
                RawEcho::Word(word) => {
                    self.problem(
                        e.span(),
                        "echo",
                        format!("{word:?} is not \"auto\", true or false"),
                    );
                    Echo::Auto
                }
            },
        };
        Bus {
            transport,
            line: LineSettings {
                baud,
                parity: raw.parity.map_or(Parity::Even, Spanned::into_inner),
                data_bits,
                stop_bits,
            },
            timing: self.timing(raw.timeout.as_ref(), raw.frame_gap.as_ref(), DEFAULT_TIMING),
            retries: match raw.retries {
                Some(r) if *r.get_ref() > MAX_RETRIES => {
                    self.problem(r.span(), "retries", format!("at most {MAX_RETRIES}"));
                    MAX_RETRIES
                }
                Some(r) => r.into_inner(),
                None => 1,
            },
            offline_after,
            offline_poll: {
                let pause = self.positive_duration(
                    raw.offline_poll.as_ref(),
                    "offline_poll",
                    DEFAULT_OFFLINE_POLL,
                );
                let span = raw.offline_poll.as_ref().map(Spanned::span);
                self.at_most(pause, MAX_OFFLINE_POLL, "offline_poll", span)
            },
            command_timeout: {
                let wait = self
                    .duration(raw.command_timeout.as_ref(), "command_timeout")
                    .unwrap_or(DEFAULT_COMMAND_TIMEOUT);
                let span = raw.command_timeout.as_ref().map(Spanned::span);
                self.at_most(wait, MAX_COMMAND_TIMEOUT, "command_timeout", span)
            },
            echo,
        }
    }

    fn sim(
        &mut self,
        raw: BTreeMap<Spanned<String>, BTreeMap<Spanned<String>, Spanned<SimValue>>>,
        devices: &[Device],
    ) -> Vec<SimValues> {
        let mut all = Vec::new();
        for (device_name, values) in raw {
            let Some(device) = devices
                .iter()
                .position(|d| d.name == *device_name.get_ref())
            else {
                self.problem(
                    device_name.span(),
                    device_name.get_ref(),
                    "[sim] names no configured device",
                );
                continue;
            };
            let mut set = Vec::new();
            for (register_name, value) in values {
                let registers = &devices[device].registers;
                let Some(index) = registers
                    .iter()
                    .position(|r| r.name == *register_name.get_ref())
                else {
                    self.problem(
                        register_name.span(),
                        register_name.get_ref(),
                        format!("device {:?} has no such register", device_name.get_ref()),
                    );
                    continue;
                };
                let codec = &registers[index].codec;
                let parsed = match value.get_ref().clone() {
                    SimValue::Bool(b) => Value::Bool(b),
                    SimValue::Integer(i) if codec.kind == ValueType::Bool => Value::Bool(i != 0),
                    SimValue::Integer(i) => Value::Integer(i.into()),
                    SimValue::Float(f) => Value::Number(f),
                    SimValue::Text(text) => Value::Text(text),
                };
                match codec.encode_content(&[], &parsed) {
                    Ok(_) => set.push((index, parsed)),
                    Err(e) => self.problem(value.span(), register_name.get_ref(), e.to_string()),
                }
            }
            all.push(SimValues {
                device,
                values: set,
            });
        }
        all
    }
}

/// `rtu2mqtt-<host>-<config file>`, and the base topic when it is not the default: one
/// per gateway when several run on one host (the template unit) or feed one broker. Two
/// clients with one id take turns being thrown off by the broker.
fn default_client_id(config: &Path, base_topic: &str) -> String {
    let mut name = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer it is given.
    let result = unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) };
    let end = name.iter().position(|b| *b == 0).unwrap_or(0);
    let host = match std::str::from_utf8(&name[..end]) {
        Ok(host) if result == 0 && !host.is_empty() => host,
        _ => "host",
    };
    let file = config
        .file_stem()
        .map_or("config".into(), |s| s.to_string_lossy());
    let mut id = format!("rtu2mqtt-{host}-{file}");
    if base_topic != DEFAULT_BASE_TOPIC {
        id = format!("{id}-{base_topic}");
    }
    safe_id(&id)
}

/// A relative password file is a systemd credential when systemd passes credentials
/// (`LoadCredential=`), else a file beside the config.
fn password_path(file: &str, config: &Path) -> PathBuf {
    let path = Path::new(file);
    if path.is_absolute() {
        return path.to_owned();
    }
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) => Path::new(&dir).join(path),
        None => config.parent().unwrap_or(Path::new(".")).join(path),
    }
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
