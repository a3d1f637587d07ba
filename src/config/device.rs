//! Validation of `[[device]]` and its `[[device.register]]`s: what a register's words are
//! (type, orders, length, bit, values), where they are, and how they are written.

use std::ops::Range;

use toml::Spanned;

use super::WriteFunction;
use super::raw::{RawDevice, RawRegister, RawTable, RawValues};
use super::{
    COMMAND_TOPIC, DEFAULT_MAX_GAP, DEFAULT_POLL, Device, DeviceInfo, EntityOptions, Register,
    STATE_TOPIC, Table, Timing, UnitId, Validator,
};
use crate::codec::{Bit, ByteOrder, Codec, Enumeration, ValueType, WordOrder};
use crate::mqtt::topics::{BRIDGE_TOPIC, DEVICE_TOPICS, RESERVED_REGISTER_NAMES, RegisterTopics};

/// A register's name span, and those of its `topic` and `command_topic` if given.
type SpanOf3 = (Range<usize>, Option<Range<usize>>, Option<Range<usize>>);

/// The longest string: what one function 16 request writes (123 registers).
const MAX_STRING_LENGTH: u16 = 123;

impl Validator<'_> {
    pub(super) fn device(&mut self, raw: RawDevice, bus: Timing) -> Option<Device> {
        self.name(&raw.name, "name");
        if raw.name.get_ref() == BRIDGE_TOPIC {
            self.problem(
                raw.name.span(),
                "name",
                format!("{BRIDGE_TOPIC:?} is taken by the gateway's own topics {{base}}/{BRIDGE_TOPIC}/..."),
            );
        }
        let unit = UnitId::new(*raw.unit.get_ref());
        if unit.is_none() {
            self.problem(
                raw.unit.span(),
                "unit",
                format!(
                    "{} is not a slave id: use {}..={}",
                    raw.unit.get_ref(),
                    UnitId::MIN,
                    UnitId::MAX
                ),
            );
        }
        let poll = self.positive_duration(raw.poll.as_ref(), "poll", DEFAULT_POLL);
        let poll_command_topic = self.topic(raw.poll_command_topic.as_ref(), "poll_command_topic");
        let device_name = raw.name.get_ref().clone();
        let prefix = format!("{}/{device_name}", self.base);
        for (suffix, what) in DEVICE_TOPICS {
            let topic = format!("{prefix}/{suffix}");
            self.claim(&topic, raw.name.span(), "name", &device_name, what);
        }
        if let (Some(topic), Some(raw_topic)) = (&poll_command_topic, &raw.poll_command_topic) {
            let what = "the poll interval commands";
            self.claim(
                topic,
                raw_topic.span(),
                "poll_command_topic",
                &device_name,
                what,
            );
        }
        let max_read = self.limit(raw.max_read.as_ref(), "max_read", Table::Holding);
        let max_read_bits = self.limit(raw.max_read_bits.as_ref(), "max_read_bits", Table::Coil);
        let timing = self.timing(raw.timeout.as_ref(), raw.frame_gap.as_ref(), bus);
        let mut registers: Vec<Register> = Vec::new();
        for raw_register in raw.registers {
            let name_span = raw_register.get_ref().name.span();
            let span = raw_register.get_ref().address.span();
            let bit_span = raw_register.get_ref().bit.as_ref().map(Spanned::span);
            let topic_span = raw_register.get_ref().topic.as_ref().map(Spanned::span);
            let command_span = raw_register
                .get_ref()
                .command_topic
                .as_ref()
                .map(Spanned::span);
            let Some(register) = self.register(raw_register.into_inner(), max_read) else {
                continue;
            };
            self.claim_register(
                &prefix,
                &device_name,
                &register,
                (name_span.clone(), topic_span, command_span),
            );
            if registers.iter().any(|r| r.name == register.name) {
                self.problem(
                    name_span,
                    "name",
                    format!(
                        "another register of device {:?} is already named {:?}",
                        raw.name.get_ref(),
                        register.name
                    ),
                );
            }
            let clash = registers.iter().find(|other| {
                overlap(other, &register)
                    && (other.writable || register.writable)
                    && !other_bits(other, &register)
            });
            if let Some(other) = clash {
                self.problem(
                    span,
                    "address",
                    format!(
                        "{:?} overlaps {:?} in the {} table; only read-only views and other bits of a register may overlap",
                        register.name,
                        other.name,
                        register.table.name()
                    ),
                );
            } else if let Some(other) = registers
                .iter()
                .find(|other| overlap(other, &register) && !other_bits(other, &register))
            {
                self.warning(
                    span.clone(),
                    "address",
                    format!(
                        "{:?} overlaps {:?} in the {} table: two views of the same words, or a \
                         typo in an address or a type's width?",
                        register.name,
                        other.name,
                        register.table.name()
                    ),
                );
            }
            let sibling = registers
                .iter()
                .find(|other| other_bits(other, &register) && other.poll != register.poll);
            if let (Some(other), Some(bit_span)) = (sibling, bit_span) {
                self.problem(
                    bit_span,
                    "bit",
                    format!(
                        "the bits of {} {} share one read: give them one poll ({:?} is polled every {})",
                        register.table.name(),
                        register.address,
                        other.name,
                        humantime::format_duration(other.poll.unwrap_or(poll))
                    ),
                );
            }
            registers.push(register);
        }
        Some(Device {
            name: raw.name.into_inner(),
            unit: unit?,
            poll,
            poll_command_topic,
            max_gap: raw.max_gap.unwrap_or(DEFAULT_MAX_GAP),
            max_read,
            max_read_bits,
            timing,
            homeassistant: DeviceInfo {
                manufacturer: raw.manufacturer,
                model: raw.model,
            },
            registers,
        })
    }

    /// Takes a register's topics (under `prefix`, the device's), refusing those something
    /// else has: at its `topic` or `command_topic` when it gives one, else at its name.
    fn claim_register(
        &mut self,
        prefix: &str,
        device: &str,
        register: &Register,
        (name_span, topic_span, command_span): SpanOf3,
    ) {
        let owner = format!("{device}/{}", register.name);
        let RegisterTopics {
            state,
            command,
            get,
        } = RegisterTopics::new(prefix, register);
        let at = |span: Option<Range<usize>>, key| {
            span.map_or((name_span.clone(), "name"), |s| (s, key))
        };
        let (span, key) = at(topic_span, "topic");
        self.claim(&state, span, key, &owner, STATE_TOPIC);
        let (span, key) = at(command_span, "command_topic");
        self.claim(&command, span, key, &owner, COMMAND_TOPIC);
        self.claim(&get, name_span, "name", &owner, "the read on request");
    }

    fn limit(&mut self, value: Option<&Spanned<u16>>, key: &str, table: Table) -> u16 {
        let most = table.max_read();
        match value {
            Some(v) if !(1..=most).contains(v.get_ref()) => {
                self.problem(v.span(), key, format!("must be 1..={most}"));
                most
            }
            Some(v) => *v.get_ref(),
            None => most,
        }
    }

    /// A register; `max_read` is its device's bound on a read of a register table.
    fn register(&mut self, raw: RawRegister, max_read: u16) -> Option<Register> {
        self.name(&raw.name, "name");
        if RESERVED_REGISTER_NAMES.contains(&raw.name.get_ref().as_str()) {
            self.problem(
                raw.name.span(),
                "name",
                format!(
                    "{name:?} is taken by the device's own topic {{base}}/{{device}}/{name}",
                    name = raw.name.get_ref()
                ),
            );
        }
        let table = match raw.table.as_ref().map(|t| *t.get_ref()) {
            None | Some(RawTable::Holding) => Table::Holding,
            Some(RawTable::Input) => Table::Input,
            Some(RawTable::Coil) => Table::Coil,
            Some(RawTable::Discrete) => Table::Discrete,
        };
        let kind = self.kind(&raw, table);
        let values = self.values(raw.values.as_ref(), kind);
        let enumerated = values.is_some();
        let codec = Codec {
            kind,
            word_order: self.word_order(&raw, kind),
            byte_order: self.byte_order(&raw, table),
            length: self.length(&raw, kind),
            bit: self.bit(&raw, table, kind),
            scale: self
                .number_key(raw.scale.as_ref(), "scale", kind, enumerated)
                .unwrap_or(1.0),
            offset: self
                .number_key(raw.offset.as_ref(), "offset", kind, enumerated)
                .unwrap_or(0.0),
            min: self.number_key(raw.min.as_ref(), "min", kind, enumerated),
            max: self.number_key(raw.max.as_ref(), "max", kind, enumerated),
            values,
        };
        if let Some(s) = raw.scale.as_ref().filter(|s| *s.get_ref() == 0.0) {
            self.problem(s.span(), "scale", "must not be zero");
        }
        if let (Some(lo), Some(hi), Some(m)) = (codec.min, codec.max, raw.min.as_ref())
            && lo >= hi
        {
            self.problem(m.span(), "min", format!("min {lo} must be below max {hi}"));
        }
        let width = codec.width();
        let address = match u16::try_from(*raw.address.get_ref()) {
            Ok(a) if u32::from(a) + u32::from(width) <= 65536 => Some(a),
            _ => {
                self.problem(
                    raw.address.span(),
                    "address",
                    format!(
                        "{} with {width} address(es) does not fit 0..=65535",
                        raw.address.get_ref(),
                    ),
                );
                None
            }
        };
        // Only a `type` or a `length` makes a register wider than one address.
        let width_key = (raw.length.as_ref().map(|l| ("length", l.span())))
            .or_else(|| raw.kind.as_ref().map(|k| ("type", k.span())));
        if let Some((key, span)) = width_key.filter(|_| width > max_read && !table.is_bits()) {
            self.problem(
                span,
                key,
                format!("takes {width} registers, more than the device's max_read {max_read}"),
            );
        }
        let writable = raw.writable.as_ref().is_some_and(|w| *w.get_ref());
        if let Some(w) = raw
            .writable
            .as_ref()
            .filter(|_| writable && !table.is_writable())
        {
            self.problem(
                w.span(),
                "writable",
                format!("the {} table is read-only in Modbus", table.name()),
            );
        }
        let write_function = self.write_function(&raw, table, &codec);
        let open_range = codec.kind.is_number()
            && codec.values.is_none()
            && codec.min.is_none()
            && codec.max.is_none();
        if let Some(w) = raw.writable.as_ref().filter(|_| writable && open_range) {
            self.warning(
                w.span(),
                "writable",
                "writable without min or max: any value its type holds can be written; \
                 give the range the device accepts",
            );
        }
        if let Some(v) = raw.values.as_ref().filter(|_| {
            codec.values.is_some()
                && (raw.unit_of_measurement.is_some() || raw.state_class.is_some())
        }) {
            self.warning(
                v.span(),
                "values",
                "Home Assistant takes no unit_of_measurement or state_class for an \
                 enumeration (an enum sensor or a select): they are left out of its discovery \
                 config",
            );
        }
        if let Some(d) = raw.deadband.as_ref().filter(|d| *d.get_ref() < 0.0) {
            self.problem(d.span(), "deadband", "must be zero or more");
        }
        let deadband = self
            .number_key(raw.deadband.as_ref(), "deadband", kind, enumerated)
            .map_or(0.0, |d| d.max(0.0));
        let poll = self.optional_positive_duration(raw.poll.as_ref(), "poll");
        let republish = self.duration(raw.republish.as_ref(), "republish");
        let topic = self.topic(raw.topic.as_ref(), "topic");
        let command_topic = self.topic(raw.command_topic.as_ref(), "command_topic");
        let extra = self.extra(raw.homeassistant);
        Some(Register {
            name: raw.name.into_inner(),
            address: address?,
            table,
            codec,
            unit_of_measurement: raw.unit_of_measurement,
            writable,
            poll,
            publish: raw.publish,
            deadband,
            republish,
            write_function,
            topic,
            command_topic,
            homeassistant: EntityOptions {
                device_class: raw.device_class,
                state_class: raw.state_class,
                extra,
            },
        })
    }

    /// `type`; without it, a bit table's and a `bit`'s bool, a `length`'s string, or u16.
    fn kind(&mut self, raw: &RawRegister, table: Table) -> ValueType {
        let implied = if table.is_bits() || raw.bit.is_some() {
            ValueType::Bool
        } else if raw.length.is_some() {
            ValueType::String
        } else {
            ValueType::U16
        };
        let kind = raw.kind.as_ref().map_or(implied, |k| *k.get_ref());
        if let Some(k) = raw
            .kind
            .as_ref()
            .filter(|_| table.is_bits() && kind != ValueType::Bool)
        {
            self.problem(
                k.span(),
                "type",
                format!("the {} table holds bits: type must be bool", table.name()),
            );
        }
        kind
    }

    /// `word_order`, which only orders the words of a 32- or 64-bit value.
    fn word_order(&mut self, raw: &RawRegister, kind: ValueType) -> WordOrder {
        let Some(order) = raw.word_order.as_ref() else {
            return WordOrder::default();
        };
        if !kind.has_word_order() {
            let why = if kind == ValueType::String {
                "a string's words are in reading order: word_order means nothing to it (byte_order swaps the bytes of each word)".to_owned()
            } else {
                format!("type {kind} takes one register: word_order means nothing to it")
            };
            self.problem(order.span(), "word_order", why);
        }
        *order.get_ref()
    }

    /// `byte_order`, for every type read from registers.
    fn byte_order(&mut self, raw: &RawRegister, table: Table) -> ByteOrder {
        let Some(order) = raw.byte_order.as_ref() else {
            return ByteOrder::default();
        };
        if table.is_bits() {
            self.problem(
                order.span(),
                "byte_order",
                format!(
                    "the {} table holds bits, not bytes: byte_order means nothing to it",
                    table.name()
                ),
            );
        }
        *order.get_ref()
    }

    /// `length`: the registers of a string, which must have one.
    fn length(&mut self, raw: &RawRegister, kind: ValueType) -> u16 {
        match (&raw.length, kind) {
            (Some(length), ValueType::String) => match u16::try_from(*length.get_ref()) {
                Ok(l) if (1..=MAX_STRING_LENGTH).contains(&l) => l,
                _ => {
                    self.problem(
                            length.span(),
                            "length",
                            format!(
                                "{} registers: a string takes 1..={MAX_STRING_LENGTH} (two characters each)",
                                length.get_ref()
                            ),
                        );
                    1
                }
            },
            (None, ValueType::String) => {
                let span = raw.kind.as_ref().map_or(raw.name.span(), Spanned::span);
                self.problem(
                    span,
                    "type",
                    "a string needs its `length` in registers (two characters each)",
                );
                1
            }
            (Some(length), _) => {
                self.problem(
                    length.span(),
                    "length",
                    format!("only a string has a length; type {kind} has its own width"),
                );
                0
            }
            (None, _) => 0,
        }
    }

    /// `bit`: a bool that is one bit of a holding or input register.
    fn bit(&mut self, raw: &RawRegister, table: Table, kind: ValueType) -> Option<Bit> {
        let given = raw.bit.as_ref()?;
        let bit = Bit::new(*given.get_ref());
        let why = if table.is_bits() {
            format!("the {} table holds single bits already", table.name())
        } else if kind != ValueType::Bool {
            format!("a bit is a bool, not type {kind}: remove `type` or `bit`")
        } else if bit.is_none() {
            format!(
                "{} is not a bit of a register: use 0..={}",
                given.get_ref(),
                Bit::MAX
            )
        } else {
            return bit;
        };
        self.problem(given.span(), "bit", why);
        None
    }

    /// `values`: texts for the raw numbers of an integer type, each number and text once.
    /// A problem with an entry names the entry's key, which is on its line however the
    /// table is written.
    fn values(&mut self, raw: Option<&Spanned<RawValues>>, kind: ValueType) -> Option<Enumeration> {
        let values = raw?;
        let Some((lo, hi)) = kind.integer_range() else {
            self.problem(
                values.span(),
                "values",
                format!("values name the raw numbers of an integer type, not of type {kind}"),
            );
            return None;
        };
        if values.get_ref().is_empty() {
            self.problem(
                values.span(),
                "values",
                "give at least one number and its text",
            );
        }
        let mut entries: Vec<(i128, String)> = Vec::new();
        for (key, text) in values.get_ref() {
            let name = key.get_ref();
            let Ok(raw) = name.parse::<i128>() else {
                self.problem(
                    key.span(),
                    name,
                    format!("a key of `values` is a raw number such as 0 or 17, not {name:?}"),
                );
                continue;
            };
            let text = text.get_ref();
            let why = if !(lo..=hi).contains(&raw) {
                Some(format!("{raw} is beyond type {kind} ({lo}..={hi})"))
            } else if let Some((other, _)) = entries.iter().find(|(r, _)| *r == raw) {
                Some(format!("{other} is already named"))
            } else if let Some((other, _)) = entries.iter().find(|(_, t)| t == text) {
                Some(format!("{text:?} already names {other}"))
            } else if text.is_empty() || text.trim() != text {
                Some(format!(
                    "{text:?}: an empty text, or one with spaces around it, cannot be sent back as a command"
                ))
            } else if text.parse::<f64>().is_ok_and(f64::is_finite) {
                Some(format!(
                    "{text:?} reads as a number: a command {text:?} would be taken for raw number {text}"
                ))
            } else {
                None
            };
            match why {
                Some(why) => self.problem(key.span(), name, why),
                None => entries.push((raw, text.clone())),
            }
        }
        Some(Enumeration::new(entries))
    }

    /// `scale`, `offset`, `min`, `max` and `deadband` are about numbers: refused for bools
    /// and strings, and beside `values`, which name raw numbers.
    fn number_key(
        &mut self,
        value: Option<&Spanned<f64>>,
        key: &str,
        kind: ValueType,
        enumerated: bool,
    ) -> Option<f64> {
        let v = value?;
        let why = if !kind.is_number() {
            format!("a {kind} is no number: {key} means nothing to it")
        } else if enumerated {
            format!("`values` names raw numbers: {key} means nothing beside it")
        } else if !v.get_ref().is_finite() {
            "must be a finite number".to_owned()
        } else {
            return Some(*v.get_ref());
        };
        self.problem(v.span(), key, why);
        None
    }

    fn write_function(&mut self, raw: &RawRegister, table: Table, codec: &Codec) -> WriteFunction {
        let kind = codec.kind;
        // A string is written with 16 whatever its length; a bit by changing its word.
        let one_word = codec.width() == 1 && kind != ValueType::String;
        let Some(given) = raw.write_function.as_ref() else {
            return match table {
                Table::Coil => WriteFunction::SingleCoil,
                _ if one_word => WriteFunction::SingleRegister,
                _ => WriteFunction::MultipleRegisters,
            };
        };
        let why = match (*given.get_ref(), table) {
            (5, Table::Coil) => return WriteFunction::SingleCoil,
            (_, Table::Coil) => "a coil is written with function 5".to_owned(),
            (6, _) if one_word => return WriteFunction::SingleRegister,
            (16, _) => return WriteFunction::MultipleRegisters,
            (22, _) if codec.bit.is_some() => return WriteFunction::MaskWrite,
            (22, _) => {
                "function 22 (mask write) changes bits of a register: only with `bit`".to_owned()
            }
            (6, _) => format!(
                "function 6 writes one register; type {kind} takes {}: use 16",
                codec.width()
            ),
            (other, _) => format!("{other} is not 6, 16 or 22"),
        };
        self.problem(given.span(), "write_function", why);
        WriteFunction::MultipleRegisters
    }
}

/// Whether two registers share an address of one table.
fn overlap(a: &Register, b: &Register) -> bool {
    a.table == b.table && u32::from(a.address) < b.end() && u32::from(b.address) < a.end()
}

/// Whether two registers are different bits of one register.
fn other_bits(a: &Register, b: &Register) -> bool {
    match (a.codec.bit, b.codec.bit) {
        (Some(x), Some(y)) => a.table == b.table && a.address == b.address && x != y,
        _ => false,
    }
}
