//! `rtu2mqtt check`: validate a config and show what its poll plan costs on the line.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::CheckArgs;
use crate::config::{self, Config, Transport};
use crate::plan::{self, PollRequest};

/// Prints the plan, then the warnings, as compilers do, on stderr. Warnings fail the check
/// only when `--strict`. With `--probe`, then reads every register once on the bus: any
/// that does not answer with a value fails the check.
pub async fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let path = &args.config.config;
    let (config, warnings) = config::load_with_warnings(path)?;
    print!("{}", report(&config));
    for w in &warnings {
        eprintln!(
            "warning: {}:{}:{}: `{}`: {}",
            path.display(),
            w.line,
            w.column,
            w.key,
            w.message
        );
    }
    let warned = !warnings.is_empty() && args.strict;
    if warned {
        eprintln!("{} warning(s), and --strict: failing", warnings.len());
    }
    let answered = !args.probe || super::probe::run(config).await?;
    Ok(if warned || !answered {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `n` things, in words: "1 read", "2 reads".
fn counted(n: usize, thing: &str) -> String {
    format!("{n} {thing}{}", if n == 1 { "" } else { "s" })
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The plan, device by device, with bytes and line time per read and per cycle.
pub fn report(config: &Config) -> String {
    let line = &config.bus.line;
    let gap = config.bus.timing.frame_gap;
    let mut out = String::new();
    let _ = writeln!(out, "{}: OK", config.source.display());
    let transport = &config.bus.transport;
    let _ = writeln!(out, "bus: {}", transport.describe());
    // Modbus TCP has no shared serial line: no line time to account for, and none printed.
    let line = transport.has_line().then_some(line);
    if let Some(line) = line {
        let _ = writeln!(
            out,
            "{} at {}: {} bits per character, {:.3} ms each, {} of silence before each frame{}",
            if let Transport::RtuOverTcp { .. } = transport {
                "the serial line behind the server"
            } else {
                "the line"
            },
            line.describe(),
            line.bits_per_char(),
            line.char_time().as_secs_f64() * 1000.0,
            ms(line.frame_silence()),
            if gap.is_zero() {
                String::new()
            } else {
                format!(" plus a frame gap of {}", ms(gap))
            }
        );
    } else {
        let _ = writeln!(
            out,
            "no shared serial line: each device answers over its own connection, so the plan has no line time to add up"
        );
    }
    let all = plan::plan(&config.devices);
    for (index, device) in config.devices.iter().enumerate() {
        let reads: Vec<&PollRequest> = all.iter().filter(|r| r.device == index).collect();
        let timing = if device.timing == config.bus.timing {
            String::new()
        } else {
            format!(
                ", its own timeout {} and frame gap {}",
                ms(device.timing.timeout),
                ms(device.timing.frame_gap)
            )
        };
        let _ = writeln!(
            out,
            "\ndevice {} (unit {}{timing}): {} in {} per cycle",
            device.name,
            device.unit,
            counted(device.registers.len(), "register"),
            counted(reads.len(), "read"),
        );
        for r in &reads {
            // Bits name theirs: several share one register of the read.
            let names: Vec<String> = r
                .registers
                .iter()
                .map(|i| {
                    let register = &device.registers[*i];
                    match register.codec.bit {
                        Some(bit) => format!("{} (bit {bit})", register.name),
                        None => register.name.clone(),
                    }
                })
                .collect();
            let _ = writeln!(
                out,
                "  every {:<6} fn {} {} {}..={} ({} {}): {} bytes{}  [{}]",
                humantime::format_duration(r.interval).to_string(),
                r.read.table.read_function(),
                r.read.table.name(),
                r.read.address,
                r.read.end() - 1,
                r.read.count,
                match (r.read.table.is_bits(), r.read.count) {
                    (true, 1) => "bit",
                    (true, _) => "bits",
                    (false, 1) => "register",
                    (false, _) => "registers",
                },
                r.read.frame_bytes(),
                line.map_or(String::new(), |line| format!(", {}", ms(r.line_time(line)))),
                names.join(", ")
            );
        }
        let bytes: u32 = reads.iter().map(|r| r.read.frame_bytes()).sum();
        let _ = writeln!(
            out,
            "  one cycle: {} bytes{}",
            bytes,
            line.map_or(String::new(), |line| format!(
                ", {} of line time",
                ms(plan::cycle_time(reads.iter().copied(), line))
            ))
        );
    }
    let bytes: u32 = all.iter().map(|r| r.read.frame_bytes()).sum();
    let _ = write!(
        out,
        "\nall devices: {} read{} per cycle, {} bytes",
        all.len(),
        if all.len() == 1 { "" } else { "s" },
        bytes,
    );
    let _ = match line {
        Some(line) => writeln!(
            out,
            ", {} of line time; at the configured intervals the line is busy {:.1}% of the time (slave turnaround not counted)",
            ms(plan::cycle_time(&all, line)),
            plan::utilisation(&all, line) * 100.0
        ),
        None => writeln!(out),
    };
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn bits_of_one_register_show_in_one_read() {
        let text = r#"
bus = { port = "/dev/null" }
[[device]]
name = "pump"
unit = 3
register = [
  { name = "running", address = 0, bit = 0 },
  { name = "heating", address = 0, bit = 3, writable = true, write_function = 22 },
  { name = "alarm", address = 0, bit = 15 },
  { name = "serial", address = 1, length = 4 },
]
"#;
        let config = config::parse(text, Path::new("pump.toml")).unwrap();
        let out = report(&config);
        assert!(
            out.contains(
                "fn 3 holding 0..=4 (5 registers): 23 bytes, 34.4 ms  [running (bit 0), heating (bit 3), alarm (bit 15), serial]"
            ),
            "{out}"
        );
        assert!(out.contains("4 registers in 1 read per cycle"), "{out}");
    }
}
