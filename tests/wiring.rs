//! `rtu2mqtt sim` against independent and one-shot masters: mbpoll, and our own
//! `read`/`write` commands, each a separate process on a real pseudo-terminal.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;

use crate::util::DEADLINE;

const BIN: &str = env!("CARGO_BIN_EXE_rtu2mqtt");

/// `rtu2mqtt sim` running until dropped.
pub struct SimProcess {
    child: Child,
    pub path: String,
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rtu2mqtt sim` serving the example, with `extra` arguments.
pub fn start_sim_process(extra: &[&str]) -> SimProcess {
    let mut child = Command::new(BIN)
        .args(["sim", "-c", "configs/example.toml"])
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rtu2mqtt sim");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let path = rx
        .recv_timeout(DEADLINE)
        .expect("sim prints its pty path")
        .trim()
        .to_owned();
    assert!(path.starts_with("/dev/"), "{path:?}");
    SimProcess { child, path }
}

/// Whether `tool` is installed; on CI a missing tool is a failure, elsewhere a skip.
fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is missing on CI: .ci/run must install it"
        );
        eprintln!("SKIPPED: {tool} is not installed (apt-get install {tool})");
    }
    found
}

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(program).args(args).output().expect("run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    (status.success(), text)
}

#[test]
fn mbpoll_reads_and_writes_the_simulated_slave() {
    if !have("mbpoll") {
        return;
    }
    let sim = start_sim_process(&[]);
    // Parity means nothing on a pty; mbpoll's default (even) works too, but `none` is what
    // other serial stacks need there.
    let common = [
        "-m", "rtu", "-a", "10", "-b", "9600", "-P", "none", "-t", "4", "-1", "-o", "2",
    ];
    let mut read: Vec<&str> = common.to_vec();
    read.extend(["-r", "1", "-c", "4", &sim.path]);
    let (ok, out) = run("mbpoll", &read);
    assert!(ok, "{out}");
    for expected in [
        "[1]: \t215",
        "[2]: \t553",
        "[3]: \t0",
        "[4]: \t65379 (-157)",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from:\n{out}");
    }
    let mut write: Vec<&str> = common.to_vec();
    write.extend(["-r", "3", &sim.path, "512"]);
    let (ok, out) = run("mbpoll", &write);
    assert!(ok && out.contains("Written 1 references"), "{out}");
    let (ok, out) = run("mbpoll", &read);
    assert!(ok && out.contains("[3]: \t512"), "{out}");
}

#[test]
fn read_and_write_commands_scale_and_sign_values() {
    let sim = start_sim_process(&[]);
    let line = ["--port", &sim.path, "--unit", "10", "--timeout", "2s"];
    let (ok, out) = run(
        BIN,
        &[
            &["read"],
            &line[..],
            &[
                "--address",
                "0",
                "--count",
                "2",
                "--type",
                "i16",
                "--scale",
                "0.1",
            ],
        ]
        .concat(),
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("[0]: 21.5") && out.contains("[1]: 55.3"),
        "{out}"
    );
    let (ok, out) = run(
        BIN,
        &[&["read"], &line[..], &["--address", "3", "--type", "i16"]].concat(),
    );
    assert!(ok && out.contains("[3]: -157"), "{out}");
    let (ok, out) = run(
        BIN,
        &[&["write"], &line[..], &["--address", "2", "--value", "700"]].concat(),
    );
    assert!(ok && out.contains("function 6"), "{out}");
    let (ok, out) = run(BIN, &[&["read"], &line[..], &["--address", "2"]].concat());
    assert!(ok && out.contains("[2]: 700"), "{out}");
    // An address the device lacks: the exception is reported, not a hang.
    let (ok, out) = run(BIN, &[&["read"], &line[..], &["--address", "9"]].concat());
    assert!(!ok && out.contains("exception 2"), "{out}");
    // An absent unit times out.
    let absent = [
        "--port",
        &sim.path,
        "--unit",
        "11",
        "--timeout",
        "200ms",
        "--address",
        "0",
    ];
    let (ok, out) = run(BIN, &[&["read"], &absent[..]].concat());
    assert!(!ok && out.contains("no answer within 200ms"), "{out}");
}
