//! Numbers as published: the shortest text that reads back as the same value, with an
//! exponent below 1e-5 and from 1e16 up (`3.4e38`, never 39 digits; from 1e16 up an f64
//! no longer tells neighbouring whole numbers apart, so more digits would be noise).

use std::ops::Range;

use super::{Codec, ValueType};

/// Magnitudes written without an exponent (and zero).
const PLAIN: Range<f64> = 1e-5..1e16;

/// A scaled integer or a float of `codec`.
pub(super) fn number(codec: &Codec, n: f64) -> String {
    let text = if codec.kind.is_integer() {
        stepped(n, decimals(codec))
    } else {
        shortest(codec, n)
    };
    if text == "-0" { "0".to_owned() } else { text }
}

/// A float's shortest text. f32 data carries only f32 precision: the digits of that f32
/// (`230.7`, not `230.6999969482422`). A value that scaling took out of the normal f32
/// range would print as `inf` or lose digits as an f32: it keeps its f64 digits.
fn shortest(codec: &Codec, n: f64) -> String {
    let plain = n == 0.0 || PLAIN.contains(&n.abs());
    let normal_f32 = f64::from(f32::MIN_POSITIVE)..=f64::from(f32::MAX);
    let as_f32 = codec.kind == ValueType::F32 && (n == 0.0 || normal_f32.contains(&n.abs()));
    match (as_f32, plain) {
        // In the normal range: the cast rounds to the f32 the device sent.
        (true, true) => format!("{}", n as f32),
        (true, false) => format!("{:e}", n as f32),
        (false, true) => format!("{n}"),
        (false, false) => format!("{n:e}"),
    }
}

/// A scaled integer to `decimals` places, which tell every raw step apart; the same digits
/// with an exponent for a tiny magnitude, and an f64's shortest text for a huge one.
fn stepped(n: f64, decimals: usize) -> String {
    let magnitude = n.abs();
    if magnitude >= PLAIN.end {
        return format!("{n:e}");
    }
    if magnitude == 0.0 || magnitude >= PLAIN.start {
        return trim_zero(format!("{n:.decimals$}"));
    }
    // Below 1e-5 and above 1e-300 or so: a small whole number of the order of -5 to -324.
    let exponent = magnitude.log10().floor() as i64;
    let significant = decimals as i64 + exponent + 1;
    if significant <= 0 {
        // Rounds to zero at these decimals.
        return "0".to_owned();
    }
    let text = format!("{:.*e}", (significant - 1) as usize, n);
    match text.split_once('e') {
        Some((mantissa, exponent)) => format!("{}e{exponent}", trim_zero(mantissa.to_owned())),
        None => text,
    }
}

/// Decimals to print: those the scale and offset bring in, and at least two below the
/// step, so that a scale decimals cannot write in 9 places (1e-12, 2.5e-10) loses no step.
fn decimals(codec: &Codec) -> usize {
    let exact = decimals_of(codec.scale) + decimals_of(codec.offset);
    let below_step = 2.0 - codec.scale.abs().log10().floor();
    // A finite non-zero scale makes this a small whole number.
    exact.max(below_step.max(0.0) as usize)
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

/// `21.50` -> `21.5`, `3.00` -> `3`.
fn trim_zero(text: String) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}
