//! The transport, chosen once when the port opens (SPEC "Transports"): RTU on a serial
//! port, RTU over a TCP socket to a serial device server, or Modbus TCP. The bus task sees
//! one [`Connection`] whatever it is.

use std::borrow::Cow;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_modbus::{Request, Response};

use super::link::Link;
use super::tcp::TcpLink;
use super::{BusError, ReadData, WriteData, WriteRequest, port};
use crate::config::{Bus, Table, Timing, Transport, UnitId};
use crate::plan::ReadRequest;
use crate::stats::BusStats;

/// How long a TCP connection may take to open, name lookup included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An open port or connection.
#[derive(Debug)]
pub enum Connection {
    Rtu(Box<Link>),
    Tcp(TcpLink),
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
        WriteData::Mask(mask) => (
            Request::MaskWriteRegister(address, mask.and_mask, mask.or_mask),
            Response::MaskWriteRegister(address, mask.and_mask, mask.or_mask),
        ),
        // Its first transaction, the read of the register.
        WriteData::MaskByRewrite { .. } => {
            let read = Request::ReadHoldingRegisters(address, 1);
            (read, Response::ReadHoldingRegisters(Vec::new()))
        }
    }
}

/// Connects to `host:port`, resolving the name now (it may have moved since the last try).
async fn connect(host: &str, port: u16) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no connection within {}",
                    humantime::format_duration(CONNECT_TIMEOUT)
                ),
            )
        })??;
    // Requests are small and each waits for its answer: no point holding them back.
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl Connection {
    /// Opens the port or connects; transactions are counted in `stats`.
    pub async fn open(settings: &Bus, stats: Arc<BusStats>) -> io::Result<Connection> {
        Ok(match &settings.transport {
            Transport::Serial(path) => Connection::Rtu(Box::new(Link::new(
                port::open(path, &settings.line)?,
                settings,
                stats,
            ))),
            Transport::RtuOverTcp { host, port } => Connection::Rtu(Box::new(Link::new(
                Box::new(connect(host, *port).await?),
                settings,
                stats,
            ))),
            Transport::Tcp { host, port } => {
                Connection::Tcp(TcpLink::new(connect(host, *port).await?, stats))
            }
        })
    }

    async fn transact(
        &mut self,
        unit: UnitId,
        request: &Request<'_>,
        timing: Timing,
        retries: u32,
    ) -> Result<Response, BusError> {
        match self {
            Connection::Rtu(link) => link.transact(unit, request, timing, retries).await,
            Connection::Tcp(link) => link.transact(unit, request, timing, retries).await,
        }
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
        let rewrite;
        let write = match write.data {
            WriteData::MaskByRewrite { mask, multiple } => {
                let read = ReadRequest {
                    unit: write.unit,
                    table: Table::Holding,
                    address: write.address,
                    count: 1,
                };
                let word = match self.read(&read, timing, retries).await? {
                    ReadData::Words(words) if words.len() == 1 => words[0],
                    other => {
                        return Err(BusError::BadFrame(format!(
                            "answer does not match the read: {other:?}"
                        )));
                    }
                };
                let word = mask.apply(word);
                rewrite = WriteRequest {
                    data: if multiple {
                        WriteData::Registers(vec![word])
                    } else {
                        WriteData::Register(word)
                    },
                    ..write.clone()
                };
                &rewrite
            }
            _ => write,
        };
        let (request, confirmation) = write_request(write);
        match self.transact(write.unit, &request, timing, retries).await? {
            answer if answer == confirmation => Ok(()),
            other => Err(BusError::BadFrame(format!(
                "answer does not match the write: {other:?}"
            ))),
        }
    }

    /// When the line may carry a request to a device with `timing` (at once over Modbus
    /// TCP, which has no shared line).
    pub fn quiet_at(&self, timing: Timing) -> Instant {
        match self {
            Connection::Rtu(link) => link.quiet_at(timing),
            Connection::Tcp(_) => Instant::now(),
        }
    }

    /// Waits until `deadline`: on the line's own timer where there is a line.
    pub async fn sleep_until(&mut self, deadline: Instant) {
        match self {
            Connection::Rtu(link) => link.sleep_until(deadline).await,
            Connection::Tcp(_) => tokio::time::sleep_until(deadline).await,
        }
    }

    /// Nothing more to wait for until the next job.
    pub fn rest(&mut self) {
        if let Connection::Rtu(link) = self {
            link.rest();
        }
    }

    /// Until when `request` must wait for an overdue answer it could be mistaken for.
    pub fn held_until(&mut self, unit: UnitId, request: &Request<'_>) -> Option<Instant> {
        match self {
            Connection::Rtu(link) => link.held_until(unit, request),
            Connection::Tcp(_) => None,
        }
    }

    /// When the next overdue answer stops being expected.
    pub fn overdue_expiry(&mut self) -> Option<Instant> {
        match self {
            Connection::Rtu(link) => link.overdue_expiry(),
            Connection::Tcp(_) => None,
        }
    }

    /// What was found out about the adapter's echo (RTU only).
    pub fn echo_found(&self) -> Option<bool> {
        match self {
            Connection::Rtu(link) => link.echo_found(),
            Connection::Tcp(_) => None,
        }
    }

    /// What an earlier opening of the port found out about the echo.
    pub fn remember_echo(&mut self, echo_found: Option<bool>) {
        if let Connection::Rtu(link) = self {
            link.remember_echo(echo_found);
        }
    }

    /// Waits for bytes while the bus is idle (only while answers are overdue).
    pub async fn listen(&mut self) -> Result<(), BusError> {
        match self {
            Connection::Rtu(link) => link.listen().await,
            Connection::Tcp(_) => std::future::pending().await,
        }
    }
}
