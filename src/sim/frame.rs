//! RTU framing and the function codes, slave side. Ours rather than tokio-modbus's server so
//! that the simulated slave can misbehave on purpose (late, silent, corrupt, noisy).

use std::collections::BTreeMap;

use crate::codec::MaskWrite;
use crate::config::Table;

pub use crate::bus::framing::{crc_ok, with_crc};

pub const ILLEGAL_FUNCTION: u8 = 1;
pub const ILLEGAL_DATA_ADDRESS: u8 = 2;
pub const ILLEGAL_DATA_VALUE: u8 = 3;

/// What the start of a receive buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not enough bytes yet.
    Incomplete,
    /// A frame with a good CRC of this many bytes.
    Frame(usize),
    /// The first byte starts no valid frame.
    Garbage,
}

/// Finds the request frame at the start of `buf`.
pub fn parse_request(buf: &[u8]) -> Parsed {
    let Some(&function) = buf.get(1) else {
        return Parsed::Incomplete;
    };
    let len = match function {
        1..=6 => 8,
        22 => 10,
        15 | 16 => match buf.get(6) {
            Some(&byte_count) => 9 + usize::from(byte_count),
            None => return Parsed::Incomplete,
        },
        // A function we do not know: its length is unknown, so take a buffer whose CRC
        // checks out as one frame, as a slave that times frames by silence would.
        _ if buf.len() >= 4 && crc_ok(buf) => return Parsed::Frame(buf.len()),
        _ => return Parsed::Incomplete,
    };
    match buf.get(..len) {
        None => Parsed::Incomplete,
        Some(frame) if crc_ok(frame) => Parsed::Frame(len),
        Some(_) => Parsed::Garbage,
    }
}

/// The four tables of one simulated unit; an address that is not in a map does not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    pub coils: BTreeMap<u16, bool>,
    pub discrete: BTreeMap<u16, bool>,
    pub holding: BTreeMap<u16, u16>,
    pub input: BTreeMap<u16, u16>,
}

fn be(pdu: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([pdu[at], pdu[at + 1]])
}

/// Every address in `start..start+count` exists in `map`.
fn all_mapped<V>(map: &BTreeMap<u16, V>, start: u16, count: u16) -> bool {
    let end = u32::from(start) + u32::from(count);
    end <= 65536
        && map
            .range(start..)
            .take_while(|(a, _)| u32::from(**a) < end)
            .count()
            == usize::from(count)
}

fn read_bits(
    map: &BTreeMap<u16, bool>,
    start: u16,
    count: u16,
    function: u8,
) -> Result<Vec<u8>, u8> {
    if !(1..=2000).contains(&count) {
        return Err(ILLEGAL_DATA_VALUE);
    }
    if !all_mapped(map, start, count) {
        return Err(ILLEGAL_DATA_ADDRESS);
    }
    let mut bytes = vec![0u8; usize::from(count).div_ceil(8)];
    for (i, (_, on)) in map.range(start..).take(usize::from(count)).enumerate() {
        if *on {
            bytes[i / 8] |= 1 << (i % 8);
        }
    }
    // At most 250 bytes for 2000 bits.
    let mut pdu = vec![function, bytes.len() as u8];
    pdu.extend(bytes);
    Ok(pdu)
}

fn read_words(
    map: &BTreeMap<u16, u16>,
    start: u16,
    count: u16,
    function: u8,
) -> Result<Vec<u8>, u8> {
    if !(1..=125).contains(&count) {
        return Err(ILLEGAL_DATA_VALUE);
    }
    if !all_mapped(map, start, count) {
        return Err(ILLEGAL_DATA_ADDRESS);
    }
    // At most 250 bytes for 125 words.
    let mut pdu = vec![function, (count * 2) as u8];
    for (_, word) in map.range(start..).take(usize::from(count)) {
        pdu.extend_from_slice(&word.to_be_bytes());
    }
    Ok(pdu)
}

impl Memory {
    /// Creates or sets an address; a bit is set for any non-zero word.
    pub fn set(&mut self, table: Table, address: u16, word: u16) {
        match table {
            Table::Coil => self.coils.insert(address, word != 0).map(drop),
            Table::Discrete => self.discrete.insert(address, word != 0).map(drop),
            Table::Holding => self.holding.insert(address, word).map(drop),
            Table::Input => self.input.insert(address, word).map(drop),
        };
    }

    /// An address's content; a bit reads as 0 or 1.
    pub fn get(&self, table: Table, address: u16) -> Option<u16> {
        match table {
            Table::Coil => self.coils.get(&address).map(|on| u16::from(*on)),
            Table::Discrete => self.discrete.get(&address).map(|on| u16::from(*on)),
            Table::Holding => self.holding.get(&address).copied(),
            Table::Input => self.input.get(&address).copied(),
        }
    }

    /// Executes the request PDU (function code first) and returns the response PDU, or the
    /// exception code to answer with.
    pub fn execute(&mut self, pdu: &[u8]) -> Result<Vec<u8>, u8> {
        let Some(&function) = pdu.first() else {
            return Err(ILLEGAL_FUNCTION);
        };
        match function {
            1..=6 if pdu.len() != 5 => Err(ILLEGAL_DATA_VALUE),
            22 if pdu.len() != 7 => Err(ILLEGAL_DATA_VALUE),
            15 | 16 if pdu.len() < 6 => Err(ILLEGAL_DATA_VALUE),
            1 => read_bits(&self.coils, be(pdu, 1), be(pdu, 3), function),
            2 => read_bits(&self.discrete, be(pdu, 1), be(pdu, 3), function),
            3 => read_words(&self.holding, be(pdu, 1), be(pdu, 3), function),
            4 => read_words(&self.input, be(pdu, 1), be(pdu, 3), function),
            5 => {
                let on = match be(pdu, 3) {
                    0xFF00 => true,
                    0x0000 => false,
                    _ => return Err(ILLEGAL_DATA_VALUE),
                };
                let coil = self
                    .coils
                    .get_mut(&be(pdu, 1))
                    .ok_or(ILLEGAL_DATA_ADDRESS)?;
                *coil = on;
                Ok(pdu.to_vec())
            }
            6 => {
                let register = self
                    .holding
                    .get_mut(&be(pdu, 1))
                    .ok_or(ILLEGAL_DATA_ADDRESS)?;
                *register = be(pdu, 3);
                Ok(pdu.to_vec())
            }
            15 | 16 => self.write_multiple(pdu),
            22 => {
                let register = self
                    .holding
                    .get_mut(&be(pdu, 1))
                    .ok_or(ILLEGAL_DATA_ADDRESS)?;
                let masks = MaskWrite {
                    and_mask: be(pdu, 3),
                    or_mask: be(pdu, 5),
                };
                *register = masks.apply(*register);
                Ok(pdu.to_vec())
            }
            _ => Err(ILLEGAL_FUNCTION),
        }
    }

    fn write_multiple(&mut self, pdu: &[u8]) -> Result<Vec<u8>, u8> {
        let (start, count, byte_count) = (be(pdu, 1), be(pdu, 3), usize::from(pdu[5]));
        let data = &pdu[6..];
        let bits = pdu[0] == 15;
        let (limit, expected) = if bits {
            (1968, usize::from(count).div_ceil(8))
        } else {
            (123, usize::from(count) * 2)
        };
        if !(1..=limit).contains(&count) || byte_count != expected || data.len() != expected {
            return Err(ILLEGAL_DATA_VALUE);
        }
        let mapped = if bits {
            all_mapped(&self.coils, start, count)
        } else {
            all_mapped(&self.holding, start, count)
        };
        if !mapped {
            return Err(ILLEGAL_DATA_ADDRESS);
        }
        for i in 0..count {
            let i_usize = usize::from(i);
            if bits {
                self.coils
                    .insert(start + i, data[i_usize / 8] & (1 << (i_usize % 8)) != 0);
            } else {
                self.holding.insert(start + i, be(data, 2 * i_usize));
            }
        }
        Ok(pdu[..5].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_known_frame_and_rejects_a_bad_crc() {
        // Read holding 0..4 of unit 10, as mbpoll sends it.
        let frame = with_crc(vec![10, 3, 0, 0, 0, 4]);
        assert_eq!(parse_request(&frame), Parsed::Frame(8));
        assert_eq!(parse_request(&frame[..5]), Parsed::Incomplete);
        let mut bad = frame.clone();
        bad[7] ^= 0xFF;
        assert_eq!(parse_request(&bad), Parsed::Garbage);
        let write = with_crc(vec![10, 16, 0, 2, 0, 2, 4, 0, 1, 0, 2]);
        assert_eq!(parse_request(&write), Parsed::Frame(13));
    }

    #[test]
    fn crc_matches_the_modbus_reference() {
        // From the Modbus serial line guide: 02 07 -> CRC 0x1241, sent low byte first.
        assert_eq!(with_crc(vec![0x02, 0x07]), vec![0x02, 0x07, 0x41, 0x12]);
    }

    #[test]
    fn executes_reads_writes_and_exceptions() {
        let mut m = Memory::default();
        m.holding.extend([(0, 215), (1, 553), (2, 0), (3, 0xFF63)]);
        m.coils.extend((0..10).map(|a| (a, a % 3 == 0)));
        assert_eq!(m.execute(&[3, 0, 0, 0, 2]), Ok(vec![3, 4, 0, 215, 2, 41]));
        assert_eq!(m.execute(&[3, 0, 2, 0, 3]), Err(ILLEGAL_DATA_ADDRESS));
        assert_eq!(m.execute(&[3, 0, 0, 0, 0]), Err(ILLEGAL_DATA_VALUE));
        assert_eq!(m.execute(&[6, 0, 2, 2, 0]), Ok(vec![6, 0, 2, 2, 0]));
        assert_eq!(m.holding[&2], 512);
        assert_eq!(
            m.execute(&[1, 0, 0, 0, 10]),
            Ok(vec![1, 2, 0b0100_1001, 0b10])
        );
        assert_eq!(m.execute(&[5, 0, 1, 0xFF, 0]), Ok(vec![5, 0, 1, 0xFF, 0]));
        assert_eq!(m.execute(&[5, 0, 1, 0x12, 0]), Err(ILLEGAL_DATA_VALUE));
        assert_eq!(
            m.execute(&[16, 0, 0, 0, 2, 4, 0, 1, 0, 2]),
            Ok(vec![16, 0, 0, 0, 2])
        );
        assert_eq!((m.holding[&0], m.holding[&1]), (1, 2));
        assert_eq!(
            m.execute(&[15, 0, 0, 0, 3, 1, 0b110]),
            Ok(vec![15, 0, 0, 0, 3])
        );
        assert_eq!((m.coils[&0], m.coils[&1], m.coils[&2]), (false, true, true));
        assert_eq!(m.execute(&[4, 0, 0, 0, 1]), Err(ILLEGAL_DATA_ADDRESS));
        assert_eq!(m.execute(&[0x2B, 0x0E, 1, 0]), Err(ILLEGAL_FUNCTION));
    }

    #[test]
    fn mask_write_changes_the_bits_it_names_alone() {
        // A status word 0xA001 and bit 3 switched on: 0xA009, nothing else changed.
        let mut m = Memory::default();
        m.holding.insert(7, 0xA001);
        let on = [22, 0, 7, 0xFF, 0xF7, 0x00, 0x08];
        assert_eq!(m.execute(&on), Ok(on.to_vec()));
        assert_eq!(m.holding[&7], 0xA009);
        // Bit 15 off.
        assert_eq!(m.execute(&[22, 0, 7, 0x7F, 0xFF, 0, 0]).map(drop), Ok(()));
        assert_eq!(m.holding[&7], 0x2009);
        // The example of the Modbus specification: 0x12 AND 0xF2 OR 0x25 -> 0x17.
        m.holding.insert(4, 0x12);
        assert!(m.execute(&[22, 0, 4, 0, 0xF2, 0, 0x25]).is_ok());
        assert_eq!(m.holding[&4], 0x17);
        assert_eq!(
            m.execute(&[22, 0, 9, 0, 0, 0, 0]),
            Err(ILLEGAL_DATA_ADDRESS)
        );
        assert_eq!(m.execute(&[22, 0, 7, 0, 0]), Err(ILLEGAL_DATA_VALUE));
        let frame = with_crc(vec![10, 22, 0, 7, 0xFF, 0xF7, 0, 8]);
        assert_eq!(parse_request(&frame), Parsed::Frame(10));
        assert_eq!(parse_request(&frame[..9]), Parsed::Incomplete);
    }

    #[test]
    fn short_pdus_are_refused_not_indexed() {
        // Found by prop_frame_execute_answers_every_pdu: an empty PDU and a write-multiple
        // PDU of 5 bytes, [16, 0, 0, 0, 1], indexed past their end.
        let mut m = Memory::default();
        assert_eq!(m.execute(&[]), Err(ILLEGAL_FUNCTION));
        assert_eq!(m.execute(&[16, 0, 0, 0, 1]), Err(ILLEGAL_DATA_VALUE));
        assert_eq!(m.execute(&[15]), Err(ILLEGAL_DATA_VALUE));
    }
}

/// Properties of what the simulated slave reads from the line (issue 10).
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    /// A request of a known function code with a good CRC, for any unit.
    fn request() -> impl Strategy<Value = Vec<u8>> {
        let fixed = (any::<u8>(), 1u8..=6, prop::collection::vec(any::<u8>(), 4))
            .prop_map(|(unit, function, rest)| [vec![unit, function], rest].concat());
        let multiple = (
            any::<u8>(),
            prop::sample::select(vec![15u8, 16]),
            prop::collection::vec(any::<u8>(), 4),
            prop::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(unit, function, head, data)| {
                let count = u8::try_from(data.len()).unwrap_or(u8::MAX);
                [vec![unit, function], head, vec![count], data].concat()
            });
        let mask = (any::<u8>(), prop::collection::vec(any::<u8>(), 6))
            .prop_map(|(unit, rest)| [vec![unit, 22], rest].concat());
        prop_oneof![fixed, multiple, mask].prop_map(with_crc)
    }

    /// What a line carries: requests, noise, truncated frames and frames with a bad CRC.
    fn line() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            request(),
            prop::collection::vec(any::<u8>(), 0..12),
            (request(), any::<prop::sample::Index>())
                .prop_map(|(frame, cut)| frame[..cut.index(frame.len())].to_vec()),
            (request(), any::<prop::sample::Index>(), 1u8..).prop_map(|(mut frame, at, flip)| {
                let at = at.index(frame.len());
                frame[at] ^= flip;
                frame
            }),
            prop::collection::vec(any::<u8>(), 2..10).prop_map(with_crc),
        ];
        prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
    }

    /// Splits a stream into frames as the simulated slave does; what is left is incomplete.
    fn frames(mut buf: &[u8]) -> Result<Vec<&[u8]>, TestCaseError> {
        let mut found = Vec::new();
        loop {
            match parse_request(buf) {
                Parsed::Incomplete => return Ok(found),
                Parsed::Garbage => buf = &buf[1..],
                Parsed::Frame(len) => {
                    prop_assert!((4..=buf.len()).contains(&len), "frame of {len} bytes");
                    let (frame, rest) = buf.split_at(len);
                    prop_assert!(crc_ok(frame), "bad CRC in {frame:?}");
                    found.push(frame);
                    buf = rest;
                }
            }
        }
    }

    fn memory() -> impl Strategy<Value = Memory> {
        let bits = || prop::collection::btree_map(0u16..40, any::<bool>(), 0..40);
        let words = || prop::collection::btree_map(0u16..40, any::<u16>(), 0..40);
        (bits(), bits(), words(), words()).prop_map(|(coils, discrete, holding, input)| Memory {
            coils,
            discrete,
            holding,
            input,
        })
    }

    /// Requests for the addresses a memory has, and any bytes at all.
    fn pdu() -> impl Strategy<Value = Vec<u8>> {
        let request = (
            prop_oneof![1u8..=6, Just(15), Just(16), Just(22), any::<u8>()],
            0u16..48,
            prop_oneof![0u16..130, Just(2000), any::<u16>()],
            prop::collection::vec(any::<u8>(), 0..12),
        )
            .prop_map(|(function, address, count, tail)| {
                let mut pdu = vec![function];
                pdu.extend(address.to_be_bytes());
                pdu.extend(count.to_be_bytes());
                pdu.extend(tail);
                pdu
            });
        prop_oneof![request, prop::collection::vec(any::<u8>(), 0..20)]
    }

    proptest! {
        #[test]
        fn prop_frame_parse_request_never_lies(stream in line()) {
            frames(&stream)?;
        }

        #[test]
        fn prop_frame_requests_back_to_back_are_each_found(
            requests in prop::collection::vec(request(), 0..6),
        ) {
            let stream = requests.concat();
            let found = frames(&stream)?;
            prop_assert_eq!(found, requests.iter().map(Vec::as_slice).collect::<Vec<_>>());
        }

        #[test]
        fn prop_frame_execute_answers_every_pdu(mut memory in memory(), pdu in pdu()) {
            match memory.execute(&pdu) {
                Err(code) => prop_assert!(
                    [ILLEGAL_FUNCTION, ILLEGAL_DATA_ADDRESS, ILLEGAL_DATA_VALUE].contains(&code)
                ),
                Ok(answer) => {
                    let count = usize::from(be(&pdu, 3));
                    match pdu[0] {
                        1 | 2 => {
                            prop_assert_eq!(usize::from(answer[1]), count.div_ceil(8));
                            prop_assert_eq!(answer.len(), 2 + count.div_ceil(8));
                        }
                        3 | 4 => {
                            prop_assert_eq!(usize::from(answer[1]), 2 * count);
                            prop_assert_eq!(answer.len(), 2 + 2 * count);
                        }
                        5 | 6 | 22 => prop_assert_eq!(&answer, &pdu),
                        15 | 16 => prop_assert_eq!(&answer, &pdu[..5]),
                        other => prop_assert!(false, "function {other} answered {answer:?}"),
                    }
                    prop_assert_eq!(answer[0], pdu[0]);
                }
            }
        }
    }
}
