//! Opening the line: a serial port with the configured character format.
//!
//! The port is registered with the runtime for readability only: tokio-serial's stream
//! also waits for it to become writable, and a tty says so after every write, one more
//! turn of the runtime per request (BENCHMARKS.md, issue 10).

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::time::Sleep;
use tokio_serial::{DataBits, StopBits};

use crate::config::{LineSettings, Parity};

/// A byte stream the bus can run RTU frames over.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How long a request that the port's output buffer cannot take waits before it is tried
/// again. The bus writes only to a quiet line, so the buffer is empty unless the adapter
/// is stuck.
const OUTPUT_FULL_PAUSE: Duration = Duration::from_millis(1);

/// An open serial port.
struct SerialLine {
    port: AsyncFd<mio_serial::SerialStream>,
    /// While the output buffer is full: when to try the write again.
    output_full: Option<Pin<Box<Sleep>>>,
}

/// What the error of a port that another program holds open says (the daemon holds its
/// port for itself).
pub const IN_USE: &str = "in use by another program";

/// Opens `path` with the given line settings, for this program alone.
pub fn open(path: &str, line: &LineSettings) -> io::Result<Box<dyn Stream>> {
    let builder = tokio_serial::new(path, line.baud)
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
        });
    let port = mio_serial::SerialStream::open(&builder).map_err(|e| match e.kind {
        // What serialport says when another program holds the port exclusively, as
        // every program built on it does (its `TIOCEXCL` or its `flock`).
        tokio_serial::ErrorKind::NoDevice => io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!("{IN_USE} ({})", e.description),
        ),
        _ => io::Error::from(e),
    })?;
    // SAFETY: the stream owns its descriptor and closes it only when dropped, after the
    // registration that wraps it.
    let port = unsafe { AsyncFd::register_with_interest(port, Interest::READABLE)? };
    Ok(Box::new(SerialLine {
        port,
        output_full: None,
    }))
}

impl AsyncRead for SerialLine {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.port.poll_read_ready_mut(cx))?;
            let unfilled = buf.initialize_unfilled();
            let room = unfilled.len();
            match guard.get_inner_mut().read(unfilled) {
                Ok(n) => {
                    // Less than there was room for: the port has nothing more right now,
                    // and asking again would only be told so. Bytes that come meanwhile
                    // make the port ready again.
                    if n < room {
                        guard.clear_ready();
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SerialLine {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            if let Some(pause) = self.output_full.as_mut() {
                ready!(pause.as_mut().poll(cx));
                self.output_full = None;
            }
            match self.port.get_mut().write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.output_full = Some(Box::pin(tokio::time::sleep(OUTPUT_FULL_PAUSE)));
                }
                written => return Poll::Ready(written),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
