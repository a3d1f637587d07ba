//! Properties over every type, word order, byte order, scale and offset (issues 10 and 15). A
//! longer run: `PROPTEST_CASES=100000 cargo test --lib prop_`.

use proptest::prelude::*;

use super::numbers::{holds, integer_range};
use super::*;

const NUMBER_KINDS: [ValueType; 8] = [
    ValueType::U16,
    ValueType::I16,
    ValueType::U32,
    ValueType::I32,
    ValueType::U64,
    ValueType::I64,
    ValueType::F32,
    ValueType::F64,
];

fn integer_kind() -> impl Strategy<Value = ValueType> {
    let integers = NUMBER_KINDS.into_iter().filter(|k| k.is_integer());
    prop::sample::select(integers.collect::<Vec<_>>())
}

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

fn byte_order() -> impl Strategy<Value = ByteOrder> {
    prop::sample::select(vec![ByteOrder::Big, ByteOrder::Little])
}

/// A codec of `kinds` in any word and byte order, scaled or not, without min/max.
fn codec_of(kinds: &[ValueType]) -> impl Strategy<Value = Codec> {
    let unscaled = Just((1.0, 0.0));
    let scaled = (scale(), offset());
    (
        prop::sample::select(kinds.to_vec()),
        word_order(),
        byte_order(),
        prop_oneof![1 => unscaled, 3 => scaled],
    )
        .prop_map(|(kind, word_order, byte_order, (scale, offset))| Codec {
            kind,
            word_order,
            byte_order,
            scale,
            offset,
            ..Codec::default()
        })
}

fn number_codec() -> impl Strategy<Value = Codec> {
    codec_of(&NUMBER_KINDS)
}

/// Float error of `(x - offset) / scale` and back, beyond the rounding to a raw value.
fn arithmetic_slack(c: &Codec, x: f64) -> f64 {
    8.0 * f64::EPSILON * (x.abs() + c.offset.abs() + c.scale.abs())
}

/// How far a value may land from `x` once written or printed: half a raw step for the
/// integer types; for f32, an f32 step of the raw value or of the printed value (printing
/// rounds to f32 and then to the shortest text of that f32), or the smallest subnormal; for
/// f64, the arithmetic alone.
pub(crate) fn resolution(c: &Codec, x: f64) -> f64 {
    let step = match c.kind {
        ValueType::F32 => {
            let magnitude = (x - c.offset).abs().max(x.abs());
            2.0 * magnitude * f64::from(f32::EPSILON) + c.scale.abs() * 1e-44
        }
        ValueType::F64 => 0.0,
        _ => c.scale.abs(),
    };
    step / 2.0 + arithmetic_slack(c, x)
}

/// How far beyond min/max a written `x` may read back: rounding to a raw step must not
/// cross a limit (by more than float noise, a millionth of a step); float rounding may.
pub(crate) fn limit_slack(c: &Codec, x: f64) -> f64 {
    if c.kind.is_integer() {
        arithmetic_slack(c, x) + c.scale.abs() * 1e-6
    } else {
        resolution(c, x)
    }
}

/// A decoded number as f64 (an exact integer rounded, beyond 2^53).
fn number(value: &Result<Value, DecodeError>) -> f64 {
    match value.as_ref().map(Value::as_f64) {
        Ok(Some(n)) => n,
        other => panic!("not a number: {other:?}"),
    }
}

/// An integer `kind` holds.
fn integer_of(kind: ValueType) -> BoxedStrategy<i128> {
    let (lo, hi) = integer_range(kind).expect("an integer type");
    // The edges, where word order and sign extension go wrong first, and anything between.
    prop_oneof![
        1 => prop::sample::select(vec![lo, lo + 1, (-1).max(lo), 0, 1, hi - 1, hi]),
        4 => lo..=hi,
    ]
    .boxed()
}

/// A raw value the type holds, as f64 (whole for the integer types).
fn raw_in_range(kind: ValueType) -> BoxedStrategy<f64> {
    match kind {
        ValueType::F32 => any::<f32>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(f64::from)
            .boxed(),
        ValueType::F64 => any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .boxed(),
        _ => integer_of(kind).prop_map(|r| r as f64).boxed(),
    }
}

/// Text as a device pads it: anything but trailing NULs and spaces.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![any::<char>(), Just(' '), Just('\0'), Just('°')],
        0..12,
    )
    .prop_map(|chars| {
        let text: String = chars.into_iter().collect();
        text.trim_end_matches(['\0', ' ']).to_owned()
    })
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
        match c.encode(&Value::Number(x)) {
            Ok(words) => {
                prop_assert_eq!(words.len(), usize::from(c.width()));
                let back = number(&c.decode(&words));
                prop_assert!(
                    (back - x).abs() <= resolution(&c, x),
                    "{x} written as {words:?} reads back as {back}"
                );
            }
            // Only the edges of the raw range may round out of it.
            Err(EncodeError::OutOfRawRange { raw: r, .. }) => {
                prop_assert!(!holds(c.kind, r), "{x} refused with raw {r} in range");
            }
            Err(e) => prop_assert!(false, "{x} refused: {e}"),
        }
    }

    #[test]
    fn prop_codec_unscaled_integers_round_trip_exactly(
        (kind, raw) in integer_kind()
            .prop_flat_map(|kind| (Just(kind), integer_of(kind))),
        word_order in word_order(),
        byte_order in byte_order(),
        words in prop::collection::vec(any::<u16>(), 4),
    ) {
        let c = Codec { kind, word_order, byte_order, ..Codec::default() };
        let written = c.encode(&Value::Integer(raw)).unwrap();
        prop_assert_eq!(c.decode(&written), Ok(Value::Integer(raw)));
        // Every word pattern is a value that prints, parses and writes back as itself.
        let read = c.decode(&words).unwrap();
        let text = c.format(&read);
        prop_assert_eq!(c.parse(&text), Ok(read.clone()));
        prop_assert_eq!(c.encode(&read), Ok(words[..usize::from(c.width())].to_vec()));
    }

    #[test]
    fn prop_codec_unscaled_floats_print_short_and_write_back_bit_for_bit(
        kind in prop::sample::select(vec![ValueType::F32, ValueType::F64]),
        word_order in word_order(),
        byte_order in byte_order(),
        words in prop::collection::vec(any::<u16>(), 4),
    ) {
        let c = Codec { kind, word_order, byte_order, ..Codec::default() };
        let words = &words[..usize::from(c.width())];
        match c.decode(words) {
            Ok(read) => {
                let text = c.format(&read);
                prop_assert!(text.len() <= 24, "{read:?} printed as {text}");
                let parsed = c.parse(&text);
                prop_assert!(parsed.is_ok(), "{read:?} printed as {text}: {parsed:?}");
                let written = c.encode(&parsed.unwrap_or(read));
                // -0 prints as 0: the one value whose bits do not come back.
                if text != "0" {
                    prop_assert_eq!(written, Ok(words.to_vec()), "printed as {}", text);
                }
            }
            Err(DecodeError::NotFinite(n)) => prop_assert!(!n.is_finite()),
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

    #[test]
    fn prop_codec_bools_round_trip(
        b in any::<bool>(),
        word in any::<u16>(),
        byte_order in byte_order(),
    ) {
        let c = Codec { kind: ValueType::Bool, byte_order, ..Codec::default() };
        let words = c.encode(&Value::Bool(b)).unwrap();
        prop_assert_eq!(c.decode(&words), Ok(Value::Bool(b)));
        let read = c.decode(&[word]).unwrap();
        prop_assert_eq!(c.parse(&c.format(&read)), Ok(read));
    }

    #[test]
    fn prop_codec_a_bit_write_changes_that_bit_alone(
        word in any::<u16>(),
        n in 0i64..=15,
        on in any::<bool>(),
        byte_order in byte_order(),
    ) {
        let bit = |n| Codec {
            kind: ValueType::Bool,
            bit: Bit::new(n),
            byte_order,
            ..Codec::default()
        };
        let written = bit(n).set_bit(word, &Value::Bool(on)).unwrap();
        prop_assert_eq!(bit(n).decode(&[written]), Ok(Value::Bool(on)));
        prop_assert_eq!(bit(n).mask_write(&Value::Bool(on)).unwrap().apply(word), written);
        for other in (0..=15).filter(|o| *o != n) {
            prop_assert_eq!(bit(other).decode(&[written]), bit(other).decode(&[word]));
        }
    }

    #[test]
    fn prop_codec_strings_round_trip_or_are_refused_whole(
        text in text(),
        length in 1u16..=8,
        byte_order in byte_order(),
    ) {
        let c = Codec { kind: ValueType::String, length, byte_order, ..Codec::default() };
        match c.encode(&Value::Text(text.clone())) {
            Ok(words) => {
                prop_assert_eq!(words.len(), usize::from(length));
                prop_assert_eq!(c.decode(&words), Ok(Value::Text(text)));
            }
            Err(EncodeError::TooLong { bytes, most }) => {
                prop_assert_eq!((bytes, most), (text.len(), 2 * usize::from(length)));
                prop_assert!(bytes > most);
            }
            Err(e) => prop_assert!(false, "{text:?} refused: {e}"),
        }
    }

    #[test]
    fn prop_codec_any_words_read_as_text_without_padding(
        words in prop::collection::vec(any::<u16>(), 0..8),
        byte_order in byte_order(),
    ) {
        let length = u16::try_from(words.len()).unwrap();
        let c = Codec { kind: ValueType::String, length, byte_order, ..Codec::default() };
        match c.decode(&words) {
            Ok(Value::Text(text)) => {
                prop_assert!(!text.ends_with(['\0', ' ']), "{text:?}");
                prop_assert!(text.len() <= 2 * words.len() * 3, "{text:?}");
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn prop_codec_enumerations_by_text_and_by_number(
        (kind, raws, unlisted) in integer_kind().prop_flat_map(|kind| {
            (
                Just(kind),
                prop::collection::btree_set(integer_of(kind), 1..6),
                integer_of(kind),
            )
        }),
        word_order in word_order(),
        byte_order in byte_order(),
    ) {
        let entries: Vec<(i128, String)> =
            raws.iter().enumerate().map(|(i, raw)| (*raw, format!("mode {i}"))).collect();
        let plain = Codec { kind, word_order, byte_order, ..Codec::default() };
        let c = Codec { values: Some(Enumeration::new(entries.clone())), ..plain.clone() };
        for (raw, text) in &entries {
            let named = Value::Text(text.clone());
            prop_assert_eq!(c.parse(text), Ok(named.clone()));
            prop_assert_eq!(c.parse(&raw.to_string()), Ok(named.clone()));
            let words = c.encode(&named).unwrap();
            prop_assert_eq!(&words, &plain.encode(&Value::Integer(*raw)).unwrap());
            prop_assert_eq!(c.decode(&words), Ok(named));
        }
        if !raws.contains(&unlisted) {
            let words = plain.encode(&Value::Integer(unlisted)).unwrap();
            prop_assert_eq!(c.decode(&words), Ok(Value::Integer(unlisted)));
            prop_assert!(c.parse(&unlisted.to_string()).is_err());
        }
    }

    #[test]
    fn prop_codec_encode_refuses_what_the_register_cannot_hold(
        c in codec_of(&NUMBER_KINDS[..7]),
        offset_steps in -1e6f64..1e6,
        factor in 1.0f64..1e6,
        below in any::<bool>(),
    ) {
        // An offset in steps, so that f64 tells raw values apart beside it.
        let c = Codec { offset: offset_steps * c.scale, ..c };
        // A raw value beyond the type's range by a factor, on either side (f64 holds all).
        let (lo, hi) = match integer_range(c.kind) {
            Some((lo, hi)) => (lo as f64, hi as f64),
            None => (f64::from(f32::MIN), f64::from(f32::MAX)),
        };
        let raw = if below {
            (lo - 1f64.max(-lo * 1e-6)) * factor
        } else {
            (hi + 1f64.max(hi * 1e-6)) * factor
        };
        let x = raw * c.scale + c.offset;
        let refused = matches!(
            c.encode(&Value::Number(x)),
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
        match c.encode(&Value::Number(x)) {
            Ok(words) => {
                prop_assert!(x.is_finite() && (min..=max).contains(&x), "{x} accepted");
                let back = number(&c.decode(&words));
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
            Err(EncodeError::OutOfRawRange { .. }) => {}
            Err(e) => prop_assert!(false, "{x} refused: {e}"),
        }
    }

    #[test]
    fn prop_codec_printed_values_parse_back(
        c in number_codec(),
        words in prop::collection::vec(any::<u16>(), 4),
    ) {
        let read = c.decode(&words);
        prop_assume!(read.is_ok());
        let read = read.unwrap_or(Value::Bool(false));
        let x = read.as_f64().unwrap_or(f64::NAN);
        let text = c.format(&read);
        let parsed = c.parse(&text);
        prop_assert!(parsed.is_ok(), "{read:?} printed as {text:?}: {parsed:?}");
        let parsed = parsed.unwrap_or(Value::Bool(false));
        let back = parsed.as_f64().unwrap_or(f64::NAN);
        prop_assert!(
            (back - x).abs() <= resolution(&c, x),
            "{x} printed as {text:?} reads back as {back}"
        );
        // An integer register whose steps f64 tells apart beside the offset (not 1e-12
        // beside 1e6): a command of the printed text writes the same words.
        if c.kind.is_integer() && arithmetic_slack(&c, x) * 4.0 < c.scale.abs() {
            let width = usize::from(c.width());
            prop_assert_eq!(c.encode(&parsed), Ok(words[..width].to_vec()));
        }
    }
}
