//! The topic schemes of other platforms (SPEC "Integrations"): a state topic that is also
//! the command topic, floods of commands, `/get` and the poll interval at run time.

use std::time::{Duration, Instant};

use rtu2mqtt::config::Table;
use rtu2mqtt::sim::{Fault, Seen};

use crate::util::{Broker, GatewayProcess, SimBus, Watcher, example_text, simulated_gateway};

const ERRORS: &str = "rtu2mqtt/bridge/error";
const LED: &str = "modbusgateway/led";
const TEMPERATURE: &str = "rtu2mqtt/climate/temperature";

fn pwm_writes(seen: &[Seen]) -> Vec<u16> {
    seen.iter()
        .filter(|s| s.unit == 10 && s.function == 6 && s.address == 2)
        .map(|s| s.count)
        .collect()
}

/// The simulated devices of `config_text` (on whatever port), the gateway on it and a
/// watcher of everything, waited for until the gateway is online.
async fn start(broker: &Broker, config_text: &str) -> (SimBus, GatewayProcess, Watcher) {
    let (sim, gateway, watcher) = simulated_gateway(broker, config_text, |_| {}).await;
    assert!(
        watcher
            .wait_payload("rtu2mqtt/climate/availability", "online")
            .await,
        "{}",
        gateway.log()
    );
    (sim, gateway, watcher)
}

/// The example with its port left as shipped (`start` puts the simulator's there).
fn example_on(broker: &Broker) -> String {
    example_text("/dev/ttyUSB0", broker.port)
}

/// Waits until `topic` has had `count` more messages than it had when called; how long
/// that took.
async fn time_publishes(watcher: &Watcher, topic: &str, count: usize) -> Duration {
    let since = Instant::now();
    let before = watcher.payloads(topic).len();
    assert!(
        watcher
            .wait_for(|ms| ms.iter().filter(|m| m.topic == topic).count() >= before + count)
            .await,
        "{count} more on {topic}"
    );
    since.elapsed()
}

/// Waits for the gateway to publish `payload` on a topic where the watcher itself sent it
/// as a command (and so sees it once already).
async fn published_after_command(watcher: &Watcher, topic: &str, payload: &str) -> bool {
    watcher
        .wait_for(|ms| {
            ms.iter()
                .filter(|m| m.topic == topic && m.payload == payload)
                .count()
                >= 2
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_state_and_command_topic_writes_once_per_command() {
    let broker = Broker::start();
    // ioBroker's scheme: the LED's state and commands on one topic, with a value retained
    // there from before the gateway started.
    let text = example_on(&broker).replace(
        "name = \"pwm\"\naddress = 2",
        "name = \"pwm\"\naddress = 2\ntopic = \"modbusgateway/led\"\ncommand_topic = \"modbusgateway/led\"",
    );
    let earlier = Watcher::connect(broker.port, "nothing").await;
    earlier
        .client
        .publish(LED, rumqttc::QoS::AtLeastOnce, true, "300")
        .await
        .unwrap();
    let (sim, gateway, watcher) = start(&broker, &text).await;
    assert!(watcher.wait_payload(LED, "0").await, "{}", gateway.log());
    assert_eq!(
        pwm_writes(&sim.sim.seen()),
        [] as [u16; 0],
        "the retained value was written"
    );

    watcher.publish(LED, "512").await;
    assert!(
        published_after_command(&watcher, LED, "512").await,
        "{}",
        gateway.log()
    );
    // Polls go on, and publish the LED's value on the same topic again and again: none
    // of it comes back as a command, nor does ioBroker sending the state back (ack).
    watcher.publish(LED, "512").await;
    time_publishes(&watcher, TEMPERATURE, 10).await;
    assert!(watcher.payloads(LED).iter().filter(|p| *p == "512").count() >= 5);
    assert_eq!(pwm_writes(&sim.sim.seen()), [512], "{}", gateway.log());
    assert_eq!(sim.sim.holding(10, 2), Some(512));

    // A second command is a second write, and the device keeps it, though ioBroker's
    // adapter sends the command straight back as the state, before the device has it.
    // (The device answers the LED's address slowly: the write is still on the bus when
    // the copy comes.)
    sim.sim
        .set_address_fault(10, 2, Some(Fault::Late(Duration::from_millis(150))));
    watcher.publish(LED, "7").await;
    assert!(
        sim.sim
            .wait_for_seen(Duration::from_secs(5), |seen| pwm_writes(seen).len() == 2)
            .await
    );
    watcher.publish(LED, "7").await;
    assert!(
        watcher
            .wait_for(|ms| ms
                .iter()
                .filter(|m| m.topic == LED && m.payload == "7")
                .count()
                >= 3)
            .await,
        "{}",
        gateway.log()
    );
    // A copy of the older state that comes after the newer one (the adapter's, late) is
    // no command either.
    watcher.publish(LED, "512").await;
    time_publishes(&watcher, TEMPERATURE, 5).await;
    assert_eq!(pwm_writes(&sim.sim.seen()), [512, 7], "{}", gateway.log());
    assert_eq!(sim.sim.holding(10, 2), Some(7));
    assert!(watcher.payloads(ERRORS).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_commands_ends_with_the_last_and_polls_keep_their_cadence() {
    let broker = Broker::start();
    let text = format!(
        "{}\n[[device]]\nname = \"meter\"\nunit = 11\npoll = \"200ms\"\n\
         [[device.register]]\nname = \"power\"\naddress = 0\n\
         [sim.meter]\npower = 1\n",
        example_on(&broker)
    );
    let (sim, gateway, watcher) = start(&broker, &text).await;
    // A slider dragged for a second: 1,000 values, the last one 777 (and only the last).
    let flood_start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    for value in (0..1000).filter(|v| *v != 777).chain([777]) {
        tick.tick().await;
        watcher
            .client
            .publish(
                "rtu2mqtt/climate/pwm/set",
                rumqttc::QoS::AtMostOnce,
                false,
                value.to_string(),
            )
            .await
            .unwrap();
    }
    assert!(
        watcher.wait_payload("rtu2mqtt/climate/pwm", "777").await,
        "{}",
        gateway.log()
    );
    let flood_end = Instant::now();
    let seen = sim.sim.seen();
    let writes = pwm_writes(&seen);
    eprintln!(
        "{} writes for 1000 commands in {:?}",
        writes.len(),
        flood_end - flood_start
    );
    assert_eq!(writes.last(), Some(&777));
    assert!(writes.len() < 200, "{} writes", writes.len());
    assert_eq!(sim.sim.holding(10, 2), Some(777));
    assert!(
        !watcher.payloads(ERRORS).iter().any(|e| e.contains("777")),
        "{:?}",
        watcher.payloads(ERRORS)
    );

    // The meter was read at its pace all along: no gap between its reads during the
    // flood longer than its interval and a command's line time (~40 ms at 9600 baud),
    // with room for a busy machine.
    let reads: Vec<Instant> = seen
        .iter()
        .filter(|s| s.unit == 11 && s.function == 3 && s.at >= flood_start)
        .map(|s| s.at)
        .filter(|at| *at <= flood_end)
        .collect();
    let longest = reads
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    eprintln!(
        "meter read {} times during the flood, longest gap {longest:?}",
        reads.len()
    );
    assert!(reads.len() >= 4, "{} reads of the meter", reads.len());
    assert!(longest < Duration::from_millis(350), "{longest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_reads_a_register_or_a_device_now() {
    let broker = Broker::start();
    // Polled every 30 s and published on change only: a fresh value well before the next
    // poll can only come from /get.
    let text = rtu2mqtt::config::EXAMPLE
        .replace("[mqtt]\n", &format!("[mqtt]\nport = {}\n", broker.port))
        .replace("poll = \"2s\"", "poll = \"30s\"");
    let (sim, gateway, watcher) = start(&broker, &text).await;
    assert!(watcher.wait_payload(TEMPERATURE, "21.5").await);

    // Unchanged, it is published anyway when asked for.
    let asked = Instant::now();
    watcher
        .publish("rtu2mqtt/climate/temperature/get", "")
        .await;
    let took = time_publishes(&watcher, TEMPERATURE, 1).await;
    assert_eq!(watcher.payloads(TEMPERATURE).last().unwrap(), "21.5");

    sim.sim.set(10, Table::Holding, 0, 250);
    watcher
        .publish("rtu2mqtt/climate/temperature/get", "now")
        .await;
    assert!(
        watcher.wait_payload(TEMPERATURE, "25").await,
        "{}",
        gateway.log()
    );
    sim.sim.set(10, Table::Holding, 1, 600);
    watcher.publish("rtu2mqtt/climate/get", "").await;
    assert!(
        watcher
            .wait_payload("rtu2mqtt/climate/humidity", "60")
            .await,
        "{}",
        gateway.log()
    );
    eprintln!(
        "first /get answered in {took:?}, all in {:?}",
        asked.elapsed()
    );
    assert!(asked.elapsed() < Duration::from_secs(10));

    watcher.publish("rtu2mqtt/climate/nothing/get", "").await;
    watcher.publish("rtu2mqtt/heater/get", "").await;
    assert!(
        watcher
            .wait_for(|ms| ms.iter().filter(|m| m.topic == ERRORS).count() >= 2)
            .await
    );
    let errors = watcher.payloads(ERRORS);
    assert!(
        errors[0]
            .contains("no register or device is read by the topic rtu2mqtt/climate/nothing/get"),
        "{errors:?}"
    );
    assert!(errors[1].contains("rtu2mqtt/heater/get"), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poll_interval_changes_at_run_time_within_bounds() {
    let broker = Broker::start();
    let text = example_on(&broker).replace(
        "poll = \"200ms\"",
        "poll = \"200ms\"\npoll_command_topic = \"modbusgateway/send_interval\"",
    );
    let (_sim, gateway, watcher) = start(&broker, &text).await;
    const POLL: &str = "rtu2mqtt/climate/poll";
    assert!(watcher.wait_payload(POLL, "0.2").await, "{}", gateway.log());
    let fast = time_publishes(&watcher, TEMPERATURE, 5).await;

    watcher.publish("rtu2mqtt/climate/poll/set", "1").await;
    assert!(watcher.wait_payload(POLL, "1").await, "{}", gateway.log());
    time_publishes(&watcher, TEMPERATURE, 1).await;
    let slow = time_publishes(&watcher, TEMPERATURE, 2).await;
    eprintln!("5 publishes in {fast:?} at 200 ms; 2 in {slow:?} at 1 s");
    assert!(fast < Duration::from_millis(1600), "{fast:?}");
    assert!(slow > Duration::from_millis(1700), "{slow:?}");

    for bad in ["abc", "-1", "1e12", "0.001"] {
        watcher.publish("rtu2mqtt/climate/poll/set", bad).await;
    }
    assert!(
        watcher
            .wait_for(|ms| ms.iter().filter(|m| m.topic == ERRORS).count() >= 4)
            .await
    );
    let errors = watcher.payloads(ERRORS);
    for (error, bad) in errors.iter().zip(["abc", "-1", "1e12", "0.001"]) {
        let json: serde_json::Value = serde_json::from_str(error).unwrap();
        assert_eq!(json["topic"], "rtu2mqtt/climate/poll/set");
        assert_eq!(json["payload"], bad);
        assert!(
            json["error"].as_str().unwrap().contains("poll interval"),
            "{error}"
        );
    }
    assert_eq!(watcher.payloads(POLL).last().unwrap(), "1");

    // ioBroker's send_interval: whole seconds, 0 for the configured interval.
    watcher.publish("modbusgateway/send_interval", "3").await;
    assert!(watcher.wait_payload(POLL, "3").await, "{}", gateway.log());
    watcher.publish("modbusgateway/send_interval", "0").await;
    assert!(
        watcher
            .wait_for(|ms| ms
                .iter()
                .filter(|m| m.topic == POLL && m.payload == "0.2")
                .count()
                >= 2)
            .await
    );
    let fast_again = time_publishes(&watcher, TEMPERATURE, 5).await;
    assert!(fast_again < Duration::from_millis(1600), "{fast_again:?}");
    let retained = Watcher::connect(broker.port, POLL).await;
    assert!(
        retained
            .wait_for(|ms| ms.iter().any(|m| m.retain && m.payload == "0.2"))
            .await
    );
}

/// A shipped config on the simulated device and `broker`.
fn shipped(file: &str, broker: &Broker) -> String {
    let path = format!("{}/configs/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path)
        .expect("shipped config")
        .replace("[mqtt]\n", &format!("[mqtt]\nport = {}\n", broker.port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_iobroker_and_gladys_configs_work_on_their_topics() {
    let broker = Broker::start();
    let (sim, gateway, watcher) =
        simulated_gateway(&broker, &shipped("iobroker.toml", &broker), |_| {}).await;
    for (topic, payload) in [
        ("modbusgateway/temp", "21.5"),
        ("modbusgateway/hum", "55.3"),
        ("modbusgateway/led", "0"),
        ("modbusgateway/climate/test", "-157"),
        ("modbusgateway/climate/poll", "2"),
        ("modbusgateway/climate/availability", "online"),
    ] {
        assert!(
            watcher.wait_payload(topic, payload).await,
            "{topic}\n{}",
            gateway.log()
        );
    }
    watcher.publish("modbusgateway/led", "300").await;
    assert!(published_after_command(&watcher, "modbusgateway/led", "300").await);
    watcher.publish("modbusgateway/send_interval", "1").await;
    assert!(
        watcher
            .wait_payload("modbusgateway/climate/poll", "1")
            .await
    );
    assert_eq!(pwm_writes(&sim.sim.seen()), [300]);
    drop(gateway);

    let (sim, gateway, watcher) =
        simulated_gateway(&broker, &shipped("gladys.toml", &broker), |_| {}).await;
    let feature = |name: &str| format!("mqtt:climate/feature/mqtt:climate:{name}/state");
    let value = |name: &str| format!("gladys/master/device/{}", feature(name));
    assert!(
        watcher.wait_payload(&value("temperature"), "21.5").await,
        "{}",
        gateway.log()
    );
    assert!(watcher.wait_payload(&value("pwm"), "0").await);
    watcher
        .publish(&format!("gladys/device/{}", feature("pwm")), "1023")
        .await;
    assert!(
        watcher.wait_payload(&value("pwm"), "1023").await,
        "{}",
        gateway.log()
    );
    assert_eq!(pwm_writes(&sim.sim.seen()), [1023]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_to_an_offline_device_wait_for_it_up_to_command_timeout() {
    let broker = Broker::start();
    let text = format!(
        "{}\n[[device]]\nname = \"meter\"\nunit = 11\npoll = \"200ms\"\n\
         [[device.register]]\nname = \"power\"\naddress = 0\n",
        example_on(&broker).replace(
            "offline_after = 3",
            "offline_after = 2\ncommand_timeout = \"5s\""
        )
    );
    let (sim, gateway, watcher) = start(&broker, &text).await;
    const AVAILABILITY: &str = "rtu2mqtt/climate/availability";
    let offline = async |count: usize| {
        assert!(
            watcher
                .wait_for(|ms| {
                    ms.iter()
                        .filter(|m| m.topic == AVAILABILITY && m.payload == "offline")
                        .count()
                        >= count
                })
                .await,
            "{}",
            gateway.log()
        );
    };

    // A blip: three commands while the device is away, applied when it is back.
    sim.sim.set_fault(10, Some(Fault::Silent));
    offline(1).await;
    let sent = Instant::now();
    for value in ["100", "200", "300"] {
        watcher.publish("rtu2mqtt/climate/pwm/set", value).await;
    }
    let before = sim.sim.seen().len();
    // Back at once, but the gateway learns it only from its next probe.
    sim.sim.set_fault(10, None);
    assert!(
        published_after_command(&watcher, "rtu2mqtt/climate/pwm", "300").await,
        "{}",
        gateway.log()
    );
    eprintln!("written {:?} after it was sent", sent.elapsed());
    let seen = sim.sim.seen();
    assert_eq!(pwm_writes(&seen), [300]);
    // Nothing but the device's probes went to it while it was away, and once it answered
    // the command went first.
    let to_climate: Vec<u8> = seen[before..]
        .iter()
        .filter(|s| s.unit == 10)
        .map(|s| s.function)
        .collect();
    let write = to_climate.iter().position(|f| *f == 6).unwrap();
    assert!(write <= 2, "{to_climate:?}");

    // Away for longer than command_timeout: refused, and never written later.
    sim.sim.set_fault(10, Some(Fault::Silent));
    offline(2).await;
    watcher.publish("rtu2mqtt/climate/pwm/set", "555").await;
    assert!(
        watcher
            .wait_saying(ERRORS, &["555", "command_timeout"])
            .await,
        "{:?}\n{}",
        watcher.payloads(ERRORS),
        gateway.log()
    );
    sim.sim.set_fault(10, None);
    assert!(
        watcher
            .wait_for(|ms| ms
                .iter()
                .filter(|m| m.topic == AVAILABILITY && m.payload == "online")
                .count()
                >= 3)
            .await
    );
    time_publishes(&watcher, TEMPERATURE, 5).await;
    assert_eq!(pwm_writes(&sim.sim.seen()), [300]);
    assert_eq!(sim.sim.holding(10, 2), Some(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_the_device_took_is_said_so_and_not_written_again_when_its_read_back_fails() {
    let broker = Broker::start();
    // Polled once an hour: nothing but the command goes to the device after the first read.
    let text = example_on(&broker).replace("poll = \"200ms\"", "poll = \"1h\"");
    let (sim, gateway, watcher) = start(&broker, &text).await;
    // The write is answered (late by nothing); the read-back and its retry are not.
    sim.sim.queue_faults(
        10,
        [Fault::Late(Duration::ZERO), Fault::Silent, Fault::Silent],
    );
    watcher.publish("rtu2mqtt/climate/pwm/set", "300").await;
    assert!(
        watcher
            .wait_saying(ERRORS, &["300", "written, but reading it back failed"])
            .await,
        "{:?}\n{}",
        watcher.payloads(ERRORS),
        gateway.log()
    );
    assert_eq!(sim.sim.holding(10, 2), Some(300));
    // Not tried again: a write the line did not carry would be, 2 s later.
    let again = sim
        .sim
        .wait_for_seen(Duration::from_millis(2500), |seen| {
            pwm_writes(seen).len() > 1
        })
        .await;
    assert!(
        !again,
        "{:?}\n{}",
        pwm_writes(&sim.sim.seen()),
        gateway.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_in_a_blip_shorter_than_offline_after_is_written_when_the_device_is_back() {
    let broker = Broker::start();
    let (sim, gateway, watcher) = start(&broker, &example_on(&broker)).await;
    // Silent for a moment: the write is not carried (nor its retry), and the device is
    // not offline yet.
    sim.sim.set_fault(10, Some(Fault::Silent));
    watcher.publish("rtu2mqtt/climate/pwm/set", "321").await;
    assert!(
        sim.sim
            .wait_for_seen(Duration::from_secs(5), |seen| pwm_writes(seen)
                == [321, 321])
            .await
    );
    sim.sim.set_fault(10, None);
    assert!(
        published_after_command(&watcher, "rtu2mqtt/climate/pwm", "321").await,
        "{}",
        gateway.log()
    );
    assert_eq!(sim.sim.holding(10, 2), Some(321));
    assert!(
        !watcher
            .payloads("rtu2mqtt/climate/availability")
            .contains(&"offline".to_owned()),
        "the blip was meant to be shorter than offline_after"
    );
    assert!(watcher.payloads(ERRORS).iter().all(|e| !e.contains("321")));
}
