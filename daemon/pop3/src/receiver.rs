//! Command line framing with a length limit.
//!
//! RFC 1939 3: commands end with CRLF. A line also ends at a bare LF (many clients and
//! test tools send LF alone; POP3 carries no message data from the client, so there is no
//! smuggling risk in accepting it), and the CR before that LF is part of the terminator.
//! A CR anywhere else, or a NUL, makes the line invalid ([`LineError::BadCharacter`]).
//! A line longer than the limit (terminator included; RFC 2449 4) is dropped as it arrives
//! instead of being buffered, and reported once its end is seen ([`LineError::TooLong`]).
//! The result does not depend on how the input is split into chunks.

/// Why a line could not be returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("line too long")]
    TooLong,
    #[error("CR or NUL inside a line")]
    BadCharacter,
}

/// Buffers received bytes and returns complete lines.
#[derive(Debug, Default)]
pub struct LineReceiver {
    buf: Vec<u8>,
    pos: usize,
    /// Dropping the rest of an over-long line up to its LF.
    discarding: bool,
    /// The end of an over-long line was seen; reported by the next `next_line`.
    overlong_ended: bool,
}

impl LineReceiver {
    pub fn new() -> LineReceiver {
        LineReceiver::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.discarding {
            // Only what follows the end of the over-long line needs keeping.
            if let Some(i) = memchr::memchr(b'\n', bytes) {
                self.discarding = false;
                self.overlong_ended = true;
                self.buf.extend_from_slice(&bytes[i + 1..]);
            }
            return;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line without its terminator, `None` when more input is needed.
    /// `limit` is the longest acceptable line in octets, terminator included.
    pub fn next_line(&mut self, limit: usize) -> Option<Result<Vec<u8>, LineError>> {
        if self.overlong_ended {
            self.overlong_ended = false;
            return Some(Err(LineError::TooLong));
        }
        let avail = &self.buf[self.pos..];
        let Some(i) = memchr::memchr(b'\n', avail) else {
            // Even with a one-octet terminator this line would exceed the limit.
            if !self.discarding && avail.len() >= limit {
                self.discarding = true;
                self.buf.clear();
                self.pos = 0;
            }
            return None;
        };
        let line = &avail[..i];
        self.pos += i + 1;
        if i + 1 > limit {
            return Some(Err(LineError::TooLong));
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().any(|&b| b == b'\r' || b == 0) {
            return Some(Err(LineError::BadCharacter));
        }
        Some(Ok(line.to_vec()))
    }

    /// Drops everything buffered (RFC 2595 4 / CVE-2011-0411: nothing sent before the TLS
    /// handshake is interpreted after it). Returns how many octets were dropped.
    pub fn clear(&mut self) -> usize {
        let dropped = self.buf.len() - self.pos;
        self.buf.clear();
        self.pos = 0;
        self.discarding = false;
        self.overlong_ended = false;
        dropped
    }

    /// Unprocessed octets held.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], chunk: usize, limit: usize) -> Vec<Result<Vec<u8>, LineError>> {
        let mut r = LineReceiver::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            r.push(piece);
            while let Some(l) = r.next_line(limit) {
                out.push(l);
            }
            assert!(r.buffered() <= limit + chunk);
        }
        out
    }

    #[test]
    fn crlf_and_bare_lf_end_lines() {
        let out = lines(b"STAT\r\nNOOP\nLIST 1\r\npartial", 64, 20);
        assert_eq!(
            out,
            vec![
                Ok(b"STAT".to_vec()),
                Ok(b"NOOP".to_vec()),
                Ok(b"LIST 1".to_vec())
            ]
        );
    }

    #[test]
    fn bare_cr_and_nul_are_refused_and_framing_continues() {
        let out = lines(b"ST\rAT\r\nNO\0OP\r\nQUIT\r\n", 64, 20);
        assert_eq!(
            out,
            vec![
                Err(LineError::BadCharacter),
                Err(LineError::BadCharacter),
                Ok(b"QUIT".to_vec())
            ]
        );
    }

    #[test]
    fn limit_counts_the_terminator() {
        // 8 octets of text + CRLF = 10 = limit: accepted; one more octet: refused.
        assert_eq!(
            lines(b"12345678\r\n", 64, 10),
            vec![Ok(b"12345678".to_vec())]
        );
        assert_eq!(
            lines(b"123456789\r\n", 64, 10),
            vec![Err(LineError::TooLong)]
        );
        assert_eq!(
            lines(b"123456789\n", 64, 10),
            vec![Ok(b"123456789".to_vec())]
        );
    }

    #[test]
    fn overlong_line_is_dropped_as_it_arrives_whatever_the_split() {
        let mut input = vec![b'A'; 10_000];
        input.extend_from_slice(b"\r\nNOOP\r\n");
        for chunk in [1, 3, 7, 100, 4096, usize::MAX] {
            let out = lines(&input, chunk.min(input.len()), 64);
            assert_eq!(
                out,
                vec![Err(LineError::TooLong), Ok(b"NOOP".to_vec())],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn several_pushes_between_reads() {
        let mut r = LineReceiver::new();
        r.push(&[b'x'; 30]);
        assert_eq!(r.next_line(10), None);
        r.push(b"xx\r\nNO");
        r.push(b"OP\r\nxxxxxxxxxxxxxxxxxxxxxx");
        r.push(b"\nSTAT\r\n");
        assert_eq!(r.next_line(10), Some(Err(LineError::TooLong)));
        assert_eq!(r.next_line(10), Some(Ok(b"NOOP".to_vec())));
        assert_eq!(r.next_line(10), Some(Err(LineError::TooLong)));
        assert_eq!(r.next_line(10), Some(Ok(b"STAT".to_vec())));
        assert_eq!(r.next_line(10), None);
    }

    #[test]
    fn clear_drops_pipelined_input() {
        let mut r = LineReceiver::new();
        r.push(b"STLS\r\nUSER x\r\n");
        assert_eq!(r.next_line(64), Some(Ok(b"STLS".to_vec())));
        assert_eq!(r.clear(), 8);
        assert_eq!(r.next_line(64), None);
    }
}
