//! postern-init: the Postern appliance init (DESIGN.md 3.7, image/README.md "Boot").
//!
//! One static binary, several roles:
//! - PID 1 as `/init` (initramfs): stage 1, switch to the system slot.
//! - PID 1 as anything else (`/sbin/init` on the slot): stage 2.
//! - `udhcpc.script` (argv[0], a symlink udhcpc runs): the DHCP event script.
//! - subcommands, also on the host: `grubenv get|set|unset|list FILE`, `records [--json] [DIR]`,
//!   `log [DIR]`, `control REQUEST` (the control socket's client).

mod boot_record;
mod children;
mod cmd_channel;
mod cmdline;
mod console;
mod control;
mod grubenv;
mod log_ring;
mod md;
mod mounts;
mod network;
mod paths;
mod plan;
mod power_button;
mod provision;
mod shutdown;
mod stage1;
mod stage2;
mod supervise;
mod watchdog;

use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "usage: postern-init grubenv get|set|unset|list FILE [KEY[=VALUE]...]
       postern-init records [--json] [DIR]      (default /persist/boot)
       postern-init log [DIR]                   (default /persist/log)
       postern-init control status|reboot|poweroff|factory-reset|test-stop-watchdog
As PID 1: stage 1 when run as /init, stage 2 otherwise.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let argv0 = args.first().map(String::as_str).unwrap_or("");
    // SAFETY: getpid cannot fail.
    if unsafe { libc::getpid() } == 1 {
        // The kernel runs the initramfs's /init; stage 1 execs /sbin/init.
        if argv0 == "/init" {
            stage1::main();
        }
        stage2::main();
    }
    if argv0.ends_with("udhcpc.script") {
        let action = args.get(1).map(String::as_str).unwrap_or("");
        return report(network::udhcpc_script(action));
    }
    let rest = args.get(2..).unwrap_or(&[]);
    let result = match args.get(1).map(String::as_str) {
        Some("grubenv") => grubenv::command(rest),
        Some("records") => boot_record::command(rest),
        Some("log") => {
            let dir = rest.first().map(String::as_str).unwrap_or(paths::LOG_RING);
            for line in log_ring::read_all(Path::new(dir), log_ring::COUNT) {
                println!("{line}");
            }
            Ok(())
        }
        Some("control") => match rest {
            [request] => control::request(Path::new(paths::CONTROL_SOCKET), request).map(|reply| {
                println!("{reply}");
            }),
            _ => Err(anyhow::anyhow!("{USAGE}")),
        },
        Some("udhcpc-script") => {
            network::udhcpc_script(rest.first().map(String::as_str).unwrap_or(""))
        }
        _ => Err(anyhow::anyhow!("{USAGE}")),
    };
    report(result)
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("postern-init: {error:#}");
            ExitCode::FAILURE
        }
    }
}
