//! Value codec: Modbus words and bits <-> engineering values.
//!
//! A register's raw content is decoded by its [`ValueType`] and [`WordOrder`], then scaled
//! (`raw * scale + offset`). Writing runs the other way and refuses what the raw type cannot
//! hold. Formatting prints no float noise: the number of decimals follows from the scaling.

use std::fmt;

use serde::Deserialize;

/// How a register's words are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
}

impl ValueType {
    /// Number of 16-bit words (or bits, in a bit table) the value takes.
    pub fn width(self) -> u16 {
        match self {
            ValueType::U16 | ValueType::I16 | ValueType::Bool => 1,
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 2,
        }
    }

    /// The raw range a written value must fall in, after inverse scaling.
    pub fn raw_range(self) -> (f64, f64) {
        match self {
            ValueType::U16 => (0.0, f64::from(u16::MAX)),
            ValueType::I16 => (f64::from(i16::MIN), f64::from(i16::MAX)),
            ValueType::U32 => (0.0, f64::from(u32::MAX)),
            ValueType::I32 => (f64::from(i32::MIN), f64::from(i32::MAX)),
            ValueType::F32 => (f64::from(f32::MIN), f64::from(f32::MAX)),
            ValueType::Bool => (0.0, 1.0),
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ValueType::U16 => "u16",
            ValueType::I16 => "i16",
            ValueType::U32 => "u32",
            ValueType::I32 => "i32",
            ValueType::F32 => "f32",
            ValueType::Bool => "bool",
        };
        f.write_str(name)
    }
}

/// Which word of a 32-bit value comes first on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WordOrder {
    /// High word first (Modbus convention).
    #[default]
    Big,
    /// Low word first (many meters).
    Little,
}

/// A decoded, scaled value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Bool(bool),
    Number(f64),
}

/// Why a value cannot be written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error("not a number: {0:?}")]
    NotANumber(String),
    #[error("not a boolean: {0:?} (use on/off, true/false, 1/0)")]
    NotABool(String),
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
}

/// Everything needed to turn words into a value and back.
#[derive(Debug, Clone, PartialEq)]
pub struct Codec {
    pub kind: ValueType,
    pub word_order: WordOrder,
    pub scale: f64,
    pub offset: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Default for Codec {
    fn default() -> Self {
        Codec {
            kind: ValueType::U16,
            word_order: WordOrder::Big,
            scale: 1.0,
            offset: 0.0,
            min: None,
            max: None,
        }
    }
}

impl Codec {
    /// Decodes the value from `words` (at least `kind.width()` of them).
    /// Returns `None` when too few words are given.
    pub fn decode(&self, words: &[u16]) -> Option<Value> {
        let raw = match self.kind {
            ValueType::Bool => return words.first().map(|w| Value::Bool(*w != 0)),
            ValueType::U16 => f64::from(*words.first()?),
            ValueType::I16 => f64::from(i16::from_be_bytes(words.first()?.to_be_bytes())),
            ValueType::U32 => f64::from(self.join(words)?),
            ValueType::I32 => f64::from(i32::from_be_bytes(self.join(words)?.to_be_bytes())),
            ValueType::F32 => f64::from(f32::from_bits(self.join(words)?)),
        };
        Some(Value::Number(raw * self.scale + self.offset))
    }

    fn join(&self, words: &[u16]) -> Option<u32> {
        let (first, second) = (*words.first()?, *words.get(1)?);
        let (high, low) = match self.word_order {
            WordOrder::Big => (first, second),
            WordOrder::Little => (second, first),
        };
        Some((u32::from(high) << 16) | u32::from(low))
    }

    fn split(&self, bits: u32) -> Vec<u16> {
        // Truncation is the point: the two halves of a 32-bit value.
        let (high, low) = ((bits >> 16) as u16, bits as u16);
        match self.word_order {
            WordOrder::Big => vec![high, low],
            WordOrder::Little => vec![low, high],
        }
    }

    /// Parses a command payload in engineering units.
    pub fn parse(&self, text: &str) -> Result<Value, EncodeError> {
        let text = text.trim();
        if self.kind == ValueType::Bool {
            return match text.to_ascii_lowercase().as_str() {
                "on" | "true" | "1" => Ok(Value::Bool(true)),
                "off" | "false" | "0" => Ok(Value::Bool(false)),
                _ => Err(EncodeError::NotABool(text.to_owned())),
            };
        }
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Value::Number(v)),
            _ => Err(EncodeError::NotANumber(text.to_owned())),
        }
    }

    /// Encodes a value into the words to write: inverse scaling, rounding to the nearest raw
    /// value, then range checks against `min`/`max` and the raw type.
    pub fn encode(&self, value: Value) -> Result<Vec<u16>, EncodeError> {
        let number = match value {
            Value::Bool(b) => return Ok(vec![u16::from(b)]),
            Value::Number(n) => n,
        };
        if !number.is_finite() {
            return Err(EncodeError::NotANumber(number.to_string()));
        }
        if let Some(min) = self.min.filter(|min| number < *min) {
            return Err(EncodeError::BelowMin { value: number, min });
        }
        if let Some(max) = self.max.filter(|max| number > *max) {
            return Err(EncodeError::AboveMax { value: number, max });
        }
        let unscaled = (number - self.offset) / self.scale;
        let raw = if self.kind == ValueType::F32 {
            unscaled
        } else {
            unscaled.round()
        };
        let (lo, hi) = self.kind.raw_range();
        if !(lo..=hi).contains(&raw) {
            return Err(EncodeError::OutOfRawRange {
                value: number,
                kind: self.kind,
                raw,
            });
        }
        if self.kind != ValueType::F32 {
            self.check_rounding(number, raw)?;
        }
        // The range check above makes each cast exact.
        Ok(match self.kind {
            ValueType::Bool => vec![u16::from(raw != 0.0)],
            ValueType::U16 => vec![raw as u16],
            ValueType::I16 => vec![u16::from_be_bytes((raw as i16).to_be_bytes())],
            ValueType::U32 => self.split(raw as u32),
            ValueType::I32 => self.split(u32::from_be_bytes((raw as i32).to_be_bytes())),
            ValueType::F32 => self.split((raw as f32).to_bits()),
        })
    }

    /// Refuses a raw value that rounding to the register's step took beyond `min`/`max`
    /// (a step of 10 writes 1025 as 1030). Float noise of a millionth of a step is no step.
    fn check_rounding(&self, number: f64, raw: f64) -> Result<(), EncodeError> {
        let written = raw * self.scale + self.offset;
        let noise =
            self.scale.abs() * 1e-6 + 4.0 * f64::EPSILON * (written.abs() + self.offset.abs());
        let below = self.min.filter(|min| written < min - noise);
        match below.or(self.max.filter(|max| written > max + noise)) {
            Some(limit) => Err(EncodeError::RoundsBeyondLimit {
                value: number,
                step: self.scale,
                written,
                limit,
            }),
            None => Ok(()),
        }
    }

    /// Formats a value as published: `21.5`, `-157`, `true`.
    pub fn format(&self, value: Value) -> String {
        match value {
            Value::Bool(b) => b.to_string(),
            Value::Number(n) if self.kind == ValueType::F32 => format_f32(n),
            Value::Number(n) => trim_zero(format!("{:.*}", self.decimals(), n)),
        }
    }

    /// Decimals to print: those the scale and offset bring in, and at least two below the
    /// step, so that a scale decimals cannot write in 9 places (1e-12, 2.5e-10) loses no step.
    fn decimals(&self) -> usize {
        let exact = decimals_of(self.scale) + decimals_of(self.offset);
        let below_step = 2.0 - self.scale.abs().log10().floor();
        // A finite non-zero scale makes this a small whole number.
        exact.max(below_step.max(0.0) as usize)
    }
}

/// f32 data carries only f32 precision: print the shortest text of that f32 (`230.7`, not
/// `230.6999969482422`). A value that scaling took out of the normal f32 range would print
/// as `inf` or lose digits as an f32: it keeps its f64 digits, with an exponent.
fn format_f32(n: f64) -> String {
    let normal = f64::from(f32::MIN_POSITIVE)..=f64::from(f32::MAX);
    if n == 0.0 || normal.contains(&n.abs()) {
        trim_zero(format!("{}", n as f32))
    } else {
        format!("{n:e}")
    }
}

/// How many decimals a factor such as 0.1 or 0.25 brings into a product (at most 9).
fn decimals_of(x: f64) -> usize {
    (0..9)
        .find(|&d| {
            let shifted = x * 10f64.powi(d as i32);
            (shifted - shifted.round()).abs() <= 1e-9 * shifted.abs().max(1.0)
        })
        .unwrap_or(9)
}

/// `21.50` -> `21.5`, `3.00` -> `3`, `-0` -> `0`.
fn trim_zero(text: String) -> String {
    let trimmed = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    if trimmed == "-0" {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(kind: ValueType, scale: f64) -> Codec {
        Codec {
            kind,
            scale,
            ..Codec::default()
        }
    }

    #[test]
    fn reference_values_print_without_float_noise() {
        let tenths = codec(ValueType::I16, 0.1);
        let v = tenths.decode(&[215]).unwrap();
        assert_eq!(tenths.format(v), "21.5");
        assert_eq!(tenths.format(tenths.decode(&[553]).unwrap()), "55.3");
        assert_eq!(tenths.format(tenths.decode(&[200]).unwrap()), "20");
        let plain = codec(ValueType::I16, 1.0);
        let v = plain.decode(&[(-157i16) as u16]).unwrap();
        assert_eq!(plain.format(v), "-157");
        assert_eq!(plain.format(plain.decode(&[0]).unwrap()), "0");
    }

    #[test]
    fn offset_and_odd_scales_keep_their_decimals() {
        let c = Codec {
            kind: ValueType::U16,
            scale: 0.25,
            offset: -40.0,
            ..Codec::default()
        };
        assert_eq!(c.format(c.decode(&[161]).unwrap()), "0.25");
        let hundredths = codec(ValueType::U16, 0.01);
        assert_eq!(
            hundredths.format(hundredths.decode(&[12345]).unwrap()),
            "123.45"
        );
    }

    #[test]
    fn word_orders_decode_32_bit_values() {
        let big = codec(ValueType::U32, 1.0);
        assert_eq!(big.decode(&[1, 2]), Some(Value::Number(65538.0)));
        let little = Codec {
            word_order: WordOrder::Little,
            ..big.clone()
        };
        assert_eq!(little.decode(&[2, 1]), Some(Value::Number(65538.0)));
        let signed = codec(ValueType::I32, 1.0);
        assert_eq!(signed.decode(&[0xFFFF, 0xFFFE]), Some(Value::Number(-2.0)));
        let float = codec(ValueType::F32, 1.0);
        let words = float.encode(Value::Number(230.7)).unwrap();
        assert_eq!(words, vec![0x4366, 0xB333]);
        assert_eq!(float.format(float.decode(&words).unwrap()), "230.7");
        assert_eq!(big.decode(&[1]), None);
    }

    #[test]
    fn encode_inverts_scaling_and_rounds() {
        let tenths = codec(ValueType::I16, 0.1);
        assert_eq!(tenths.encode(Value::Number(21.5)), Ok(vec![215]));
        assert_eq!(
            tenths.encode(Value::Number(-15.7)),
            Ok(vec![(-157i16) as u16])
        );
        assert_eq!(tenths.encode(Value::Number(0.04)), Ok(vec![0]));
        let little = Codec {
            kind: ValueType::I32,
            word_order: WordOrder::Little,
            ..Codec::default()
        };
        assert_eq!(little.encode(Value::Number(-2.0)), Ok(vec![0xFFFE, 0xFFFF]));
    }

    #[test]
    fn encode_refuses_out_of_range() {
        let pwm = Codec {
            min: Some(0.0),
            max: Some(1023.0),
            ..Codec::default()
        };
        assert!(matches!(
            pwm.encode(Value::Number(1024.0)),
            Err(EncodeError::AboveMax { .. })
        ));
        assert!(matches!(
            pwm.encode(Value::Number(-5.0)),
            Err(EncodeError::BelowMin { .. })
        ));
        let raw = codec(ValueType::U16, 1.0);
        assert!(matches!(
            raw.encode(Value::Number(1e9)),
            Err(EncodeError::OutOfRawRange { .. })
        ));
        assert!(matches!(
            raw.encode(Value::Number(-1.0)),
            Err(EncodeError::OutOfRawRange { .. })
        ));
        assert!(raw.encode(Value::Number(f64::NAN)).is_err());
    }

    #[test]
    fn rounding_to_a_step_never_crosses_min_or_max() {
        // Found by prop_codec_encode_refuses_beyond_min_max_and_non_finite: 1025 in steps of
        // 10 was written as 1030, above the maximum it had been checked against.
        let tens = Codec {
            kind: ValueType::I16,
            scale: 10.0,
            min: Some(-25.0),
            max: Some(1025.0),
            ..Codec::default()
        };
        assert!(matches!(
            tens.encode(Value::Number(1025.0)),
            Err(EncodeError::RoundsBeyondLimit {
                written: 1030.0,
                ..
            })
        ));
        assert!(matches!(
            tens.encode(Value::Number(-25.0)),
            Err(EncodeError::RoundsBeyondLimit { written: -30.0, .. })
        ));
        assert_eq!(tens.encode(Value::Number(1024.0)), Ok(vec![102]));
        // A limit on the step itself is not crossed by float noise: 102.3 is 1023 x 0.1.
        let tenths = Codec {
            scale: 0.1,
            max: Some(102.3),
            ..Codec::default()
        };
        assert_eq!(tenths.encode(Value::Number(102.3)), Ok(vec![1023]));
    }

    #[test]
    fn tiny_scales_print_every_step() {
        // Found by prop_codec_printed_values_parse_back: with scale 2.54e-10 the decimals
        // stopped at 9, so raw 1 was published as "0".
        let tiny = codec(ValueType::U16, 2.5e-10);
        assert_eq!(tiny.format(tiny.decode(&[1]).unwrap()), "0.00000000025");
        let pico = codec(ValueType::U32, 1e-12);
        assert_eq!(pico.format(pico.decode(&[0, 3]).unwrap()), "0.000000000003");
    }

    #[test]
    fn f32_scaled_beyond_f32_keeps_its_digits() {
        // Found by prop_codec_printed_values_parse_back: an f32 near its maximum times a
        // scale of 2566 was published as "inf".
        let big = codec(ValueType::F32, 10.0);
        let words = big.split(f32::MAX.to_bits());
        let text = big.format(big.decode(&words).unwrap());
        assert_eq!(text, "3.4028234663852886e39");
        assert_eq!(big.parse(&text).ok(), big.decode(&words));
        let small = codec(ValueType::F32, 1e-12);
        let words = small.split(1e-30f32.to_bits());
        assert_eq!(
            small.format(small.decode(&words).unwrap()),
            "1.0000000031710769e-42"
        );
    }

    #[test]
    fn parse_commands() {
        let n = codec(ValueType::U16, 1.0);
        assert_eq!(n.parse(" 512 "), Ok(Value::Number(512.0)));
        assert!(n.parse("abc").is_err());
        assert!(n.parse("").is_err());
        assert!(n.parse("NaN").is_err());
        assert!(n.parse("inf").is_err());
        let b = codec(ValueType::Bool, 1.0);
        assert_eq!(b.parse("ON"), Ok(Value::Bool(true)));
        assert_eq!(b.parse("0"), Ok(Value::Bool(false)));
        assert!(b.parse("2").is_err());
    }
}

/// Properties over every type, word order, scale and offset (issue 10). A longer run:
/// `PROPTEST_CASES=100000 cargo test --lib prop_`.
#[cfg(test)]
pub(crate) mod props {
    use proptest::prelude::*;

    use super::*;

    const NUMBER_KINDS: [ValueType; 5] = [
        ValueType::U16,
        ValueType::I16,
        ValueType::U32,
        ValueType::I32,
        ValueType::F32,
    ];

    /// Scales as users write them (0.1, 0.25, -1) and any magnitude from 1e-12 to 1e12.
    fn scale() -> impl Strategy<Value = f64> {
        let written = prop::sample::select(vec![
            1.0, 0.1, 0.01, 0.001, 0.0001, 1e-6, 0.25, 0.5, 2.0, 10.0, 100.0, 0.0125, -1.0, -0.1,
        ]);
        let any_magnitude = (-12.0f64..12.0, any::<bool>()).prop_map(|(e, negative)| {
            if negative {
                -(10f64.powf(e))
            } else {
                10f64.powf(e)
            }
        });
        prop_oneof![written, any_magnitude]
    }

    fn offset() -> impl Strategy<Value = f64> {
        let written = prop::sample::select(vec![0.0, -40.0, 273.15, 0.5, -0.1, 1e6]);
        prop_oneof![written, -1e6f64..1e6]
    }

    fn word_order() -> impl Strategy<Value = WordOrder> {
        prop::sample::select(vec![WordOrder::Big, WordOrder::Little])
    }

    /// A numeric codec without min/max.
    fn number_codec() -> impl Strategy<Value = Codec> {
        (
            prop::sample::select(NUMBER_KINDS.to_vec()),
            word_order(),
            scale(),
            offset(),
        )
            .prop_map(|(kind, word_order, scale, offset)| Codec {
                kind,
                word_order,
                scale,
                offset,
                min: None,
                max: None,
            })
    }

    /// Float error of `(x - offset) / scale` and back, beyond the rounding to a raw value.
    fn arithmetic_slack(c: &Codec, x: f64) -> f64 {
        8.0 * f64::EPSILON * (x.abs() + c.offset.abs() + c.scale.abs())
    }

    /// How far a value may land from `x` once written or printed: half a raw step for the
    /// integer types; for f32, an f32 step of the raw value or of the printed value (printing
    /// rounds to f32 and then to the shortest text of that f32), or the smallest subnormal.
    pub(crate) fn resolution(c: &Codec, x: f64) -> f64 {
        let step = if c.kind == ValueType::F32 {
            let magnitude = (x - c.offset).abs().max(x.abs());
            2.0 * magnitude * f64::from(f32::EPSILON) + c.scale.abs() * 1e-44
        } else {
            c.scale.abs()
        };
        step / 2.0 + arithmetic_slack(c, x)
    }

    /// How far beyond min/max a written `x` may read back: rounding to a raw step must not
    /// cross a limit (by more than float noise, a millionth of a step); f32 rounding may.
    pub(crate) fn limit_slack(c: &Codec, x: f64) -> f64 {
        if c.kind == ValueType::F32 {
            resolution(c, x)
        } else {
            arithmetic_slack(c, x) + c.scale.abs() * 1e-6
        }
    }

    fn number(value: Option<Value>) -> f64 {
        match value {
            Some(Value::Number(n)) => n,
            other => panic!("not a number: {other:?}"),
        }
    }

    /// A raw value the type holds, as f64 (integral for the integer types).
    fn raw_in_range(kind: ValueType) -> BoxedStrategy<f64> {
        let (lo, hi) = kind.raw_range();
        if kind == ValueType::F32 {
            any::<f32>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(f64::from)
                .boxed()
        } else {
            (lo as i64..=hi as i64).prop_map(|r| r as f64).boxed()
        }
    }

    proptest! {
        #[test]
        fn prop_codec_decode_of_encode_is_within_resolution(
            (c, raw, fraction) in number_codec().prop_flat_map(|c| {
                let raw = raw_in_range(c.kind);
                (Just(c), raw, -0.5f64..0.5)
            })
        ) {
            // A value near one the register holds: a raw value, off by up to half a step.
            let x = (raw + fraction) * c.scale + c.offset;
            prop_assume!(x.is_finite());
            match c.encode(Value::Number(x)) {
                Ok(words) => {
                    prop_assert_eq!(words.len(), usize::from(c.kind.width()));
                    let back = number(c.decode(&words));
                    prop_assert!(
                        (back - x).abs() <= resolution(&c, x),
                        "{x} written as {words:?} reads back as {back}"
                    );
                }
                // Only the edges of the raw range may round out of it.
                Err(EncodeError::OutOfRawRange { raw: r, .. }) => {
                    let (lo, hi) = c.kind.raw_range();
                    prop_assert!(r < lo || r > hi, "{x} refused with raw {r} in range");
                }
                Err(e) => prop_assert!(false, "{x} refused: {e}"),
            }
        }

        #[test]
        fn prop_codec_bools_round_trip(b in any::<bool>(), word in any::<u16>()) {
            let c = Codec { kind: ValueType::Bool, ..Codec::default() };
            let words = c.encode(Value::Bool(b)).unwrap();
            prop_assert_eq!(c.decode(&words), Some(Value::Bool(b)));
            let read = c.decode(&[word]).unwrap();
            prop_assert_eq!(c.parse(&c.format(read)), Ok(read));
        }

        #[test]
        fn prop_codec_encode_refuses_what_the_register_cannot_hold(
            c in number_codec(),
            offset_steps in -1e6f64..1e6,
            factor in 1.0f64..1e6,
            below in any::<bool>(),
        ) {
            // An offset in steps, so that f64 tells raw values apart beside it.
            let c = Codec { offset: offset_steps * c.scale, ..c };
            // A raw value beyond the type's range by a factor, on either side.
            let (lo, hi) = c.kind.raw_range();
            let raw = if below {
                (lo - 1f64.max(-lo * 1e-6)) * factor
            } else {
                (hi + 1f64.max(hi * 1e-6)) * factor
            };
            let x = raw * c.scale + c.offset;
            let refused = matches!(
                c.encode(Value::Number(x)),
                Err(EncodeError::OutOfRawRange { .. })
            );
            prop_assert!(refused, "{x} (raw {raw}) accepted");
        }

        #[test]
        fn prop_codec_encode_refuses_beyond_min_max_and_non_finite(
            c in number_codec(),
            (min, max) in (-1e4f64..1e4, 0.0f64..1e4).prop_map(|(lo, span)| (lo, lo + span)),
            x in prop_oneof![
                any::<f64>(),
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                -2e4f64..2e4,
            ],
        ) {
            let c = Codec { min: Some(min), max: Some(max), ..c };
            match c.encode(Value::Number(x)) {
                Ok(words) => {
                    prop_assert!(x.is_finite() && (min..=max).contains(&x), "{x} accepted");
                    let back = number(c.decode(&words));
                    let slack = limit_slack(&c, x);
                    prop_assert!(
                        back >= min - slack && back <= max + slack,
                        "{x} written as {words:?} reads back as {back}, outside {min}..={max}"
                    );
                }
                Err(EncodeError::NotANumber(_)) => prop_assert!(!x.is_finite()),
                Err(EncodeError::BelowMin { .. }) => prop_assert!(x < min),
                Err(EncodeError::AboveMax { .. }) => prop_assert!(x > max),
                Err(EncodeError::RoundsBeyondLimit { written, .. }) => {
                    prop_assert!(!(min..=max).contains(&written));
                }
                Err(EncodeError::OutOfRawRange { .. } | EncodeError::NotABool(_)) => {}
            }
        }

        #[test]
        fn prop_codec_printed_values_parse_back(
            c in number_codec(),
            words in prop::collection::vec(any::<u16>(), 2),
        ) {
            let read = number(c.decode(&words));
            prop_assume!(read.is_finite());
            let text = c.format(Value::Number(read));
            let parsed = c.parse(&text);
            prop_assert!(parsed.is_ok(), "{read} printed as {text:?}: {parsed:?}");
            let back = number(parsed.ok());
            prop_assert!(
                (back - read).abs() <= resolution(&c, read),
                "{read} printed as {text:?} reads back as {back}"
            );
            // An integer register whose steps f64 tells apart beside the offset (not 1e-12
            // beside 1e6): a command of the printed text writes the same words.
            if c.kind != ValueType::F32 && arithmetic_slack(&c, read) * 4.0 < c.scale.abs() {
                let width = usize::from(c.kind.width());
                prop_assert_eq!(c.encode(Value::Number(back)), Ok(words[..width].to_vec()));
            }
        }
    }
}
