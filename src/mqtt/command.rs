//! Turning a `/set` message into a write, or refusing it with a reason.

use std::time::Duration;

use crate::bus::{WriteData, WriteRequest};
use crate::config::{Config, WriteFunction};

/// Longest command payload read; anything longer is refused unread. The longest string
/// register (123 registers, 246 bytes) fits.
pub const MAX_PAYLOAD: usize = 256;

/// A write ready for the bus, and which register it serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub device: usize,
    pub register: usize,
    pub write: WriteRequest,
}

/// Checks a command against the register it addresses and encodes it.
pub fn parse(
    config: &Config,
    target: Option<(usize, usize)>,
    topic: &str,
    payload: &[u8],
) -> Result<Command, String> {
    let (device, register) =
        target.ok_or_else(|| format!("no register has the command topic {topic}"))?;
    let text = text(payload)?;
    let d = &config.devices[device];
    let r = &d.registers[register];
    if !r.writable {
        return Err(format!("{}/{} is read-only", d.name, r.name));
    }
    let value = r.codec.parse(text).map_err(|e| e.to_string())?;
    let data = if r.codec.bit.is_some() {
        // Only its bit changes: the bus reads the register and writes it back in one turn,
        // or the device does it (function 22).
        let mask = r.codec.mask_write(&value).map_err(|e| e.to_string())?;
        match r.write_function {
            WriteFunction::MaskWrite => WriteData::Mask(mask),
            function => WriteData::MaskByRewrite {
                mask,
                multiple: function == WriteFunction::MultipleRegisters,
            },
        }
    } else {
        let words = r.codec.encode(&value).map_err(|e| e.to_string())?;
        match (r.write_function, words.as_slice()) {
            (WriteFunction::SingleCoil, [word, ..]) => WriteData::Coil(*word != 0),
            (WriteFunction::SingleRegister, [word]) => WriteData::Register(*word),
            _ => WriteData::Registers(words),
        }
    };
    Ok(Command {
        device,
        register,
        write: WriteRequest {
            unit: d.unit,
            address: r.address,
            data,
        },
    })
}

/// A command payload as text, refused when it is too long or not UTF-8.
fn text(payload: &[u8]) -> Result<&str, String> {
    if payload.len() > MAX_PAYLOAD {
        return Err(format!(
            "payload of {} bytes refused: commands are at most {MAX_PAYLOAD} bytes",
            payload.len()
        ));
    }
    std::str::from_utf8(payload).map_err(|_| "payload is not UTF-8 text".to_owned())
}

/// Shortest poll interval a command may set: below it a device would take the whole line.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Longest poll interval a command may set.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// A `poll/set` payload: seconds (`5`, `0.5`) or a humantime (`500ms`); `None` for `0` or
/// empty, which restore the configured interval.
pub fn parse_interval(payload: &[u8]) -> Result<Option<Duration>, String> {
    let text = text(payload)?.trim();
    let not_an_interval = || {
        format!(
            "{text:?} is not a poll interval: send seconds (\"5\", \"0.5\") or a duration (\"500ms\"), 0 for the configured one"
        )
    };
    let interval = if text.is_empty() {
        Duration::ZERO
    } else if let Ok(seconds) = text.parse::<f64>() {
        if !(seconds.is_finite() && seconds >= 0.0) {
            return Err(not_an_interval());
        }
        Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
    } else {
        humantime::parse_duration(text).map_err(|_| not_an_interval())?
    };
    if interval.is_zero() {
        return Ok(None);
    }
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
        return Err(format!(
            "a poll interval of {text} is out of bounds: {} to {}",
            humantime::format_duration(MIN_INTERVAL),
            humantime::format_duration(MAX_INTERVAL)
        ));
    }
    Ok(Some(interval))
}

/// The payload as it may be quoted back in an error: text, cut to the command bound.
pub fn quote(payload: &[u8]) -> String {
    let shown = &payload[..payload.len().min(MAX_PAYLOAD)];
    let mut text = String::from_utf8_lossy(shown).into_owned();
    if payload.len() > MAX_PAYLOAD {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Config {
        crate::config::parse(crate::config::EXAMPLE, std::path::Path::new("t")).unwrap()
    }

    #[test]
    fn pwm_command_becomes_function_6() {
        let config = example();
        let command = parse(&config, Some((0, 2)), "t", b"512").unwrap();
        assert_eq!(command.write.data, WriteData::Register(512));
        assert_eq!(command.write.address, 2);
        assert_eq!(command.write.unit.get(), 10);
    }

    #[test]
    fn bad_commands_are_refused_with_reasons() {
        let config = example();
        let refused = |target, payload: &[u8]| parse(&config, target, "t", payload).unwrap_err();
        assert!(refused(Some((0, 2)), b"abc").contains("not a number"));
        assert!(refused(Some((0, 2)), b"").contains("not a number"));
        assert!(refused(Some((0, 2)), b"NaN").contains("not a number"));
        assert!(refused(Some((0, 2)), b"1e9").contains("above the maximum"));
        assert!(refused(Some((0, 2)), b"-5").contains("below the minimum"));
        assert!(refused(Some((0, 2)), b"1024").contains("above the maximum"));
        assert!(refused(Some((0, 2)), &vec![b'1'; 100_000]).contains("100000 bytes"));
        assert!(refused(Some((0, 0)), b"20").contains("read-only"));
        assert!(refused(None, b"20").contains("no register"));
        assert!(refused(Some((0, 2)), &[0xFF, 0xFE]).contains("UTF-8"));
    }

    #[test]
    fn poll_intervals_in_seconds_or_durations_within_bounds() {
        let ms = |ms| Ok(Some(Duration::from_millis(ms)));
        assert_eq!(parse_interval(b"5"), ms(5000));
        assert_eq!(parse_interval(b" 0.5 "), ms(500));
        assert_eq!(parse_interval(b"500ms"), ms(500));
        assert_eq!(parse_interval(b"2m"), ms(120_000));
        assert_eq!(parse_interval(b"0.01"), ms(10));
        assert_eq!(parse_interval(b"86400"), ms(86_400_000));
        for restore in [&b"0"[..], b"", b" ", b"0s", b"-0"] {
            assert_eq!(parse_interval(restore), Ok(None), "{restore:?}");
        }
        for bad in [
            &b"abc"[..],
            b"-1",
            b"1e12",
            b"0.001",
            b"inf",
            b"NaN",
            b"5 apples",
            b"86401",
        ] {
            assert!(parse_interval(bad).is_err(), "{bad:?} accepted");
        }
        assert!(
            parse_interval(b"abc")
                .unwrap_err()
                .contains("not a poll interval")
        );
        assert!(
            parse_interval(b"0.001")
                .unwrap_err()
                .contains("out of bounds")
        );
    }

    #[test]
    fn strings_enumerations_and_bits_become_writes_or_reasons() {
        let config = crate::config::parse(
            r#"
bus = { port = "/dev/null" }
[[device]]
name = "d"
unit = 7
register = [
  { name = "label", address = 0, length = 2, writable = true },
  { name = "mode", address = 2, values = { 0 = "off", 1 = "heat", 2 = "cool" }, writable = true },
  { name = "heating", address = 3, bit = 3, writable = true, write_function = 22 },
]
"#,
            std::path::Path::new("t"),
        )
        .unwrap();
        let command = |register, payload: &[u8]| parse(&config, Some((0, register)), "t", payload);
        // A string is written with function 16 whatever its length, padded with NULs.
        assert_eq!(
            command(0, b"AB ").unwrap().write.data,
            WriteData::Registers(vec![0x4142, 0x2000])
        );
        let refused = command(0, b"ABCDE").unwrap_err();
        assert!(refused.contains("5 bytes of text do not fit"), "{refused}");
        // An enumeration by text or by number; anything else refused with what it takes.
        for payload in [&b"cool"[..], b"2"] {
            assert_eq!(
                command(1, payload).unwrap().write.data,
                WriteData::Register(2)
            );
        }
        let refused = command(1, b"dry").unwrap_err();
        assert_eq!(refused, "\"dry\" is not one of off (0), heat (1), cool (2)");
        assert!(command(1, b"3").is_err());
        // A bit is never written over its whole register: function 22 changes it alone.
        assert_eq!(
            command(2, b"on").unwrap().write.data,
            WriteData::Mask(crate::codec::MaskWrite {
                and_mask: !(1 << 3),
                or_mask: 1 << 3
            })
        );
    }

    #[test]
    fn quote_cuts_long_payloads() {
        assert_eq!(quote(b"abc"), "abc");
        let long = quote(&[b'x'; 1000]);
        assert_eq!(long.chars().count(), MAX_PAYLOAD + 1);
    }
}

/// Properties of command payloads from the network (issue 10).
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;
    use crate::codec::props::{limit_slack, resolution};
    use crate::codec::{Value, ValueType};
    use crate::config::Table;

    /// Every kind of writable register, scaled, offset and limited.
    const REGISTERS: &str = r#"
bus = { port = "/dev/null" }
[[device]]
name = "d"
unit = 7
register = [
  { name = "energy", address = 0, type = "u32", scale = 0.01, offset = -100, min = -50, max = 4e7, writable = true },
  { name = "count", address = 2, type = "i32", word_order = "little", scale = 10, offset = 5, writable = true },
  { name = "setpoint", address = 4, type = "f32", scale = 0.5, offset = 1, min = -1000, max = 1000, writable = true },
  { name = "raw_float", address = 6, type = "f32", word_order = "little", writable = true },
  { name = "flag", address = 8, type = "bool", writable = true },
  { name = "tens", address = 9, type = "i16", scale = 10, min = -25, max = 1025, writable = true },
  { name = "tenths", address = 10, scale = 0.1, write_function = 16, writable = true },
  { name = "signed", address = 11, type = "i16", scale = -0.25, offset = 3, writable = true },
  { name = "relay", address = 0, table = "coil", writable = true },
  { name = "input", address = 0, table = "input" },
  { name = "counter", address = 12, type = "u64", writable = true },
  { name = "balance", address = 16, type = "i64", word_order = "little", min = -1e18, writable = true },
  { name = "precise", address = 20, type = "f64", word_order = "little", byte_order = "little", scale = 0.001, writable = true },
  { name = "swapped", address = 24, byte_order = "little", writable = true },
  { name = "label", address = 25, type = "string", length = 3, writable = true },
  { name = "label_swapped", address = 28, length = 2, byte_order = "little", writable = true },
  { name = "mode", address = 30, values = { 0 = "off", 1 = "heat", 2 = "cool" }, writable = true },
  { name = "level", address = 31, type = "i32", word_order = "little", values = { -1 = "low", 65536 = "high" }, writable = true },
  { name = "flag_bit", address = 33, bit = 4, writable = true, write_function = 22 },
]
"#;

    fn configs() -> [Config; 2] {
        let path = std::path::Path::new("t");
        [crate::config::EXAMPLE, REGISTERS].map(|text| crate::config::parse(text, path).unwrap())
    }

    /// Text from pieces users, scripts and attackers send.
    fn text_payload() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop::sample::select(vec![
            "",
            " ",
            "\t",
            "\n",
            "\u{a0}",
            "\u{3000}",
            "+",
            "-",
            ".",
            "e",
            "E",
            "e-",
            "e+",
            "0",
            "1",
            "5",
            "9",
            "12",
            "1023",
            "1024",
            "65535",
            "65536",
            "4294967296",
            "-0",
            "inf",
            "-inf",
            "infinity",
            "NaN",
            "nan",
            "1e-400",
            "1e400",
            "1e38",
            "3.5e38",
            "0x10",
            "0b1",
            "1_000",
            "١٢",
            "１２",
            "²",
            "on",
            "OFF",
            "heat",
            "cool",
            "low",
            "high",
            "SN-42",
            "abcdefg",
            "°C",
            "9007199254740993",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "true",
            "False",
            "yes",
            ",",
            "\0",
            "999999999999999999999999999999",
        ]);
        prop::collection::vec(piece, 1..6).prop_map(|pieces| pieces.concat().into_bytes())
    }

    /// Any bytes, numbers printed every way, and pieces of text.
    fn payload() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..80),
            any::<f64>().prop_map(|f| f.to_string().into_bytes()),
            any::<f64>().prop_map(|f| format!("{f:e}").into_bytes()),
            (-2e9f64..2e9).prop_map(|f| f.to_string().into_bytes()),
            (-100_000i64..100_000).prop_map(|i| i.to_string().into_bytes()),
            text_payload(),
        ]
    }

    fn targets(config: &Config) -> Vec<Option<(usize, usize)>> {
        let registers = config
            .devices
            .iter()
            .enumerate()
            .flat_map(|(d, device)| (0..device.registers.len()).map(move |r| Some((d, r))));
        registers.chain([None]).collect()
    }

    proptest! {
        #[test]
        fn prop_command_payloads_never_panic_and_stay_in_range(payload in payload()) {
            for config in configs() {
                for target in targets(&config) {
                    let Ok(command) = parse(&config, target, "t", &payload) else {
                        continue;
                    };
                    let (d, r) = target.expect("an accepted command has a register");
                    let device = &config.devices[d];
                    let register = &device.registers[r];
                    prop_assert!(register.writable);
                    prop_assert_eq!(command.write.unit, device.unit);
                    prop_assert_eq!(command.write.address, register.address);
                    let codec = &register.codec;
                    let sent = std::str::from_utf8(&payload).unwrap();
                    let text = sent.trim();
                    let words = match (&command.write.data, register.table) {
                        (WriteData::Coil(on), Table::Coil) => vec![u16::from(*on)],
                        (WriteData::Register(word), Table::Holding) => vec![*word],
                        (WriteData::Registers(words), Table::Holding) => words.clone(),
                        (
                            WriteData::Mask(mask) | WriteData::MaskByRewrite { mask, .. },
                            Table::Holding,
                        ) => {
                            // A bit changes its bit alone, whatever the word holds (issue
                            // 15: a status word of 240 became 1).
                            prop_assert!(codec.bit.is_some());
                            let expected = ["on", "true", "1"].contains(&text.to_ascii_lowercase().as_str());
                            for word in [0, 0xFFFF, 0xA001, 240] {
                                let new = mask.apply(word);
                                prop_assert!((new ^ word).count_ones() <= 1, "{word:#x} -> {new:#x}");
                                prop_assert_eq!(codec.decode(&[new]), Ok(Value::Bool(expected)));
                            }
                            continue;
                        }
                        (data, table) => panic!("{data:?} written to the {table:?} table"),
                    };
                    prop_assert_eq!(words.len(), usize::from(codec.width()));
                    prop_assert!(codec.bit.is_none());
                    match codec.decode(&words) {
                        Ok(Value::Bool(on)) => {
                            let word = text.to_ascii_lowercase();
                            let expected = ["on", "true", "1"].contains(&word.as_str());
                            prop_assert_eq!(on, expected, "{:?} written as {}", text, on);
                        }
                        Ok(Value::Text(written)) if codec.values.is_some() => {
                            // By its text, or by its raw number.
                            let raw = codec.values.as_ref().and_then(|values| {
                                values.entries().iter().find(|(_, t)| *t == written).map(|(r, _)| *r)
                            });
                            let asked = text.parse::<f64>().ok();
                            prop_assert!(
                                written == text || asked == raw.map(|r| r as f64),
                                "{text:?} written as {written:?}"
                            );
                        }
                        Ok(Value::Text(written)) => {
                            prop_assert_eq!(written.as_str(), sent.trim_end_matches(['\0', ' ']));
                        }
                        Ok(Value::Integer(written)) if text.parse::<i128>().is_ok() => {
                            prop_assert_eq!(Ok(written), text.parse::<i128>());
                            prop_assert!(codec.min.is_none_or(|min| written as f64 >= min));
                        }
                        Ok(written) => {
                            // The payload as a number, and what the register holds of it.
                            let written = written.as_f64().unwrap();
                            let asked: f64 = text.parse().unwrap();
                            prop_assert!(written.is_finite());
                            prop_assert!(
                                (written - asked).abs() <= resolution(codec, asked),
                                "{text:?} written as {words:?}, which reads {written}"
                            );
                            let slack = limit_slack(codec, asked);
                            let min = codec.min.unwrap_or(f64::NEG_INFINITY);
                            let max = codec.max.unwrap_or(f64::INFINITY);
                            prop_assert!(
                                written >= min - slack && written <= max + slack,
                                "{text:?} written as {written}, outside {min}..={max}"
                            );
                            if codec.kind == ValueType::F32 {
                                let raw = (written - codec.offset) / codec.scale;
                                prop_assert!(raw.abs() <= f64::from(f32::MAX));
                            }
                        }
                        Err(e) => panic!("{words:?} do not decode: {e}"),
                    }
                }
            }
        }
    }
}
