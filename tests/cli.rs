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
