//! An open line and the transactions on it: silence before each request, the request, and
//! the answer found by [`framing::Reader`] before a deadline, with retries. Transactions
//! end in data, an exception (the device said no) or a transport failure (the line did
//! not deliver an answer).

use std::borrow::Cow;
use std::io;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_modbus::{ExceptionCode, Request, Response};

use super::framing::{self, Overdues, Reader, Scan, Shape, Tally};
use super::port::{self, Stream};
use super::{BusError, ReadData, WriteData, WriteRequest};
use crate::config::{Bus, Echo, Table, Timing, UnitId};
use crate::plan::ReadRequest;
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
            .field("port", &self.settings.port)
            .finish()
    }
}

/// The request of a read.
pub fn read_request(read: &ReadRequest) -> Request<'static> {
    let (address, count) = (read.address, read.count);
    match read.table {
        Table::Coil => Request::ReadCoils(address, count),
        Table::Discrete => Request::ReadDiscreteInputs(address, count),
        Table::Holding => Request::ReadHoldingRegisters(address, count),
        Table::Input => Request::ReadInputRegisters(address, count),
    }
}

/// The request of a write and the answer that confirms it.
pub fn write_request(write: &WriteRequest) -> (Request<'_>, Response) {
    let address = write.address;
    match &write.data {
        WriteData::Coil(on) => (
            Request::WriteSingleCoil(address, *on),
            Response::WriteSingleCoil(address, *on),
        ),
        WriteData::Register(word) => (
            Request::WriteSingleRegister(address, *word),
            Response::WriteSingleRegister(address, *word),
        ),
        WriteData::Registers(words) => (
            Request::WriteMultipleRegisters(address, Cow::Borrowed(words.as_slice())),
            // At most 123 words fit one request.
            Response::WriteMultipleRegisters(address, words.len() as u16),
        ),
    }
}

/// Functions whose answer repeats the request byte for byte: an echo of the request and
/// the answer cannot be told apart, so only a line known to echo drops the first copy.
fn answer_repeats_request(function: u8) -> bool {
    matches!(function, 5 | 6 | 22)
}

impl Link {
    /// Opens the port; transactions are counted in `stats`.
    pub fn open(settings: &Bus, stats: Arc<BusStats>) -> io::Result<Link> {
        let stream = port::open(&settings.port, &settings.line)?;
        Ok(Link {
            stream,
            received: Vec::with_capacity(512),
            settings: settings.clone(),
            echo_found: None,
            overdue: Overdues::default(),
            stats,
            last_frame_end: Instant::now(),
            last_unit: None,
        })
    }

    pub async fn read(
        &mut self,
        read: &ReadRequest,
        timing: Timing,
        retries: u32,
    ) -> Result<ReadData, BusError> {
        let count = usize::from(read.count);
        match self
            .transact(read.unit, &read_request(read), timing, retries)
            .await?
        {
            Response::ReadCoils(mut bits) | Response::ReadDiscreteInputs(mut bits) => {
                bits.truncate(count);
                Ok(ReadData::Bits(bits))
            }
            Response::ReadHoldingRegisters(words) | Response::ReadInputRegisters(words)
                if words.len() == count =>
            {
                Ok(ReadData::Words(words))
            }
            other => Err(BusError::BadFrame(format!(
                "answer does not match the read: {other:?}"
            ))),
        }
    }

    pub async fn write(
        &mut self,
        write: &WriteRequest,
        timing: Timing,
        retries: u32,
    ) -> Result<(), BusError> {
        let (request, confirmation) = write_request(write);
        match self.transact(write.unit, &request, timing, retries).await? {
            answer if answer == confirmation => Ok(()),
            other => Err(BusError::BadFrame(format!(
                "answer does not match the write: {other:?}"
            ))),
        }
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
    /// frees the requests held back for it. Returns on the first bytes or a port failure.
    pub async fn listen(&mut self) -> Result<(), BusError> {
        self.receive_some().await?;
        self.discard_received();
        Ok(())
    }

    /// One request with silence before it, a timeout, and up to `retries` retries on
    /// transport failures.
    async fn transact(
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
        if let Some(until) = self.overdue.hold_until(&frame, Instant::now()) {
            self.wait_out_overdue(&frame, until).await?;
        }
        let mut attempt = 0;
        loop {
            let result = self.attempt(&frame, shape, timing).await;
            match result {
                Err(ref error @ (BusError::Timeout(_) | BusError::BadFrame(_)))
                    if attempt < retries =>
                {
                    attempt += 1;
                    tracing::debug!(unit = unit.get(), attempt, %error, "retrying");
                }
                result => return result,
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
        let quiet = self.quiet_at(timing);
        // Registering a timer costs a wake-up even when it has already expired.
        if Instant::now() < quiet {
            tokio::time::sleep_until(quiet).await;
        }
        self.take_waiting_input();
        self.discard_received();
        let started = Instant::now();
        if let Err(e) = self.stream.write_all(frame).await {
            return Err(BusError::PortDown(e.to_string()));
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
        self.stats.tally(shape.unit, tally);
        self.last_unit = Some(shape.unit);
        tracing::trace!(unit = shape.unit, ?took, ok = result.is_ok(), "transaction");
        result
    }

    /// Holds the request to `frame` back until `until`, listening: it may go as soon as
    /// the overdue answer it would be mistaken for has come.
    async fn wait_out_overdue(&mut self, frame: &[u8], until: Instant) -> Result<(), BusError> {
        tracing::debug!(request = ?frame, "holding a request back for an overdue answer");
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return Ok(()),
                received = self.receive_some() => received?,
            }
            self.discard_received();
            if self.overdue.hold_until(frame, Instant::now()).is_none() {
                return Ok(());
            }
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
        let mut reader = Reader::new(frame, shape, strip_echo, &mut self.overdue);
        let timer = tokio::time::sleep_until(deadline);
        tokio::pin!(timer);
        let result = loop {
            match reader.scan(&self.received) {
                Scan::Answer { skip, len } => {
                    let answer = decode(&self.received[skip..skip + len]);
                    self.received.drain(..skip + len);
                    break answer;
                }
                Scan::More { skip } => {
                    self.received.drain(..skip);
                }
            }
            tokio::select! {
                biased;
                read = self.stream.read_buf(&mut self.received) => match read {
                    Ok(0) => break Err(BusError::PortDown("the port was closed".to_owned())),
                    Ok(_) => {}
                    Err(e) => break Err(BusError::PortDown(e.to_string())),
                },
                () = &mut timer => break Err(if reader.garbled {
                    BusError::BadFrame("the answer arrived with a bad CRC".to_owned())
                } else {
                    BusError::Timeout(timing.timeout)
                }),
            }
        };
        let tally = reader.tally;
        if self.settings.echo == Echo::Auto
            && !answer_repeats_request(shape.function)
            && result.is_ok()
        {
            self.learn_echo(tally.echoes > 0);
        }
        (result, tally)
    }

    fn learn_echo(&mut self, echo: bool) {
        if self.echo_found != Some(echo) {
            if echo {
                tracing::info!(port = %self.settings.port, "the adapter echoes what it sends: dropping the echo");
            } else {
                tracing::info!(port = %self.settings.port, "no echo on the line");
            }
            self.echo_found = Some(echo);
        }
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

    /// Waits for more bytes.
    async fn receive_some(&mut self) -> Result<(), BusError> {
        if self.received.len() >= RECEIVE_LIMIT {
            self.discard_received();
        }
        match self.stream.read_buf(&mut self.received).await {
            Ok(0) => Err(BusError::PortDown("the port was closed".to_owned())),
            Ok(_) => Ok(()),
            Err(e) => Err(BusError::PortDown(e.to_string())),
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
        if let Some(unit) = self.last_unit {
            self.stats.tally(unit, tally);
        }
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
