//! The scheduler and bus against the simulated slave over a real pseudo-terminal.

use std::collections::HashMap;
use std::time::Duration;

use rtu2mqtt::bus::{self, BusError, BusHandle, WriteData, WriteRequest};
use rtu2mqtt::config::{Config, Table, UnitId};
use rtu2mqtt::scheduler::{Event, Scheduler};
use rtu2mqtt::sim::Fault;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::util::{DEADLINE, config_on, example, small_config, start_sim};

/// A running bus task and scheduler for `config`, stopped when dropped.
pub struct Gateway {
    pub bus: BusHandle,
    pub events: mpsc::UnboundedReceiver<Event>,
    pub stats: std::sync::Arc<rtu2mqtt::stats::BusStats>,
    pub scheduler: std::sync::Arc<rtu2mqtt::scheduler::SchedulerStats>,
    shutdown: CancellationToken,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn start_gateway(config: &Config) -> Gateway {
    let shutdown = CancellationToken::new();
    let (handle, task) = bus::bus(config);
    let stats = task.stats();
    tokio::spawn(task.run(shutdown.clone()));
    let (tx, events) = mpsc::unbounded_channel();
    let scheduler = Scheduler::new(config, handle.clone(), tx);
    let scheduler_stats = scheduler.stats();
    tokio::spawn(scheduler.run(shutdown.clone()));
    Gateway {
        bus: handle,
        events,
        stats,
        scheduler: scheduler_stats,
        shutdown,
    }
}

/// Collects formatted values per (device, register name) until `done` says enough.
pub async fn collect_until(
    gateway: &mut Gateway,
    config: &Config,
    done: impl Fn(&HashMap<(usize, String), Vec<String>>, &[Event]) -> bool,
) -> (HashMap<(usize, String), Vec<String>>, Vec<Event>) {
    let mut values: HashMap<(usize, String), Vec<String>> = HashMap::new();
    let mut events = Vec::new();
    let result = timeout(DEADLINE, async {
        while !done(&values, &events) {
            let Some(event) = gateway.events.recv().await else {
                break;
            };
            if let Event::Values { device, values: vs } = &event {
                for (r, v) in vs {
                    let register = &config.devices[*device].registers[*r];
                    values
                        .entry((*device, register.name.clone()))
                        .or_default()
                        .push(register.codec.format(v));
                }
            }
            events.push(event);
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "deadline passed; values so far: {values:?}; events: {events:?}"
    );
    (values, events)
}

fn last<'a>(
    values: &'a HashMap<(usize, String), Vec<String>>,
    device: usize,
    name: &str,
) -> Option<&'a str> {
    values
        .get(&(device, name.to_owned()))?
        .last()
        .map(String::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_polls_the_reference_device() {
    let sim = start_sim(&example());
    let config = config_on(rtu2mqtt::config::EXAMPLE, &sim.path);
    let mut gateway = start_gateway(&config);
    let (values, _) = collect_until(&mut gateway, &config, |v, _| v.len() == 4).await;
    assert_eq!(last(&values, 0, "temperature"), Some("21.5"));
    assert_eq!(last(&values, 0, "humidity"), Some("55.3"));
    assert_eq!(last(&values, 0, "pwm"), Some("0"));
    assert_eq!(last(&values, 0, "test"), Some("-157"));
    // One read of 4 holding registers covers the device.
    let seen = sim.sim.seen();
    assert_eq!(
        (
            seen[0].unit,
            seen[0].function,
            seen[0].address,
            seen[0].count
        ),
        (10, 3, 0, 4)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_reaches_the_slave_with_function_6() {
    let sim = start_sim(&example());
    let config = config_on(rtu2mqtt::config::EXAMPLE, &sim.path);
    let gateway = start_gateway(&config);
    let write = WriteRequest {
        unit: UnitId::new(10).unwrap(),
        address: 2,
        data: WriteData::Register(512),
    };
    timeout(DEADLINE, gateway.bus.write(write))
        .await
        .unwrap()
        .unwrap();
    assert!(
        sim.sim
            .seen()
            .iter()
            .any(|s| s.function == 6 && s.address == 2 && s.values == [512])
    );
    assert_eq!(sim.sim.holding(10, 2), Some(512));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_goes_before_the_polls_still_waiting() {
    // 30 reads that cannot merge (max_gap 0), held back to wire speed: a cycle takes about
    // 30 x 30 ms, so most of it is still queued when the write arrives.
    let registers: String = (0..30)
        .map(|i| {
            format!(
                "[[device.register]]\nname = \"r{i}\"\naddress = {}\n",
                i * 2
            )
        })
        .collect();
    let text = small_config("", "max_gap = 0\npoll = \"10s\"", &registers);
    let config = config_on(&text, "/dev/null");
    let sim = start_sim(&config);
    sim.sim.set_wire_speed(Some(config.bus.line));
    let config = config_on(&text, &sim.path);
    let gateway = start_gateway(&config);
    assert!(
        sim.sim
            .wait_for_seen(DEADLINE, |seen| seen.len() >= 3)
            .await
    );
    let before = sim.sim.seen().len();
    let write = WriteRequest {
        unit: UnitId::new(1).unwrap(),
        address: 0,
        data: WriteData::Register(7),
    };
    timeout(DEADLINE, gateway.bus.write(write))
        .await
        .unwrap()
        .unwrap();
    let seen = sim.sim.seen();
    let at = seen
        .iter()
        .position(|s| s.function == 6)
        .expect("the write reached the slave");
    // At most the read on the line when the write came may go before it.
    assert!(
        at <= before + 1,
        "write at {at}, {before} requests seen when it was queued"
    );
    assert!(
        sim.sim
            .wait_for_seen(DEADLINE, |seen| seen
                .iter()
                .filter(|s| s.function == 3)
                .count()
                >= 30)
            .await
    );
    let reads_after = sim.sim.seen()[at..]
        .iter()
        .filter(|s| s.function == 3)
        .count();
    assert!(
        reads_after > 10,
        "only {reads_after} reads were left behind the write"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_unit_times_out_without_holding_up_the_others() {
    let text = format!(
        "{}\n[[device]]\nname = \"ghost\"\nunit = 11\npoll = \"50ms\"\n[[device.register]]\nname = \"x\"\naddress = 0\n",
        small_config(
            "offline_after = 2",
            "",
            "[[device.register]]\nname = \"v\"\naddress = 0\n"
        )
    );
    let config = config_on(&text, "/dev/null");
    let sim = start_sim(&config);
    sim.sim.set_fault(11, Some(Fault::Silent));
    sim.sim.set(1, Table::Holding, 0, 42);
    let config = config_on(&text, &sim.path);
    let mut gateway = start_gateway(&config);
    let (values, events) = collect_until(&mut gateway, &config, |values, events| {
        let offline = events.contains(&Event::Availability {
            device: 1,
            online: false,
        });
        offline
            && values
                .get(&(0, "v".to_owned()))
                .is_some_and(|v| v.len() >= 10)
    })
    .await;
    assert_eq!(last(&values, 0, "v"), Some("42"));
    assert!(events.contains(&Event::Availability {
        device: 0,
        online: true
    }));
    // Said once, not once per failed read.
    let failures = events
        .iter()
        .filter(|e| matches!(e, Event::Failed { device: 1, .. }))
        .count();
    assert_eq!(failures, 1, "{events:?}");
    // Unit 1 never went offline while unit 11 did.
    assert!(!events.contains(&Event::Availability {
        device: 0,
        online: false
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_read_refused_with_exception_2_is_split() {
    // 0, 1 and 5 merge into one read of 0..=5, but 2..=4 do not exist on the slave.
    let registers = "[[device.register]]\nname = \"a\"\naddress = 0\n\
                     [[device.register]]\nname = \"b\"\naddress = 1\n\
                     [[device.register]]\nname = \"c\"\naddress = 5\n";
    let text = small_config("", "", registers);
    let config = config_on(&text, "/dev/null");
    let sim = start_sim(&config);
    for (address, value) in [(0, 10), (1, 11), (5, 15)] {
        sim.sim.set(1, Table::Holding, address, value);
    }
    let config = config_on(&text, &sim.path);
    let mut gateway = start_gateway(&config);
    let (values, _) = collect_until(&mut gateway, &config, |values, _| {
        values.len() == 3 && values.values().all(|v| v.len() >= 2)
    })
    .await;
    assert_eq!(
        [
            last(&values, 0, "a"),
            last(&values, 0, "b"),
            last(&values, 0, "c")
        ],
        [Some("10"), Some("11"), Some("15")]
    );
    let reads: Vec<(u16, u16)> = sim
        .sim
        .seen()
        .iter()
        .map(|s| (s.address, s.count))
        .collect();
    // The merged read was tried once, then only its parts.
    assert_eq!(
        reads.iter().filter(|r| **r == (0, 6)).count(),
        1,
        "{reads:?}"
    );
    assert!(
        reads.contains(&(0, 2)) && reads.contains(&(5, 1)),
        "{reads:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceptions_and_transport_failures_stay_distinct() {
    let sim = start_sim(&example());
    let text = rtu2mqtt::config::EXAMPLE.replace("retries = 1", "retries = 0");
    let config = config_on(&text, &sim.path);
    let gateway = start_gateway(&config);
    let write = |value| WriteRequest {
        unit: UnitId::new(10).unwrap(),
        address: 2,
        data: WriteData::Register(value),
    };
    sim.sim.set_fault(10, Some(Fault::Exception(4)));
    let refused = timeout(DEADLINE, gateway.bus.write(write(1)))
        .await
        .unwrap();
    assert!(
        matches!(refused, Err(BusError::Exception(e)) if u8::from(e) == 4),
        "{refused:?}"
    );
    sim.sim.set_fault(10, Some(Fault::BadCrc));
    let garbled = timeout(DEADLINE, gateway.bus.write(write(2)))
        .await
        .unwrap();
    assert!(matches!(garbled, Err(BusError::BadFrame(_))), "{garbled:?}");
    sim.sim.set_fault(10, Some(Fault::Silent));
    let silent = timeout(DEADLINE, gateway.bus.write(write(3)))
        .await
        .unwrap();
    assert!(matches!(silent, Err(BusError::Timeout(_))), "{silent:?}");
    // A late answer lands during the next transaction; it must not pass for its answer:
    // the next write (same answer shape) waits for it, claims it, then goes out.
    sim.sim
        .set_fault(10, Some(Fault::Late(Duration::from_millis(400))));
    let late = timeout(DEADLINE, gateway.bus.write(write(4)))
        .await
        .unwrap();
    assert!(matches!(late, Err(BusError::Timeout(_))), "{late:?}");
    sim.sim.set_fault(10, None);
    timeout(DEADLINE, gateway.bus.write(write(5)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sim.sim.holding(10, 2), Some(5));
    sim.sim.set_fault(10, Some(Fault::Noise));
    timeout(DEADLINE, gateway.bus.write(write(5)))
        .await
        .unwrap()
        .unwrap();
    sim.sim.set_fault(10, None);
    timeout(DEADLINE, gateway.bus.write(write(6)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sim.sim.holding(10, 2), Some(6));
}
