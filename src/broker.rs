//! An embedded MQTT broker (rumqttd) for `demo`, and for tests on machines without
//! mosquitto. It serves MQTT 3.1.1 on a loopback port until the process ends.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("embedded broker config: {0}")]
    Config(#[from] toml::de::Error),
    #[error("cannot start the embedded broker: {0}")]
    Start(#[from] std::io::Error),
    #[error("the embedded broker did not come up on {0}")]
    NotListening(SocketAddr),
}

const CONFIG: &str = r#"
id = 0
[router]
max_connections = 64
max_outgoing_packet_count = 200
max_segment_size = 1048576
max_segment_count = 4
[v4.1]
name = "v4-1"
listen = "127.0.0.1:PORT"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 1048576
max_inflight_count = 100
dynamic_filters = true
"#;

/// `preferred` if it is free on 127.0.0.1, else any free port.
pub fn free_port(preferred: u16) -> std::io::Result<u16> {
    match TcpListener::bind(("127.0.0.1", preferred)) {
        Ok(listener) => Ok(listener.local_addr()?.port()),
        Err(_) => Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port()),
    }
}

/// Starts the broker on 127.0.0.1:`port` and returns once it accepts connections.
pub fn start(port: u16) -> Result<(), BrokerError> {
    let config: rumqttd::Config = toml::from_str(&CONFIG.replace("PORT", &port.to_string()))?;
    let mut broker = rumqttd::Broker::new(config);
    std::thread::Builder::new()
        .name("mqtt-broker".to_owned())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })?;
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            return Err(BrokerError::NotListening(address));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
