//! Transports (issue 9): Modbus TCP and RTU over TCP against the simulated slave on real
//! loopback sockets, servers that go away, never answer, refuse or cannot be found.

use std::time::{Duration, Instant};

use rtu2mqtt::config::Table;
use rtu2mqtt::sim::{Simulator, TcpFraming};
use tokio_util::sync::CancellationToken;

use crate::util::{
    Broker, GatewayProcess, Watcher, example, example_text, expect_within_3s, free_port,
};

const TEMPERATURE: &str = "rtu2mqtt/climate/temperature";
const AVAILABILITY: &str = "rtu2mqtt/climate/availability";

/// The simulated slave of the example serving TCP on 127.0.0.1:`port` until dropped.
struct TcpSim {
    sim: Simulator,
    port: u16,
    stop: CancellationToken,
}

impl Drop for TcpSim {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(sim: &Simulator, port: u16, framing: TcpFraming) -> TcpSim {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("listen on loopback");
    let port = listener.local_addr().unwrap().port();
    let stop = CancellationToken::new();
    let serving = sim.clone();
    let token = stop.clone();
    tokio::spawn(async move { serving.serve_tcp(listener, framing, token).await });
    TcpSim {
        sim: sim.clone(),
        port,
        stop,
    }
}

/// The example on `port`: Modbus TCP has no serial keys, RTU over TCP keeps them.
fn text(port: &str, broker: u16) -> String {
    let text = example_text(port, broker).replace("timeout = \"300ms\"", "timeout = \"200ms\"");
    if port.starts_with("tcp://") {
        let serial = ["baud", "parity", "data_bits", "stop_bits", "frame_gap"];
        text.lines()
            .filter(|l| !serial.iter().any(|k| l.starts_with(k)))
            .map(|l| format!("{l}\n"))
            .collect()
    } else {
        text
    }
}

async fn values_and_a_set(scheme: &str, framing: TcpFraming) {
    let broker = Broker::start();
    let sim = Simulator::from_config(&example());
    let server = serve(&sim, 0, framing).await;
    let watcher = Watcher::connect(broker.port, "rtu2mqtt/#").await;
    let port = format!("{scheme}://127.0.0.1:{}", server.port);
    let gateway = GatewayProcess::start(&text(&port, broker.port));
    for (register, value) in [
        ("temperature", "21.5"),
        ("humidity", "55.3"),
        ("test", "-157"),
    ] {
        let topic = format!("rtu2mqtt/climate/{register}");
        assert!(
            watcher.wait_payload(&topic, value).await,
            "{register}\n{}",
            gateway.log()
        );
    }
    watcher.publish("rtu2mqtt/climate/pwm/set", "512").await;
    assert!(
        watcher.wait_payload("rtu2mqtt/climate/pwm", "512").await,
        "{}",
        gateway.log()
    );
    assert_eq!(server.sim.holding(10, 2), Some(512));
    assert!(
        server
            .sim
            .seen()
            .iter()
            .any(|s| s.function == 6 && s.values == [512]),
        "{:?}",
        server.sim.seen()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_and_a_set_over_modbus_tcp() {
    values_and_a_set("tcp", TcpFraming::Mbap).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_and_a_set_over_rtu_over_tcp() {
    values_and_a_set("rtu+tcp", TcpFraming::Rtu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbpoll_reads_the_simulated_modbus_tcp_server() {
    let found = std::process::Command::new("sh")
        .args(["-c", "command -v mbpoll"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "mbpoll is missing on CI");
        eprintln!("SKIPPED: mbpoll is not installed");
        return;
    }
    let sim = Simulator::from_config(&example());
    let server = serve(&sim, 0, TcpFraming::Mbap).await;
    let port = server.port.to_string();
    let out = tokio::process::Command::new("mbpoll")
        .args([
            "-m",
            "tcp",
            "-a",
            "10",
            "-r",
            "1",
            "-c",
            "4",
            "-p",
            &port,
            "-1",
            "127.0.0.1",
        ])
        .output()
        .await
        .expect("run mbpoll");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for line in ["[1]: \t215", "[2]: \t553", "[4]: \t65379 (-157)"] {
        assert!(stdout.contains(line), "{line}: {stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_away_is_reconnected_within_seconds() {
    for (scheme, framing) in [("tcp", TcpFraming::Mbap), ("rtu+tcp", TcpFraming::Rtu)] {
        let broker = Broker::start();
        let sim = Simulator::from_config(&example());
        let first = serve(&sim, 0, framing).await;
        let port = first.port;
        let watcher = Watcher::connect(broker.port, "rtu2mqtt/#").await;
        let gateway =
            GatewayProcess::start(&text(&format!("{scheme}://127.0.0.1:{port}"), broker.port));
        assert!(
            watcher.wait_payload(AVAILABILITY, "online").await,
            "{}",
            gateway.log()
        );
        drop(first);
        assert!(
            watcher.wait_payload(AVAILABILITY, "offline").await,
            "{}",
            gateway.log()
        );
        sim.set(10, Table::Holding, 0, 230);
        let _second = serve(&sim, port, framing).await;
        let back = Instant::now();
        expect_within_3s(&watcher, &gateway, (TEMPERATURE, "23"), back, scheme).await;
        let log = gateway.log();
        assert!(log.contains("connection open again"), "{log}");
        // The MQTT session was kept: one connection for the whole outage.
        assert_eq!(
            log.matches("connected to the MQTT broker").count(),
            1,
            "{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out_and_the_gateway_goes_on() {
    let broker = Broker::start();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts, holds the connection, says nothing.
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            connections.push(stream);
        }
    });
    let watcher = Watcher::connect(broker.port, "rtu2mqtt/#").await;
    let gateway = GatewayProcess::start(
        &text(&format!("tcp://127.0.0.1:{port}"), broker.port)
            .replace("[mqtt]\n", "[mqtt]\nstats_interval = \"1s\"\n"),
    );
    assert!(
        watcher.wait_payload(AVAILABILITY, "offline").await,
        "{}",
        gateway.log()
    );
    let timeouts_counted = |ms: &[crate::util::Message]| {
        ms.iter()
            .filter(|m| m.topic == "rtu2mqtt/bridge/stats")
            .any(|m| {
                serde_json::from_str::<serde_json::Value>(&m.payload)
                    .is_ok_and(|s| s["devices"]["climate"]["errors"]["timeout"].as_u64() > Some(0))
            })
    };
    assert!(
        watcher.wait_for(timeouts_counted).await,
        "{}",
        gateway.log()
    );
    assert_eq!(
        watcher
            .payloads("rtu2mqtt/bridge/state")
            .last()
            .map(String::as_str),
        Some("online")
    );
    held.abort();
}

/// The gateway on a port nothing serves yet: said once, retried, no crash; values as
/// soon as the server is there.
async fn unavailable_then_served(port: &str, serve_on: Option<u16>) {
    let broker = Broker::start();
    let watcher = Watcher::connect(broker.port, "rtu2mqtt/#").await;
    let gateway = GatewayProcess::start(&text(port, broker.port));
    assert!(
        gateway.wait_log("connection unavailable").await,
        "{}",
        gateway.log()
    );
    assert!(
        watcher
            .wait_for(|ms| ms.iter().any(|m| m.topic == "rtu2mqtt/bridge/error"))
            .await,
        "{}",
        gateway.log()
    );
    let Some(server_port) = serve_on else {
        // Still running, still trying.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let log = gateway.log();
        assert!(
            log.matches("connection still unavailable").count() >= 1,
            "{log}"
        );
        assert_eq!(
            log.matches("connection unavailable").count(),
            1,
            "said once: {log}"
        );
        return;
    };
    let sim = Simulator::from_config(&example());
    let _server = serve(&sim, server_port, TcpFraming::Mbap).await;
    let served = Instant::now();
    expect_within_3s(
        &watcher,
        &gateway,
        (TEMPERATURE, "21.5"),
        served,
        "the server came",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_retried_until_the_server_is_there() {
    let port = free_port();
    unavailable_then_served(&format!("tcp://127.0.0.1:{port}"), Some(port)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_does_not_resolve_is_said_once_and_retried() {
    unavailable_then_served("tcp://no-such-host.invalid:502", None).await;
}
