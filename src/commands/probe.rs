//! `rtu2mqtt check --probe`: what only the devices know (issue 15). The gateway's own bus
//! task and scheduler, without MQTT, read the plan on the configured bus until every
//! register has an outcome once: a value (as it would be published), not a value (NaN, an
//! infinity), set aside (the device refuses it even alone) or failed. A deadline from the
//! timeouts and retries ends it even when a device says nothing.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::Reading;
use crate::bus::{self, BusError, PortStatus};
use crate::codec::DecodeError;
use crate::config::Config;
use crate::plan;
use crate::scheduler::Event;

/// Room for the devices' turnarounds, which no config states, and the scheduler's own.
const TURNAROUNDS: Duration = Duration::from_secs(1);

/// What came of one register.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// Its value, as it would be published.
    Value(String),
    NotAValue(DecodeError),
    SetAside,
    Failed(String),
}

impl Outcome {
    fn describe(&self) -> String {
        match self {
            Outcome::Value(text) => text.clone(),
            Outcome::NotAValue(DecodeError::NotFinite(n)) => {
                format!("not a value: {n}, not published (how many devices say \"no sensor\")")
            }
            Outcome::NotAValue(error) => format!("not a value: {error}"),
            Outcome::SetAside => {
                "set aside: the device refuses it (exception 2), even read alone".to_owned()
            }
            Outcome::Failed(why) => format!("failed: {why}"),
        }
    }
}

/// The outcomes so far, register by register of each device.
#[derive(Debug)]
struct Probe {
    config: Arc<Config>,
    outcomes: Vec<Vec<Option<Outcome>>>,
    /// Each device's last failed read, for its registers it left unread.
    failures: Vec<Option<BusError>>,
    /// Registers without an outcome.
    left: usize,
}

impl Probe {
    fn new(config: Arc<Config>) -> Probe {
        let outcomes: Vec<Vec<Option<Outcome>>> = config
            .devices
            .iter()
            .map(|d| vec![None; d.registers.len()])
            .collect();
        Probe {
            left: outcomes.iter().map(Vec::len).sum(),
            failures: vec![None; config.devices.len()],
            outcomes,
            config,
        }
    }

    fn done(&self) -> bool {
        self.left == 0
    }

    /// The first outcome of a register is its outcome.
    fn settle(&mut self, device: usize, register: usize, outcome: Outcome) {
        if let Some(slot) = self
            .outcomes
            .get_mut(device)
            .and_then(|d| d.get_mut(register))
            .filter(|slot| slot.is_none())
        {
            *slot = Some(outcome);
            self.left -= 1;
        }
    }

    /// The registers of `device` still without an outcome failed: `why`.
    fn give_up(&mut self, device: usize, why: &str) {
        let unread = self.outcomes.get(device).map_or(0, Vec::len);
        for register in 0..unread {
            self.settle(device, register, Outcome::Failed(why.to_owned()));
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Values { device, values } => {
                let config = Arc::clone(&self.config);
                let Some(spec) = config.devices.get(device) else {
                    return;
                };
                for (register, value) in values {
                    if let Some(spec) = spec.registers.get(register) {
                        let text = spec.codec.format(&value);
                        self.settle(device, register, Outcome::Value(text));
                    }
                }
            }
            Event::NotAValue {
                device,
                register,
                error,
            } => self.settle(device, register, Outcome::NotAValue(error)),
            Event::SetAside { device, registers } => {
                for register in registers {
                    self.settle(device, register, Outcome::SetAside);
                }
            }
            Event::Failed {
                device,
                registers,
                error,
            } => {
                for register in registers {
                    self.settle(device, register, Outcome::Failed(error.to_string()));
                }
                if let Some(failure) = self.failures.get_mut(device) {
                    *failure = Some(error);
                }
            }
            // Its other reads are not tried again for a while: they failed as it did.
            Event::Availability {
                device,
                online: false,
            } => {
                let why = match self.failures.get(device).and_then(Option::as_ref) {
                    Some(error) => format!("not read: the device went offline ({error})"),
                    None => "not read: the device went offline".to_owned(),
                };
                self.give_up(device, &why);
            }
            Event::Availability { online: true, .. } => {}
            Event::PortDown(error) => {
                for device in 0..self.outcomes.len() {
                    self.give_up(device, &error.to_string());
                }
            }
        }
    }

    /// The time ran out: the registers without an outcome failed.
    fn time_out(&mut self, limit: Duration) {
        let limit = humantime::format_duration(crate::clock::to_ms(limit));
        for device in 0..self.outcomes.len() {
            let why = match &self.failures[device] {
                Some(error) => format!("no outcome within {limit} (the device failed: {error})"),
                None => format!("no outcome within {limit}"),
            };
            self.give_up(device, &why);
        }
    }

    /// Whether every register answered with a value.
    fn answered(&self) -> bool {
        self.outcomes
            .iter()
            .flatten()
            .all(|o| matches!(o, Some(Outcome::Value(_))))
    }

    /// One line per register, device by device, and the count of each kind of outcome.
    fn report(&self) -> String {
        let mut out = String::new();
        let mut counts = [0usize; 4];
        for (device, outcomes) in self.config.devices.iter().zip(&self.outcomes) {
            let _ = writeln!(out, "\ndevice {} (unit {}):", device.name, device.unit);
            let width = device
                .registers
                .iter()
                .map(|r| r.name.chars().count())
                .max()
                .unwrap_or(0);
            for (register, outcome) in device.registers.iter().zip(outcomes) {
                let text = match outcome {
                    Some(outcome) => {
                        counts[match outcome {
                            Outcome::Value(_) => 0,
                            Outcome::NotAValue(_) => 1,
                            Outcome::SetAside => 2,
                            Outcome::Failed(_) => 3,
                        }] += 1;
                        outcome.describe()
                    }
                    // Every register has one when the probe ends.
                    None => "failed: no outcome".to_owned(),
                };
                let _ = writeln!(out, "  {:<width$}  {text}", register.name);
            }
        }
        let total: usize = self.outcomes.iter().map(Vec::len).sum();
        let [values, not_values, set_aside, failed] = counts;
        let _ = write!(out, "\n{values} of {total} registers answered");
        for (count, what) in [
            (not_values, "not a value"),
            (set_aside, "set aside"),
            (failed, "failed"),
        ] {
            if count > 0 {
                let _ = write!(out, ", {count} {what}");
            }
        }
        let _ = writeln!(out);
        out
    }
}

/// How long the probe may take once the port is open: every read of the plan, each with
/// its retries, a wait for a late answer, and the smaller reads that refusals may split
/// it into (up to twice its registers), each as long as its line time and its device's
/// timeout; and the devices' turnarounds.
fn deadline(config: &Config) -> Duration {
    let line = config.bus.transport.has_line().then_some(&config.bus.line);
    let reads: Duration = plan::plan(&config.devices)
        .iter()
        .map(|read| {
            let timeout = config.devices[read.device].timing.timeout;
            let attempt = timeout + line.map_or(Duration::ZERO, |line| read.line_time(line));
            let registers = u32::try_from(read.registers.len()).unwrap_or(u32::MAX);
            let tries = config
                .bus
                .retries
                .saturating_add(registers.saturating_mul(2));
            attempt.saturating_mul(tries)
        })
        .sum();
    reads + TURNAROUNDS
}

/// The error of a port that cannot be opened, with what to do when another program
/// holds it.
fn cannot_open(error: &str) -> String {
    let mut message = format!("cannot probe: {error}");
    if error.contains(bus::IN_USE) {
        message.push_str(
            "\n  if the rtu2mqtt service runs, it holds the port: stop it \
             (`sudo systemctl stop rtu2mqtt`), probe, then start it again \
             (`sudo systemctl start rtu2mqtt`)",
        );
    }
    message
}

/// Reads every register of `config` once on its bus and prints what came of each;
/// whether every one answered with a value.
pub async fn run(config: Config) -> anyhow::Result<bool> {
    let config = Arc::new(config);
    let tasks = TaskTracker::new();
    let stop = CancellationToken::new();
    let mut reading = Reading::start(&tasks, &config, &stop);
    let probed = listen(&config, &mut reading).await;
    stop.cancel();
    tasks.close();
    tasks.wait().await;
    let probe = probed?;
    print!("{}", probe.report());
    Ok(probe.answered())
}

/// The scheduler's events until every register has an outcome or the time is up.
async fn listen(config: &Arc<Config>, reading: &mut Reading) -> anyhow::Result<Probe> {
    // The bus tries the port as it starts and says how that went: at once for a serial
    // port, within its connect timeout for a server.
    let opened = reading
        .port
        .wait_for(|status| *status != PortStatus::Starting)
        .await
        .map(|status| status.clone());
    if let Ok(PortStatus::Down(error)) = opened {
        bail!(cannot_open(&error));
    }
    let limit = deadline(config);
    println!(
        "\nprobe on {}: every register read once, within {}",
        config.bus.transport,
        humantime::format_duration(crate::clock::to_ms(limit))
    );
    let until = Instant::now() + limit;
    let mut probe = Probe::new(Arc::clone(config));
    while !probe.done() {
        tokio::select! {
            event = reading.channels.events.recv() => match event {
                Some(event) => probe.on_event(event),
                None => break,
            },
            () = tokio::time::sleep_until(until) => {
                probe.time_out(limit);
                break;
            }
        }
    }
    Ok(probe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Value;
    use tokio_modbus::ExceptionCode;

    const METER: &str = r#"
bus = { port = "/dev/null", timeout = "100ms", retries = 1, baud = 9600 }
[[device]]
name = "meter"
unit = 1
register = [
  { name = "voltage", address = 0, type = "f32" },
  { name = "current", address = 2, type = "f32" },
  { name = "missing", address = 4 },
  { name = "mode", address = 5, values = { 0 = "off", 1 = "heat" } },
]
[[device]]
name = "pump"
unit = 2
register = [{ name = "flow", address = 0 }, { name = "speed", address = 100, table = "input" }]
"#;

    fn fresh() -> Probe {
        let config = crate::config::parse(METER, std::path::Path::new("t")).unwrap();
        Probe::new(Arc::new(config))
    }

    #[test]
    fn each_register_says_its_first_outcome_and_only_values_answer() {
        let mut probe = fresh();
        probe.on_event(Event::NotAValue {
            device: 0,
            register: 1,
            error: DecodeError::NotFinite(f64::NAN),
        });
        probe.on_event(Event::Values {
            device: 0,
            values: vec![(0, Value::Number(230.5)), (3, Value::Text("heat".into()))],
        });
        probe.on_event(Event::SetAside {
            device: 0,
            registers: vec![2],
        });
        // A value later does not change the first outcome.
        probe.on_event(Event::Values {
            device: 0,
            values: vec![(1, Value::Number(1.5))],
        });
        probe.on_event(Event::Failed {
            device: 1,
            registers: vec![0],
            error: BusError::Timeout(Duration::from_millis(100)),
        });
        assert!(!probe.done());
        probe.on_event(Event::Availability {
            device: 1,
            online: false,
        });
        assert!(probe.done());
        assert!(!probe.answered());
        let report = probe.report();
        for line in [
            "device meter (unit 1):",
            "  voltage  230.5",
            "  current  not a value: NaN, not published",
            "  missing  set aside: the device refuses it (exception 2), even read alone",
            "  mode     heat",
            "device pump (unit 2):",
            "  flow   failed: no answer within 100ms",
            "  speed  failed: not read: the device went offline (no answer within 100ms)",
            "2 of 6 registers answered, 1 not a value, 1 set aside, 2 failed",
        ] {
            assert!(report.contains(line), "{line}\n{report}");
        }
    }

    #[test]
    fn the_time_out_fails_what_is_left_and_a_full_house_answers() {
        let mut probe = fresh();
        probe.on_event(Event::Failed {
            device: 0,
            registers: vec![0, 1, 2, 3],
            error: BusError::Exception(ExceptionCode::IllegalFunction),
        });
        probe.time_out(Duration::from_millis(2500));
        assert!(probe.done());
        let report = probe.report();
        assert!(
            report.contains("  mode     failed: device refused: exception 1"),
            "{report}"
        );
        assert!(
            report.contains("  flow   failed: no outcome within 2s 500ms\n"),
            "{report}"
        );

        let mut probe = fresh();
        probe.on_event(Event::Values {
            device: 0,
            values: (0..4).map(|r| (r, Value::Integer(0))).collect(),
        });
        probe.on_event(Event::Values {
            device: 1,
            values: vec![(0, Value::Integer(7)), (1, Value::Integer(8))],
        });
        assert!(probe.done() && probe.answered());
        assert!(probe.report().ends_with("\n6 of 6 registers answered\n"));
    }

    #[test]
    fn the_deadline_allows_every_read_its_tries_and_splits() {
        let config = crate::config::parse(METER, std::path::Path::new("t")).unwrap();
        // meter: one read of 6 registers (4 configured); pump: two reads of one each.
        let reads = plan::plan(&config.devices);
        assert_eq!(reads.len(), 3);
        let line = |r: &plan::PollRequest| r.line_time(&config.bus.line);
        let timeout = Duration::from_millis(100);
        let expected = (timeout + line(&reads[0])) * (1 + 2 * 4)
            + (timeout + line(&reads[1])) * 3
            + (timeout + line(&reads[2])) * 3
            + TURNAROUNDS;
        assert_eq!(deadline(&config), expected);
    }

    #[test]
    fn a_port_in_use_says_how_to_free_it() {
        let busy = cannot_open(&format!("/dev/ttyUSB0: {} (Device busy)", bus::IN_USE));
        assert!(busy.contains("sudo systemctl stop rtu2mqtt"), "{busy}");
        let absent = cannot_open("/dev/ttyUSB9: No such file or directory");
        assert!(!absent.contains("systemctl"), "{absent}");
    }
}
