//! Integration tests, one binary: each module is an area, `util` the shared set-up.

mod bus;
mod cli;
mod mqtt;
mod util;
mod wiring;
