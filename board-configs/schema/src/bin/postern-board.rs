//! `postern-board`: checks board files and shows them as the image builder reads them.
//!
//!     postern-board check FILE...        every problem as `file:line:column: message`; exit 1
//!     postern-board show --json FILE     the board with every default filled in, as JSON
//!     postern-board show FILE            a summary for people
//!
//! Both hold a board to what an image needs (a system disk, a data array, the kernel modules
//! they use): this is the image's tool. hwmond checks its own boards with `hwmond check-config`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use postern_board::Board;

#[derive(Parser)]
#[command(name = "postern-board", about = "Check and show Postern board files")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check board files; prints every problem as file:line:column: message.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show one board with its defaults filled in.
    Show {
        /// As JSON (for the image builder).
        #[arg(long)]
        json: bool,
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { files } => check(&files),
        Command::Show { json, file } => show(&file, json),
    }
}

fn check(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for file in files {
        match Board::load_for_image_all(file) {
            Ok(board) => println!("{}: ok ({})", file.display(), board.board.name),
            Err(problems) => {
                failed = true;
                for problem in problems {
                    eprintln!("{problem}");
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn show(file: &Path, json: bool) -> ExitCode {
    let board = match Board::load_for_image_all(file) {
        Ok(board) => board,
        Err(problems) => {
            for problem in problems {
                eprintln!("{problem}");
            }
            return ExitCode::FAILURE;
        }
    };
    let text = if json {
        match serde_json::to_string_pretty(&board) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("{}: cannot write JSON: {e}", file.display());
                return ExitCode::FAILURE;
            }
        }
    } else {
        summary(&board)
    };
    // A closed pipe (`| head`) is not worth a panic.
    match writeln!(std::io::stdout().lock(), "{text}") {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

fn summary(board: &Board) -> String {
    let mut out = vec![format!(
        "{} — {} {}",
        board.board.name, board.board.vendor, board.board.model
    )];
    if let Some(system) = &board.system_disk {
        let i = &board.image;
        out.push(format!(
            "system disk {}: efi {} MiB, boot {} MiB x2, system {} MiB x2, persist {} MiB",
            system.device, i.efi_mib, i.boot_mib, i.system_mib, i.persist_mib
        ));
    }
    for array in &board.arrays {
        out.push(format!(
            "array {} ({}, {}): {} over {} -> {} {}",
            array.name,
            array.role.as_str(),
            array.device,
            array.level,
            array.devices.join(" "),
            array.filesystem,
            if array.mount.is_empty() {
                "(not mounted)"
            } else {
                &array.mount
            }
        ));
    }
    out.push(format!(
        "console {} {} baud; watchdog {} ({}) timeout {} s, fed every {} s",
        board.console.device,
        board.console.baud,
        board.watchdog.device,
        if board.watchdog.module.is_empty() {
            "built in"
        } else {
            &board.watchdog.module
        },
        board.watchdog.timeout_secs,
        board.watchdog.feed_interval_secs
    ));
    out.push(format!(
        "kernel modules: {}",
        board.kernel.modules.join(" ")
    ));
    if !board.kernel.cmdline.is_empty() {
        out.push(format!("kernel cmdline: {}", board.kernel.cmdline));
    }
    out.push(format!(
        "{} disks, {} sensors",
        board.disks.len(),
        board.sensors.len()
    ));
    out.join("\n")
}
