//! The config file as written: a serde mirror of the TOML with source spans, so that
//! validation can point at the line of every key it refuses.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::codec::{ByteOrder, ValueType, WordOrder};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub mqtt: Option<RawMqtt>,
    pub bus: Spanned<RawBus>,
    pub homeassistant: Option<RawHomeAssistant>,
    #[serde(default, rename = "device")]
    pub devices: Vec<Spanned<RawDevice>>,
    /// Initial values for the simulated slave: device name -> register name -> value.
    #[serde(default)]
    pub sim: BTreeMap<Spanned<String>, BTreeMap<Spanned<String>, Spanned<SimValue>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    pub host: Option<Spanned<String>>,
    pub port: Option<Spanned<u16>>,
    pub socket: Option<Spanned<String>>,
    pub client_id: Option<Spanned<String>>,
    pub username: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub keepalive: Option<Spanned<String>>,
    pub base_topic: Option<Spanned<String>>,
    pub qos: Option<Spanned<u8>>,
    pub value_qos: Option<Spanned<u8>>,
    pub retain: Option<bool>,
    pub stats_interval: Option<Spanned<String>>,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca_file: Option<String>,
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHomeAssistant {
    pub discovery: Option<bool>,
    pub prefix: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBus {
    pub port: Spanned<String>,
    pub baud: Option<Spanned<u32>>,
    pub parity: Option<Spanned<Parity>>,
    pub data_bits: Option<Spanned<u8>>,
    pub stop_bits: Option<Spanned<u8>>,
    pub timeout: Option<Spanned<String>>,
    pub retries: Option<Spanned<u32>>,
    pub frame_gap: Option<Spanned<String>>,
    pub offline_after: Option<Spanned<u32>>,
    pub offline_poll: Option<Spanned<String>>,
    pub command_timeout: Option<Spanned<String>>,
    pub echo: Option<Spanned<RawEcho>>,
}

/// `echo = "auto" | true | false`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RawEcho {
    Fixed(bool),
    Word(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    None,
    Even,
    Odd,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDevice {
    pub name: Spanned<String>,
    pub unit: Spanned<i64>,
    pub poll: Option<Spanned<String>>,
    pub max_gap: Option<u16>,
    pub max_read: Option<Spanned<u16>>,
    pub max_read_bits: Option<Spanned<u16>>,
    pub timeout: Option<Spanned<String>>,
    pub frame_gap: Option<Spanned<String>>,
    pub poll_command_topic: Option<Spanned<String>>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    #[serde(default, rename = "register")]
    pub registers: Vec<Spanned<RawRegister>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawTable {
    #[default]
    Holding,
    Input,
    Coil,
    Discrete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishMode {
    #[default]
    Always,
    Change,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegister {
    pub name: Spanned<String>,
    pub address: Spanned<i64>,
    pub table: Option<Spanned<RawTable>>,
    #[serde(rename = "type")]
    pub kind: Option<Spanned<ValueType>>,
    pub word_order: Option<Spanned<WordOrder>>,
    pub byte_order: Option<Spanned<ByteOrder>>,
    pub length: Option<Spanned<i64>>,
    pub bit: Option<Spanned<i64>>,
    pub values: Option<Spanned<RawValues>>,
    pub scale: Option<Spanned<f64>>,
    pub offset: Option<Spanned<f64>>,
    pub unit_of_measurement: Option<String>,
    pub writable: Option<Spanned<bool>>,
    pub min: Option<Spanned<f64>>,
    pub max: Option<Spanned<f64>>,
    pub poll: Option<Spanned<String>>,
    #[serde(default)]
    pub publish: PublishMode,
    pub deadband: Option<Spanned<f64>>,
    pub republish: Option<Spanned<String>>,
    pub write_function: Option<Spanned<u8>>,
    pub topic: Option<Spanned<String>>,
    pub command_topic: Option<Spanned<String>>,
    pub device_class: Option<String>,
    pub state_class: Option<String>,
    /// Keys merged into the register's discovery config as they are.
    pub homeassistant: Option<BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
}

/// `values = { 0 = "off", 1 = "heat" }`: keys are TOML keys, so text until validated.
pub type RawValues = BTreeMap<Spanned<String>, Spanned<String>>;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum SimValue {
    Bool(bool),
    Integer(i64),
    Float(f64),
    /// A string register's text, or one of the `values`.
    Text(String),
}
