use super::*;

fn codec(kind: ValueType, scale: f64) -> Codec {
    Codec {
        kind,
        scale,
        ..Codec::default()
    }
}

/// Decodes and prints, as the bridge publishes.
fn published(c: &Codec, words: &[u16]) -> String {
    c.format(&c.decode(words).unwrap())
}

#[test]
fn reference_values_print_without_float_noise() {
    let tenths = codec(ValueType::I16, 0.1);
    assert_eq!(published(&tenths, &[215]), "21.5");
    assert_eq!(published(&tenths, &[553]), "55.3");
    assert_eq!(published(&tenths, &[200]), "20");
    let plain = codec(ValueType::I16, 1.0);
    assert_eq!(plain.decode(&[(-157i16) as u16]), Ok(Value::Integer(-157)));
    assert_eq!(published(&plain, &[(-157i16) as u16]), "-157");
    assert_eq!(published(&plain, &[0]), "0");
}

#[test]
fn offset_and_odd_scales_keep_their_decimals() {
    let c = Codec {
        kind: ValueType::U16,
        scale: 0.25,
        offset: -40.0,
        ..Codec::default()
    };
    assert_eq!(published(&c, &[161]), "0.25");
    let hundredths = codec(ValueType::U16, 0.01);
    assert_eq!(published(&hundredths, &[12345]), "123.45");
}

#[test]
fn word_orders_decode_32_bit_values() {
    let big = codec(ValueType::U32, 1.0);
    assert_eq!(big.decode(&[1, 2]), Ok(Value::Integer(65538)));
    let little = Codec {
        word_order: WordOrder::Little,
        ..big.clone()
    };
    assert_eq!(little.decode(&[2, 1]), Ok(Value::Integer(65538)));
    let signed = codec(ValueType::I32, 1.0);
    assert_eq!(signed.decode(&[0xFFFF, 0xFFFE]), Ok(Value::Integer(-2)));
    let float = codec(ValueType::F32, 1.0);
    let words = float.encode(&Value::Number(230.7)).unwrap();
    assert_eq!(words, vec![0x4366, 0xB333]);
    assert_eq!(published(&float, &words), "230.7");
    assert_eq!(
        big.decode(&[1]),
        Err(DecodeError::TooFewWords { needed: 2, got: 1 })
    );
}

#[test]
fn sixty_four_bit_values_in_both_word_orders() {
    // An energy counter beyond 2^53, where an f64 would publish a neighbour.
    let counter = codec(ValueType::U64, 1.0);
    let words = [0x0020, 0x0000, 0x0000, 0x0001];
    let exact = (1u64 << 53) + 1;
    assert_eq!(counter.decode(&words), Ok(Value::Integer(exact.into())));
    assert_eq!(published(&counter, &words), "9007199254740993");
    assert_eq!(
        counter.encode(&counter.parse("9007199254740993").unwrap()),
        Ok(words.to_vec())
    );
    let little = Codec {
        word_order: WordOrder::Little,
        ..counter.clone()
    };
    assert_eq!(
        little.decode(&[1, 0, 0, 0x0020]),
        Ok(Value::Integer(exact.into()))
    );
    assert_eq!(
        counter.decode(&[0xFFFF; 4]),
        Ok(Value::Integer(u64::MAX.into()))
    );

    let signed = Codec {
        kind: ValueType::I64,
        word_order: WordOrder::Little,
        ..Codec::default()
    };
    assert_eq!(
        signed.encode(&Value::Integer(-2)),
        Ok(vec![0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF])
    );
    assert_eq!(
        signed.decode(&[0, 0, 0, 0x8000]),
        Ok(Value::Integer(i64::MIN.into()))
    );

    let float = codec(ValueType::F64, 1.0);
    let words = float.encode(&Value::Number(-1.5)).unwrap();
    assert_eq!(words, [0xBFF8, 0, 0, 0]);
    let little = Codec {
        word_order: WordOrder::Little,
        ..float.clone()
    };
    assert_eq!(
        little.encode(&Value::Number(-1.5)),
        Ok(vec![0, 0, 0, 0xBFF8])
    );
    assert_eq!(published(&little, &[0, 0, 0, 0xBFF8]), "-1.5");
}

#[test]
fn sixty_four_bit_commands_beyond_the_type_are_refused_not_saturated() {
    let counter = codec(ValueType::U64, 1.0);
    let too_big = counter.parse("18446744073709551616").unwrap();
    assert!(matches!(
        counter.encode(&too_big),
        Err(EncodeError::IntegerOutOfRange { .. })
    ));
    // 2^64 as an f64 is u64::MAX as f64: a cast would have written u64::MAX.
    assert!(matches!(
        counter.encode(&Value::Number(1.8446744073709552e19)),
        Err(EncodeError::OutOfRawRange { .. })
    ));
    let signed = codec(ValueType::I64, 1.0);
    assert!(matches!(
        signed.encode(&Value::Number(9.223372036854776e18)),
        Err(EncodeError::OutOfRawRange { .. })
    ));
    assert!(signed.encode(&Value::Number(-9.223372036854776e18)).is_ok());
}

#[test]
fn swapped_bytes_are_undone_in_every_type() {
    let swapped = |kind| Codec {
        kind,
        byte_order: ByteOrder::Little,
        ..Codec::default()
    };
    assert_eq!(
        swapped(ValueType::U16).decode(&[0x3412]),
        Ok(Value::Integer(0x1234))
    );
    assert_eq!(
        swapped(ValueType::U16).encode(&Value::Integer(0x1234)),
        Ok(vec![0x3412])
    );
    assert_eq!(
        swapped(ValueType::I16).decode(&[0xFEFF]),
        Ok(Value::Integer(-2))
    );
    // Words in Modbus order, the bytes of each swapped ("CDAB" is the other way round).
    assert_eq!(
        swapped(ValueType::U32).decode(&[0x3412, 0x7856]),
        Ok(Value::Integer(0x1234_5678))
    );
    let float = swapped(ValueType::F32);
    assert_eq!(published(&float, &[0x6643, 0x33B3]), "230.7");
    assert_eq!(
        float.decode(&[0x6643]),
        Err(DecodeError::TooFewWords { needed: 2, got: 1 })
    );
    let flag = swapped(ValueType::Bool);
    assert_eq!(flag.encode(&Value::Bool(true)), Ok(vec![0x0100]));
    assert_eq!(flag.decode(&[0x0100]), Ok(Value::Bool(true)));
}

#[test]
fn nan_and_infinities_are_not_values() {
    let float = codec(ValueType::F32, 1.0);
    let not_finite = |words: &[u16]| matches!(float.decode(words), Err(DecodeError::NotFinite(_)));
    assert!(not_finite(&[0x7FC0, 0]), "NaN");
    assert!(not_finite(&[0x7F80, 0]), "+inf");
    assert!(not_finite(&[0xFF80, 0]), "-inf");
    let double = codec(ValueType::F64, 1.0);
    assert!(matches!(
        double.decode(&[0x7FF8, 0, 0, 0]),
        Err(DecodeError::NotFinite(_))
    ));
    // A finite f64 that scaling takes beyond f64.
    let scaled = codec(ValueType::F64, 10.0);
    assert!(matches!(
        scaled.decode(&[0x7FEF, 0xFFFF, 0xFFFF, 0xFFFF]),
        Err(DecodeError::NotFinite(_))
    ));
    let error = float.decode(&[0x7FC0, 0]).unwrap_err().to_string();
    assert!(
        error.contains("NaN") && error.contains("not a value"),
        "{error}"
    );
}

#[test]
fn large_and_small_magnitudes_print_with_an_exponent() {
    let float = codec(ValueType::F32, 1.0);
    let words = float.encode(&Value::Number(3.4e38)).unwrap();
    assert_eq!(published(&float, &words), "3.4e38");
    let words = float.encode(&Value::Number(1.5e-7)).unwrap();
    assert_eq!(published(&float, &words), "1.5e-7");
    let words = float.encode(&Value::Number(21.5)).unwrap();
    assert_eq!(published(&float, &words), "21.5");
    assert_eq!(published(&float, &[0, 0]), "0");
    assert_eq!(published(&float, &[0x8000, 0]), "0");
    let double = codec(ValueType::F64, 1.0);
    assert_eq!(double.format(&Value::Number(1e16)), "1e16");
    assert_eq!(
        double.format(&Value::Number(9999999999999998.0)),
        "9999999999999998"
    );
    assert_eq!(
        double.format(&Value::Number(0.1 + 0.2)),
        "0.30000000000000004"
    );
    assert_eq!(double.format(&Value::Number(-2.5e-300)), "-2.5e-300");
    // Integers stay integers, however long.
    let counter = codec(ValueType::U64, 1.0);
    assert_eq!(
        counter.format(&Value::Integer(u64::MAX.into())),
        "18446744073709551615"
    );
    // A scaled integer beyond 1e16 is an f64's shortest text.
    let scaled = codec(ValueType::U64, 1000.0);
    assert_eq!(published(&scaled, &[0xFFFF; 4]), "1.8446744073709552e22");
}

#[test]
fn encode_inverts_scaling_and_rounds() {
    let tenths = codec(ValueType::I16, 0.1);
    assert_eq!(tenths.encode(&Value::Number(21.5)), Ok(vec![215]));
    assert_eq!(
        tenths.encode(&Value::Number(-15.7)),
        Ok(vec![(-157i16) as u16])
    );
    assert_eq!(tenths.encode(&Value::Number(0.04)), Ok(vec![0]));
    let little = Codec {
        kind: ValueType::I32,
        word_order: WordOrder::Little,
        ..Codec::default()
    };
    assert_eq!(
        little.encode(&Value::Number(-2.0)),
        Ok(vec![0xFFFE, 0xFFFF])
    );
}

#[test]
fn encode_refuses_out_of_range() {
    let pwm = Codec {
        min: Some(0.0),
        max: Some(1023.0),
        ..Codec::default()
    };
    assert!(matches!(
        pwm.encode(&Value::Number(1024.0)),
        Err(EncodeError::AboveMax { .. })
    ));
    assert!(matches!(
        pwm.encode(&Value::Integer(1024)),
        Err(EncodeError::AboveMax { .. })
    ));
    assert!(matches!(
        pwm.encode(&Value::Number(-5.0)),
        Err(EncodeError::BelowMin { .. })
    ));
    let raw = codec(ValueType::U16, 1.0);
    assert!(matches!(
        raw.encode(&Value::Number(1e9)),
        Err(EncodeError::OutOfRawRange { .. })
    ));
    assert!(matches!(
        raw.encode(&Value::Integer(-1)),
        Err(EncodeError::IntegerOutOfRange { .. })
    ));
    assert!(raw.encode(&Value::Number(f64::NAN)).is_err());
    assert!(matches!(
        raw.encode(&Value::Text("5".into())),
        Err(EncodeError::NotANumber(_))
    ));
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
        tens.encode(&Value::Number(1025.0)),
        Err(EncodeError::RoundsBeyondLimit {
            written: 1030.0,
            ..
        })
    ));
    assert!(matches!(
        tens.encode(&Value::Number(-25.0)),
        Err(EncodeError::RoundsBeyondLimit { written: -30.0, .. })
    ));
    assert_eq!(tens.encode(&Value::Number(1024.0)), Ok(vec![102]));
    // A limit on the step itself is not crossed by float noise: 102.3 is 1023 x 0.1.
    let tenths = Codec {
        scale: 0.1,
        max: Some(102.3),
        ..Codec::default()
    };
    assert_eq!(tenths.encode(&Value::Number(102.3)), Ok(vec![1023]));
}

#[test]
fn tiny_scales_print_every_step() {
    // Found by prop_codec_printed_values_parse_back: with scale 2.54e-10 the decimals
    // stopped at 9, so raw 1 was published as "0". Below 1e-5 with an exponent.
    let tiny = codec(ValueType::U16, 2.5e-10);
    assert_eq!(published(&tiny, &[1]), "2.5e-10");
    assert_eq!(published(&tiny, &[40001]), "0.00001000025");
    let pico = codec(ValueType::U32, 1e-12);
    assert_eq!(published(&pico, &[0, 3]), "3e-12");
}

#[test]
fn f32_scaled_beyond_f32_keeps_its_digits() {
    // Found by prop_codec_printed_values_parse_back: an f32 near its maximum times a
    // scale of 2566 was published as "inf".
    let big = codec(ValueType::F32, 10.0);
    let words = codec(ValueType::F32, 1.0)
        .encode(&Value::Number(f32::MAX.into()))
        .unwrap();
    let text = published(&big, &words);
    assert_eq!(text, "3.4028234663852886e39");
    assert_eq!(big.parse(&text).ok(), big.decode(&words).ok());
    let small = codec(ValueType::F32, 1e-12);
    let words = codec(ValueType::F32, 1.0)
        .encode(&Value::Number(1e-30f32.into()))
        .unwrap();
    assert_eq!(published(&small, &words), "1.0000000031710769e-42");
}

#[test]
fn parse_commands() {
    let n = codec(ValueType::U16, 1.0);
    assert_eq!(n.parse(" 512 "), Ok(Value::Integer(512)));
    assert_eq!(n.parse("1e3"), Ok(Value::Number(1000.0)));
    assert!(n.parse("abc").is_err());
    assert!(n.parse("").is_err());
    assert!(n.parse("NaN").is_err());
    assert!(n.parse("inf").is_err());
    let tenths = codec(ValueType::U16, 0.1);
    assert_eq!(tenths.parse("512"), Ok(Value::Number(512.0)));
    let b = codec(ValueType::Bool, 1.0);
    assert_eq!(b.parse("ON"), Ok(Value::Bool(true)));
    assert_eq!(b.parse("0"), Ok(Value::Bool(false)));
    assert!(b.parse("2").is_err());
}

fn bit(n: i64) -> Codec {
    Codec {
        kind: ValueType::Bool,
        bit: Bit::new(n),
        ..Codec::default()
    }
}

#[test]
fn bits_of_a_status_word() {
    let status = 0xA001;
    let read = |n| bit(n).decode(&[status]).unwrap();
    assert_eq!(
        [read(0), read(3), read(15), read(14)],
        [true, false, true, false].map(Value::Bool)
    );
    // Switching bit 3 on changes nothing else, by read-modify-write or by function 22.
    let on = Value::Bool(true);
    assert_eq!(bit(3).set_bit(status, &on), Ok(0xA009));
    let masks = bit(3).mask_write(&on).unwrap();
    assert_eq!(
        masks,
        MaskWrite {
            and_mask: 0xFFF7,
            or_mask: 0x0008
        }
    );
    assert_eq!(masks.apply(status), 0xA009);
    assert_eq!(bit(15).set_bit(status, &Value::Bool(false)), Ok(0x2001));
    // A bit has no word of its own to write: writing one would clear every other flag.
    assert_eq!(bit(3).encode(&on), Err(EncodeError::BitOfWord { bit: 3 }));
    assert_eq!(
        codec(ValueType::Bool, 1.0).mask_write(&on),
        Err(EncodeError::NotABit)
    );
    assert!(bit(3).mask_write(&Value::Integer(1)).is_err());
    assert_eq!((Bit::new(16), Bit::new(-1)), (None, None));
}

#[test]
fn bits_of_a_byte_swapped_word_are_the_device_s_bits() {
    let swapped = Codec {
        byte_order: ByteOrder::Little,
        ..bit(0)
    };
    // The device's 0x0001 arrives as 0x0100.
    assert_eq!(swapped.decode(&[0x0100]), Ok(Value::Bool(true)));
    assert_eq!(swapped.decode(&[0x0001]), Ok(Value::Bool(false)));
    assert_eq!(swapped.set_bit(0, &Value::Bool(true)), Ok(0x0100));
}

fn string(length: u16, byte_order: ByteOrder) -> Codec {
    Codec {
        kind: ValueType::String,
        length,
        byte_order,
        ..Codec::default()
    }
}

#[test]
fn strings_in_both_byte_orders() {
    let big = string(4, ByteOrder::Big);
    // "SN-42" padded with NULs: 'S' 'N' | '-' '4' | '2' NUL | NUL NUL.
    let words = [0x534E, 0x2D34, 0x3200, 0x0000];
    assert_eq!(big.decode(&words), Ok(Value::Text("SN-42".into())));
    assert_eq!(big.encode(&Value::Text("SN-42".into())), Ok(words.to_vec()));
    assert_eq!(big.width(), 4);
    let little = string(4, ByteOrder::Little);
    let swapped = words.map(u16::swap_bytes);
    assert_eq!(little.decode(&swapped), Ok(Value::Text("SN-42".into())));
    assert_eq!(
        little.encode(&Value::Text("SN-42".into())),
        Ok(swapped.to_vec())
    );
    // Padding with spaces is removed too; spaces inside stay.
    assert_eq!(
        big.decode(&[0x4120, 0x4220, 0x2020, 0x2000]),
        Ok(Value::Text("A B".into()))
    );
    assert_eq!(big.decode(&[0, 0, 0, 0]), Ok(Value::Text(String::new())));
}

#[test]
fn strings_too_long_are_refused_never_cut() {
    let name = string(2, ByteOrder::Big);
    assert_eq!(name.parse(" ab "), Ok(Value::Text(" ab ".into())));
    assert!(name.encode(&Value::Text("abcd".into())).is_ok());
    assert_eq!(
        name.encode(&Value::Text("abcde".into())),
        Err(EncodeError::TooLong { bytes: 5, most: 4 })
    );
    // Bytes, not characters: "°C" is three bytes.
    assert!(
        string(1, ByteOrder::Big)
            .encode(&Value::Text("°C".into()))
            .is_err()
    );
    assert!(matches!(
        name.encode(&Value::Integer(5)),
        Err(EncodeError::NotText(_))
    ));
    // Bytes that are not UTF-8 are shown, not refused.
    assert_eq!(
        name.decode(&[0x41B0, 0x4300]),
        Ok(Value::Text("A\u{FFFD}C".into()))
    );
}

fn mode() -> Codec {
    Codec {
        values: Some(Enumeration::new([
            (0, "off".to_owned()),
            (2, "cool".to_owned()),
            (1, "heat".to_owned()),
        ])),
        ..Codec::default()
    }
}

#[test]
fn enumerations_both_ways() {
    let mode = mode();
    assert_eq!(mode.decode(&[1]), Ok(Value::Text("heat".into())));
    assert_eq!(published(&mode, &[2]), "cool");
    // A raw value the table does not name is published as its number.
    assert_eq!(mode.decode(&[7]), Ok(Value::Integer(7)));
    assert_eq!(published(&mode, &[7]), "7");
    assert!(mode.is_unlisted(&Value::Integer(7)));
    assert!(!mode.is_unlisted(&Value::Text("heat".into())));
    // Commands by text or by number.
    for command in ["heat", " heat ", "1", "1.0"] {
        let value = mode.parse(command).unwrap();
        assert_eq!(value, Value::Text("heat".into()), "{command}");
        assert_eq!(mode.encode(&value), Ok(vec![1]), "{command}");
    }
    for command in ["HEAT", "dry", "7", "1.5", ""] {
        let refused = mode.parse(command).unwrap_err().to_string();
        assert!(
            refused.contains("is not one of off (0), heat (1), cool (2)"),
            "{command}: {refused}"
        );
    }
    assert_eq!(mode.encode(&Value::Integer(2)), Ok(vec![2]));
    assert!(mode.encode(&Value::Integer(7)).is_err());
}
