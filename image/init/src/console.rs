//! What the init says: one line each, prefixed `postern-init:`, on the console (PID 1's
//! stdout is /dev/console) and, once /persist is mounted, in the log ring too. Supervised
//! services' lines go the same way with their own prefix.

use std::io::Write;
use std::sync::Mutex;

use crate::log_ring::LogRing;

static RING: Mutex<Option<LogRing>> = Mutex::new(None);

pub fn attach_ring(ring: LogRing) {
    *RING.lock().unwrap_or_else(|p| p.into_inner()) = Some(ring);
}

/// Flushes the ring and stops writing it (before /persist is unmounted).
pub fn detach_ring() {
    if let Some(ring) = RING.lock().unwrap_or_else(|p| p.into_inner()).take() {
        ring.sync();
    }
}

pub fn sync_ring() {
    if let Some(ring) = RING.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        ring.sync();
    }
}

/// A line from a source (`postern-init`, `posternd`, `hwmond`).
pub fn line(source: &str, text: &str) {
    let line = format!("{source}: {text}");
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
    drop(stdout);
    if let Some(ring) = RING.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        let stamped = format!("{:.3} {line}", crate::boot_record::uptime());
        // A full or failing /persist must not stop the init: the console still has it.
        let _ = ring.write_line(&stamped);
    }
}

pub fn say(text: &str) {
    line("postern-init", text);
}
