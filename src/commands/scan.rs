//! `rtu2mqtt scan`: finds what answers on a line (issue 11), for the person with a device
//! whose manual gives its registers but not for sure its slave id or line settings. Each
//! probe is one read of one address through the bus's own transport code, as `read` does;
//! an answer or an exception (the device is there and says no) is a find, a timeout or a
//! garbled frame is not.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::signal::unix::{SignalKind, signal};
use tokio_modbus::ExceptionCode;

use crate::bus::{BusError, Connection};
use crate::cli::ScanArgs;
use crate::config::{
    DEFAULT_TIMING, Echo, LineSettings, MAX_TIMEOUT, Parity, Table, Transport, UnitId,
};
use crate::plan::ReadRequest;
use crate::stats::BusStats;

/// The line settings devices most often ship with, the likeliest first (issue 11).
const COMMON: [(u32, Parity); 7] = [
    (9600, Parity::Even),
    (9600, Parity::None),
    (19200, Parity::Even),
    (19200, Parity::None),
    (38400, Parity::None),
    (115_200, Parity::None),
    (4800, Parity::Even),
];

/// What a probe waits for an answer beyond its line time unless `--timeout` says. Devices
/// commonly answer within tens of milliseconds, and a USB adapter holds received bytes
/// back for up to 16 ms; a slower device shows up as late answers (see [`pass`]).
const PROBE_TIMEOUT: Duration = Duration::from_millis(100);

/// What the line behind a serial device server is taken for when `--baud`/`--parity` do
/// not say: what `[bus]` takes when they are left out.
const SERVER_LINE: (u32, Parity) = (9600, Parity::Even);

/// Exit code after Ctrl-C: 128 + SIGINT, as shells report a command that SIGINT ended, so
/// that a script tells a cut-short scan from a finished one.
const INTERRUPTED: u8 = 130;

fn line((baud, parity): (u32, Parity)) -> LineSettings {
    LineSettings {
        baud,
        parity,
        data_bits: 8,
        stop_bits: 1,
    }
}

/// The line settings to try: the common ones, narrowed. A baud rate is tried with even
/// parity and none (or the one given); a parity alone at the common rates that have it,
/// or at every common rate when none does (odd).
fn line_settings(baud: Option<u32>, parity: Option<Parity>) -> Vec<LineSettings> {
    let pairs: Vec<(u32, Parity)> = match (baud, parity) {
        (None, None) => COMMON.to_vec(),
        (Some(baud), parity) => parity
            .map_or(vec![Parity::Even, Parity::None], |p| vec![p])
            .into_iter()
            .map(|p| (baud, p))
            .collect(),
        (None, Some(parity)) => {
            let common: Vec<_> = COMMON.into_iter().filter(|(_, p)| *p == parity).collect();
            if common.is_empty() {
                let mut bauds: Vec<u32> = COMMON.iter().map(|(b, _)| *b).collect();
                bauds.dedup();
                bauds.into_iter().map(|b| (b, parity)).collect()
            } else {
                common
            }
        }
    };
    pairs.into_iter().map(line).collect()
}

/// What a device said to a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Value(u16),
    Exception(ExceptionCode),
}

/// Exceptions a Modbus TCP gateway gives for a unit id behind which nothing answered: no
/// device there.
fn nobody_there(code: ExceptionCode) -> bool {
    matches!(
        code,
        ExceptionCode::GatewayPathUnavailable | ExceptionCode::GatewayTargetDevice
    )
}

/// A unit that answered, and at which line settings (none over Modbus TCP).
#[derive(Debug, Clone, Copy)]
struct Find {
    line: Option<LineSettings>,
    unit: UnitId,
    answer: Answer,
}

/// What one scan tries.
#[derive(Debug)]
struct Plan {
    transport: Transport,
    /// The line settings to try in turn: on a serial port; over RTU over TCP the one the
    /// server's line is taken for; over Modbus TCP none.
    settings: Vec<Option<LineSettings>>,
    units: crate::cli::Units,
    table: Table,
    address: u16,
    timeout: Duration,
    all: bool,
}

impl Plan {
    fn new(args: ScanArgs) -> anyhow::Result<Plan> {
        let transport = Transport::parse(&args.port).map_err(anyhow::Error::msg)?;
        let settings = match transport {
            Transport::Serial(_) => line_settings(args.baud, args.parity)
                .into_iter()
                .map(Some)
                .collect(),
            Transport::RtuOverTcp { .. } => vec![Some(line((
                args.baud.unwrap_or(SERVER_LINE.0),
                args.parity.unwrap_or(SERVER_LINE.1),
            )))],
            Transport::Tcp { .. } if args.baud.is_some() || args.parity.is_some() => bail!(
                "{transport}: Modbus TCP has no line settings, and scan tries unit ids only there: leave out --baud and --parity"
            ),
            Transport::Tcp { .. } => vec![None],
        };
        let timeout = args.timeout.unwrap_or(PROBE_TIMEOUT);
        if timeout.is_zero() || timeout > MAX_TIMEOUT {
            bail!(
                "--timeout: more than 0 and at most {}, as [bus] timeout",
                humantime::format_duration(MAX_TIMEOUT)
            );
        }
        Ok(Plan {
            transport,
            settings,
            units: args.units,
            table: args.table,
            address: args.address,
            timeout,
            all: args.all,
        })
    }

    fn read(&self, unit: UnitId) -> ReadRequest {
        ReadRequest {
            unit,
            table: self.table,
            address: self.address,
            count: 1,
        }
    }

    /// At most how long one probe takes: its line time and the wait beyond it.
    fn probe_time(&self, line: Option<&LineSettings>) -> Duration {
        // Any unit: the frames to and from every one are as long.
        let Some(unit) = self.units.0.first() else {
            return Duration::ZERO;
        };
        line.map_or(Duration::ZERO, |line| self.read(*unit).line_time(line)) + self.timeout
    }

    /// At most how long trying every unit at `line` takes.
    fn pass_time(&self, line: Option<&LineSettings>) -> Duration {
        self.probe_time(line) * u32::try_from(self.units.0.len()).unwrap_or(u32::MAX)
    }

    fn probes(&self) -> u64 {
        (self.units.0.len() * self.settings.len()) as u64
    }

    /// What the scan will do and how long it takes at most, said before it starts.
    fn describe(&self) -> String {
        let mut out = format!(
            "scanning {}: unit ids {}, each asked for {} {}",
            self.transport.describe(),
            self.units,
            self.table.name(),
            self.address
        );
        let lines: Vec<String> = self
            .settings
            .iter()
            .flatten()
            .map(LineSettings::describe)
            .collect();
        match &self.transport {
            Transport::Serial(_) if lines.len() == 1 => {
                let _ = write!(out, ", at {}", lines[0]);
            }
            Transport::Serial(_) => {
                let _ = write!(
                    out,
                    ", at {} line settings in turn ({}); it stops after the first at which something answers{}",
                    lines.len(),
                    lines.join(", "),
                    if self.all {
                        ", but for --all, which tries every one"
                    } else {
                        " (--all tries every one)"
                    }
                );
            }
            Transport::RtuOverTcp { .. } => {
                let _ = write!(
                    out,
                    ". The serial device server sets its line's baud and parity itself: only unit ids are tried, and the line is taken for {} (--baud, --parity) for the waits and the config",
                    lines.join("")
                );
            }
            Transport::Tcp { .. } => {
                out.push_str(". Modbus TCP has no line settings: only unit ids are tried")
            }
        }
        let first = self.settings.first().copied().flatten();
        let total: Duration = self
            .settings
            .iter()
            .map(|line| self.pass_time(line.as_ref()))
            .sum();
        let _ = write!(
            out,
            ".\neach probe waits {} for an answer{} (--timeout): at most {}",
            humantime::format_duration(self.timeout),
            if first.is_some() {
                " beyond its line time"
            } else {
                ""
            },
            rounded(total)
        );
        if self.settings.len() > 1 {
            let _ = write!(
                out,
                " for all {} line settings, {} at {}",
                self.settings.len(),
                rounded(self.pass_time(first.as_ref())),
                lines[0]
            );
        }
        out.push_str(".\n");
        out
    }

    /// Tries every unit at each line setting in turn, pushing finds as they come; stops
    /// after the first setting that found something unless `--all`.
    async fn run(&self, bar: &ProgressBar, finds: &mut Vec<Find>) -> anyhow::Result<()> {
        for line in &self.settings {
            let before = finds.len();
            self.pass(*line, bar, finds).await?;
            if finds.len() > before && !self.all {
                break;
            }
        }
        Ok(())
    }

    /// One unit after the other at `line`, each asked once.
    async fn pass(
        &self,
        line: Option<LineSettings>,
        bar: &ProgressBar,
        finds: &mut Vec<Find>,
    ) -> anyhow::Result<()> {
        let setting = line.map_or_else(|| "Modbus TCP".to_owned(), |line| line.describe());
        let at = line.map_or_else(String::new, |line| format!("{} ", line.describe()));
        bar.set_message(setting.clone());
        // Reads strip an echo whenever one comes, as `auto` does for them; `on` only spares
        // the log line of what `auto` learns.
        let bus = super::oneshot::bus(
            self.transport.clone(),
            line.unwrap_or_else(|| self::line(SERVER_LINE)),
            self.timeout,
            Echo::On,
        );
        let stats = Arc::new(BusStats::default());
        let mut link = Connection::open(&bus, Arc::clone(&stats))
            .await
            .with_context(|| format!("cannot open {}", self.transport))?;
        for unit in &self.units.0 {
            let answer = match link.read(&self.read(*unit), bus.timing, 0).await {
                Ok(data) => data.words().first().copied().map(Answer::Value),
                Err(BusError::Exception(code)) if !nobody_there(code) => {
                    Some(Answer::Exception(code))
                }
                Err(BusError::PortDown(e)) => bail!("{}: {e}", self.transport),
                Err(error @ BusError::BadFrame(_)) => {
                    bar.suspend(|| eprintln!("{at}unit {unit}: {error}; not counted"));
                    None
                }
                Err(_) => None,
            };
            if let Some(answer) = answer {
                let find = Find {
                    line,
                    unit: *unit,
                    answer,
                };
                bar.suspend(|| {
                    println!("found: {at}unit {unit}: {}", self.describe_answer(answer))
                });
                finds.push(find);
            }
            bar.inc(1);
        }
        // Frames that answered none of the probes they came in: late answers, or, once
        // the late answer's wait is over too, foreign frames (which another master's are
        // as well). The framing cannot tell which unit sent them, so they are not found.
        let skipped = stats.take().skipped;
        let stray = skipped.late_answers + skipped.foreign_frames;
        if stray > 0 {
            bar.suspend(|| {
                eprintln!(
                    "{stray} answer{} at {setting} came in the wait of another probe: a device slower than --timeout allows (scan again with a longer one, e.g. --timeout 500ms), or another master on the line",
                    if stray == 1 { "" } else { "s" }
                );
            });
        }
        Ok(())
    }

    /// `holding 0 = 215` or `exception 2 (illegal data address)`.
    fn describe_answer(&self, answer: Answer) -> String {
        match answer {
            Answer::Value(value) => format!("{} {} = {value}", self.table.name(), self.address),
            Answer::Exception(code) => format!(
                "exception {} ({})",
                u8::from(code),
                code.to_string().to_lowercase()
            ),
        }
    }

    /// A config for the finds at one line setting: its `[bus]`, and a `[[device]]` for
    /// each with a placeholder register at the address probed. `rtu2mqtt check` takes it.
    fn snippet(&self, line: Option<LineSettings>, finds: &[&Find]) -> String {
        let mut out = String::new();
        let at = line.map_or_else(String::new, |line| format!(" at {}", line.describe()));
        let _ = writeln!(out, "# What answered{at} on {}.", self.transport);
        out.push_str(
            "# Paste it into your config (beside its [mqtt]), check it with\n\
             # `rtu2mqtt check -c FILE`, then name each device and put the registers of its\n\
             # manual in place of its placeholder.\n",
        );
        let mut port = self.transport.to_string();
        if let Transport::Serial(path) = &self.transport
            && let Some(link) = stable_name(path, Path::new(BY_ID))
        {
            let _ = writeln!(
                out,
                "# {path} is {}, a name that stays when adapters are plugged in another order.",
                link.display()
            );
            port = link.to_string_lossy().into_owned();
        }
        let _ = writeln!(out, "[bus]\nport = {}", toml::Value::String(port));
        if let (Some(line), true) = (line, self.transport.has_line()) {
            let parity = match line.parity {
                Parity::None => "none",
                Parity::Even => "even",
                Parity::Odd => "odd",
            };
            let _ = writeln!(out, "baud = {}\nparity = \"{parity}\"", line.baud);
        }
        // A device that needed a longer wait than the gateway's default needs it there too.
        if self.timeout > DEFAULT_TIMING.timeout {
            let _ = writeln!(
                out,
                "timeout = \"{}\"",
                humantime::format_duration(self.timeout)
            );
        }
        for find in finds {
            let said = match find.answer {
                Answer::Value(value) => format!("answered the scan with {value}"),
                Answer::Exception(_) => format!(
                    "was refused with {}: take a register from the manual",
                    self.describe_answer(find.answer)
                ),
            };
            let table = self.table.name();
            let _ = writeln!(
                out,
                "\n[[device]]\nname = \"unit_{unit}\"\nunit = {unit}\n\n[[device.register]]\n\
                 # A placeholder: {table} {address} {said}.\n\
                 name = \"{table}_{address}\"\naddress = {address}\ntable = \"{table}\"",
                unit = find.unit,
                address = self.address,
            );
        }
        out
    }
}

/// Where udev names each serial adapter by what it is, not by the order it was plugged in.
const BY_ID: &str = "/dev/serial/by-id";

/// The link in `dir` to the device that `path` is, unless `path` is in `dir` already:
/// the name for a config, as `ttyUSB` numbers follow the order adapters were plugged in.
fn stable_name(path: &str, dir: &Path) -> Option<PathBuf> {
    if Path::new(path).starts_with(dir) {
        return None;
    }
    let device = std::fs::canonicalize(path).ok()?;
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .find(|link| std::fs::canonicalize(link).is_ok_and(|target| target == device))
}

/// `3m 25s`; under ten seconds to a tenth.
fn rounded(duration: Duration) -> String {
    let rounded = if duration >= Duration::from_secs(10) {
        Duration::from_secs(duration.as_secs_f64().round() as u64)
    } else {
        Duration::from_millis((duration.as_secs_f64() * 10.0).round() as u64 * 100)
    };
    humantime::format_duration(rounded).to_string()
}

/// A progress bar on stderr; indicatif hides it when stderr is not a terminal.
fn progress_bar(probes: u64) -> ProgressBar {
    let bar = ProgressBar::new(probes);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {pos}/{len} probes at {msg}, {eta} left",
        )
        .expect("a valid template"),
    );
    bar
}

pub async fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let plan = Plan::new(args)?;
    // Taken over before the first probe, so that Ctrl-C always ends in the summary.
    let mut interrupt = signal(SignalKind::interrupt())?;
    eprint!("{}", plan.describe());
    let bar = progress_bar(plan.probes());
    let mut finds = Vec::new();
    let (result, interrupted) = tokio::select! {
        result = plan.run(&bar, &mut finds) => (result, false),
        _ = interrupt.recv() => (Ok(()), true),
    };
    bar.finish_and_clear();
    if interrupted {
        eprintln!("interrupted: what answered so far follows");
    }
    let mut settings: Vec<Option<LineSettings>> = finds.iter().map(|f| f.line).collect();
    settings.dedup();
    for line in settings {
        let at: Vec<&Find> = finds.iter().filter(|f| f.line == line).collect();
        println!("\n{}", plan.snippet(line, &at));
    }
    result?;
    if interrupted {
        return Ok(ExitCode::from(INTERRUPTED));
    }
    if finds.is_empty() {
        eprintln!(
            "nothing answered. Check the wiring (A and B swapped?) and the device's power, or give a slow device a longer --timeout."
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(settings: &[LineSettings]) -> Vec<String> {
        settings.iter().map(LineSettings::describe).collect()
    }

    #[test]
    fn baud_and_parity_narrow_the_common_settings() {
        assert_eq!(
            described(&line_settings(None, None)),
            [
                "9600 8E1",
                "9600 8N1",
                "19200 8E1",
                "19200 8N1",
                "38400 8N1",
                "115200 8N1",
                "4800 8E1"
            ]
        );
        assert_eq!(
            described(&line_settings(Some(38400), None)),
            ["38400 8E1", "38400 8N1"]
        );
        assert_eq!(
            described(&line_settings(None, Some(Parity::Even))),
            ["9600 8E1", "19200 8E1", "4800 8E1"]
        );
        assert_eq!(
            described(&line_settings(None, Some(Parity::Odd))),
            [
                "9600 8O1",
                "19200 8O1",
                "38400 8O1",
                "115200 8O1",
                "4800 8O1"
            ]
        );
        assert_eq!(
            described(&line_settings(Some(57600), Some(Parity::None))),
            ["57600 8N1"]
        );
    }

    fn plan(extra: &[&str]) -> anyhow::Result<Plan> {
        use clap::Parser;
        let args = [&["rtu2mqtt", "scan"], extra].concat();
        match crate::cli::Cli::try_parse_from(args)?.command {
            crate::cli::Command::Scan(args) => Plan::new(args),
            other => panic!("{other:?}"),
        }
    }

    /// The waits the help of `--timeout` quotes, and the estimate the README quotes.
    #[test]
    fn the_default_wait_and_estimate_are_what_the_help_says() {
        let plan = plan(&["--port", "/dev/ttyUSB0"]).unwrap();
        let wait = |baud, parity| {
            let line = line((baud, parity));
            let read = plan.read(UnitId::new(1).unwrap());
            (line.chars(f64::from(read.frame_bytes())) + plan.timeout).as_millis()
        };
        assert_eq!(wait(9600, Parity::Even), 117);
        assert_eq!(wait(115_200, Parity::None), 101);
        let said = plan.describe();
        assert!(
            said.contains("at most 3m 26s for all 7 line settings, 31s at 9600 8E1"),
            "{said}"
        );
    }

    #[test]
    fn modbus_tcp_takes_no_line_settings() {
        let error = plan(&["--port", "tcp://10.0.0.5:502", "--baud", "9600"]).unwrap_err();
        assert!(error.to_string().contains("leave out --baud"), "{error}");
        let said = plan(&["--port", "tcp://10.0.0.5:502", "--units", "1-10"])
            .unwrap()
            .describe();
        assert!(said.contains("only unit ids are tried"), "{said}");
        assert!(
            said.contains("waits 100ms for an answer (--timeout): at most 1s"),
            "{said}"
        );
        assert!(plan(&["--port", "/dev/ttyUSB0", "--timeout", "5s"]).is_err());
    }

    #[test]
    fn a_port_is_named_by_its_link_in_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let device = dir.path().join("ttyUSB3");
        std::fs::write(&device, "").unwrap();
        let by_id = dir.path().join("by-id");
        std::fs::create_dir(&by_id).unwrap();
        let link = by_id.join("usb-FTDI_FT232R_A50285BI-if00-port0");
        std::os::unix::fs::symlink(&device, &link).unwrap();
        std::os::unix::fs::symlink(dir.path().join("other"), by_id.join("usb-other")).unwrap();
        let path = device.to_str().unwrap();
        assert_eq!(stable_name(path, &by_id), Some(link.clone()));
        assert_eq!(stable_name(link.to_str().unwrap(), &by_id), None);
        assert_eq!(stable_name("/dev/pts/77", &by_id), None);
    }

    #[test]
    fn a_gateway_saying_nobody_answered_is_no_find() {
        assert!(nobody_there(ExceptionCode::GatewayTargetDevice));
        assert!(!nobody_there(ExceptionCode::IllegalDataAddress));
    }

    #[test]
    fn the_snippet_names_port_line_and_each_unit() {
        let plan = plan(&[
            "--port",
            "/dev/serial/by-id/usb-\"x\"",
            "--timeout",
            "500ms",
        ])
        .unwrap();
        let at = line((19200, Parity::None));
        let line = Some(at);
        let finds = [
            Find {
                line,
                unit: UnitId::new(17).unwrap(),
                answer: Answer::Value(1234),
            },
            Find {
                line,
                unit: UnitId::new(5).unwrap(),
                answer: Answer::Exception(ExceptionCode::IllegalDataAddress),
            },
        ];
        let text = plan.snippet(line, &finds.iter().collect::<Vec<_>>());
        let config = crate::config::parse(&text, std::path::Path::new("scan.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.bus.line, at);
        assert_eq!(config.bus.timing.timeout, Duration::from_millis(500));
        assert_eq!(config.devices.len(), 2);
        assert!(
            text.contains("exception 2 (illegal data address)"),
            "{text}"
        );
    }
}
