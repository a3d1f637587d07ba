//! `rtu2mqtt scan` (issue 11) as a user runs it: the real binary against the simulated
//! slave on a real pseudo-terminal, its units at ids and line settings the scan is not told.

use std::collections::BTreeSet;
use std::process::Stdio;

use rtu2mqtt::config::{LineSettings, Parity};
use rtu2mqtt::sim::{Fault, Simulator, TcpFraming, Wire};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::util::{DEADLINE, Ran as Scanned, SimBus, config_on, run_rtu2mqtt, start_sim};

const BIN: &str = env!("CARGO_BIN_EXE_rtu2mqtt");

/// Each probe's wait: short, with room for a loaded machine to answer in time.
const WAIT: &str = "100ms";

/// Devices at unit ids a scan must find: two with a register at 0, one whose address 0
/// does not exist (exception 2), and 6, which the tests make refuse everything.
const DEVICES: &str = r#"
[bus]
port = "/dev/ttyUSB0"

[[device]]
name = "meter"
unit = 17
register = [{ name = "power", address = 0 }]

[[device]]
name = "pump"
unit = 201
register = [{ name = "status", address = 0 }]

[[device]]
name = "display"
unit = 5
register = [{ name = "text", address = 10 }]

[[device]]
name = "busy"
unit = 6
register = [{ name = "x", address = 0 }]

[sim.meter]
power = 1234

[sim.pump]
status = 7
"#;

const AT_19200_8N1: LineSettings = LineSettings {
    baud: 19200,
    parity: Parity::None,
    data_bits: 8,
    stop_bits: 1,
};

/// The devices on a pseudo-terminal, answering only a master at `line` (`None`: any).
fn devices(line: Option<LineSettings>) -> SimBus {
    let bus = start_sim(&config_on(DEVICES, "/dev/ttyUSB0"));
    bus.sim.set_wire(Wire {
        line,
        ..Wire::default()
    });
    bus
}

impl Scanned {
    /// The finds, as printed after `found: `.
    fn finds(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("found: "))
            .collect()
    }

    /// The config it printed, written to a file and given to `rtu2mqtt check`: what check
    /// printed.
    async fn check_snippet(&self) -> String {
        let snippet: Vec<&str> = self
            .stdout
            .lines()
            .filter(|l| !l.starts_with("found: "))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("found.toml");
        std::fs::write(&file, snippet.join("\n")).unwrap();
        let out = tokio::process::Command::new(BIN)
            .arg("check")
            .arg("-c")
            .arg(&file)
            .output()
            .await
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{said}\n{self}");
        said
    }
}

async fn scan(args: &[&str]) -> Scanned {
    run_rtu2mqtt(["scan"].iter().chain(args), DEADLINE * 3).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_finds_exactly_the_units_at_their_line_settings() {
    let bus = devices(Some(AT_19200_8N1));
    bus.sim.set_fault(6, Some(Fault::Exception(4)));
    let units = "4-6,16-18,200-202";
    let out = scan(&["--port", &bus.path, "--units", units, "--timeout", WAIT]).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(
        out.finds(),
        [
            "19200 8N1 unit 5: exception 2 (illegal data address)",
            "19200 8N1 unit 6: exception 4 (server device failure)",
            "19200 8N1 unit 17: holding 0 = 1234",
            "19200 8N1 unit 201: holding 0 = 7",
        ],
        "{out}"
    );
    assert!(
        out.stderr.contains(&format!("unit ids {units}, each asked for holding 0, at 7 line settings in turn (9600 8E1, 9600 8N1, 19200 8E1, 19200 8N1, ")),
        "{out}"
    );
    assert!(out.stderr.contains("at most "), "{out}");
    // 9600 8E1, 9600 8N1 and 19200 8E1 went first, and not a request got through; at
    // 19200 8N1 each unit asked for was asked once, and none other, nor unit 0.
    let seen = bus.sim.seen();
    let asked: BTreeSet<u8> = seen.iter().map(|s| s.unit).collect();
    assert_eq!(
        asked,
        BTreeSet::from([4, 5, 6, 16, 17, 18, 200, 201, 202]),
        "{out}"
    );
    assert_eq!(seen.len(), 9, "{out}");
    assert!(
        seen.iter()
            .all(|s| (s.function, s.address, s.count) == (3, 0, 1))
    );
    let check = out.check_snippet().await;
    assert!(check.contains("the line at 19200 8N1"), "{check}");
    for unit in [5, 6, 17, 201] {
        assert!(
            check.contains(&format!("device unit_{unit} (unit {unit})")),
            "{check}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_stops_after_the_first_settings_that_answer_unless_all() {
    // Answering at any settings, as the simulator does by default.
    let bus = devices(None);
    let out = scan(&["--port", &bus.path, "--units", "17", "--timeout", WAIT]).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.finds(), ["9600 8E1 unit 17: holding 0 = 1234"], "{out}");
    assert_eq!(bus.sim.seen().len(), 1);
    let out = scan(&[
        "--port",
        &bus.path,
        "--units",
        "17",
        "--timeout",
        WAIT,
        "--all",
    ])
    .await;
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.finds().len(), 7, "{out}");
    assert!(out.finds()[6].starts_with("4800 8E1 unit 17"), "{out}");
    // One config per line setting.
    assert_eq!(out.stdout.matches("[bus]").count(), 7, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_narrowed_by_baud_parity_and_units() {
    let bus = devices(Some(AT_19200_8N1));
    let out = scan(&[
        "--port",
        &bus.path,
        "--units",
        "17",
        "--baud",
        "9600",
        "--timeout",
        WAIT,
    ])
    .await;
    assert_eq!(out.code, Some(1), "nothing answers at 9600: {out}");
    assert!(out.finds().is_empty(), "{out}");
    assert!(
        out.stderr
            .contains("at 2 line settings in turn (9600 8E1, 9600 8N1)"),
        "{out}"
    );
    assert!(out.stderr.contains("nothing answered"), "{out}");
    let out = scan(&[
        "--port",
        &bus.path,
        "--units",
        "17,201",
        "--parity",
        "none",
        "--all",
        "--timeout",
        WAIT,
    ])
    .await;
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(
        out.finds(),
        [
            "19200 8N1 unit 17: holding 0 = 1234",
            "19200 8N1 unit 201: holding 0 = 7"
        ],
        "only at its settings, though the scan went on through 38400 and 115200: {out}"
    );
    let seen: Vec<u8> = bus.sim.seen().iter().map(|s| s.unit).collect();
    assert_eq!(seen, [17, 201]);
    let out = scan(&["--port", &bus.path, "--units", "0-3"]).await;
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("broadcast"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_garbled_answers_are_said_and_not_counted() {
    let bus = devices(None);
    bus.sim.set_fault(5, Some(Fault::BadCrc));
    // Its answer comes in the wait of the probes after it.
    bus.sim
        .set_fault(17, Some(Fault::Late(std::time::Duration::from_millis(150))));
    let out = scan(&[
        "--port",
        &bus.path,
        "--units",
        "5,17-20",
        "--baud",
        "9600",
        "--parity",
        "even",
        "--timeout",
        "50ms",
    ])
    .await;
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.finds().is_empty(), "{out}");
    assert!(
        out.stderr.contains(
            "9600 8E1 unit 5: garbled answer: the answer arrived with a bad CRC; not counted"
        ),
        "{out}"
    );
    assert!(
        out.stderr.contains(
            "1 answer at 9600 8E1 came in the wait of another probe: a device slower than --timeout"
        ),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_over_modbus_tcp_tries_unit_ids_only() {
    let sim = Simulator::from_config(&config_on(DEVICES, "/dev/ttyUSB0"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = format!("tcp://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let serving = sim.clone();
    let token = stop.clone();
    tokio::spawn(async move { serving.serve_tcp(listener, TcpFraming::Mbap, token).await });
    let _stop = stop.drop_guard();
    let out = scan(&["--port", &port, "--units", "15-20,201", "--timeout", WAIT]).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(
        out.finds(),
        ["unit 17: holding 0 = 1234", "unit 201: holding 0 = 7"],
        "{out}"
    );
    assert!(
        out.stderr
            .contains("Modbus TCP has no line settings: only unit ids are tried"),
        "{out}"
    );
    let check = out.check_snippet().await;
    assert!(
        check.contains(&format!("bus: Modbus TCP to {}", &port[6..])),
        "{check}"
    );
    let out = scan(&["--port", &port, "--baud", "9600"]).await;
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr.contains("leave out --baud and --parity"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_prints_what_was_found_so_far() {
    let bus = devices(None);
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "scan", "--port", &bus.path, "--baud", "9600", "--parity", "even",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("a find in time")
        .unwrap();
    // Units 5 and 6 come before 17 and 201, which take seconds more to reach.
    assert_eq!(
        first.as_deref(),
        Some("found: 9600 8E1 unit 5: exception 2 (illegal data address)")
    );
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = Vec::new();
    while let Some(line) = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("the summary in time")
        .unwrap()
    {
        rest.push(line);
    }
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr)
        .await
        .unwrap();
    let code = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap()
        .code();
    let rest = rest.join("\n");
    assert_eq!(code, Some(130), "{rest}\n{stderr}");
    assert!(
        stderr.contains("interrupted: what answered so far follows"),
        "{stderr}"
    );
    assert!(rest.contains("unit = 5"), "{rest}");
    assert!(!rest.contains("unit = 201"), "{rest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_finds_what_sim_line_set() {
    let sim = crate::wiring::start_sim_process(&["--line", "9600-8N1"]);
    let out = scan(&[
        "--port",
        &sim.path,
        "--baud",
        "9600",
        "--units",
        "9-11",
        "--all",
        "--timeout",
        WAIT,
    ])
    .await;
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.finds(), ["9600 8N1 unit 10: holding 0 = 215"], "{out}");
}
