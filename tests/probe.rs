//! `rtu2mqtt check --probe` (issue 15) as a user runs it: the real binary reading a config's
//! registers from the simulated slave on a real pseudo-terminal, no broker needed.

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use rtu2mqtt::config::Table;
use rtu2mqtt::sim::Fault;
use tokio_serial::SerialPortBuilderExt;

use crate::util::{DEADLINE, Ran, SimBus, config_on, run_rtu2mqtt, small_config, start_sim};

/// Registers `r0`.. at the given holding addresses of device `a` (unit 1).
fn registers(addresses: &[u16]) -> String {
    addresses
        .iter()
        .map(|a| format!("[[device.register]]\nname = \"r{a}\"\naddress = {a}\n"))
        .collect()
}

/// `rtu2mqtt check --probe` on `config_text` with its port on `sim`.
async fn probe(sim: &SimBus, config_text: &str) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, config_text.replace("/dev/ttyUSB0", &sim.path)).unwrap();
    let args = [OsStr::new("check"), OsStr::new("--probe"), OsStr::new("-c")];
    run_rtu2mqtt(args.into_iter().chain([file.as_os_str()]), DEADLINE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_the_device_lacks_is_shown_set_aside_and_fails_the_probe() {
    let text = small_config("", "", &registers(&[0, 1, 2, 3, 4]));
    let sim = start_sim(&config_on(&text, "/dev/null"));
    for a in [0, 1, 3, 4] {
        sim.sim.set(1, Table::Holding, a, 100 + a);
    }
    // Register 2 is in the manual but not on this device.
    sim.sim.remove_holding(1, 2);

    let probed = probe(&sim, &text).await;
    assert_eq!(probed.code, Some(1), "{probed}");
    // The plan as configured, then what the device made of it.
    assert!(
        probed
            .stdout
            .contains("fn 3 holding 0..=4 (5 registers): 23 bytes"),
        "{probed}"
    );
    let report = probed
        .stdout
        .split_once("\ndevice a (unit 1):\n  r0")
        .map(|(_, report)| report)
        .unwrap_or_else(|| panic!("no probe report\n{probed}"));
    assert_eq!(
        report,
        "  100\n  r1  101\n  r2  set aside: the device refuses it (exception 2), even read alone\n  r3  103\n  r4  104\n\n4 of 5 registers answered, 1 set aside\n",
        "{probed}"
    );

    // A map of what the device has: every register answers.
    let probed = probe(&sim, &small_config("", "", &registers(&[0, 1, 3, 4]))).await;
    assert_eq!(probed.code, Some(0), "{probed}");
    assert!(
        probed.stdout.ends_with(
            "\ndevice a (unit 1):\n  r0  100\n  r1  101\n  r3  103\n  r4  104\n\n4 of 4 registers answered\n"
        ),
        "{probed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_device_fails_the_probe_within_its_deadline() {
    // Two reads, polled hourly: the device never fails often enough to go offline, so the
    // probe's own deadline ends it.
    let text = small_config(
        "",
        "poll = \"1h\"",
        "register = [{ name = \"level\", address = 0 }, { name = \"flow\", address = 0, table = \"input\" }]\n",
    );
    let sim = start_sim(&config_on(&text, "/dev/null"));
    sim.sim.set_fault(1, Some(Fault::Silent));

    let started = Instant::now();
    let probed = probe(&sim, &text).await;
    let took = started.elapsed();
    assert_eq!(probed.code, Some(1), "{probed}");
    let within = probed
        .stdout
        .lines()
        .find_map(|l| {
            l.split_once("every register read once, within ")
                .map(|p| p.1)
        })
        .and_then(|limit| humantime::parse_duration(limit).ok())
        .unwrap_or_else(|| panic!("no deadline printed\n{probed}"));
    // Every read's worst case at 100 ms and no retries, and a second for turnarounds.
    assert!(within < Duration::from_secs(2), "{probed}");
    assert!(took < within + Duration::from_secs(2), "{took:?}\n{probed}");
    let lines: Vec<&str> = probed
        .stdout
        .lines()
        .filter(|l| l.starts_with("  level ") || l.starts_with("  flow "))
        .collect();
    assert_eq!(lines.len(), 2, "{probed}");
    // The first read to fail says so; the other fails the same way, said once, so the
    // deadline gives its registers up.
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("  failed: no answer within 100ms")),
        "{probed}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("  failed: no outcome within ")
                && l.ends_with(" (the device failed: no answer within 100ms)")),
        "{probed}"
    );
    assert!(
        probed
            .stdout
            .ends_with("\n0 of 2 registers answered, 2 failed\n"),
        "{probed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_held_by_another_program_is_named_with_the_service_to_stop() {
    let text = small_config("", "", &registers(&[0]));
    let sim = start_sim(&config_on(&text, "/dev/null"));
    // As the running daemon holds its port.
    let _held = tokio_serial::new(&sim.path, 9600)
        .open_native_async()
        .expect("open the pseudo-terminal");

    let probed = probe(&sim, &text).await;
    assert_eq!(probed.code, Some(1), "{probed}");
    assert!(
        probed.stderr.contains("error: cannot probe: ")
            && probed.stderr.contains("in use by another program")
            && probed.stderr.contains("sudo systemctl stop rtu2mqtt"),
        "{probed}"
    );
    assert!(probed.stdout.contains("fn 3 holding 0..=0"), "{probed}");
}
