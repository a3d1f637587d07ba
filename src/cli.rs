//! The command line (see SPEC.md).

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::codec::{ByteOrder, ValueType, WordOrder};
use crate::config::{LineSettings, Parity, Table, UnitId};

/// Where `run` looks for its config when `-c` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/rtu2mqtt/config.toml";

/// Modbus RTU to MQTT bridge.
#[derive(Debug, Parser)]
#[command(name = "rtu2mqtt", version, about)]
pub struct Cli {
    /// Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Run(ConfigArg),
    /// Validate a config, print its poll plan and bus time, and warn of what looks wrong;
    /// with --probe, read every register once on the bus.
    Check(CheckArgs),
    /// Try everything on this machine: simulated slave, embedded broker and gateway.
    Demo(DemoArgs),
    /// Serve the devices of a config as a simulated slave bus.
    Sim(SimArgs),
    /// Read registers once, for wiring checks.
    Read(ReadArgs),
    /// Write one value once, for wiring checks.
    Write(WriteArgs),
    /// Find what answers on a line: unit ids and line settings.
    Scan(ScanArgs),
    /// Print the completion script for a shell.
    Completions(CompletionsArgs),
    /// Print the man page, or write one page per command into a directory.
    Manpage(ManpageArgs),
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The config file.
    #[arg(short, long, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Fail (exit 1) on warnings too, not only on errors.
    #[arg(long)]
    pub strict: bool,
    /// Then read every register once on the configured bus (the port must be free: stop
    /// the service first) and print what came of each: its value as it would be
    /// published, not a value (NaN, an infinity), set aside (the device refuses it even
    /// read alone) or failed. Exit 0 only when every register answered with a value; 1
    /// when any is set aside, failed or not a value.
    #[arg(long)]
    pub probe: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Serve the simulated device over Modbus TCP on loopback instead of a
    /// pseudo-terminal.
    #[arg(long)]
    pub tcp: bool,
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// The config whose devices and [sim] values to serve.
    #[arg(short, long)]
    pub config: PathBuf,
    /// Serve on this serial port instead of a new pseudo-terminal.
    #[arg(long, conflicts_with_all = ["tcp", "rtu_tcp"])]
    pub port: Option<String>,
    /// Serve Modbus TCP on this address (e.g. 127.0.0.1:1502) instead.
    #[arg(long, value_name = "ADDRESS", conflicts_with = "rtu_tcp")]
    pub tcp: Option<std::net::SocketAddr>,
    /// Serve RTU frames over TCP on this address, as a serial device server does.
    #[arg(long, value_name = "ADDRESS")]
    pub rtu_tcp: Option<std::net::SocketAddr>,
    /// Hold answers back as long as the config's line would take to carry them.
    #[arg(long)]
    pub wire_speed: bool,
    /// Leave this unit id unanswered (repeatable), as if it were unplugged.
    #[arg(long = "silent", value_name = "UNIT")]
    pub silent: Vec<u8>,
    /// Answer only a master that set these line settings (e.g. 19200-8N1) on the
    /// pseudo-terminal, as devices set to them do (try `scan` on it); by default any.
    #[arg(long, value_name = "BAUD-FORMAT", value_parser = crate::sim::parse_line, conflicts_with_all = ["port", "tcp", "rtu_tcp"])]
    pub line: Option<LineSettings>,
}

#[derive(Debug, Args)]
pub struct LineArgs {
    /// Serial port.
    #[arg(short, long)]
    pub port: String,
    #[arg(short, long, default_value_t = 9600)]
    pub baud: u32,
    #[arg(long, value_enum, default_value_t = Parity::Even)]
    pub parity: Parity,
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(5..=8))]
    pub data_bits: u8,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub stop_bits: u8,
    /// Response timeout.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Whether the adapter echoes what it sends (`auto` finds out).
    #[arg(long, value_enum, default_value = "auto")]
    pub echo: crate::config::Echo,
    /// Slave id.
    #[arg(short, long, value_parser = clap::value_parser!(u8).range(1..=247))]
    pub unit: u8,
    /// First address (0-based, as on the wire).
    #[arg(short, long)]
    pub address: u16,
    #[arg(short, long, value_enum, default_value_t = Table::Holding)]
    pub table: Table,
    /// How to read the words (bit tables always hold bools).
    #[arg(long = "type", value_enum, default_value_t = ValueType::U16)]
    pub kind: ValueType,
    #[arg(long, value_enum, default_value_t = WordOrder::Big)]
    pub word_order: WordOrder,
    /// Bytes within each word (`little` for devices that swap them).
    #[arg(long, value_enum, default_value_t = ByteOrder::Big)]
    pub byte_order: ByteOrder,
    /// Value = raw * scale + offset.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub offset: f64,
}

impl LineArgs {
    pub fn line(&self) -> LineSettings {
        LineSettings {
            baud: self.baud,
            parity: self.parity,
            data_bits: self.data_bits,
            stop_bits: self.stop_bits,
        }
    }

    /// The value type; bit tables always hold bools.
    pub fn kind(&self) -> ValueType {
        if self.table.is_bits() {
            ValueType::Bool
        } else {
            self.kind
        }
    }
}

#[derive(Debug, Args)]
pub struct ReadArgs {
    #[command(flatten)]
    pub line: LineArgs,
    /// How many values of the chosen type to read.
    #[arg(short = 'n', long, default_value_t = 1)]
    pub count: u16,
}

#[derive(Debug, Args)]
pub struct WriteArgs {
    #[command(flatten)]
    pub line: LineArgs,
    /// The value, in scaled units (or on/off for bools).
    #[arg(short, long, allow_negative_numbers = true)]
    pub value: String,
    /// Force function 6 or 16 for register writes (default: 6 for one word, 16 for two).
    #[arg(long)]
    pub function: Option<u8>,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Serial port, or tcp://HOST:PORT or rtu+tcp://HOST:PORT (unit ids only: the line
    /// settings there are the server's).
    #[arg(short, long)]
    pub port: String,
    /// Try only this baud rate, with even parity and none unless --parity says (over
    /// rtu+tcp://: the baud of the line behind the server, for the waits and the config).
    #[arg(short, long, value_parser = clap::value_parser!(u32).range(1..))]
    pub baud: Option<u32>,
    /// Try only this parity, at the common baud rates that use it (all of them for odd).
    #[arg(long, value_enum)]
    pub parity: Option<Parity>,
    /// Unit ids to try: ranges and single ids, as in 1-20,100. Unit 0 (broadcast) is
    /// never asked.
    #[arg(long, value_name = "IDS", default_value = "1-247", value_parser = parse_units)]
    pub units: Units,
    /// How long each probe waits for an answer beyond the line time of the request and
    /// the answer at the baud tried, which is always added: with the default a probe
    /// waits 117 ms in all at 9600 8E1, 101 ms at 115200 8N1 [default: 100ms].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// The address each probe reads (0-based, as on the wire).
    #[arg(short, long, default_value_t = 0)]
    pub address: u16,
    /// The table each probe reads.
    #[arg(short, long, value_enum, default_value_t = Table::Holding)]
    pub table: Table,
    /// Go on through every line setting instead of stopping after the first at which
    /// something answers.
    #[arg(long)]
    pub all: bool,
}

/// Unit ids, each once, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Units(pub Vec<UnitId>);

/// `1-20,100`: ranges and single ids, separated by commas.
pub fn parse_units(text: &str) -> Result<Units, String> {
    let id = |text: &str| -> Result<UnitId, String> {
        let text = text.trim();
        let number: i64 = text
            .parse()
            .map_err(|_| format!("{text:?} is not a unit id (write ids and ranges: 1-20,100)"))?;
        match UnitId::new(number) {
            Some(unit) => Ok(unit),
            None if number == 0 => Err(
                "unit 0 is the broadcast address, which no device answers: unit ids are 1..=247"
                    .to_owned(),
            ),
            None => Err(format!("{number} is not a slave id: unit ids are 1..=247")),
        }
    };
    let mut units = BTreeSet::new();
    for part in text.split(',') {
        let (first, last) = match part.split_once('-') {
            Some((first, last)) => (id(first)?, id(last)?),
            None => (id(part)?, id(part)?),
        };
        if first > last {
            return Err(format!(
                "{}: a range goes up, as in {last}-{first}",
                part.trim()
            ));
        }
        units.extend((first.get()..=last.get()).filter_map(|u| UnitId::new(u.into())));
    }
    Ok(Units(units.into_iter().collect()))
}

/// As they are written: `1-20,100`.
impl fmt::Display for Units {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0.iter().map(|u| u.get()).peekable();
        let mut first = true;
        while let Some(start) = rest.next() {
            let mut end = start;
            while rest.next_if(|next| *next == end + 1).is_some() {
                end += 1;
            }
            let comma = if first { "" } else { "," };
            first = false;
            if start == end {
                write!(f, "{comma}{start}")?;
            } else {
                write!(f, "{comma}{start}-{end}")?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManpageArgs {
    /// Write rtu2mqtt.1 and one rtu2mqtt-COMMAND.1 per command into this directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_lists_read_and_print_as_written() {
        let units = parse_units("100, 1-3,2,5-5,247").unwrap();
        let ids: Vec<u8> = units.0.iter().map(|u| u.get()).collect();
        assert_eq!(ids, [1, 2, 3, 5, 100, 247]);
        assert_eq!(units.to_string(), "1-3,5,100,247");
        assert_eq!(parse_units("1-247").unwrap().0.len(), 247);
        for (bad, why) in [
            ("0-5", "broadcast"),
            ("1-248", "248 is not a slave id"),
            ("20-1", "a range goes up, as in 1-20"),
            ("", "\"\" is not a unit id"),
            ("1,,2", "is not a unit id"),
            ("a-b", "\"a\" is not a unit id"),
            ("-3", "is not a unit id"),
        ] {
            let error = parse_units(bad).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }
}
