//! Configuration: the TOML register map of SPEC.md, parsed ([`raw`]) and then validated into
//! the model ([`model`]) by one pass that reports every problem with its file, line and key.

mod homeassistant;
mod model;
mod raw;
mod transport;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::codec::{Codec, Value, ValueType};
pub use homeassistant::{BRIDGE_CONNECTION, BRIDGE_DEVICE, BRIDGE_UTILISATION, object_id, safe_id};
pub use model::*;
use raw::{RawBus, RawConfig, RawDevice, RawEcho, RawMqtt, RawRegister, RawTable, SimValue};
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
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// Validates config text; `path` is only used in messages.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let mut v = Validator {
        text,
        problems: Vec::new(),
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
        Some(config) if v.problems.is_empty() => Ok(config),
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
}

const DEFAULT_BASE_TOPIC: &str = "rtu2mqtt";
const DEFAULT_POLL: Duration = Duration::from_secs(1);
const DEFAULT_MAX_GAP: u16 = 16;
const DEFAULT_TIMING: Timing = Timing {
    timeout: Duration::from_millis(300),
    frame_gap: Duration::ZERO,
};
const DEFAULT_OFFLINE_POLL: Duration = Duration::from_secs(60);
/// The bus pets systemd's watchdog (30 s, petted every 15 s) between transactions: one
/// transaction with every retry, 4 × (3 s + its line time), must stay well within it.
const MAX_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_RETRIES: u32 = 3;
const MAX_FRAME_GAP: Duration = Duration::from_secs(1);
const MAX_OFFLINE_POLL: Duration = Duration::from_secs(24 * 3600);

impl Validator<'_> {
    fn problem(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        self.problems.push(Problem {
            line,
            column,
            key: key.to_owned(),
            message: message.into(),
        });
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
        match self.duration(value, key) {
            Some(d) if d.is_zero() => {
                if let Some(v) = value {
                    self.problem(v.span(), key, "must be longer than zero");
                }
                default
            }
            Some(d) => d,
            None => default,
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
        let mut names = HashSet::new();
        let mut units = HashSet::new();
        for raw_device in raw.devices {
            let name = raw_device.get_ref().name.clone();
            let unit = raw_device.get_ref().unit.clone();
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
            }
        }
        let sim = self.sim(raw.sim, &devices);
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

    fn bus(&mut self, raw: Spanned<RawBus>) -> Bus {
        let raw = raw.into_inner();
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
            echo,
        }
    }

    fn device(&mut self, raw: RawDevice, bus: Timing) -> Option<Device> {
        self.name(&raw.name, "name");
        let unit = UnitId::new(*raw.unit.get_ref());
        if unit.is_none() {
            self.problem(
                raw.unit.span(),
                "unit",
                format!(
                    "{} is not a slave id: use {}..={}",
                    raw.unit.get_ref(),
                    UnitId::MIN,
                    UnitId::MAX
                ),
            );
        }
        let poll = self.positive_duration(raw.poll.as_ref(), "poll", DEFAULT_POLL);
        let max_read = self.limit(raw.max_read.as_ref(), "max_read", Table::Holding);
        let max_read_bits = self.limit(raw.max_read_bits.as_ref(), "max_read_bits", Table::Coil);
        let timing = self.timing(raw.timeout.as_ref(), raw.frame_gap.as_ref(), bus);
        let mut registers: Vec<Register> = Vec::new();
        for raw_register in raw.registers {
            let name_span = raw_register.get_ref().name.span();
            let span = raw_register.get_ref().address.span();
            let Some(register) = self.register(raw_register.into_inner(), poll) else {
                continue;
            };
            if registers.iter().any(|r| r.name == register.name) {
                self.problem(
                    name_span,
                    "name",
                    format!(
                        "another register of device {:?} is already named {:?}",
                        raw.name.get_ref(),
                        register.name
                    ),
                );
            }
            let clash = registers.iter().find(|other| {
                other.table == register.table
                    && u32::from(other.address) < register.end()
                    && u32::from(register.address) < other.end()
                    && (other.writable || register.writable)
            });
            if let Some(other) = clash {
                self.problem(
                    span,
                    "address",
                    format!(
                        "{:?} overlaps {:?} in the {} table; only read-only views may overlap",
                        register.name,
                        other.name,
                        register.table.name()
                    ),
                );
            }
            registers.push(register);
        }
        Some(Device {
            name: raw.name.into_inner(),
            unit: unit?,
            poll,
            max_gap: raw.max_gap.unwrap_or(DEFAULT_MAX_GAP),
            max_read,
            max_read_bits,
            timing,
            homeassistant: DeviceInfo {
                manufacturer: raw.manufacturer,
                model: raw.model,
            },
            registers,
        })
    }

    fn limit(&mut self, value: Option<&Spanned<u16>>, key: &str, table: Table) -> u16 {
        let most = table.max_read();
        match value {
            Some(v) if !(1..=most).contains(v.get_ref()) => {
                self.problem(v.span(), key, format!("must be 1..={most}"));
                most
            }
            Some(v) => *v.get_ref(),
            None => most,
        }
    }

    fn register(&mut self, raw: RawRegister, device_poll: Duration) -> Option<Register> {
        self.name(&raw.name, "name");
        let table = match raw.table.as_ref().map(|t| *t.get_ref()) {
            None | Some(RawTable::Holding) => Table::Holding,
            Some(RawTable::Input) => Table::Input,
            Some(RawTable::Coil) => Table::Coil,
            Some(RawTable::Discrete) => Table::Discrete,
        };
        let default_kind = if table.is_bits() {
            ValueType::Bool
        } else {
            ValueType::U16
        };
        let kind = raw.kind.as_ref().map_or(default_kind, |k| *k.get_ref());
        if let Some(k) = raw
            .kind
            .as_ref()
            .filter(|_| table.is_bits() && kind != ValueType::Bool)
        {
            self.problem(
                k.span(),
                "type",
                format!("the {} table holds bits: type must be bool", table.name()),
            );
        }
        let address = match u16::try_from(*raw.address.get_ref()) {
            Ok(a) if u32::from(a) + u32::from(kind.width()) <= 65536 => Some(a),
            _ => {
                self.problem(
                    raw.address.span(),
                    "address",
                    format!(
                        "{} with {} address(es) does not fit 0..=65535",
                        raw.address.get_ref(),
                        kind.width()
                    ),
                );
                None
            }
        };
        let writable = raw.writable.as_ref().is_some_and(|w| *w.get_ref());
        if let Some(w) = raw
            .writable
            .as_ref()
            .filter(|_| writable && !table.is_writable())
        {
            self.problem(
                w.span(),
                "writable",
                format!("the {} table is read-only in Modbus", table.name()),
            );
        }
        let scale = self.factor(raw.scale.as_ref(), "scale", kind, 1.0);
        let offset = self.factor(raw.offset.as_ref(), "offset", kind, 0.0);
        if let Some(s) = raw.scale.as_ref().filter(|s| *s.get_ref() == 0.0) {
            self.problem(s.span(), "scale", "must not be zero");
        }
        let min = raw.min.as_ref().map(|m| *m.get_ref());
        let max = raw.max.as_ref().map(|m| *m.get_ref());
        if let (Some(lo), Some(hi), Some(m)) = (min, max, raw.min.as_ref())
            && lo >= hi
        {
            self.problem(m.span(), "min", format!("min {lo} must be below max {hi}"));
        }
        let write_function = match raw.write_function.as_ref() {
            _ if table == Table::Coil => WriteFunction::SingleCoil,
            None if kind.width() == 1 => WriteFunction::SingleRegister,
            None => WriteFunction::MultipleRegisters,
            Some(f) => match f.get_ref() {
                6 if kind.width() == 1 => WriteFunction::SingleRegister,
                16 => WriteFunction::MultipleRegisters,
                6 => {
                    self.problem(
                        f.span(),
                        "write_function",
                        format!("function 6 writes one register; a {kind} takes two: use 16"),
                    );
                    WriteFunction::MultipleRegisters
                }
                other => {
                    self.problem(
                        f.span(),
                        "write_function",
                        format!("{other} is not 6 or 16"),
                    );
                    WriteFunction::MultipleRegisters
                }
            },
        };
        let deadband = match raw.deadband.as_ref() {
            Some(d) if !(d.get_ref().is_finite() && *d.get_ref() >= 0.0) => {
                self.problem(d.span(), "deadband", "must be a number of zero or more");
                0.0
            }
            Some(d) => *d.get_ref(),
            None => 0.0,
        };
        let poll = self.positive_duration(raw.poll.as_ref(), "poll", device_poll);
        let republish = self.duration(raw.republish.as_ref(), "republish");
        let topic = self.topic(raw.topic.as_ref(), "topic");
        let command_topic = self.topic(raw.command_topic.as_ref(), "command_topic");
        let extra = self.extra(raw.homeassistant);
        Some(Register {
            name: raw.name.into_inner(),
            address: address?,
            table,
            codec: Codec {
                kind,
                word_order: raw.word_order.unwrap_or_default(),
                scale,
                offset,
                min,
                max,
            },
            unit_of_measurement: raw.unit_of_measurement,
            writable,
            poll,
            publish: raw.publish,
            deadband,
            republish,
            write_function,
            topic,
            command_topic,
            homeassistant: EntityOptions {
                device_class: raw.device_class,
                state_class: raw.state_class,
                extra,
            },
        })
    }

    fn factor(
        &mut self,
        value: Option<&Spanned<f64>>,
        key: &str,
        kind: ValueType,
        default: f64,
    ) -> f64 {
        let Some(v) = value else { return default };
        if kind == ValueType::Bool {
            self.problem(v.span(), key, "a bool register takes no scaling");
        } else if !v.get_ref().is_finite() {
            self.problem(v.span(), key, "must be a finite number");
        }
        *v.get_ref()
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
                let parsed = match *value.get_ref() {
                    SimValue::Bool(b) => Value::Bool(b),
                    // Initial values are small; i64 -> f64 is exact where it matters.
                    SimValue::Integer(i) if codec.kind == ValueType::Bool => Value::Bool(i != 0),
                    SimValue::Integer(i) => Value::Number(i as f64),
                    SimValue::Float(f) => Value::Number(f),
                };
                let as_plain = Codec {
                    min: None,
                    max: None,
                    ..codec.clone()
                };
                match as_plain.encode(parsed) {
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
