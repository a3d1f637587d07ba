//! The bus: the one task that owns the serial port and runs Modbus transactions on it, one
//! at a time. Others talk to it through a [`BusHandle`]; commands (writes and their
//! read-backs) go before any poll still waiting, and a request that an overdue answer
//! could be mistaken for waits while others go ahead. Each transaction ends in data, an
//! exception (the device said no) or a transport failure (the line did not deliver an
//! answer) — never in a stuck bus.

pub mod framing;
mod link;
mod port;
mod tcp;
mod transport;

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_modbus::{ExceptionCode, Request};
use tokio_util::sync::CancellationToken;

pub use port::IN_USE;
pub use transport::Connection;

use crate::codec::MaskWrite;
use crate::config::{Bus, Config, Timing, Transport, UnitId};
use crate::plan::ReadRequest;
use crate::stats::BusStats;

/// What a read returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadData {
    Bits(Vec<bool>),
    Words(Vec<u16>),
}

impl ReadData {
    /// The data as words; a bit reads as 0 or 1. Words are lent, not copied: every poll
    /// decodes through here.
    pub fn words(&self) -> Cow<'_, [u16]> {
        match self {
            ReadData::Words(words) => Cow::Borrowed(words),
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
    /// Function 22: the device changes only the bits the mask's AND clears.
    Mask(MaskWrite),
    /// The same change for a device without function 22: the register is read and written
    /// back, with nothing else on the line in between, by function 6 (or 16 when
    /// `multiple`, for devices that accept only that).
    MaskByRewrite { mask: MaskWrite, multiple: bool },
}

impl WriteData {
    pub fn function(&self) -> u8 {
        match self {
            WriteData::Coil(_) => 5,
            WriteData::Register(_) => 6,
            WriteData::Registers(_) => 16,
            WriteData::Mask(_) => 22,
            WriteData::MaskByRewrite {
                multiple: false, ..
            } => 6,
            WriteData::MaskByRewrite { multiple: true, .. } => 16,
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
    /// The port or connection is gone or cannot be opened.
    #[error("port unavailable: {0}")]
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

    /// The kind, as `bridge/stats` counts it.
    pub fn kind(&self) -> &'static str {
        match self {
            BusError::Exception(_) => "exception",
            BusError::Timeout(_) => "timeout",
            BusError::BadFrame(_) => "bad_frame",
            BusError::PortDown(_) | BusError::Stopped => "port",
        }
    }
}

/// Whether a failed attempt is tried again: a timeout or a garbled answer, while retries
/// are left.
#[derive(Debug)]
struct Retries {
    unit: UnitId,
    left: u32,
}

impl Retries {
    fn new(unit: UnitId, retries: u32) -> Retries {
        Retries {
            unit,
            left: retries,
        }
    }

    fn again<T>(&mut self, result: &Result<T, BusError>) -> bool {
        match result {
            Err(error @ (BusError::Timeout(_) | BusError::BadFrame(_))) if self.left > 0 => {
                self.left -= 1;
                tracing::debug!(unit = self.unit.get(), %error, "retrying");
                true
            }
            _ => false,
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, BusError>>;

/// The read after a write that went through: a failed one does not undo the write.
pub type ReadBack = Result<ReadData, BusError>;

/// A transaction and where its result goes.
#[derive(Debug)]
enum Job {
    /// A read, and whether it only probes an offline device (tried once, no retries).
    Read(ReadRequest, Reply<ReadData>, bool),
    Write(WriteRequest, Reply<()>),
    /// A write and the read of what the device made of it, with nothing between them; and
    /// whether it is one of a flood of commands (it then leaves a waiting poll the next
    /// turn).
    WriteAndRead(WriteRequest, ReadRequest, Reply<ReadBack>, bool),
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
        Self::submit(&self.polls, |reply| Job::Read(read, reply, false)).await
    }

    /// A poll that asks an offline device whether it is back: tried once, without
    /// retries, so that a dead device costs one timeout per probe.
    pub async fn probe(&self, read: ReadRequest) -> Result<ReadData, BusError> {
        Self::submit(&self.polls, |reply| Job::Read(read, reply, true)).await
    }

    /// A read on behalf of a command (the read-back after a write): goes before polls.
    pub async fn read_now(&self, read: ReadRequest) -> Result<ReadData, BusError> {
        Self::submit(&self.commands, |reply| Job::Read(read, reply, false)).await
    }

    /// A write: goes before any poll still waiting.
    pub async fn write(&self, write: WriteRequest) -> Result<(), BusError> {
        Self::submit(&self.commands, |reply| Job::Write(write, reply)).await
    }

    /// A command: the write, then the read of `read_back`, in one turn of the line (no
    /// other transaction between them); goes before any poll still waiting, unless it is
    /// one of a `flood` of commands that just went ahead of one. An error is the write's;
    /// the read-back's is inside.
    pub async fn write_and_read(
        &self,
        write: WriteRequest,
        read_back: ReadRequest,
        flood: bool,
    ) -> Result<ReadBack, BusError> {
        Self::submit(&self.commands, |reply| {
            Job::WriteAndRead(write, read_back, reply, flood)
        })
        .await
    }
}

impl Job {
    fn unit(&self) -> UnitId {
        match self {
            Job::Read(read, ..) => read.unit,
            Job::Write(write, _) | Job::WriteAndRead(write, ..) => write.unit,
        }
    }

    fn request(&self) -> Request<'_> {
        match self {
            Job::Read(read, ..) => transport::read_request(read),
            Job::Write(write, _) | Job::WriteAndRead(write, ..) => {
                transport::write_request(write).0
            }
        }
    }
}

/// Whether the port is open, for readiness and for `bridge/error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortStatus {
    /// Not tried yet.
    Starting,
    Open,
    /// It failed or cannot be opened; tried again every [`REOPEN_MAX`] at the latest.
    Down(String),
}

/// The bus task before it runs.
#[derive(Debug)]
pub struct BusTask {
    settings: Bus,
    timings: HashMap<UnitId, Timing>,
    commands: mpsc::Receiver<Job>,
    polls: mpsc::Receiver<Job>,
    stats: Arc<BusStats>,
    port_status: watch::Sender<PortStatus>,
}

/// Commands waiting at once; more wait for room in the queue.
const COMMAND_QUEUE: usize = 32;
/// Polls waiting at once. The scheduler never queues a read twice, so a plan longer than
/// this only makes some reads wait for room, in order.
const POLL_QUEUE: usize = 64;
/// First wait before reopening a failed port; doubles up to [`REOPEN_MAX`]. Opening a path
/// that is not there costs nothing, and values must flow within seconds of an adapter
/// coming back (SPEC "Hard lines").
const REOPEN_FIRST: Duration = Duration::from_millis(250);
const REOPEN_MAX: Duration = Duration::from_secs(1);

/// Each device's timing on the line.
fn timings(config: &Config) -> HashMap<UnitId, Timing> {
    config.devices.iter().map(|d| (d.unit, d.timing)).collect()
}

/// Whether the bus task of `old` cannot serve `new`: the line or a device's timing on it
/// changed. (How long commands wait for an offline device is not the bus task's.)
pub fn line_changed(old: &Config, new: &Config) -> bool {
    let old_bus = Bus {
        command_timeout: new.bus.command_timeout,
        ..old.bus.clone()
    };
    old_bus != new.bus || timings(old) != timings(new)
}

/// Creates the bus for `config`'s line and devices.
pub fn bus(config: &Config) -> (BusHandle, BusTask) {
    let (command_tx, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let (poll_tx, poll_rx) = mpsc::channel(POLL_QUEUE);
    (
        BusHandle {
            commands: command_tx,
            polls: poll_tx,
        },
        BusTask {
            settings: config.bus.clone(),
            timings: timings(config),
            commands: command_rx,
            polls: poll_rx,
            stats: Arc::default(),
            port_status: watch::Sender::new(PortStatus::Starting),
        },
    )
}

/// An outage of the port: since when, and how many opens failed.
#[derive(Debug)]
struct Outage {
    since: Instant,
    attempts: u32,
}

/// The port, open or waiting to be reopened.
struct Line {
    settings: Bus,
    timings: HashMap<UnitId, Timing>,
    stats: Arc<BusStats>,
    link: Option<Connection>,
    /// What the port's echo was found to be, kept while it is closed.
    echo_found: Option<bool>,
    reopen_at: Instant,
    backoff: Duration,
    outage: Option<Outage>,
    port_status: watch::Sender<PortStatus>,
}

impl Line {
    fn timing(&self, unit: UnitId) -> Timing {
        self.timings
            .get(&unit)
            .copied()
            .unwrap_or(self.settings.timing)
    }

    /// What the port is, in messages: "serial port" or "connection".
    fn port_kind(&self) -> &'static str {
        match self.settings.transport {
            Transport::Serial(_) => "serial port",
            Transport::Tcp { .. } | Transport::RtuOverTcp { .. } => "connection",
        }
    }

    /// Opens the port if it is closed and its back-off has passed. The outage ends with
    /// the first transaction that gets through, not here: an adapter that opens and then
    /// fails every read is still out.
    async fn open(&mut self) {
        if self.link.is_some() || Instant::now() < self.reopen_at {
            return;
        }
        let port = &self.settings.transport;
        match Connection::open(&self.settings, Arc::clone(&self.stats)).await {
            Ok(mut link) => {
                if self.outage.is_none() {
                    let line = port.has_line().then(|| self.settings.line.describe());
                    tracing::info!(%port, transport = %port.describe(), line, "{} open", self.port_kind());
                } else {
                    tracing::debug!(%port, "{} open again, trying it", self.port_kind());
                }
                link.remember_echo(self.echo_found);
                self.link = Some(link);
                self.port_status.send_replace(PortStatus::Open);
            }
            Err(e) => self.failed(format!("{port}: {e}")),
        }
    }

    /// A transaction got through the port: an outage is over.
    fn port_works(&mut self) {
        self.backoff = REOPEN_FIRST;
        if let Some(outage) = self.outage.take() {
            tracing::info!(
                port = %self.settings.transport,
                failed_attempts = outage.attempts,
                down_for = %humantime::format_duration(crate::clock::to_ms(outage.since.elapsed())),
                "{} open again", self.port_kind()
            );
        }
    }

    /// Closes the port at once (a vanished adapter held open keeps its device name taken)
    /// and tries again after a back-off. Said once per outage; attempts at debug level.
    fn failed(&mut self, error: String) {
        if let Some(link) = self.link.take() {
            self.echo_found = link.echo_found();
        }
        let port = &self.settings.transport;
        let kind = self.port_kind();
        match &mut self.outage {
            Some(outage) => {
                outage.attempts += 1;
                tracing::debug!(%port, %error, attempts = outage.attempts, "{kind} still unavailable");
            }
            None => {
                tracing::warn!(%port, %error, "{kind} unavailable: devices on it are offline until it is back; retrying every second");
                self.outage = Some(Outage {
                    since: Instant::now(),
                    attempts: 1,
                });
            }
        }
        self.port_status.send_replace(PortStatus::Down(error));
        self.reopen_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(REOPEN_MAX);
    }

    fn down_error(&self) -> BusError {
        match &*self.port_status.borrow() {
            PortStatus::Down(e) => BusError::PortDown(e.clone()),
            _ => BusError::PortDown("not open".to_owned()),
        }
    }

    /// Until when `job` must wait for an overdue answer it could be mistaken for.
    fn held_until(&mut self, job: &Job) -> Option<Instant> {
        let link = self.link.as_mut()?;
        link.held_until(job.unit(), &job.request())
    }

    async fn execute(&mut self, job: Job) {
        let timing = self.timing(job.unit());
        let retries = self.settings.retries;
        // A caller that gave up waiting is no reason to stop.
        match job {
            Job::Read(read, reply, probe) => {
                let retries = if probe { 0 } else { retries };
                let result = self
                    .run(read.unit, async |link| {
                        link.read(&read, timing, retries).await
                    })
                    .await;
                let _ = reply.send(result);
            }
            Job::Write(write, reply) => {
                let result = self
                    .run(write.unit, async |link| {
                        link.write(&write, timing, retries).await
                    })
                    .await;
                let _ = reply.send(result);
            }
            Job::WriteAndRead(write, read, reply, _) => {
                let result = self
                    .run(write.unit, async |link| {
                        link.write(&write, timing, retries).await?;
                        Ok(link.read(&read, timing, retries).await)
                    })
                    .await;
                if let Ok(Err(BusError::PortDown(e))) = &result {
                    self.failed(e.clone());
                }
                let _ = reply.send(result);
            }
        }
    }

    /// Runs one transaction on the port, opening it first if need be.
    async fn run<T>(
        &mut self,
        unit: UnitId,
        transaction: impl AsyncFnOnce(&mut Connection) -> Result<T, BusError>,
    ) -> Result<T, BusError> {
        self.open().await;
        let Some(link) = self.link.as_mut() else {
            let error = self.down_error();
            self.stats
                .record(unit.get(), Duration::ZERO, Duration::ZERO, Err(&error));
            return Err(error);
        };
        let result = transaction(link).await;
        match &result {
            Err(BusError::PortDown(e)) => self.failed(e.clone()),
            _ => self.port_works(),
        }
        result
    }

    /// Waits until the line may carry a request to a device with the bus's own timing.
    async fn until_quiet(&mut self) {
        if let Some(link) = &mut self.link {
            let quiet = link.quiet_at(self.settings.timing);
            link.sleep_until(quiet).await;
        }
    }

    /// Nothing more to wait for until the next job.
    fn rest(&mut self) {
        if let Some(link) = &mut self.link {
            link.rest();
        }
    }

    /// Waits for the port to reopen, or for bytes while answers are overdue.
    async fn idle(&mut self) {
        match self.link.as_mut() {
            None => {
                tokio::time::sleep_until(self.reopen_at).await;
                self.open().await;
            }
            Some(link) => match link.overdue_expiry() {
                Some(expiry) => {
                    let result = tokio::select! {
                        () = tokio::time::sleep_until(expiry) => Ok(()),
                        result = link.listen() => result,
                    };
                    if let Err(BusError::PortDown(e)) = result {
                        self.failed(e);
                    }
                }
                None => std::future::pending().await,
            },
        }
    }
}

/// Jobs taken from the queues, in order: commands first. A command of a flood (more of
/// them come than the line can carry: see [`BusHandle::write_and_read`]) leaves a waiting
/// poll the next turn, so under a flood each poll waits for one command at most; a command
/// now and then goes straight ahead of every poll.
#[derive(Debug, Default)]
struct Waiting {
    commands: VecDeque<Job>,
    polls: VecDeque<Job>,
    /// The last job was a command of a flood and polls wait: the next turn is a poll's.
    poll_owed: bool,
}

impl Waiting {
    fn is_empty(&self) -> bool {
        self.commands.is_empty() && self.polls.is_empty()
    }

    /// The first job that may go now, or until when all must wait.
    fn next(&mut self, line: &mut Line) -> Result<Job, Option<Instant>> {
        let mut until: Option<Instant> = None;
        let polls_first = self.poll_owed;
        for is_command in [!polls_first, polls_first] {
            let queue = if is_command {
                &mut self.commands
            } else {
                &mut self.polls
            };
            for index in 0..queue.len() {
                match line.held_until(&queue[index]) {
                    None => {
                        let job = queue.remove(index).ok_or(None)?;
                        let flood = matches!(job, Job::WriteAndRead(.., true));
                        self.poll_owed = flood && !self.polls.is_empty();
                        return Ok(job);
                    }
                    Some(held) => until = Some(until.map_or(held, |u| u.min(held))),
                }
            }
        }
        Err(until)
    }
}

impl BusTask {
    /// Counters of every transaction this bus runs.
    pub fn stats(&self) -> Arc<BusStats> {
        Arc::clone(&self.stats)
    }

    /// Whether the port is open right now.
    pub fn port_status(&self) -> watch::Receiver<PortStatus> {
        self.port_status.subscribe()
    }

    /// Moves what was queued meanwhile to `waiting`.
    fn take_queued(&mut self, waiting: &mut Waiting) {
        while let Ok(job) = self.commands.try_recv() {
            waiting.commands.push_back(job);
        }
        while let Ok(job) = self.polls.try_recv() {
            waiting.polls.push_back(job);
        }
    }

    /// Runs transactions until `shutdown` fires or every handle is gone.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut line = Line {
            settings: self.settings.clone(),
            timings: std::mem::take(&mut self.timings),
            stats: Arc::clone(&self.stats),
            link: None,
            echo_found: None,
            reopen_at: Instant::now(),
            backoff: REOPEN_FIRST,
            outage: None,
            port_status: self.port_status.clone(),
        };
        line.open().await;
        let mut waiting = Waiting::default();
        let mut watchdog = Watchdog::from_env();
        loop {
            watchdog.pet();
            self.take_queued(&mut waiting);
            // The next job is chosen when the line is free to carry it, not before: a
            // command queued during the silence still goes ahead of waiting polls.
            if !waiting.is_empty() {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = line.until_quiet() => {}
                }
                self.take_queued(&mut waiting);
            }
            let held_until = match waiting.next(&mut line) {
                Ok(job) => {
                    line.execute(job).await;
                    continue;
                }
                Err(until) => until,
            };
            if waiting.is_empty() && self.commands.is_closed() && self.polls.is_closed() {
                break;
            }
            line.rest();
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = crate::clock::sleep_until(watchdog.next()) => {}
                Some(job) = self.commands.recv() => waiting.commands.push_back(job),
                Some(job) = self.polls.recv() => waiting.polls.push_back(job),
                () = crate::clock::sleep_until(held_until) => {}
                () = line.idle() => {}
            }
        }
    }
}

/// systemd's watchdog, when the unit has one: petted between transactions, so a stuck bus
/// gets the daemon restarted.
#[derive(Debug)]
struct Watchdog {
    every: Option<Duration>,
    next: Instant,
}

impl Watchdog {
    fn from_env() -> Watchdog {
        Watchdog {
            every: sd_notify::watchdog_enabled().map(|timeout| timeout / 2),
            next: Instant::now(),
        }
    }

    fn pet(&mut self) {
        if let Some(every) = self.every
            && Instant::now() >= self.next
        {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            self.next = Instant::now() + every;
        }
    }

    fn next(&self) -> Option<Instant> {
        self.every.map(|_| self.next)
    }
}
