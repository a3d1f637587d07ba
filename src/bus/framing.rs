//! RTU framing, master side: the request frame for a [`Request`], and a reader that finds
//! the answer to it in whatever the line delivers.
//!
//! The reader knows the shape of the answer it waits for (unit, function, length) before
//! the request goes out, so it can tell that answer from everything else a real line
//! carries: the adapter's echo of the request, noise (a leading `0x00`, a bus that floats
//! while nobody drives it), frames for other units and other masters' requests (issue 14),
//! and answers that come after their request timed out (issue 10). Skipped bytes are
//! tallied, never decoded. PDUs are decoded by tokio-modbus, which keeps the protocol's
//! details in one place; this module only cuts frames.

use tokio::time::Instant;

use tokio_modbus::Request;

const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_MODBUS);

/// Longest RTU frame.
pub const MAX_FRAME: usize = 256;
/// An exception answer: unit, function | 0x80, code, CRC.
const EXCEPTION_LEN: usize = 5;

/// Whether the last two bytes of `frame` are the CRC of the rest.
pub fn crc_ok(frame: &[u8]) -> bool {
    frame.len() >= 4 && {
        let (body, crc) = frame.split_at(frame.len() - 2);
        CRC.checksum(body).to_le_bytes() == crc
    }
}

/// Appends the CRC to a frame body.
pub fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
    let crc = CRC.checksum(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

/// The frame of a request to `unit`; `None` for requests the bus never sends.
pub fn request_frame(unit: u8, request: &Request<'_>) -> Option<Vec<u8>> {
    let mut body = vec![unit, request.function_code().value()];
    let mut word = |w: u16| body.extend_from_slice(&w.to_be_bytes());
    match request {
        Request::ReadCoils(address, count)
        | Request::ReadDiscreteInputs(address, count)
        | Request::ReadHoldingRegisters(address, count)
        | Request::ReadInputRegisters(address, count) => {
            word(*address);
            word(*count);
        }
        Request::WriteSingleCoil(address, on) => {
            word(*address);
            word(if *on { 0xFF00 } else { 0x0000 });
        }
        Request::WriteSingleRegister(address, value) => {
            word(*address);
            word(*value);
        }
        Request::MaskWriteRegister(address, and_mask, or_mask) => {
            word(*address);
            word(*and_mask);
            word(*or_mask);
        }
        Request::WriteMultipleRegisters(address, words) => {
            let count = u16::try_from(words.len()).ok().filter(|c| *c <= 123)?;
            word(*address);
            word(count);
            body.push(u8::try_from(2 * count).ok()?);
            for w in words.iter() {
                body.extend_from_slice(&w.to_be_bytes());
            }
        }
        _ => return None,
    }
    Some(with_crc(body))
}

/// What the answer to a request looks like on the wire. Two requests whose answers have
/// the same shape cannot be told apart by their answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub unit: u8,
    pub function: u8,
    /// Bytes of the normal (not exception) answer.
    pub len: usize,
    /// The byte count a read's answer carries in its third byte: a request of another
    /// master to our unit may have our answer's length, seldom also this byte.
    byte_count: Option<u8>,
}

impl Shape {
    /// The shape of the answer to a request frame made by [`request_frame`].
    pub fn of_request(frame: &[u8]) -> Option<Shape> {
        let (&unit, &function) = (frame.first()?, frame.get(1)?);
        let count = || {
            frame
                .get(4..6)
                .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        };
        let (data, len) = match function {
            1 | 2 => (Some(count()?.div_ceil(8)), None),
            3 | 4 => (Some(2 * count()?), None),
            5 | 6 | 16 => (None, Some(8)),
            // A mask write's answer repeats the request: address and both masks.
            22 => (None, Some(10)),
            _ => return None,
        };
        Some(Shape {
            unit,
            function,
            len: len.or(data.map(|data| 5 + data))?,
            byte_count: data.map(|data| u8::try_from(data).ok()).unwrap_or(None),
        })
    }

    /// Whether an answer to this request and one to `other` could pass for each other:
    /// same unit and function (an exception answer has one length whatever was asked).
    fn confusable(&self, other: &Shape) -> bool {
        (self.unit, self.function) == (other.unit, other.function)
    }

    /// Whether a whole frame with a good CRC is an answer of this shape (normal or
    /// exception).
    fn fits(&self, frame: &[u8]) -> bool {
        self.answer_len(frame) == Some(frame.len())
    }

    /// The length of the answer of this shape that `buf` starts with, if it starts like
    /// one: the length may be more than `buf` holds yet.
    fn answer_len(&self, buf: &[u8]) -> Option<usize> {
        if buf.first() != Some(&self.unit) {
            return None;
        }
        match buf.get(1) {
            Some(&f) if f == self.function => match (self.byte_count, buf.get(2)) {
                (Some(count), Some(&byte)) if byte != count => None,
                _ => Some(self.len),
            },
            Some(&f) if f == self.function | 0x80 => Some(EXCEPTION_LEN),
            _ => None,
        }
    }
}

/// The lengths a frame starting `buf` may have, as a request or an answer, judged by its
/// function code (as libmodbus does). `None` while the bytes that tell are still to come;
/// an empty list for a function code no frame we can measure has.
fn frame_lengths(buf: &[u8]) -> Option<Vec<usize>> {
    let byte = |at: usize| buf.get(at).map(|b| usize::from(*b));
    let function = byte(1)?;
    Some(match function {
        0x81..=0xFF => vec![EXCEPTION_LEN],
        1..=4 => vec![8, 5 + byte(2)?],
        5 | 6 => vec![8],
        15 | 16 => vec![8, 9 + byte(6)?],
        22 => vec![10],
        23 => vec![5 + byte(2)?, 13 + byte(10)?],
        _ => Vec::new(),
    })
}

/// A whole frame with a good CRC at the start of `buf`, if one is there: its length.
/// `Err(())` when `buf` may be the start of one that is still arriving.
fn frame_at(buf: &[u8]) -> Result<Option<usize>, ()> {
    let Some(lengths) = frame_lengths(buf) else {
        return Err(());
    };
    if let Some(len) = lengths
        .iter()
        .copied()
        .filter(|len| *len <= buf.len().min(MAX_FRAME))
        .find(|len| crc_ok(&buf[..*len]))
    {
        return Ok(Some(len));
    }
    if lengths
        .iter()
        .any(|len| *len > buf.len() && *len <= MAX_FRAME)
    {
        Err(())
    } else {
        Ok(None)
    }
}

/// What was skipped while looking for answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Bytes that formed no frame.
    pub noise_bytes: u64,
    /// Whole frames with a good CRC that were not for us: other units, other masters.
    pub foreign_frames: u64,
    /// Answers that came after their request had timed out.
    pub late_answers: u64,
    /// Copies of our own request handed back by the adapter.
    pub echoes: u64,
}

impl Tally {
    /// A whole frame that is not our answer: a late answer if an overdue request claims
    /// it, else a foreign frame.
    pub fn skipped_frame(&mut self, frame: &[u8], overdue: &mut Overdues) {
        if overdue.claim(frame) {
            self.late_answers += 1;
        } else {
            self.foreign_frames += 1;
        }
    }
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        self.noise_bytes += other.noise_bytes;
        self.foreign_frames += other.foreign_frames;
        self.late_answers += other.late_answers;
        self.echoes += other.echoes;
    }
}

/// A request that ended without its answer, whose answer may still come.
#[derive(Debug, Clone)]
struct Overdue {
    shape: Shape,
    request: Vec<u8>,
    until: Instant,
}

/// Requests that timed out and may still be answered. An answer that comes late looks
/// like the answer to any later request of the same shape, even the same request asked
/// again (whose own answer would then still be on its way); such a request waits until the
/// late answer has come or cannot come any more. Requests of other shapes need not wait: a
/// late answer in their wait does not fit them and is skipped.
#[derive(Debug, Default)]
pub struct Overdues {
    pending: Vec<Overdue>,
}

impl Overdues {
    /// `request` timed out; its answer is expected until `until`.
    pub fn add(&mut self, request: &[u8], until: Instant) {
        if let Some(shape) = Shape::of_request(request) {
            self.pending.push(Overdue {
                shape,
                request: request.to_vec(),
                until,
            });
        }
    }

    /// `request` was answered while an earlier try of it was overdue: the answer may have
    /// been the earlier one, so one answer is still to come, until `until`.
    pub fn renew(&mut self, request: &[u8], until: Instant) {
        if let Some(overdue) = self.pending.iter_mut().find(|o| o.request == request) {
            overdue.until = overdue.until.max(until);
        }
    }

    fn forget_expired(&mut self, now: Instant) {
        self.pending.retain(|o| o.until > now);
    }

    /// Until when a request must wait before it may go out: a request whose answer could
    /// pass for its answer is overdue.
    pub fn hold_until(&mut self, request: &[u8], now: Instant) -> Option<Instant> {
        self.forget_expired(now);
        let shape = Shape::of_request(request)?;
        self.pending
            .iter()
            .filter(|o| o.shape.confusable(&shape))
            .map(|o| o.until)
            .max()
    }

    /// Whether any answer is overdue (worth listening for while the bus is idle).
    pub fn any(&mut self, now: Instant) -> bool {
        self.forget_expired(now);
        !self.pending.is_empty()
    }

    /// When the next overdue answer stops being expected.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.pending.iter().map(|o| o.until).min()
    }

    /// Takes `frame` (whole, good CRC) as the late answer of an overdue request, if it
    /// fits one.
    fn claim(&mut self, frame: &[u8]) -> bool {
        match self.pending.iter().position(|o| o.shape.fits(frame)) {
            Some(index) => {
                self.pending.swap_remove(index);
                true
            }
            None => false,
        }
    }
}

/// What [`Reader::scan`] found in the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// The answer: drop `skip` bytes, then the answer is the next `len`.
    Answer { skip: usize, len: usize },
    /// No answer yet: drop `skip` bytes and wait for more.
    More { skip: usize },
}

/// Looks for the answer to one request in the bytes received after it was sent.
#[derive(Debug)]
pub struct Reader<'a> {
    request: &'a [u8],
    shape: Shape,
    /// Whether a leading copy of the request is the adapter's echo.
    strip_echo: bool,
    overdue: &'a mut Overdues,
    pub tally: Tally,
    /// Whether something with our answer's unit, function and length but a bad CRC came:
    /// the device answered, the line garbled it.
    pub garbled: bool,
}

impl<'a> Reader<'a> {
    pub fn new(
        request: &'a [u8],
        shape: Shape,
        strip_echo: bool,
        overdue: &'a mut Overdues,
    ) -> Self {
        Reader {
            request,
            shape,
            strip_echo,
            overdue,
            tally: Tally::default(),
            garbled: false,
        }
    }

    /// Examines `buf` (everything received and not yet dropped) from the start.
    pub fn scan(&mut self, buf: &[u8]) -> Scan {
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            if rest.is_empty() {
                return Scan::More { skip: at };
            }
            if self.strip_echo {
                if rest.len() < self.request.len() && self.request.starts_with(rest) {
                    return Scan::More { skip: at };
                }
                if rest.starts_with(self.request) {
                    self.strip_echo = false;
                    self.tally.echoes += 1;
                    at += self.request.len();
                    continue;
                }
            }
            if let Some(len) = self.shape.answer_len(rest)
                && rest.get(..len).is_some_and(crc_ok)
            {
                return Scan::Answer { skip: at, len };
            }
            match frame_at(rest) {
                // A short frame may check out by chance (a CRC is 16 bits): our whole
                // answer starting inside it is the stronger evidence.
                Ok(Some(len)) => {
                    let ours = (1..len).find(|&o| self.shape.answer_len(&rest[o..]).is_some());
                    match ours {
                        Some(offset) if rest[offset..].len() < self.shape.len => {
                            return Scan::More { skip: at };
                        }
                        Some(offset) if self.answer_further_on(rest) == Some(offset) => {
                            self.tally += discard(&rest[..offset], self.overdue);
                            at += offset;
                        }
                        _ => {
                            self.tally.skipped_frame(&rest[..len], self.overdue);
                            at += len;
                        }
                    }
                }
                // A frame may still be arriving, ours or another's; unless ours is
                // already further on, and what is before it was junk.
                Err(()) => match self.answer_further_on(rest) {
                    Some(offset) => {
                        self.tally += discard(&rest[..offset], self.overdue);
                        at += offset;
                    }
                    None => {
                        // Our answer's length is here but its CRC is bad: unless a longer
                        // frame completes it, the device answered and the line garbled it.
                        self.garbled |= self
                            .shape
                            .answer_len(rest)
                            .is_some_and(|len| rest.len() >= len);
                        return Scan::More { skip: at };
                    }
                },
                Ok(None) => match self.shape.answer_len(rest) {
                    // Our answer, whole, with a bad CRC: the device answered and the line
                    // garbled it. Skipped whole (it is no noise), up to where our unit id
                    // comes again, in case our answer starts there after all.
                    Some(len) if rest.len() >= len => {
                        self.garbled = true;
                        at += (1..len)
                            .find(|&offset| rest[offset] == self.shape.unit)
                            .unwrap_or(len);
                    }
                    Some(_) => return Scan::More { skip: at },
                    None => {
                        self.tally.noise_bytes += 1;
                        at += 1;
                    }
                },
            }
        }
    }

    /// How many bytes at the start of `buf` are our answer, garbled: no noise when the
    /// wait ends on them.
    pub fn garbled_len(&self, buf: &[u8]) -> usize {
        match self.shape.answer_len(buf) {
            Some(len) if self.garbled && buf.len() >= len => len,
            _ => 0,
        }
    }

    /// Where a whole answer with a good CRC starts after the first byte of `buf`: what
    /// looked like the start of a frame was noise.
    fn answer_further_on(&self, buf: &[u8]) -> Option<usize> {
        (1..buf.len()).find(|&offset| {
            let rest = &buf[offset..];
            self.shape
                .answer_len(rest)
                .and_then(|len| rest.get(..len))
                .is_some_and(crc_ok)
        })
    }
}

/// Sorts bytes that arrived while no answer was awaited (between transactions) into late
/// answers, foreign frames and noise. What is cut off at the end counts as noise: nothing
/// that began before our next request can be the answer to it.
pub fn discard(buf: &[u8], overdue: &mut Overdues) -> Tally {
    sort_out(buf, overdue, false).0
}

/// Like [`discard`], but stops before a frame that may still be arriving (the rest of a
/// late answer may follow): returns the tally and how many bytes were sorted.
pub fn discard_complete(buf: &[u8], overdue: &mut Overdues) -> (Tally, usize) {
    sort_out(buf, overdue, true)
}

fn sort_out(buf: &[u8], overdue: &mut Overdues, keep_partial: bool) -> (Tally, usize) {
    let mut tally = Tally::default();
    let mut at = 0;
    while at < buf.len() {
        let rest = &buf[at..];
        match frame_at(rest) {
            Ok(Some(len)) => {
                tally.skipped_frame(&rest[..len], overdue);
                at += len;
            }
            Err(()) if keep_partial => break,
            _ => {
                tally.noise_bytes += 1;
                at += 1;
            }
        }
    }
    (tally, at)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn read_request(unit: u8, address: u16, count: u16) -> Vec<u8> {
        request_frame(unit, &Request::ReadHoldingRegisters(address, count)).unwrap()
    }

    fn answer(unit: u8, words: &[u16]) -> Vec<u8> {
        let mut body = vec![unit, 3, (2 * words.len()) as u8];
        for w in words {
            body.extend_from_slice(&w.to_be_bytes());
        }
        with_crc(body)
    }

    /// Feeds `stream` to a reader in `chunk`-byte pieces, as a line delivers it; returns
    /// the answer found and the tally.
    fn read(
        request: &[u8],
        strip_echo: bool,
        overdue: &mut Overdues,
        stream: &[u8],
        chunk: usize,
    ) -> (Option<Vec<u8>>, Tally) {
        let shape = Shape::of_request(request).unwrap();
        let mut reader = Reader::new(request, shape, strip_echo, overdue);
        let mut buf = Vec::new();
        for piece in stream.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            match reader.scan(&buf) {
                Scan::Answer { skip, len } => {
                    return (Some(buf[skip..skip + len].to_vec()), reader.tally);
                }
                Scan::More { skip } => {
                    buf.drain(..skip);
                }
            }
        }
        (None, reader.tally)
    }

    #[test]
    fn request_frames_match_the_modbus_reference() {
        // From the Modbus serial line guide: read holding 0x006B..+3 of unit 0x11.
        assert_eq!(
            read_request(0x11, 0x6B, 3),
            [0x11, 0x03, 0x00, 0x6B, 0x00, 0x03, 0x76, 0x87]
        );
        assert_eq!(with_crc(vec![0x02, 0x07]), vec![0x02, 0x07, 0x41, 0x12]);
        let write =
            request_frame(1, &Request::WriteMultipleRegisters(2, vec![1, 2].into())).unwrap();
        assert_eq!(&write[..11], &[1, 16, 0, 2, 0, 2, 4, 0, 1, 0, 2]);
        assert!(
            request_frame(1, &Request::WriteMultipleRegisters(0, vec![0; 124].into())).is_none()
        );
    }

    #[test]
    fn shapes_follow_from_the_request() {
        let shape = |r: Request<'_>| {
            Shape::of_request(&request_frame(7, &r).unwrap())
                .unwrap()
                .len
        };
        assert_eq!(shape(Request::ReadHoldingRegisters(0, 4)), 13);
        assert_eq!(shape(Request::ReadInputRegisters(0, 1)), 7);
        assert_eq!(shape(Request::ReadCoils(0, 9)), 7);
        assert_eq!(shape(Request::WriteSingleRegister(0, 9)), 8);
        assert_eq!(shape(Request::MaskWriteRegister(0, 0xFFF7, 0x0008)), 10);
    }

    #[test]
    fn the_answer_is_found_whatever_surrounds_it() {
        let request = read_request(10, 0, 2);
        let good = answer(10, &[215, 553]);
        let foreign_request = read_request(20, 5, 1);
        let foreign_answer = answer(20, &[77]);
        let other_function = with_crc(vec![10, 4, 2, 0, 1]);
        // (what the line carries, echo expected, what must be tallied)
        let cases: Vec<(Vec<u8>, bool, Tally)> = vec![
            (good.clone(), false, Tally::default()),
            (
                [&[0x00][..], &good].concat(),
                false,
                Tally {
                    noise_bytes: 1,
                    ..Tally::default()
                },
            ),
            (
                [&request[..], &good].concat(),
                true,
                Tally {
                    echoes: 1,
                    ..Tally::default()
                },
            ),
            // An echo where none was expected is just another master's request.
            (
                [&request[..], &good].concat(),
                false,
                Tally {
                    foreign_frames: 1,
                    ..Tally::default()
                },
            ),
            (
                [&request[..], &[0xFF, 0x00], &good].concat(),
                true,
                Tally {
                    echoes: 1,
                    noise_bytes: 2,
                    ..Tally::default()
                },
            ),
            (
                [&foreign_request[..], &foreign_answer, &good].concat(),
                false,
                Tally {
                    foreign_frames: 2,
                    ..Tally::default()
                },
            ),
            (
                [&other_function[..], &good].concat(),
                false,
                Tally {
                    foreign_frames: 1,
                    ..Tally::default()
                },
            ),
            (
                [&[0xAA, 0x55, 0x03, 0xFF][..], &good].concat(),
                false,
                Tally {
                    noise_bytes: 4,
                    ..Tally::default()
                },
            ),
        ];
        for (stream, echo, tally) in cases {
            for chunk in [1, 3, stream.len()] {
                let (found, counted) =
                    read(&request, echo, &mut Overdues::default(), &stream, chunk);
                assert_eq!(
                    found.as_deref(),
                    Some(&good[..]),
                    "{stream:02X?} in chunks of {chunk}"
                );
                assert_eq!(counted, tally, "{stream:02X?} in chunks of {chunk}");
            }
        }
    }

    #[test]
    fn a_bad_crc_or_a_wrong_shape_is_never_the_answer() {
        let request = read_request(10, 0, 2);
        let mut corrupt = answer(10, &[215, 553]);
        corrupt[4] ^= 1;
        let short = answer(10, &[215]);
        for stream in [
            corrupt.clone(),
            short,
            answer(11, &[1, 2]),
            vec![10, 3, 4, 0, 0],
        ] {
            let (found, _) = read(&request, false, &mut Overdues::default(), &stream, 1);
            assert_eq!(found, None, "{stream:02X?}");
        }
        // A garbled answer is no noise, and the good one after it is still found.
        let good = answer(10, &[215, 553]);
        let stream = [&corrupt[..], &good].concat();
        let shape = Shape::of_request(&request).unwrap();
        let mut overdue = Overdues::default();
        let mut reader = Reader::new(&request, shape, false, &mut overdue);
        assert_eq!(
            reader.scan(&stream),
            Scan::Answer {
                skip: corrupt.len(),
                len: good.len()
            }
        );
        assert!(reader.garbled);
        assert_eq!(reader.tally, Tally::default());
    }

    #[test]
    fn a_late_exception_fits_any_read_of_its_unit_and_function() {
        let mut overdue = Overdues::default();
        overdue.add(
            &read_request(10, 0, 1),
            Instant::now() + Duration::from_secs(1),
        );
        let late = with_crc(vec![10, 0x83, 2]);
        let mine = answer(10, &[1, 2]);
        let stream = [&late[..], &mine].concat();
        let (found, tally) = read(&read_request(10, 5, 2), false, &mut overdue, &stream, 3);
        // The reader takes the first exception that fits; the bus task never sends a
        // request of the same unit and function while one is overdue, so this is only
        // reached for the same request, which the exception answers as well.
        assert_eq!(found, Some(late), "{tally:?}");
    }

    #[test]
    fn another_masters_request_of_our_answers_length_is_not_our_answer() {
        // A read of 17..24 coils is answered in 8 bytes, as long as any read request; the
        // byte count (3) tells them apart unless the request's address starts with it
        // (0x03xx), which no framing can.
        let ours = request_frame(10, &Request::ReadCoils(0, 20)).unwrap();
        let theirs = request_frame(10, &Request::ReadCoils(0x0512, 16)).unwrap();
        let answer = with_crc(vec![10, 1, 3, 0xFF, 0x0F, 0x01]);
        let stream = [&theirs[..], &answer].concat();
        for chunk in [1, 5, 8, stream.len()] {
            let (found, tally) = read(&ours, false, &mut Overdues::default(), &stream, chunk);
            assert_eq!(found.as_deref(), Some(&answer[..]), "chunks of {chunk}");
            assert_eq!(tally.foreign_frames, 1, "chunks of {chunk}");
        }
    }

    #[test]
    fn a_garbled_answer_whatever_the_chunks_does_not_hide_the_next() {
        let request = read_request(10, 0, 1);
        let garbled = [10u8, 3, 2, 0xAA, 0xBB, 0xCC];
        let good = answer(10, &[7]);
        let stream = [&garbled[..], &good].concat();
        for chunk in 1..=stream.len() {
            let (found, _) = read(&request, false, &mut Overdues::default(), &stream, chunk);
            assert_eq!(found.as_deref(), Some(&good[..]), "chunks of {chunk}");
        }
    }

    #[test]
    fn a_late_answer_arriving_in_pieces_while_idle_is_claimed_whole() {
        let mut overdue = Overdues::default();
        overdue.add(
            &read_request(10, 0, 1),
            Instant::now() + Duration::from_secs(1),
        );
        let late = answer(10, &[215]);
        let (tally, sorted) = discard_complete(&late[..3], &mut overdue);
        assert_eq!((tally, sorted), (Tally::default(), 0));
        let (tally, sorted) = discard_complete(&late, &mut overdue);
        assert_eq!((tally.late_answers, sorted), (1, late.len()));
    }

    #[test]
    fn a_garbled_short_answer_is_told_from_silence() {
        // Seven bytes, one short of a read request: it could still be one arriving.
        let request = read_request(20, 7, 1);
        let mut garbled = answer(20, &[5]);
        garbled[6] ^= 0x5A;
        let shape = Shape::of_request(&request).unwrap();
        let mut overdue = Overdues::default();
        let mut reader = Reader::new(&request, shape, false, &mut overdue);
        assert_eq!(reader.scan(&garbled), Scan::More { skip: 0 });
        assert!(reader.garbled);
    }

    #[test]
    fn an_exception_is_an_answer() {
        let request = read_request(10, 9, 1);
        let exception = with_crc(vec![10, 0x83, 2]);
        let (found, _) = read(&request, false, &mut Overdues::default(), &exception, 1);
        assert_eq!(found, Some(exception));
    }

    #[test]
    fn a_write_echo_and_its_answer_are_the_same_bytes() {
        let request = request_frame(10, &Request::WriteSingleRegister(2, 512)).unwrap();
        let twice = [&request[..], &request].concat();
        let (found, tally) = read(&request, true, &mut Overdues::default(), &twice, 8);
        assert_eq!((found, tally.echoes), (Some(request.clone()), 1));
        // Without echo the first copy is the device's answer.
        let (found, tally) = read(&request, false, &mut Overdues::default(), &request, 8);
        assert_eq!((found, tally.echoes), (Some(request), 0));
    }

    #[test]
    fn a_late_answer_is_claimed_not_taken() {
        let now = Instant::now();
        let temperature = read_request(10, 0, 1);
        let humidity = read_request(10, 1, 1);
        let mut overdue = Overdues::default();
        overdue.add(&temperature, now + Duration::from_secs(1));
        // Any request to the same unit and function must wait, even the same one again:
        // the late answer may also be an exception, which has one length for all; one to
        // another unit or function need not.
        let held = Some(now + Duration::from_secs(1));
        assert_eq!(overdue.hold_until(&temperature, now), held);
        assert_eq!(overdue.hold_until(&humidity, now), held);
        assert_eq!(overdue.hold_until(&read_request(10, 1, 2), now), held);
        assert_eq!(overdue.hold_until(&read_request(11, 1, 1), now), None);
        let input = request_frame(10, &Request::ReadInputRegisters(0, 1)).unwrap();
        assert_eq!(overdue.hold_until(&input, now), None);
        // An answer to a retry may be the late one: one stays overdue, for longer.
        overdue.renew(&temperature, now + Duration::from_secs(2));
        assert_eq!(
            overdue.hold_until(&humidity, now),
            Some(now + Duration::from_secs(2))
        );
        // A late answer in another request's wait is claimed and counted, not taken.
        let late = answer(10, &[215]);
        let mine = answer(10, &[1, 2]);
        let stream = [&late[..], &mine].concat();
        let (found, tally) = read(&read_request(10, 1, 2), false, &mut overdue, &stream, 2);
        assert_eq!((found, tally.late_answers), (Some(mine), 1));
        assert!(!overdue.any(now));
        // Expired entries hold nothing back.
        overdue.add(&temperature, now);
        assert_eq!(
            overdue.hold_until(&humidity, now + Duration::from_millis(1)),
            None
        );
    }

    #[test]
    fn bytes_between_transactions_are_sorted() {
        let mut overdue = Overdues::default();
        let temperature = read_request(10, 0, 1);
        overdue.add(&temperature, Instant::now() + Duration::from_secs(1));
        let stream = [
            &[0u8][..],
            &answer(10, &[215]),
            &read_request(3, 0, 1),
            &[1, 3],
        ]
        .concat();
        let tally = discard(&stream, &mut overdue);
        assert_eq!(
            tally,
            Tally {
                noise_bytes: 3,
                foreign_frames: 1,
                late_answers: 1,
                ..Tally::default()
            }
        );
    }
}

/// Properties of the reader: nothing the line carries makes it panic or take a wrong frame
/// for the answer (issue 10).
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    /// A read request of unit 10, and the answer it expects.
    fn exchange() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
        (0u16..100, prop::collection::vec(any::<u16>(), 1..20)).prop_map(|(address, words)| {
            let count = words.len() as u16;
            let request =
                request_frame(10, &Request::ReadHoldingRegisters(address, count)).unwrap();
            let mut body = vec![10, 3, (2 * words.len()) as u8];
            for w in &words {
                body.extend_from_slice(&w.to_be_bytes());
            }
            (request, with_crc(body))
        })
    }

    /// What else a line carries: noise without our unit id in it (so it cannot hide an
    /// answer of ours), frames that are not answers to us, cut frames.
    fn junk() -> impl Strategy<Value = Vec<u8>> {
        let noise =
            prop::collection::vec(any::<u8>().prop_filter("not unit 10", |b| *b != 10), 0..12);
        // Other units' frames of any function, and our unit's of other functions (its
        // function 3 or its exception would answer us).
        let foreign = (
            1u8..=247,
            prop::sample::select(vec![1u8, 2, 3, 4, 5, 6, 0x83, 0x84]),
            prop::collection::vec(any::<u8>(), 1..12),
        )
            .prop_filter("not an answer to us", |(unit, function, _)| {
                *unit != 10 || !matches!(function, 3 | 0x83)
            })
            .prop_map(|(unit, function, rest)| with_crc([vec![unit, function], rest].concat()));
        let cut = foreign
            .clone()
            .prop_map(|frame| frame[..frame.len() / 2].to_vec());
        prop::collection::vec(prop_oneof![noise, foreign, cut], 0..4).prop_map(|v| v.concat())
    }

    /// Feeds `stream` in chunks of the given sizes; returns the answer found.
    fn feed(request: &[u8], echo: bool, stream: &[u8], chunks: &[usize]) -> Option<Vec<u8>> {
        let shape = Shape::of_request(request)?;
        let mut overdue = Overdues::default();
        let mut reader = Reader::new(request, shape, echo, &mut overdue);
        let mut buf = Vec::new();
        let mut at = 0;
        for size in chunks.iter().cycle() {
            if at >= stream.len() {
                break;
            }
            let end = (at + size.max(&1)).min(stream.len());
            buf.extend_from_slice(&stream[at..end]);
            at = end;
            match reader.scan(&buf) {
                Scan::Answer { skip, len } => return Some(buf[skip..skip + len].to_vec()),
                Scan::More { skip } => {
                    buf.drain(..skip);
                }
            }
        }
        None
    }

    proptest! {
        #[test]
        fn prop_framing_arbitrary_bytes_never_panic_and_only_well_formed_answers_pass(
            stream in prop::collection::vec(any::<u8>(), 0..300),
            chunks in prop::collection::vec(1usize..40, 1..5),
            (request, _) in exchange(),
            echo in any::<bool>(),
        ) {
            if let Some(answer) = feed(&request, echo, &stream, &chunks) {
                let shape = Shape::of_request(&request).unwrap();
                prop_assert!(crc_ok(&answer));
                prop_assert!(shape.fits(&answer), "{:02X?}", answer);
            }
            let mut overdue = Overdues::default();
            overdue.add(&request, Instant::now() + std::time::Duration::from_secs(1));
            discard(&stream, &mut overdue);
        }

        #[test]
        fn prop_framing_the_answer_is_found_among_junk(
            (request, answer) in exchange(),
            before in junk(),
            after in junk(),
            echo in any::<bool>(),
            chunks in prop::collection::vec(1usize..40, 1..5),
        ) {
            let echoed: &[u8] = if echo { &request } else { &[] };
            let stream = [echoed, &before, &answer, &after].concat();
            prop_assert_eq!(feed(&request, echo, &stream, &chunks), Some(answer));
        }
    }
}
