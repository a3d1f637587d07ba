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
    pub path: String,
    shutdown: CancellationToken,
    _held_open: SerialStream,
}

impl Drop for SimBus {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts a simulated slave for the devices of `config` (its port is ignored).
pub fn start_sim(config: &Config) -> SimBus {
    let sim = Simulator::from_config(config);
    let (serve, hold, path) = Simulator::open_pty().expect("open a pseudo-terminal");
    let shutdown = CancellationToken::new();
    let serving = sim.clone();
    let token = shutdown.clone();
    tokio::spawn(async move { serving.serve(serve, token).await });
    SimBus {
        sim,
        path,
        shutdown,
        _held_open: hold,
    }
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
