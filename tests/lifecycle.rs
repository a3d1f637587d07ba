//! The daemon's life under systemd: reload on SIGHUP, a clean stop, the broker going away.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::util::{
    Broker, GatewayProcess, Message, SimBus, Watcher, example, gateway_text, publishing_gateway,
    start_sim, without_register,
};

const STATE: &str = "rtu2mqtt/bridge/state";
const ERRORS: &str = "rtu2mqtt/bridge/error";
const TEMPERATURE: &str = "rtu2mqtt/climate/temperature";
const HUMIDITY: &str = "rtu2mqtt/climate/humidity";
const TEST: &str = "rtu2mqtt/climate/test";
const PWM: &str = "rtu2mqtt/climate/pwm";

/// Whether `topic` has had `payload` `count` times or more.
fn seen(messages: &[Message], topic: &str, payload: &str, count: usize) -> bool {
    messages
        .iter()
        .filter(|m| m.topic == topic && m.payload == payload)
        .count()
        >= count
}

/// `text` with the PWM's commands taken on `topic`.
fn pwm_commands_on(text: &str, topic: &str) -> String {
    text.replacen(
        "writable = true ",
        &format!("command_topic = \"{topic}\"\nwritable = true "),
        1,
    )
}

/// A broker, the reference device, a watcher of everything, and the gateway on the
/// example (its config text returned too), waited for until it publishes.
async fn publishing() -> (Broker, SimBus, Watcher, GatewayProcess, String) {
    let broker = Broker::start();
    let sim = start_sim(&example());
    let watcher = Watcher::connect(broker.port, "#").await;
    let text = gateway_text(&sim.path, broker.port);
    let gateway = GatewayProcess::start(&text);
    assert!(
        watcher.wait_payload(TEMPERATURE, "21.5").await,
        "{}",
        gateway.log()
    );
    (broker, sim, watcher, gateway, text)
}

/// Asserts that three more temperature values arrive.
async fn keeps_publishing(watcher: &Watcher, gateway: &GatewayProcess) {
    let before = watcher.payloads(TEMPERATURE).len();
    assert!(
        watcher
            .wait_for(|ms| ms.iter().filter(|m| m.topic == TEMPERATURE).count() >= before + 3)
            .await,
        "{}",
        gateway.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_and_removes_registers_on_the_same_connection() {
    let broker = Broker::start();
    let sim = start_sim(&example());
    let watcher = Watcher::connect(broker.port, "#").await;
    let full = gateway_text(&sim.path, broker.port);
    let gateway = GatewayProcess::start(&pwm_commands_on(
        &without_register(&full, "test"),
        "gladys/pwm/set",
    ));
    assert!(
        watcher.wait_payload(HUMIDITY, "55.3").await,
        "{}",
        gateway.log()
    );
    watcher.publish("gladys/pwm/set", "100").await;
    assert!(watcher.wait_payload(PWM, "100").await, "{}", gateway.log());
    assert!(watcher.payloads(TEST).is_empty());

    gateway.rewrite_config(&pwm_commands_on(
        &without_register(&full, "humidity"),
        "gladys/pwm/command",
    ));
    gateway.signal("HUP");
    // The added register is polled and published, the removed one's retained value
    // cleared with an empty retained message.
    assert!(
        watcher.wait_payload(TEST, "-157").await,
        "{}",
        gateway.log()
    );
    assert!(
        watcher.wait_payload(HUMIDITY, "").await,
        "{}",
        gateway.log()
    );
    let late = Watcher::connect(broker.port, "rtu2mqtt/climate/#").await;
    assert!(
        late.wait_for(|ms| seen(ms, TEMPERATURE, "21.5", 1) && seen(ms, TEST, "-157", 1))
            .await
    );
    assert!(
        late.payloads(HUMIDITY).is_empty(),
        "humidity still retained: {:?}",
        late.payloads(HUMIDITY)
    );
    // The subscriptions follow: the old command topic is no longer heard (not even
    // refused), the new one is, and it goes through the restarted executor. Both come
    // from one client, in order, so the old one would have been handled first.
    watcher.publish("gladys/pwm/set", "7").await;
    watcher.publish("gladys/pwm/command", "512").await;
    assert!(watcher.wait_payload(PWM, "512").await, "{}", gateway.log());
    assert_eq!(sim.sim.holding(10, 2), Some(512));
    assert!(!watcher.payloads(PWM).contains(&"7".to_owned()));
    assert!(
        watcher.payloads(ERRORS).is_empty(),
        "{:?}",
        watcher.payloads(ERRORS)
    );
    // The same MQTT session: one CONNECT in the log, `online` said once on bridge/state.
    let log = gateway.log();
    assert!(log.contains("config reloaded"), "{log}");
    assert_eq!(
        log.matches("connected to the MQTT broker").count(),
        1,
        "{log}"
    );
    assert_eq!(watcher.payloads(STATE), ["online"], "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_an_invalid_config_reports_it_and_keeps_the_old_one() {
    let (_broker, _sim, watcher, mut gateway, text) = publishing().await;

    let broken = text.replacen("unit = 10 ", "unit = 0 ", 1);
    let line = broken
        .lines()
        .position(|l| l.starts_with("unit = 0"))
        .expect("the broken line")
        + 1;
    gateway.rewrite_config(&broken);
    gateway.signal("HUP");
    let file = gateway.config_path().display().to_string();
    let place = format!("{file}:{line}:");
    let reported = watcher
        .wait_for(|ms| {
            ms.iter().filter(|m| m.topic == ERRORS).any(|m| {
                serde_json::from_str::<serde_json::Value>(&m.payload).is_ok_and(|r| {
                    r["topic"] == file.as_str()
                        && r["error"]
                            .as_str()
                            .is_some_and(|e| e.contains(&place) && e.contains("`unit`"))
                })
            })
        })
        .await;
    assert!(
        reported,
        "{:?}\n{}",
        watcher.payloads(ERRORS),
        gateway.log()
    );
    let log = gateway.log();
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("config not reloaded"))
        .collect();
    assert_eq!(refusals.len(), 1, "{log}");
    assert!(
        refusals[0].contains(&place) && refusals[0].contains("`unit`"),
        "{log}"
    );
    // The old config goes on: more values from unit 10, and the process runs.
    keeps_publishing(&watcher, &gateway).await;
    assert!(gateway.child.try_wait().expect("wait").is_none());
    assert!(!gateway.log().contains("config reloaded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reopens_the_port_for_a_new_bus_and_keeps_the_running_mqtt() {
    let (_broker, _sim, watcher, gateway, text) = publishing().await;
    gateway.rewrite_config(
        &text
            .replace("timeout = \"300ms\"", "timeout = \"200ms\"")
            .replace("base_topic = \"rtu2mqtt\"", "base_topic = \"elsewhere\""),
    );
    gateway.signal("HUP");
    assert!(
        gateway.wait_log("config reloaded").await,
        "{}",
        gateway.log()
    );
    let log = gateway.log();
    assert!(log.contains("reopening the port"), "{log}");
    assert!(
        log.contains("[mqtt] section changed: it takes a restart"),
        "{log}"
    );
    // Values go on, under the base topic the connection was made with.
    keeps_publishing(&watcher, &gateway).await;
    assert!(
        watcher
            .messages()
            .iter()
            .all(|m| !m.topic.starts_with("elsewhere/")),
        "{:?}",
        watcher.messages()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_leaves_every_availability_offline() {
    let broker = Broker::start();
    let watcher = Watcher::connect(broker.port, "rtu2mqtt/#").await;
    let devices = ["climate", "meter"];
    let with_meter = |port: &str| {
        format!(
            "{}\n[[device]]\nname = \"meter\"\nunit = 11\npoll = \"200ms\"\n\
             [[device.register]]\nname = \"energy\"\naddress = 0\n",
            gateway_text(port, broker.port)
        )
    };
    let config = rtu2mqtt::config::parse(&with_meter("/dev/null"), Path::new("t.toml"))
        .expect("two devices");
    let sim = start_sim(&config);
    let mut gateway = GatewayProcess::start(&with_meter(&sim.path));
    for device in devices {
        let topic = format!("rtu2mqtt/{device}/availability");
        assert!(
            watcher.wait_payload(&topic, "online").await,
            "{topic}\n{}",
            gateway.log()
        );
    }
    gateway.signal("TERM");
    let status = gateway.wait_exit(Duration::from_secs(5)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        gateway.log()
    );
    // What stays retained for anyone who looks later.
    let later = Watcher::connect(broker.port, "rtu2mqtt/+/+").await;
    let all_offline = later
        .wait_for(|ms| {
            devices.iter().all(|d| {
                ms.iter().any(|m| {
                    m.retain
                        && m.topic == format!("rtu2mqtt/{d}/availability")
                        && m.payload == "offline"
                })
            }) && ms
                .iter()
                .any(|m| m.retain && m.topic == STATE && m.payload == "offline")
        })
        .await;
    assert!(all_offline, "{:?}", later.messages());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_away_for_a_minute_is_back_within_six_seconds_and_two_log_lines() {
    if !Broker::restartable() {
        return;
    }
    let mut broker = Broker::start();
    let port = broker.port;
    let (_sim, gateway) = publishing_gateway(&broker, |path| gateway_text(path, port)).await;
    broker.stop();
    // The outage is the scenario: a minute without the broker, long enough for the
    // back-off to reach its ceiling.
    tokio::time::sleep(Duration::from_secs(60)).await;
    broker.restart();
    let back = Instant::now();
    // mosquitto kept nothing (no persistence): whatever arrives now was published again.
    let watcher = Watcher::connect(broker.port, "rtu2mqtt/#").await;
    assert!(
        watcher
            .wait_for(|ms| seen(ms, STATE, "online", 1) && seen(ms, TEMPERATURE, "21.5", 1))
            .await,
        "{}",
        gateway.log()
    );
    let took = back.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "took {took:?}\n{}",
        gateway.log()
    );
    // At the default level the outage is two lines: lost, then back with the count.
    let log = gateway.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("MQTT broker") && !l.contains("DEBUG"))
        .collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(lines[0].contains("connected to the MQTT broker"), "{log}");
    assert!(
        lines[1].contains("WARN") && lines[1].contains("MQTT broker lost"),
        "{log}"
    );
    assert!(
        lines[2].contains("INFO") && lines[2].contains("MQTT broker back"),
        "{log}"
    );
    assert!(lines[2].contains("away=1m"), "{log}");
    assert!(!lines[2].contains("failed_attempts=0"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_reloads_on_a_message_without_signals() {
    let broker = Broker::start();
    let sim = start_sim(&example());
    let watcher = Watcher::connect(broker.port, "rtu2mqtt/#").await;
    let full = gateway_text(&sim.path, broker.port);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, without_register(&full, "test")).unwrap();
    let config = rtu2mqtt::config::load(&file).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (reload, reloads) = tokio::sync::mpsc::channel(1);
    let gateway = tokio::spawn(rtu2mqtt::app::run(config, shutdown.clone(), reloads));
    assert!(watcher.wait_payload(TEMPERATURE, "21.5").await);

    std::fs::write(&file, &full).unwrap();
    reload.send(()).await.unwrap();
    assert!(watcher.wait_payload(TEST, "-157").await);
    shutdown.cancel();
    gateway.await.unwrap().unwrap();
    assert!(
        watcher
            .wait_payload("rtu2mqtt/climate/availability", "offline")
            .await
    );
}
