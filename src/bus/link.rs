//! RTU on an open line (a serial port, or a serial device server's TCP socket): silence
//! before each request, the request, and the answer found by [`framing::Reader`] before a
//! deadline, with retries.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_modbus::{ExceptionCode, Request, Response};

use super::BusError;
use super::framing::{self, Overdues, Reader, Scan, Shape, Tally};
use super::port::Stream;
use crate::clock::Timer;
use crate::config::{Bus, Echo, Timing, UnitId};
use crate::stats::BusStats;

/// How much later than one more timeout an overdue answer may still reach us: a USB
/// adapter hands bytes over up to 16 ms after they came off the line (FTDI's default
/// latency timer), and the system may schedule us late.
const OVERDUE_SLACK: std::time::Duration = std::time::Duration::from_millis(20);
/// Bytes kept unread at most: a line that babbles faster than it is read is cut here.
const RECEIVE_LIMIT: usize = 4096;

/// An open port with the state of the line on it.
pub struct Link {
    stream: Box<dyn Stream>,
    /// The silence before a request, then the answer's deadline.
    timer: Timer,
    /// Received and not yet taken or discarded.
    received: Vec<u8>,
    settings: Bus,
    /// With `echo = "auto"`: whether the adapter was found to echo.
    echo_found: Option<bool>,
    overdue: Overdues,
    stats: Arc<BusStats>,
    last_frame_end: Instant,
    /// The unit of the last transaction, to which bytes found after it are counted.
    last_unit: Option<u8>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("port", &self.settings.transport)
            .finish()
    }
}

/// Functions whose answer repeats the request byte for byte: an echo of the request and
/// the answer cannot be told apart, so only a line known to echo drops the first copy.
fn answer_repeats_request(function: u8) -> bool {
    matches!(function, 5 | 6 | 22)
}

impl Link {
    /// RTU over `stream`; transactions are counted in `stats`.
    pub fn new(stream: Box<dyn Stream>, settings: &Bus, stats: Arc<BusStats>) -> Link {
        Link {
            stream,
            timer: Timer::default(),
            received: Vec::with_capacity(512),
            settings: settings.clone(),
            echo_found: None,
            overdue: Overdues::default(),
            stats,
            last_frame_end: Instant::now(),
            last_unit: None,
        }
    }

    /// Waits until `deadline` on the line's own timer.
    pub async fn sleep_until(&mut self, deadline: Instant) {
        self.timer.sleep_until(Some(deadline)).await;
    }

    /// Nothing more to wait for until the next job.
    pub fn rest(&mut self) {
        self.timer.disarm();
    }

    /// When the line may carry a request to a device with `timing`: the inter-frame
    /// silence and the device's frame gap after the last frame.
    pub fn quiet_at(&self, timing: Timing) -> Instant {
        self.last_frame_end + self.settings.line.frame_silence() + timing.frame_gap
    }

    /// Until when `request` to `unit` must wait because a request with an answer of the
    /// same shape is overdue (its answer may still come and would pass for this one's).
    pub fn held_until(&mut self, unit: UnitId, request: &Request<'_>) -> Option<Instant> {
        let now = Instant::now();
        if !self.overdue.any(now) {
            return None;
        }
        let frame = framing::request_frame(unit.get(), request)?;
        self.overdue.hold_until(&frame, now)
    }

    /// When the next overdue answer stops being expected.
    pub fn overdue_expiry(&mut self) -> Option<Instant> {
        if self.overdue.any(Instant::now()) {
            self.overdue.next_expiry()
        } else {
            None
        }
    }

    /// Waits for bytes while the bus is idle and sorts them: a late answer that comes now
    /// frees the requests held back for it. A frame still arriving stays for the next
    /// look. Returns on the first bytes or a port failure.
    pub async fn listen(&mut self) -> Result<(), BusError> {
        if self.received.len() >= RECEIVE_LIMIT {
            self.discard_received();
        }
        port_read(self.stream.read_buf(&mut self.received).await)?;
        let (tally, sorted) = framing::discard_complete(&self.received, &mut self.overdue);
        self.received.drain(..sorted);
        self.stats.tally(self.last_unit, tally);
        Ok(())
    }

    /// Waits, listening to the line, until no overdue answer could pass for the answer to
    /// the request `frame`.
    async fn until_clear(&mut self, frame: &[u8]) -> Result<(), BusError> {
        loop {
            let now = Instant::now();
            if !self.overdue.any(now) {
                return Ok(());
            }
            let Some(until) = self.overdue.hold_until(frame, now) else {
                return Ok(());
            };
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                heard = self.listen() => heard?,
            }
        }
    }

    /// One request with silence before it and a timeout, and up to `retries` retries.
    pub async fn transact(
        &mut self,
        unit: UnitId,
        request: &Request<'_>,
        timing: Timing,
        retries: u32,
    ) -> Result<Response, BusError> {
        let frame = framing::request_frame(unit.get(), request)
            .ok_or_else(|| BusError::BadFrame(format!("cannot frame {request:?}")))?;
        let shape = Shape::of_request(&frame)
            .ok_or_else(|| BusError::BadFrame(format!("no answer shape for {request:?}")))?;
        // The bus task lets other jobs go ahead of one that an overdue answer could pass
        // for; a job of several transactions (a read-back, a read-modify-write) may still
        // come to one here. The retries of one request need no holding: a late answer
        // answers them as well.
        self.until_clear(&frame).await?;
        let mut retries = super::Retries::new(unit, retries);
        loop {
            let result = self.attempt(&frame, shape, timing).await;
            if !retries.again(&result) {
                return result;
            }
        }
    }

    async fn attempt(
        &mut self,
        frame: &[u8],
        shape: Shape,
        timing: Timing,
    ) -> Result<Response, BusError> {
        let line = self.settings.line;
        self.wait_for_silence(timing).await;
        let started = Instant::now();
        // A port that takes no request (a stuck adapter, a server that stopped reading)
        // must not hold the bus: it fails, and is opened again. The time is spent only
        // where the write waits.
        let limit = line.chars(frame.len() as f64) + timing.timeout;
        match tokio::time::timeout(limit, self.stream.write_all(frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(BusError::PortDown(e.to_string())),
            Err(_) => {
                return Err(BusError::PortDown(format!(
                    "the port took no request within {}",
                    humantime::format_duration(crate::clock::to_ms(limit))
                )));
            }
        }
        // The answer cannot be complete before the request and the answer have crossed
        // the line; the timeout is the device's time to think on top of that.
        let answer_time = line.chars(shape.len as f64);
        let deadline = started + line.chars(frame.len() as f64) + answer_time + timing.timeout;
        let (result, tally) = self.receive(frame, shape, deadline, timing).await;
        self.last_frame_end = Instant::now();
        let took = self.last_frame_end - started;
        let silence = line.frame_silence() + timing.frame_gap;
        // A slow device may still answer, up to one more timeout later.
        let overdue_until = deadline + timing.timeout + OVERDUE_SLACK;
        match result {
            Err(BusError::Timeout(_) | BusError::BadFrame(_)) => {
                self.overdue.add(frame, overdue_until);
            }
            _ => self.overdue.renew(frame, overdue_until),
        }
        self.stats
            .record(shape.unit, took, took + silence, result.as_ref().map(drop));
        self.stats.tally(Some(shape.unit), tally);
        self.last_unit = Some(shape.unit);
        tracing::trace!(unit = shape.unit, ?took, ok = result.is_ok(), "transaction");
        result
    }

    /// Waits until the line has been quiet for the silence before a request. Bytes that
    /// came meanwhile mean it was not (another master, a late answer): sorted, and the
    /// silence starts again, a few times at most on a line that never stops talking.
    async fn wait_for_silence(&mut self, timing: Timing) {
        for _ in 0..3 {
            self.timer.sleep_until(Some(self.quiet_at(timing))).await;
            self.take_waiting_input();
            if self.received.is_empty() {
                return;
            }
            self.discard_received();
            self.last_frame_end = Instant::now();
        }
    }

    /// Waits for the answer to `frame` until `deadline`; returns it decoded, with what was
    /// skipped on the way.
    async fn receive(
        &mut self,
        frame: &[u8],
        shape: Shape,
        deadline: Instant,
        timing: Timing,
    ) -> (Result<Response, BusError>, Tally) {
        let strip_echo = match self.settings.echo {
            Echo::On => true,
            Echo::Off => false,
            Echo::Auto => self.echo_found == Some(true) || !answer_repeats_request(shape.function),
        };
        let (result, tally) = {
            let mut reader = Reader::new(frame, shape, strip_echo, &mut self.overdue);
            let timer = self.timer.sleep_until(Some(deadline));
            tokio::pin!(timer);
            let result = loop {
                match reader.scan(&self.received) {
                    Scan::Answer { skip, len } => {
                        let answer = decode(&self.received[skip..skip + len]);
                        self.received.drain(..skip + len);
                        match answer {
                            // It has our answer's shape and a good CRC but says nothing our
                            // request could be answered with: another master's frame.
                            Err(BusError::BadFrame(_)) => reader.tally.foreign_frames += 1,
                            answer => break answer,
                        }
                        continue;
                    }
                    Scan::More { skip } => {
                        self.received.drain(..skip);
                    }
                }
                tokio::select! {
                    biased;
                    read = self.stream.read_buf(&mut self.received) => {
                        if let Err(e) = port_read(read) {
                            break Err(e);
                        }
                    }
                    () = &mut timer => {
                        if !reader.garbled {
                            break Err(BusError::Timeout(timing.timeout));
                        }
                        self.received.drain(..reader.garbled_len(&self.received));
                        break Err(BusError::BadFrame("the answer arrived with a bad CRC".to_owned()));
                    }
                }
            };
            (result, reader.tally)
        };
        if self.settings.echo == Echo::Auto
            && !answer_repeats_request(shape.function)
            && result.is_ok()
        {
            self.learn_echo(tally.echoes > 0);
        }
        (result, tally)
    }

    /// An adapter found to echo is taken to echo from then on (an echo lost to noise once
    /// does not undo it); one found not to may still turn out to.
    fn learn_echo(&mut self, echo: bool) {
        match (self.echo_found, echo) {
            (None | Some(false), true) => {
                tracing::info!(port = %self.settings.transport, "the adapter echoes what it sends: dropping the echo");
                self.echo_found = Some(true);
            }
            (None, false) => {
                tracing::info!(port = %self.settings.transport, "no echo on the line");
                self.echo_found = Some(false);
            }
            _ => {}
        }
    }

    /// What was found out about the echo, to carry over to the next time the port opens.
    pub fn echo_found(&self) -> Option<bool> {
        self.echo_found
    }

    /// What an earlier opening of the port found out about the echo.
    pub fn remember_echo(&mut self, echo_found: Option<bool>) {
        self.echo_found = echo_found;
    }

    /// Reads whatever has arrived, without waiting.
    fn take_waiting_input(&mut self) {
        use futures_util::FutureExt;
        // A stream that is not readable answers at once without a system call.
        while let Some(Ok(n)) = self.stream.read_buf(&mut self.received).now_or_never() {
            if n == 0 || self.received.len() >= RECEIVE_LIMIT {
                break;
            }
        }
    }

    /// Sorts and drops what was received outside a transaction, counting it to the unit of
    /// the last one.
    fn discard_received(&mut self) {
        if self.received.is_empty() {
            return;
        }
        let tally = framing::discard(&self.received, &mut self.overdue);
        self.received.clear();
        self.stats.tally(self.last_unit, tally);
    }
}

/// A read's result: the port closed or failing is a port failure.
fn port_read(read: std::io::Result<usize>) -> Result<(), BusError> {
    match read {
        Ok(0) => Err(BusError::PortDown("the port was closed".to_owned())),
        Ok(_) => Ok(()),
        Err(e) => Err(BusError::PortDown(e.to_string())),
    }
}

/// The answer frame (whole, good CRC) as a response or the device's exception.
fn decode(answer: &[u8]) -> Result<Response, BusError> {
    let pdu = &answer[1..answer.len() - 2];
    match pdu {
        [function, code] if function & 0x80 != 0 => {
            Err(BusError::Exception(ExceptionCode::new(*code)))
        }
        _ => Response::try_from(tokio_modbus::bytes::Bytes::copy_from_slice(pdu))
            .map_err(|e| BusError::BadFrame(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::UnitId;

    #[tokio::test]
    async fn a_port_that_takes_no_request_fails_instead_of_holding_the_bus() {
        let config = crate::config::parse(
            "[bus]\nport = \"/dev/null\"\ntimeout = \"50ms\"\nretries = 0\n",
            Path::new("t"),
        )
        .unwrap();
        // Room for 2 bytes, and nobody reads them: the 8-byte request never goes out.
        let (port, _held) = tokio::io::duplex(2);
        let mut link = Link::new(Box::new(port), &config.bus, Arc::default());
        let unit = UnitId::new(1).unwrap();
        let request = Request::ReadHoldingRegisters(0, 1);
        let result = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            link.transact(unit, &request, config.bus.timing, 0),
        )
        .await
        .expect("the bus is not held");
        assert!(
            matches!(&result, Err(BusError::PortDown(e)) if e.contains("took no request")),
            "{result:?}"
        );
    }
}
