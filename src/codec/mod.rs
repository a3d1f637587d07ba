//! Value codec: Modbus words and bits <-> values as published.
//!
//! A register's words are read by its [`ValueType`], [`WordOrder`] and [`ByteOrder`]. Numbers
//! are then scaled (`raw * scale + offset`) or, with `values`, named; a `bool` may be one bit
//! of a word; a `string` is the text its bytes spell. Writing runs the other way and refuses
//! what the register cannot hold. One file per family (numbers, bits, strings,
//! enumerations) behind the one [`Codec`] the rest of the daemon sees.

mod bits;
mod enumeration;
mod format;
mod numbers;
mod strings;

use std::fmt;

use serde::Deserialize;

pub use bits::{Bit, MaskWrite};
pub use enumeration::Enumeration;

/// How a register's words are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    Bool,
    /// Its width is a register's `length`, which the one-shot commands do not take.
    #[value(skip)]
    String,
}

impl ValueType {
    /// The values an integer type holds (what `values` may name); `None` for the others.
    pub fn integer_range(self) -> Option<(i128, i128)> {
        numbers::integer_range(self)
    }

    pub fn is_integer(self) -> bool {
        self.integer_range().is_some()
    }

    /// Whether the type is a number that `scale`, `offset`, `min`, `max` and `deadband`
    /// apply to.
    pub fn is_number(self) -> bool {
        !matches!(self, ValueType::Bool | ValueType::String)
    }

    /// Whether a value of the type spans several words, so that their order matters.
    pub fn has_word_order(self) -> bool {
        matches!(
            self,
            ValueType::U32
                | ValueType::I32
                | ValueType::F32
                | ValueType::U64
                | ValueType::I64
                | ValueType::F64
        )
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ValueType::U16 => "u16",
            ValueType::I16 => "i16",
            ValueType::U32 => "u32",
            ValueType::I32 => "i32",
            ValueType::U64 => "u64",
            ValueType::I64 => "i64",
            ValueType::F32 => "f32",
            ValueType::F64 => "f64",
            ValueType::Bool => "bool",
            ValueType::String => "string",
        };
        f.write_str(name)
    }
}

/// Which word of a 32- or 64-bit value comes first on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WordOrder {
    /// High word first (Modbus convention).
    #[default]
    Big,
    /// Low word first (many meters).
    Little,
}

/// Which byte of each word comes first on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ByteOrder {
    /// High byte first, as Modbus says.
    #[default]
    Big,
    /// Low byte first (devices that swap them).
    Little,
}

impl ByteOrder {
    /// A word as received <-> the word as the device means it (the swap is its own inverse).
    fn word(self, word: u16) -> u16 {
        match self {
            ByteOrder::Big => word,
            ByteOrder::Little => word.swap_bytes(),
        }
    }
}

/// A decoded value, as published.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    /// An integer register's content, unscaled and exact (a 64-bit one is beyond f64).
    Integer(i128),
    /// A scaled or floating-point value; always finite when decoded.
    Number(f64),
    /// A string register's text, or the text `values` gives a raw number.
    Text(String),
}

impl Value {
    /// The value as a number, for deadbands and limits; `None` for bools and texts.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            // Exact up to 2^53; beyond it a deadband or a limit is no finer anyway.
            Value::Integer(i) => Some(*i as f64),
            Value::Number(n) => Some(*n),
            Value::Bool(_) | Value::Text(_) => None,
        }
    }
}

/// Why words give no value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer words than the register takes: an answer cut short.
    #[error("{got} words where the register takes {needed}")]
    TooFewWords { needed: u16, got: usize },
    /// NaN or an infinity: how many devices say "no sensor". Not published; a failed read of
    /// that register.
    #[error("decodes to {0}, which is not a value (how many devices say \"no sensor\")")]
    NotFinite(f64),
}

/// Why a value cannot be written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error("not a number: {0:?}")]
    NotANumber(String),
    #[error("not a boolean: {0:?} (use on/off, true/false, 1/0)")]
    NotABool(String),
    #[error("not text: {0:?} (a string register takes text)")]
    NotText(String),
    #[error("{text:?} is not one of {listed}")]
    NotListed { text: String, listed: String },
    #[error("{value} is below the minimum {min}")]
    BelowMin { value: f64, min: f64 },
    #[error("{value} is above the maximum {max}")]
    AboveMax { value: f64, max: f64 },
    #[error("{value} is written in steps of {step}: {written} is beyond the limit {limit}")]
    RoundsBeyondLimit {
        value: f64,
        step: f64,
        written: f64,
        limit: f64,
    },
    #[error("{value} does not fit a {kind} register after scaling (raw {raw})")]
    OutOfRawRange {
        value: f64,
        kind: ValueType,
        raw: f64,
    },
    #[error("{value} does not fit a {kind} register")]
    IntegerOutOfRange { value: i128, kind: ValueType },
    #[error("{bytes} bytes of text do not fit the register's {most} (two per register)")]
    TooLong { bytes: usize, most: usize },
    /// The other bits of the word are the device's: a bit is written by changing it in the
    /// word read from the device (or by a mask write), never as a word of its own.
    #[error("bit {bit} is written by changing it in the register's current word")]
    BitOfWord { bit: u8 },
    #[error("not one bit of a register")]
    NotABit,
}

/// Everything needed to turn words into a value and back.
#[derive(Debug, Clone, PartialEq)]
pub struct Codec {
    pub kind: ValueType,
    pub word_order: WordOrder,
    pub byte_order: ByteOrder,
    /// Registers a `string` takes, two bytes each; no other type reads it.
    pub length: u16,
    /// A `bool` that is one bit of a register rather than the whole register.
    pub bit: Option<Bit>,
    pub scale: f64,
    pub offset: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Texts for raw values of an integer type, published instead of the number.
    pub values: Option<Enumeration>,
}

impl Default for Codec {
    fn default() -> Self {
        Codec {
            kind: ValueType::U16,
            word_order: WordOrder::Big,
            byte_order: ByteOrder::Big,
            length: 0,
            bit: None,
            scale: 1.0,
            offset: 0.0,
            min: None,
            max: None,
            values: None,
        }
    }
}

impl Codec {
    /// Addresses the value takes: words in a register table, bits in a bit table.
    pub fn width(&self) -> u16 {
        match self.kind {
            ValueType::String => self.length,
            ValueType::U16 | ValueType::I16 | ValueType::Bool => 1,
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 2,
            ValueType::U64 | ValueType::I64 | ValueType::F64 => 4,
        }
    }

    /// Whether numbers are published as read: no scale, no offset.
    fn is_unscaled(&self) -> bool {
        self.scale == 1.0 && self.offset == 0.0
    }

    /// Decodes the value from the first [`Codec::width`] of `words`.
    pub fn decode(&self, words: &[u16]) -> Result<Value, DecodeError> {
        let needed = self.width();
        let words = words
            .get(..usize::from(needed))
            .ok_or(DecodeError::TooFewWords {
                needed,
                got: words.len(),
            })?;
        match (self.kind, words) {
            (ValueType::String, _) => Ok(Value::Text(strings::decode(words, self.byte_order))),
            (ValueType::Bool, [word]) => Ok(Value::Bool(match self.bit {
                Some(bit) => bit.is_set(*word, self.byte_order),
                None => *word != 0,
            })),
            _ => numbers::decode(self, words),
        }
    }

    /// Parses a command payload: a number in published units, a bool, a string's text, or
    /// one of the `values` by text or by number.
    pub fn parse(&self, text: &str) -> Result<Value, EncodeError> {
        // A string is written as sent: its spaces are part of it.
        if self.kind == ValueType::String {
            return Ok(Value::Text(text.to_owned()));
        }
        let text = text.trim();
        if self.kind == ValueType::Bool {
            return match text.to_ascii_lowercase().as_str() {
                "on" | "true" | "1" => Ok(Value::Bool(true)),
                "off" | "false" | "0" => Ok(Value::Bool(false)),
                _ => Err(EncodeError::NotABool(text.to_owned())),
            };
        }
        match &self.values {
            Some(values) => values.parse(text),
            None => numbers::parse(self, text),
        }
    }

    /// Encodes a value into the words to write, refusing what the register cannot hold. A
    /// bit of a register has no words of its own: see [`Codec::mask_write`].
    pub fn encode(&self, value: &Value) -> Result<Vec<u16>, EncodeError> {
        match self.kind {
            ValueType::String => match value {
                Value::Text(text) => strings::encode(text, self.length, self.byte_order),
                other => Err(EncodeError::NotText(self.format(other))),
            },
            ValueType::Bool => match (value, self.bit) {
                (_, Some(bit)) => Err(EncodeError::BitOfWord { bit: bit.get() }),
                (Value::Bool(on), None) => Ok(vec![self.byte_order.word(u16::from(*on))]),
                (other, None) => Err(EncodeError::NotABool(self.format(other))),
            },
            _ => numbers::encode(self, value),
        }
    }

    /// The function 22 (mask write) that sets a bit register to `value`; its
    /// [`MaskWrite::apply`] gives the word to write back after reading the current one.
    pub fn mask_write(&self, value: &Value) -> Result<MaskWrite, EncodeError> {
        match (self.bit, value) {
            (Some(bit), Value::Bool(on)) => Ok(bit.mask_write(*on, self.byte_order)),
            (Some(_), other) => Err(EncodeError::NotABool(self.format(other))),
            (None, _) => Err(EncodeError::NotABit),
        }
    }

    /// The word `current` with this register's bit set to `value`: the write of a
    /// read-modify-write.
    pub fn set_bit(&self, current: u16, value: &Value) -> Result<u16, EncodeError> {
        Ok(self.mask_write(value)?.apply(current))
    }

    /// The register's content when it holds `value`, over its `current` words: what a
    /// device (the simulated one) keeps, not what a command may write. `min` and `max` do
    /// not apply and `values` may miss the number; a bit changes only its bit of the word.
    pub fn encode_content(&self, current: &[u16], value: &Value) -> Result<Vec<u16>, EncodeError> {
        if self.bit.is_some() {
            let word = current.first().copied().unwrap_or(0);
            return Ok(vec![self.set_bit(word, value)?]);
        }
        let unlimited = Codec {
            min: None,
            max: None,
            values: self
                .values
                .clone()
                .filter(|_| matches!(value, Value::Text(_))),
            ..self.clone()
        };
        unlimited.encode(value)
    }

    /// Formats a value as published: `21.5`, `-157`, `3.4e38`, `true`, `heat`.
    pub fn format(&self, value: &Value) -> String {
        match value {
            Value::Bool(b) => b.to_string(),
            Value::Integer(i) => i.to_string(),
            Value::Number(n) => format::number(self, *n),
            Value::Text(text) => text.clone(),
        }
    }

    /// Whether `value` is a raw number its `values` do not name (published as the number).
    pub fn is_unlisted(&self, value: &Value) -> bool {
        self.values.is_some() && matches!(value, Value::Integer(_))
    }
}

#[cfg(test)]
pub(crate) mod props;
#[cfg(test)]
mod tests;
