//! Bus statistics: what the bus task counts per unit and for the line, taken and reset once
//! per reporting period for `{base}/bridge/stats`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;

use crate::bus::BusError;
use crate::bus::framing::Tally;
use crate::config::Device;

/// Counters of one unit over a period (`last_success` carries over).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct UnitCounters {
    /// Transactions on the wire, retries included.
    pub requests: u64,
    pub timeouts: u64,
    pub bad_frames: u64,
    pub exceptions: u64,
    pub port_errors: u64,
    /// Bytes that formed no frame, found while waiting for its answer or after it.
    pub noise_bytes: u64,
    pub answered: u64,
    pub response_total: Duration,
    pub response_max: Duration,
    pub last_success: Option<SystemTime>,
}

impl UnitCounters {
    pub fn mean_response(&self) -> Option<Duration> {
        u32::try_from(self.answered)
            .ok()
            .filter(|n| *n > 0)
            .map(|n| self.response_total / n)
    }
}

/// Stats of one period.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub period: Duration,
    /// Line time taken by transactions and the silences before them.
    pub busy: Duration,
    /// Line time spent waiting for answers that did not come.
    pub timed_out: Duration,
    /// What the line carried besides our requests and their answers.
    pub skipped: Tally,
    pub units: BTreeMap<u8, UnitCounters>,
}

impl Snapshot {
    /// The JSON of `{base}/bridge/stats`: the line over the period, and each device.
    /// `not_values`: per device, the register reads of the period that decoded to NaN or
    /// an infinity; `set_aside`: the registers the devices refuse to read, as (device,
    /// register).
    pub fn report(
        &self,
        devices: &[Device],
        overruns: u64,
        not_values: &[u64],
        set_aside: &BTreeSet<(usize, usize)>,
    ) -> serde_json::Value {
        let ms = |d: Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
        let mut per_device = serde_json::Map::new();
        for (d, device) in devices.iter().enumerate() {
            let refused: Vec<&str> = set_aside
                .range((d, 0)..(d + 1, 0))
                .map(|&(_, r)| device.registers[r].name.as_str())
                .collect();
            let c = self
                .units
                .get(&device.unit.get())
                .cloned()
                .unwrap_or_default();
            per_device.insert(
                device.name.clone(),
                json!({
                    "unit": device.unit.get(),
                    "requests": c.requests,
                    "errors": {
                        "timeout": c.timeouts,
                        "bad_frame": c.bad_frames,
                        "exception": c.exceptions,
                        "port": c.port_errors,
                        "not_a_value": not_values.get(d).copied().unwrap_or_default(),
                    },
                    "noise_bytes": c.noise_bytes,
                    "response_ms": {
                        "mean": c.mean_response().map(ms),
                        "max": (c.answered > 0).then(|| ms(c.response_max)),
                    },
                    "last_success": c.last_success.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
                    "set_aside": refused,
                }),
            );
        }
        json!({
            "period_s": (self.period.as_secs_f64() * 10.0).round() / 10.0,
            "bus": {
                "utilisation": (self.utilisation() * 1000.0).round() / 1000.0,
                "requests": self.units.values().map(|c| c.requests).sum::<u64>(),
                "overruns": overruns,
                "timeout_ms": ms(self.timed_out),
                "noise_bytes": self.skipped.noise_bytes,
                "foreign_frames": self.skipped.foreign_frames,
                "late_answers": self.skipped.late_answers,
                "echoes": self.skipped.echoes,
            },
            "devices": per_device,
        })
    }

    /// Share of the period the line was in use.
    pub fn utilisation(&self) -> f64 {
        if self.period.is_zero() {
            0.0
        } else {
            (self.busy.as_secs_f64() / self.period.as_secs_f64()).min(1.0)
        }
    }
}

#[derive(Debug)]
struct Period {
    since: Instant,
    busy: Duration,
    timed_out: Duration,
    skipped: Tally,
    units: BTreeMap<u8, UnitCounters>,
}

impl Period {
    fn new() -> Period {
        Period {
            since: Instant::now(),
            busy: Duration::ZERO,
            timed_out: Duration::ZERO,
            skipped: Tally::default(),
            units: BTreeMap::new(),
        }
    }
}

/// Shared between the bus task (which records) and the bridge (which reports).
#[derive(Debug)]
pub struct BusStats {
    period: Mutex<Period>,
}

impl Default for BusStats {
    fn default() -> Self {
        BusStats {
            period: Mutex::new(Period::new()),
        }
    }
}

impl BusStats {
    fn lock(&self) -> MutexGuard<'_, Period> {
        // Counters stay usable even if a holder panicked.
        self.period
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One transaction attempt: how long it took and what came of it.
    pub fn record(&self, unit: u8, took: Duration, line: Duration, outcome: Result<(), &BusError>) {
        let mut period = self.lock();
        period.busy += line;
        let counters = period.units.entry(unit).or_default();
        counters.requests += 1;
        match outcome {
            Ok(()) | Err(BusError::Exception(_)) => {
                if outcome.is_ok() {
                    counters.last_success = Some(SystemTime::now());
                } else {
                    counters.exceptions += 1;
                }
                counters.answered += 1;
                counters.response_total += took;
                counters.response_max = counters.response_max.max(took);
            }
            Err(BusError::Timeout(_)) => {
                counters.timeouts += 1;
                period.timed_out += took;
            }
            Err(BusError::BadFrame(_)) => counters.bad_frames += 1,
            Err(BusError::PortDown(_) | BusError::Stopped) => counters.port_errors += 1,
        }
    }

    /// What was skipped during or after `unit`'s transaction (before the first one: none).
    pub fn tally(&self, unit: Option<u8>, tally: Tally) {
        if tally == Tally::default() {
            return;
        }
        let mut period = self.lock();
        period.skipped += tally;
        if let Some(unit) = unit {
            period.units.entry(unit).or_default().noise_bytes += tally.noise_bytes;
        }
    }

    /// The period so far; starts the next one.
    pub fn take(&self) -> Snapshot {
        let mut period = self.lock();
        let mut next = Period::new();
        next.units = period
            .units
            .iter()
            .map(|(unit, counters)| {
                let carried = UnitCounters {
                    last_success: counters.last_success,
                    ..UnitCounters::default()
                };
                (*unit, carried)
            })
            .collect();
        let ended = std::mem::replace(&mut *period, next);
        Snapshot {
            period: period.since - ended.since,
            busy: ended.busy,
            timed_out: ended.timed_out,
            skipped: ended.skipped,
            units: ended.units,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind_and_resets_per_period() {
        let stats = BusStats::default();
        let ms = Duration::from_millis;
        stats.record(10, ms(4), ms(30), Ok(()));
        stats.record(10, ms(6), ms(30), Ok(()));
        stats.record(10, ms(300), ms(300), Err(&BusError::Timeout(ms(300))));
        stats.record(
            10,
            ms(5),
            ms(30),
            Err(&BusError::Exception(
                tokio_modbus::ExceptionCode::IllegalDataAddress,
            )),
        );
        stats.record(11, ms(100), ms(100), Err(&BusError::BadFrame("crc".into())));
        stats.tally(
            Some(11),
            Tally {
                noise_bytes: 6,
                foreign_frames: 2,
                ..Tally::default()
            },
        );
        let s = stats.take();
        let unit = &s.units[&10];
        assert_eq!(
            (unit.requests, unit.timeouts, unit.exceptions, unit.answered),
            (4, 1, 1, 3)
        );
        assert_eq!(unit.mean_response(), Some(ms(5)));
        assert_eq!(unit.response_max, ms(6));
        assert!(unit.last_success.is_some());
        assert_eq!((s.units[&11].bad_frames, s.units[&11].noise_bytes), (1, 6));
        assert_eq!(s.busy, ms(490));
        assert_eq!(s.timed_out, ms(300));
        assert_eq!((s.skipped.noise_bytes, s.skipped.foreign_frames), (6, 2));
        let next = stats.take();
        assert_eq!(next.units[&10].requests, 0);
        assert!(next.units[&10].last_success.is_some());
        assert_eq!(next.busy, Duration::ZERO);
    }

    #[test]
    fn reads_without_a_value_count_per_device_beside_the_bus_errors() {
        let path = std::path::Path::new("t");
        let config = crate::config::parse(crate::config::EXAMPLE, path).unwrap();
        let report = |not_values: &[u64]| {
            let report =
                BusStats::default()
                    .take()
                    .report(&config.devices, 0, not_values, &BTreeSet::new());
            report["devices"]["climate"]["errors"].clone()
        };
        let errors = report(&[4]);
        assert_eq!(
            (&errors["not_a_value"], &errors["timeout"]),
            (&json!(4), &json!(0))
        );
        assert_eq!(report(&[])["not_a_value"], 0);
    }
}
