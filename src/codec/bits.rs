//! Bits: a `bool` that is one bit of a holding or input register, several of which share
//! the register's one read; written by changing that bit alone.

use super::ByteOrder;

/// A bit of a 16-bit register, 0 (least significant) to 15.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bit(u8);

impl Bit {
    pub const MAX: u8 = 15;

    pub fn new(bit: i64) -> Option<Bit> {
        u8::try_from(bit).ok().filter(|b| *b <= Self::MAX).map(Bit)
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// The bit as it sits in the word on the wire: a device that swaps bytes has bit 0 in
    /// the high byte.
    fn on_wire(self, byte_order: ByteOrder) -> u16 {
        byte_order.word(1 << self.0)
    }

    /// Whether the bit is set in `word` as read.
    pub(super) fn is_set(self, word: u16, byte_order: ByteOrder) -> bool {
        word & self.on_wire(byte_order) != 0
    }

    pub(super) fn mask_write(self, on: bool, byte_order: ByteOrder) -> MaskWrite {
        let bit = self.on_wire(byte_order);
        MaskWrite {
            and_mask: !bit,
            or_mask: if on { bit } else { 0 },
        }
    }
}

impl std::fmt::Display for Bit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The two masks of function 22 (mask write register), which changes some bits of a
/// register in one transaction and leaves the others as the device has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskWrite {
    pub and_mask: u16,
    pub or_mask: u16,
}

impl MaskWrite {
    /// What the write makes of a register holding `current`, as the Modbus specification
    /// defines function 22; also the word a read-modify-write writes back.
    pub fn apply(self, current: u16) -> u16 {
        (current & self.and_mask) | (self.or_mask & !self.and_mask)
    }
}
