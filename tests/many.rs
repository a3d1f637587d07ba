//! Many gateways on one broker (issue 9): each with its own bus and base topic, its own
//! client id by default, and a clash of client ids said plainly.

use std::time::Duration;

use rtu2mqtt::config::Table;

use crate::util::{Broker, GatewayProcess, SimBus, Watcher, example, example_text, start_sim};

const GATEWAYS: u16 = 10;

/// Gateway `i` of the site: its own simulated bus, temperature 20.i °C, base topic
/// `site/bus<i>`, the default client id.
fn gateway(i: u16, broker: u16) -> (SimBus, GatewayProcess) {
    let sim = start_sim(&example());
    sim.sim.set(10, Table::Holding, 0, 200 + i);
    let text = example_text(&sim.path, broker).replace(
        "base_topic = \"rtu2mqtt\"",
        &format!("base_topic = \"site/bus{i}\""),
    );
    let gateway = GatewayProcess::start(&text);
    (sim, gateway)
}

fn temperature(i: u16) -> String {
    format!("site/bus{i}/climate/temperature")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_gateways_share_one_broker_without_crossing_wires() {
    let broker = Broker::start();
    let watcher = Watcher::connect(broker.port, "site/#").await;
    let mut site: Vec<(SimBus, GatewayProcess)> =
        (0..GATEWAYS).map(|i| gateway(i, broker.port)).collect();
    for i in 0..GATEWAYS {
        let value = format!("{}", 20.0 + f64::from(i) / 10.0);
        assert!(
            watcher.wait_payload(&temperature(i), &value).await,
            "bus {i}\n{}",
            site[usize::from(i)].1.log()
        );
    }
    // A command reaches its own slave only.
    watcher.publish("site/bus3/climate/pwm/set", "333").await;
    assert!(watcher.wait_payload("site/bus3/climate/pwm", "333").await);
    for (i, (sim, _)) in site.iter().enumerate() {
        let written = sim.sim.seen().iter().any(|s| s.function == 6);
        assert_eq!(written, i == 3, "bus {i}: {:?}", sim.sim.holding(10, 2));
    }
    // Gateway 5 restarts; the others notice nothing.
    // From the messages a wait hands over: the watcher's own accessors would lock them again.
    let counts = |ms: &[crate::util::Message]| -> Vec<usize> {
        (0..GATEWAYS)
            .map(|i| ms.iter().filter(|m| m.topic == temperature(i)).count())
            .collect()
    };
    let before = counts(&watcher.messages());
    let (sim5, old5) = site.remove(5);
    drop(old5);
    let new5 = GatewayProcess::start(
        &example_text(&sim5.path, broker.port)
            .replace("base_topic = \"rtu2mqtt\"", "base_topic = \"site/bus5\""),
    );
    assert!(
        watcher.wait_for(|ms| counts(ms)[5] > before[5] + 2).await,
        "{}",
        new5.log()
    );
    let after = counts(&watcher.messages());
    for i in (0..GATEWAYS).filter(|i| *i != 5) {
        assert!(
            after[usize::from(i)] > before[usize::from(i)],
            "bus {i} stopped publishing"
        );
        let state = watcher.payloads(&format!("site/bus{i}/bridge/state"));
        assert!(!state.contains(&"offline".to_owned()), "bus {i}: {state:?}");
    }
    for (i, (_, gateway)) in site.iter().enumerate() {
        let log = gateway.log();
        assert_eq!(
            log.matches("connected to the MQTT broker").count(),
            1,
            "gateway {i}: {log}"
        );
        assert!(!log.contains("client id"), "gateway {i}: {log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_with_one_client_id_are_told_so() {
    let broker = Broker::start();
    let same_id = |path: &str| {
        example_text(path, broker.port).replace("[mqtt]\n", "[mqtt]\nclient_id = \"twin\"\n")
    };
    let (first_sim, second_sim) = (start_sim(&example()), start_sim(&example()));
    let first = GatewayProcess::start(&same_id(&first_sim.path));
    let second = GatewayProcess::start(&same_id(&second_sim.path));
    let said = "another client is probably using the same client id";
    let told = tokio::time::timeout(Duration::from_secs(20), async {
        while !first.log().contains(said) && !second.log().contains(said) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(told.is_ok(), "{}\n---\n{}", first.log(), second.log());
    // Said once, not once per round of being thrown off.
    for gateway in [&first, &second] {
        assert!(
            gateway.log().matches(said).count() <= 1,
            "{}",
            gateway.log()
        );
    }
}
