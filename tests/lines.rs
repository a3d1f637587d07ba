//! Hard lines (issues 10 and 14): dead and slow devices, late answers, echo, noise and
//! other masters, replugged adapters, and how much the gateway says about them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rtu2mqtt::config::{Config, Table};
use rtu2mqtt::scheduler::Event;
use rtu2mqtt::sim::{Fault, Wire};

use crate::bus::{Gateway, start_gateway};
use crate::util::{
    Broker, DEADLINE, GatewayProcess, Watcher, config_on, default_level_lines, example,
    example_text, small_config, start_sim,
};

const TEMPERATURE: &str = "rtu2mqtt/climate/temperature";
const STATS: &str = "rtu2mqtt/bridge/stats";

/// Every value event of the window, formatted, per (device, register name). A measuring
/// window, not a wait for a condition.
async fn collect_for(
    gateway: &mut Gateway,
    config: &Config,
    window: Duration,
) -> HashMap<(usize, String), Vec<String>> {
    let mut values: HashMap<(usize, String), Vec<String>> = HashMap::new();
    let end = tokio::time::Instant::now() + window;
    while let Ok(Some(event)) = tokio::time::timeout_at(end, gateway.events.recv()).await {
        if let Event::Values { device, values: vs } = event {
            for (r, v) in vs {
                let register = &config.devices[device].registers[r];
                values
                    .entry((device, register.name.clone()))
                    .or_default()
                    .push(register.codec.format(&v));
            }
        }
    }
    values
}

/// A number from the environment (a longer or shorter run), else `default`.
fn from_env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Plugs a simulated adapter in behind `link` (as udev makes the by-id link) with the
/// temperature at 23 °C, and checks that the gateway publishes it within 3 s.
pub async fn plug_in_and_expect_values(
    link: &std::path::Path,
    watcher: &Watcher,
    gateway: &GatewayProcess,
    what: &str,
) -> crate::util::SimBus {
    let sim = start_sim(&example());
    sim.sim.set(10, Table::Holding, 0, 230);
    std::os::unix::fs::symlink(&sim.path, link).unwrap();
    let plugged = Instant::now();
    crate::util::expect_within_3s(watcher, gateway, (TEMPERATURE, "23"), plugged, what).await;
    sim
}

/// Waits for an event; false after the deadline.
async fn wait_event(gateway: &mut Gateway, wanted: &Event) -> bool {
    let end = tokio::time::Instant::now() + DEADLINE;
    while let Ok(Some(event)) = tokio::time::timeout_at(end, gateway.events.recv()).await {
        if event == *wanted {
            return true;
        }
    }
    false
}

/// Waits until device `device` becomes `online` or not; false after the deadline.
async fn wait_availability(gateway: &mut Gateway, device: usize, online: bool) -> bool {
    wait_event(gateway, &Event::Availability { device, online }).await
}

/// The example polled every 200 ms, with the example's timeout and retries.
fn fast_example() -> String {
    rtu2mqtt::config::EXAMPLE.replace("poll = \"2s\"", "poll = \"200ms\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_device_costs_the_others_a_few_per_cent() {
    let ghost = "\n[[device]]\nname = \"ghost\"\nunit = 11\npoll = \"200ms\"\n\
                 [[device.register]]\nname = \"x\"\naddress = 0\n";
    let with_ghost = fast_example().replace(
        "\n# What `rtu2mqtt sim`",
        &format!("{ghost}\n# What `rtu2mqtt sim`"),
    );
    let alone_sim = start_sim(&example());
    let dead_sim = start_sim(&config_on(&with_ghost, "/dev/null"));
    dead_sim.sim.set_fault(11, Some(Fault::Silent));
    let alone_config = config_on(&fast_example(), &alone_sim.path);
    let dead_config = config_on(&with_ghost, &dead_sim.path);
    let mut alone = start_gateway(&alone_config);
    let mut dead = start_gateway(&dead_config);
    assert!(
        wait_availability(&mut dead, 1, false).await,
        "the dead unit never went offline"
    );
    // Both measured over the same window, while the dead unit is offline and probed.
    for gateway in [&mut alone, &mut dead] {
        while gateway.events.try_recv().is_ok() {}
    }
    let window = Duration::from_secs(20);
    let (alone_values, dead_values) = tokio::join!(
        collect_for(&mut alone, &alone_config, window),
        collect_for(&mut dead, &dead_config, window)
    );
    let count = |values: &HashMap<(usize, String), Vec<String>>| {
        values
            .get(&(0, "temperature".to_owned()))
            .map_or(0, Vec::len)
    };
    let (alone_count, dead_count) = (count(&alone_values), count(&dead_values));
    let ratio = dead_count as f64 / alone_count as f64;
    eprintln!(
        "temperature reads in {window:?}: {alone_count} alone, {dead_count} beside a dead unit ({ratio:.3})"
    );
    assert!(
        ratio >= 0.95,
        "{dead_count} beside a dead unit against {alone_count} alone"
    );
    // The dead unit is probed, not polled: a handful of requests over the window.
    let probes = dead_sim
        .sim
        .seen()
        .iter()
        .filter(|s| s.unit == 11 && s.at.elapsed() < window)
        .count();
    assert!(
        (2..=5).contains(&probes),
        "{probes} requests to the dead unit in {window:?}"
    );
    // Line time lost to timeouts shows in the stats.
    assert!(dead.stats.take().timed_out > Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_move_across_reads_and_a_device_back_counts_no_overruns() {
    // Two reads; the device stays silent on the first even once it is back (as meters do
    // on an unmapped range instead of refusing it): probing only that read would keep it
    // offline for ever.
    let registers = "[[device.register]]\nname = \"a\"\naddress = 0\n\
                     [[device.register]]\nname = \"b\"\naddress = 50\n";
    let text = small_config(
        "offline_after = 2\noffline_poll = \"300ms\"",
        "max_gap = 0",
        registers,
    );
    let sim = start_sim(&config_on(&text, "/dev/null"));
    sim.sim.set(1, Table::Holding, 50, 5);
    sim.sim.set_fault(1, Some(Fault::Silent));
    let config = config_on(&text, &sim.path);
    let mut gateway = start_gateway(&config);
    assert!(wait_availability(&mut gateway, 0, false).await);
    // Parked a good while: many deadlines of its 50 ms polls pass.
    tokio::time::sleep(Duration::from_secs(2)).await;
    gateway
        .scheduler
        .overruns
        .swap(0, std::sync::atomic::Ordering::Relaxed);
    sim.sim.set_fault(1, None);
    sim.sim.set_address_fault(1, 0, Some(Fault::Silent));
    let back = Instant::now();
    assert!(
        wait_availability(&mut gateway, 0, true).await,
        "never back: {:?}",
        sim.sim
            .seen()
            .iter()
            .rev()
            .take(6)
            .map(|s| s.address)
            .collect::<Vec<_>>()
    );
    // Probed at least every offline_poll, one read after the other: back within a second.
    assert!(
        back.elapsed() < Duration::from_secs(2),
        "{:?}",
        back.elapsed()
    );
    let overruns = gateway
        .scheduler
        .overruns
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        overruns <= 2,
        "{overruns} overruns counted for deadlines missed while parked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_answer_never_lands_on_the_wrong_topic() {
    // Two reads of one register each on one unit: their answers look alike.
    let registers = "[[device.register]]\nname = \"a\"\naddress = 0\n\
                     [[device.register]]\nname = \"b\"\naddress = 10\n";
    let text = small_config("", "max_gap = 0", registers);
    let sim = start_sim(&config_on(&text, "/dev/null"));
    sim.sim.set(1, Table::Holding, 0, 111);
    sim.sim.set(1, Table::Holding, 10, 222);
    let config = config_on(&text, &sim.path);
    assert_eq!(rtu2mqtt::plan::plan(&config.devices).len(), 2);
    let mut gateway = start_gateway(&config);
    // The timeout is 100 ms from the end of the request to the end of the answer (17 ms
    // of line time at 9600 baud): answers 0.5 and 1 timeouts late.
    for late in [Duration::from_millis(167), Duration::from_millis(215)] {
        sim.sim.set_address_fault(1, 0, Some(Fault::Late(late)));
        let values = collect_for(&mut gateway, &config, Duration::from_secs(3)).await;
        let b = values
            .get(&(0, "b".to_owned()))
            .cloned()
            .unwrap_or_default();
        assert!(
            b.len() >= 5,
            "b was hardly read with a late by {late:?}: {b:?}"
        );
        assert!(
            b.iter().all(|v| v == "222"),
            "a's late answer on b ({late:?}): {b:?}"
        );
        let a = values
            .get(&(0, "a".to_owned()))
            .cloned()
            .unwrap_or_default();
        assert!(a.iter().all(|v| v == "111"), "{a:?}");
        let skipped = gateway.stats.take().skipped;
        assert!(skipped.late_answers >= 3, "late by {late:?}: {skipped:?}");
    }
    // On time again: both read.
    sim.sim.set_address_fault(1, 0, None);
    let values = collect_for(&mut gateway, &config, Duration::from_secs(1)).await;
    assert!(
        values
            .get(&(0, "a".to_owned()))
            .is_some_and(|a| a.iter().all(|v| v == "111"))
    );
}

/// A gateway process on the example (polled every `poll`), its broker and watcher.
struct Rig {
    sim: crate::util::SimBus,
    watcher: Watcher,
    gateway: GatewayProcess,
    _broker: Broker,
}

async fn rig(poll: &str, bus_extra: &str, wire: Wire) -> Rig {
    let broker = Broker::start();
    let sim = start_sim(&example());
    sim.sim.set_wire(wire);
    let watcher = Watcher::connect(broker.port, "rtu2mqtt/#").await;
    let text = example_text(&sim.path, broker.port)
        .replace("poll = \"200ms\"", &format!("poll = \"{poll}\""))
        .replace("[mqtt]\n", "[mqtt]\nstats_interval = \"1s\"\n")
        .replace(
            "offline_after = 3",
            &format!("offline_after = 3\n{bus_extra}"),
        );
    let gateway = GatewayProcess::start(&text);
    Rig {
        sim,
        watcher,
        gateway,
        _broker: broker,
    }
}

impl Rig {
    /// Publishes on `topic`, and reads of unit 10 at the slave, over a window.
    async fn measure(&self, topic: &str, window: Duration) -> (usize, usize, Vec<String>) {
        let before = self.watcher.payloads(topic).len();
        let start = Instant::now();
        tokio::time::sleep(window).await;
        let payloads = self.watcher.payloads(topic)[before..].to_vec();
        let reads = self
            .sim
            .sim
            .seen()
            .iter()
            .filter(|s| s.unit == 10 && s.function == 3 && s.at >= start)
            .count();
        (payloads.len(), reads, payloads)
    }

    /// The bus section of the last stats report.
    fn last_stats(&self) -> serde_json::Value {
        self.watcher
            .payloads(STATS)
            .last()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoing_adapter_loses_nothing() {
    let rig = rig(
        "100ms",
        "",
        Wire {
            echo: true,
            ..Wire::default()
        },
    )
    .await;
    let log = || rig.gateway.log();
    assert!(
        rig.watcher.wait_payload(TEMPERATURE, "21.5").await,
        "{}",
        log()
    );
    let (published, reads, payloads) = rig.measure(TEMPERATURE, Duration::from_secs(10)).await;
    eprintln!("echo: {published} values published for {reads} reads");
    assert!(payloads.iter().all(|p| p == "21.5"), "{payloads:?}");
    assert!(
        published as f64 >= 0.99 * reads as f64 - 1.0,
        "{published} of {reads}\n{}",
        log()
    );
    // A write's answer repeats its request: the echo is told apart because the line was
    // found to echo.
    rig.watcher.publish("rtu2mqtt/climate/pwm/set", "512").await;
    assert!(
        rig.watcher
            .wait_payload("rtu2mqtt/climate/pwm", "512")
            .await,
        "{}",
        log()
    );
    assert_eq!(rig.sim.sim.holding(10, 2), Some(512));
    let echoes_counted = |ms: &[crate::util::Message]| {
        ms.iter().filter(|m| m.topic == STATS).any(|m| {
            serde_json::from_str::<serde_json::Value>(&m.payload)
                .is_ok_and(|stats| stats["bus"]["echoes"].as_u64() > Some(0))
        })
    };
    assert!(rig.watcher.wait_for(echoes_counted).await);
    assert_eq!(
        log().matches("the adapter echoes what it sends").count(),
        1,
        "{}",
        log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looking_for_an_echo_costs_a_clean_line_nothing() {
    let auto = rig("100ms", "echo = \"auto\"", Wire::default()).await;
    let off = rig("100ms", "echo = false", Wire::default()).await;
    let utilisation = |rig: &Rig| rig.last_stats()["bus"]["utilisation"].as_f64();
    for rig in [&auto, &off] {
        let reports = |ms: &[crate::util::Message]| ms.iter().filter(|m| m.topic == STATS).count();
        assert!(
            rig.watcher.wait_for(|ms| reports(ms) >= 4).await,
            "{}",
            rig.gateway.log()
        );
    }
    let (a, o) = (utilisation(&auto).unwrap(), utilisation(&off).unwrap());
    eprintln!("bus utilisation: echo auto {a}, echo false {o}");
    assert!(a <= o * 1.25 + 0.005, "auto {a} against false {o}");
    assert!(auto.gateway.log().contains("no echo on the line"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_frames_and_a_leading_zero_cost_no_reads() {
    let seconds: u64 = from_env("FOREIGN_SECONDS", 20);
    let rig = rig(
        "100ms",
        "",
        Wire {
            foreign_every: Some(Duration::from_millis(37)),
            leading_zero: true,
            ..Wire::default()
        },
    )
    .await;
    assert!(
        rig.watcher.wait_payload(TEMPERATURE, "21.5").await,
        "{}",
        rig.gateway.log()
    );
    let window = Duration::from_secs(seconds);
    let (published, reads, payloads) = rig.measure(TEMPERATURE, window).await;
    let polls = window.as_millis() as f64 / 100.0;
    eprintln!(
        "foreign frames: {published} values for {reads} reads, {polls} polls due in {window:?}: {:.1}%",
        100.0 * published as f64 / polls
    );
    assert!(payloads.iter().all(|p| p == "21.5"), "{payloads:?}");
    assert!(
        published as f64 >= 0.97 * polls,
        "{published} of {polls}\n{}",
        rig.gateway.log()
    );
    let stats = rig.last_stats();
    assert!(stats["bus"]["foreign_frames"].as_u64() > Some(0), "{stats}");
    assert!(stats["bus"]["noise_bytes"].as_u64() > Some(0), "{stats}");
    assert_eq!(
        stats["devices"]["climate"]["errors"]["timeout"], 0,
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_device_with_its_own_timeout_is_read_every_cycle() {
    let broker = Broker::start();
    let slow = "\n[[device]]\nname = \"slow\"\nunit = 12\npoll = \"1s\"\ntimeout = \"800ms\"\n\
                [[device.register]]\nname = \"level\"\naddress = 0\n";
    let text = |port: &str| {
        example_text(port, broker.port)
            .replace("timeout = \"300ms\"", "timeout = \"200ms\"")
            .replace("poll = \"200ms\"", "poll = \"500ms\"")
            .replace(
                "\n# What `rtu2mqtt sim`",
                &format!("{slow}\n# What `rtu2mqtt sim`"),
            )
    };
    let sim = start_sim(&config_on(&text("/dev/ttyUSB0"), "/dev/null"));
    sim.sim.set(12, Table::Holding, 0, 5);
    sim.sim
        .set_fault(12, Some(Fault::Late(Duration::from_millis(400))));
    let watcher = Watcher::connect(broker.port, "rtu2mqtt/#").await;
    let gateway = GatewayProcess::start(&text(&sim.path));
    let level = "rtu2mqtt/slow/level";
    assert!(watcher.wait_payload(level, "5").await, "{}", gateway.log());
    let (levels, temperatures) = (
        watcher.payloads(level).len(),
        watcher.payloads(TEMPERATURE).len(),
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let levels = watcher.payloads(level).len() - levels;
    let temperatures = watcher.payloads(TEMPERATURE).len() - temperatures;
    eprintln!("in 5 s: {levels} slow values (5 due), {temperatures} temperatures (10 due)");
    assert!(levels >= 4, "{levels}\n{}", gateway.log());
    assert!(temperatures >= 9, "{temperatures}\n{}", gateway.log());
    assert!(!gateway.log().contains("no answer"), "{}", gateway.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_replugged_under_a_new_name_comes_back_within_seconds() {
    let outage: u64 = from_env("REPLUG_SECONDS", 45);
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("usb-FTDI_RS485-if00-port0");
    let first = start_sim(&example());
    std::os::unix::fs::symlink(&first.path, &link).unwrap();
    let watcher = Watcher::connect(broker.port, "rtu2mqtt/#").await;
    let mut gateway = GatewayProcess::start(&example_text(link.to_str().unwrap(), broker.port));
    assert!(
        watcher.wait_payload(TEMPERATURE, "21.5").await,
        "{}",
        gateway.log()
    );
    drop(first);
    std::fs::remove_file(&link).unwrap();
    tokio::time::sleep(Duration::from_secs(outage)).await;
    // The kernel gives it another name; the by-id link follows.
    let what = format!("the adapter came back from {outage} s away");
    let _second = plug_in_and_expect_values(&link, &watcher, &gateway, &what).await;
    assert!(gateway.child.try_wait().unwrap().is_none(), "same process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_plugged_in_after_start_is_used_within_seconds() {
    let missing: u64 = from_env("LATE_ADAPTER_SECONDS", 20);
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("usb-FTDI_RS485-if00-port0");
    let watcher = Watcher::connect(broker.port, "rtu2mqtt/#").await;
    let gateway = GatewayProcess::start(&example_text(link.to_str().unwrap(), broker.port));
    assert!(
        watcher
            .wait_payload("rtu2mqtt/bridge/state", "online")
            .await
    );
    tokio::time::sleep(Duration::from_secs(missing)).await;
    let what = format!("the adapter appeared {missing} s late");
    let _sim = plug_in_and_expect_values(&link, &watcher, &gateway, &what).await;
    // The missing port was reported once, on bridge/error too.
    let errors = watcher.payloads("rtu2mqtt/bridge/error");
    assert_eq!(errors.len(), 1, "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_unit_a_lost_port_and_a_noisy_line_say_a_handful_of_lines() {
    // The run is a dead unit for two minutes, the port unplugged for one and a
    // line that puts 0x00 before every answer for half a minute; scaled down by default.
    let scale: f64 = from_env("LOG_TEST_SCALE", 1.0 / 6.0);
    let phase = |seconds: f64| Duration::from_secs_f64(seconds * scale);
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("usb-FTDI_RS485-if00-port0");
    let ghost = "\n[[device]]\nname = \"ghost\"\nunit = 11\npoll = \"100ms\"\n\
                 [[device.register]]\nname = \"x\"\naddress = 0\n";
    let text = |port: &str| {
        example_text(port, broker.port)
            .replace("poll = \"200ms\"", "poll = \"100ms\"")
            .replace(
                "\n# What `rtu2mqtt sim`",
                &format!("{ghost}\n# What `rtu2mqtt sim`"),
            )
    };
    // The simulated bus has no unit 11: it never answers.
    let first = start_sim(&example());
    std::os::unix::fs::symlink(&first.path, &link).unwrap();
    let watcher = Watcher::connect(broker.port, "rtu2mqtt/#").await;
    let gateway =
        GatewayProcess::start_with_env(&text(link.to_str().unwrap()), &[("RUST_LOG", "info")]);
    assert!(
        watcher.wait_payload(TEMPERATURE, "21.5").await,
        "{}",
        gateway.log()
    );
    tokio::time::sleep(phase(120.0)).await;
    first.sim.set_wire(Wire {
        leading_zero: true,
        ..Wire::default()
    });
    tokio::time::sleep(phase(30.0)).await;
    drop(first);
    std::fs::remove_file(&link).unwrap();
    tokio::time::sleep(phase(60.0)).await;
    let _second = plug_in_and_expect_values(&link, &watcher, &gateway, "the port came back").await;
    let log = gateway.log();
    let lines = default_level_lines(&log);
    let errors = watcher.payloads("rtu2mqtt/bridge/error");
    eprintln!(
        "{} log lines, {} bridge/error messages:\n{}\n{errors:#?}",
        lines.len(),
        errors.len(),
        lines.join("\n")
    );
    // Start-up, the ghost failing and going offline, the port lost and back, the
    // climate device offline and back: each said once.
    assert!(
        lines.len() <= 16,
        "{} lines:\n{}",
        lines.len(),
        lines.join("\n")
    );
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!(log.matches("serial port unavailable").count(), 1, "{log}");
}
