//! The scheduler: runs each read of the plan at its interval, on a grid of deadlines, and
//! turns answers into events (values, failures, availability changes).
//!
//! A read is never queued twice: while one is in flight, its next deadline waits for it.
//! A deadline missed by a whole interval is skipped and counted as an overrun, so a bus
//! that cannot keep up gets a steady load, not a growing backlog.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_modbus::ExceptionCode;
use tokio_util::sync::CancellationToken;

use crate::bus::{BusError, BusHandle, ReadData};
use crate::codec::Value;
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
    /// The device started or stopped answering.
    Availability { device: usize, online: bool },
}

/// Counters the scheduler keeps for stats.
#[derive(Debug, Default)]
pub struct SchedulerStats {
    pub overruns: AtomicU64,
}

struct Slot {
    request: PollRequest,
    due: Instant,
    in_flight: bool,
}

/// Health of one device, for availability.
#[derive(Debug, Clone, Copy, Default)]
struct Health {
    failures: u32,
    online: Option<bool>,
}

pub struct Scheduler {
    devices: Vec<Device>,
    offline_after: u32,
    slots: Vec<Slot>,
    health: Vec<Health>,
    bus: BusHandle,
    events: mpsc::UnboundedSender<Event>,
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
        Scheduler {
            devices: config.devices.clone(),
            offline_after: config.bus.offline_after,
            slots: plan::plan(&config.devices)
                .into_iter()
                .map(|request| Slot {
                    request,
                    due: now,
                    in_flight: false,
                })
                .collect(),
            health: vec![Health::default(); config.devices.len()],
            bus,
            events,
            stats: Arc::default(),
        }
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
        loop {
            let next_due = self
                .slots
                .iter()
                .filter(|s| !s.in_flight)
                .map(|s| s.due)
                .min();
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some((slot, result)) = in_flight.next() => self.finish(slot, result),
                () = sleep_until(next_due) => {
                    let now = Instant::now();
                    for (index, slot) in self.slots.iter_mut().enumerate() {
                        if slot.in_flight || slot.due > now {
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
                        in_flight.push(async move { (index, bus.read(read).await) });
                    }
                }
            }
        }
    }

    fn finish(&mut self, index: usize, result: Result<ReadData, BusError>) {
        self.slots[index].in_flight = false;
        let request = &self.slots[index].request;
        let device_index = request.device;
        let device = &self.devices[device_index];
        // The reads a merged read was made of, when the device refuses to read across gaps.
        let parts = match &result {
            Err(BusError::Exception(ExceptionCode::IllegalDataAddress)) => {
                Some(request.split(device)).filter(|parts| parts.len() > 1)
            }
            _ => None,
        };
        match result {
            Ok(data) => {
                let words = data.words();
                let values = request
                    .registers
                    .iter()
                    .filter_map(|&r| {
                        let register = &device.registers[r];
                        let at = usize::from(register.address - request.read.address);
                        let value = register.codec.decode(words.get(at..)?)?;
                        Some((r, value))
                    })
                    .collect();
                self.emit(Event::Values {
                    device: device_index,
                    values,
                });
                self.answered(device_index);
            }
            Err(_) if parts.is_some() => {
                let mut parts = parts.into_iter().flatten();
                tracing::info!(
                    device = %device.name,
                    address = request.read.address,
                    count = request.read.count,
                    "device refuses reads across gaps (exception 2): reading the parts separately from now on"
                );
                let now = Instant::now();
                let slot = |request| Slot {
                    request,
                    due: now,
                    in_flight: false,
                };
                if let Some(first) = parts.next() {
                    self.slots[index] = slot(first);
                }
                self.slots.extend(parts.map(slot));
                self.answered(device_index);
            }
            Err(error) => {
                let names: Vec<&str> = request
                    .registers
                    .iter()
                    .map(|r| device.registers[*r].name.as_str())
                    .collect();
                tracing::warn!(
                    device = %device.name,
                    registers = %names.join(","),
                    table = request.read.table.name(),
                    address = request.read.address,
                    count = request.read.count,
                    %error,
                    "read failed"
                );
                let registers = request.registers.clone();
                let transport = error.is_transport();
                self.emit(Event::Failed {
                    device: device_index,
                    registers,
                    error,
                });
                if transport {
                    self.failed(device_index);
                } else {
                    self.answered(device_index);
                }
            }
        }
    }

    fn answered(&mut self, device: usize) {
        let health = &mut self.health[device];
        health.failures = 0;
        if health.online != Some(true) {
            health.online = Some(true);
            self.emit(Event::Availability {
                device,
                online: true,
            });
        }
    }

    fn failed(&mut self, device: usize) {
        let health = &mut self.health[device];
        health.failures += 1;
        if health.failures >= self.offline_after && health.online != Some(false) {
            health.online = Some(false);
            self.emit(Event::Availability {
                device,
                online: false,
            });
        }
    }

    fn emit(&self, event: Event) {
        // The receiver outlives the scheduler except at shutdown, when nothing is lost.
        let _ = self.events.send(event);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
