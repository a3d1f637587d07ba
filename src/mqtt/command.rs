//! Turning a `/set` message into a write, or refusing it with a reason.

use crate::bus::{WriteData, WriteRequest};
use crate::config::{Config, WriteFunction};

/// Longest command payload read; anything longer is refused unread.
pub const MAX_PAYLOAD: usize = 64;

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
    if payload.len() > MAX_PAYLOAD {
        return Err(format!(
            "payload of {} bytes refused: commands are at most {MAX_PAYLOAD} bytes",
            payload.len()
        ));
    }
    let d = &config.devices[device];
    let r = &d.registers[register];
    if !r.writable {
        return Err(format!("{}/{} is read-only", d.name, r.name));
    }
    let text = std::str::from_utf8(payload).map_err(|_| "payload is not UTF-8 text".to_owned())?;
    let value = r.codec.parse(text).map_err(|e| e.to_string())?;
    let words = r.codec.encode(value).map_err(|e| e.to_string())?;
    let data = match (r.write_function, words.as_slice()) {
        (WriteFunction::SingleCoil, [word, ..]) => WriteData::Coil(*word != 0),
        (WriteFunction::SingleRegister, [word]) => WriteData::Register(*word),
        _ => WriteData::Registers(words),
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
    fn quote_cuts_long_payloads() {
        assert_eq!(quote(b"abc"), "abc");
        let long = quote(&[b'x'; 1000]);
        assert_eq!(long.chars().count(), MAX_PAYLOAD + 1);
    }
}
