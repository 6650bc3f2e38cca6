//! Child processes. PID 1 inherits every orphan, so one reaper thread reaps every child of
//! the process (`waitid(P_ALL)`, then `waitpid` of that pid under the registry lock); a child
//! the init itself started is registered (under the same lock, held across its fork and
//! exec) with what to do when it exits, and nobody else waits for it. This
//! is why the init never uses `Child::wait`/`Command::output` (the reaper would take their
//! status).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

type OnExit = Box<dyn FnOnce(i32) + Send>;

static REGISTRY: Mutex<BTreeMap<i32, OnExit>> = Mutex::new(BTreeMap::new());
static REAPER: Once = Once::new();

fn registry() -> MutexGuard<'static, BTreeMap<i32, OnExit>> {
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn start_reaper() {
    REAPER.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("reaper".into())
            .spawn(reap_forever);
        if let Err(error) = spawned {
            crate::console::say(&format!("cannot start the reaper thread: {error}"));
        }
    });
}

fn reap_forever() {
    loop {
        // Wait for any child to exit without reaping it yet (WNOWAIT).
        // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid writes into `info`, which we own.
        let rc = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc != 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
                std::thread::sleep(Duration::from_millis(20));
            }
            continue;
        }
        // SAFETY: waitid filled in a child's siginfo.
        let pid = unsafe { info.si_pid() };
        // Reap under the lock a spawner holds across its fork and exec: when exec fails,
        // std waits for that child itself inside `spawn`, and a reap here first made its
        // wait fail (ECHILD) and std panic ("wait() should either return Ok or panic"). A
        // pid reaped here is registered by now, or an orphan; one std reaped is gone.
        let mut registry = registry();
        let mut status = 0;
        // SAFETY: waitpid writes the status into our integer.
        let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        let on_exit = if reaped == pid {
            registry.remove(&pid)
        } else {
            None
        };
        drop(registry);
        if let Some(on_exit) = on_exit {
            on_exit(status);
        }
    }
}

/// Exit code of a wait status the way a shell reports it: the code, or 128 + the signal.
pub fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

/// Starts `command`; `on_exit` runs on the reaper thread with the wait status. The returned
/// `Child` is for its pipes and pid only: do not wait on it.
pub fn spawn(command: &mut Command, on_exit: impl FnOnce(i32) + Send + 'static) -> Result<Child> {
    start_reaper();
    // The init blocks the signals it handles itself (stage2), and a blocked mask survives
    // fork and exec: without this, SIGTERM never reached posternd or hwmond and every stop
    // ended in SIGKILL after the grace period.
    // SAFETY: pthread_sigmask and sigemptyset are async-signal-safe, as pre_exec requires.
    unsafe {
        command.pre_exec(|| {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            match libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) {
                0 => Ok(()),
                code => Err(std::io::Error::from_raw_os_error(code)),
            }
        });
    }
    let mut registry = registry();
    let child = command
        .spawn()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    registry.insert(child.id() as i32, Box::new(on_exit));
    Ok(child)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Shell-style exit code; 124 when the time limit killed it (as `timeout(1)`).
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// stderr (else stdout), trimmed, for error messages.
    pub fn message(&self) -> String {
        let text = if self.stderr.is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        String::from_utf8_lossy(text).trim().to_string()
    }
}

fn read_in_thread(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        std::thread::spawn(move || {
            let mut buffer = Vec::new();
            let _ = pipe.read_to_end(&mut buffer);
            let _ = tx.send(buffer);
        });
    }
    rx
}

/// Runs `argv` to completion (stdin from /dev/null, or `input`), in its own process group;
/// after `limit` the group is killed and the code is 124.
pub fn run(argv: &[&str], limit: Duration) -> Result<Output> {
    run_with_input(argv, None, limit)
}

pub fn run_with_input(argv: &[&str], input: Option<&[u8]>, limit: Duration) -> Result<Output> {
    use std::os::unix::process::CommandExt;
    let Some((program, args)) = argv.split_first() else {
        anyhow::bail!("empty command");
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let (tx, rx) = mpsc::channel();
    let mut child = spawn(&mut command, move |status| {
        let _ = tx.send(status);
    })?;
    let pid = child.id() as i32;
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        let input = input.to_vec();
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&input);
        });
    }
    let stdout = read_in_thread(child.stdout.take());
    let stderr = read_in_thread(child.stderr.take());
    let started = Instant::now();
    let (status, timed_out) = match rx.recv_timeout(limit) {
        Ok(status) => (status, false),
        Err(_) => {
            // SAFETY: plain kill(2) of the child's process group (not reaped yet: its
            // registration is still pending, so the pid is still ours).
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
            (rx.recv().unwrap_or(libc::SIGKILL), true)
        }
    };
    // Grandchildren may hold the pipes open: wait a little for the output, not forever.
    let grace = Duration::from_secs(2).max(limit.saturating_sub(started.elapsed()) / 10);
    let stdout = stdout.recv_timeout(grace).unwrap_or_default();
    let stderr = stderr.recv_timeout(grace).unwrap_or_default();
    Ok(Output {
        code: if timed_out { 124 } else { exit_code(status) },
        stdout,
        stderr,
        timed_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_captures_output_and_code() {
        let out = run(
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(out.code, 3);
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.message(), "err");
    }

    #[test]
    fn time_limit_kills_the_group_and_gives_124() {
        let out = run(
            &["sh", "-c", "sleep 30 & sleep 30"],
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(out.timed_out);
        assert_eq!(out.code, 124);
    }

    #[test]
    fn input_reaches_stdin_and_signals_map_to_128_plus() {
        let out = run_with_input(&["cat"], Some(b"hello"), Duration::from_secs(20)).unwrap();
        assert_eq!(out.stdout, b"hello");
        let out = run(&["sh", "-c", "kill -9 $$"], Duration::from_secs(20)).unwrap();
        assert_eq!(out.code, 137);
        assert!(run(&["/nonexistent/program"], Duration::from_secs(1)).is_err());
    }

    #[test]
    fn children_start_with_no_blocked_signals() {
        // As stage 2 does: this thread blocks SIGTERM; the child must not inherit that.
        // SAFETY: plain sigset manipulation on this test thread.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        let out = run(
            &["sh", "-c", "grep SigBlk /proc/self/status"],
            Duration::from_secs(20),
        )
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.trim(), "SigBlk:\t0000000000000000", "{text}");
    }
}
