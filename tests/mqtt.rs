//! The gateway process between the simulated slave (pseudo-terminal) and a real broker.

use std::time::{Duration, Instant};

use rtu2mqtt::config::Table;
use rtu2mqtt::sim::Fault;

use crate::util::{
    Broker, DEADLINE, GatewayProcess, Watcher, example, example_text, publishing_gateway, start_sim,
};

const STATE: &str = "rtu2mqtt/bridge/state";
const ERRORS: &str = "rtu2mqtt/bridge/error";
const PWM: &str = "rtu2mqtt/climate/pwm";
const TEMPERATURE: &str = "rtu2mqtt/climate/temperature";

/// The reference device on a pseudo-terminal, a broker, a watcher of `filter`, and the
/// gateway between them, waited for until it says `online`.
struct Rig {
    broker: Broker,
    sim: crate::util::SimBus,
    watcher: Watcher,
    gateway: GatewayProcess,
}

async fn rig(filter: &str) -> Rig {
    let broker = Broker::start();
    let sim = start_sim(&example());
    let watcher = Watcher::connect(broker.port, filter).await;
    let gateway = GatewayProcess::start(&example_text(&sim.path, broker.port));
    let state = Watcher::connect(broker.port, STATE).await;
    assert!(
        state.wait_payload(STATE, "online").await,
        "{}",
        gateway.log()
    );
    Rig {
        broker,
        sim,
        watcher,
        gateway,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_values_arrive_on_their_topics() {
    let Rig {
        broker,
        sim: _sim,
        watcher,
        gateway,
    } = rig("rtu2mqtt/#").await;
    for (register, value) in [
        ("temperature", "21.5"),
        ("humidity", "55.3"),
        ("pwm", "0"),
        ("test", "-157"),
    ] {
        let topic = format!("rtu2mqtt/climate/{register}");
        assert!(
            watcher.wait_payload(&topic, value).await,
            "{topic} {value}\n{}",
            gateway.log()
        );
    }
    assert!(watcher.wait_payload(STATE, "online").await);
    assert!(
        watcher
            .wait_payload("rtu2mqtt/climate/availability", "online")
            .await
    );
    // Values are retained as configured: a late subscriber gets them at once.
    let late = Watcher::connect(broker.port, TEMPERATURE).await;
    assert!(
        late.wait_for(|ms| ms.iter().any(|m| m.retain && m.payload == "21.5"))
            .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_writes_function_6_and_the_read_back_is_published() {
    let Rig {
        broker: _broker,
        sim,
        watcher,
        gateway,
    } = rig("rtu2mqtt/#").await;
    assert!(watcher.wait_payload(PWM, "0").await, "{}", gateway.log());
    watcher.publish("rtu2mqtt/climate/pwm/set", "512").await;
    assert!(
        sim.sim
            .wait_for_seen(DEADLINE, |seen| seen
                .iter()
                .any(|s| s.function == 6 && s.address == 2 && s.values == [512]))
            .await,
        "{}",
        gateway.log()
    );
    assert_eq!(sim.sim.holding(10, 2), Some(512));
    assert!(watcher.wait_payload(PWM, "512").await, "{}", gateway.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_commands_are_refused_and_never_reach_the_bus() {
    let Rig {
        broker: _broker,
        sim,
        watcher,
        gateway,
    } = rig("rtu2mqtt/#").await;
    assert!(
        watcher.wait_payload(STATE, "online").await,
        "{}",
        gateway.log()
    );
    assert!(watcher.wait_payload(PWM, "0").await, "{}", gateway.log());
    let huge = "7".repeat(100_000);
    let commands: Vec<(&str, &str)> = vec![
        ("rtu2mqtt/climate/pwm/set", "abc"),
        ("rtu2mqtt/climate/pwm/set", ""),
        ("rtu2mqtt/climate/pwm/set", "NaN"),
        ("rtu2mqtt/climate/pwm/set", "1e9"),
        ("rtu2mqtt/climate/pwm/set", "-5"),
        ("rtu2mqtt/climate/pwm/set", "1024"),
        ("rtu2mqtt/climate/pwm/set", &huge),
        ("rtu2mqtt/climate/temperature/set", "20"),
        ("rtu2mqtt/climate/nothing/set", "1"),
    ];
    for (topic, payload) in &commands {
        watcher.publish(topic, payload.as_bytes()).await;
    }
    let reports = |messages: &[crate::util::Message]| -> Vec<serde_json::Value> {
        messages
            .iter()
            .filter(|m| m.topic == ERRORS)
            .filter_map(|m| serde_json::from_str(&m.payload).ok())
            .collect()
    };
    let all_refused = watcher
        .wait_for(|ms| {
            let reports = reports(ms);
            commands.iter().all(|(topic, payload)| {
                reports.iter().any(|r| {
                    r["topic"] == *topic
                        && r["payload"]
                            .as_str()
                            .is_some_and(|p| payload.starts_with(p.trim_end_matches('…')))
                        && r["error"].as_str().is_some_and(|e| !e.is_empty())
                })
            })
        })
        .await;
    assert!(
        all_refused,
        "reports: {:#?}\n{}",
        reports(&watcher.messages()),
        gateway.log()
    );
    // The 100 kB payload is quoted cut short, not echoed whole.
    assert!(
        watcher
            .messages()
            .iter()
            .filter(|m| m.topic == ERRORS)
            .all(|m| m.payload.len() < 400)
    );
    // Values keep flowing after all that, and nothing was written.
    let before = watcher.payloads(TEMPERATURE).len();
    assert!(watcher.wait_for(|ms| more_values(ms, before)).await);
    assert!(
        sim.sim.seen().iter().all(|s| s.function == 3),
        "{:?}",
        sim.sim.seen()
    );
    assert_eq!(sim.sim.holding(10, 2), Some(0));
}

/// At least three more temperature values than `before`.
fn more_values(messages: &[crate::util::Message], before: usize) -> bool {
    messages.iter().filter(|m| m.topic == TEMPERATURE).count() >= before + 3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_state_is_online_then_offline_when_killed() {
    let Rig {
        broker,
        sim: _sim,
        watcher,
        mut gateway,
    } = rig(STATE).await;
    // The rig waited for `online`; this watcher saw it too.
    assert!(watcher.wait_payload(STATE, "online").await);
    gateway.child.kill().expect("SIGKILL");
    let _ = gateway.child.wait();
    assert!(
        watcher.wait_payload(STATE, "offline").await,
        "the broker's last will"
    );
    let retained = Watcher::connect(broker.port, STATE).await;
    assert!(
        retained
            .wait_for(|ms| ms.iter().any(|m| m.retain && m.payload == "offline"))
            .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_says_offline_and_exits_zero_within_a_second() {
    let Rig {
        broker: _broker,
        sim: _sim,
        watcher,
        mut gateway,
    } = rig(STATE).await;
    // The rig waited for `online`; this watcher saw it too.
    assert!(watcher.wait_payload(STATE, "online").await);
    let sent = Instant::now();
    gateway.signal("TERM");
    let status = gateway.wait_exit(Duration::from_secs(5)).await;
    let took = sent.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        gateway.log()
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(watcher.wait_payload(STATE, "offline").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_unit_goes_offline_while_the_other_keeps_publishing() {
    let broker = Broker::start();
    let ghost = "\n[[device]]\nname = \"ghost\"\nunit = 11\npoll = \"200ms\"\n[[device.register]]\nname = \"x\"\naddress = 0\n";
    let sim = start_sim(&example());
    sim.sim.set_fault(11, Some(Fault::Silent));
    let watcher = Watcher::connect(broker.port, "rtu2mqtt/#").await;
    let text = example_text(&sim.path, broker.port).replace(
        "\n# What `rtu2mqtt sim`",
        &format!("{ghost}\n# What `rtu2mqtt sim`"),
    );
    let gateway =
        GatewayProcess::start(&text.replace("timeout = \"300ms\"", "timeout = \"100ms\""));
    assert!(
        watcher
            .wait_payload("rtu2mqtt/ghost/availability", "offline")
            .await,
        "{}",
        gateway.log()
    );
    assert!(
        watcher
            .wait_payload("rtu2mqtt/climate/availability", "online")
            .await
    );
    let before = watcher.payloads(TEMPERATURE).len();
    assert!(
        watcher.wait_for(|ms| more_values(ms, before)).await,
        "{}",
        gateway.log()
    );
    assert!(
        !watcher
            .payloads("rtu2mqtt/climate/availability")
            .contains(&"offline".to_owned())
    );
    // Its failures are reported.
    assert!(watcher.wait_saying(ERRORS, &["ghost"]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_resumes_publishing_and_commands() {
    if !Broker::restartable() {
        return;
    }
    let mut broker = Broker::start();
    let port = broker.port;
    let (sim, gateway) = publishing_gateway(&broker, |path| example_text(path, port)).await;
    broker.stop();
    // Polling goes on without the broker.
    let polls = sim.sim.seen().len();
    assert!(
        sim.sim
            .wait_for_seen(DEADLINE, |seen| seen.len() >= polls + 3)
            .await
    );
    broker.restart();
    // mosquitto kept nothing (no persistence): whatever arrives now was published again.
    let watcher = Watcher::connect(broker.port, "rtu2mqtt/#").await;
    assert!(
        watcher.wait_payload(STATE, "online").await,
        "{}",
        gateway.log()
    );
    assert!(
        watcher.wait_payload(TEMPERATURE, "21.5").await,
        "{}",
        gateway.log()
    );
    watcher.publish("rtu2mqtt/climate/pwm/set", "300").await;
    assert!(watcher.wait_payload(PWM, "300").await, "{}", gateway.log());
    assert_eq!(sim.sim.holding(10, 2), Some(300));
}

/// A CA and a server certificate for 127.0.0.1, as PEM files in `dir`.
fn make_certificates(dir: &std::path::Path) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let mut server_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    server_params.subject_alt_names =
        vec![SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())];
    let server = server_params.signed_by(&server_key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_password_file_connects_and_never_logs_the_password() {
    if !Broker::restartable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let passwords = dir.path().join("passwd");
    let made = std::process::Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&passwords)
        .args(["gateway", "s3cret-Pa55"])
        .status()
        .expect("mosquitto_passwd");
    assert!(made.success());
    let (plain, tls) = (crate::util::free_port(), crate::util::free_port());
    let d = dir.path().display();
    let conf = format!(
        "per_listener_settings true\npersistence false\n\
         listener {plain} 127.0.0.1\nallow_anonymous true\n\
         listener {tls} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n\
         allow_anonymous false\npassword_file {}\n",
        passwords.display()
    );
    let _broker = Broker::mosquitto(plain, conf);
    let sim = start_sim(&example());
    let watcher = Watcher::connect(plain, "rtu2mqtt/#").await;
    let with_password = |password: &str, client: &str| {
        let file = dir.path().join(format!("{client}.pass"));
        std::fs::write(&file, format!("{password}\n")).unwrap();
        format!(
            "{}\n[mqtt.tls]\nca_file = \"{d}/ca.pem\"\n",
            example_text(&sim.path, tls).replace(
                "[mqtt]\n",
                &format!("[mqtt]\nclient_id = \"{client}\"\nusername = \"gateway\"\npassword_file = \"{}\"\n", file.display())
            )
        )
    };

    // A wrong password is refused by the broker and said so in the log, without the password.
    let refused = GatewayProcess::start(&with_password("wrong-Pa55", "intruder"));
    assert!(
        refused.wait_log("MQTT broker unreachable").await,
        "{}",
        refused.log()
    );
    assert!(!refused.log().contains("wrong-Pa55"), "{}", refused.log());
    drop(refused);

    let gateway = GatewayProcess::start(&with_password("s3cret-Pa55", "rtu2mqtt-tls"));
    assert!(
        watcher.wait_payload(TEMPERATURE, "21.5").await,
        "{}",
        gateway.log()
    );
    assert!(watcher.wait_payload(STATE, "online").await);
    watcher.publish("rtu2mqtt/climate/pwm/set", "77").await;
    assert!(watcher.wait_payload(PWM, "77").await, "{}", gateway.log());
    assert!(!gateway.log().contains("s3cret-Pa55"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_broker_is_reached_through_its_unix_socket() {
    if !Broker::restartable() {
        return;
    }
    // mosquitto drops to its own user before it makes the socket.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let socket = dir.path().join("mqtt.sock");
    let plain = crate::util::free_port();
    let conf = format!(
        "persistence false\nallow_anonymous true\nlistener {plain} 127.0.0.1\nlistener 0 {}\n",
        socket.display()
    );
    let _broker = Broker::mosquitto(plain, conf);
    let sim = start_sim(&example());
    let watcher = Watcher::connect(plain, "rtu2mqtt/#").await;
    let text = example_text(&sim.path, plain).replace(
        &format!("[mqtt]\nport = {plain}\n"),
        &format!("[mqtt]\nsocket = \"{}\"\n", socket.display()),
    );
    assert!(text.contains("socket = "));
    let gateway = GatewayProcess::start(&text);
    assert!(
        watcher.wait_payload(TEMPERATURE, "21.5").await,
        "{}",
        gateway.log()
    );
    watcher.publish("rtu2mqtt/climate/pwm/set", "66").await;
    assert!(watcher.wait_payload(PWM, "66").await, "{}", gateway.log());
    assert!(gateway.log().contains(&socket.display().to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_mode_publishes_changes_beyond_the_deadband_and_republishes_when_quiet() {
    let broker = Broker::start();
    let sim = start_sim(&example());
    let watcher = Watcher::connect(broker.port, TEMPERATURE).await;
    // Polled every 200 ms; published on a change of more than 0.2 °C, or after 1 s of quiet.
    let text = example_text(&sim.path, broker.port)
        .replace(
            "publish = \"always\"            # always | change",
            "publish = \"change\"\ndeadband = 0.2",
        )
        .replace(
            "republish = \"5m\"              # with change",
            "republish = \"1s\"  # with change",
        );
    let gateway = GatewayProcess::start(&text);
    assert!(
        watcher.wait_payload(TEMPERATURE, "21.5").await,
        "{}",
        gateway.log()
    );
    // Within the deadband: not published, however often it is polled.
    sim.sim.set(10, Table::Holding, 0, 216);
    let polls = sim.sim.seen().len();
    assert!(
        sim.sim
            .wait_for_seen(DEADLINE, |seen| seen.len() >= polls + 3)
            .await
    );
    assert_eq!(watcher.payloads(TEMPERATURE), ["21.5"]);
    // Beyond it: published at once.
    sim.sim.set(10, Table::Holding, 0, 230);
    assert!(
        watcher.wait_payload(TEMPERATURE, "23").await,
        "{}",
        gateway.log()
    );
    // Unchanged: published again once `republish` has passed, not at every poll.
    let quiet_since = Instant::now();
    assert!(
        watcher
            .wait_for(|ms| ms.iter().filter(|m| m.payload == "23").count() >= 2)
            .await
    );
    let waited = quiet_since.elapsed();
    assert!(
        waited >= Duration::from_millis(800),
        "republished after {waited:?}"
    );
    assert_eq!(watcher.payloads(TEMPERATURE), ["21.5", "23", "23"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_qos_0_is_for_values_alone() {
    use rumqttc::QoS;
    let broker = Broker::start();
    let port = broker.port;
    let (_sim, gateway) = publishing_gateway(&broker, |path| {
        example_text(path, port).replace("# value_qos = 0 ", "value_qos = 0 #")
    })
    .await;
    let watcher = Watcher::connect(broker.port, "rtu2mqtt/#").await;
    watcher
        .publish("rtu2mqtt/climate/pwm/set", "nonsense")
        .await;
    let fresh = |ms: &[crate::util::Message]| {
        ms.iter().any(|m| m.topic == TEMPERATURE && !m.retain)
            && ms.iter().any(|m| m.topic == ERRORS)
    };
    assert!(watcher.wait_for(fresh).await, "{}", gateway.log());
    for m in watcher.messages() {
        // Retained copies come at the subscription's QoS whatever they were sent with.
        if m.retain {
            continue;
        }
        let value = ["temperature", "humidity", "pwm", "test"]
            .iter()
            .any(|r| m.topic == format!("rtu2mqtt/climate/{r}"));
        let expected = if value {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        assert_eq!(m.qos, expected, "{m:?}");
    }
}
