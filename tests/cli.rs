//! The binary's commands as a user runs them.

use std::process::Command;

fn rtu2mqtt(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rtu2mqtt"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run rtu2mqtt")
}

#[test]
fn check_prints_one_read_and_its_bus_time_for_the_example() {
    let out = rtu2mqtt(&["check", "-c", "configs/example.toml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("fn 3 holding 0..=3 (4 registers): 21 bytes, 32.1 ms"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 read per cycle, 21 bytes, 32.1 ms"),
        "{stdout}"
    );
}

#[test]
fn the_shipped_platform_configs_pass_check() {
    for config in [
        "configs/iobroker.toml",
        "configs/gladys.toml",
        "configs/manual.toml",
    ] {
        let out = rtu2mqtt(&["check", "-c", config]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{config}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(" read"), "{config}: {stdout}");
    }
}

#[test]
fn check_refuses_broken_configs_naming_key_and_line() {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/example.toml"))
            .unwrap();
    let cases = [
        ("unit = 10 ", "unit = 10\ncolour = \"red\" ", "colour"),
        ("unit = 10 ", "unit = 0 ", "unit"),
        ("address = 3", "address = 70000", "address"),
        ("scale = 0.1 ", "scale = \"0.1\" ", "scale"),
        ("qos = 1\n", "qos = 1\nvalue_qos = 3\n", "value_qos"),
        ("port = \"/dev/ttyUSB0\"", "port = \"tcp://\"", "port"),
        ("port = \"/dev/ttyUSB0\"", "port = \"tcp://host\"", "port"),
        (
            "port = \"/dev/ttyUSB0\"",
            "port = \"tcp://host:99999\"",
            "port",
        ),
        ("port = \"/dev/ttyUSB0\"", "port = \"udp://x:1\"", "port"),
        (
            "offline_after = 3",
            "offline_after = 3\necho = \"maybe\"",
            "echo",
        ),
        (
            "unit = 10 ",
            "unit = 10\npoll_command_topic = \"a/+/interval\" ",
            "poll_command_topic",
        ),
        (
            "unit = 10 ",
            "unit = 10\npoll_command_topic = 5 ",
            "poll_command_topic",
        ),
        ("name = \"test\"", "name = \"get\"", "name"),
        (
            "offline_after = 3",
            "offline_after = 3\ncommand_timeout = \"soon\"",
            "command_timeout",
        ),
        (
            "offline_after = 3",
            "offline_after = 3\ncommand_timeout = \"2h\"",
            "command_timeout",
        ),
        ("name = \"climate\"", "name = \"bridge\"", "name"),
        ("discovery = false", "discovery = \"on\"", "discovery"),
        ("prefix = \"homeassistant\"", "prefix = \"ha/#\"", "prefix"),
        (
            "# manufacturer = \"Acme\"",
            "manufacturer = 7",
            "manufacturer",
        ),
        ("# model = \"TH-10\"", "model = [\"TH-10\"]", "model"),
        (
            "device_class = \"temperature\"",
            "device_class = 1",
            "device_class",
        ),
        (
            "state_class = \"measurement\"",
            "state_class = true",
            "state_class",
        ),
        (
            "# homeassistant = { icon = \"mdi:led-on\", mode = \"slider\" }",
            "homeassistant = \"mdi:led-on\"",
            "homeassistant",
        ),
        (
            "# homeassistant = { icon = \"mdi:led-on\"",
            "homeassistant = { step = nan, icon = \"mdi:led-on\"",
            "step",
        ),
    ];
    for (from, to, key) in cases {
        assert!(example.contains(from), "{from}");
        let broken = example.replacen(from, to, 1);
        let line = broken
            .lines()
            .position(|l| l.starts_with(to.trim_end().lines().last().unwrap()))
            .unwrap()
            + 1;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.toml");
        std::fs::write(&path, broken).unwrap();
        let out = rtu2mqtt(&["check", "-c", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{key}: {stderr}");
        assert!(
            stderr.contains(&format!("broken.toml:{line}:")),
            "{key} at line {line}: {stderr}"
        );
        assert!(stderr.contains(&format!("`{key}`")), "{key}: {stderr}");
    }
}

#[test]
fn check_names_a_missing_file() {
    let out = rtu2mqtt(&["check", "-c", "/nonexistent/rtu2mqtt.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/rtu2mqtt.toml"));
}

#[test]
fn check_refuses_serial_keys_on_modbus_tcp_and_prints_no_line_time() {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/example.toml"))
            .unwrap();
    let tcp = example.replace("port = \"/dev/ttyUSB0\"", "port = \"tcp://plc.local:502\"");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tcp.toml");
    std::fs::write(&path, &tcp).unwrap();
    let out = rtu2mqtt(&["check", "-c", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let baud_line = tcp.lines().position(|l| l.starts_with("baud")).unwrap() + 1;
    assert!(
        stderr.contains(&format!("tcp.toml:{baud_line}:")),
        "{stderr}"
    );
    for key in ["baud", "parity", "data_bits", "stop_bits", "frame_gap"] {
        assert!(
            stderr.contains(&format!("`{key}`: Modbus TCP")),
            "{key}: {stderr}"
        );
    }
    let serial_keys = ["baud", "parity", "data_bits", "stop_bits", "frame_gap"];
    let clean: String = tcp
        .lines()
        .filter(|l| !serial_keys.iter().any(|k| l.starts_with(k)))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, clean).unwrap();
    let out = rtu2mqtt(&["check", "-c", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Modbus TCP to plc.local:502"), "{stdout}");
    assert!(stdout.contains("no shared serial line"), "{stdout}");
    assert!(!stdout.contains("line time;"), "{stdout}");
}

#[test]
fn demo_runs_the_reference_device_and_says_how_to_reach_it() {
    use std::io::BufRead;
    let mut demo = Command::new(env!("CARGO_BIN_EXE_rtu2mqtt"))
        .arg("demo")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the demo");
    let stdout = demo.stdout.take().expect("piped stdout");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = Vec::new();
    let wanted = [
        "mosquitto_pub -h 127.0.0.1 -p ",
        "Home Assistant on this machine",
        "rtu2mqtt/climate/temperature 21.5",
        "rtu2mqtt/climate/pwm 0",
        "rtu2mqtt/climate/availability online",
    ];
    while !wanted
        .iter()
        .all(|w| seen.iter().any(|l: &String| l.contains(w)))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    // SAFETY: kill(2) with the pid of our own child.
    unsafe { libc::kill(demo.id() as libc::pid_t, libc::SIGINT) };
    let stopped = (0..100).find_map(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        demo.try_wait().ok().flatten()
    });
    if stopped.is_none() {
        let _ = demo.kill();
    }
    for w in wanted {
        assert!(
            seen.iter().any(|l| l.contains(w)),
            "{w:?} not in\n{}",
            seen.join("\n")
        );
    }
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");
}

#[test]
fn check_warns_on_stderr_and_fails_on_warnings_only_when_strict() {
    let out = rtu2mqtt(&["check", "-c", "configs/example.toml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.starts_with("warning: configs/example.toml:31:8: `port`: ")
            && stderr.contains("/dev/serial/by-id/"),
        "{stderr}"
    );
    let strict = rtu2mqtt(&["check", "--strict", "-c", "configs/example.toml"]);
    assert_eq!(strict.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&strict.stdout).contains("1 read per cycle"));
}

/// The commands of the clap definition. Completions and man pages are generated from it
/// (issue 11), so a command added there is in them without being listed anywhere else.
fn commands() -> Vec<String> {
    use clap::CommandFactory;
    rtu2mqtt::cli::Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect()
}

fn stdout_of(args: &[&str]) -> String {
    let out = rtu2mqtt(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completions_offer_every_command() {
    // bash: the completion function run as bash runs it on Tab after `rtu2mqtt `.
    let script = stdout_of(&["completions", "bash"]);
    let out = Command::new("bash")
        .args([
            "-c",
            r#"eval "$1"; COMP_WORDS=(rtu2mqtt ""); COMP_CWORD=1
               _rtu2mqtt rtu2mqtt "" rtu2mqtt; printf '%s\n' "${COMPREPLY[@]}""#,
            "bash",
            &script,
        ])
        .output()
        .unwrap();
    let offered = String::from_utf8_lossy(&out.stdout);
    let offered: Vec<&str> = offered.lines().collect();
    let bash_errors = String::from_utf8_lossy(&out.stderr);
    // zsh and fish are not installed to run theirs: the entries that offer a command.
    let zsh = stdout_of(&["completions", "zsh"]);
    let fish = stdout_of(&["completions", "fish"]);
    for command in commands() {
        assert!(
            offered.contains(&command.as_str()),
            "bash: {command}: {offered:?} {bash_errors}"
        );
        assert!(
            zsh.contains(&format!("\n'{command}:")),
            "zsh: {command}\n{zsh}"
        );
        assert!(
            fish.contains(&format!("needs_command\" -f -a \"{command}\"")),
            "fish: {command}\n{fish}"
        );
    }
}

#[test]
fn man_pages_for_the_program_and_every_command() {
    let page = stdout_of(&["manpage"]);
    for section in [".TH rtu2mqtt 1", ".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS"] {
        assert!(page.contains(section), "{section}\n{page}");
    }
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    stdout_of(&["manpage", "--dir", pages.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(pages.join("rtu2mqtt.1")).unwrap(),
        page
    );
    for command in commands() {
        assert!(
            page.contains(&format!("rtu2mqtt\\-{command}(1)")),
            "{command}\n{page}"
        );
        let own = std::fs::read_to_string(pages.join(format!("rtu2mqtt-{command}.1")))
            .unwrap_or_else(|e| panic!("rtu2mqtt-{command}.1: {e}"));
        assert!(
            own.contains(&format!(".SH NAME\nrtu2mqtt\\-{command} \\-")),
            "{own}"
        );
        assert!(own.contains(".SH SYNOPSIS"), "{own}");
    }
}
