//! The bus at its physical limit: the real daemon against the simulated slave in wire-speed
//! mode (9600 8E1) and a broker on loopback, with the reference load `configs/bench.toml`.
//!
//! `cargo bench --bench bus` prints bus efficiency, command latency and cost; the figures
//! and what they are measured against are explained in BENCHMARKS.md.
//! `BENCH_SECONDS` (default 60) sets the throughput window, `BENCH_COMMANDS` (default 300)
//! the number of `/set` commands timed, `BENCH_GATEWAY` another daemon binary to run.
//!
//! Variants (BENCHMARKS.md says what each is for):
//! - `BENCH_POLL=1s` polls every register at that interval instead of flat out and measures
//!   only the window: CPU per hour of a typical steady load (issue 10);
//! - `BENCH_SOCKET=1` has the gateway reach mosquitto through a Unix socket (`[mqtt]
//!   socket`) instead of TCP on loopback;
//! - `BENCH_ECHO=auto|false|true` sets `[bus] echo` (issue 14: what `auto` costs);
//! - `BENCH_FOREIGN=200` has another master's exchange on the line every 200 ms, every
//!   other one in the gateway's wait for an answer (issue 14: polls published).

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rtu2mqtt::config::{self, Config, Device, LineSettings, Table};
use rtu2mqtt::plan::{self, ReadRequest};
use rtu2mqtt::sim::{Simulator, Wire};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run() -> anyhow::Result<()> {
    let window = Duration::from_secs(env_number("BENCH_SECONDS", 60));
    let poll = std::env::var("BENCH_POLL").ok();
    // A steady poll is measured in its window alone: no commands, the broker kept.
    let commands = if poll.is_some() {
        0
    } else {
        env_number("BENCH_COMMANDS", 300) as usize
    };
    let echo = std::env::var("BENCH_ECHO").ok();
    let foreign_every = std::env::var("BENCH_FOREIGN")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(root.join("configs/bench.toml"))?;
    if let Some(poll) = &poll {
        text = text.replace("poll = \"100ms\"", &format!("poll = \"{poll}\""));
    }
    if let Some(echo) = &echo {
        let value = if echo == "auto" {
            "\"auto\"".to_owned()
        } else {
            echo.clone()
        };
        text = text.replace("[bus]\n", &format!("[bus]\necho = {value}\n"));
    }
    let config = config::parse(&text, Path::new("configs/bench.toml"))?;
    let line = config.bus.line;

    // The plan against the least line time any set of reads obeying the same limits has.
    let plan = plan::plan(&config.devices);
    let plan_time = plan::cycle_time(&plan, &line);
    let least_time = least_line_time(&config, &line);
    let values_per_cycle: usize = config.devices.iter().map(|d| d.registers.len()).sum();
    let plan_bytes: u32 = plan.iter().map(|r| r.read.frame_bytes()).sum();
    let wire_values_per_s = values_per_cycle as f64 / plan_time.as_secs_f64();
    let longest_read = plan
        .iter()
        .map(|r| r.read.line_time(&line))
        .max()
        .unwrap_or_default();
    // A function 6 write: 8 request bytes, 8 echoed, two silences.
    let write_time = line.chars(16.0) + line.frame_silence() * 2;

    // The slave: every address a read of the plan covers exists, as on a device that
    // allows reading through gaps; answers are held back to wire speed.
    let sim = Simulator::from_config(&config);
    for request in &plan {
        for address in request.read.address..request.read.address + request.read.count {
            let unit = request.read.unit.get();
            if request.read.table == Table::Input {
                sim.set(unit, Table::Input, address, address);
            } else if sim.holding(unit, address).is_none() {
                sim.set(unit, Table::Holding, address, address);
            }
        }
    }
    sim.set_wire(Wire {
        speed: Some(line),
        foreign_every,
        ..Wire::default()
    });
    let (serve, _held_open, pty) = Simulator::open_pty()?;
    let stop = CancellationToken::new();
    let serving = sim.clone();
    let token = stop.clone();
    tokio::spawn(async move { serving.serve(serve, token).await });

    let broker = Broker::start()?;
    // The gateway reaches the broker through its Unix socket, where there is one.
    let reach = match &broker.socket {
        Some(socket) => format!("socket = \"{}\"", socket.display()),
        None => format!("port = {}", broker.port),
    };
    let gateway_text = text
        .replace("port = \"/dev/ttyUSB0\"", &format!("port = \"{pty}\""))
        .replace(
            "[mqtt]\n",
            &format!("[mqtt]\n{reach}\nstats_interval = \"1h\"\n"),
        );
    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("bench.toml");
    std::fs::write(&config_path, gateway_text)?;
    // BENCH_GATEWAY runs another build of the daemon, e.g. one with symbols to profile.
    let binary = std::env::var("BENCH_GATEWAY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_rtu2mqtt").to_owned());
    let mut gateway = Process(
        Command::new(&binary)
            .args(["run", "-c"])
            .arg(&config_path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("start the gateway")?,
    );
    let pid = gateway.0.id();

    let watcher = Watcher::connect(broker.port, &config).await?;
    watcher
        .wait(Duration::from_secs(30), |w| {
            w.values_seen.len() == values_per_cycle
        })
        .await
        .then_some(())
        .context("not every value arrived within 30 s")?;

    // Phase 1: polling flat out, nothing else.
    let (cpu_start, seen_start) = (cpu_seconds(pid)?, sim.seen().len());
    let start = Instant::now();
    let delivered_start = watcher.count();
    tokio::time::sleep(window).await;
    let delivered = watcher.count() - delivered_start;
    let elapsed = start.elapsed();
    let observed: Vec<rtu2mqtt::sim::Seen> = sim
        .seen()
        .into_iter()
        .filter(|s| s.at >= start && s.at < start + elapsed)
        .collect();
    let line_busy: Duration = observed
        .iter()
        .filter_map(read_of)
        .map(|r| r.line_time(&line))
        .sum();
    let reads = observed.len();
    let values_per_s = delivered as f64 / elapsed.as_secs_f64();
    // The values the reads the slave answered in the window carry: what a gateway that
    // lost no answer would have published.
    let registers_of: HashMap<ReadRequest, usize> =
        plan.iter().map(|r| (r.read, r.registers.len())).collect();
    let answerable: usize = observed
        .iter()
        .filter_map(read_of)
        .filter_map(|r| registers_of.get(&r))
        .sum();
    let window_cpu = cpu_seconds(pid)? - cpu_start;

    // Phase 2: commands while the map is polled flat out.
    let mut latencies = Vec::with_capacity(commands);
    let mut jitter = 0x2545_F491_u64;
    for i in 0..commands {
        let register = i % 8;
        let value = 100 + (i as u16 % 900);
        let topic = format!("rtu2mqtt/io/pwm{register}/set");
        let published = Instant::now();
        watcher
            .client
            .publish(&topic, QoS::AtMostOnce, false, value.to_string())
            .await?;
        let arrived = sim
            .wait_for_seen(Duration::from_secs(5), |seen| {
                seen.iter().rev().take(20).any(|s| {
                    s.function == 6
                        && s.address == register as u16
                        && s.values == [value]
                        && s.at >= published
                })
            })
            .await;
        if !arrived {
            bail!("command {i} ({topic} {value}) did not reach the slave within 5 s");
        }
        let at = sim
            .seen()
            .iter()
            .rev()
            .find(|s| s.function == 6 && s.values == [value] && s.at >= published)
            .map(|s| s.at)
            .unwrap_or(published);
        // The sim has the whole request at once; on a wire its last byte comes 8 characters later.
        latencies.push(at - published + line.chars(8.0));
        // Land the next command at another point of the poll cycle.
        jitter ^= jitter << 13;
        jitter ^= jitter >> 7;
        jitter ^= jitter << 17;
        tokio::time::sleep(Duration::from_millis(jitter % 90)).await;
    }
    latencies.sort();
    let percentile = |p: f64| {
        let at = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len().max(1));
        latencies.get(at - 1).copied().unwrap_or_default()
    };

    let transactions = sim.seen().len() - seen_start;
    let cpu = cpu_seconds(pid)? - cpu_start;

    // Phase 3: the same polling with the broker gone, to tell the serial side's CPU from
    // the MQTT side's (mosquitto only: the embedded broker cannot be stopped).
    let mut broker = broker;
    let serial_only = match broker.process.as_mut() {
        Some(process) if poll.is_none() => {
            process.stop();
            tokio::time::sleep(Duration::from_secs(2)).await;
            let (cpu_start, seen_start) = (cpu_seconds(pid)?, sim.seen().len());
            tokio::time::sleep(window / 2).await;
            let cpu = cpu_seconds(pid)? - cpu_start;
            Some(cpu * 10_000.0 / (sim.seen().len() - seen_start) as f64)
        }
        _ => None,
    };
    let rss_kb = peak_rss_kb(pid)?;
    let size = std::fs::metadata(&binary)?.len();
    gateway.stop();
    stop.cancel();

    let target_latency = longest_read + write_time + Duration::from_millis(10);
    println!(
        "rtu2mqtt bus benchmark: configs/bench.toml, 9600 8E1, {values_per_cycle} registers, wire-speed simulated slave"
    );
    println!(
        "poll {}, echo {}, foreign exchanges {}, gateway {binary}",
        poll.as_deref().unwrap_or("100ms (flat out)"),
        echo.as_deref().unwrap_or("default"),
        foreign_every.map_or("none".to_owned(), |every| format!("every {every:?}"))
    );
    println!();
    println!("| figure | measured | reference | ratio |");
    println!("| --- | --- | --- | --- |");
    println!("| reads per cycle | {} | | |", plan.len());
    println!("| bytes per cycle | {plan_bytes} | | |");
    println!(
        "| line time per cycle | {:.1} ms | least possible {:.1} ms | {:.3} |",
        ms(plan_time),
        ms(least_time),
        plan_time.as_secs_f64() / least_time.as_secs_f64()
    );
    println!(
        "| line busy (window {:.0} s, {reads} reads) | {:.1}% | 100% | {:.3} |",
        elapsed.as_secs_f64(),
        100.0 * line_busy.as_secs_f64() / elapsed.as_secs_f64(),
        line_busy.as_secs_f64() / elapsed.as_secs_f64()
    );
    println!(
        "| values per second to MQTT | {values_per_s:.1} | wire maximum {wire_values_per_s:.1} | {:.3} |",
        values_per_s / wire_values_per_s
    );
    println!(
        "| values published of those the slave answered | {:.2}% ({delivered} of {answerable}) | | |",
        100.0 * delivered as f64 / answerable.max(1) as f64
    );
    println!(
        "| CPU in the window | {:.3} s in {:.0} s = {:.1} s per hour ({reads} transactions, {:.3} s per 10,000) | | |",
        window_cpu,
        elapsed.as_secs_f64(),
        window_cpu * 3600.0 / elapsed.as_secs_f64(),
        window_cpu * 10_000.0 / reads.max(1) as f64
    );
    if commands > 0 {
        println!(
            "| command latency p50 | {:.1} ms | | |",
            ms(percentile(0.50))
        );
        println!(
            "| command latency p95 | {:.1} ms | | |",
            ms(percentile(0.95))
        );
        println!(
            "| command latency p99 ({} commands) | {:.1} ms | target {:.1} ms (longest read {:.1} + write {:.1} + 10) | {:.3} |",
            latencies.len(),
            ms(percentile(0.99)),
            ms(target_latency),
            ms(longest_read),
            ms(write_time),
            percentile(0.99).as_secs_f64() / target_latency.as_secs_f64()
        );
    }
    println!(
        "| CPU per 10,000 transactions | {:.3} s ({cpu:.2} s for {transactions}) | target 1 s | {:.3} |",
        cpu * 10_000.0 / transactions as f64,
        cpu * 10_000.0 / transactions as f64
    );
    if let Some(serial_only) = serial_only {
        println!("| CPU per 10,000 transactions, broker stopped | {serial_only:.3} s | | |");
    }
    println!(
        "| peak RSS | {:.1} MB | target 8 MB | {:.3} |",
        rss_kb as f64 / 1024.0,
        rss_kb as f64 / 1024.0 / 8.0
    );
    println!(
        "| binary size | {:.2} MB | target 8 MB | {:.3} |",
        size as f64 / 1048576.0,
        size as f64 / 1048576.0 / 8.0
    );
    Ok(())
}

/// The read a request that reached the slave was, if it was one.
fn read_of(seen: &rtu2mqtt::sim::Seen) -> Option<ReadRequest> {
    let table = match seen.function {
        1 => Table::Coil,
        2 => Table::Discrete,
        3 => Table::Holding,
        4 => Table::Input,
        _ => return None,
    };
    Some(ReadRequest {
        unit: config::UnitId::new(i64::from(seen.unit))?,
        table,
        address: seen.address,
        count: seen.count,
    })
}

/// The least line time of one cycle: for each device, table and interval, every way of
/// cutting its registers (in address order) into reads within max_read and max_gap,
/// tried exhaustively. Independent of the planner, which must match it.
fn least_line_time(config: &Config, line: &LineSettings) -> Duration {
    let mut total = Duration::ZERO;
    for device in &config.devices {
        let mut groups: HashMap<(Table, Option<Duration>), Vec<usize>> = HashMap::new();
        for (r, register) in device.registers.iter().enumerate() {
            groups
                .entry((register.table, register.poll))
                .or_default()
                .push(r);
        }
        for ((table, _), mut registers) in groups {
            registers.sort_by_key(|r| (device.registers[*r].address, device.registers[*r].end()));
            assert!(
                registers.len() <= 22,
                "too many registers in one group to try every cut"
            );
            let cuts = registers.len() - 1;
            let mut best = Duration::MAX;
            for mask in 0u32..(1 << cuts) {
                if let Some(time) = cut_cost(device, table, &registers, mask, line) {
                    best = best.min(time);
                }
            }
            total += best;
        }
    }
    total
}

fn cut_cost(
    device: &Device,
    table: Table,
    registers: &[usize],
    mask: u32,
    line: &LineSettings,
) -> Option<Duration> {
    let mut time = Duration::ZERO;
    let mut start = 0;
    for end in 1..=registers.len() {
        if end < registers.len() && mask & (1 << (end - 1)) == 0 {
            continue;
        }
        let run = &registers[start..end];
        let first = u32::from(device.registers[run[0]].address);
        let mut covered = device.registers[run[0]].end();
        for r in &run[1..] {
            let register = &device.registers[*r];
            if u32::from(register.address).saturating_sub(covered) > u32::from(device.max_gap) {
                return None;
            }
            covered = covered.max(register.end());
        }
        if covered - first > u32::from(device.max_read_for(table)) {
            return None;
        }
        let read = ReadRequest {
            unit: device.unit,
            table,
            address: first as u16,
            count: (covered - first) as u16,
        };
        time += read.line_time(line);
        start = end;
    }
    Some(time)
}

/// CPU seconds (user + system) the process has used: the scheduler's own count, to the
/// microsecond, where the kernel shows it (`/proc/PID/task/*/sched`), else in clock ticks
/// (10 ms: too coarse for the minute of a one-second poll).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    match scheduler_cpu_seconds(pid) {
        Some(seconds) => Ok(seconds),
        None => tick_cpu_seconds(pid),
    }
}

/// The sum of every thread's `se.sum_exec_runtime` (milliseconds); `None` without
/// CONFIG_SCHED_DEBUG.
fn scheduler_cpu_seconds(pid: u32) -> Option<f64> {
    let mut ms = 0.0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let sched = std::fs::read_to_string(task.ok()?.path().join("sched")).ok()?;
        ms += sched
            .lines()
            .find_map(|l| l.strip_prefix("se.sum_exec_runtime"))?
            .trim_start_matches([' ', ':'])
            .trim()
            .parse::<f64>()
            .ok()?;
    }
    Some(ms / 1000.0)
}

fn tick_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which ends with the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    // SAFETY: sysconf reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / per_second)
}

/// Peak resident set size in kB.
fn peak_rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM")
}

struct Process(Child);

impl Process {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// mosquitto on a free loopback port when installed, else the embedded broker; with
/// `BENCH_SOCKET=1`, mosquitto on a Unix socket as well, for the gateway.
struct Broker {
    port: u16,
    socket: Option<std::path::PathBuf>,
    process: Option<Process>,
    _dir: tempfile::TempDir,
}

impl Broker {
    fn start() -> anyhow::Result<Broker> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = tempfile::tempdir()?;
        let installed = Command::new("sh")
            .args(["-c", "command -v mosquitto"])
            .output()?
            .status
            .success();
        if !installed {
            eprintln!("mosquitto not installed: using the embedded broker");
            rtu2mqtt::broker::start(port)?;
            return Ok(Broker {
                port,
                socket: None,
                process: None,
                _dir: dir,
            });
        }
        let socket = std::env::var_os("BENCH_SOCKET").map(|_| dir.path().join("mqtt.sock"));
        let mut listeners = format!("listener {port} 127.0.0.1\n");
        if let Some(socket) = &socket {
            // mosquitto drops to its own user before it makes the socket.
            std::fs::set_permissions(
                dir.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o777),
            )?;
            listeners.push_str(&format!("listener 0 {}\n", socket.display()));
        }
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("{listeners}allow_anonymous true\npersistence false\n"),
        )?;
        let process = Process(
            Command::new("mosquitto")
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("mosquitto did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Broker {
            port,
            socket,
            process: Some(process),
            _dir: dir,
        })
    }
}

/// Counts value publishes (topics of registers) as they arrive.
struct Watcher {
    client: AsyncClient,
    state: Arc<Mutex<WatchState>>,
    changed: Arc<tokio::sync::Notify>,
}

#[derive(Default)]
struct WatchState {
    values_seen: std::collections::HashSet<String>,
    count: u64,
}

impl Watcher {
    async fn connect(port: u16, config: &Config) -> anyhow::Result<Watcher> {
        let topics: std::collections::HashSet<String> = config
            .devices
            .iter()
            .flat_map(|d| {
                d.registers
                    .iter()
                    .map(move |r| format!("rtu2mqtt/{}/{}", d.name, r.name))
            })
            .collect();
        let mut options = MqttOptions::new("bench-watcher", "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        client.subscribe("rtu2mqtt/#", QoS::AtMostOnce).await?;
        let state = Arc::new(Mutex::new(WatchState::default()));
        let changed = Arc::new(tokio::sync::Notify::new());
        let (store, notify) = (Arc::clone(&state), Arc::clone(&changed));
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) if topics.contains(&p.topic) => {
                        let mut state = store.lock().unwrap();
                        state.count += 1;
                        state.values_seen.insert(p.topic);
                        notify.notify_waiters();
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Ok(Watcher {
            client,
            state,
            changed,
        })
    }

    fn count(&self) -> u64 {
        self.state.lock().unwrap().count
    }

    async fn wait(&self, timeout: Duration, check: impl Fn(&WatchState) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if check(&self.state.lock().unwrap()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }
}
