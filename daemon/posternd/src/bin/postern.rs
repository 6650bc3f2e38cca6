//! postern: administration of a Postern appliance (accounts, configuration, mailboxes).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = posternd::cli::Cli::parse();
    match posternd::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("postern: {error:#}");
            ExitCode::FAILURE
        }
    }
}
