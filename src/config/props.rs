//! Properties of config parsing (issue 10): arbitrary documents and mutations of the
//! shipped configs never panic, and every problem names a line, a column and its key.

use proptest::prelude::*;
use toml::Value;

use super::*;

const BENCH: &str = include_str!("../../configs/bench.toml");

const MQTT: &[&str] = &[
    "host",
    "port",
    "socket",
    "client_id",
    "username",
    "password_file",
    "keepalive",
    "base_topic",
    "qos",
    "retain",
    "stats_interval",
];
const BUS: &[&str] = &[
    "baud",
    "parity",
    "data_bits",
    "stop_bits",
    "timeout",
    "retries",
    "frame_gap",
    "offline_after",
];
const DEVICE: &[&str] = &[
    "poll",
    "max_gap",
    "max_read",
    "max_read_bits",
    "manufacturer",
    "model",
];
const HOMEASSISTANT: &[&str] = &["discovery", "prefix"];
const REGISTER: &[&str] = &[
    "table",
    "type",
    "word_order",
    "byte_order",
    "length",
    "bit",
    "values",
    "scale",
    "offset",
    "unit_of_measurement",
    "writable",
    "min",
    "max",
    "poll",
    "publish",
    "deadband",
    "republish",
    "write_function",
    "topic",
    "command_topic",
    "device_class",
    "state_class",
    "homeassistant",
];
/// Keys of no section's optional list: sections, required keys, names and junk.
const OTHER: &[&str] = &[
    "mqtt",
    "bus",
    "device",
    "register",
    "sim",
    "tls",
    "ca_file",
    "cert_file",
    "key_file",
    "name",
    "unit",
    "address",
    "climate",
    "temperature",
    "",
    " ",
    "x",
    "Name",
    "ünït",
    "a.b",
    "poll_rate",
    "#",
    "=",
];

const TEXT: &[&str] = &[
    "",
    "/dev/null",
    "holding",
    "input",
    "coil",
    "discrete",
    "u16",
    "i16",
    "u32",
    "i32",
    "u64",
    "i64",
    "f32",
    "f64",
    "bool",
    "string",
    "big",
    "little",
    "even",
    "none",
    "odd",
    "always",
    "change",
    "2s",
    "0ms",
    "300ms",
    "soon",
    "climate",
    "temperature",
    "a/b",
    "+",
    "#",
    "x y",
    "°C",
];

fn text() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::sample::select(TEXT).prop_map(|s| Value::String(s.to_owned())),
        1 => any::<String>().prop_map(Value::String),
    ]
}

fn integer() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => -2i64..300,
        1 => prop::sample::select(vec![247, 2000, 65535, 65536]),
        1 => any::<i64>(),
    ]
    .prop_map(Value::Integer)
}

fn float() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(0.1),
        Just(-40.5),
        Just(0.0),
        -1e4f64..1e4,
        any::<f64>()
    ]
    .prop_map(Value::Float)
}

/// Values of every TOML type: the edges of the keys' ranges, and everything else.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        text(),
        integer(),
        float(),
        any::<bool>().prop_map(Value::Boolean),
        Just(Value::Datetime("1979-05-27T07:32:00Z".parse().unwrap())),
    ]
}

/// A value of the type the key takes, mostly, so that documents get past serde to the
/// checks of values; any scalar otherwise.
fn plausible(key: &str) -> BoxedStrategy<Value> {
    let one_of = |names: &'static [&'static str]| {
        prop::sample::select(names)
            .prop_map(|s| Value::String(s.to_owned()))
            .boxed()
    };
    let typed = match key {
        "qos" | "baud" | "data_bits" | "stop_bits" | "retries" | "offline_after" | "unit"
        | "max_gap" | "max_read" | "max_read_bits" | "address" | "write_function" | "length"
        | "bit" => integer().boxed(),
        "scale" | "offset" | "min" | "max" | "deadband" => float().boxed(),
        "retain" | "writable" | "discovery" => any::<bool>().prop_map(Value::Boolean).boxed(),
        "homeassistant" => value().boxed(),
        "table" => one_of(&["holding", "input", "coil", "discrete"]),
        "type" => one_of(&[
            "u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64", "bool", "string",
        ]),
        "word_order" | "byte_order" => one_of(&["big", "little"]),
        // Raw numbers, some out of range or not numbers, to texts, some repeated or empty.
        "values" => prop::collection::btree_map(
            prop::sample::select(vec!["0", "1", "2", "-1", "00", "65536", "x"]),
            prop_oneof![
                4 => prop::sample::select(vec!["off", "heat", "", " a", "1"])
                    .prop_map(|s| Value::String(s.to_owned())),
                1 => scalar(),
            ],
            0..4,
        )
        .prop_map(|t| Value::Table(t.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
        .boxed(),
        "parity" => one_of(&["none", "even", "odd"]),
        "publish" => one_of(&["always", "change"]),
        _ => text().boxed(),
    };
    prop_oneof![16 => typed, 1 => scalar()].boxed()
}

/// The real keys of every section, and some junk.
fn key() -> impl Strategy<Value = String> {
    prop::sample::select([MQTT, BUS, DEVICE, REGISTER, HOMEASSISTANT, OTHER].concat())
        .prop_map(str::to_owned)
}

/// Any TOML value: scalars, arrays and tables, nested.
fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..5)
                .prop_map(|t| Value::Table(t.into_iter().collect())),
        ]
    })
}

/// A table of `required` keys (each left out now and then) and a few of `keys` or of any
/// key, with plausible values.
fn table(
    required: &'static [&'static str],
    keys: &'static [&'static str],
) -> impl Strategy<Value = Value> {
    let field = |key: BoxedStrategy<String>| key.prop_flat_map(|k| (plausible(&k), Just(k)));
    let some_key = prop_oneof![
        16 => prop::sample::select(keys).prop_map(str::to_owned),
        1 => key(),
    ];
    let extra = prop::collection::vec(field(some_key.boxed()), 0..4);
    let given = required
        .iter()
        .map(|k| prop::option::weighted(0.95, field(Just((*k).to_owned()).boxed())))
        .collect::<Vec<_>>();
    (given, extra).prop_map(|(given, extra)| {
        let fields = given.into_iter().flatten().chain(extra);
        Value::Table(fields.map(|(v, k)| (k, v)).collect())
    })
}

/// Documents shaped like configs: a bus, devices with registers, junk anywhere.
fn document() -> impl Strategy<Value = String> {
    let register = table(&["name", "address"], REGISTER);
    let device = (
        table(&["name", "unit"], DEVICE),
        prop::collection::vec(register, 0..4),
    )
        .prop_map(|(mut device, registers)| {
            if let Value::Table(t) = &mut device {
                t.insert("register".to_owned(), Value::Array(registers));
            }
            device
        });
    let sections = (
        table(&["port"], BUS),
        prop::collection::vec(device, 0..3),
        table(&[], MQTT),
        table(&[], HOMEASSISTANT),
        prop::option::weighted(0.2, (key(), value())),
    );
    sections.prop_filter_map("TOML cannot write it", |(bus, devices, mqtt, ha, junk)| {
        let mut doc: toml::Table = junk.into_iter().collect();
        doc.insert("bus".to_owned(), bus);
        doc.insert("mqtt".to_owned(), mqtt);
        doc.insert("homeassistant".to_owned(), ha);
        doc.insert("device".to_owned(), Value::Array(devices));
        toml::to_string(&Value::Table(doc)).ok()
    })
}

/// What an edit of a config file can do to a line.
#[derive(Debug, Clone)]
enum Edit {
    Delete,
    Duplicate,
    /// The value after `=` replaced by this text.
    Value(&'static str),
    /// The document cut here (a byte offset, moved back to a character boundary).
    Truncate,
}

fn edit() -> impl Strategy<Value = (Edit, prop::sample::Index)> {
    let replacement = prop::sample::select(vec![
        "1",
        "-1",
        "0",
        "1.5",
        "-0.0",
        "true",
        "\"x\"",
        "\"\"",
        "[]",
        "[1, \"a\"]",
        "{}",
        "{ a = 1 }",
        "1979-05-27",
        "nan",
        "-inf",
        "99999999999999999999",
        "\"1s\"",
        "\"coil\"",
        "",
        "=",
        "\"unterminated",
    ]);
    (
        prop_oneof![
            Just(Edit::Delete),
            Just(Edit::Duplicate),
            replacement.prop_map(Edit::Value),
            Just(Edit::Truncate),
        ],
        any::<prop::sample::Index>(),
    )
}

fn apply(text: &str, (edit, at): &(Edit, prop::sample::Index)) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let i = at
        .index(lines.len().max(1))
        .min(lines.len().saturating_sub(1));
    match edit {
        _ if lines.is_empty() => {}
        Edit::Delete => {
            lines.remove(i);
        }
        Edit::Duplicate => lines.insert(i, lines[i].clone()),
        Edit::Value(v) => {
            if let Some((key, _)) = lines[i].split_once('=') {
                lines[i] = format!("{key}= {v}");
            }
        }
        Edit::Truncate => {
            let mut end = at.index(text.len() + 1);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            return text[..end].to_owned();
        }
    }
    lines.join("\n") + "\n"
}

/// Every problem points at a line of the text that names its key.
fn check(text: &str) -> Result<(), TestCaseError> {
    let Err(error) = parse(text, Path::new("t.toml")) else {
        return Ok(());
    };
    let ConfigError::Invalid { problems, .. } = error else {
        panic!("parse reads no file: {error}");
    };
    prop_assert!(!problems.is_empty());
    let lines: Vec<&str> = text.split('\n').collect();
    for p in &problems {
        prop_assert!(p.line >= 1 && p.column >= 1, "{p:?}");
        let line = lines.get(p.line - 1);
        prop_assert!(line.is_some(), "{p:?} is past the end");
        prop_assert!(!p.key.is_empty(), "{p:?} names no key on {line:?}");
        // A missing key is reported for the line of the table that lacks it.
        let missing = p.message == format!("missing field `{}`", p.key);
        prop_assert!(
            missing || line.is_some_and(|l| l.contains(p.key.as_str())),
            "{p:?}: the key is not on line {line:?}"
        );
    }
    Ok(())
}

proptest! {
    #[test]
    fn prop_config_documents_never_panic_and_errors_name_line_and_key(text in document()) {
        check(&text)?;
    }

    #[test]
    fn prop_config_edits_of_the_shipped_configs_name_line_and_key(
        bench in any::<bool>(),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let original = if bench { BENCH } else { EXAMPLE };
        let text = edits.iter().fold(original.to_owned(), |text, e| apply(&text, e));
        check(&text)?;
    }
}
