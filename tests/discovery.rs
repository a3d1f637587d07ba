//! Home Assistant discovery (issue 8) between the simulated reference device and a real
//! broker: the configs as Home Assistant reads them, its restarts, and stale configs.

use serde_json::{Value, json};

use crate::util::{
    Broker, GatewayProcess, Message, Watcher, example, gateway_text, start_sim, without_register,
};

const STATE: &str = "rtu2mqtt/bridge/state";
const PWM: &str = "homeassistant/number/rtu2mqtt/climate_pwm/config";
const TEMPERATURE: &str = "homeassistant/sensor/rtu2mqtt/climate_temperature/config";
const HUMIDITY: &str = "homeassistant/sensor/rtu2mqtt/climate_humidity/config";
const TEST: &str = "homeassistant/sensor/rtu2mqtt/climate_test/config";
const CONNECTION: &str = "homeassistant/binary_sensor/rtu2mqtt/bridge_connection_state/config";
const UTILISATION: &str = "homeassistant/sensor/rtu2mqtt/bridge_line_utilisation/config";
const ALL: [&str; 6] = [CONNECTION, UTILISATION, TEMPERATURE, HUMIDITY, PWM, TEST];

/// The example for the gateway with discovery on, its sensors publishing changes only (as
/// shipped), so that a value published again is told from a poll.
fn discovery_text(port: &str, broker: u16) -> String {
    gateway_text(port, broker)
        .replace("discovery = false", "discovery = true")
        .replace("publish = \"always\"", "publish = \"change\"")
}

/// The last non-empty config on `topic`, parsed.
fn config(messages: &[Message], topic: &str) -> Option<Value> {
    messages
        .iter()
        .rev()
        .find(|m| m.topic == topic && !m.payload.is_empty())
        .and_then(|m| serde_json::from_str(&m.payload).ok())
}

/// Whether every topic of `topics` has had `count` non-empty configs.
fn configs_seen(messages: &[Message], topics: &[&str], count: usize) -> bool {
    topics.iter().all(|topic| {
        messages
            .iter()
            .filter(|m| m.topic == *topic && !m.payload.is_empty())
            .count()
            >= count
    })
}

/// What a subscriber coming now gets of `filter`: the retained messages, by topic.
async fn retained(broker: u16, filter: &str, wait_for: &[&str]) -> Vec<Message> {
    let late = Watcher::connect(broker, filter).await;
    assert!(
        late.wait_for(|ms| wait_for.iter().all(|t| ms.iter().any(|m| m.topic == *t)))
            .await,
        "retained {wait_for:?} under {filter}: {:#?}",
        late.messages()
    );
    late.messages()
}

/// Waits until `check` holds for what `watcher` saw; fails with that and the gateway's log.
async fn expect(watcher: &Watcher, gateway: &GatewayProcess, check: impl Fn(&[Message]) -> bool) {
    assert!(
        watcher.wait_for(check).await,
        "{:#?}\n{}",
        watcher.messages(),
        gateway.log()
    );
}

fn availability(topic: &str) -> Value {
    json!({"topic": topic, "payload_available": "online", "payload_not_available": "offline"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_configs_follow_spec_and_come_again_when_home_assistant_starts() {
    let broker = Broker::start();
    let sim = start_sim(&example());
    let gateway = GatewayProcess::start(&discovery_text(&sim.path, broker.port));
    let state = Watcher::connect(broker.port, STATE).await;
    assert!(
        state.wait_payload(STATE, "online").await,
        "{}",
        gateway.log()
    );

    // A late subscriber (Home Assistant starting after the gateway) gets every config from
    // the broker: they are retained.
    let messages = retained(broker.port, "homeassistant/#", &ALL).await;
    let under_prefix: Vec<&str> = messages.iter().map(|m| m.topic.as_str()).collect();
    assert_eq!(under_prefix.len(), ALL.len(), "{under_prefix:?}");
    assert!(messages.iter().all(|m| m.retain), "{messages:#?}");

    let device = json!({
        "identifiers": ["rtu2mqtt_climate"],
        "name": "climate",
        "via_device": "rtu2mqtt_bridge",
    });
    let both = json!([
        availability(STATE),
        availability("rtu2mqtt/climate/availability")
    ]);
    let pwm = config(&messages, PWM).expect("the PWM's config");
    assert_eq!(pwm["unique_id"], "rtu2mqtt_climate_pwm");
    assert_eq!(pwm["default_entity_id"], "number.rtu2mqtt_climate_pwm");
    assert_eq!(pwm["state_topic"], "rtu2mqtt/climate/pwm");
    assert_eq!(pwm["command_topic"], "rtu2mqtt/climate/pwm/set");
    assert_eq!(
        (&pwm["min"], &pwm["max"], &pwm["step"], &pwm["mode"]),
        (&json!(0.0), &json!(1023.0), &json!(1.0), &json!("box"))
    );
    assert_eq!(pwm["device"], device);
    assert_eq!(pwm["availability"], both);
    assert_eq!(pwm["availability_mode"], "all");
    assert_eq!(pwm["origin"]["name"], "rtu2mqtt");
    assert_eq!(pwm["origin"]["sw_version"], env!("CARGO_PKG_VERSION"));

    let temperature = config(&messages, TEMPERATURE).expect("the temperature's config");
    assert_eq!(temperature["unique_id"], "rtu2mqtt_climate_temperature");
    assert_eq!(temperature["state_topic"], "rtu2mqtt/climate/temperature");
    assert_eq!(temperature["unit_of_measurement"], "°C");
    assert_eq!(temperature["device_class"], "temperature");
    assert_eq!(temperature["state_class"], "measurement");
    assert!(temperature.get("command_topic").is_none());
    assert_eq!(temperature["device"], device);
    assert_eq!(temperature["availability"], both);
    assert_eq!(
        config(&messages, TEST).expect("test")["state_topic"],
        "rtu2mqtt/climate/test"
    );
    assert_eq!(
        config(&messages, HUMIDITY).expect("humidity")["unit_of_measurement"],
        "%"
    );

    let connection = config(&messages, CONNECTION).expect("the bridge's connection state");
    assert_eq!(connection["state_topic"], STATE);
    assert_eq!(connection["device_class"], "connectivity");
    assert_eq!(
        connection["device"]["identifiers"],
        json!(["rtu2mqtt_bridge"])
    );
    let utilisation = config(&messages, UTILISATION).expect("the line utilisation");
    assert_eq!(utilisation["state_topic"], "rtu2mqtt/bridge/stats");
    assert_eq!(utilisation["unit_of_measurement"], "%");
    assert_eq!(
        utilisation["device"]["identifiers"],
        json!(["rtu2mqtt_bridge"])
    );

    // Home Assistant announcing itself gets every config again, and the values.
    let watcher = Watcher::connect(broker.port, "#").await;
    assert!(watcher.wait_for(|ms| configs_seen(ms, &ALL, 1)).await);
    let temperatures = |ms: &[Message]| {
        ms.iter()
            .filter(|m| m.topic == "rtu2mqtt/climate/temperature")
            .count()
    };
    let before = temperatures(&watcher.messages());
    watcher.publish("homeassistant/status", "online").await;
    expect(&watcher, &gateway, |ms| {
        configs_seen(ms, &ALL, 2) && temperatures(ms) > before
    })
    .await;
    // It is Home Assistant's topic: the gateway only listens there.
    assert!(
        !watcher
            .messages()
            .iter()
            .any(|m| m.topic == "rtu2mqtt/bridge/error"),
        "{:#?}",
        watcher.messages()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_of_registers_that_left_the_map_are_cleared_and_nothing_else() {
    let broker = Broker::start();
    let sim = start_sim(&example());
    let full = discovery_text(&sim.path, broker.port);
    let mut gateway = GatewayProcess::start(&full);
    let watcher = Watcher::connect(broker.port, "homeassistant/#").await;
    expect(&watcher, &gateway, |ms| configs_seen(ms, &ALL, 1)).await;
    gateway.child.kill().expect("SIGKILL");
    let _ = gateway.child.wait();

    // What is not ours under the prefix: another node's config, and a topic under our node
    // that is not a config.
    let foreign = [
        (
            "homeassistant/sensor/other_node/climate_test/config",
            "{\"name\":\"x\"}",
        ),
        (
            "homeassistant/sensor/rtu2mqtt/climate_test/attributes",
            "kept",
        ),
    ];
    for (topic, payload) in foreign {
        watcher
            .client
            .publish(topic, rumqttc::QoS::AtLeastOnce, true, payload)
            .await
            .expect("publish");
    }
    assert!(
        watcher
            .wait_for(|ms| foreign
                .iter()
                .all(|(t, _)| ms.iter().any(|m| m.topic == *t)))
            .await
    );

    // The same gateway without the register `test`.
    let without_test = without_register(&full, "test");
    let gateway = GatewayProcess::start(&without_test);
    let cleared =
        |ms: &[Message], topic: &str| ms.iter().any(|m| m.topic == topic && m.payload.is_empty());
    expect(&watcher, &gateway, |ms| cleared(ms, TEST)).await;
    // The broker hands the retained configs over at once and in order with what follows: once
    // Home Assistant's `online` has been answered, every one of them has been looked at.
    let before = watcher.messages().len();
    watcher.publish("homeassistant/status", "online").await;
    let rest: Vec<&str> = ALL.iter().copied().filter(|t| *t != TEST).collect();
    expect(&watcher, &gateway, |ms| {
        configs_seen(&ms[before..], &rest, 1)
    })
    .await;
    let messages = watcher.messages();
    let emptied: Vec<&str> = messages
        .iter()
        .filter(|m| m.payload.is_empty())
        .map(|m| m.topic.as_str())
        .collect();
    assert_eq!(emptied, [TEST], "only the config of the register that left");
    let now = retained(
        broker.port,
        "homeassistant/#",
        &[foreign[0].0, foreign[1].0, PWM],
    )
    .await;
    for (topic, payload) in foreign {
        assert!(
            now.iter().any(|m| m.topic == topic && m.payload == payload),
            "{topic}: {now:#?}"
        );
    }
    assert!(!now.iter().any(|m| m.topic == TEST), "{now:#?}");

    // A reload does the same on the running connection: `test` back, `humidity` gone.
    let before = watcher.messages().len();
    gateway.rewrite_config(&without_register(&full, "humidity"));
    gateway.signal("HUP");
    expect(&watcher, &gateway, |ms| {
        cleared(&ms[before..], HUMIDITY) && configs_seen(&ms[before..], &[TEST], 1)
    })
    .await;
    assert!(
        !watcher.messages()[before..]
            .iter()
            .any(|m| m.payload.is_empty() && m.topic != HUMIDITY),
        "{:#?}",
        watcher.messages()
    );

    // Discovery turned off by a reload takes every entity away, and still nothing else.
    let before = watcher.messages().len();
    let off = without_register(&full, "humidity").replace("discovery = true", "discovery = false");
    gateway.rewrite_config(&off);
    gateway.signal("HUP");
    let left = [CONNECTION, UTILISATION, TEMPERATURE, PWM, TEST];
    expect(&watcher, &gateway, |ms| {
        left.iter().all(|t| cleared(&ms[before..], t))
    })
    .await;
    assert!(
        !watcher
            .messages()
            .iter()
            .any(|m| foreign.iter().any(|(t, _)| m.topic == *t) && m.payload.is_empty()),
        "{:#?}",
        watcher.messages()
    );
}
