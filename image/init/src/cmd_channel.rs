//! The test command channel (only with `postern.test=1`), the protocol of qemu/guest/init's
//! `org.postern.cmd` virtio-serial port so that qemu/postern_guest.py's `Guest.cmd` works
//! unchanged: the host writes `ID BASE64(shell command)\n`; the guest runs it with `sh -c`
//! (stdin /dev/null, bounded by a timeout) and answers
//! `R ID RC BASE64(stdout) BASE64(stderr)\n`, `-` for an empty output. Commands run
//! concurrently; each answer is one write.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

/// One request line: the id and the shell command. None for a line to ignore.
pub fn parse_request(line: &str) -> Option<(String, Result<String, String>)> {
    let mut words = line.split_whitespace();
    let id = words.next()?.to_string();
    let command = match words.next().map(|b64| BASE64.decode(b64)) {
        Some(Ok(bytes)) => String::from_utf8(bytes).map_err(|_| "command is not UTF-8".into()),
        Some(Err(e)) => Err(format!("bad base64: {e}")),
        None => Ok(String::new()),
    };
    Some((id, command))
}

pub fn format_reply(id: &str, code: i32, stdout: &[u8], stderr: &[u8]) -> String {
    let encode = |bytes: &[u8]| {
        if bytes.is_empty() {
            "-".to_string()
        } else {
            BASE64.encode(bytes)
        }
    };
    format!("R {id} {code} {} {}\n", encode(stdout), encode(stderr))
}

/// Runs one request and formats its answer.
pub fn answer(line: &str, limit: Duration) -> Option<String> {
    let (id, command) = parse_request(line)?;
    Some(match command {
        Ok(command) => match crate::children::run(&["sh", "-c", &command], limit) {
            Ok(out) => format_reply(&id, out.code, &out.stdout, &out.stderr),
            Err(error) => format_reply(&id, 127, b"", format!("{error:#}\n").as_bytes()),
        },
        Err(error) => format_reply(&id, 2, b"", format!("{error}\n").as_bytes()),
    })
}

/// The /dev node of the virtio-serial port named `name`.
pub fn port_device(sys_root: &Path, name: &str) -> Option<PathBuf> {
    fs::read_dir(sys_root.join("class/virtio-ports"))
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| fs::read_to_string(e.path().join("name")).is_ok_and(|n| n.trim() == name))
        .map(|e| Path::new("/dev").join(e.file_name()))
}

/// Serves the port forever. A read of 0 bytes means the host side is not connected yet.
pub fn serve(device: &Path, limit: Duration) {
    let port = match OpenOptions::new().read(true).write(true).open(device) {
        Ok(port) => port,
        Err(error) => {
            crate::console::say(&format!("test channel {}: {error}", device.display()));
            return;
        }
    };
    let writer = match port.try_clone() {
        Ok(w) => Arc::new(Mutex::new(w)),
        Err(error) => {
            crate::console::say(&format!("test channel {}: {error}", device.display()));
            return;
        }
    };
    let mut reader = BufReader::new(port);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            Ok(_) => {}
        }
        let request = line.clone();
        let writer = writer.clone();
        std::thread::spawn(move || {
            if let Some(reply) = answer(&request, limit) {
                let mut port = writer.lock().unwrap_or_else(|p| p.into_inner());
                let _ = port.write_all(reply.as_bytes());
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_reply_match_postern_guest_py() {
        let line = format!("c7 {}\n", BASE64.encode("echo hi; echo oops >&2; exit 4"));
        let reply = answer(&line, Duration::from_secs(20)).unwrap();
        // Guest.cmd: `_, _, rc, out, err = line.split(" ")`
        let parts: Vec<&str> = reply.trim_end().split(' ').collect();
        assert_eq!(parts.len(), 5);
        assert_eq!(parts[..3], ["R", "c7", "4"]);
        assert_eq!(BASE64.decode(parts[3]).unwrap(), b"hi\n");
        assert_eq!(BASE64.decode(parts[4]).unwrap(), b"oops\n");
    }

    #[test]
    fn empty_output_is_a_dash_and_timeout_is_124() {
        let line = format!("c1 {}", BASE64.encode("sleep 20"));
        assert_eq!(
            answer(&line, Duration::from_millis(200)).unwrap(),
            "R c1 124 - -\n"
        );
        assert_eq!(answer("   \n", Duration::from_secs(1)), None);
        let bad = answer("c2 !!!", Duration::from_secs(1)).unwrap();
        assert!(bad.starts_with("R c2 2 - "));
    }

    #[test]
    fn finds_the_port_by_name() {
        let root = tempfile::tempdir().unwrap();
        for (port, name) in [
            ("vport0p1", "org.postern.kmsg"),
            ("vport0p2", "org.postern.cmd"),
        ] {
            let dir = root.path().join("class/virtio-ports").join(port);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("name"), format!("{name}\n")).unwrap();
        }
        assert_eq!(
            port_device(root.path(), "org.postern.cmd"),
            Some(PathBuf::from("/dev/vport0p2"))
        );
    }
}
