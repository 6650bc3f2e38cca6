//! The benchmark message: a plain RFC 5322 message of an exact size.

use anyhow::{bail, Result};

/// Width of the hexadecimal counter in the Message-ID; fixed so every message has one size.
const ID_DIGITS: usize = 16;
/// RFC 5322 2.1.1: lines SHOULD be at most 78 characters; 76 leaves room like MIME encoders do.
const LINE: usize = 76;

const WORDS: &[&str] = &[
    "postern",
    "benchmark",
    "message",
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "mail",
    "durable",
    "queue",
    "storage",
    "segment",
    "fsync",
    "loopback",
    "client",
    "server",
    "relay",
];

/// Builds a message of exactly `size` bytes (headers, blank line, body; every line ends in CRLF,
/// no line starts with '.'). Returns it with the offset of the Message-ID counter.
pub fn build(size: usize, from: &str, to: &str) -> Result<(Vec<u8>, usize)> {
    let mut subject = String::from("smtp-load benchmark message");
    let head = |subject: &str| {
        format!(
            "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\
             Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n\
             Message-ID: <{}.smtp-load@client.test>\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
            "0".repeat(ID_DIGITS)
        )
    };
    let mut headers = head(&subject);
    if size < headers.len() {
        bail!(
            "--size must be at least {} bytes (the headers)",
            headers.len()
        );
    }
    // A body of one byte cannot end in CRLF; lengthen a header instead.
    if size - headers.len() == 1 {
        subject.push('!');
        headers = head(&subject);
    }
    let id_offset = headers
        .find("Message-ID: <")
        .map(|p| p + "Message-ID: <".len())
        .unwrap_or(0);
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(headers.as_bytes());
    let mut word = 0usize;
    while out.len() < size {
        let rem = size - out.len();
        // Pick a line length (without CRLF) that never leaves exactly 1 byte behind.
        let chars = if rem >= LINE + 2 + 2 || rem == LINE + 2 {
            LINE
        } else if rem == LINE + 3 {
            LINE - 1
        } else {
            rem - 2
        };
        let start = out.len();
        while out.len() - start < chars {
            let w = WORDS[word % WORDS.len()].as_bytes();
            word += 1;
            if out.len() > start {
                out.push(b' ');
            }
            let room = chars - (out.len() - start);
            out.extend_from_slice(&w[..w.len().min(room)]);
        }
        // A space may have been pushed as the last character; that is fine for plain text,
        // but it must not overflow the line.
        out.truncate(start + chars);
        out.extend_from_slice(b"\r\n");
    }
    Ok((out, id_offset))
}

/// Writes `id` as fixed-width hexadecimal into the Message-ID.
pub fn set_id(msg: &mut [u8], offset: usize, id: u64) {
    let hex = format!("{id:0width$x}", width = ID_DIGITS);
    if let Some(slot) = msg.get_mut(offset..offset + ID_DIGITS) {
        slot.copy_from_slice(&hex.as_bytes()[hex.len() - ID_DIGITS..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(msg: &[u8]) {
        assert!(msg.ends_with(b"\r\n"));
        let text = std::str::from_utf8(msg).unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1;
        for line in text.split("\r\n") {
            assert!(!line.starts_with('.'), "line starts with a dot: {line:?}");
            assert!(line.len() <= 78, "line too long: {line:?}");
            assert!(!line.contains('\n') && !line.contains('\r'));
        }
        for line in body.split_terminator("\r\n") {
            assert!(line.len() <= LINE);
        }
    }

    #[test]
    fn exact_sizes() {
        let base = build(0, "a@b.test", "c@d.test").unwrap_err().to_string();
        assert!(base.contains("at least"));
        for size in (300..1000).chain([10240, 65536, 100_003]) {
            let (m, _) = build(size, "a@b.test", "c@d.test").unwrap();
            assert_eq!(m.len(), size, "size {size}");
            check(&m);
        }
    }

    #[test]
    fn body_lines_are_76_chars() {
        let (m, _) = build(10240, "a@b.test", "c@d.test").unwrap();
        let text = String::from_utf8(m).unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1;
        let lines: Vec<&str> = body.split_terminator("\r\n").collect();
        assert!(lines.len() > 100);
        assert!(lines[..lines.len() - 2].iter().all(|l| l.len() == LINE));
    }

    #[test]
    fn message_id_is_patched_in_place() {
        let (mut m, off) = build(1000, "a@b.test", "c@d.test").unwrap();
        set_id(&mut m, off, 0xabc);
        let text = String::from_utf8(m.clone()).unwrap();
        assert!(text.contains("Message-ID: <0000000000000abc.smtp-load@client.test>\r\n"));
        assert_eq!(m.len(), 1000);
    }
}
