//! The gateway: spawns the bus, scheduler, command executor, MQTT connection and bridge,
//! reloads the config on request, and waits for all of them after the shutdown signal.
//!
//! A reload keeps the broker connection and the bridge. The tasks built from the register
//! map (scheduler, command executor) are stopped and started again with the new config;
//! the bus task too when `[bus]` changed, since it owns the port. The bridge gets the new
//! config and the new tasks' channels only once the old tasks are gone, so no event of
//! the old map is read against the new one.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::AsyncClient;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{self, BusHandle};
use crate::config::{self, Config};
use crate::mqtt::executor::{self, Queue};
use crate::mqtt::{Bridge, Channels, Monitors, Reload, Topics, connection};
use crate::scheduler::{Scheduler, SchedulerStats};
use crate::stats::BusStats;

/// Requests rumqttc may hold while the broker is away, beyond what a connect sends at once
/// (each register's value and discovery config); later ones are dropped (the state is
/// published again in full after reconnecting).
const MQTT_QUEUE: usize = 256;
/// How long a clean shutdown may take to say `offline` and disconnect.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(800);

/// Runs the gateway until `shutdown` fires. Each message on `reloads` re-reads the config
/// file it came from; when every sender is gone, no reload comes any more.
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    mut reloads: mpsc::Receiver<()>,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let topics = Topics::new(&config);
    let options = connection::options(&config.mqtt, &topics.bridge_state())?;
    let registers: usize = config.devices.iter().map(|d| d.registers.len()).sum();
    let (client, eventloop) = AsyncClient::new(options, MQTT_QUEUE + 2 * registers);
    // Held until the connection task ends: see `connection::drive`.
    let requests_open = client.clone();

    let tasks = TaskTracker::new();
    let Reading {
        channels,
        port: port_open,
        bus,
        polling,
    } = Reading::start(&tasks, &config, &shutdown);
    let (link_tx, link) = mpsc::channel(64);
    let (reload_tx, reload_rx) = mpsc::channel(1);
    let outbox = connection::Outbox::default();
    let bridge = Bridge::new(
        Arc::clone(&config),
        client,
        outbox.clone(),
        polling.monitors(&bus),
    );
    let ready = tell_systemd_when_ready(port_open, bridge.connected());

    tracing::info!(
        devices = config.devices.len(),
        reads = polling.reads,
        port = %config.bus.transport,
        broker = %config.mqtt.broker(),
        "rtu2mqtt starting"
    );
    // The connection outlives the shutdown signal long enough to carry `offline`.
    let connection_stop = CancellationToken::new();
    tasks.spawn(connection::drive(
        eventloop,
        link_tx,
        outbox,
        connection_stop.clone(),
    ));
    tasks.spawn(bridge.run(channels, link, reload_rx, shutdown.clone()));

    let mut running = Running {
        config,
        bus,
        polling,
    };
    tokio::pin!(ready);
    let mut told_ready = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = &mut ready, if !told_ready => told_ready = true,
            Some(()) = reloads.recv() => {
                if let Some(reload) = running.reload(&tasks, &shutdown).await {
                    // The bridge stops only on shutdown, which ends this loop first.
                    let _ = reload_tx.send(reload).await;
                }
            }
        }
    }
    tasks.close();
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::debug!("broker did not take the disconnect in time");
        connection_stop.cancel();
        tasks.wait().await;
    }
    drop(requests_open);
    tracing::info!("stopped");
    Ok(())
}

/// The tasks that read the devices, before any MQTT: the bus task, the one owner of the
/// port, and on it the scheduler and the executor of requests. `run` builds the gateway on
/// them; `check --probe` listens to the scheduler's events alone.
#[derive(Debug)]
pub struct Reading {
    /// What the scheduler and the executor say, and where requests for them go.
    pub channels: Channels,
    /// Whether the port is open.
    pub port: watch::Receiver<bus::PortStatus>,
    bus: BusRun,
    polling: Polling,
}

impl Reading {
    /// Starts them on `tasks`; they stop with `shutdown`.
    pub fn start(
        tasks: &TaskTracker,
        config: &Arc<Config>,
        shutdown: &CancellationToken,
    ) -> Reading {
        let (bus, port) = BusRun::start(tasks, config, shutdown);
        let (polling, channels) = Polling::start(tasks, config, &bus.handle, shutdown);
        Reading {
            channels,
            port,
            bus,
            polling,
        }
    }
}

/// The running config and the tasks built from it.
struct Running {
    config: Arc<Config>,
    bus: BusRun,
    polling: Polling,
}

impl Running {
    /// Re-reads the config file with the same `config::load` as start-up, restarts what
    /// derives from it and returns what the bridge needs to hear.
    async fn reload(
        &mut self,
        tasks: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> Option<Reload> {
        let file = self.config.source.clone();
        let mut new = match config::load(&file) {
            Ok(new) => new,
            Err(e) => {
                // One line in the journal, and the same line on bridge/error.
                let error = e.to_string().replace("\n  ", " ");
                tracing::error!(%error, "config not reloaded: the running config stays");
                return Some(Reload::Refused { file, error });
            }
        };
        if new.mqtt != self.config.mqtt {
            tracing::warn!(
                "the [mqtt] section changed: it takes a restart, the running connection keeps the old one"
            );
            new.mqtt = self.config.mqtt.clone();
        }
        if new == *self.config {
            tracing::info!("config reloaded: nothing to change");
            return None;
        }
        self.polling.tasks.stop().await;
        if bus::line_changed(&self.config, &new) {
            tracing::info!("the line settings changed: reopening the port");
            self.bus.task.stop().await;
            self.bus = BusRun::start(tasks, &new, shutdown).0;
        }
        self.config = Arc::new(new);
        let (polling, channels) = Polling::start(tasks, &self.config, &self.bus.handle, shutdown);
        tracing::info!(
            devices = self.config.devices.len(),
            reads = polling.reads,
            "config reloaded"
        );
        let monitors = polling.monitors(&self.bus);
        self.polling = polling;
        Some(Reload::Apply {
            config: Arc::clone(&self.config),
            monitors,
            channels,
        })
    }
}

/// Tasks and the token that stops them alone (a child of the shutdown token).
#[derive(Debug)]
struct Stoppable {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Stoppable {
    async fn stop(&mut self) {
        self.stop.cancel();
        for task in &mut self.tasks {
            // A task that panicked has stopped as well.
            let _ = task.await;
        }
    }
}

/// The bus task: the one owner of the port.
#[derive(Debug)]
struct BusRun {
    handle: BusHandle,
    stats: Arc<BusStats>,
    task: Stoppable,
}

impl BusRun {
    /// Starts it, and says whether the port is open.
    fn start(
        tasks: &TaskTracker,
        config: &Config,
        shutdown: &CancellationToken,
    ) -> (BusRun, watch::Receiver<bus::PortStatus>) {
        let (handle, bus_task) = bus::bus(config);
        let stats = bus_task.stats();
        let port_open = bus_task.port_status();
        let stop = shutdown.child_token();
        let task = tasks.spawn(bus_task.run(stop.clone()));
        let run = BusRun {
            handle,
            stats,
            task: Stoppable {
                stop,
                tasks: vec![task],
            },
        };
        (run, port_open)
    }
}

/// The tasks that work from the register map: the scheduler and the executor of requests
/// from MQTT.
#[derive(Debug)]
struct Polling {
    reads: usize,
    scheduler_stats: Arc<SchedulerStats>,
    tasks: Stoppable,
}

impl Polling {
    /// Starts them on `bus`, with the channels the bridge talks to them through.
    fn start(
        tasks: &TaskTracker,
        config: &Arc<Config>,
        bus: &BusHandle,
        shutdown: &CancellationToken,
    ) -> (Polling, Channels) {
        let (events_tx, events) = mpsc::unbounded_channel();
        let scheduler = Scheduler::new(config, bus.clone(), events_tx);
        let intervals = scheduler.intervals();
        let availability = scheduler.availability();
        let requests = Arc::new(Queue::default());
        let (outcomes_tx, outcomes) = mpsc::unbounded_channel();
        let stop = shutdown.child_token();
        let polling = Polling {
            reads: scheduler.reads(),
            scheduler_stats: scheduler.stats(),
            tasks: Stoppable {
                tasks: vec![
                    tasks.spawn(scheduler.run(stop.clone())),
                    tasks.spawn(executor::execute(
                        Arc::clone(config),
                        bus.clone(),
                        Arc::clone(&requests),
                        availability,
                        outcomes_tx,
                        stop.clone(),
                    )),
                ],
                stop,
            },
        };
        let channels = Channels {
            events,
            outcomes,
            requests,
            intervals,
        };
        (polling, channels)
    }

    fn monitors(&self, bus: &BusRun) -> Monitors {
        Monitors {
            bus: Arc::clone(&bus.stats),
            scheduler: Arc::clone(&self.scheduler_stats),
        }
    }
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
        Ok(()) => "port open, broker connected".to_owned(),
        Err(_) => format!(
            "port {}, broker {}",
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
