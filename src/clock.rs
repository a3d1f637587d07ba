//! Small helpers for waiting and for durations shown to people.

use std::time::Duration;

use tokio::time::Instant;

/// Sleeps until `deadline`, or for ever without one: a `select!` branch that is off.
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A duration cut to whole milliseconds, for log lines read by people.
pub fn to_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
