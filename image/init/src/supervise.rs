//! Supervision of hwmond and posternd: start, capture stdout/stderr line by line (console
//! and log ring), restart on exit after an exponential back-off (capped; reset once a run
//! lasted long enough), stop with SIGTERM then SIGKILL.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;

/// Restart delays: `initial`, doubling up to `cap`; a run of at least `stable_after` starts
/// the sequence again.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub initial: Duration,
    pub cap: Duration,
    pub stable_after: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, cap: Duration, stable_after: Duration) -> Backoff {
        Backoff {
            initial,
            cap,
            stable_after,
            next: initial,
        }
    }

    /// The delay before the next start, given how long the last run lasted.
    pub fn delay_after(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.stable_after {
            self.next = self.initial;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(self.cap);
        delay
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(60),
            Duration::from_secs(120),
        )
    }
}

/// Called on the reaper thread when a service's process exits: (name, pid, wait status).
pub type ExitNotify = Arc<dyn Fn(&str, i32, i32) + Send + Sync>;

pub struct Service {
    pub name: String,
    pub argv: Vec<String>,
    pub pid: Option<i32>,
    pub started_at: Option<Instant>,
    pub restart_at: Option<Instant>,
    pub starts: u32,
    pub last_exit: Option<i32>,
    backoff: Backoff,
    /// Set by the reaper when the current process exited (stop() polls it).
    exited: Arc<Mutex<Option<i32>>>,
}

impl Service {
    pub fn new(name: &str, argv: &[&str]) -> Service {
        Service {
            name: name.to_string(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            pid: None,
            started_at: None,
            restart_at: Some(Instant::now()),
            starts: 0,
            last_exit: None,
            backoff: Backoff::default(),
            exited: Arc::new(Mutex::new(None)),
        }
    }

    #[cfg(test)]
    pub fn with_backoff(mut self, backoff: Backoff) -> Service {
        self.backoff = backoff;
        self
    }

    pub fn status_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "running": self.pid.is_some(),
            "pid": self.pid,
            "starts": self.starts,
            "last_exit": self.last_exit,
        })
    }

    fn start(&mut self, notify: &ExitNotify) -> Result<()> {
        let Some((program, args)) = self.argv.split_first() else {
            anyhow::bail!("{}: empty command", self.name);
        };
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let name = self.name.clone();
        let notify = notify.clone();
        let exited = Arc::new(Mutex::new(None));
        let exited_for_reaper = exited.clone();
        let mut child = crate::children::spawn(&mut command, move |status| {
            *exited_for_reaper.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
            // The pid is not known inside this closure before spawn returns; the main loop
            // matches by name and pid.
            notify(&name, -1, status);
        })?;
        let pid = child.id() as i32;
        forward_lines(&self.name, child.stdout.take());
        forward_lines(&self.name, child.stderr.take());
        self.exited = exited;
        self.pid = Some(pid);
        self.started_at = Some(Instant::now());
        self.restart_at = None;
        self.starts += 1;
        crate::console::say(&format!("{} started (pid {pid})", self.name));
        Ok(())
    }

    /// The current process exited with `status`: schedule the restart.
    pub fn exited(&mut self, status: i32, now: Instant) -> Duration {
        let ran_for = self
            .started_at
            .map(|s| now.saturating_duration_since(s))
            .unwrap_or_default();
        self.pid = None;
        self.last_exit = Some(crate::children::exit_code(status));
        let delay = self.backoff.delay_after(ran_for);
        self.restart_at = Some(now + delay);
        delay
    }

    fn has_exited(&self) -> bool {
        self.exited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}

fn forward_lines(source: &str, pipe: Option<impl Read + Send + 'static>) {
    let Some(pipe) = pipe else { return };
    let source = source.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).split(b'\n').map_while(|l| l.ok()) {
            crate::console::line(&source, String::from_utf8_lossy(&line).trim_end());
        }
    });
}

pub struct Supervisor {
    pub services: Vec<Service>,
    notify: ExitNotify,
    stopping: bool,
}

impl Supervisor {
    pub fn new(services: Vec<Service>, notify: ExitNotify) -> Supervisor {
        Supervisor {
            services,
            notify,
            stopping: false,
        }
    }

    /// Starts every service whose (re)start time has come.
    pub fn tick(&mut self, now: Instant) {
        if self.stopping {
            return;
        }
        for service in &mut self.services {
            if service.pid.is_none() && service.restart_at.is_some_and(|t| t <= now) {
                if let Err(error) = service.start(&self.notify) {
                    let delay = service.exited(127 << 8, now);
                    crate::console::say(&format!(
                        "{error:#}; trying again in {} s",
                        delay.as_secs()
                    ));
                }
            }
        }
    }

    /// The reaper reported that `name` exited.
    pub fn on_exit(&mut self, name: &str, status: i32, now: Instant) {
        let stopping = self.stopping;
        if let Some(service) = self.services.iter_mut().find(|s| s.name == name) {
            if service.pid.is_none() {
                return;
            }
            let delay = service.exited(status, now);
            let code = crate::children::exit_code(status);
            if stopping {
                crate::console::say(&format!("{name} stopped (code {code})"));
            } else {
                crate::console::say(&format!(
                    "{name} exited (code {code}); restarting in {} s",
                    delay.as_secs()
                ));
            }
        }
    }

    /// SIGTERM to every running service, SIGKILL to what is left after `grace`.
    pub fn stop_all(&mut self, grace: Duration) {
        self.stopping = true;
        let signal_all = |services: &[Service], signal: i32| {
            for service in services {
                if let (Some(pid), false) = (service.pid, service.has_exited()) {
                    // SAFETY: kill(2) of a child we started and have not reaped.
                    unsafe {
                        libc::kill(pid, signal);
                    }
                }
            }
        };
        let all_exited =
            |services: &[Service]| services.iter().all(|s| s.pid.is_none() || s.has_exited());
        signal_all(&self.services, libc::SIGTERM);
        let start = Instant::now();
        while !all_exited(&self.services) && start.elapsed() < grace {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !all_exited(&self.services) {
            let running: Vec<&str> = self
                .services
                .iter()
                .filter(|s| s.pid.is_some() && !s.has_exited())
                .map(|s| s.name.as_str())
                .collect();
            crate::console::say(&format!(
                "still running {} s after SIGTERM: {}; SIGKILL",
                grace.as_secs(),
                running.join(", ")
            ));
            signal_all(&self.services, libc::SIGKILL);
            let start = Instant::now();
            while !all_exited(&self.services) && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        for service in &mut self.services {
            if service.pid.is_some() && service.has_exited() {
                service.pid = None;
            }
        }
    }

    pub fn status_json(&self) -> serde_json::Value {
        serde_json::Value::Array(self.services.iter().map(Service::status_json).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn backoff_doubles_caps_and_resets_after_a_stable_run() {
        let mut b = Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(10),
            Duration::from_secs(60),
        );
        let short = Duration::from_secs(2);
        let delays: Vec<u64> = (0..6).map(|_| b.delay_after(short).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(b.delay_after(Duration::from_secs(61)).as_secs(), 1);
        assert_eq!(b.delay_after(short).as_secs(), 2);
    }

    #[test]
    fn restarts_a_crashing_service_and_stops_a_running_one() {
        let (tx, rx) = mpsc::channel::<(String, i32)>();
        let tx = Arc::new(Mutex::new(tx));
        let notify: ExitNotify = Arc::new(move |name: &str, _pid, status| {
            let _ = tx.lock().unwrap().send((name.to_string(), status));
        });
        let fast = Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(40),
            Duration::from_secs(60),
        );
        let mut supervisor = Supervisor::new(
            vec![
                Service::new("crasher", &["sh", "-c", "echo boom; exit 3"])
                    .with_backoff(fast.clone()),
                Service::new("sleeper", &["sleep", "30"]).with_backoff(fast),
            ],
            notify,
        );
        let start = Instant::now();
        while supervisor.services[0].starts < 3 && start.elapsed() < Duration::from_secs(20) {
            supervisor.tick(Instant::now());
            if let Ok((name, status)) = rx.recv_timeout(Duration::from_millis(20)) {
                supervisor.on_exit(&name, status, Instant::now());
            }
        }
        assert!(supervisor.services[0].starts >= 3);
        assert_eq!(supervisor.services[0].last_exit, Some(3));
        assert_eq!(supervisor.services[1].starts, 1);
        assert!(supervisor.services[1].pid.is_some());
        supervisor.stop_all(Duration::from_secs(10));
        assert!(supervisor.services[1].pid.is_none());
        // No restarts once stopping.
        supervisor.tick(Instant::now() + Duration::from_secs(3600));
        assert!(supervisor.services.iter().all(|s| s.pid.is_none()));
    }
}
