//! The subcommands: each takes its parsed arguments and returns how the process ends.

mod check;
mod demo;
mod docs;
mod oneshot;
mod probe;
mod scan;
mod sim;

use std::process::ExitCode;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cli::Command;

/// Runs one subcommand to its end.
pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check(args) => check::run(&args).await,
        Command::Sim(args) => sim::run(args).await,
        Command::Read(args) => oneshot::read(args).await,
        Command::Write(args) => oneshot::write(args).await,
        Command::Scan(args) => scan::run(args).await,
        Command::Run(args) => {
            let shutdown = shutdown_on_signals()?;
            let reloads = reload_on_hangup()?;
            let (config, warnings) = crate::config::load_with_warnings(&args.config)?;
            for w in warnings {
                let file = args.config.display();
                tracing::warn!("config {file}:{}: `{}`: {}", w.line, w.key, w.message);
            }
            crate::app::run(config, shutdown, reloads).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => demo::run(args).await,
        Command::Completions(args) => docs::completions(args.shell),
        Command::Manpage(args) => docs::manpage(args.dir.as_deref()),
    }
}

/// A token cancelled on SIGINT or SIGTERM: the one shutdown signal every task watches.
pub fn shutdown_on_signals() -> anyhow::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        cancel.cancel();
    });
    Ok(token)
}

/// One message per SIGHUP (`systemctl reload`): the request to re-read the config. Signals
/// that come while one is waiting to be handled count as one.
pub fn reload_on_hangup() -> anyhow::Result<mpsc::Receiver<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup())?;
    let (requests, reloads) = mpsc::channel(1);
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            let _ = requests.try_send(());
        }
    });
    Ok(reloads)
}
