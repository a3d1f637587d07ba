//! The validated configuration: what the rest of the daemon works from.

use std::path::PathBuf;
use std::time::Duration;

use crate::codec::{Codec, Value};

pub use super::raw::{Parity, PublishMode};

/// A Modbus slave id in 1..=247.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitId(u8);

impl UnitId {
    pub const MIN: u8 = 1;
    pub const MAX: u8 = 247;

    pub fn new(id: i64) -> Option<UnitId> {
        u8::try_from(id)
            .ok()
            .filter(|id| (Self::MIN..=Self::MAX).contains(id))
            .map(UnitId)
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl std::fmt::Display for UnitId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The four Modbus data tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Table {
    Coil,
    Discrete,
    Holding,
    Input,
}

impl Table {
    /// Bit tables hold one bit per address; register tables one 16-bit word.
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::Discrete)
    }

    /// Whether a master can write the table at all.
    pub fn is_writable(self) -> bool {
        matches!(self, Table::Coil | Table::Holding)
    }

    /// The read function code for this table.
    pub fn read_function(self) -> u8 {
        match self {
            Table::Coil => 1,
            Table::Discrete => 2,
            Table::Holding => 3,
            Table::Input => 4,
        }
    }

    /// Most addresses one read may cover (Modbus limits).
    pub fn max_read(self) -> u16 {
        if self.is_bits() { 2000 } else { 125 }
    }

    pub fn name(self) -> &'static str {
        match self {
            Table::Coil => "coil",
            Table::Discrete => "discrete",
            Table::Holding => "holding",
            Table::Input => "input",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this came from, for messages.
    pub source: PathBuf,
    pub mqtt: Mqtt,
    pub bus: Bus,
    pub devices: Vec<Device>,
    pub homeassistant: HomeAssistant,
    /// Initial values for the simulated slave, per device index.
    pub sim: Vec<SimValues>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimValues {
    pub device: usize,
    pub values: Vec<(usize, Value)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mqtt {
    pub host: String,
    pub port: u16,
    /// A broker on this machine through its Unix socket, instead of `host` and `port`.
    pub socket: Option<PathBuf>,
    pub client_id: String,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub keepalive: Duration,
    pub base_topic: String,
    /// QoS of commands subscriptions, availability and bridge topics.
    pub qos: u8,
    /// QoS of value publishes alone: 0 spares the broker a round trip per value.
    pub value_qos: u8,
    pub retain: bool,
    pub stats_interval: Duration,
    pub tls: Option<Tls>,
}

impl Mqtt {
    /// Where the broker is, for people: its Unix socket, or host:port.
    pub fn broker(&self) -> String {
        match &self.socket {
            Some(path) => path.display().to_string(),
            None => format!("{}:{}", self.host, self.port),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tls {
    pub ca_file: Option<PathBuf>,
    pub client_auth: Option<(PathBuf, PathBuf)>,
}

/// `[homeassistant]`: MQTT discovery for Home Assistant.
#[derive(Debug, Clone, PartialEq)]
pub struct HomeAssistant {
    pub discovery: bool,
    /// The discovery prefix Home Assistant listens on.
    pub prefix: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bus {
    /// `port`: where the bus is and how frames travel there.
    pub transport: super::Transport,
    pub line: LineSettings,
    /// The line's timing; a device may override it.
    pub timing: Timing,
    pub retries: u32,
    pub offline_after: u32,
    /// Longest pause between probes of an offline device.
    pub offline_poll: Duration,
    /// How long a command to an offline device waits for it to answer again.
    pub command_timeout: Duration,
    pub echo: Echo,
}

/// How long to wait for an answer and how much extra silence to leave before a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// From the end of the request to the end of the answer, beyond the answer's own
    /// line time.
    pub timeout: Duration,
    /// Silence before each request beyond the 3.5 characters.
    pub frame_gap: Duration,
}

/// Whether the adapter hands the master's own bytes back to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Echo {
    /// Found out on the first transactions.
    #[default]
    Auto,
    On,
    Off,
}

/// Serial line settings; also what the line timing is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineSettings {
    pub baud: u32,
    pub parity: Parity,
    pub data_bits: u8,
    pub stop_bits: u8,
}

impl LineSettings {
    /// Start bit + data bits + parity bit + stop bits.
    pub fn bits_per_char(&self) -> u32 {
        1 + u32::from(self.data_bits)
            + u32::from(self.parity != Parity::None)
            + u32::from(self.stop_bits)
    }

    /// Time one character takes on the wire.
    pub fn char_time(&self) -> Duration {
        Duration::from_secs_f64(f64::from(self.bits_per_char()) / f64::from(self.baud.max(1)))
    }

    /// Line time of `chars` characters.
    pub fn chars(&self, chars: f64) -> Duration {
        self.char_time().mul_f64(chars)
    }

    /// The silence that must separate frames: 3.5 characters, and a fixed 1.75 ms above
    /// 19200 baud as the Modbus serial line spec recommends.
    pub fn frame_silence(&self) -> Duration {
        if self.baud > 19200 {
            Duration::from_micros(1750)
        } else {
            self.chars(3.5)
        }
    }

    /// `9600 8E1`.
    pub fn describe(&self) -> String {
        let parity = match self.parity {
            Parity::None => 'N',
            Parity::Even => 'E',
            Parity::Odd => 'O',
        };
        format!(
            "{} {}{}{}",
            self.baud, self.data_bits, parity, self.stop_bits
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub name: String,
    pub unit: UnitId,
    /// The interval of its registers without a `poll` of their own.
    pub poll: Duration,
    /// An absolute topic that sets `poll` at run time, besides `{base}/{device}/poll/set`.
    pub poll_command_topic: Option<String>,
    pub max_gap: u16,
    pub max_read: u16,
    pub max_read_bits: u16,
    /// The bus's timing, or the device's own.
    pub timing: Timing,
    pub homeassistant: DeviceInfo,
    pub registers: Vec<Register>,
}

/// What Home Assistant shows of a device besides its name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeviceInfo {
    pub manufacturer: Option<String>,
    pub model: Option<String>,
}

impl Device {
    /// Most addresses one read of `table` may cover on this device.
    pub fn max_read_for(&self, table: Table) -> u16 {
        if table.is_bits() {
            self.max_read_bits
        } else {
            self.max_read
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Register {
    pub name: String,
    pub address: u16,
    pub table: Table,
    pub codec: Codec,
    pub unit_of_measurement: Option<String>,
    pub writable: bool,
    /// Its own interval; `None` follows the device's, which may change at run time.
    pub poll: Option<Duration>,
    pub publish: PublishMode,
    pub deadband: f64,
    pub republish: Option<Duration>,
    pub write_function: WriteFunction,
    pub topic: Option<String>,
    pub command_topic: Option<String>,
    pub homeassistant: EntityOptions,
}

/// A register's own part of its Home Assistant entity.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntityOptions {
    pub device_class: Option<String>,
    pub state_class: Option<String>,
    /// Keys that go into the discovery config as they are, over the gateway's own.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Register {
    /// Addresses taken: words in a register table, bits in a bit table.
    pub fn width(&self) -> u16 {
        self.codec.width()
    }

    /// One past the last address (may be 65536).
    pub fn end(&self) -> u32 {
        u32::from(self.address) + u32::from(self.width())
    }
}

/// The function a write uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFunction {
    /// 5: one coil.
    SingleCoil,
    /// 6: one holding register.
    SingleRegister,
    /// 16: several holding registers (also accepted for one).
    MultipleRegisters,
    /// 22: a mask write, which changes one bit of a holding register in one transaction.
    /// Without it a bit is written by reading its register and writing it back (with 6,
    /// or 16 when `write_function = 16`).
    MaskWrite,
}
