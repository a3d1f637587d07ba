//! The broker connection: options from the config (credentials, TLS, last will) and the
//! task that keeps rumqttc's event loop polled, reconnecting with back-off.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::{
    Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, Publish, QoS, TlsConfiguration,
    Transport,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::{Mqtt, Tls};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot read the MQTT password file {}: {source}", path.display())]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS: cannot use {}: {reason}", path.display())]
    TlsFile { path: PathBuf, reason: String },
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// Largest packet accepted from the broker. Commands are refused past 64 bytes by the
/// bridge; this only keeps an oversized message from costing the connection.
const MAX_INCOMING_PACKET: usize = 1024 * 1024;

pub fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Connection options; `will_topic` gets a retained `offline` if the connection dies.
pub fn options(mqtt: &Mqtt, will_topic: &str) -> Result<MqttOptions, SetupError> {
    let mut options = match &mqtt.socket {
        Some(path) => {
            let mut options =
                MqttOptions::new(&mqtt.client_id, path.to_string_lossy().into_owned(), 0);
            options.set_transport(Transport::Unix);
            options
        }
        None => MqttOptions::new(&mqtt.client_id, &mqtt.host, mqtt.port),
    };
    options
        .set_keep_alive(mqtt.keepalive.max(Duration::from_secs(1)))
        .set_max_packet_size(MAX_INCOMING_PACKET, MAX_INCOMING_PACKET)
        .set_last_will(LastWill::new(will_topic, "offline", qos(mqtt.qos), true));
    if let Some(user) = &mqtt.username {
        let password = match &mqtt.password_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|source| SetupError::PasswordFile {
                    path: path.clone(),
                    source,
                })?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            None => String::new(),
        };
        options.set_credentials(user, password);
    }
    if let Some(tls) = &mqtt.tls {
        options.set_transport(Transport::tls_with_config(tls_config(tls)?));
    }
    Ok(options)
}

fn tls_config(tls: &Tls) -> Result<TlsConfiguration, SetupError> {
    let file_error = |path: &Path, e: &dyn std::fmt::Display| SetupError::TlsFile {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| file_error(path, &e))? {
                roots.add(cert.map_err(|e| file_error(path, &e))?)?;
            }
        }
        None => {
            let (added, _ignored) =
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            tracing::debug!(added, "system CA certificates loaded");
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match &tls.client_auth {
        Some((cert_path, key_path)) => {
            let certs = CertificateDer::pem_file_iter(cert_path)
                .map_err(|e| file_error(cert_path, &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| file_error(cert_path, &e))?;
            let key =
                PrivateKeyDer::from_pem_file(key_path).map_err(|e| file_error(key_path, &e))?;
            builder.with_client_auth_cert(certs, key)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(TlsConfiguration::Rustls(Arc::new(config)))
}

/// What the connection reports to the bridge.
#[derive(Debug)]
pub enum LinkEvent {
    Connected,
    Disconnected,
    /// A message on a subscribed topic; `retained` when it was stored by the broker before
    /// we subscribed rather than sent since.
    Message {
        topic: String,
        payload: Bytes,
        retained: bool,
    },
}

/// QoS 0 value publishes waiting to go out, those of one read in one write.
///
/// rumqttc writes and flushes every request on its own: one system call per value, and on
/// a broker on the same machine the broker's side of TCP is processed in that call too
/// (a quarter of the daemon's CPU before this went in; BENCHMARKS.md). The bridge puts
/// value publishes here and [`drive`] writes what waits, with one flush, on the event
/// loop's connection, cutting short its wait for the next event. rumqttc's poll is
/// waiting on the socket, its requests or its keep-alive then; it is cut in the middle of
/// writing only when the socket takes nothing (a broker that stopped reading), and then
/// loses nothing: what it had buffered stays in its buffer, and an event it had not
/// returned stays queued for the next poll. While not connected nothing is cut short (the
/// poll is connecting), and what waits when the connection drops is dropped: the bridge
/// publishes every value again on connect, and an older value must not follow it.
#[derive(Debug, Clone, Default)]
pub struct Outbox(Arc<Waiting>);

#[derive(Debug, Default)]
struct Waiting {
    publishes: Mutex<Vec<Publish>>,
    ready: Notify,
}

impl Outbox {
    pub fn push(&self, topic: &str, payload: String, retain: bool) {
        let mut publish = Publish::new(topic, QoS::AtMostOnce, payload);
        publish.retain = retain;
        self.lock().push(publish);
        self.0.ready.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Publish>> {
        // A Vec of messages cannot be left inconsistent by a panic.
        self.0
            .publishes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn clear(&self) {
        self.lock().clear();
    }

    /// Until something was pushed since the last time.
    async fn ready(&self) {
        self.0.ready.notified().await;
    }

    /// Writes what waits on the event loop's connection, with one flush.
    async fn write(&self, eventloop: &mut EventLoop) {
        let waiting = std::mem::take(&mut *self.lock());
        if waiting.is_empty() {
            return;
        }
        let limit = Duration::from_secs(eventloop.network_options.connection_timeout());
        let Some(network) = eventloop.network.as_mut() else {
            return;
        };
        let written = async {
            for publish in waiting {
                network.write(Packet::Publish(publish)).await?;
            }
            network.flush().await
        };
        // A broken connection shows in the next poll, which reconnects.
        match tokio::time::timeout(limit, written).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::debug!(%error, "values not written"),
            Err(_) => tracing::debug!("values not written: the broker does not read"),
        }
    }
}

const RECONNECT_FIRST: Duration = Duration::from_millis(250);
/// SPEC "Adapter and broker coming back": at most 5 s between tries.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// A connection lost this soon after the broker accepted it counts as thrown off.
const SHORT_LIVED: Duration = Duration::from_secs(10);
/// Thrown off this often within [`TAKEOVER_WINDOW`]: another client has our id.
const TAKEOVERS: usize = 3;
const TAKEOVER_WINDOW: Duration = Duration::from_secs(60);

/// Connections the broker closed soon after accepting them. A broker closes the older of
/// two connections with one client id; two gateways with one id then take turns throwing
/// each other off, each a few seconds after it connected: said once, with what to do,
/// instead of a lost and a back line every few seconds.
#[derive(Debug, Default)]
struct Takeovers {
    connected_at: Option<Instant>,
    short_losses: Vec<Instant>,
    said: bool,
}

impl Takeovers {
    fn connected(&mut self) {
        self.connected_at = Some(Instant::now());
    }

    /// A connection was lost; true while it looks like another client has our id.
    fn lost(&mut self, client_id: &str) -> bool {
        let now = Instant::now();
        let Some(since) = self.connected_at.take() else {
            return self.said;
        };
        if now - since >= TAKEOVER_WINDOW {
            // A connection that lasted a while: whatever it was, it is over.
            self.short_losses.clear();
            self.said = false;
        }
        if now - since < SHORT_LIVED {
            self.short_losses.push(now);
        }
        self.short_losses.retain(|t| now - *t < TAKEOVER_WINDOW);
        if self.short_losses.len() >= TAKEOVERS && !self.said {
            self.said = true;
            tracing::warn!(
                client_id,
                times = self.short_losses.len(),
                "the broker keeps closing the connection soon after accepting it: another client is probably using the same client id; give each gateway its own [mqtt] client_id"
            );
        }
        self.said
    }
}

/// A time without the broker, kept for the one line that says it is back.
struct Outage {
    since: Instant,
    failed_attempts: u32,
}

/// Polls the event loop until the broker has closed the connection after a clean
/// disconnect, or `stop` fires. rumqttc reconnects on the next poll after an error; the
/// back-off between polls is ours.
///
/// After the disconnect has gone out the loop goes on reading until the broker closes:
/// a socket closed with its acknowledgements unread is reset, and the broker then drops
/// whatever it had not read yet, such as the last `offline` messages. The caller keeps a
/// client open meanwhile, since rumqttc drops the connection when its requests end.
///
/// An outage is logged twice at the default level, when it starts and when it ends
/// (SPEC "Quiet when things go wrong"); each failed attempt only at debug level.
pub async fn drive(
    mut eventloop: EventLoop,
    link: mpsc::Sender<LinkEvent>,
    outbox: Outbox,
    stop: CancellationToken,
) {
    let mut backoff = RECONNECT_FIRST;
    let mut connected = false;
    let mut ever_connected = false;
    let mut outage: Option<Outage> = None;
    let mut disconnecting = false;
    let mut takeovers = Takeovers::default();
    loop {
        let event = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            event = eventloop.poll() => event,
            () = outbox.ready(), if connected && !disconnecting => {
                outbox.write(&mut eventloop).await;
                continue;
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                let broker = eventloop.mqtt_options.broker_address();
                takeovers.connected();
                match outage.take() {
                    // Thrown off and back again in a loop: said once already.
                    Some(_) if takeovers.said => {
                        tracing::debug!(?broker, "MQTT broker back");
                    }
                    Some(Outage {
                        since,
                        failed_attempts,
                    }) if ever_connected => {
                        // Whole seconds: the line is read by people, not compared.
                        let away = Duration::from_secs(since.elapsed().as_secs());
                        tracing::info!(
                            ?broker,
                            failed_attempts,
                            away = %humantime::format_duration(away),
                            "MQTT broker back"
                        );
                    }
                    outage => tracing::info!(
                        ?broker,
                        failed_attempts = outage.map_or(0, |o| o.failed_attempts),
                        "connected to the MQTT broker"
                    ),
                }
                outbox.clear();
                connected = true;
                ever_connected = true;
                backoff = RECONNECT_FIRST;
                let _ = link.send(LinkEvent::Connected).await;
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let message = LinkEvent::Message {
                    topic: publish.topic,
                    payload: publish.payload,
                    retained: publish.retain,
                };
                // Waiting here holds the broker back rather than drop a message: the last
                // of a burst of commands is the one that must arrive. The bridge never
                // waits on this loop, so the wait is short.
                let _ = link.send(message).await;
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => disconnecting = true,
            Ok(_) => {}
            Err(_) if disconnecting => return,
            Err(error) => {
                outbox.clear();
                let taken_over =
                    connected && takeovers.lost(eventloop.mqtt_options.client_id().as_str());
                match &mut outage {
                    Some(outage) => {
                        outage.failed_attempts += 1;
                        tracing::debug!(%error, retry_in = ?backoff, "MQTT broker still unreachable");
                    }
                    None => {
                        // Losing a connection is not a failed attempt to make one.
                        let failed_attempts = u32::from(!connected);
                        outage = Some(Outage {
                            since: Instant::now(),
                            failed_attempts,
                        });
                        if taken_over {
                            tracing::debug!(%error, "MQTT broker lost again");
                        } else if connected {
                            tracing::warn!(%error, "MQTT broker lost; polling goes on, reconnecting with back-off");
                        } else {
                            tracing::warn!(%error, "MQTT broker unreachable; polling goes on, reconnecting with back-off");
                        }
                    }
                }
                if connected {
                    connected = false;
                    let _ = link.send(LinkEvent::Disconnected).await;
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(RECONNECT_MAX);
            }
        }
    }
}
