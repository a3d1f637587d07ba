//! The systemd protocol as the daemon speaks it, through a notify socket of our own.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::util::{Broker, DEADLINE, GatewayProcess, example, example_text, start_sim};

/// Adds datagrams from `socket` to `received` until `done` holds or the deadline passes.
fn receive_until(
    socket: &UnixDatagram,
    received: &mut Vec<String>,
    done: impl Fn(&[String]) -> bool,
) -> bool {
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    let mut buf = [0u8; 4096];
    while !done(received) {
        if Instant::now() > deadline {
            return false;
        }
        if let Ok(n) = socket.recv(&mut buf) {
            received.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_after_port_and_broker_then_watchdog_pings_then_stopping() {
    let broker = Broker::start();
    let sim = start_sim(&example());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    let gateway = GatewayProcess::start_with_env(
        &example_text(&sim.path, broker.port),
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let mut messages = Vec::new();
    let pinged = receive_until(&socket, &mut messages, |m| {
        m.iter().any(|m| m.contains("READY=1"))
            && m.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 3
    });
    assert!(pinged, "{messages:?}\n{}", gateway.log());
    let ready = messages.iter().find(|m| m.contains("READY=1")).unwrap();
    assert!(
        ready.contains("STATUS=port open, broker connected"),
        "{ready}"
    );
    // The status line follows what happens.
    let status = receive_until(&socket, &mut messages, |m| {
        m.iter()
            .any(|m| m.contains("STATUS=1 of 1 devices answering; broker connected"))
    });
    assert!(status, "{messages:?}\n{}", gateway.log());
    gateway.signal("TERM");
    let stopping = receive_until(&socket, &mut messages, |m| {
        m.iter().any(|m| m.trim() == "STOPPING=1")
    });
    assert!(stopping, "{messages:?}");
}
