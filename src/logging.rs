//! Logs: tracing to stderr, filtered by `RUST_LOG` or `--log-level`, one line per event.
//! No colour unless stderr is a terminal, and no timestamps under journald (it adds its own).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Sets up logging; `level` is used when `RUST_LOG` is not set.
pub fn init(level: &str) -> Result<(), String> {
    let filter = match EnvFilter::try_from_default_env() {
        Ok(filter) => filter,
        // rumqttd (the demo's broker) reports ordinary disconnects as errors.
        Err(_) => EnvFilter::try_new(format!("{level},rumqttd=off"))
            .map_err(|e| format!("--log-level {level:?}: {e}"))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().init();
    } else {
        builder.init();
    }
    Ok(())
}
