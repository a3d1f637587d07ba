//! Shell completions and man pages, generated from the clap definition so that they name
//! every command and option of this very binary (issue 11). The Debian package ships their
//! output (packaging/build-deb writes it before `cargo deb`); without the package, users
//! install it themselves (README, "Install on a Raspberry Pi").

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// Prints the completion script for `shell`.
pub fn completions(shell: Shell) -> anyhow::Result<ExitCode> {
    let mut cli = Cli::command();
    let name = cli.get_name().to_owned();
    // Generated into memory first: clap_complete panics on a failed write, and a closed
    // pipe (`| head`) is an error to report, not a crash.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cli, name, &mut script);
    io::stdout().write_all(&script)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the page of `rtu2mqtt` itself, or writes it and one page per command (which it
/// refers to as `rtu2mqtt-COMMAND(1)`) into `dir`.
pub fn manpage(dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    match dir {
        Some(dir) => std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(Cli::command(), dir))
            .with_context(|| format!("cannot write the man pages into {}", dir.display()))?,
        // Without the `help` command, as generate_to leaves it out: it gets no page of its
        // own, so the page must not refer to one, and is the same page as in `dir`.
        None => clap_mangen::Man::new(Cli::command().disable_help_subcommand(true))
            .render(&mut io::stdout().lock())?,
    }
    Ok(ExitCode::SUCCESS)
}
