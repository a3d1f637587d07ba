//! `rtu2mqtt demo`: the reference device simulated on a pseudo-terminal, an embedded broker
//! on loopback and the gateway between them, with every publish printed.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

use crate::config::{self, EXAMPLE, Table};
use crate::sim::{Simulator, TcpFraming};
use crate::{app, broker};

pub async fn run(args: crate::cli::DemoArgs) -> anyhow::Result<ExitCode> {
    let mut config = config::parse(EXAMPLE, Path::new("configs/example.toml"))?;
    let shutdown = super::shutdown_on_signals()?;

    let port = broker::free_port(1883)?;
    broker::start(port)?;

    let sim = Simulator::from_config(&config);
    let (line, _held_open) = if args.tcp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot listen on loopback")?;
        let address = listener.local_addr()?;
        let serving = sim.clone();
        let token = shutdown.clone();
        tokio::spawn(async move { serving.serve_tcp(listener, TcpFraming::Mbap, token).await });
        config.bus.transport = config::Transport::Tcp {
            host: address.ip().to_string(),
            port: address.port(),
        };
        (format!("Modbus TCP at {address}"), None)
    } else {
        let (serve, held_open, pty) =
            Simulator::open_pty().context("cannot open a pseudo-terminal")?;
        let serving = sim.clone();
        let token = shutdown.clone();
        tokio::spawn(async move { serving.serve(serve, token).await });
        config.bus.transport = config::Transport::Serial(pty.clone());
        (format!("on {pty} (9600 8E1)"), Some(held_open))
    };
    tokio::spawn(drift(sim, shutdown.clone()));

    config.mqtt.host = "127.0.0.1".to_owned();
    config.mqtt.port = port;
    config.mqtt.socket = None;
    config.mqtt.client_id = "rtu2mqtt-demo".to_owned();
    // Home Assistant pointed at the demo broker finds the device by itself.
    config.homeassistant.discovery = true;
    let base = config.mqtt.base_topic.clone();
    tokio::spawn(print_publishes(port, base.clone(), shutdown.clone()));

    println!("rtu2mqtt demo");
    println!("  simulated device: climate, unit 10, {line}");
    println!("  MQTT broker:      127.0.0.1:{port} (embedded)");
    println!("  values:           {base}/climate/{{temperature,humidity,pwm,test}}");
    println!("Move the PWM from another terminal (apt-get install mosquitto-clients):");
    println!("  mosquitto_pub -h 127.0.0.1 -p {port} -t {base}/climate/pwm/set -m 512");
    println!("Watch it all with:");
    println!("  mosquitto_sub -h 127.0.0.1 -p {port} -t '{base}/#' -v");
    println!("Home Assistant on this machine: add the MQTT integration with broker 127.0.0.1,");
    println!("  port {port}; the device \"climate\" appears with its entities (discovery is on).");
    println!("Every publish follows as `topic payload`. Ctrl-C stops the demo.\n");

    // The demo's config lives in memory, not in a file to re-read: no reloads.
    let (_, no_reloads) = tokio::sync::mpsc::channel(1);
    app::run(config, shutdown, no_reloads).await?;
    Ok(ExitCode::SUCCESS)
}

/// Moves the simulated temperature and humidity a few tenths up and down every few
/// seconds, out of step, so the demo shows life (and `publish = "change"` at work).
async fn drift(sim: Simulator, shutdown: CancellationToken) {
    // Tenths around the example's 21.5 °C and 55.3 %.
    const STEPS: [i16; 10] = [0, 1, 2, 3, 2, 1, 0, -1, -2, -1];
    for step in (0..STEPS.len()).cycle() {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {
                let temperature = 215 + STEPS[step];
                let humidity = 553 - STEPS[(step + 3) % STEPS.len()];
                sim.set(10, Table::Holding, 0, temperature.cast_unsigned());
                sim.set(10, Table::Holding, 1, humidity.cast_unsigned());
            }
        }
    }
}

/// Prints every message under the base topic, as `mosquitto_sub -v` would.
async fn print_publishes(port: u16, base: String, shutdown: CancellationToken) {
    let mut options = MqttOptions::new("rtu2mqtt-demo-watch", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    if let Err(e) = client.subscribe(format!("{base}/#"), QoS::AtMostOnce).await {
        tracing::error!(error = %e, "cannot watch the broker");
        return;
    }
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                println!("{} {}", p.topic, String::from_utf8_lossy(&p.payload));
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
