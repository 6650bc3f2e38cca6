//! The control socket /run/postern/init.sock (mode 0600, and the peer must be root):
//! one request line, one JSON answer line.
//!   factory-reset        record the request on /persist and reboot
//!   reboot | poweroff
//!   status               {"ok":true,"slot":"A","marked_good":true,"services":[...],...}
//!   test-stop-watchdog   only with postern.test=1: stop feeding the watchdog

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    FactoryReset,
    Reboot,
    Poweroff,
    Status,
    TestStopWatchdog,
}

impl Request {
    pub fn parse(line: &str) -> Option<Request> {
        match line.trim() {
            "factory-reset" => Some(Request::FactoryReset),
            "reboot" => Some(Request::Reboot),
            "poweroff" => Some(Request::Poweroff),
            "status" => Some(Request::Status),
            "test-stop-watchdog" => Some(Request::TestStopWatchdog),
            _ => None,
        }
    }
}

pub fn error_reply(message: &str) -> String {
    serde_json::json!({"ok": false, "error": message}).to_string()
}

pub fn ok_reply() -> String {
    serde_json::json!({"ok": true}).to_string()
}

/// A request for the main loop and where its answer goes.
pub struct Envelope {
    pub request: Request,
    pub reply: mpsc::Sender<String>,
}

fn peer_uid(stream: &UnixStream) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED fills the ucred we own; len is its size.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(cred.uid)
}

fn handle(stream: UnixStream, send: &(dyn Fn(Envelope) + Sync)) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let reply = if peer_uid(&stream) != Some(0) && peer_uid(&stream) != Some(own_uid()) {
        error_reply("permission denied: root only")
    } else {
        let mut line = String::new();
        let _ = BufReader::new(&stream).read_line(&mut line);
        match Request::parse(&line) {
            None => error_reply(&format!("unknown request {:?}", line.trim())),
            Some(request) => {
                let (tx, rx) = mpsc::channel();
                send(Envelope { request, reply: tx });
                rx.recv_timeout(Duration::from_secs(30))
                    .unwrap_or_else(|_| error_reply("the init did not answer"))
            }
        }
    };
    let mut stream = stream;
    let _ = stream.write_all(format!("{reply}\n").as_bytes());
}

fn own_uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

/// Binds the socket (replacing a stale one), owner-only.
pub fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Accepts connections forever, one thread each.
pub fn serve(listener: UnixListener, send: impl Fn(Envelope) + Send + Sync + Clone + 'static) {
    for stream in listener.incoming().flatten() {
        let send = send.clone();
        std::thread::spawn(move || handle(stream, &send));
    }
}

/// Client side (for tests and tools): sends one request, returns the answer line.
pub fn request(path: &Path, request: &str) -> Result<String> {
    let mut stream =
        UnixStream::connect(path).with_context(|| format!("connecting to {}", path.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.write_all(format!("{request}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    Ok(line.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        assert_eq!(Request::parse("status\n"), Some(Request::Status));
        assert_eq!(
            Request::parse("test-stop-watchdog"),
            Some(Request::TestStopWatchdog)
        );
        assert_eq!(Request::parse("rm -rf /"), None);
    }

    #[test]
    fn socket_round_trip_through_the_main_loop_channel() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("init.sock");
        let listener = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (tx, rx) = mpsc::channel::<Envelope>();
        let tx = std::sync::Arc::new(std::sync::Mutex::new(tx));
        std::thread::spawn(move || {
            serve(listener, move |e| {
                let _ = tx.lock().unwrap().send(e);
            })
        });
        std::thread::spawn(move || {
            for envelope in rx {
                let answer = match envelope.request {
                    Request::Status => serde_json::json!({"ok": true, "slot": "A"}).to_string(),
                    _ => ok_reply(),
                };
                let _ = envelope.reply.send(answer);
            }
        });
        assert_eq!(
            request(&path, "status").unwrap(),
            r#"{"ok":true,"slot":"A"}"#
        );
        assert_eq!(request(&path, "reboot").unwrap(), r#"{"ok":true}"#);
        let unknown = request(&path, "format c:").unwrap();
        assert!(unknown.contains("unknown request"), "{unknown}");
    }
}
