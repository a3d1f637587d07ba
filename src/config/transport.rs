//! `[bus] port`: which transport carries the frames (SPEC "Transports").

use std::fmt;

/// Where the bus is and how frames travel there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A serial port: RTU frames on the line.
    Serial(String),
    /// Modbus TCP (MBAP header); the device's unit is the unit identifier.
    Tcp { host: String, port: u16 },
    /// RTU frames over a plain TCP socket to a serial device server; the serial keys
    /// describe the line behind it.
    RtuOverTcp { host: String, port: u16 },
}

impl Transport {
    /// Reads a `port` value: a path, `tcp://HOST:PORT` or `rtu+tcp://HOST:PORT`.
    pub fn parse(port: &str) -> Result<Transport, String> {
        let Some((scheme, rest)) = port.split_once("://") else {
            if port.is_empty() {
                return Err(
                    "no port: give a serial device such as /dev/ttyUSB0, or tcp://HOST:PORT"
                        .to_owned(),
                );
            }
            return Ok(Transport::Serial(port.to_owned()));
        };
        let (host, port) = host_and_port(rest)
            .map_err(|why| format!("{port:?}: {why} (write {scheme}://HOST:PORT)"))?;
        match scheme {
            "tcp" => Ok(Transport::Tcp { host, port }),
            "rtu+tcp" => Ok(Transport::RtuOverTcp { host, port }),
            other => Err(format!(
                "{other}:// is not a transport: use a serial device path, tcp://HOST:PORT (Modbus TCP) or rtu+tcp://HOST:PORT (RTU over TCP)"
            )),
        }
    }

    /// Whether frames cross a shared serial line whose timing the plan accounts for.
    pub fn has_line(&self) -> bool {
        !matches!(self, Transport::Tcp { .. })
    }
}

/// `HOST:PORT`, `[v6]:PORT`.
fn host_and_port(text: &str) -> Result<(String, u16), String> {
    let (host, port) = match text.strip_prefix('[') {
        Some(v6) => {
            let (host, rest) = v6.split_once(']').ok_or("an IPv6 address lacks its ']'")?;
            let port = rest.strip_prefix(':').ok_or("no port after the address")?;
            (host, port)
        }
        None => text.rsplit_once(':').ok_or("no port")?,
    };
    if host.is_empty() || host.contains(['/', ' ']) {
        return Err(format!("{host:?} is not a host name or address"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{port:?} is not a TCP port (1..=65535)")),
        Ok(port) => Ok((host.to_owned(), port)),
    }
}

impl Transport {
    /// What it is, for people: `Modbus TCP to 10.0.0.5:502`.
    pub fn describe(&self) -> String {
        match self {
            Transport::Serial(path) => format!("serial RTU on {path}"),
            Transport::Tcp { host, port } => format!("Modbus TCP to {host}:{port}"),
            Transport::RtuOverTcp { host, port } => format!("RTU over TCP to {host}:{port}"),
        }
    }
}

/// The `port` value it was read from.
impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = |host: &str| {
            if host.contains(':') {
                format!("[{host}]")
            } else {
                host.to_owned()
            }
        };
        match self {
            Transport::Serial(path) => f.write_str(path),
            Transport::Tcp { host: h, port } => write!(f, "tcp://{}:{port}", host(h)),
            Transport::RtuOverTcp { host: h, port } => write!(f, "rtu+tcp://{}:{port}", host(h)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_forms() {
        assert_eq!(
            Transport::parse("/dev/ttyUSB0"),
            Ok(Transport::Serial("/dev/ttyUSB0".into()))
        );
        assert_eq!(
            Transport::parse("tcp://10.0.0.5:502"),
            Ok(Transport::Tcp {
                host: "10.0.0.5".into(),
                port: 502
            })
        );
        assert_eq!(
            Transport::parse("rtu+tcp://gateway.local:4196"),
            Ok(Transport::RtuOverTcp {
                host: "gateway.local".into(),
                port: 4196
            })
        );
        assert_eq!(
            Transport::parse("tcp://[::1]:1502"),
            Ok(Transport::Tcp {
                host: "::1".into(),
                port: 1502
            })
        );
        for port in ["/dev/ttyUSB0", "tcp://10.0.0.5:502", "rtu+tcp://[::1]:4196"] {
            assert_eq!(Transport::parse(port).unwrap().to_string(), port);
        }
        for bad in [
            "tcp://",
            "tcp://host",
            "tcp://host:99999",
            "tcp://host:0",
            "udp://x:1",
            "tcp://:502",
            "",
        ] {
            assert!(Transport::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Transport::parse("udp://x:1")
                .unwrap_err()
                .contains("udp:// is not a transport")
        );
    }
}
