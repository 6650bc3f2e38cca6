//! The daemon: one thread per collector (each on its own interval), one model thread that
//! folds observations into [`Health`], feeds the sinks and the event subscribers of the health
//! API, and publishes the current [`Snapshot`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::board::Board;
use crate::collectors::{self, Collector, CollectorContext};
use crate::config::Config;
use crate::log_sink::LogSink;
use crate::model::{Health, Observation, Snapshot};
use crate::sinks::{self, Sink};

/// Components UNKNOWN (no longer reported) for this long are dropped from the model.
const EXPIRE_UNKNOWN: Duration = Duration::from_secs(24 * 3600);
/// Events buffered per health API subscriber before a slow one is dropped.
pub const SUBSCRIBER_BUFFER: usize = 1024;

/// State shared between the model thread and the health API.
pub struct Shared {
    snapshot: RwLock<Arc<Snapshot>>,
    subscribers: Mutex<Vec<SyncSender<Arc<str>>>>,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    stopping: AtomicBool,
}

impl Shared {
    pub fn new(initial: Snapshot) -> Arc<Shared> {
        Arc::new(Shared {
            snapshot: RwLock::new(Arc::new(initial)),
            subscribers: Mutex::new(Vec::new()),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            stopping: AtomicBool::new(false),
        })
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn publish(&self, s: Snapshot) {
        match self.snapshot.write() {
            Ok(mut g) => *g = Arc::new(s),
            Err(p) => *p.into_inner() = Arc::new(s),
        }
    }

    /// A new event subscriber: every event from now on as one JSON line.
    pub fn subscribe(&self) -> Receiver<Arc<str>> {
        let (tx, rx) = mpsc::sync_channel(SUBSCRIBER_BUFFER);
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.push(tx);
        }
        rx
    }

    fn broadcast(&self, line: Arc<str>) {
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.retain(|tx| match tx.try_send(line.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    tracing::warn!(
                        event = "hwmon.api_subscriber_dropped",
                        "slow event subscriber dropped"
                    );
                    false
                }
                Err(TrySendError::Disconnected(_)) => false,
            });
        }
    }

    /// Asks every thread to stop.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Ok(mut s) = self.stop.lock() {
            *s = true;
        }
        self.stop_cv.notify_all();
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.clear();
        }
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Sleeps up to `d`; true when asked to stop.
    pub fn wait_stop(&self, d: Duration) -> bool {
        let Ok(guard) = self.stop.lock() else {
            return true;
        };
        match self
            .stop_cv
            .wait_timeout_while(guard, d, |stopped| !*stopped)
        {
            Ok((g, _)) => *g,
            Err(_) => true,
        }
    }
}

enum Msg {
    Batch(String, Vec<Observation>),
}

/// A running daemon (without the API socket; see [`crate::api`]).
pub struct Running {
    pub shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    ready_rx: Receiver<()>,
}

impl Running {
    /// Waits until every collector has reported once (or `timeout`); true when they have.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        self.ready_rx.recv_timeout(timeout).is_ok()
    }

    /// Stops every thread and waits for them.
    pub fn shutdown(self) {
        self.shared.stop();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Starts the collectors and the model thread.
pub fn start(config: &Config, board: Board) -> anyhow::Result<Running> {
    let ctx = CollectorContext { board };
    let collectors = collectors::build(config, &ctx)?;
    let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(LogSink)];
    sinks.extend(sinks::build(&config.sinks)?);
    start_with(collectors, sinks, config.hwmond.history)
}

/// Starts the given collectors and sinks (tests use this with their own).
pub fn start_with(
    collectors: Vec<Box<dyn Collector>>,
    mut sinks: Vec<Box<dyn Sink>>,
    history: usize,
) -> anyhow::Result<Running> {
    let mut health = Health::new(history);
    let shared = Shared::new(health.snapshot());
    let (tx, rx): (Sender<Msg>, Receiver<Msg>) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut threads = Vec::new();
    let expected = collectors.len();
    for mut c in collectors {
        let tx = tx.clone();
        let shared = shared.clone();
        let name = c.name().to_string();
        tracing::info!(event = "hwmon.collector_started", collector = %name, interval_ms = c.interval().as_millis() as u64);
        let t = std::thread::Builder::new()
            .name(format!("hwmon-{name}"))
            .spawn(move || {
                let interval = c.interval();
                let mut next = Instant::now();
                loop {
                    let obs = c.collect();
                    if tx.send(Msg::Batch(name.clone(), obs)).is_err() {
                        return;
                    }
                    next += interval;
                    let now = Instant::now();
                    if next < now {
                        // Fell behind (a slow smartctl): start again from now.
                        next = now + interval;
                    }
                    if shared.wait_stop(next - now) {
                        return;
                    }
                }
            })?;
        threads.push(t);
    }
    drop(tx);
    let model_shared = shared.clone();
    let model = std::thread::Builder::new()
        .name("hwmon-model".into())
        .spawn(move || {
            let mut reported = std::collections::BTreeSet::new();
            let mut ready = Some(ready_tx);
            if expected == 0 {
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
            }
            while let Ok(Msg::Batch(name, obs)) = rx.recv() {
                let events = health.apply(&name, obs);
                health.expire(crate::model::now_ms(), EXPIRE_UNKNOWN.as_millis() as u64);
                let snapshot = health.snapshot();
                for e in &events {
                    for s in sinks.iter_mut() {
                        s.event(e, &snapshot);
                    }
                    if let Ok(line) = serde_json::to_string(e) {
                        model_shared.broadcast(Arc::from(line));
                    }
                }
                for s in sinks.iter_mut() {
                    s.snapshot(&snapshot);
                }
                model_shared.publish(snapshot);
                reported.insert(name);
                if reported.len() >= expected {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
            }
        })?;
    threads.push(model);
    Ok(Running {
        shared,
        threads,
        ready_rx,
    })
}

/// Runs every enabled collector once, in this thread, and returns the resulting model
/// (`hwmond status` when no daemon runs).
pub fn collect_once(config: &Config, board: Board) -> anyhow::Result<Snapshot> {
    let ctx = CollectorContext { board };
    let mut health = Health::new(config.hwmond.history);
    for mut c in collectors::build(config, &ctx)? {
        let obs = c.collect();
        let name = c.name().to_string();
        health.apply(&name, obs);
    }
    Ok(health.snapshot())
}

/// The socket path of a configuration.
pub fn socket_path(config: &Config) -> PathBuf {
    config.hwmond.socket.clone()
}
