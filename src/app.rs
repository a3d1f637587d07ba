//! The gateway: spawns the bus, scheduler, command executor, MQTT connection and bridge,
//! and waits for all of them after the shutdown signal.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::AsyncClient;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus;
use crate::config::Config;
use crate::mqtt::{self, Bridge, Monitors, Topics, connection};
use crate::scheduler::Scheduler;

/// Requests rumqttc may hold while the broker is away; later ones are dropped (the state
/// is published again in full after reconnecting).
const MQTT_QUEUE: usize = 256;
/// How long a clean shutdown may take to say `offline` and disconnect.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(800);

/// Runs the gateway until `shutdown` fires.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let topics = Topics::new(&config);
    let options = connection::options(&config.mqtt, &topics.bridge_state())?;
    let (client, eventloop) = AsyncClient::new(options, MQTT_QUEUE);

    let (bus, bus_task) = bus::bus(&config);
    let (events_tx, events) = mpsc::unbounded_channel();
    let scheduler = Scheduler::new(&config, bus.clone(), events_tx);
    let reads = scheduler.reads();
    let (link_tx, link) = mpsc::channel(64);
    let (commands_tx, commands) = mpsc::channel(16);
    let (outcomes_tx, outcomes) = mpsc::unbounded_channel();
    let monitors = Monitors {
        bus: bus_task.stats(),
        scheduler: scheduler.stats(),
    };
    let bridge = Bridge::new(Arc::clone(&config), client, monitors);
    let ready = tell_systemd_when_ready(bus_task.port_status(), bridge.connected());

    tracing::info!(
        devices = config.devices.len(),
        reads,
        port = %config.bus.port,
        broker = %format!("{}:{}", config.mqtt.host, config.mqtt.port),
        "rtu2mqtt starting"
    );
    let tasks = TaskTracker::new();
    // The connection outlives the shutdown signal long enough to carry `offline`.
    let connection_stop = CancellationToken::new();
    tasks.spawn(bus_task.run(shutdown.clone()));
    tasks.spawn(scheduler.run(shutdown.clone()));
    tasks.spawn(mqtt::execute_commands(
        Arc::clone(&config),
        bus,
        commands,
        outcomes_tx,
        shutdown.clone(),
    ));
    tasks.spawn(connection::drive(
        eventloop,
        link_tx,
        connection_stop.clone(),
    ));
    tasks.spawn(bridge.run(events, link, outcomes, commands_tx, shutdown.clone()));
    tasks.close();

    tokio::select! {
        () = shutdown.cancelled() => {}
        () = ready => shutdown.cancelled().await,
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::debug!("broker did not take the disconnect in time");
        connection_stop.cancel();
        tasks.wait().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// How long READY waits for the port and the broker; values are polled meanwhile anyway.
const READY_WAIT: Duration = Duration::from_secs(10);

/// Tells systemd READY=1 once the port is open and the broker connected, or after
/// [`READY_WAIT`] with whatever is missing in the status line.
async fn tell_systemd_when_ready(
    mut port: watch::Receiver<bus::PortStatus>,
    mut connected: watch::Receiver<bool>,
) {
    let both = async {
        let _ = port
            .wait_for(|status| *status == bus::PortStatus::Open)
            .await;
        let _ = connected.wait_for(|up| *up).await;
    };
    let status = match tokio::time::timeout(READY_WAIT, both).await {
        Ok(()) => "serial port open, broker connected".to_owned(),
        Err(_) => format!(
            "serial port {}, broker {}",
            if *port.borrow() == bus::PortStatus::Open {
                "open"
            } else {
                "not open yet"
            },
            if *connected.borrow() {
                "connected"
            } else {
                "not connected yet"
            }
        ),
    };
    tracing::info!(%status, "ready");
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);
}
