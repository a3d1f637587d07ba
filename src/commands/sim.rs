//! `rtu2mqtt sim`: serve a config's devices as a simulated slave bus.

use std::process::ExitCode;

use anyhow::Context as _;
use tokio_serial::SerialPortBuilderExt;

use crate::config;
use crate::sim::{Fault, Simulator, TcpFraming, Wire};

pub async fn run(args: crate::cli::SimArgs) -> anyhow::Result<ExitCode> {
    let config = config::load(&args.config)?;
    let sim = Simulator::from_config(&config);
    for unit in &args.silent {
        sim.set_fault(*unit, Some(Fault::Silent));
    }
    sim.set_wire(Wire {
        // The units' own settings, when given, are the line's speed.
        speed: args
            .wire_speed
            .then_some(args.line.unwrap_or(config.bus.line)),
        line: args.line,
        ..Wire::default()
    });
    let shutdown = super::shutdown_on_signals()?;
    let units: Vec<String> = config
        .devices
        .iter()
        .filter(|d| !args.silent.contains(&d.unit.get()))
        .map(|d| format!("{} ({})", d.unit, d.name))
        .collect();
    let tcp = args
        .tcp
        .map(|address| (address, TcpFraming::Mbap, "tcp"))
        .or(args
            .rtu_tcp
            .map(|address| (address, TcpFraming::Rtu, "rtu+tcp")));
    if let Some((address, framing, scheme)) = tcp {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let address = listener.local_addr()?;
        // The port to give the gateway alone on stdout, for scripts; the rest is log.
        println!("{scheme}://{address}");
        tracing::info!(%address, units = %units.join(", "), "simulated slave serving {scheme} (Ctrl-C to stop)");
        sim.serve_tcp(listener, framing, shutdown)
            .await
            .context("serving the simulated bus")?;
        return Ok(ExitCode::SUCCESS);
    }
    let (port, _held_open, path) = match args.port {
        Some(path) => {
            let port = tokio_serial::new(&path, config.bus.line.baud)
                .open_native_async()
                .with_context(|| format!("cannot open {path}"))?;
            (port, None, path)
        }
        None => {
            let (serve, hold, path) =
                Simulator::open_pty().context("cannot open a pseudo-terminal")?;
            (serve, Some(hold), path)
        }
    };
    // The path alone on stdout, for scripts; the rest is log.
    println!("{path}");
    let line = args.line.map(|line| line.describe());
    tracing::info!(%path, units = %units.join(", "), wire_speed = args.wire_speed, line, "simulated slave serving (Ctrl-C to stop)");
    sim.serve(port, shutdown)
        .await
        .context("serving the simulated bus")?;
    Ok(ExitCode::SUCCESS)
}
