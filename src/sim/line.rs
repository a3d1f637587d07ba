//! The simulated units' own line settings (issue 11, for `scan`): a real device set to
//! 19200 8N1 makes nothing of a master talking 9600 8E1 and stays silent. Over a
//! pseudo-terminal nothing is garbled whatever either end sets, so the simulator reads the
//! settings the master set and answers only when they are the units'.
//!
//! On Linux both ends of a pseudo-terminal see one set of termios, the terminal's: the
//! master sets them on the path it opens, and the kernel answers a mode ioctl on the
//! simulator's end with them (the test below checks it), less what a pseudo-terminal
//! forgets (see [`read_master_line`]).

use std::io;

use tokio_serial::{SerialPort, SerialStream};

use crate::config::{LineSettings, Parity};

/// A port the simulator serves, whose master's line settings it may know.
pub trait MasterLine {
    /// The settings the master talks with; `None` when the port cannot tell (a socket:
    /// a serial device server's line is set up on the server, to match its devices).
    fn master_line(&self) -> Option<io::Result<LineSettings>>;
}

impl MasterLine for SerialStream {
    fn master_line(&self) -> Option<io::Result<LineSettings>> {
        Some(read_master_line(self))
    }
}

/// The settings last set on the terminal of `port`. Linux keeps the baud of a
/// pseudo-terminal, but clears its parity-enable bit and sets 8 data bits whatever the
/// master asked (`pty_set_termios`): the parity is read from the flag that has the receiver
/// check it (`INPCK`), which serialport (ours) and libmodbus (mbpoll) set with it, and its
/// odd bit, which the kernel leaves. (A master that sets parity without `INPCK`, as
/// pyserial does, looks like N.) Data bits cannot be told: always 8, as RTU has them.
fn read_master_line(port: &SerialStream) -> io::Result<LineSettings> {
    use std::os::fd::AsRawFd;
    let mut termios = std::mem::MaybeUninit::<libc::termios>::uninit();
    // SAFETY: tcgetattr fills the struct it is given from a descriptor the stream owns and
    // keeps open; the struct is read only after it succeeded.
    let termios = unsafe {
        if libc::tcgetattr(port.as_raw_fd(), termios.as_mut_ptr()) == -1 {
            return Err(io::Error::last_os_error());
        }
        termios.assume_init()
    };
    let parity = match (
        termios.c_iflag & libc::INPCK != 0,
        termios.c_cflag & libc::PARODD != 0,
    ) {
        (false, _) => Parity::None,
        (true, false) => Parity::Even,
        (true, true) => Parity::Odd,
    };
    Ok(LineSettings {
        // Above 38400 the rate is kept as a number (BOTHER), which only this ioctl reads.
        baud: port.baud_rate().map_err(io::Error::from)?,
        parity,
        data_bits: 8,
        stop_bits: if termios.c_cflag & libc::CSTOPB != 0 {
            2
        } else {
            1
        },
    })
}

impl MasterLine for tokio::net::TcpStream {
    fn master_line(&self) -> Option<io::Result<LineSettings>> {
        None
    }
}

/// Whether units listening with `units` (`None`: any settings) hear the master on `port`.
/// Baud and parity must match; stop bits do not matter (a receiver checks one and takes a
/// second for idle line), nor data bits (a pseudo-terminal keeps none but 8). A line whose
/// settings cannot be read is not the units' line.
pub fn hears(units: Option<LineSettings>, port: &impl MasterLine) -> bool {
    let Some(units) = units else {
        return true;
    };
    match port.master_line() {
        None => true,
        Some(Ok(master)) => {
            let heard = (master.baud, master.parity) == (units.baud, units.parity);
            if !heard {
                tracing::trace!(master = %master.describe(), units = %units.describe(), "simulated slave: the master talks at other settings");
            }
            heard
        }
        Some(Err(e)) => {
            tracing::debug!(error = %e, "simulated slave: cannot read the master's line settings");
            false
        }
    }
}

/// Reads line settings as `19200-8N1` (or `19200 8N1`, as they are printed).
pub fn parse(text: &str) -> Result<LineSettings, String> {
    let bad = || format!("{text:?} is not line settings such as 19200-8N1 or 9600-8E1");
    let (baud, format) = text.split_once(['-', ' ']).ok_or_else(bad)?;
    let baud = baud
        .parse::<u32>()
        .ok()
        .filter(|b| *b > 0)
        .ok_or_else(bad)?;
    let &[data_bits, parity, stop_bits] = format.as_bytes() else {
        return Err(bad());
    };
    let parity = match parity.to_ascii_uppercase() {
        b'N' => Parity::None,
        b'E' => Parity::Even,
        b'O' => Parity::Odd,
        _ => return Err(bad()),
    };
    let (b'5'..=b'8', b'1'..=b'2') = (data_bits, stop_bits) else {
        return Err(bad());
    };
    Ok(LineSettings {
        baud,
        parity,
        data_bits: data_bits - b'0',
        stop_bits: stop_bits - b'0',
    })
}

#[cfg(test)]
mod tests {
    use tokio_serial::SerialPortBuilderExt;

    use super::*;

    #[test]
    fn line_settings_read_as_printed() {
        for text in ["19200-8N1", "9600 8E1", "4800-7o2"] {
            let line = parse(text).unwrap();
            assert_eq!(
                line.describe().to_uppercase(),
                text.replace('-', " ").to_uppercase()
            );
        }
        for bad in [
            "19200",
            "19200-8X1",
            "0-8N1",
            "9600-9N1",
            "9600-8N3",
            "fast-8N1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    /// What the simulation stands on: the settings a master sets on the pseudo-terminal's
    /// path are what the simulator's end reads.
    #[tokio::test]
    async fn the_simulator_reads_what_the_master_set() {
        let (serve, _hold, path) = crate::sim::Simulator::open_pty().unwrap();
        for (baud, parity, tokio_parity) in [
            (19200, Parity::None, tokio_serial::Parity::None),
            (9600, Parity::Even, tokio_serial::Parity::Even),
            (115_200, Parity::Odd, tokio_serial::Parity::Odd),
            (19200, Parity::None, tokio_serial::Parity::None),
        ] {
            let master = tokio_serial::new(&path, baud)
                .parity(tokio_parity)
                .open_native_async()
                .unwrap();
            let seen = serve.master_line().unwrap().unwrap();
            assert_eq!((seen.baud, seen.parity, seen.data_bits), (baud, parity, 8));
            let device = LineSettings {
                baud: 19200,
                parity: Parity::None,
                data_bits: 8,
                stop_bits: 2,
            };
            assert_eq!(hears(Some(device), &serve), baud == 19200);
            assert!(hears(None, &serve));
            drop(master);
        }
    }
}
