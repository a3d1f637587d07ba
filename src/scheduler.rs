//! The scheduler: runs each read of the plan at its interval, on a grid of deadlines, and
//! turns answers into events (values, failures, availability changes).
//!
//! A read is never queued twice: while one is in flight, its next deadline waits for it.
//! A deadline missed by a whole interval is skipped and counted as an overrun, so a bus
//! that cannot keep up gets a steady load, not a growing backlog.
//!
//! A device that went offline because it stopped answering costs line time on every read
//! that times out, so it is only probed, with one read, at a pace that slows down to
//! `offline_poll` (issue 10); the first answer puts it back on its schedule. A device
//! offline because the port is gone is polled as usual: that fails at once, costs no line
//! time, and values flow as soon as the port is back.
//!
//! Failures are said once: one log line and one event when a device starts failing (per
//! kind of failure), one line when it answers again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_modbus::ExceptionCode;
use tokio_util::sync::CancellationToken;

use crate::bus::{BusError, BusHandle, ReadData};
use crate::clock::Timer;
use crate::codec::{DecodeError, Value};
use crate::config::{Config, Device};
use crate::plan::{self, PollRequest};

/// What the scheduler reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Fresh values of some registers of a device (index into its registers).
    Values {
        device: usize,
        values: Vec<(usize, Value)>,
    },
    /// A read failed; its registers have no fresh value.
    Failed {
        device: usize,
        registers: Vec<usize>,
        error: BusError,
    },
    /// The device refuses to read these registers even alone (exception 2): they are set
    /// aside, tried again every [`SET_ASIDE_RETRY`], and their neighbours go on.
    SetAside {
        device: usize,
        registers: Vec<usize>,
    },
    /// A register of an answered read holds no value (NaN, an infinity): a failed read of
    /// that register alone, said once until it holds a value again.
    NotAValue {
        device: usize,
        register: usize,
        error: DecodeError,
    },
    /// The device started or stopped answering.
    Availability { device: usize, online: bool },
    /// The port failed or cannot be opened (said once until it works again).
    PortDown(BusError),
}

/// Counters the scheduler keeps for stats.
#[derive(Debug, Default)]
pub struct SchedulerStats {
    pub overruns: AtomicU64,
    /// Per device: register reads that decoded to no value (NaN, an infinity), each a
    /// failed read of its register (SPEC), though said only once.
    not_values: Vec<AtomicU64>,
}

impl SchedulerStats {
    fn new(devices: usize) -> SchedulerStats {
        SchedulerStats {
            overruns: AtomicU64::new(0),
            not_values: (0..devices).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The reads that held no value, per device, since the last call.
    pub fn take_not_values(&self) -> Vec<u64> {
        self.not_values
            .iter()
            .map(|count| count.swap(0, Ordering::Relaxed))
            .collect()
    }
}

struct Slot {
    request: PollRequest,
    due: Instant,
    in_flight: bool,
    /// Not polled while its device is offline and probed through another read.
    parked: bool,
    /// The device refuses this read (an exception), already reported.
    refused: bool,
    /// In flight as a probe of its offline device.
    probing: bool,
    /// Refused by the device even alone; tried again every [`SET_ASIDE_RETRY`].
    set_aside: bool,
    /// Registers of the read that held no value when last read (already said).
    not_values: Vec<usize>,
    /// Registers of the read that held a raw number their `values` do not name (logged).
    unlisted: Vec<usize>,
}

impl Slot {
    fn new(request: PollRequest, due: Instant) -> Slot {
        Slot {
            request,
            due,
            in_flight: false,
            parked: false,
            refused: false,
            probing: false,
            set_aside: false,
            not_values: Vec::new(),
            unlisted: Vec::new(),
        }
    }
}

/// A run of failures of one device: since when, how many, of which kinds (each reported
/// once).
#[derive(Debug, Clone)]
struct Episode {
    since: Instant,
    attempts: u32,
    kinds: Vec<&'static str>,
}

/// Health of one device, for availability.
#[derive(Debug, Clone, Default)]
struct Health {
    failures: u32,
    online: Option<bool>,
    episode: Option<Episode>,
    /// While offline and silent: the pause before the next probe.
    probe_backoff: Option<Duration>,
}

/// How often a register the device refuses is tried again: devices gain registers with a
/// firmware update or a setting, rarely within minutes.
pub const SET_ASIDE_RETRY: Duration = Duration::from_secs(600);

/// The first probe of a device that went silent comes this long after it went offline
/// (or after `offline_poll`, if shorter); the pause doubles up to `offline_poll`.
const FIRST_PROBE: Duration = Duration::from_secs(2);

pub struct Scheduler {
    devices: Vec<Device>,
    offline_after: u32,
    offline_poll: Duration,
    slots: Vec<Slot>,
    health: Vec<Health>,
    /// The port is known to be down: said once.
    port_down: bool,
    bus: BusHandle,
    events: mpsc::UnboundedSender<Event>,
    /// New intervals for the reads that follow their device's (`poll/set`).
    intervals: mpsc::UnboundedReceiver<(usize, Duration)>,
    intervals_tx: mpsc::UnboundedSender<(usize, Duration)>,
    /// Which devices answer (`None`: not known yet), for whoever must wait for one.
    online: watch::Sender<Vec<Option<bool>>>,
    stats: Arc<SchedulerStats>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("reads", &self.slots.len())
            .finish()
    }
}

impl Scheduler {
    /// A scheduler for the plan of `config`; every read is due at once.
    pub fn new(config: &Config, bus: BusHandle, events: mpsc::UnboundedSender<Event>) -> Scheduler {
        let now = Instant::now();
        let (intervals_tx, intervals) = mpsc::unbounded_channel();
        Scheduler {
            devices: config.devices.clone(),
            offline_after: config.bus.offline_after,
            offline_poll: config.bus.offline_poll,
            slots: plan::plan(&config.devices)
                .into_iter()
                .map(|request| Slot::new(request, now))
                .collect(),
            health: vec![Health::default(); config.devices.len()],
            port_down: false,
            bus,
            events,
            intervals,
            intervals_tx,
            online: watch::Sender::new(vec![None; config.devices.len()]),
            stats: Arc::new(SchedulerStats::new(config.devices.len())),
        }
    }

    /// Which devices answer, as it changes.
    pub fn availability(&self) -> watch::Receiver<Vec<Option<bool>>> {
        self.online.subscribe()
    }

    /// Where to send a device's new poll interval (device index, interval).
    pub fn intervals(&self) -> mpsc::UnboundedSender<(usize, Duration)> {
        self.intervals_tx.clone()
    }

    /// Reads in the plan.
    pub fn reads(&self) -> usize {
        self.slots.len()
    }

    pub fn stats(&self) -> Arc<SchedulerStats> {
        Arc::clone(&self.stats)
    }

    /// Polls until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut in_flight = FuturesUnordered::new();
        let mut timer = Timer::default();
        loop {
            let next_due = self
                .slots
                .iter()
                .filter(|s| !s.in_flight && !s.parked)
                .map(|s| s.due)
                .min();
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some((slot, result)) = in_flight.next() => self.finish(slot, result),
                Some((device, interval)) = self.intervals.recv() => self.set_interval(device, interval),
                () = timer.sleep_until(next_due) => {
                    let now = Instant::now();
                    for (index, slot) in self.slots.iter_mut().enumerate() {
                        if slot.in_flight || slot.parked || slot.due > now {
                            continue;
                        }
                        slot.in_flight = true;
                        let late = now - slot.due;
                        let interval = slot.request.interval;
                        let skipped = (late.as_nanos() / interval.as_nanos().max(1)) as u32;
                        if skipped > 0 {
                            self.stats.overruns.fetch_add(u64::from(skipped), Ordering::Relaxed);
                        }
                        slot.due += interval * (skipped + 1);
                        let bus = self.bus.clone();
                        let read = slot.request.read;
                        let probe = self.health[slot.request.device].probe_backoff.is_some();
                        slot.probing = probe;
                        in_flight.push(async move {
                            let result = if probe { bus.probe(read).await } else { bus.read(read).await };
                            (index, result)
                        });
                    }
                }
            }
        }
    }

    /// The reads that follow the device's interval take the new one; one due later than
    /// a whole new interval from now comes sooner.
    fn set_interval(&mut self, device: usize, interval: Duration) {
        let Some(spec) = self.devices.get_mut(device) else {
            return;
        };
        spec.poll = interval;
        let soonest = Instant::now() + interval;
        // An offline device's probe and a set-aside read keep their own pace.
        let probing = self.health[device].probe_backoff.is_some();
        for slot in &mut self.slots {
            if slot.request.device == device && slot.request.follows_device {
                slot.request.interval = interval;
                if !probing && !slot.set_aside {
                    slot.due = slot.due.min(soonest);
                }
            }
        }
    }

    fn finish(&mut self, index: usize, result: Result<ReadData, BusError>) {
        self.slots[index].in_flight = false;
        let port_down = matches!(result, Err(BusError::PortDown(_)));
        if let Err(error) = &result
            && port_down
            && !self.port_down
        {
            self.emit(Event::PortDown(error.clone()));
        }
        self.port_down = port_down;
        let request = &self.slots[index].request;
        let device_index = request.device;
        let device = &self.devices[device_index];
        // A device may refuse a read through a gap, or of a register it lacks: narrowed
        // until what it refuses stands alone.
        let lacking = matches!(
            result,
            Err(BusError::Exception(ExceptionCode::IllegalDataAddress))
        );
        let parts = if lacking {
            request.narrow(device)
        } else {
            Vec::new()
        };
        match result {
            Ok(data) => {
                let address = request.read.address;
                let values = self.decode(index, &data.words());
                self.emit(Event::Values {
                    device: device_index,
                    values,
                });
                let device = &self.devices[device_index];
                let slot = &mut self.slots[index];
                slot.refused = false;
                if std::mem::take(&mut slot.set_aside) {
                    tracing::info!(device = %device.name, address, "a register set aside reads again");
                }
                self.answered(device_index);
            }
            Err(_) if !parts.is_empty() => {
                tracing::info!(
                    device = %device.name,
                    address = request.read.address,
                    count = request.read.count,
                    parts = parts.len(),
                    "device refuses this read (exception 2): reading its registers in smaller parts from now on"
                );
                let now = Instant::now();
                let mut parts = parts.into_iter();
                if let Some(first) = parts.next() {
                    self.slots[index] = Slot::new(first, now);
                }
                self.slots.extend(parts.map(|part| Slot::new(part, now)));
                self.answered(device_index);
            }
            Err(_) if lacking => {
                if !self.slots[index].set_aside {
                    tracing::warn!(
                        device = %device.name,
                        registers = %request.register_names(device).join(","),
                        address = request.read.address,
                        "the device refuses to read this register (exception 2): set aside, tried again every 10 minutes"
                    );
                    self.emit(Event::SetAside {
                        device: device_index,
                        registers: request.registers.clone(),
                    });
                }
                let slot = &mut self.slots[index];
                slot.set_aside = true;
                slot.due = Instant::now() + SET_ASIDE_RETRY;
                self.answered(device_index);
            }
            Err(error) if !error.is_transport() => {
                // The device is there and says no: reported once per read until it reads.
                if !self.slots[index].refused {
                    self.slots[index].refused = true;
                    self.report(index, error);
                }
                self.answered(device_index);
            }
            Err(error) => self.failed(index, error),
        }
    }

    /// The values of an answered read. A register that holds no value is left out and said
    /// once; a raw number its `values` do not name is published as the number and logged
    /// once.
    fn decode(&mut self, index: usize, words: &[u16]) -> Vec<(usize, Value)> {
        let slot = &mut self.slots[index];
        let request = &slot.request;
        let device = &self.devices[request.device];
        let mut values = Vec::with_capacity(request.registers.len());
        let mut not_values = Vec::new();
        for (r, decoded) in request.decode(device, words) {
            let register = &device.registers[r];
            match decoded {
                Ok(value) => {
                    if became(&mut slot.not_values, r, false) {
                        tracing::info!(
                            device = %device.name,
                            register = %register.name,
                            "holds a value again"
                        );
                    }
                    let unlisted = register.codec.is_unlisted(&value);
                    if became(&mut slot.unlisted, r, unlisted) && unlisted {
                        tracing::warn!(
                            device = %device.name,
                            register = %register.name,
                            value = %register.codec.format(&value),
                            "a raw value its `values` do not name: published as the number; said once until a named one is read"
                        );
                    }
                    values.push((r, value));
                }
                // The bus hands over whole answers: a short one never gets here.
                Err(DecodeError::TooFewWords { .. }) => {}
                Err(error) => {
                    if let Some(count) = self.stats.not_values.get(request.device) {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    if became(&mut slot.not_values, r, true) {
                        tracing::warn!(
                            device = %device.name,
                            register = %register.name,
                            %error,
                            "not published; said once until it holds a value again"
                        );
                        not_values.push((r, error));
                    }
                }
            }
        }
        let device = request.device;
        for (register, error) in not_values {
            self.emit(Event::NotAValue {
                device,
                register,
                error,
            });
        }
        values
    }

    /// Says that a read failed: the log line and the event for `bridge/error`.
    fn report(&self, index: usize, error: BusError) {
        let request = &self.slots[index].request;
        let device = &self.devices[request.device];
        tracing::warn!(
            device = %device.name,
            registers = %request.register_names(device).join(","),
            table = request.read.table.name(),
            address = request.read.address,
            count = request.read.count,
            %error,
            "read failed; said once until it reads again"
        );
        self.emit(Event::Failed {
            device: request.device,
            registers: request.registers.clone(),
            error,
        });
    }

    fn answered(&mut self, device: usize) {
        let health = &mut self.health[device];
        health.failures = 0;
        if let Some(episode) = health.episode.take() {
            tracing::info!(
                device = %self.devices[device].name,
                failed_attempts = episode.attempts,
                failing_for = %humantime::format_duration(crate::clock::to_ms(episode.since.elapsed())),
                "device answers again"
            );
        }
        if health.probe_backoff.take().is_some() {
            // Back on its schedule from now: the deadlines it missed while parked were not
            // the line's fault, so they are no overruns.
            let now = Instant::now();
            for slot in self.slots.iter_mut().filter(|s| s.request.device == device) {
                slot.parked = false;
                slot.due = now;
            }
        }
        if health.online != Some(true) {
            self.set_online(device, true);
            self.emit(Event::Availability {
                device,
                online: true,
            });
        }
    }

    fn failed(&mut self, index: usize, error: BusError) {
        let device = self.slots[index].request.device;
        let health = &mut self.health[device];
        health.failures += 1;
        let episode = health.episode.get_or_insert_with(|| Episode {
            since: Instant::now(),
            attempts: 0,
            kinds: Vec::new(),
        });
        episode.attempts += 1;
        let kind = error.kind();
        let first_of_kind = !episode.kinds.contains(&kind);
        if first_of_kind {
            episode.kinds.push(kind);
        }
        let went_offline = health.failures >= self.offline_after && health.online != Some(false);
        if went_offline {
            self.set_online(device, false);
        }
        let silent = !matches!(error, BusError::PortDown(_) | BusError::Stopped);
        if self.health[device].online == Some(false) && silent {
            self.probe_later(index);
        }
        // The port says for itself that it is gone; its devices need not each say it.
        if first_of_kind && silent {
            self.report(index, error);
        } else {
            tracing::debug!(device = %self.devices[device].name, %error, "read failed again");
        }
        if went_offline {
            self.emit(Event::Availability {
                device,
                online: false,
            });
        }
    }

    fn set_online(&mut self, device: usize, online: bool) {
        self.health[device].online = Some(online);
        self.online.send_modify(|all| all[device] = Some(online));
    }

    /// Parks the reads of an offline device but one, which probes it after a pause that
    /// grows with every failed probe. The probe moves on to the device's next read each
    /// time: a read the device never answers (some are silent on an unmapped range instead
    /// of refusing it) cannot keep it offline.
    fn probe_later(&mut self, index: usize) {
        let device = self.slots[index].request.device;
        let was_probe = std::mem::take(&mut self.slots[index].probing);
        let health = &mut self.health[device];
        let ceiling = self.offline_poll;
        let backoff = match health.probe_backoff {
            None => FIRST_PROBE.min(ceiling),
            Some(b) if was_probe => (b * 2).min(ceiling),
            // A read already on its way when the device went offline: no probe, no slower;
            // if it is the one chosen to probe next, it probes after the same pause.
            Some(b) => {
                let chosen = !self
                    .slots
                    .iter()
                    .enumerate()
                    .any(|(i, s)| i != index && s.request.device == device && !s.parked);
                if chosen {
                    self.slots[index].due = Instant::now() + b;
                } else {
                    self.slots[index].parked = true;
                }
                return;
            }
        };
        health.probe_backoff = Some(backoff);
        let count = self.slots.len();
        let next = (1..=count)
            .map(|step| (index + step) % count)
            .find(|i| self.slots[*i].request.device == device)
            .unwrap_or(index);
        let now = Instant::now();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.request.device == device {
                slot.parked = i != next;
                if i == next {
                    slot.due = now + backoff;
                }
            }
        }
    }

    fn emit(&self, event: Event) {
        // The receiver outlives the scheduler except at shutdown, when nothing is lost.
        let _ = self.events.send(event);
    }
}

/// Keeps `registers` as those that are now `odd`; whether `register` changed, so that it
/// is said once when it becomes odd and once when it stops.
fn became(registers: &mut Vec<usize>, register: usize, odd: bool) -> bool {
    let known = registers.contains(&register);
    if odd && !known {
        registers.push(register);
    } else if !odd && known {
        registers.retain(|r| *r != register);
    }
    odd != known
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::ReadData;

    /// An f32 that says "no sensor" with NaN beside a u16, and a mode with `values`.
    const METER: &str = r#"
bus = { port = "/dev/null" }
[[device]]
name = "meter"
unit = 1
register = [
  { name = "temperature", address = 0, type = "f32" },
  { name = "count", address = 2 },
  { name = "mode", address = 3, values = { 0 = "off", 1 = "heat" } },
]
"#;

    fn scheduler() -> (Scheduler, mpsc::UnboundedReceiver<Event>) {
        let config = crate::config::parse(METER, std::path::Path::new("t")).unwrap();
        // No bus task runs: the test hands the scheduler its answers.
        let (bus, _not_running) = crate::bus::bus(&config);
        let (events, received) = mpsc::unbounded_channel();
        (Scheduler::new(&config, bus, events), received)
    }

    /// The events of one answer to the one read.
    fn answer(
        scheduler: &mut Scheduler,
        events: &mut mpsc::UnboundedReceiver<Event>,
        words: [u16; 4],
    ) -> Vec<Event> {
        scheduler.finish(0, Ok(ReadData::Words(words.to_vec())));
        std::iter::from_fn(|| events.try_recv().ok()).collect()
    }

    #[test]
    fn nan_is_not_published_and_is_said_once_while_its_neighbours_go_on() {
        let (mut scheduler, mut events) = scheduler();
        assert_eq!(scheduler.reads(), 1);
        let stats = scheduler.stats();
        let mut answered = |words| answer(&mut scheduler, &mut events, words);
        let nan = [0x7FC0, 0, 5, 1];
        let first = answered(nan);
        assert!(
            matches!(
                &first[..],
                [
                    Event::NotAValue { device: 0, register: 0, error: DecodeError::NotFinite(_) },
                    Event::Values { device: 0, values },
                    Event::Availability { online: true, .. },
                ] if *values == [(1, Value::Integer(5)), (2, Value::Text("heat".into()))]
            ),
            "{first:?}"
        );
        // Said once: the next NaN is only left out.
        let again = answered(nan);
        assert!(
            matches!(&again[..], [Event::Values { values, .. }] if values.len() == 2),
            "{again:?}"
        );
        // A value again, then NaN again: said again.
        let value = answered([0x4366, 0xB333, 6, 7]);
        assert!(
            matches!(&value[..], [Event::Values { values, .. }]
                if values[0] == (0, Value::Number(f64::from(230.7f32)))
                    && values[2] == (2, Value::Integer(7))),
            "{value:?}"
        );
        let infinite = answered([0x7F80, 0, 5, 1]);
        assert!(
            matches!(&infinite[0], Event::NotAValue { register: 0, .. }),
            "{infinite:?}"
        );
        // Said once, but each read without a value counts, once per period.
        assert_eq!(stats.take_not_values(), [3]);
        assert_eq!(stats.take_not_values(), [0]);
    }
}
