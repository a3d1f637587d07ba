//! The serial port as the Modbus client sees it: a `SerialStream` that throws away whatever
//! is left in the receive buffer before each request (late answers, line noise), and counts
//! the bytes that pass so a timeout can be told apart from a garbled answer.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_serial::{
    ClearBuffer, DataBits, SerialPort, SerialPortBuilderExt, SerialStream, StopBits,
};

use crate::config::{LineSettings, Parity};

/// Counters and flags shared between the port and the bus task that drives it.
#[derive(Debug, Default)]
pub struct PortState {
    flush_before_write: AtomicBool,
    received: AtomicU64,
    discarded: AtomicU64,
}

impl PortState {
    /// The next write starts a request: drop what is waiting in the receive buffer first.
    pub fn flush_before_next_write(&self) {
        self.flush_before_write.store(true, Ordering::Relaxed);
    }

    /// Bytes received since the port was opened.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Bytes thrown away unread before requests since the port was opened.
    pub fn discarded(&self) -> u64 {
        self.discarded.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
pub struct Port {
    stream: SerialStream,
    state: Arc<PortState>,
}

impl Port {
    /// Opens `path` with the given line settings.
    pub fn open(path: &str, line: &LineSettings) -> io::Result<(Port, Arc<PortState>)> {
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
            .map_err(io::Error::from)?;
        let state = Arc::new(PortState::default());
        Ok((
            Port {
                stream,
                state: Arc::clone(&state),
            },
            state,
        ))
    }
}

impl AsyncRead for Port {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.stream).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.state
            .received
            .fetch_add(read as u64, Ordering::Relaxed);
        poll
    }
}

impl AsyncWrite for Port {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.state.flush_before_write.swap(false, Ordering::Relaxed) {
            // Usually nothing is waiting: then one ioctl is enough.
            let waiting = self.stream.bytes_to_read().unwrap_or(1);
            if waiting > 0 {
                self.stream
                    .clear(ClearBuffer::Input)
                    .map_err(io::Error::from)?;
                self.state
                    .discarded
                    .fetch_add(u64::from(waiting), Ordering::Relaxed);
            }
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The serial stream's flush is tcdrain(), which blocks the thread until the UART
        // has sent every byte: the whole runtime would stand still for the request's line
        // time. Written bytes are on their way in order anyway; the bus adds the request's
        // line time to the response timeout instead.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
