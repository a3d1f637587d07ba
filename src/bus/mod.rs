//! The bus: the one task that owns the serial port and runs Modbus transactions on it, one
//! at a time. Others talk to it through a [`BusHandle`]; commands (writes and their
//! read-backs) go before any poll still waiting. Each transaction keeps the inter-frame silence, has a timeout and retries,
//! and ends in data, an exception (the device said no) or a transport failure (the line
//! did not deliver an answer) — never in a stuck bus.

mod port;

use std::borrow::Cow;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_modbus::client::{Client, Context};
use tokio_modbus::slave::SlaveContext;
use tokio_modbus::{ExceptionCode, Request, Response, Slave};
use tokio_util::sync::CancellationToken;

use port::{Port, PortState};

use crate::config::{Bus, UnitId};
use crate::plan::ReadRequest;
use crate::stats::BusStats;

/// What a read returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadData {
    Bits(Vec<bool>),
    Words(Vec<u16>),
}

impl ReadData {
    /// The data as words; a bit reads as 0 or 1.
    pub fn words(&self) -> Vec<u16> {
        match self {
            ReadData::Words(words) => words.clone(),
            ReadData::Bits(bits) => bits.iter().map(|b| u16::from(*b)).collect(),
        }
    }
}

/// One write transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRequest {
    pub unit: UnitId,
    pub address: u16,
    pub data: WriteData,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteData {
    /// Function 5.
    Coil(bool),
    /// Function 6.
    Register(u16),
    /// Function 16.
    Registers(Vec<u16>),
}

impl WriteData {
    pub fn function(&self) -> u8 {
        match self {
            WriteData::Coil(_) => 5,
            WriteData::Register(_) => 6,
            WriteData::Registers(_) => 16,
        }
    }
}

/// Why a transaction produced no data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The device answered with an exception: the line is fine.
    #[error("device refused: exception {}, {}", u8::from(*.0), .0)]
    Exception(ExceptionCode),
    /// Nothing came back in time.
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// Something came back but was not a valid answer (bad CRC, wrong unit, noise).
    #[error("garbled answer: {0}")]
    BadFrame(String),
    /// The serial port is gone or cannot be opened.
    #[error("serial port unavailable: {0}")]
    PortDown(String),
    /// The gateway is shutting down.
    #[error("gateway is shutting down")]
    Stopped,
}

impl BusError {
    /// A failure of the line rather than an answer from the device.
    pub fn is_transport(&self) -> bool {
        !matches!(self, BusError::Exception(_))
    }
}

/// After a timeout the next request waits this long (or the timeout, if shorter), so that
/// a late answer lands before the receive buffer is flushed rather than in the middle of
/// the next transaction.
const LATE_ANSWER_GUARD: Duration = Duration::from_millis(50);

/// An open port with a Modbus client on it.
pub struct Link {
    client: Context,
    port: Arc<PortState>,
    settings: Bus,
    stats: Arc<BusStats>,
    last_frame_end: Instant,
    /// The unit of the last transaction, and whether it ended in a timeout.
    last: Option<(u8, bool)>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("port", &self.settings.port)
            .finish()
    }
}

impl Link {
    /// Opens the port; transactions are counted in `stats`.
    pub fn open(settings: &Bus, stats: Arc<BusStats>) -> io::Result<Link> {
        let (port, state) = Port::open(&settings.port, &settings.line)?;
        Ok(Link {
            client: tokio_modbus::client::rtu::attach(port),
            port: state,
            settings: settings.clone(),
            stats,
            last_frame_end: Instant::now(),
            last: None,
        })
    }

    pub async fn read(&mut self, read: &ReadRequest) -> Result<ReadData, BusError> {
        let (address, count) = (read.address, read.count);
        let request = match read.table {
            crate::config::Table::Coil => Request::ReadCoils(address, count),
            crate::config::Table::Discrete => Request::ReadDiscreteInputs(address, count),
            crate::config::Table::Holding => Request::ReadHoldingRegisters(address, count),
            crate::config::Table::Input => Request::ReadInputRegisters(address, count),
        };
        let count = usize::from(count);
        match self.transact(read.unit, request).await? {
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

    pub async fn write(&mut self, write: &WriteRequest) -> Result<(), BusError> {
        let address = write.address;
        let (request, echo) = match &write.data {
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
        };
        // A stray answer to an earlier request (a late slave) must not pass for this one.
        match self.transact(write.unit, request).await? {
            answer if answer == echo => Ok(()),
            other => Err(BusError::BadFrame(format!(
                "answer does not match the write: {other:?}"
            ))),
        }
    }

    /// When the line may carry the next request: the inter-frame silence and frame gap
    /// after the last frame, and after a timeout the late-answer guard.
    fn quiet_at(&self) -> Instant {
        let silence = self.settings.line.frame_silence() + self.settings.frame_gap;
        let guard = match self.last {
            Some((_, true)) => LATE_ANSWER_GUARD.min(self.settings.timeout),
            _ => Duration::ZERO,
        };
        self.last_frame_end + silence.max(guard)
    }

    /// One request with silence before it, a timeout, and retries on transport failures.
    async fn transact(&mut self, unit: UnitId, request: Request<'_>) -> Result<Response, BusError> {
        self.client.set_slave(Slave(unit.get()));
        let mut attempt = 0;
        loop {
            let result = self.attempt(unit.get(), request.clone()).await;
            match result {
                Err(ref error @ (BusError::Timeout(_) | BusError::BadFrame(_)))
                    if attempt < self.settings.retries =>
                {
                    attempt += 1;
                    tracing::debug!(unit = unit.get(), attempt, %error, "retrying");
                }
                result => return result,
            }
        }
    }

    async fn attempt(&mut self, unit: u8, request: Request<'_>) -> Result<Response, BusError> {
        // The response timeout runs from the end of the request, which is still on the
        // line when the call starts.
        let sending = self.settings.line.chars(f64::from(request_bytes(&request)));
        let timeout = self.settings.timeout + sending;
        let silence = self.settings.line.frame_silence() + self.settings.frame_gap;
        let quiet = self.quiet_at();
        // Registering a timer costs a wake-up even when it has already expired.
        if Instant::now() < quiet {
            tokio::time::sleep_until(quiet).await;
        }
        self.port.flush_before_next_write();
        let (received_before, discarded_before) = (self.port.received(), self.port.discarded());
        let started = Instant::now();
        let result = tokio::time::timeout(timeout, self.client.call(request)).await;
        self.last_frame_end = Instant::now();
        let result = self.classify(result, received_before);
        let took = self.last_frame_end - started;
        let noise = self.port.discarded() - discarded_before;
        if let (Some((previous, _)), true) = (self.last, noise > 0) {
            self.stats.noise(previous, noise);
        }
        self.stats
            .record(unit, took, took + silence, result.as_ref().map(drop));
        self.last = Some((unit, matches!(result, Err(BusError::Timeout(_)))));
        tracing::trace!(unit, ?took, ok = result.is_ok(), "transaction");
        result
    }

    fn classify(
        &self,
        result: Result<tokio_modbus::Result<Response>, tokio::time::error::Elapsed>,
        received_before: u64,
    ) -> Result<Response, BusError> {
        let timeout = self.settings.timeout;
        match result {
            Ok(Ok(Ok(response))) => Ok(response),
            Ok(Ok(Err(exception))) => Err(BusError::Exception(exception)),
            Ok(Err(tokio_modbus::Error::Protocol(e))) => Err(BusError::BadFrame(e.to_string())),
            Ok(Err(tokio_modbus::Error::Transport(e))) => Err(classify_io(&e, timeout)),
            Err(_elapsed) if self.port.received() > received_before => Err(BusError::BadFrame(
                "no valid frame within the timeout (bad CRC or noise)".to_owned(),
            )),
            Err(_elapsed) => Err(BusError::Timeout(timeout)),
        }
    }
}

/// Bytes of a request frame: unit, function, fields, CRC.
fn request_bytes(request: &Request<'_>) -> u32 {
    let frame = |fields: usize| u32::try_from(4 + fields).unwrap_or(u32::MAX);
    match request {
        Request::WriteMultipleRegisters(_, words) => frame(5 + 2 * words.len()),
        Request::WriteMultipleCoils(_, coils) => frame(5 + coils.len().div_ceil(8)),
        _ => frame(4),
    }
}

/// Decoding errors are the line's noise; anything else means the port itself failed.
fn classify_io(e: &io::Error, timeout: Duration) -> BusError {
    match e.kind() {
        io::ErrorKind::InvalidData => BusError::BadFrame(e.to_string()),
        io::ErrorKind::TimedOut => BusError::Timeout(timeout),
        _ => BusError::PortDown(e.to_string()),
    }
}

type Reply<T> = oneshot::Sender<Result<T, BusError>>;

/// A transaction and where its result goes.
#[derive(Debug)]
enum Job {
    Read(ReadRequest, Reply<ReadData>),
    Write(WriteRequest, Reply<()>),
}

/// A cheap, cloneable way to put transactions on the bus. There are two queues: commands
/// (writes and their read-backs), which go first, and polls.
#[derive(Debug, Clone)]
pub struct BusHandle {
    commands: mpsc::Sender<Job>,
    polls: mpsc::Sender<Job>,
}

impl BusHandle {
    async fn submit<T>(
        queue: &mpsc::Sender<Job>,
        job: impl FnOnce(Reply<T>) -> Job,
    ) -> Result<T, BusError> {
        let (reply, answer) = oneshot::channel();
        queue
            .send(job(reply))
            .await
            .map_err(|_| BusError::Stopped)?;
        answer.await.unwrap_or(Err(BusError::Stopped))
    }

    /// A poll: waits behind commands and earlier polls.
    pub async fn read(&self, read: ReadRequest) -> Result<ReadData, BusError> {
        Self::submit(&self.polls, |reply| Job::Read(read, reply)).await
    }

    /// A read on behalf of a command (the read-back after a write): goes before polls.
    pub async fn read_now(&self, read: ReadRequest) -> Result<ReadData, BusError> {
        Self::submit(&self.commands, |reply| Job::Read(read, reply)).await
    }

    /// A write: goes before any poll still waiting.
    pub async fn write(&self, write: WriteRequest) -> Result<(), BusError> {
        Self::submit(&self.commands, |reply| Job::Write(write, reply)).await
    }
}

/// The bus task before it runs.
#[derive(Debug)]
pub struct BusTask {
    settings: Bus,
    commands: mpsc::Receiver<Job>,
    polls: mpsc::Receiver<Job>,
    stats: Arc<BusStats>,
    port_open: watch::Sender<bool>,
}

/// Commands waiting at once; more wait for room in the queue.
const COMMAND_QUEUE: usize = 32;
/// Polls waiting at once. The scheduler never queues a read twice, so a plan longer than
/// this only makes some reads wait for room, in order.
const POLL_QUEUE: usize = 64;
/// First wait before reopening a failed port; doubles up to [`REOPEN_MAX`].
const REOPEN_FIRST: Duration = Duration::from_millis(500);
const REOPEN_MAX: Duration = Duration::from_secs(30);

/// Creates the bus.
pub fn bus(settings: Bus) -> (BusHandle, BusTask) {
    let (command_tx, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let (poll_tx, poll_rx) = mpsc::channel(POLL_QUEUE);
    (
        BusHandle {
            commands: command_tx,
            polls: poll_tx,
        },
        BusTask {
            settings,
            commands: command_rx,
            polls: poll_rx,
            stats: Arc::default(),
            port_open: watch::Sender::new(false),
        },
    )
}

/// The port, open or waiting to be reopened.
struct Line {
    settings: Bus,
    stats: Arc<BusStats>,
    link: Option<Link>,
    reopen_at: Instant,
    backoff: Duration,
    last_error: String,
    port_open: watch::Sender<bool>,
}

impl Line {
    fn link(&mut self) -> Result<&mut Link, BusError> {
        if self.link.is_none() {
            if Instant::now() < self.reopen_at {
                return Err(BusError::PortDown(self.last_error.clone()));
            }
            tracing::debug!(port = %self.settings.port, "opening the serial port");
            match Link::open(&self.settings, Arc::clone(&self.stats)) {
                Ok(link) => {
                    tracing::info!(port = %self.settings.port, line = %self.settings.line.describe(), "serial port open");
                    self.link = Some(link);
                    self.backoff = REOPEN_FIRST;
                    self.port_open.send_replace(true);
                }
                Err(e) => {
                    self.close_for_a_while(format!("{}: {e}", self.settings.port));
                    return Err(BusError::PortDown(self.last_error.clone()));
                }
            }
        }
        self.link
            .as_mut()
            .ok_or_else(|| BusError::PortDown(self.last_error.clone()))
    }

    /// Closes the port at once (a dead adapter held open keeps its device name taken) and
    /// tries again after a back-off.
    fn close_for_a_while(&mut self, error: String) {
        if self.link.take().is_some() {
            tracing::warn!(port = %self.settings.port, %error, "serial port failed: closed, reopening with back-off");
            self.port_open.send_replace(false);
        } else if self.last_error != error {
            tracing::warn!(port = %self.settings.port, %error, retry_in = ?self.backoff, "cannot open the serial port");
        }
        self.last_error = error;
        self.reopen_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(REOPEN_MAX);
    }

    async fn execute(&mut self, job: Job) {
        // A caller that gave up waiting is no reason to stop.
        match job {
            Job::Read(read, reply) => {
                let result = self
                    .run(read.unit, async |link| link.read(&read).await)
                    .await;
                let _ = reply.send(result);
            }
            Job::Write(write, reply) => {
                let result = self
                    .run(write.unit, async |link| link.write(&write).await)
                    .await;
                let _ = reply.send(result);
            }
        }
    }

    /// Runs one transaction on the port, opening it first if need be.
    async fn run<T>(
        &mut self,
        unit: UnitId,
        transaction: impl AsyncFnOnce(&mut Link) -> Result<T, BusError>,
    ) -> Result<T, BusError> {
        let link = match self.link() {
            Ok(link) => link,
            Err(e) => {
                self.stats
                    .record(unit.get(), Duration::ZERO, Duration::ZERO, Err(&e));
                return Err(e);
            }
        };
        let result = transaction(link).await;
        if let Err(BusError::PortDown(e)) = &result {
            self.close_for_a_while(e.clone());
        }
        result
    }
}

impl BusTask {
    /// Counters of every transaction this bus runs.
    pub fn stats(&self) -> Arc<BusStats> {
        Arc::clone(&self.stats)
    }

    /// Whether the serial port is open right now.
    pub fn port_open(&self) -> watch::Receiver<bool> {
        self.port_open.subscribe()
    }

    /// Runs transactions until `shutdown` fires or every handle is gone. Under systemd's
    /// watchdog it also pings the watchdog between transactions: a stuck bus gets restarted.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut line = Line {
            settings: self.settings.clone(),
            stats: Arc::clone(&self.stats),
            link: None,
            reopen_at: Instant::now(),
            backoff: REOPEN_FIRST,
            last_error: String::new(),
            port_open: self.port_open.clone(),
        };
        let watchdog = sd_notify::watchdog_enabled();
        let mut ping = tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |w| w / 2));
        loop {
            // The next job is chosen when the line is free to carry it, not before: a
            // command queued during the silence still goes ahead of waiting polls.
            if let Some(quiet) = line
                .link
                .as_ref()
                .map(Link::quiet_at)
                .filter(|q| *q > Instant::now())
            {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep_until(quiet) => {}
                }
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                _ = ping.tick(), if watchdog.is_some() => {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
                Some(job) = self.commands.recv() => line.execute(job).await,
                Some(job) = self.polls.recv() => line.execute(job).await,
                else => break,
            }
        }
    }
}
