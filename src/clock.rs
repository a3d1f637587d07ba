//! Waiting, and durations shown to people.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Duration;

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
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

/// The timerfd, as the runtime's reactor needs to see it.
struct TimerHandle(TimerFd);

impl AsRawFd for TimerHandle {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// A timer of its own for a task that waits on the clock at every step: the bus (the
/// silence before a request, then the answer's deadline) and the scheduler. To the
/// microsecond, where tokio's round up to the millisecond; and a wake-up only when it
/// expires, where tokio wakes its own driver whenever a new timer is earlier than the one
/// it last slept for (the silence after each answer always is) and sleeps far deadlines
/// in steps (BENCHMARKS.md, issue 10).
pub struct Timer {
    /// None where the system would not give one (out of descriptors): tokio's timers then.
    fd: Option<AsyncFd<TimerHandle>>,
    /// What the timer is armed for, until it is seen to expire.
    armed: Option<Instant>,
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer").field("armed", &self.armed).finish()
    }
}

fn timerfd() -> io::Result<AsyncFd<TimerHandle>> {
    let timer = TimerFd::new(
        ClockId::CLOCK_MONOTONIC,
        TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
    )?;
    // SAFETY: the timer owns its descriptor and closes it only when dropped, after the
    // registration that wraps it.
    Ok(unsafe { AsyncFd::register_with_interest(TimerHandle(timer), Interest::READABLE)? })
}

impl Default for Timer {
    fn default() -> Timer {
        let fd = timerfd()
            .inspect_err(|error| tracing::debug!(%error, "no timerfd: waiting on tokio's timers"))
            .ok();
        Timer { fd, armed: None }
    }
}

impl Timer {
    /// Waits until `deadline`, or for ever without one. Arming the timer again replaces
    /// what it was armed for, so a wait given up early (the answer came before its
    /// deadline) costs nothing later; waiting again for the same deadline arms nothing.
    pub async fn sleep_until(&mut self, deadline: Option<Instant>) {
        let Some(deadline) = deadline else {
            return std::future::pending().await;
        };
        let Some(left) = deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
        else {
            return;
        };
        let Some(fd) = &self.fd else {
            return tokio::time::sleep_until(deadline).await;
        };
        if self.armed != Some(deadline) {
            let armed = fd.get_ref().0.set(
                Expiration::OneShot(TimeSpec::from_duration(left)),
                TimerSetTimeFlags::empty(),
            );
            if armed.is_err() {
                return tokio::time::sleep_until(deadline).await;
            }
            self.armed = Some(deadline);
        }
        loop {
            let Ok(mut ready) = fd.readable().await else {
                return tokio::time::sleep_until(deadline).await;
            };
            // Arming resets the count of expiries, so nothing needs reading; readiness
            // left over from an earlier arming is told apart by the clock.
            ready.clear_ready();
            if Instant::now() >= deadline {
                self.armed = None;
                return;
            }
        }
    }

    /// Disarms the timer: a deadline given up on must not wake anyone while nothing
    /// waits.
    pub fn disarm(&mut self) {
        if let (Some(fd), Some(_)) = (&self.fd, self.armed.take()) {
            let _ = fd.get_ref().0.unset();
        }
    }
}
