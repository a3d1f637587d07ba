//! Integration tests, one binary: each module is an area, `util` the shared set-up.

mod bus;
mod cli;
mod discovery;
mod faults;
mod integrations;
mod lifecycle;
mod lines;
mod many;
mod mqtt;
mod probe;
mod registers;
mod scan;
mod systemd;
mod transports;
mod util;
mod wiring;
