//! Numbers: 16-, 32- and 64-bit integers and floats in words of either order, scaled
//! (`raw * scale + offset`) or named by `values`.

use super::{Codec, DecodeError, EncodeError, Value, ValueType, WordOrder};

/// A register's content as its type reads it, before scaling.
#[derive(Debug, Clone, Copy)]
enum Raw {
    Integer(i128),
    Float(f64),
}

/// The values an integer type holds; `None` for the other types.
pub(super) fn integer_range(kind: ValueType) -> Option<(i128, i128)> {
    match kind {
        ValueType::U16 => Some((0, u16::MAX.into())),
        ValueType::I16 => Some((i16::MIN.into(), i16::MAX.into())),
        ValueType::U32 => Some((0, u32::MAX.into())),
        ValueType::I32 => Some((i32::MIN.into(), i32::MAX.into())),
        ValueType::U64 => Some((0, u64::MAX.into())),
        ValueType::I64 => Some((i64::MIN.into(), i64::MAX.into())),
        ValueType::F32 | ValueType::F64 | ValueType::Bool | ValueType::String => None,
    }
}

/// The words of a value as one number, most significant word first once `word_order` is
/// undone.
fn join(codec: &Codec, words: &[u16]) -> u64 {
    let word = |w: &u16| u64::from(codec.byte_order.word(*w));
    let fold = |bits: u64, w: &u16| (bits << 16) | word(w);
    match codec.word_order {
        WordOrder::Big => words.iter().fold(0, fold),
        WordOrder::Little => words.iter().rev().fold(0, fold),
    }
}

/// The inverse of [`join`]: the words of `bits` as they go on the wire.
fn split(codec: &Codec, bits: u64) -> Vec<u16> {
    // Truncation is the point: each word is 16 bits of the value.
    let mut words: Vec<u16> = (0..codec.width())
        .rev()
        .map(|i| codec.byte_order.word((bits >> (16 * i)) as u16))
        .collect();
    if codec.word_order == WordOrder::Little {
        words.reverse();
    }
    words
}

/// What the bits of a number of `kind` mean.
fn raw(kind: ValueType, bits: u64) -> Raw {
    // Each cast takes exactly the type's width of `bits`, as the type reads them. The last
    // arm is f64: bools and strings are no numbers and never come here.
    match kind {
        ValueType::U16 => Raw::Integer(i128::from(bits as u16)),
        ValueType::I16 => Raw::Integer(i128::from(bits as u16 as i16)),
        ValueType::U32 => Raw::Integer(i128::from(bits as u32)),
        ValueType::I32 => Raw::Integer(i128::from(bits as u32 as i32)),
        ValueType::U64 => Raw::Integer(i128::from(bits)),
        ValueType::I64 => Raw::Integer(i128::from(bits as i64)),
        ValueType::F32 => Raw::Float(f64::from(f32::from_bits(bits as u32))),
        ValueType::F64 | ValueType::Bool | ValueType::String => Raw::Float(f64::from_bits(bits)),
    }
}

/// The inverse of [`raw`], for a raw value the type holds (checked before): the extra high
/// bits of a negative integer are dropped with the words [`split`] leaves out.
fn bits(kind: ValueType, raw: Raw) -> u64 {
    match (kind, raw) {
        (_, Raw::Integer(i)) => i as u64,
        (ValueType::F32, Raw::Float(f)) => u64::from((f as f32).to_bits()),
        (_, Raw::Float(f)) => f.to_bits(),
    }
}

pub(super) fn decode(codec: &Codec, words: &[u16]) -> Result<Value, DecodeError> {
    let value = match raw(codec.kind, join(codec, words)) {
        Raw::Integer(i) => match &codec.values {
            Some(values) => return Ok(values.name(i)),
            None if codec.is_unscaled() => return Ok(Value::Integer(i)),
            // Scaled: f64 carries as many digits as the scale leaves meaningful.
            None => i as f64,
        },
        Raw::Float(f) => f,
    };
    let scaled = value * codec.scale + codec.offset;
    if scaled.is_finite() {
        Ok(Value::Number(scaled))
    } else {
        Err(DecodeError::NotFinite(scaled))
    }
}

/// A command in published units: an integer register without scaling takes whole numbers
/// exactly (a u64 beyond 2^53 too), everything else an f64.
pub(super) fn parse(codec: &Codec, text: &str) -> Result<Value, EncodeError> {
    if codec.kind.is_integer()
        && codec.is_unscaled()
        && let Ok(integer) = text.parse::<i128>()
    {
        return Ok(Value::Integer(integer));
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Value::Number(v)),
        _ => Err(EncodeError::NotANumber(text.to_owned())),
    }
}

pub(super) fn encode(codec: &Codec, value: &Value) -> Result<Vec<u16>, EncodeError> {
    let raw = match (&codec.values, value) {
        (Some(values), _) if codec.kind.is_integer() => Raw::Integer(values.raw(value)?),
        (_, Value::Integer(i)) if codec.kind.is_integer() && codec.is_unscaled() => {
            // Beyond 2^53 the limits compare approximately; the type's range is exact below.
            within_limits(codec, *i as f64)?;
            Raw::Integer(*i)
        }
        _ => match value.as_f64() {
            Some(number) => unscale(codec, number)?,
            None => return Err(EncodeError::NotANumber(codec.format(value))),
        },
    };
    if let (Raw::Integer(i), Some((lo, hi))) = (raw, integer_range(codec.kind))
        && !(lo..=hi).contains(&i)
    {
        return Err(EncodeError::IntegerOutOfRange {
            value: i,
            kind: codec.kind,
        });
    }
    Ok(split(codec, bits(codec.kind, raw)))
}

fn within_limits(codec: &Codec, number: f64) -> Result<(), EncodeError> {
    if let Some(min) = codec.min.filter(|min| number < *min) {
        return Err(EncodeError::BelowMin { value: number, min });
    }
    if let Some(max) = codec.max.filter(|max| number > *max) {
        return Err(EncodeError::AboveMax { value: number, max });
    }
    Ok(())
}

/// Whether `raw` (whole for the integer types) is a value the type holds.
pub(super) fn holds(kind: ValueType, raw: f64) -> bool {
    match (kind, integer_range(kind)) {
        // Both bounds are 0 or ± a power of two, exact in f64; the upper one is open so that
        // 2^64, which is u64::MAX as f64, is refused rather than saturated.
        (_, Some((lo, hi))) => lo as f64 <= raw && raw < (hi + 1) as f64,
        (ValueType::F32, None) => raw.abs() <= f64::from(f32::MAX),
        _ => raw.is_finite(),
    }
}

/// Inverse scaling, rounding to the nearest raw value, then range checks against
/// `min`/`max` and the raw type.
fn unscale(codec: &Codec, number: f64) -> Result<Raw, EncodeError> {
    if !number.is_finite() {
        return Err(EncodeError::NotANumber(number.to_string()));
    }
    within_limits(codec, number)?;
    let unscaled = (number - codec.offset) / codec.scale;
    let integer = codec.kind.is_integer();
    let raw = if integer { unscaled.round() } else { unscaled };
    if !holds(codec.kind, raw) {
        return Err(EncodeError::OutOfRawRange {
            value: number,
            kind: codec.kind,
            raw,
        });
    }
    if !integer {
        return Ok(Raw::Float(raw));
    }
    check_rounding(codec, number, raw)?;
    // Whole and within the type's range: the cast is exact.
    Ok(Raw::Integer(raw as i128))
}

/// Refuses a raw value that rounding to the register's step took beyond `min`/`max`
/// (a step of 10 writes 1025 as 1030). Float noise of a millionth of a step is no step.
fn check_rounding(codec: &Codec, number: f64, raw: f64) -> Result<(), EncodeError> {
    let written = raw * codec.scale + codec.offset;
    let noise =
        codec.scale.abs() * 1e-6 + 4.0 * f64::EPSILON * (written.abs() + codec.offset.abs());
    let below = codec.min.filter(|min| written < min - noise);
    match below.or(codec.max.filter(|max| written > max + noise)) {
        Some(limit) => Err(EncodeError::RoundsBeyondLimit {
            value: number,
            step: codec.scale,
            written,
            limit,
        }),
        None => Ok(()),
    }
}
