//! The simulated slave bus: the units of a config answering on a serial port or a new
//! pseudo-terminal, as real RTU slaves do (silence for other unit ids and bad CRCs), with
//! fault injection for tests and an optional wire-speed mode that holds each answer back as
//! long as a real line at the configured baud would.

pub mod frame;
mod line;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_serial::{SerialPort, SerialStream};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, LineSettings, Table};
use frame::{Memory, Parsed};
use line::MasterLine;
pub use line::parse as parse_line;

/// A misbehaviour injected for one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Never answers, as an absent or dead device.
    Silent,
    /// Answers after this delay.
    Late(Duration),
    /// Answers with a corrupted CRC.
    BadCrc,
    /// Answers every request with this exception code.
    Exception(u8),
    /// Answers, then leaves garbage on the line.
    Noise,
}

/// How frames travel over a TCP connection to the simulated slave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpFraming {
    /// Modbus TCP: MBAP header and PDU.
    Mbap,
    /// RTU frames, as a serial device server in transparent mode passes them on.
    Rtu,
}

/// How the line between the gateway and the simulated units misbehaves, whoever is asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wire {
    /// Holds answers back as a line with these settings would (`None`: answer at once).
    pub speed: Option<LineSettings>,
    /// Hands every request back to the master, as adapters with local echo do.
    pub echo: bool,
    /// Puts a `0x00` before every answer, as a line that floats while the driver turns on.
    pub leading_zero: bool,
    /// Another master asks unit [`FOREIGN_UNIT`] something this often; every other time its
    /// exchange falls into the wait for an answer (15 ms before it), else between
    /// transactions.
    pub foreign_every: Option<Duration>,
    /// The units' line settings: they answer only a master that set these on the
    /// pseudo-terminal (`None`: any). See [`line`].
    pub line: Option<LineSettings>,
}

/// The unit the other master on a [`Wire`] talks to; no config of the tests uses it.
pub const FOREIGN_UNIT: u8 = 99;

/// A request that reached the slave (good CRC, any unit id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub unit: u8,
    pub function: u8,
    pub address: u16,
    /// Read count or written quantity; for 5 and 6 the value written; for 22 the AND mask.
    pub count: u16,
    /// Registers written by 6 or 16 (coils by 5 as 0/1); for 22 the AND and OR masks.
    pub values: Vec<u16>,
    /// When the whole request had arrived.
    pub at: Instant,
}

/// Requests remembered for inspection; older ones are dropped.
const SEEN_KEPT: usize = 10_000;
/// Bytes written as line noise by [`Fault::Noise`].
const NOISE: [u8; 6] = [0x00, 0xFF, 0x00, 0x55, 0xAA, 0x00];

#[derive(Debug, Default)]
struct State {
    units: BTreeMap<u8, Memory>,
    faults: HashMap<u8, Fault>,
    queued: HashMap<u8, VecDeque<Fault>>,
    /// Faults for reads and writes that start at an address, before the unit's own.
    address_faults: HashMap<(u8, u16), Fault>,
    seen: VecDeque<Seen>,
    wire: Wire,
    /// Foreign exchanges so far, and whether one waits to go before the next answer.
    foreign_count: u64,
    foreign_before_answer: bool,
}

/// The simulated bus. Clones share state, so a test can inspect and steer a running one.
#[derive(Debug, Clone, Default)]
pub struct Simulator {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

impl Simulator {
    /// The devices of `config`, every address of every register present, with the
    /// initial values of its `[sim]` section (zero elsewhere).
    pub fn from_config(config: &Config) -> Simulator {
        let sim = Simulator::default();
        {
            let mut state = sim.lock();
            for device in &config.devices {
                let memory = state.units.entry(device.unit.get()).or_default();
                for register in &device.registers {
                    for address in register.address..=register.address + (register.width() - 1) {
                        memory.set(register.table, address, 0);
                    }
                }
            }
            for initial in &config.sim {
                let device = &config.devices[initial.device];
                for (index, value) in &initial.values {
                    let register = &device.registers[*index];
                    let memory = state.units.entry(device.unit.get()).or_default();
                    // A bit is set in the word the other bits of it share.
                    let current: Vec<u16> = (register.address..)
                        .take(usize::from(register.width()))
                        .map(|address| memory.get(register.table, address).unwrap_or(0))
                        .collect();
                    // Validation encoded these already.
                    let Ok(words) = register.codec.encode_content(&current, value) else {
                        continue;
                    };
                    for (address, word) in (register.address..).zip(words) {
                        memory.set(register.table, address, word);
                    }
                }
            }
        }
        sim
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the tables half-written in a way that matters here.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Injects `fault` for `unit`, or clears it with `None`.
    pub fn set_fault(&self, unit: u8, fault: Option<Fault>) {
        let mut state = self.lock();
        match fault {
            Some(f) => state.faults.insert(unit, f),
            None => state.faults.remove(&unit),
        };
    }

    /// Gives `unit`'s next requests these faults, one each, before any set by
    /// [`Simulator::set_fault`]: exact counts for tests.
    pub fn queue_faults(&self, unit: u8, faults: impl IntoIterator<Item = Fault>) {
        self.lock().queued.entry(unit).or_default().extend(faults);
    }

    /// Holds answers back as a line with these settings would (`None`: answer at once).
    pub fn set_wire_speed(&self, line: Option<LineSettings>) {
        self.lock().wire.speed = line;
    }

    /// How the line misbehaves from now on.
    pub fn set_wire(&self, wire: Wire) {
        self.lock().wire = wire;
    }

    /// Injects `fault` for requests to `unit` that start at `address` (before any fault
    /// of the unit), or clears it with `None`.
    pub fn set_address_fault(&self, unit: u8, address: u16, fault: Option<Fault>) {
        let mut state = self.lock();
        match fault {
            Some(f) => state.address_faults.insert((unit, address), f),
            None => state.address_faults.remove(&(unit, address)),
        };
    }

    /// The requests that reached the slave so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.iter().cloned().collect()
    }

    /// A holding register's content.
    pub fn holding(&self, unit: u8, address: u16) -> Option<u16> {
        self.lock().units.get(&unit)?.holding.get(&address).copied()
    }

    /// Sets an address of a table (creating it), as the device itself would.
    pub fn set(&self, unit: u8, table: Table, address: u16, word: u16) {
        self.lock()
            .units
            .entry(unit)
            .or_default()
            .set(table, address, word);
    }

    /// Removes a holding register, as a device that lacks it: reads that cover it are
    /// refused with exception 2.
    pub fn remove_holding(&self, unit: u8, address: u16) {
        if let Some(memory) = self.lock().units.get_mut(&unit) {
            memory.holding.remove(&address);
        }
    }

    /// Waits until `check` holds for the requests seen, or `timeout` passes.
    pub async fn wait_for_seen(&self, timeout: Duration, check: impl Fn(&[Seen]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if check(self.lock().seen.make_contiguous()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// Opens a pseudo-terminal: returns the end to serve, the end to hold open (so the
    /// line stays up between masters) and the path a master opens.
    pub fn open_pty() -> io::Result<(SerialStream, SerialStream, String)> {
        let (serve, hold) = SerialStream::pair().map_err(io::Error::from)?;
        // Neither end may leak into child processes: a master held open elsewhere keeps the
        // line up after the simulator closes it, as an adapter that cannot be unplugged.
        close_on_exec(&serve)?;
        close_on_exec(&hold)?;
        let path = hold
            .name()
            .ok_or_else(|| io::Error::other("pseudo-terminal has no name"))?;
        Ok((serve, hold, path))
    }

    /// Answers requests on `port` until `shutdown`.
    pub async fn serve(&self, port: SerialStream, shutdown: CancellationToken) -> io::Result<()> {
        self.serve_rtu(port, shutdown, false).await
    }

    /// Answers RTU frames on `port` until `shutdown`, or until it closes when
    /// `ends_at_close` (a socket; a pseudo-terminal only goes quiet).
    async fn serve_rtu<S: AsyncRead + AsyncWrite + Unpin + MasterLine>(
        &self,
        mut port: S,
        shutdown: CancellationToken,
        ends_at_close: bool,
    ) -> io::Result<()> {
        let mut buf: Vec<u8> = Vec::with_capacity(512);
        let mut chunk = [0u8; 512];
        let mut next_foreign = None;
        loop {
            let foreign_every = self.lock().wire.foreign_every;
            if next_foreign.is_none() || foreign_every.is_none() {
                next_foreign = foreign_every.map(|every| tokio::time::Instant::now() + every);
            }
            // A frame ends with silence: drop a partial one the line has given up on.
            let frame_timeout = self.frame_timeout();
            let read = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                read = port.read(&mut chunk) => Some(read),
                () = tokio::time::sleep(frame_timeout), if !buf.is_empty() => None,
                () = crate::clock::sleep_until(next_foreign) => {
                    next_foreign = None;
                    if self.foreign_now() {
                        port.write_all(&foreign_exchange()).await?;
                    }
                    continue;
                }
            };
            match read {
                None => buf.clear(),
                Some(Ok(0)) if ends_at_close => return Ok(()),
                Some(Ok(0)) => idle().await,
                Some(Ok(n)) => {
                    buf.extend_from_slice(&chunk[..n]);
                    self.answer_frames(&mut buf, &mut port).await?;
                }
                // A pty master reads EIO while no one holds the other end: the line is idle.
                Some(Err(e)) if e.raw_os_error() == Some(5) => idle().await,
                Some(Err(e)) => return Err(e),
            }
        }
    }

    /// Counts a foreign exchange: true when it goes on the line now, false when it waits
    /// for the next answer.
    fn foreign_now(&self) -> bool {
        let mut state = self.lock();
        state.foreign_count += 1;
        if state.foreign_count.is_multiple_of(2) {
            state.foreign_before_answer = true;
            return false;
        }
        true
    }

    fn frame_timeout(&self) -> Duration {
        let line = self.lock().wire.speed.unwrap_or(LineSettings {
            baud: 9600,
            parity: crate::config::Parity::None,
            data_bits: 8,
            stop_bits: 1,
        });
        line.frame_silence().max(Duration::from_millis(20))
    }

    async fn answer_frames<S: AsyncWrite + Unpin + MasterLine>(
        &self,
        buf: &mut Vec<u8>,
        port: &mut S,
    ) -> io::Result<()> {
        loop {
            match frame::parse_request(buf) {
                Parsed::Incomplete => return Ok(()),
                Parsed::Garbage => {
                    buf.remove(0);
                }
                Parsed::Frame(len) => {
                    let request: Vec<u8> = buf.drain(..len).collect();
                    let wire = self.lock().wire;
                    if wire.echo {
                        port.write_all(&request).await?;
                    }
                    if !line::hears(wire.line, port) {
                        continue;
                    }
                    if let Some(answer) = self.answer(&request) {
                        self.send(port, request.len(), answer).await?;
                    }
                }
            }
        }
    }

    /// The RTU frame to send back for one good request, after any fault; `None` for
    /// silence.
    fn answer(&self, request: &[u8]) -> Option<(Vec<u8>, Option<Fault>)> {
        let (unit, pdu) = (request[0], &request[1..request.len() - 2]);
        let (response, fault) = self.answer_pdu(unit, pdu)?;
        let mut frame = frame::with_crc([vec![unit], response].concat());
        if fault == Some(Fault::BadCrc) {
            let last = frame.len() - 1;
            frame[last] ^= 0x5A;
        }
        Some((frame, fault))
    }

    /// The response PDU to a request PDU for `unit`, after any fault; `None` for silence.
    fn answer_pdu(&self, unit: u8, pdu: &[u8]) -> Option<(Vec<u8>, Option<Fault>)> {
        let mut state = self.lock();
        if state.seen.len() == SEEN_KEPT {
            state.seen.pop_front();
        }
        state.seen.push_back(seen(unit, pdu));
        self.changed.notify_waiters();
        let queued = state.queued.get_mut(&unit).and_then(VecDeque::pop_front);
        let address = u16::from_be_bytes([
            pdu.get(1).copied().unwrap_or(0),
            pdu.get(2).copied().unwrap_or(0),
        ]);
        let fault = queued
            .or_else(|| state.address_faults.get(&(unit, address)).copied())
            .or_else(|| state.faults.get(&unit).copied());
        if unit == 0 {
            // Broadcast: every unit acts, none answers.
            for memory in state.units.values_mut() {
                let _ = memory.execute(pdu);
            }
            return None;
        }
        let memory = state.units.get_mut(&unit)?;
        let result = match fault {
            Some(Fault::Silent) => return None,
            Some(Fault::Exception(code)) => Err(code),
            _ => memory.execute(pdu),
        };
        let response = match result {
            Ok(response) => response,
            Err(code) => vec![pdu.first().copied().unwrap_or(0) | 0x80, code],
        };
        Some((response, fault))
    }

    /// Serves every connection to `listener` until `shutdown`: Modbus TCP, or RTU frames
    /// over TCP as a serial device server in transparent mode passes them on.
    pub async fn serve_tcp(
        &self,
        listener: tokio::net::TcpListener,
        framing: TcpFraming,
        shutdown: CancellationToken,
    ) -> io::Result<()> {
        loop {
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                accepted = listener.accept() => accepted?,
            };
            tracing::debug!(%peer, "simulated slave: a master connected");
            let sim = self.clone();
            let token = shutdown.clone();
            tokio::spawn(async move {
                let served = match framing {
                    TcpFraming::Mbap => sim.serve_mbap(stream, token).await,
                    TcpFraming::Rtu => sim.serve_rtu(stream, token, true).await,
                };
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "simulated slave: connection ended");
                }
            });
        }
    }

    /// Modbus TCP on one connection: a 7-byte MBAP header (transaction, protocol, length,
    /// unit), then the PDU; the answer carries the same transaction id.
    async fn serve_mbap(
        &self,
        mut stream: tokio::net::TcpStream,
        shutdown: CancellationToken,
    ) -> io::Result<()> {
        let mut header = [0u8; 7];
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                read = stream.read_exact(&mut header) => match read {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e),
                },
            }
            let length = usize::from(u16::from_be_bytes([header[4], header[5]]));
            if !(2..=254).contains(&length) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("MBAP length {length}"),
                ));
            }
            let mut pdu = vec![0u8; length - 1];
            stream.read_exact(&mut pdu).await?;
            let unit = header[6];
            let Some((response, fault)) = self.answer_pdu(unit, &pdu) else {
                continue;
            };
            if let Some(Fault::Late(delay)) = fault {
                tokio::time::sleep(delay).await;
            }
            // At most 253 bytes of PDU and the unit.
            let length = (response.len() + 1) as u16;
            let mut answer = Vec::with_capacity(7 + response.len());
            answer.extend_from_slice(&header[..4]);
            answer.extend_from_slice(&length.to_be_bytes());
            answer.push(unit);
            answer.extend(response);
            stream.write_all(&answer).await?;
        }
    }

    async fn send<S: AsyncWrite + Unpin>(
        &self,
        port: &mut S,
        request_len: usize,
        (mut frame, fault): (Vec<u8>, Option<Fault>),
    ) -> io::Result<()> {
        let (wire, foreign) = {
            let mut state = self.lock();
            (state.wire, std::mem::take(&mut state.foreign_before_answer))
        };
        if let Some(line) = wire.speed {
            // The request was still arriving, and the answer takes its own time to travel.
            // Frames are at most 256 bytes.
            let chars = (request_len + frame.len()) as f64;
            sleep_precisely(line.frame_silence() + line.chars(chars)).await;
        }
        if let Some(Fault::Late(delay)) = fault {
            tokio::time::sleep(delay).await;
        }
        if foreign {
            port.write_all(&foreign_exchange()).await?;
            tokio::time::sleep(FOREIGN_LEAD).await;
        }
        if wire.leading_zero {
            frame.insert(0, 0x00);
        }
        if fault == Some(Fault::Noise) {
            frame.extend_from_slice(&NOISE);
        }
        port.write_all(&frame).await?;
        port.flush().await
    }
}

/// How long before its answer a foreign exchange comes when it falls into the wait.
const FOREIGN_LEAD: Duration = Duration::from_millis(15);

/// Another master reads a holding register of [`FOREIGN_UNIT`], which answers.
fn foreign_exchange() -> Vec<u8> {
    let request = frame::with_crc(vec![FOREIGN_UNIT, 3, 0, 1, 0, 1]);
    let answer = frame::with_crc(vec![FOREIGN_UNIT, 3, 2, 0x12, 0x34]);
    [request, answer].concat()
}

/// What a request asked, for [`Simulator::seen`].
fn seen(unit: u8, pdu: &[u8]) -> Seen {
    let function = pdu[0];
    let word = |at: usize| {
        pdu.get(at..at + 2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    };
    let values = match function {
        5 => vec![u16::from(word(3) == 0xFF00)],
        6 => vec![word(3)],
        22 => vec![word(3), word(5)],
        16 => pdu
            .get(6..)
            .unwrap_or_default()
            .chunks_exact(2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .collect(),
        _ => Vec::new(),
    };
    Seen {
        unit,
        function,
        address: word(1),
        count: word(3),
        values,
        at: Instant::now(),
    }
}

fn close_on_exec(port: &SerialStream) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: F_SETFD on a descriptor the stream owns and keeps open; no memory involved.
    let result = unsafe { libc::fcntl(port.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    if result == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sleeps `duration` to within a few microseconds: tokio's timer rounds up to whole
/// milliseconds, which at wire speed would add up to a millisecond to every answer. The
/// last stretch is spent yielding in a loop.
async fn sleep_precisely(duration: Duration) {
    const SPIN: Duration = Duration::from_millis(2);
    let deadline = Instant::now() + duration;
    if let Some(coarse) = duration.checked_sub(SPIN) {
        tokio::time::sleep(coarse).await;
    }
    while Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
}

async fn idle() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Value;

    /// Every layout of issue 15 on one unit, with `[sim]` values for each.
    const LAYOUTS: &str = r#"
bus = { port = "/dev/null" }
[[device]]
name = "d"
unit = 5
register = [
  { name = "serial", address = 0, type = "string", length = 4 },
  { name = "model", address = 4, type = "string", length = 3, byte_order = "little", writable = true },
  { name = "energy", address = 10, type = "u64" },
  { name = "energy_le", address = 14, type = "u64", word_order = "little" },
  { name = "offset", address = 18, type = "i64", word_order = "little" },
  { name = "ratio", address = 22, type = "f64" },
  { name = "ratio_le", address = 26, type = "f64", word_order = "little", byte_order = "little" },
  { name = "swapped", address = 30, byte_order = "little" },
  { name = "ready", address = 31, bit = 0 },
  { name = "heating", address = 31, bit = 3, writable = true, write_function = 22 },
  { name = "alarm", address = 31, bit = 15 },
  { name = "mode", address = 32, values = { 0 = "off", 1 = "heat", 2 = "cool" }, writable = true },
  { name = "odd_mode", address = 33, values = { 0 = "off" } },
]
[sim.d]
serial = "SN-42"
model = "X1"
energy = 9007199254740993
energy_le = 1234567890123
offset = -2
ratio = 0.1
ratio_le = -3.4e38
swapped = 0x1234
ready = true
heating = false
alarm = 1
mode = "cool"
odd_mode = 7
"#;

    fn layouts() -> (Config, Simulator) {
        let config = crate::config::parse(LAYOUTS, std::path::Path::new("t")).unwrap();
        let sim = Simulator::from_config(&config);
        (config, sim)
    }

    /// What the gateway would read of a register from the simulated unit.
    fn read(config: &Config, sim: &Simulator, name: &str) -> Value {
        let register = config.devices[0]
            .registers
            .iter()
            .find(|r| r.name == name)
            .unwrap();
        let words: Vec<u16> = (register.address..)
            .take(usize::from(register.width()))
            .map(|a| sim.holding(5, a).unwrap())
            .collect();
        register.codec.decode(&words).unwrap()
    }

    #[test]
    fn serves_every_layout_from_sim_values() {
        let (config, sim) = layouts();
        let text = |t: &str| Value::Text(t.to_owned());
        assert_eq!(read(&config, &sim, "serial"), text("SN-42"));
        assert_eq!(sim.holding(5, 0), Some(0x534E));
        assert_eq!(read(&config, &sim, "model"), text("X1"));
        assert_eq!(
            sim.holding(5, 4),
            Some(0x3158),
            "'X' '1' with the bytes swapped"
        );
        assert_eq!(
            read(&config, &sim, "energy"),
            Value::Integer(9_007_199_254_740_993)
        );
        assert_eq!(sim.holding(5, 13), Some(1), "the low word last");
        assert_eq!(
            read(&config, &sim, "energy_le"),
            Value::Integer(1_234_567_890_123)
        );
        assert_eq!(read(&config, &sim, "offset"), Value::Integer(-2));
        assert_eq!(sim.holding(5, 18), Some(0xFFFE), "the low word first");
        assert_eq!(read(&config, &sim, "ratio"), Value::Number(0.1));
        assert_eq!(read(&config, &sim, "ratio_le"), Value::Number(-3.4e38));
        assert_eq!(read(&config, &sim, "swapped"), Value::Integer(0x1234));
        assert_eq!(sim.holding(5, 30), Some(0x3412));
        // Three bits of one word: 0x8001.
        assert_eq!(sim.holding(5, 31), Some(0x8001));
        assert_eq!(read(&config, &sim, "heating"), Value::Bool(false));
        assert_eq!(read(&config, &sim, "mode"), text("cool"));
        assert_eq!(sim.holding(5, 32), Some(2));
        // A raw value the table does not name can be served, to see it published.
        assert_eq!(read(&config, &sim, "odd_mode"), Value::Integer(7));
    }

    #[test]
    fn function_22_and_function_16_change_what_is_served() {
        let (config, sim) = layouts();
        // Bit 3 on by a mask write: the other bits stay.
        let (answer, _) = sim
            .answer_pdu(5, &[22, 0, 31, 0xFF, 0xF7, 0, 0x08])
            .unwrap();
        assert_eq!(answer, [22, 0, 31, 0xFF, 0xF7, 0, 0x08]);
        assert_eq!(sim.holding(5, 31), Some(0x8009));
        assert_eq!(read(&config, &sim, "heating"), Value::Bool(true));
        assert_eq!(read(&config, &sim, "alarm"), Value::Bool(true));
        let seen = sim.seen();
        assert_eq!(
            (seen[0].function, seen[0].values.clone()),
            (22, vec![0xFFF7, 0x0008])
        );
        // A string written with function 16, padded with NULs.
        let model = &config.devices[0].registers[1];
        let words = model.codec.encode(&Value::Text("Y25".into())).unwrap();
        let mut pdu = vec![16, 0, 4, 0, 3, 6];
        pdu.extend(words.iter().flat_map(|w| w.to_be_bytes()));
        let (answer, _) = sim.answer_pdu(5, &pdu).unwrap();
        assert_eq!(answer, [16, 0, 4, 0, 3]);
        assert_eq!(read(&config, &sim, "model"), Value::Text("Y25".into()));
        assert_eq!(sim.holding(5, 6), Some(0));
    }
}
