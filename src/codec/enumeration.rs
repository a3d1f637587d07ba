//! Enumerations: `values = { 0 = "off", 1 = "heat", 2 = "cool" }` names the raw numbers of
//! an integer register. The text is published; a command may be the text or the number.

use super::{EncodeError, Value};

/// Raw numbers and their texts, each unique (the config refuses repeats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enumeration {
    /// Sorted by raw number, as a user reads the table.
    entries: Vec<(i128, String)>,
}

impl Enumeration {
    pub fn new(entries: impl IntoIterator<Item = (i128, String)>) -> Enumeration {
        let mut entries: Vec<_> = entries.into_iter().collect();
        entries.sort();
        Enumeration { entries }
    }

    /// Raw numbers and texts, by raw number.
    pub fn entries(&self) -> &[(i128, String)] {
        &self.entries
    }

    /// The text of `raw`, or the number itself when the table has none.
    pub(super) fn name(&self, raw: i128) -> Value {
        match self.entries.iter().find(|(r, _)| *r == raw) {
            Some((_, text)) => Value::Text(text.clone()),
            None => Value::Integer(raw),
        }
    }

    /// The raw number of a value: one of the texts, or a number the table lists.
    pub(super) fn raw(&self, value: &Value) -> Result<i128, EncodeError> {
        let found = match value {
            Value::Text(text) => self.entries.iter().find(|(_, t)| t == text),
            Value::Integer(_) | Value::Number(_) => self.number(value),
            Value::Bool(_) => None,
        };
        found
            .map(|(raw, _)| *raw)
            .ok_or_else(|| self.not_listed(value))
    }

    /// A command: a text of the table, or a number it lists (published as the text).
    pub(super) fn parse(&self, text: &str) -> Result<Value, EncodeError> {
        let number = match text.parse::<i128>() {
            Ok(integer) => Value::Integer(integer),
            Err(_) => Value::Number(text.parse::<f64>().unwrap_or(f64::NAN)),
        };
        let entry = self
            .entries
            .iter()
            .find(|(_, t)| t == text)
            .or_else(|| self.number(&number));
        match entry {
            Some((_, text)) => Ok(Value::Text(text.clone())),
            None => Err(self.not_listed(&Value::Text(text.to_owned()))),
        }
    }

    /// The entry of a whole number (`2`, `2.0`).
    fn number(&self, value: &Value) -> Option<&(i128, String)> {
        let raw = match *value {
            Value::Integer(i) => i,
            // Whole and far within i128 (the table's numbers are 64-bit): the cast is exact.
            Value::Number(n) if n.fract() == 0.0 && n.abs() < 1e30 => n as i128,
            _ => return None,
        };
        self.entries.iter().find(|(r, _)| *r == raw)
    }

    fn not_listed(&self, value: &Value) -> EncodeError {
        let text = match value {
            Value::Text(text) => text.clone(),
            Value::Integer(i) => i.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
        };
        let listed: Vec<String> = self
            .entries
            .iter()
            .map(|(raw, text)| format!("{text} ({raw})"))
            .collect();
        EncodeError::NotListed {
            text,
            listed: listed.join(", "),
        }
    }
}
