//! The health API: a Unix socket speaking newline-delimited JSON.
//!
//! - `{"get":"state"}` -> one line: the [`Snapshot`] (components, overall state and the
//!   storage verdict `{"storage":{"safe":bool,"reasons":[..]}}`). Several requests may follow
//!   on one connection.
//! - `{"get":"events"}` -> one [`crate::model::Event`] per line as they happen; the connection
//!   stays open until the client closes it (or falls more than
//!   [`crate::daemon::SUBSCRIBER_BUFFER`] events behind).
//! - anything else -> `{"error":"..."}` and the connection stays usable.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::daemon::Shared;
use crate::model::{Event, Snapshot};

/// Longest request line accepted.
const MAX_REQUEST: u64 = 4096;
/// Connections served at once; more are answered with an error and closed.
const MAX_CONNECTIONS: usize = 64;
/// An idle connection that sends no request for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub get: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bad response from hwmond: {0}")]
    Protocol(String),
}

/// The listening socket and its accept thread.
pub struct Server {
    path: PathBuf,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `path` (replacing a stale socket file; the directory is created) with mode 0660.
    pub fn start(path: &Path, shared: Arc<Shared>) -> Result<Server, ApiError> {
        let io = |source| ApiError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        if path.exists() {
            // A live daemon answers; a stale file from a crash does not.
            if UnixStream::connect(path).is_ok() {
                return Err(io(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another hwmond is listening",
                )));
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io)?;
        let thread = std::thread::Builder::new()
            .name("hwmon-api".into())
            .spawn(move || accept_loop(listener, shared))
            .map_err(io)?;
        tracing::info!(event = "hwmon.api_listening", socket = %path.display());
        Ok(Server {
            path: path.to_path_buf(),
            thread: Some(thread),
        })
    }

    /// Stops accepting (the daemon's `Shared::stop` must have been called) and removes the
    /// socket file.
    pub fn stop(mut self) {
        // Wake the blocking accept.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(listener: UnixListener, shared: Arc<Shared>) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if shared.is_stopping() {
            return;
        }
        let Ok(mut stream) = conn else { continue };
        if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = writeln!(stream, "{}", error_json("too many connections"));
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let shared = shared.clone();
        let guard = active.clone();
        let spawned = std::thread::Builder::new()
            .name("hwmon-api-conn".into())
            .spawn(move || {
                if let Err(e) = serve(stream, &shared) {
                    tracing::debug!(event = "hwmon.api_connection_error", error = %e);
                }
                guard.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn serve(stream: UnixStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        let n = (&mut reader).take(MAX_REQUEST).read_line(&mut line)?;
        if n == 0 {
            return Ok(());
        }
        if !line.ends_with('\n') && n as u64 >= MAX_REQUEST {
            writeln!(writer, "{}", error_json("request too long"))?;
            return Ok(());
        }
        let request: Request = match serde_json::from_str(line.trim()) {
            Ok(r) => r,
            Err(e) => {
                writeln!(writer, "{}", error_json(&format!("bad request: {e}")))?;
                continue;
            }
        };
        match request.get.as_str() {
            "state" => {
                let snap = shared.snapshot();
                let json = serde_json::to_string(&*snap).map_err(std::io::Error::other)?;
                writer.write_all(json.as_bytes())?;
                writer.write_all(b"\n")?;
            }
            "events" => {
                let rx = shared.subscribe();
                writer.set_write_timeout(Some(Duration::from_secs(30)))?;
                while let Ok(line) = rx.recv() {
                    writer.write_all(line.as_bytes())?;
                    writer.write_all(b"\n")?;
                }
                return Ok(());
            }
            other => {
                writeln!(
                    writer,
                    "{}",
                    error_json(&format!(
                        "unknown request `{other}`; expected state or events"
                    ))
                )?;
            }
        }
    }
}

fn error_json(msg: &str) -> String {
    serde_json::json!({ "error": msg }).to_string()
}

/// Client: asks a running hwmond for its state.
pub fn fetch_state(path: &Path, timeout: Duration) -> Result<Snapshot, ApiError> {
    let io = |source| ApiError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    stream.write_all(b"{\"get\":\"state\"}\n").map_err(io)?;
    let mut line = String::new();
    BufReader::new(stream)
        .take(64 << 20)
        .read_line(&mut line)
        .map_err(io)?;
    serde_json::from_str(&line).map_err(|e| ApiError::Protocol(e.to_string()))
}

/// Client: subscribes to events; calls `f` for each until it returns false.
pub fn follow_events(path: &Path, mut f: impl FnMut(Event) -> bool) -> Result<(), ApiError> {
    let io = |source| ApiError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(io)?;
    stream.write_all(b"{\"get\":\"events\"}\n").map_err(io)?;
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(io)?;
        let event: Event =
            serde_json::from_str(&line).map_err(|e| ApiError::Protocol(e.to_string()))?;
        if !f(event) {
            break;
        }
    }
    Ok(())
}
