//! Requests from MQTT waiting for the bus, and the task that carries them out.
//!
//! Per register at most one write waits, and per register or device at most one read: a
//! newer request takes the place of the one waiting and keeps its turn. A slider dragged
//! in Home Assistant sends dozens of values and the device needs the last one, so the last
//! command sent is always the one written, and what waits is bounded by the register map,
//! not by how fast commands come.
//!
//! A request to a device that is offline waits for it, without costing line time, up to
//! `[bus] command_timeout`: a relay switched during a two-second blip is switched when the
//! device is back, first thing. After that it is refused.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_modbus::ExceptionCode;
use tokio_util::sync::CancellationToken;

use super::command::Command;
use crate::bus::{BusError, BusHandle};
use crate::codec::Value;
use crate::config::Config;
use crate::plan::{self, PollRequest};

/// What a request asks of the bus.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A write, then a read of what the device made of it.
    Write(Command),
    /// A read now, of one register or of the whole device (`/get`).
    Read {
        device: usize,
        register: Option<usize>,
    },
}

/// A request from MQTT: the action, and its topic and payload as quoted back in errors.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub action: Action,
    pub topic: String,
    pub payload: String,
}

impl Request {
    pub fn device(&self) -> usize {
        match &self.action {
            Action::Write(command) => command.device,
            Action::Read { device, .. } => *device,
        }
    }

    fn key(&self) -> Key {
        match &self.action {
            Action::Write(command) => Key::Write(command.device, command.register),
            Action::Read { device, register } => Key::Read(*device, *register),
        }
    }
}

/// What one waiting request stands for: a newer request with the same key replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Write(usize, usize),
    Read(usize, Option<usize>),
}

/// What became of a request once the bus had it: the values read (published even when
/// unchanged), and why it fell short, if it did.
#[derive(Debug)]
pub struct Outcome {
    pub request: Request,
    pub values: Vec<(usize, Value)>,
    pub error: Option<CommandError>,
}

/// Why an accepted request came to nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A reload stopped the executor before the request's turn: its register may be gone.
    #[error("not written: the config was reloaded before its turn; send it again")]
    Withdrawn,
    /// Its device stayed offline for all of `command_timeout`.
    #[error("not done: the device did not answer again within {} (command_timeout)", humantime::format_duration(*.0))]
    Offline(Duration),
    /// The device took the write; what it made of it could not be read.
    #[error(
        "written, but reading it back failed ({0}): its value is published with the next poll that reads it"
    )]
    NotReadBack(String),
    /// The register read as no value (NaN or an infinity): nothing to publish.
    #[error("it reads as no value (NaN or an infinity): not published")]
    NoValue,
}

/// What [`Queue::push`] did with a request.
#[derive(Debug, PartialEq)]
pub enum Queued {
    /// It waits for its turn.
    Waiting,
    /// It took the place of this older one, which will not be carried out.
    Replaced(Request),
    /// The executor has stopped (a reload): the request is handed back.
    Closed(Request),
}

#[derive(Debug, Default)]
struct Waiting {
    order: VecDeque<Key>,
    requests: HashMap<Key, Entry>,
    /// When a newer request last replaced a waiting one.
    replaced_at: Option<Instant>,
    closed: bool,
}

/// For how long after a request replaced a waiting one the commands are a flood: more of
/// them come than the line can carry.
const FLOOD_AFTER_REPLACED: Duration = Duration::from_secs(1);

/// A request waiting, when it came, and not before when it may go (a write the line did
/// not carry waits a little before it is tried again).
#[derive(Debug)]
struct Entry {
    request: Request,
    since: Instant,
    not_before: Option<Instant>,
}

/// How long a write the line did not carry waits before it is tried again, unless its
/// device is found offline meanwhile (it then waits for it to answer).
const RETRY_PAUSE: Duration = Duration::from_secs(2);

/// What [`Queue::take`] found.
#[derive(Debug, Default)]
struct Taken {
    /// The first request whose device is not offline, and when it came.
    ready: Option<(Request, Instant)>,
    /// Requests whose device was offline for too long.
    expired: Vec<Request>,
    /// When the next request held back may go or expires.
    next_expiry: Option<Instant>,
}

/// The requests waiting for the executor, one per key.
#[derive(Debug, Default)]
pub struct Queue {
    waiting: Mutex<Waiting>,
    ready: Notify,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        // Nothing under the lock can panic half-way; the data stays whole.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn push(&self, request: Request) -> Queued {
        let mut waiting = self.lock();
        if waiting.closed {
            return Queued::Closed(request);
        }
        let key = request.key();
        let entry = Entry {
            request,
            since: Instant::now(),
            not_before: None,
        };
        match waiting.requests.insert(key, entry) {
            Some(Entry { request: older, .. }) => {
                waiting.replaced_at = Some(Instant::now());
                Queued::Replaced(older)
            }
            None => {
                waiting.order.push_back(key);
                drop(waiting);
                self.ready.notify_one();
                Queued::Waiting
            }
        }
    }

    /// The first request whose device is not offline, the requests that waited for an
    /// offline device longer than `patience`, and when the next of those runs out.
    fn take(&self, offline: impl Fn(usize) -> bool, patience: Duration) -> Taken {
        let now = Instant::now();
        let mut waiting = self.lock();
        let Waiting {
            order, requests, ..
        } = &mut *waiting;
        let mut taken = Taken::default();
        let wake = |at: Instant, taken: &mut Taken| {
            taken.next_expiry = Some(taken.next_expiry.map_or(at, |e| e.min(at)));
        };
        order.retain(|key| {
            if taken.ready.is_some() {
                return true;
            }
            let Some(entry) = requests.get(key) else {
                return false;
            };
            let pausing = entry.not_before.filter(|at| *at > now);
            if offline(entry.request.device()) || pausing.is_some() {
                let expiry = entry.since + patience;
                if expiry > now {
                    wake(pausing.map_or(expiry, |at| at.min(expiry)), &mut taken);
                    return true;
                }
                taken
                    .expired
                    .extend(requests.remove(key).map(|e| e.request));
            } else {
                taken.ready = requests.remove(key).map(|e| (e.request, e.since));
            }
            false
        });
        taken
    }

    /// Puts back, first in line, a request the line did not carry, to go again after
    /// [`RETRY_PAUSE`]; a newer one for the same register that came meanwhile wins. Hands
    /// it back when the executor has stopped.
    fn retry(&self, request: Request, since: Instant) -> Option<Request> {
        let mut waiting = self.lock();
        if waiting.closed {
            return Some(request);
        }
        let key = request.key();
        if let std::collections::hash_map::Entry::Vacant(vacant) = waiting.requests.entry(key) {
            vacant.insert(Entry {
                request,
                since,
                not_before: Some(Instant::now() + RETRY_PAUSE),
            });
            waiting.order.push_front(key);
        }
        None
    }

    /// Whether commands come faster than the line carries them: one replaced another lately.
    fn flooding(&self) -> bool {
        self.lock()
            .replaced_at
            .is_some_and(|at| at.elapsed() < FLOOD_AFTER_REPLACED)
    }

    /// Takes no more requests and hands back those still waiting.
    fn close(&self) -> Vec<Request> {
        let mut waiting = self.lock();
        waiting.closed = true;
        let order = std::mem::take(&mut waiting.order);
        order
            .into_iter()
            .filter_map(|key| waiting.requests.remove(&key).map(|e| e.request))
            .collect()
    }
}

/// Carries out requests one at a time, in their turn, holding those of offline devices
/// (`online` as the scheduler sees it). When `stop` fires, those still waiting come back
/// as [`CommandError::Withdrawn`] rather than vanish.
pub async fn execute(
    config: Arc<Config>,
    bus: BusHandle,
    queue: Arc<Queue>,
    mut online: watch::Receiver<Vec<Option<bool>>>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    stop: CancellationToken,
) {
    let fail = |request, error| {
        let _ = outcomes.send(Outcome {
            request,
            values: Vec::new(),
            error: Some(error),
        });
    };
    let patience = config.bus.command_timeout;
    loop {
        let taken = {
            let online = online.borrow_and_update();
            let offline = |device: usize| online.get(device) == Some(&Some(false));
            queue.take(offline, patience)
        };
        for request in taken.expired {
            fail(request, CommandError::Offline(patience));
        }
        let Some((request, since)) = taken.ready else {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                () = queue.ready.notified() => {}
                // Gone only when the scheduler has stopped, as this task is about to.
                changed = online.changed() => if changed.is_err() { break },
                () = crate::clock::sleep_until(taken.next_expiry) => {}
            }
            continue;
        };
        // Once on the bus it is carried out whole: a write half done is no withdrawal.
        let (values, error) = carry_out(&config, &bus, &queue, &request.action).await;
        // A write the line did not carry (a device silent for a moment, not yet offline)
        // waits for another try while its time lasts.
        let unheard = matches!(
            error,
            Some(CommandError::Bus(
                BusError::Timeout(_) | BusError::BadFrame(_) | BusError::PortDown(_)
            ))
        );
        if unheard && matches!(request.action, Action::Write(_)) && since.elapsed() < patience {
            tracing::debug!(topic = %request.topic, payload = %request.payload, "not carried: tried again shortly");
            if let Some(request) = queue.retry(request, since) {
                fail(request, CommandError::Withdrawn);
            }
            continue;
        }
        let _ = outcomes.send(Outcome {
            request,
            values,
            error,
        });
    }
    for request in queue.close() {
        fail(request, CommandError::Withdrawn);
    }
}

async fn carry_out(config: &Config, bus: &BusHandle, queue: &Queue, action: &Action) -> Read {
    match action {
        Action::Write(command) => write(config, bus, command, queue.flooding()).await,
        Action::Read { device, register } => read(config, bus, *device, *register).await,
    }
}

type Read = (Vec<(usize, Value)>, Option<CommandError>);

/// The write and the read-back, so that what is published is the device's value, not the
/// request's. In a `flood` it leaves the polls their turns.
async fn write(config: &Config, bus: &BusHandle, command: &Command, flood: bool) -> Read {
    let device = &config.devices[command.device];
    let read_back = PollRequest::single(command.device, device, command.register);
    match bus
        .write_and_read(command.write.clone(), read_back.read, flood)
        .await
    {
        Ok(Ok(data)) => {
            let values = read_back.values(device, &data.words());
            let error = values
                .is_empty()
                .then(|| CommandError::NotReadBack("it reads as NaN or an infinity".to_owned()));
            (values, error)
        }
        Ok(Err(error)) => (
            Vec::new(),
            Some(CommandError::NotReadBack(error.to_string())),
        ),
        Err(error) => (Vec::new(), Some(error.into())),
    }
}

/// A read now, ahead of polls: one register, or the reads of one cycle of the device (in
/// parts where it refuses to be read across gaps). What was read is kept even when a
/// later read fails.
async fn read(config: &Config, bus: &BusHandle, device: usize, register: Option<usize>) -> Read {
    let spec = &config.devices[device];
    let mut reads: VecDeque<PollRequest> = match register {
        Some(r) => [PollRequest::single(device, spec, r)].into(),
        None => plan::plan_device(device, spec).into(),
    };
    let mut values = Vec::new();
    let mut failure = None;
    while let Some(request) = reads.pop_front() {
        match bus.read_now(request.read).await {
            Ok(data) => values.extend(request.values(spec, &data.words())),
            Err(BusError::Exception(ExceptionCode::IllegalDataAddress))
                if !request.narrow(spec).is_empty() =>
            {
                reads.extend(request.narrow(spec));
            }
            Err(error) => {
                failure.get_or_insert(error);
            }
        }
    }
    let failure = failure.map(CommandError::from);
    // Asked for one register, and it holds no value: say so rather than nothing.
    let nothing = register.is_some() && values.is_empty() && failure.is_none();
    (values, failure.or(nothing.then_some(CommandError::NoValue)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::command;

    fn example() -> Arc<Config> {
        Arc::new(crate::config::parse(crate::config::EXAMPLE, std::path::Path::new("t")).unwrap())
    }

    fn pwm(config: &Config, value: &str) -> Request {
        Request {
            action: Action::Write(
                command::parse(config, Some((0, 2)), "pwm/set", value.as_bytes()).unwrap(),
            ),
            topic: "pwm/set".to_owned(),
            payload: value.to_owned(),
        }
    }

    fn get(register: Option<usize>) -> Request {
        Request {
            action: Action::Read {
                device: 0,
                register,
            },
            topic: "get".to_owned(),
            payload: String::new(),
        }
    }

    #[tokio::test]
    async fn a_newer_request_replaces_the_waiting_one_and_keeps_its_turn() {
        let config = example();
        let queue = Queue::default();
        assert_eq!(queue.push(pwm(&config, "1")), Queued::Waiting);
        assert_eq!(queue.push(get(None)), Queued::Waiting);
        for value in 2..=1000 {
            let replaced = queue.push(pwm(&config, &value.to_string()));
            assert_eq!(
                replaced,
                Queued::Replaced(pwm(&config, &(value - 1).to_string()))
            );
        }
        assert_eq!(queue.push(get(Some(0))), Queued::Waiting);
        let next = || queue.take(|_| false, Duration::ZERO).ready.map(|(r, _)| r);
        assert_eq!(next(), Some(pwm(&config, "1000")));
        assert_eq!(next(), Some(get(None)));
        assert_eq!(next(), Some(get(Some(0))));
        assert_eq!(next(), None);
        assert_eq!(queue.lock().requests.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn commands_are_a_flood_for_a_second_after_one_replaced_another() {
        let config = example();
        let queue = Queue::default();
        queue.push(pwm(&config, "1"));
        queue.push(get(None));
        assert!(
            !queue.flooding(),
            "different keys: no command waited in vain"
        );
        queue.push(pwm(&config, "2"));
        assert!(queue.flooding());
        tokio::time::advance(FLOOD_AFTER_REPLACED).await;
        assert!(!queue.flooding());
    }

    #[tokio::test(start_paused = true)]
    async fn requests_wait_for_an_offline_device_until_their_time_runs_out() {
        let config = example();
        let queue = Queue::default();
        let patience = Duration::from_secs(10);
        queue.push(pwm(&config, "1"));
        tokio::time::advance(Duration::from_secs(4)).await;
        queue.push(get(None));
        let held = queue.take(|_| true, patience);
        assert_eq!((held.ready.is_none(), held.expired.len()), (true, 0));
        assert_eq!(
            held.next_expiry,
            Some(Instant::now() + Duration::from_secs(6))
        );
        // A newer command waits from when it came.
        tokio::time::advance(Duration::from_secs(5)).await;
        queue.push(pwm(&config, "2"));
        tokio::time::advance(Duration::from_secs(6)).await;
        let expired = queue.take(|_| true, patience);
        assert_eq!(expired.expired, [get(None)]);
        assert_eq!(
            expired.next_expiry,
            Some(Instant::now() + Duration::from_secs(4))
        );
        // Back online: written first thing.
        let back = queue.take(|_| false, patience).ready.map(|(r, _)| r);
        assert_eq!(back, Some(pwm(&config, "2")));
        // Not carried: tried again after a pause, unless a newer one came.
        let since = Instant::now();
        assert_eq!(queue.retry(pwm(&config, "2"), since), None);
        let paused = queue.take(|_| false, patience);
        assert!(paused.ready.is_none());
        assert_eq!(paused.next_expiry, Some(since + RETRY_PAUSE));
        tokio::time::advance(RETRY_PAUSE).await;
        let again = queue.take(|_| false, patience).ready;
        assert_eq!(again, Some((pwm(&config, "2"), since)));
        queue.push(pwm(&config, "3"));
        assert_eq!(queue.retry(pwm(&config, "2"), since), None);
        let newer = queue.take(|_| false, patience).ready.map(|(r, _)| r);
        assert_eq!(newer, Some(pwm(&config, "3")));
    }

    #[tokio::test]
    async fn requests_still_waiting_when_the_executor_stops_are_withdrawn_not_lost() {
        let config = example();
        // No bus task runs: a request that reached the bus would never finish.
        let (bus, _not_running) = crate::bus::bus(&config);
        let queue = Arc::new(Queue::default());
        queue.push(pwm(&config, "1"));
        queue.push(get(None));
        let (outcomes_tx, mut outcomes) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        stop.cancel();
        // Offline: nothing is taken from the queue before the stop is seen.
        let (_online_tx, online) = watch::channel(vec![Some(false)]);
        execute(
            config.clone(),
            bus,
            queue.clone(),
            online,
            outcomes_tx,
            stop,
        )
        .await;
        for _ in 0..2 {
            let outcome = outcomes.try_recv().unwrap();
            assert_eq!(outcome.error, Some(CommandError::Withdrawn));
        }
        assert!(matches!(queue.push(pwm(&config, "2")), Queued::Closed(_)));
    }
}
