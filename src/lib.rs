//! rtu2mqtt: a Modbus RTU to MQTT bridge.

pub mod app;
pub mod broker;
pub mod bus;
pub mod cli;
pub mod clock;
pub mod codec;
pub mod commands;
pub mod config;
pub mod logging;
pub mod mqtt;
pub mod plan;
pub mod scheduler;
pub mod sim;
pub mod stats;
