use std::process::ExitCode;

use clap::Parser;
use rtu2mqtt::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = rtu2mqtt::logging::init(&cli.log_level) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    // One thread is plenty for one serial line and one broker connection.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(rtu2mqtt::commands::run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
