//! Running unattended: bus faults counted in bridge/stats, serial port loss and return.

use std::collections::HashMap;

use rtu2mqtt::sim::Fault;

use crate::util::{Broker, GatewayProcess, Message, Watcher, config_on, example_text, start_sim};

const STATS: &str = "rtu2mqtt/bridge/stats";

/// The example plus a second device, "flaky" (unit 20), fast polls and stats.
fn two_devices(port: &str, broker: u16) -> String {
    example_text(port, broker)
        .replace("[mqtt]\n", "[mqtt]\nstats_interval = \"300ms\"\n")
        .replace("timeout = \"300ms\"", "timeout = \"100ms\"")
        .replace("retries = 1", "retries = 0")
        // Every injected fault is seen: the unit stays on its schedule.
        .replace("offline_after = 3", "offline_after = 100")
        .replace(
            "\n# What `rtu2mqtt sim`",
            "\n[[device]]\nname = \"flaky\"\nunit = 20\npoll = \"100ms\"\n\
             [[device.register]]\nname = \"level\"\naddress = 7\n\n# What `rtu2mqtt sim`",
        )
}

/// Sums of a device's counters over every stats message so far.
fn totals(messages: &[Message], device: &str) -> HashMap<&'static str, u64> {
    let mut sums = HashMap::new();
    for m in messages.iter().filter(|m| m.topic == STATS) {
        let Ok(report) = serde_json::from_str::<serde_json::Value>(&m.payload) else {
            continue;
        };
        let d = &report["devices"][device];
        for (name, value) in [
            ("requests", &d["requests"]),
            ("timeout", &d["errors"]["timeout"]),
            ("bad_frame", &d["errors"]["bad_frame"]),
            ("exception", &d["errors"]["exception"]),
            ("port", &d["errors"]["port"]),
            ("noise_bytes", &d["noise_bytes"]),
        ] {
            *sums.entry(name).or_default() += value.as_u64().unwrap_or(0);
        }
    }
    sums
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_on_one_unit_are_counted_while_the_other_keeps_flowing() {
    let broker = Broker::start();
    let text = two_devices("/dev/ttyUSB0", broker.port);
    let sim = start_sim(&config_on(&text, "/dev/null"));
    let watcher = Watcher::connect(broker.port, "rtu2mqtt/#").await;
    let gateway = GatewayProcess::start(&two_devices(&sim.path, broker.port));
    assert!(
        watcher
            .wait_payload("rtu2mqtt/flaky/availability", "online")
            .await,
        "{}",
        gateway.log()
    );
    // Silence times out; a bad CRC is a garbled answer (its bytes are no noise); Noise
    // leaves 6 bytes after a good answer.
    sim.sim.queue_faults(
        20,
        [
            Fault::Silent,
            Fault::Silent,
            Fault::Silent,
            Fault::BadCrc,
            Fault::BadCrc,
            Fault::BadCrc,
            Fault::Exception(4),
            Fault::Exception(4),
            Fault::Noise,
            Fault::Noise,
        ],
    );
    let expected = [
        ("timeout", 3),
        ("bad_frame", 3),
        ("exception", 2),
        ("noise_bytes", 2 * 6),
    ];
    let counted = watcher
        .wait_for(|ms| {
            let t = totals(ms, "flaky");
            expected
                .iter()
                .all(|(k, v)| t.get(k).copied().unwrap_or(0) >= *v)
        })
        .await;
    let flaky = totals(&watcher.messages(), "flaky");
    assert!(counted, "{flaky:?}\n{}", gateway.log());
    // One more period: the counts stay exactly what was injected.
    let reports = watcher
        .messages()
        .iter()
        .filter(|m| m.topic == STATS)
        .count();
    assert!(
        watcher
            .wait_for(|ms| ms.iter().filter(|m| m.topic == STATS).count() > reports)
            .await
    );
    let flaky = totals(&watcher.messages(), "flaky");
    for (kind, count) in expected {
        assert_eq!(flaky[kind], count, "{kind}: {flaky:?}");
    }
    assert_eq!(flaky["port"], 0);
    let climate = totals(&watcher.messages(), "climate");
    assert!(climate["requests"] >= 5, "{climate:?}");
    for kind in ["timeout", "bad_frame", "exception", "port", "noise_bytes"] {
        assert_eq!(climate[kind], 0, "{kind}: {climate:?}\n{}", gateway.log());
    }
    assert!(
        !watcher
            .payloads("rtu2mqtt/climate/availability")
            .contains(&"offline".to_owned())
    );
    let last: serde_json::Value =
        serde_json::from_str(&watcher.payloads(STATS).pop().unwrap()).unwrap();
    assert!(
        last["bus"]["utilisation"]
            .as_f64()
            .is_some_and(|u| u > 0.0 && u <= 1.0),
        "{last}"
    );
    assert!(
        last["devices"]["climate"]["response_ms"]["mean"]
            .as_f64()
            .is_some(),
        "{last}"
    );
    assert!(
        last["devices"]["climate"]["last_success"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z')),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_that_disappears_and_returns_at_the_same_path_recovers() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    // As /dev/serial/by-id/... is: a link that udev removes and makes again.
    let link = dir.path().join("usb-FTDI_RS485-if00-port0");
    let first = start_sim(&crate::util::example());
    std::os::unix::fs::symlink(&first.path, &link).unwrap();
    let watcher = Watcher::connect(broker.port, "rtu2mqtt/#").await;
    let text = example_text(link.to_str().unwrap(), broker.port)
        .replace("timeout = \"300ms\"", "timeout = \"100ms\"");
    let gateway = GatewayProcess::start(&text);
    let availability = "rtu2mqtt/climate/availability";
    assert!(
        watcher.wait_payload(availability, "online").await,
        "{}",
        gateway.log()
    );

    // Unplugged: the pty goes away and so does the link.
    drop(first);
    std::fs::remove_file(&link).unwrap();
    assert!(
        watcher.wait_payload(availability, "offline").await,
        "{}",
        gateway.log()
    );
    assert!(
        watcher
            .wait_payload("rtu2mqtt/bridge/state", "online")
            .await
    );

    // Plugged in again: a new pty behind the same path.
    let _second =
        crate::lines::plug_in_and_expect_values(&link, &watcher, &gateway, "replugging").await;
    let back_online = watcher
        .wait_for(|ms| {
            ms.iter()
                .rev()
                .find(|m| m.topic == availability)
                .is_some_and(|m| m.payload == "online")
        })
        .await;
    assert!(back_online, "{:?}", watcher.payloads(availability));
    // Said once when it went and once when it came back, with the count of attempts.
    let log = gateway.log();
    assert_eq!(
        crate::util::default_level_lines(&log)
            .iter()
            .filter(|l| l.contains("serial port unavailable"))
            .count(),
        1,
        "{log}"
    );
    assert_eq!(
        crate::util::default_level_lines(&log)
            .iter()
            .filter(|l| l.contains("serial port open again"))
            .count(),
        1,
        "{log}"
    );
    assert!(log.contains("failed_attempts="), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_the_device_lacks_is_set_aside_and_its_neighbours_published() {
    let broker = Broker::start();
    let registers: String = (0..5)
        .map(|a| format!("[[device.register]]\nname = \"r{a}\"\naddress = {a}\n"))
        .collect();
    let text = format!(
        "[mqtt]\nport = {}\nstats_interval = \"500ms\"\n{}",
        broker.port,
        crate::util::small_config("", "poll = \"200ms\"", &registers)
    );
    let config = config_on(&text, "/dev/null");
    let sim = start_sim(&config);
    // Register 2 is in the manual but not on this device.
    sim.sim.remove_holding(1, 2);
    let watcher = Watcher::connect(broker.port, "rtu2mqtt/#").await;
    let gateway = GatewayProcess::start(&text.replace("/dev/ttyUSB0", &sim.path));
    for r in ["r0", "r1", "r3", "r4"] {
        let topic = format!("rtu2mqtt/a/{r}");
        assert!(
            watcher
                .wait_for(|ms| ms.iter().any(|m| m.topic == topic))
                .await,
            "{topic}\n{}",
            gateway.log()
        );
    }
    // All four within one cycle of the first refusal.
    let seen = sim.sim.seen();
    let reads: Vec<(u16, u16)> = seen.iter().map(|s| (s.address, s.count)).collect();
    eprintln!("reads until all four were published: {reads:?}");
    assert!(reads.len() <= 6, "{reads:?}");
    assert!(
        watcher
            .wait_saying(STATS, &["\"set_aside\":[\"r2\"]"])
            .await,
        "{}",
        gateway.log()
    );
    let errors = watcher.payloads("rtu2mqtt/bridge/error");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("reading r2 of a") && errors[0].contains("set aside"),
        "{errors:?}"
    );
    assert!(
        !watcher
            .payloads("rtu2mqtt/a/r2")
            .iter()
            .any(|p| !p.is_empty())
    );
    // The others go on, read around the missing one; r2 is not asked for again soon.
    let before = sim.sim.seen().len();
    assert!(
        sim.sim
            .wait_for_seen(std::time::Duration::from_secs(5), |seen| seen.len()
                >= before + 10)
            .await
    );
    let later = sim.sim.seen();
    assert!(
        later[before..]
            .iter()
            .all(|s| !(s.address..s.address + s.count).contains(&2)),
        "{:?}",
        &later[before..]
    );
    assert_eq!(watcher.payloads("rtu2mqtt/bridge/error").len(), 1);
    assert!(
        gateway
            .log()
            .contains("the device refuses to read this register (exception 2): set aside")
    );
}
