//! Opening the line: a serial port with the configured character format.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_serial::{DataBits, SerialPortBuilderExt, StopBits};

use crate::config::{LineSettings, Parity};

/// A byte stream the bus can run RTU frames over.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// What the error of a port that another program holds open says (the daemon holds its
/// port for itself).
pub const IN_USE: &str = "in use by another program";

/// Opens `path` with the given line settings, for this program alone.
pub fn open(path: &str, line: &LineSettings) -> io::Result<Box<dyn Stream>> {
    let stream = tokio_serial::new(path, line.baud)
        .parity(match line.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Even => tokio_serial::Parity::Even,
            Parity::Odd => tokio_serial::Parity::Odd,
        })
        .data_bits(match line.data_bits {
            5 => DataBits::Five,
            6 => DataBits::Six,
            7 => DataBits::Seven,
            _ => DataBits::Eight,
        })
        .stop_bits(if line.stop_bits == 2 {
            StopBits::Two
        } else {
            StopBits::One
        })
        .open_native_async()
        .map_err(|e| match e.kind {
            // What serialport says when another program holds the port exclusively, as
            // every program built on it does (its `TIOCEXCL` or its `flock`).
            tokio_serial::ErrorKind::NoDevice => io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!("{IN_USE} ({})", e.description),
            ),
            _ => io::Error::from(e),
        })?;
    Ok(Box::new(stream))
}
