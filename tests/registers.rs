//! Every register a manual lists (issue 15): bits, strings, 64-bit values, byte order,
//! enumerations and values that are not values, between the simulated slave on a
//! pseudo-terminal, a real broker and the gateway process.

use rtu2mqtt::config::Table;
use rtu2mqtt::sim::Seen;

use crate::util::{Broker, Message, simulated_gateway, small_config};

const ERRORS: &str = "rtu2mqtt/bridge/error";
const STATS: &str = "rtu2mqtt/bridge/stats";

/// One read of 39 registers on unit 1 holds every layout.
const REGISTERS: &str = r#"register = [
  { name = "ready", address = 0, bit = 0 },
  { name = "heating", address = 0, bit = 3 },
  { name = "alarm", address = 0, bit = 15 },
  { name = "serial", address = 1, type = "string", length = 4 },
  { name = "serial_swapped", address = 5, length = 4, byte_order = "little" },
  { name = "label", address = 9, length = 2, writable = true },
  { name = "energy", address = 11, type = "u64" },
  { name = "energy_little", address = 15, type = "u64", word_order = "little" },
  { name = "balance", address = 19, type = "i64", word_order = "little" },
  { name = "ratio", address = 23, type = "f64" },
  { name = "ratio_little", address = 27, type = "f64", word_order = "little" },
  { name = "swapped", address = 31, byte_order = "little" },
  { name = "mode", address = 32, values = { 0 = "off", 1 = "heat", 2 = "cool" }, writable = true },
  { name = "odd_mode", address = 33, values = { 0 = "off" } },
  { name = "temperature", address = 34, type = "f32" },
  { name = "humidity", address = 36 },
  { name = "pressure", address = 37, type = "f32" },
]
[sim.a]
serial = "SN-42"
serial_swapped = "SN-42"
label = "AB"
energy = 9007199254740993
energy_little = 1234567890123
balance = -2
ratio = 0.1
ratio_little = -3.4e38
swapped = 4660
mode = "cool"
odd_mode = 7
temperature = 21.5
humidity = 55
"#;

/// Device `a`'s reads without a value and its requests, per `bridge/stats` period so far.
fn not_values_and_requests(messages: &[Message]) -> Vec<(u64, u64)> {
    messages
        .iter()
        .filter(|m| m.topic == STATS)
        .filter_map(|m| serde_json::from_str::<serde_json::Value>(&m.payload).ok())
        .map(|report| {
            let a = &report["devices"]["a"];
            let count = |v: &serde_json::Value| v.as_u64().unwrap_or(u64::MAX);
            (count(&a["errors"]["not_a_value"]), count(&a["requests"]))
        })
        .collect()
}

fn writes(seen: &[Seen]) -> Vec<(u8, u16, Vec<u16>)> {
    seen.iter()
        .filter(|s| ![3, 4].contains(&s.function))
        .map(|s| (s.function, s.address, s.values.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_layout_is_published_and_commands_by_text_are_written() {
    let broker = Broker::start();
    let text = format!(
        "[mqtt]\nport = {}\nstats_interval = \"500ms\"\n{}",
        broker.port,
        small_config("", "poll = \"200ms\"", REGISTERS)
    );
    let (sim, gateway, watcher) = simulated_gateway(&broker, &text, |sim| {
        // The status word 0xA001, an f32 that says "no sensor" and one that says +inf.
        for (address, word) in [(0, 0xA001), (34, 0x7FC0), (35, 0), (37, 0x7F80), (38, 0)] {
            sim.set(1, Table::Holding, address, word);
        }
    })
    .await;
    let expected = [
        ("ready", "true"),
        ("heating", "false"),
        ("alarm", "true"),
        ("serial", "SN-42"),
        ("serial_swapped", "SN-42"),
        ("label", "AB"),
        ("energy", "9007199254740993"),
        ("energy_little", "1234567890123"),
        ("balance", "-2"),
        ("ratio", "0.1"),
        ("ratio_little", "-3.4e38"),
        ("swapped", "4660"),
        ("mode", "cool"),
        ("odd_mode", "7"),
        ("humidity", "55"),
    ];
    for (register, value) in expected {
        let topic = format!("rtu2mqtt/a/{register}");
        assert!(
            watcher.wait_payload(&topic, value).await,
            "{topic} {value}: {:?}\n{}",
            watcher.payloads(&topic),
            gateway.log()
        );
    }
    // The NaN is said once and never published, while its neighbours go on.
    let humidity = "rtu2mqtt/a/humidity";
    let polls = watcher.payloads(humidity).len();
    assert!(
        watcher
            .wait_for(|ms| ms.iter().filter(|m| m.topic == humidity).count() >= polls + 3)
            .await
    );
    assert!(watcher.payloads("rtu2mqtt/a/temperature").is_empty());
    assert!(watcher.payloads("rtu2mqtt/a/pressure").is_empty());
    let errors = watcher.payloads(ERRORS);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("temperature") && e.contains("NaN")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("pressure") && e.contains("inf")),
        "{errors:?}"
    );
    // Every register in one read per cycle: the bits of the status word share it.
    let reads: Vec<(u16, u16)> = sim
        .sim
        .seen()
        .iter()
        .filter(|s| s.function == 3)
        .map(|s| (s.address, s.count))
        .collect();
    assert!(
        reads.len() >= 4 && reads.iter().all(|r| *r == (0, 39)),
        "{reads:?}"
    );
    // Yet each read counts both as failed reads in bridge/stats, period by period: until
    // temperature holds a value, twice the reads (requests) of each period. A read at the
    // end of a period may be counted by the bus in it and decoded in the next.
    assert!(
        watcher
            .wait_for(|ms| not_values_and_requests(ms).len() >= 3)
            .await,
        "{}",
        gateway.log()
    );
    let periods = not_values_and_requests(&watcher.messages());
    assert!(
        periods
            .iter()
            .all(|&(not_values, requests)| not_values.abs_diff(2 * requests) <= 2),
        "{periods:?}"
    );
    assert!(periods.iter().map(|p| p.1).sum::<u64>() >= 3, "{periods:?}");
    // Back from "no sensor": published again.
    sim.sim.set(1, Table::Holding, 34, 0x41AC);
    assert!(
        watcher.wait_payload("rtu2mqtt/a/temperature", "21.5").await,
        "{}",
        gateway.log()
    );

    // An enumeration by text and by number; a bad text refused with nothing written.
    watcher.publish("rtu2mqtt/a/mode/set", "heat").await;
    assert!(watcher.wait_payload("rtu2mqtt/a/mode", "heat").await);
    watcher.publish("rtu2mqtt/a/mode/set", "0").await;
    assert!(watcher.wait_payload("rtu2mqtt/a/mode", "off").await);
    watcher.publish("rtu2mqtt/a/mode/set", "dry").await;
    // A string with function 16, padded with NULs; a longer one refused.
    watcher.publish("rtu2mqtt/a/label/set", "OK").await;
    assert!(watcher.wait_payload("rtu2mqtt/a/label", "OK").await);
    watcher.publish("rtu2mqtt/a/label/set", "TOO LONG").await;
    assert!(
        watcher
            .wait_for(|ms| ms.iter().filter(|m| m.topic == ERRORS).count() == 4)
            .await,
        "{:?}",
        watcher.payloads(ERRORS)
    );
    let errors = watcher.payloads(ERRORS);
    assert!(
        errors[2].contains("dry")
            && errors[2].contains("is not one of off (0), heat (1), cool (2)"),
        "{errors:?}"
    );
    assert!(errors[3].contains("do not fit"), "{errors:?}");
    // A few more polls: nothing refused was written meanwhile.
    let polls = watcher.payloads(humidity).len();
    assert!(
        watcher
            .wait_for(|ms| ms.iter().filter(|m| m.topic == humidity).count() >= polls + 2)
            .await
    );
    // The raw 7 that `values` does not name: published as the number, logged once.
    let log = gateway.log();
    assert_eq!(log.matches("`values` do not name").count(), 1, "{log}");
    assert_eq!(
        writes(&sim.sim.seen()),
        [(6, 32, vec![1]), (6, 32, vec![0]), (16, 9, vec![0x4F4B, 0])]
    );
    // Asked for, "no sensor" is said rather than nothing.
    watcher.publish("rtu2mqtt/a/pressure/get", "").await;
    assert!(
        watcher
            .wait_saying(ERRORS, &["pressure/get", "reads as no value"])
            .await,
        "{:?}\n{}",
        watcher.payloads(ERRORS),
        gateway.log()
    );
    assert!(watcher.payloads("rtu2mqtt/a/pressure").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bit_is_switched_alone_by_read_modify_write_or_function_22() {
    let broker = Broker::start();
    let registers = r#"register = [
  { name = "ready", address = 0, bit = 0 },
  { name = "heating", address = 0, bit = 3, writable = true },
  { name = "alarm", address = 0, bit = 15 },
  { name = "pump", address = 1, bit = 3, writable = true, write_function = 22 },
  { name = "fan", address = 1, bit = 15, writable = true, write_function = 22 },
]
"#;
    let text = format!(
        "[mqtt]\nport = {}\n{}",
        broker.port,
        small_config("", "poll = \"200ms\"", registers)
    );
    let (sim, gateway, watcher) = simulated_gateway(&broker, &text, |sim| {
        sim.set(1, Table::Holding, 0, 0xA001);
        sim.set(1, Table::Holding, 1, 0xA001);
    })
    .await;
    for (register, value) in [("heating", "false"), ("pump", "false"), ("fan", "true")] {
        let topic = format!("rtu2mqtt/a/{register}");
        assert!(
            watcher.wait_payload(&topic, value).await,
            "{}",
            gateway.log()
        );
    }

    watcher.publish("rtu2mqtt/a/heating/set", "on").await;
    assert!(
        watcher.wait_payload("rtu2mqtt/a/heating", "true").await,
        "{}",
        gateway.log()
    );
    assert_eq!(sim.sim.holding(1, 0), Some(0xA009), "only bit 3 changed");
    // Read and written back with nothing between them, then read back.
    let seen = sim.sim.seen();
    let at = seen.iter().position(|s| s.function == 6).unwrap();
    let around: Vec<(u8, u16, u16)> = seen[at - 1..=at + 1]
        .iter()
        .map(|s| (s.function, s.address, s.count))
        .collect();
    assert_eq!(around, [(3, 0, 1), (6, 0, 0xA009), (3, 0, 1)]);

    watcher.publish("rtu2mqtt/a/pump/set", "on").await;
    assert!(
        watcher.wait_payload("rtu2mqtt/a/pump", "true").await,
        "{}",
        gateway.log()
    );
    watcher.publish("rtu2mqtt/a/fan/set", "off").await;
    assert!(
        watcher.wait_payload("rtu2mqtt/a/fan", "false").await,
        "{}",
        gateway.log()
    );
    assert_eq!(
        sim.sim.holding(1, 1),
        Some(0x2009),
        "bits 3 on and 15 off, the rest kept"
    );
    assert_eq!(sim.sim.holding(1, 0), Some(0xA009));
    assert_eq!(
        writes(&sim.sim.seen()),
        [
            (6, 0, vec![0xA009]),
            (22, 1, vec![!(1 << 3), 1 << 3]),
            (22, 1, vec![!(1 << 15), 0]),
        ]
    );
    assert!(
        watcher.payloads(ERRORS).is_empty(),
        "{:?}",
        watcher.payloads(ERRORS)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worked_example_of_the_readme_runs_on_its_simulated_devices() {
    let broker = Broker::start();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/manual.toml");
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("[mqtt]\n", &format!("[mqtt]\nport = {}\n", broker.port));
    let (sim, gateway, watcher) = simulated_gateway(&broker, &text, |_| {}).await;
    for (topic, value) in [
        ("meter/voltage_l1", "230.4"),
        ("meter/import_energy", "12345.6"),
        ("meter/serial", "21051234"),
        ("heatpump/compressor", "true"),
        ("heatpump/fault", "false"),
        ("heatpump/mode", "heat"),
        ("heatpump/flow_temperature", "33.8"),
        ("heatpump/heat_energy", "12345678901"),
        ("heatpump/serial", "HP-2024-000123"),
    ] {
        let topic = format!("rtu2mqtt/{topic}");
        assert!(
            watcher.wait_payload(&topic, value).await,
            "{topic} {value}: {:?}\n{}",
            watcher.payloads(&topic),
            gateway.log()
        );
    }
    let before = sim.sim.holding(2, 101).unwrap();
    watcher.publish("rtu2mqtt/heatpump/boost/set", "on").await;
    assert!(
        watcher
            .wait_payload("rtu2mqtt/heatpump/boost", "true")
            .await,
        "{}",
        gateway.log()
    );
    assert_eq!(sim.sim.holding(2, 101), Some(before | 1 << 4));
    watcher.publish("rtu2mqtt/heatpump/mode/set", "auto").await;
    assert!(watcher.wait_payload("rtu2mqtt/heatpump/mode", "auto").await);
    assert_eq!(sim.sim.holding(2, 102), Some(3));
    assert!(
        watcher.payloads(ERRORS).is_empty(),
        "{:?}",
        watcher.payloads(ERRORS)
    );
}
