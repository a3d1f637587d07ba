use super::*;
use crate::codec::Bit;

fn problems(text: &str) -> Vec<Problem> {
    match parse(text, Path::new("test.toml")) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("expected problems, got {other:?}"),
    }
}

const BUS: &str = "[bus]\nport = \"/dev/null\"\n";

#[test]
fn example_config_is_the_reference_device() {
    let config = parse(EXAMPLE, Path::new("configs/example.toml")).unwrap();
    assert_eq!(config.bus.line.describe(), "9600 8E1");
    let device = &config.devices[0];
    assert_eq!((device.name.as_str(), device.unit.get()), ("climate", 10));
    let names: Vec<_> = device
        .registers
        .iter()
        .map(|r| (r.name.as_str(), r.address))
        .collect();
    assert_eq!(
        names,
        [("temperature", 0), ("humidity", 1), ("pwm", 2), ("test", 3)]
    );
    let pwm = &device.registers[2];
    assert!(pwm.writable);
    assert_eq!(pwm.write_function, WriteFunction::SingleRegister);
    assert_eq!((pwm.codec.min, pwm.codec.max), (Some(0.0), Some(1023.0)));
    assert_eq!(config.sim[0].values.len(), 4);
    assert_eq!(config.mqtt.base_topic, "rtu2mqtt");
    assert_eq!(config.mqtt.port, 1883);
}

#[test]
fn unknown_key_names_key_and_line() {
    let p = problems(&format!(
        "{BUS}[[device]]\nname = \"a\"\nunit = 1\npoll_rate = \"1s\"\n"
    ));
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].line, p[0].key.as_str()), (6, "poll_rate"));
    assert!(p[0].message.contains("unknown field"), "{}", p[0].message);
}

#[test]
fn scale_given_as_string_names_key() {
    let p = problems(&format!(
        "{BUS}[[device]]\nname = \"a\"\nunit = 1\n[[device.register]]\nname = \"t\"\naddress = 0\nscale = \"0.1\"\n"
    ));
    assert_eq!((p[0].line, p[0].key.as_str()), (9, "scale"));
}

#[test]
fn every_validation_error_is_reported_with_its_line() {
    let text = format!(
        "{BUS}\
[[device]]
name = \"a\"
unit = 0
[[device.register]]
name = \"big\"
address = 70000
[[device.register]]
name = \"c\"
table = \"coil\"
type = \"u16\"
address = 1
[[device.register]]
name = \"i\"
table = \"input\"
address = 2
writable = true
[[device.register]]
name = \"s\"
address = 3
scale = 0
min = 5
max = 1
"
    );
    let p = problems(&text);
    let found: Vec<_> = p.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        found,
        [
            (5, "unit"),
            (8, "address"),
            (12, "type"),
            (18, "writable"),
            (22, "scale"),
            (23, "min")
        ]
    );
}

#[test]
fn overlapping_writable_registers_are_refused_but_views_are_not() {
    let head = format!("{BUS}[[device]]\nname = \"a\"\nunit = 1\n");
    let view = format!(
        "{head}[[device.register]]\nname = \"wide\"\naddress = 0\ntype = \"u32\"\n[[device.register]]\nname = \"low\"\naddress = 1\n"
    );
    assert!(parse(&view, Path::new("t")).is_ok());
    let clash = format!("{view}writable = true\n");
    let p = problems(&clash);
    assert_eq!((p[0].key.as_str(), p[0].line), ("address", 12));
}

#[test]
fn names_and_units_are_unique() {
    let text = format!(
        "{BUS}[[device]]\nname = \"a\"\nunit = 1\n[[device.register]]\nname = \"x\"\naddress = 0\n[[device.register]]\nname = \"x\"\naddress = 1\n[[device]]\nname = \"a\"\nunit = 1\n"
    );
    let keys: Vec<_> = problems(&text).into_iter().map(|p| p.key).collect();
    assert_eq!(keys, ["name", "name", "unit"]);
}

#[test]
fn bad_durations_and_limits() {
    let text = "[bus]\nport = \"/dev/null\"\ntimeout = \"soon\"\n[[device]]\nname = \"a\"\nunit = 1\nmax_read = 126\n";
    let keys: Vec<_> = problems(text)
        .into_iter()
        .map(|p| (p.line, p.key))
        .collect();
    assert_eq!(
        keys,
        [(3, "timeout".to_owned()), (7, "max_read".to_owned())]
    );
}

#[test]
fn thirty_two_bit_register_refuses_function_6() {
    let text = format!(
        "{BUS}[[device]]\nname = \"a\"\nunit = 1\n[[device.register]]\nname = \"e\"\naddress = 0\ntype = \"u32\"\nwritable = true\nwrite_function = 6\n"
    );
    assert_eq!(problems(&text)[0].key, "write_function");
}

#[test]
fn sim_values_must_name_registers_and_fit() {
    let text = format!(
        "{BUS}[[device]]\nname = \"a\"\nunit = 1\n[[device.register]]\nname = \"x\"\naddress = 0\n[sim.a]\nx = 70000\ny = 1\n"
    );
    let keys: Vec<_> = problems(&text)
        .into_iter()
        .map(|p| (p.line, p.key))
        .collect();
    assert_eq!(keys, [(10, "x".to_owned()), (11, "y".to_owned())]);
}

#[test]
fn message_names_file_line_and_key() {
    let err = parse("[bus]\nport = 1\n", Path::new("/etc/rtu2mqtt/x.toml")).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("/etc/rtu2mqtt/x.toml:2:"), "{text}");
    assert!(text.contains("`port`"), "{text}");
}

#[test]
fn a_local_broker_is_reached_by_its_unix_socket_alone() {
    let text = format!("[mqtt]\nsocket = \"/run/mosquitto/mqtt.sock\"\n{BUS}");
    let config = parse(&text, Path::new("t")).unwrap();
    assert_eq!(
        config.mqtt.socket.as_deref(),
        Some(Path::new("/run/mosquitto/mqtt.sock"))
    );
    assert_eq!(config.mqtt.broker(), "/run/mosquitto/mqtt.sock");
    let text = format!(
        "[mqtt]\nhost = \"broker\"\nport = 1884\nsocket = \"mqtt.sock\"\n[mqtt.tls]\n{BUS}"
    );
    assert_eq!(
        located(&text),
        [(4, "socket".to_owned()), (4, "socket".to_owned())]
    );
    let p = problems(&text);
    assert!(p[0].message.contains("takes no [mqtt.tls]"), "{p:?}");
    assert!(p[1].message.contains("absolute path"), "{p:?}");
    // Host and port left beside a socket are not used: said, not refused.
    let text =
        format!("[mqtt]\nhost = \"broker\"\nport = 1884\nsocket = \"/run/mqtt.sock\"\n{BUS}");
    let (_, warnings) = parse_with_warnings(&text, Path::new("t")).unwrap();
    let found: Vec<(usize, &str)> = warnings.iter().map(|w| (w.line, w.key.as_str())).collect();
    assert_eq!(found, [(2, "host"), (3, "port")], "{warnings:?}");
}

#[test]
fn relative_password_file_sits_beside_the_config_and_client_id_names_the_host() {
    let text = format!("[mqtt]\nusername = \"u\"\npassword_file = \"mqtt.pass\"\n{BUS}");
    let config = parse(&text, Path::new("/etc/rtu2mqtt/bus1.toml")).unwrap();
    if std::env::var_os("CREDENTIALS_DIRECTORY").is_none() {
        assert_eq!(
            config.mqtt.password_file.unwrap(),
            Path::new("/etc/rtu2mqtt/mqtt.pass")
        );
    }
    assert!(config.mqtt.client_id.starts_with("rtu2mqtt-"));
    assert!(config.mqtt.client_id.len() > "rtu2mqtt-".len());
    // One id per gateway: the config file, and the base topic where it is not the default.
    let id = |text: &str, file: &str| parse(text, Path::new(file)).unwrap().mqtt.client_id;
    let bus1 = id(BUS, "/etc/rtu2mqtt/bus1.toml");
    assert!(bus1.ends_with("-bus1"), "{bus1}");
    assert_ne!(bus1, id(BUS, "/etc/rtu2mqtt/bus2.toml"));
    let site = id(
        &format!("[mqtt]\nbase_topic = \"site/b 2\"\n{BUS}"),
        "bus1.toml",
    );
    assert!(site.ends_with("-bus1-site_b_2"), "{site}");
}

#[test]
fn missing_keys_and_lines_cut_short_are_named() {
    // Found by prop_config_edits_of_the_shipped_configs_name_line_and_key: an empty file
    // and one cut after "[" were reported with an empty key.
    let p = problems("");
    assert_eq!((p[0].line, p[0].key.as_str()), (1, "bus"));
    let p = problems(&format!("{BUS}[[device]]\nunit = 1\n"));
    assert_eq!((p[0].line, p[0].key.as_str()), (3, "name"));
    assert_eq!(p[0].message, "missing field `name`");
    let p = problems(&format!("{BUS}[["));
    assert_eq!((p[0].line, p[0].key.as_str()), (3, "[["));
}

#[test]
fn value_qos_defaults_to_qos_and_is_checked_like_it() {
    let config = parse(&format!("[mqtt]\nqos = 2\n{BUS}"), Path::new("t")).unwrap();
    assert_eq!((config.mqtt.qos, config.mqtt.value_qos), (2, 2));
    let config = parse(&format!("[mqtt]\nvalue_qos = 0\n{BUS}"), Path::new("t")).unwrap();
    assert_eq!((config.mqtt.qos, config.mqtt.value_qos), (1, 0));
    let p = problems(&format!("[mqtt]\nvalue_qos = 3\n{BUS}"));
    assert_eq!((p[0].line, p[0].key.as_str()), (2, "value_qos"));
    assert!(p[0].message.contains("0, 1 or 2"), "{}", p[0].message);
}

#[test]
fn hard_line_keys_are_checked_and_devices_inherit_the_bus_timing() {
    let text = format!(
        "{BUS}echo = true\noffline_poll = \"30s\"\ntimeout = \"200ms\"\nframe_gap = \"2ms\"\n\
         [[device]]\nname = \"a\"\nunit = 1\n\
         [[device]]\nname = \"slow\"\nunit = 2\ntimeout = \"800ms\"\n"
    );
    let config = parse(&text, Path::new("t")).unwrap();
    assert_eq!(config.bus.echo, Echo::On);
    assert_eq!(config.bus.offline_poll, Duration::from_secs(30));
    let ms = Duration::from_millis;
    assert_eq!(
        config.devices[0].timing,
        Timing {
            timeout: ms(200),
            frame_gap: ms(2)
        }
    );
    assert_eq!(
        config.devices[1].timing,
        Timing {
            timeout: ms(800),
            frame_gap: ms(2)
        }
    );
    assert_eq!(
        parse(&format!("{BUS}echo = \"auto\"\n"), Path::new("t"))
            .unwrap()
            .bus
            .echo,
        Echo::Auto
    );
    let p = problems(&format!(
        "{BUS}echo = \"sometimes\"\noffline_poll = \"soon\"\n\
         [[device]]\nname = \"a\"\nunit = 1\ntimeout = \"0s\"\nframe_gap = \"x\"\n"
    ));
    let located: Vec<(usize, &str)> = p.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        located,
        [
            (3, "echo"),
            (4, "offline_poll"),
            (8, "timeout"),
            (9, "frame_gap")
        ],
        "{p:?}"
    );
}

#[test]
fn timings_are_bounded_so_nothing_overflows_and_the_watchdog_is_petted() {
    let p = problems(&format!(
        "{BUS}timeout = \"10s\"\nretries = 9\nframe_gap = \"2s\"\noffline_poll = \"1000y\"\n"
    ));
    let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        ["timeout", "frame_gap", "retries", "offline_poll"],
        "{p:?}"
    );
    assert!(p.iter().all(|p| p.message.starts_with("at most")), "{p:?}");
}

/// One register on device "a" of unit 1; its keys start on line 8.
fn register(keys: &str) -> String {
    format!("{BUS}[[device]]\nname = \"a\"\nunit = 1\n[[device.register]]\nname = \"r\"\n{keys}")
}

fn located(text: &str) -> Vec<(usize, String)> {
    problems(text)
        .into_iter()
        .map(|p| (p.line, p.key))
        .collect()
}

#[test]
fn every_register_layout_of_a_manual_is_accepted() {
    let text = format!(
        "{BUS}[[device]]\nname = \"a\"\nunit = 1\nregister = [\n{}\n]\n",
        [
            r#"{ name = "serial", address = 0, type = "string", length = 8 }"#,
            r#"{ name = "model", address = 8, length = 4, byte_order = "little", writable = true }"#,
            r#"{ name = "energy", address = 20, type = "u64", word_order = "little" }"#,
            r#"{ name = "offset", address = 24, type = "i64", scale = 0.001 }"#,
            r#"{ name = "ratio", address = 28, type = "f64", byte_order = "little" }"#,
            r#"{ name = "swapped", address = 32, type = "i16", byte_order = "little" }"#,
            r#"{ name = "ready", address = 40, bit = 0 }"#,
            r#"{ name = "heating", address = 40, type = "bool", bit = 3, writable = true, write_function = 22 }"#,
            r#"{ name = "pump", address = 40, bit = 4, writable = true }"#,
            r#"{ name = "alarm", address = 40, table = "input", bit = 15 }"#,
            r#"{ name = "mode", address = 41, values = { 0 = "off", 1 = "heat", 2 = "cool" }, writable = true }"#,
            r#"{ name = "level", address = 42, type = "i32", values = { -1 = "low", 65536 = "high" } }"#,
        ]
        .join(",\n")
    );
    let config = parse(&text, Path::new("t")).unwrap();
    let r = &config.devices[0].registers;
    assert_eq!((r[0].codec.kind, r[0].width()), (ValueType::String, 8));
    assert_eq!(r[0].write_function, WriteFunction::MultipleRegisters);
    assert_eq!((r[1].codec.kind, r[1].width()), (ValueType::String, 4));
    assert_eq!(r[2].width(), 4);
    assert_eq!(r[6].codec.kind, ValueType::Bool);
    assert_eq!(r[6].codec.bit.map(Bit::get), Some(0));
    assert_eq!(r[7].write_function, WriteFunction::MaskWrite);
    // Without 22, a bit is read, changed and written back with function 6.
    assert_eq!(r[8].write_function, WriteFunction::SingleRegister);
    let texts: Vec<&str> = r[10]
        .codec
        .values
        .as_ref()
        .unwrap()
        .entries()
        .iter()
        .map(|(_, t)| t.as_str())
        .collect();
    assert_eq!(texts, ["off", "heat", "cool"]);
    assert_eq!(
        r[11].codec.values.as_ref().unwrap().entries()[1],
        (65536, "high".to_owned())
    );
}

#[test]
fn a_broken_variant_of_every_new_key_names_file_line_and_key() {
    // (keys of the register, from line 8 on; the line and key of the problem)
    let cases: &[(&str, usize, &str)] = &[
        ("address = 0\ntype = \"u128\"\n", 9, "type"),
        ("address = 0\nword_order = \"little\"\n", 9, "word_order"),
        (
            "address = 0\ntype = \"bool\"\nword_order = \"little\"\n",
            10,
            "word_order",
        ),
        (
            "address = 0\nlength = 2\nword_order = \"big\"\n",
            10,
            "word_order",
        ),
        ("address = 0\nword_order = \"middle\"\n", 9, "word_order"),
        ("address = 0\nbyte_order = \"middle\"\n", 9, "byte_order"),
        (
            "address = 0\ntable = \"coil\"\nbyte_order = \"little\"\n",
            10,
            "byte_order",
        ),
        ("address = 0\ntype = \"string\"\n", 9, "type"),
        ("address = 0\ntype = \"string\"\nlength = 0\n", 10, "length"),
        ("address = 0\nlength = 124\n", 9, "length"),
        ("address = 0\ntype = \"u32\"\nlength = 2\n", 10, "length"),
        ("address = 0\nlength = 2\nscale = 0.1\n", 10, "scale"),
        (
            "address = 0\nlength = 2\nwritable = true\nwrite_function = 6\n",
            11,
            "write_function",
        ),
        ("address = 0\nbit = 16\n", 9, "bit"),
        ("address = 0\nbit = -1\n", 9, "bit"),
        ("address = 0\nbit = 3\ntype = \"u16\"\n", 9, "bit"),
        ("address = 0\ntable = \"coil\"\nbit = 3\n", 10, "bit"),
        ("address = 0\nbit = \"3\"\n", 9, "bit"),
        ("address = 0\nbit = 3\nmin = 0\n", 10, "min"),
        (
            "address = 0\nwritable = true\nwrite_function = 22\n",
            10,
            "write_function",
        ),
        (
            "address = 0\ntable = \"coil\"\nwritable = true\nwrite_function = 22\n",
            11,
            "write_function",
        ),
        (
            "address = 0\nbit = 1\nwritable = true\nwrite_function = 5\n",
            11,
            "write_function",
        ),
        (
            "address = 0\ntype = \"f32\"\nvalues = { 0 = \"off\" }\n",
            10,
            "values",
        ),
        (
            "address = 0\ntype = \"bool\"\nvalues = { 0 = \"off\" }\n",
            10,
            "values",
        ),
        ("address = 0\nvalues = {}\n", 9, "values"),
        ("address = 0\nvalues = { x = \"off\" }\n", 9, "x"),
        ("address = 0\nvalues = { 70000 = \"off\" }\n", 9, "70000"),
        (
            "address = 0\ntype = \"i16\"\nvalues = { -40000 = \"off\" }\n",
            10,
            "-40000",
        ),
        (
            "address = 0\nvalues = { 0 = \"off\", 1 = \"off\" }\n",
            9,
            "1",
        ),
        (
            "address = 0\nvalues = { 0 = \"off\", 00 = \"zero\" }\n",
            9,
            "00",
        ),
        ("address = 0\nvalues = { 0 = \"\" }\n", 9, "0"),
        ("address = 0\nvalues = { 0 = \"1\" }\n", 9, "0"),
        ("address = 0\nvalues = { 0 = 1 }\n", 9, "values"),
        (
            "address = 0\nvalues = { 0 = \"off\" }\nscale = 10\n",
            10,
            "scale",
        ),
        (
            "address = 0\nvalues = { 0 = \"off\" }\nmax = 1\n",
            10,
            "max",
        ),
        ("address = 0\ntype = \"u64\"\nmax = inf\n", 10, "max"),
        (
            "address = 0\ntype = \"bool\"\ndeadband = 1\n",
            10,
            "deadband",
        ),
    ];
    for &(keys, line, key) in cases {
        let text = register(keys);
        let p = problems(&text);
        assert!(
            p.iter().any(|p| (p.line, p.key.as_str()) == (line, key)),
            "{keys:?}: expected line {line} `{key}`, got {p:?}"
        );
        let error = parse(&text, Path::new("/etc/rtu2mqtt/x.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!("/etc/rtu2mqtt/x.toml:{line}:")),
            "{error}"
        );
        assert!(error.contains(&format!("`{key}`")), "{error}");
    }
}

#[test]
fn values_written_as_a_table_of_their_own_name_the_entry() {
    let text = register("address = 0\n[device.register.values]\n0 = \"off\"\nheat = 1\n");
    assert_eq!(located(&text), [(11, "heat".to_owned())]);
}

#[test]
fn bits_of_one_register_may_share_it_but_nothing_else_may() {
    let head = format!("{BUS}[[device]]\nname = \"a\"\nunit = 1\nmax_read = 2\n");
    let entry = |name: &str, keys: &str| {
        format!("[[device.register]]\nname = \"{name}\"\naddress = 5\n{keys}")
    };
    // Different bits, writable or not: one register read once.
    let bits = format!(
        "{head}{}{}",
        entry("b0", "bit = 0\nwritable = true\n"),
        entry("b1", "bit = 1\nwritable = true\n")
    );
    let config = parse(&bits, Path::new("t")).unwrap();
    assert_eq!(crate::plan::plan(&config.devices).len(), 1);
    // The same bit twice, one writable: a real overlap.
    let same = format!("{bits}{}", entry("again", "bit = 1\n"));
    assert_eq!(located(&same), [(19, "address".to_owned())]);
    // A writable whole register under bits of it.
    let whole = format!("{bits}{}", entry("word", ""));
    assert_eq!(located(&whole), [(19, "address".to_owned())]);
    // Bits of one register polled apart would need two reads.
    let apart = format!("{bits}{}", entry("slow", "bit = 2\npoll = \"10s\"\n"));
    assert_eq!(located(&apart), [(20, "bit".to_owned())]);
    // A value wider than a read can carry.
    let wide = format!("{head}{}", entry("wide", "type = \"u64\"\n"));
    assert_eq!(located(&wide), [(10, "type".to_owned())]);
}

#[test]
fn sim_values_of_every_layout_are_checked_like_commands() {
    let text = format!(
        "{BUS}[[device]]\nname = \"a\"\nunit = 1\nregister = [\n\
         {{ name = \"label\", address = 0, length = 1 }},\n\
         {{ name = \"mode\", address = 1, values = {{ 0 = \"off\", 1 = \"heat\" }} }},\n\
         {{ name = \"flag\", address = 2, bit = 3 }},\n\
         {{ name = \"count\", address = 3 }},\n\
         ]\n[sim.a]\nlabel = \"abc\"\nmode = \"dry\"\nflag = \"on\"\ncount = \"five\"\n"
    );
    let keys: Vec<String> = problems(&text).into_iter().map(|p| p.key).collect();
    assert_eq!(keys, ["count", "flag", "label", "mode"]);
    let fine = text
        .replace("\"abc\"", "\"ab\"")
        .replace("\"dry\"", "7")
        .replace("\"on\"", "true")
        .replace("\"five\"", "5");
    let config = parse(&fine, Path::new("t")).unwrap();
    assert_eq!(config.sim[0].values.len(), 4);
}

#[test]
fn home_assistant_keys_are_read_and_off_by_default() {
    let config = parse(EXAMPLE, Path::new("t")).unwrap();
    assert_eq!(
        config.homeassistant,
        HomeAssistant {
            discovery: false,
            prefix: "homeassistant".to_owned()
        }
    );
    let text = format!(
        "[homeassistant]\ndiscovery = true\nprefix = \"ha/\"\n{BUS}\
         [[device]]\nname = \"a\"\nunit = 1\nmanufacturer = \"Acme\"\nmodel = \"M1\"\n\
         [[device.register]]\nname = \"t\"\naddress = 0\ndevice_class = \"temperature\"\n\
         state_class = \"measurement\"\nhomeassistant = {{ icon = \"mdi:led-on\", step = 0.5, \
         since = 1979-05-27, options = [\"a\", 1] }}\n"
    );
    let config = parse(&text, Path::new("t")).unwrap();
    assert!(config.homeassistant.discovery);
    assert_eq!(config.homeassistant.prefix, "ha");
    let device = &config.devices[0];
    assert_eq!(device.homeassistant.manufacturer.as_deref(), Some("Acme"));
    assert_eq!(device.homeassistant.model.as_deref(), Some("M1"));
    let options = &device.registers[0].homeassistant;
    assert_eq!(options.device_class.as_deref(), Some("temperature"));
    assert_eq!(options.state_class.as_deref(), Some("measurement"));
    assert_eq!(
        serde_json::Value::Object(options.extra.clone()),
        serde_json::json!({
            "icon": "mdi:led-on",
            "step": 0.5,
            "since": "1979-05-27",
            "options": ["a", 1],
        })
    );
}

#[test]
fn broken_home_assistant_keys_name_file_line_and_key() {
    let register =
        "[[device]]\nname = \"a\"\nunit = 1\n[[device.register]]\nname = \"t\"\naddress = 0\n";
    // Each broken key on line 3 (serde stops at the first wrong type).
    let broken = [
        format!("[homeassistant]\n\ndiscovery = \"yes\"\n{BUS}"),
        format!("[homeassistant]\n\nprefix = 1\n{BUS}"),
        format!("[homeassistant]\n\nprefix = \"a/+\"\n{BUS}"),
        format!("[homeassistant]\n\nprefix = \"\"\n{BUS}"),
        format!("[homeassistant]\n\nnode = \"x\"\n{BUS}"),
        format!("\n\n[homeassistant]\n{BUS}").replacen(
            "\n\n[homeassistant]",
            "\n\nhomeassistant = 1",
            1,
        ),
    ];
    let keys = [
        "discovery",
        "prefix",
        "prefix",
        "prefix",
        "node",
        "homeassistant",
    ];
    for (text, key) in broken.iter().zip(keys) {
        let p = problems(text);
        assert_eq!((p[0].line, p[0].key.as_str()), (3, key), "{text}\n{p:?}");
    }
    let at_register = [
        ("manufacturer = 1", 5, "manufacturer"),
        ("model = true", 5, "model"),
    ];
    for (line, at, key) in at_register {
        let text = format!("{BUS}[[device]]\nname = \"a\"\n{line}\nunit = 1\n");
        let p = problems(&text);
        assert_eq!((p[0].line, p[0].key.as_str()), (at, key), "{text}\n{p:?}");
    }
    let at_register = [
        ("device_class = 3", "device_class"),
        ("state_class = [\"total\"]", "state_class"),
        ("homeassistant = \"mdi:led\"", "homeassistant"),
        ("homeassistant = { min = nan }", "min"),
    ];
    for (line, key) in at_register {
        let text = format!("{BUS}{register}{line}\n");
        let p = problems(&text);
        assert_eq!((p[0].line, p[0].key.as_str()), (9, key), "{text}\n{p:?}");
        let message = parse(&text, Path::new("/etc/rtu2mqtt/x.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("/etc/rtu2mqtt/x.toml:9:") && message.contains(key),
            "{message}"
        );
    }
}

#[test]
fn names_home_assistant_would_take_for_one_are_refused_when_discovery_is_on() {
    let devices = "[[device]]\nname = \"a.b\"\nunit = 1\n\
                   [[device.register]]\nname = \"c\"\naddress = 0\n\
                   [[device]]\nname = \"a_b\"\nunit = 2\n\
                   [[device]]\nname = \"x\"\nunit = 3\n\
                   [[device.register]]\nname = \"y_z\"\naddress = 0\n\
                   [[device]]\nname = \"x_y\"\nunit = 4\n\
                   [[device.register]]\nname = \"z\"\naddress = 0\n\
                   [[device]]\nname = \"bridge_line\"\nunit = 6\n\
                   [[device.register]]\nname = \"utilisation\"\naddress = 0\n";
    assert!(parse(&format!("{BUS}{devices}"), Path::new("t")).is_ok());
    let p = problems(&format!(
        "[homeassistant]\ndiscovery = true\n{BUS}{devices}"
    ));
    let found: Vec<(usize, &str)> = p.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(found, [(12, "name"), (24, "name"), (30, "name")], "{p:#?}");
    assert!(p[0].message.contains("\"a_b\""), "{}", p[0].message);
    assert!(
        p[1].message.contains("register \"y_z\" of device \"x\""),
        "{}",
        p[1].message
    );
    assert!(
        p[2].message.contains("line utilisation"),
        "{}",
        p[2].message
    );
}

#[test]
fn legal_but_probably_wrong_things_are_warned_of_with_line_and_key() {
    let text = "[bus]\nport = \"/dev/ttyUSB1\"\nbaud = 9600\ntimeout = \"5ms\"\n\
                [[device]]\nname = \"a\"\nunit = 1\npoll = \"10ms\"\nregister = [\n\
                { name = \"setpoint\", address = 0, writable = true },\n\
                { name = \"limited\", address = 1, writable = true, min = 0, max = 10 },\n\
                { name = \"wide\", address = 2, type = \"u32\" },\n\
                { name = \"view\", address = 3 },\n\
                { name = \"ready\", address = 5, bit = 0 },\n\
                { name = \"alarm\", address = 5, bit = 15 },\n\
                { name = \"flag\", address = 6, type = \"bool\", writable = true },\n\
                { name = \"mode\", address = 7, values = { 0 = \"off\" }, writable = true },\n\
                { name = \"state\", address = 8, values = { 0 = \"idle\" }, unit_of_measurement = \"W\" },\n\
                ]\n";
    let (_, warnings) = parse_with_warnings(text, Path::new("t")).unwrap();
    let found: Vec<(usize, &str)> = warnings.iter().map(|w| (w.line, w.key.as_str())).collect();
    assert_eq!(
        found,
        [
            (2, "port"),
            (4, "timeout"),
            (10, "writable"),
            (13, "address"),
            (18, "values"),
            (8, "poll"),
        ],
        "{warnings:#?}"
    );
    assert!(warnings[0].message.contains("/dev/serial/by-id/"));
    assert!(warnings[3].message.contains("\"view\" overlaps \"wide\""));
    assert!(
        warnings[4]
            .message
            .contains("Home Assistant takes no unit_of_measurement")
    );
    assert!(
        warnings[5].message.contains("can never keep up"),
        "{}",
        warnings[5].message
    );
    // The shipped example warns of its port name alone.
    let (_, warnings) = parse_with_warnings(EXAMPLE, Path::new("t")).unwrap();
    let keys: Vec<&str> = warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(keys, ["port"]);
}

#[test]
fn two_things_on_one_topic_are_refused_with_line_and_key() {
    let text = format!(
        "{BUS}[[device]]\nname = \"climate\"\nunit = 1\n\
         poll_command_topic = \"rtu2mqtt/climate/poll\"\nregister = [\n\
         {{ name = \"a\", address = 0, writable = true, command_topic = \"x/cmd\" }},\n\
         {{ name = \"b\", address = 1, writable = true, command_topic = \"x/cmd\" }},\n\
         {{ name = \"c\", address = 2, topic = \"x/cmd\" }},\n\
         {{ name = \"d\", address = 3, topic = \"rtu2mqtt/bridge/state\" }},\n\
         {{ name = \"led\", address = 4, writable = true, topic = \"m/led\", command_topic = \"m/led\" }},\n\
         ]\n"
    );
    let found: Vec<(usize, String)> = located(&text);
    let keys: Vec<&str> = found.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["poll_command_topic", "command_topic", "topic", "topic"],
        "{found:?}"
    );
    let p = problems(&text);
    assert!(
        p[1].message
            .contains("x/cmd is already the command topic of climate/a"),
        "{p:?}"
    );
    assert!(p[3].message.contains("the gateway's own topic"), "{p:?}");
}
