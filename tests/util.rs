//! Shared set-up: a simulated slave on a real pseudo-terminal, configs pointing at it, and
//! waits with deadlines.

use std::path::Path;
use std::time::Duration;

use rtu2mqtt::config::{self, Config};
use rtu2mqtt::sim::Simulator;
use tokio_serial::SerialStream;
use tokio_util::sync::CancellationToken;

/// How long any test waits for a condition before failing.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A simulated slave serving on a pseudo-terminal until dropped.
pub struct SimBus {
    pub sim: Simulator,
    /// A link to the pseudo-terminal in a directory of its own, as `/dev/serial/by-id/…`
    /// is. It goes with the simulator: a gateway left running cannot reopen the terminal's
    /// name once the kernel hands it to another test's simulator.
    pub path: String,
    shutdown: CancellationToken,
    _held_open: SerialStream,
    _link_dir: tempfile::TempDir,
}

impl Drop for SimBus {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts a simulated slave for the devices of `config` (its port is ignored).
pub fn start_sim(config: &Config) -> SimBus {
    let sim = Simulator::from_config(config);
    let (serve, hold, pty) = Simulator::open_pty().expect("open a pseudo-terminal");
    let link_dir = tempfile::tempdir().expect("temp dir");
    let link = link_dir.path().join("ttySIM");
    std::os::unix::fs::symlink(&pty, &link).expect("link to the pseudo-terminal");
    let shutdown = CancellationToken::new();
    let serving = sim.clone();
    let token = shutdown.clone();
    tokio::spawn(async move { serving.serve(serve, token).await });
    SimBus {
        sim,
        path: link.to_str().expect("a UTF-8 temp path").to_owned(),
        shutdown,
        _held_open: hold,
        _link_dir: link_dir,
    }
}

/// The simulated devices of `config_text` (whatever its port), made ready by `prepare`,
/// then the gateway between them and `broker`, and a watcher of every topic that was
/// there before the gateway.
pub async fn simulated_gateway(
    broker: &Broker,
    config_text: &str,
    prepare: impl FnOnce(&Simulator),
) -> (SimBus, GatewayProcess, Watcher) {
    let sim = start_sim(&config_on(config_text, "/dev/null"));
    prepare(&sim.sim);
    let watcher = Watcher::connect(broker.port, "#").await;
    let gateway = GatewayProcess::start(&config_text.replace("/dev/ttyUSB0", &sim.path));
    (sim, gateway, watcher)
}

/// Parses config text, with the bus port replaced by `port`.
pub fn config_on(text: &str, port: &str) -> Config {
    let text = text.replace("port = \"/dev/ttyUSB0\"", &format!("port = \"{port}\""));
    config::parse(&text, Path::new("test.toml")).expect("valid test config")
}

/// The example config as shipped.
pub fn example() -> Config {
    config::parse(config::EXAMPLE, Path::new("configs/example.toml")).expect("example config")
}

/// Bus and device sections for tests, with `registers` spliced into device "a" (unit 1,
/// polled every 50 ms unless `device_extra` sets `poll`).
pub fn small_config(bus_extra: &str, device_extra: &str, registers: &str) -> String {
    format!(
        "[bus]\nport = \"/dev/ttyUSB0\"\nbaud = 9600\ntimeout = \"100ms\"\nretries = 0\n{bus_extra}\n\
         [[device]]\nname = \"a\"\nunit = 1\n{poll}{device_extra}\n{registers}",
        poll = if device_extra.contains("poll") {
            ""
        } else {
            "poll = \"50ms\"\n"
        }
    )
}

/// A real MQTT broker on a free loopback port: mosquitto when installed (it can be stopped
/// and started again), else the embedded one.
pub struct Broker {
    pub port: u16,
    /// mosquitto's config, when it is mosquitto.
    conf: Option<String>,
    mosquitto: Option<(std::process::Child, tempfile::TempDir)>,
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn have_mosquitto() -> bool {
    std::process::Command::new("sh")
        .args(["-c", "command -v mosquitto"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn wait_listening(port: u16) {
    let deadline = std::time::Instant::now() + DEADLINE;
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    while std::net::TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "broker did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Broker {
    pub fn start() -> Broker {
        let port = free_port();
        if have_mosquitto() {
            let conf =
                format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n");
            Broker::mosquitto(port, conf)
        } else {
            assert!(
                std::env::var_os("CI").is_none(),
                "mosquitto is missing on CI: .ci/run must install it"
            );
            eprintln!("mosquitto is not installed: using the embedded broker");
            rtu2mqtt::broker::start(port).expect("embedded broker");
            Broker {
                port,
                conf: None,
                mosquitto: None,
            }
        }
    }

    /// mosquitto with this config; `port` is a plain listener in it, waited for.
    pub fn mosquitto(port: u16, conf: String) -> Broker {
        let mut broker = Broker {
            port,
            conf: Some(conf),
            mosquitto: None,
        };
        broker.restart();
        broker
    }

    /// Whether this broker can be stopped and started (mosquitto only).
    pub fn restartable() -> bool {
        if !have_mosquitto() {
            assert!(
                std::env::var_os("CI").is_none(),
                "mosquitto is missing on CI: .ci/run must install it"
            );
            eprintln!("SKIPPED: needs mosquitto to restart the broker (apt-get install mosquitto)");
            return false;
        }
        true
    }

    pub fn stop(&mut self) {
        if let Some((mut child, _dir)) = self.mosquitto.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts mosquitto (again) on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(&conf, self.conf.as_deref().expect("a mosquitto broker"))
            .expect("write mosquitto.conf");
        let child = std::process::Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.mosquitto = Some((child, dir));
        wait_listening(self.port);
    }
}

/// An MQTT client that records every message under a filter.
pub struct Watcher {
    pub client: rumqttc::AsyncClient,
    messages: std::sync::Arc<std::sync::Mutex<Vec<Message>>>,
    arrived: std::sync::Arc<tokio::sync::Notify>,
    stop: CancellationToken,
}

#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: String,
    pub retain: bool,
    /// As delivered: the lower of the publisher's and the subscription's (1).
    pub qos: rumqttc::QoS,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Watcher {
    /// Connects and subscribes to `filter`; returns once the subscription is acknowledged.
    pub async fn connect(port: u16, filter: &str) -> Watcher {
        use rumqttc::{Event, Packet};
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut options = rumqttc::MqttOptions::new(
            format!("watcher-{}-{id}", std::process::id()),
            "127.0.0.1",
            port,
        );
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 64);
        client
            .subscribe(filter, rumqttc::QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let arrived = std::sync::Arc::new(tokio::sync::Notify::new());
        let stop = CancellationToken::new();
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let mut subscribed_tx = Some(subscribed_tx);
        let (store, notify, token) = (messages.clone(), arrived.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    () = token.cancelled() => return,
                    event = eventloop.poll() => event,
                };
                match event {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        store.lock().unwrap().push(Message {
                            topic: p.topic.clone(),
                            payload: String::from_utf8_lossy(&p.payload).into_owned(),
                            retain: p.retain,
                            qos: p.qos,
                        });
                        notify.notify_waiters();
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(DEADLINE, subscribed)
            .await
            .expect("suback in time")
            .expect("suback");
        Watcher {
            client,
            messages,
            arrived,
            stop,
        }
    }

    pub fn messages(&self) -> Vec<Message> {
        self.messages.lock().unwrap().clone()
    }

    /// Payloads seen on `topic`, in order.
    pub fn payloads(&self, topic: &str) -> Vec<String> {
        self.messages()
            .into_iter()
            .filter(|m| m.topic == topic)
            .map(|m| m.payload)
            .collect()
    }

    /// Waits until `check` holds for the messages so far; false after the deadline.
    pub async fn wait_for(&self, check: impl Fn(&[Message]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let notified = self.arrived.notified();
            if check(&self.messages.lock().unwrap()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// Waits until `topic` has had `payload`.
    pub async fn wait_payload(&self, topic: &str, payload: &str) -> bool {
        self.wait_for(|ms| ms.iter().any(|m| m.topic == topic && m.payload == payload))
            .await
    }

    /// Waits until `topic` has had a message that says every one of `words`.
    pub async fn wait_saying(&self, topic: &str, words: &[&str]) -> bool {
        self.wait_for(|ms| {
            ms.iter()
                .any(|m| m.topic == topic && words.iter().all(|w| m.payload.contains(w)))
        })
        .await
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload.into())
            .await
            .expect("publish");
    }
}

/// How a run of the real binary ended and what it printed.
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `rtu2mqtt ARGS` run to its end, which must come within `limit`.
pub async fn run_rtu2mqtt(
    args: impl IntoIterator<Item = impl AsRef<std::ffi::OsStr>>,
    limit: Duration,
) -> Ran {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtu2mqtt"))
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(limit, run)
        .await
        .expect("rtu2mqtt ends in time")
        .expect("run rtu2mqtt");
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `rtu2mqtt run` as a separate process, killed when dropped.
pub struct GatewayProcess {
    pub child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl GatewayProcess {
    /// Runs the gateway on `config_text` (written to a file of its own).
    pub fn start(config_text: &str) -> GatewayProcess {
        GatewayProcess::start_with_env(config_text, &[])
    }

    /// As [`GatewayProcess::start`], with extra environment variables.
    pub fn start_with_env(config_text: &str, env: &[(&str, &str)]) -> GatewayProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config_text).expect("write config");
        let log = std::fs::File::create(dir.path().join("gateway.log")).expect("log file");
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_rtu2mqtt"));
        command
            .arg("run")
            .arg("-c")
            .arg(&path)
            .env("RUST_LOG", "rtu2mqtt=debug")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(log);
        // A test run that is killed leaves no gateway behind: one would go on reopening its
        // port path every second and take a later test's pseudo-terminal of that name.
        // SAFETY: prctl only sets a flag of the new process; nothing is allocated.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start rtu2mqtt run");
        GatewayProcess { child, dir }
    }

    /// The config file it runs from.
    pub fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("config.toml")
    }

    /// Replaces its config file, for a reload.
    pub fn rewrite_config(&self, config_text: &str) {
        std::fs::write(self.config_path(), config_text).expect("rewrite config");
    }

    /// Waits until the process has ended, at most `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the log has `text`; false after the deadline.
    pub async fn wait_log(&self, text: &str) -> bool {
        let deadline = std::time::Instant::now() + DEADLINE;
        while !self.log().contains(text) {
            if std::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// What the gateway logged so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// Sends a signal (`libc`-free: through `kill`).
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }
}

/// The reference device simulated, and the gateway on `broker` with the config that
/// `config_text` makes for the device's port, waited for until it publishes a value.
pub async fn publishing_gateway(
    broker: &Broker,
    config_text: impl FnOnce(&str) -> String,
) -> (SimBus, GatewayProcess) {
    let sim = start_sim(&example());
    let gateway = GatewayProcess::start(&config_text(&sim.path));
    let watcher = Watcher::connect(broker.port, "rtu2mqtt/#").await;
    assert!(
        watcher
            .wait_payload("rtu2mqtt/climate/temperature", "21.5")
            .await,
        "{}",
        gateway.log()
    );
    (sim, gateway)
}

/// The example config on `port` and `broker`, polling faster so tests are quick, and
/// publishing every poll (the example's sensors publish changes only), so that tests can
/// count polls on the values' topics.
pub fn example_text(port: &str, broker: u16) -> String {
    rtu2mqtt::config::EXAMPLE
        .replace("port = \"/dev/ttyUSB0\"", &format!("port = \"{port}\""))
        .replace("[mqtt]\n", &format!("[mqtt]\nport = {broker}\n"))
        .replace("poll = \"2s\"", "poll = \"200ms\"")
        .replace("publish = \"change\"", "publish = \"always\"")
}

/// The example for the gateway, without its `[sim]` section (the gateway has no use for it,
/// and it names registers that tests remove).
pub fn gateway_text(port: &str, broker: u16) -> String {
    let text = example_text(port, broker);
    let sim = text
        .find("\n# What `rtu2mqtt sim`")
        .expect("the example's [sim]");
    text[..sim].to_owned()
}

/// `text` without the register named `name` (its `[[device.register]]` table).
pub fn without_register(text: &str, name: &str) -> String {
    let start = text
        .find(&format!("[[device.register]]\nname = \"{name}\""))
        .expect("register in the text");
    let end = text[start + 1..]
        .find("[[device.register]]")
        .map_or(text.len(), |i| start + 1 + i);
    format!("{}{}", &text[..start], &text[end..])
}

/// Lines of a gateway's log that the default log level (info) shows.
pub fn default_level_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| !l.contains(" DEBUG ") && !l.contains(" TRACE "))
        .collect()
}

/// Waits for `payload` on `topic` and checks it came within 3 s of `since` (a port, adapter
/// or server that just came back); says how long it took after `what`.
pub async fn expect_within_3s(
    watcher: &Watcher,
    gateway: &GatewayProcess,
    (topic, payload): (&str, &str),
    since: std::time::Instant,
    what: &str,
) {
    assert!(
        watcher.wait_payload(topic, payload).await,
        "{}",
        gateway.log()
    );
    eprintln!("{payload} on {topic} {:?} after {what}", since.elapsed());
    assert!(
        since.elapsed() < Duration::from_secs(3),
        "{:?} after {what}",
        since.elapsed()
    );
}
