//! Strict message content reader for DATA (RFC 5321 4.1.1.4, 4.5.2) and BDAT (RFC 3030).
//!
//! smtp-proto's `DataReceiver` ends the data on any "\n.\n"-like sequence; that is the SMTP
//! smuggling hole (CVE-2023-51764/51765/51766). Here lines are delimited by CRLF and nothing
//! else (RFC 5321 2.3.8: "lines consist of zero or more data characters terminated by the
//! sequence ASCII character CR followed immediately by ASCII character LF"). A bare CR or bare
//! LF is ordinary content that poisons the message: the data still ends only at a real
//! CRLF "." CRLF, and the whole message is then rejected.

/// Why a message was refused after its content was fully read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataError {
    /// A CR not followed by LF, or an LF not preceded by CR (RFC 5321 2.3.8).
    BareLineEnding,
    /// A text line longer than the limit (RFC 5321 4.5.3.1.6).
    LineTooLong,
    /// More content than the message size limit (RFC 1870 section 6).
    TooBig,
    /// A NUL octet in the content: RFC 5322 2.3 and 3.5 allow none (no US-ASCII 0 in any
    /// part of a message), and RFC 6152 (8BITMIME) does not lift that.
    Nul,
}

/// Incremental content reader. Feed it bytes in any split; the result does not depend on
/// where the input was split.
#[derive(Debug, Clone)]
pub struct DataReader {
    /// DATA (dot-stuffed, ends at CRLF.CRLF) or BDAT (raw, length-counted by the caller).
    dot_mode: bool,
    max_size: usize,
    max_line: usize,
    body: Vec<u8>,
    /// Content octets seen so far (after unstuffing), counted even once no longer stored.
    size: usize,
    /// Raw octets in the current line, including a removed dot and the CRLF.
    line_len: usize,
    /// Octets of the current line emitted to the body.
    line_content: usize,
    at_line_start: bool,
    /// The current line began with a dot that was removed (RFC 5321 4.5.2).
    dot_line: bool,
    /// The previous byte was CR; whether it is part of a CRLF depends on the next byte.
    pending_cr: bool,
    bare: bool,
    line_too_long: bool,
    too_big: bool,
    nul: bool,
    done: bool,
}

impl DataReader {
    /// Reader for DATA content: dot-unstuffing and the CRLF.CRLF terminator.
    pub fn new_data(max_size: usize, max_line: usize) -> DataReader {
        DataReader::new(true, max_size, max_line)
    }

    /// Reader for BDAT content: no dot handling (RFC 3030 section 2: chunks are sent as is),
    /// the caller feeds exactly the announced chunk sizes and calls [`DataReader::finish`].
    pub fn new_bdat(max_size: usize, max_line: usize) -> DataReader {
        DataReader::new(false, max_size, max_line)
    }

    fn new(dot_mode: bool, max_size: usize, max_line: usize) -> DataReader {
        DataReader {
            dot_mode,
            max_size,
            max_line,
            body: Vec::new(),
            size: 0,
            line_len: 0,
            line_content: 0,
            at_line_start: true,
            dot_line: false,
            pending_cr: false,
            bare: false,
            line_too_long: false,
            too_big: false,
            nul: false,
            done: false,
        }
    }

    /// True once the DATA terminator was read.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Octets of content seen so far (unstuffed), including those not stored.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Octets currently stored (at most the size limit).
    pub fn stored_len(&self) -> usize {
        self.body.len()
    }

    /// True once more content than the size limit was fed.
    pub fn is_too_big(&self) -> bool {
        self.too_big
    }

    /// True once the message is certain to be refused.
    pub fn is_failed(&self) -> bool {
        self.bare || self.line_too_long || self.too_big || self.nul
    }

    fn failed_reason(&self) -> Option<DataError> {
        // Smuggling is reported first: it is the most important to log.
        if self.bare {
            Some(DataError::BareLineEnding)
        } else if self.line_too_long {
            Some(DataError::LineTooLong)
        } else if self.too_big {
            Some(DataError::TooBig)
        } else if self.nul {
            Some(DataError::Nul)
        } else {
            None
        }
    }

    fn fail_storage(&mut self) {
        // The message will be refused: free what was stored, keep only counting.
        self.body = Vec::new();
    }

    fn emit(&mut self, bytes: &[u8]) {
        if !self.nul && memchr::memchr(0, bytes).is_some() {
            self.nul = true;
            self.fail_storage();
        }
        self.size = self.size.saturating_add(bytes.len());
        if self.size > self.max_size && !self.too_big {
            self.too_big = true;
            self.fail_storage();
        }
        if !self.is_failed() {
            self.body.extend_from_slice(bytes);
        }
    }

    fn add_line_len(&mut self, n: usize) {
        self.line_len = self.line_len.saturating_add(n);
        if self.line_len > self.max_line && !self.line_too_long {
            self.line_too_long = true;
            self.fail_storage();
        }
    }

    fn mark_bare(&mut self) {
        if !self.bare {
            self.bare = true;
            self.fail_storage();
        }
    }

    fn content_byte(&mut self, b: u8) {
        if self.at_line_start {
            self.at_line_start = false;
            if self.dot_mode && b == b'.' {
                // RFC 5321 4.5.2: the first dot of a line is removed.
                self.dot_line = true;
                self.add_line_len(1);
                return;
            }
        }
        if b == b'\n' {
            // A LF not preceded by CR (a CR before it would have made a CRLF).
            self.mark_bare();
        }
        self.add_line_len(1);
        self.line_content += 1;
        self.emit(&[b]);
    }

    /// Consumes input. In DATA mode, stops right after the terminator and returns the number
    /// of bytes consumed (the rest belongs to the next command). In BDAT mode consumes all.
    pub fn feed(&mut self, input: &[u8]) -> usize {
        let mut i = 0;
        while i < input.len() && !self.done {
            if self.pending_cr {
                self.pending_cr = false;
                if input[i] == b'\n' {
                    i += 1;
                    self.end_line();
                    continue;
                }
                // The CR was bare: it is content, and the current byte is processed below.
                self.mark_bare();
                self.content_byte(b'\r');
            }
            if !self.at_line_start {
                // Fast path: copy everything up to the next CR or LF.
                let rest = &input[i..];
                let n = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
                if n > 0 {
                    self.add_line_len(n);
                    self.line_content += n;
                    self.emit(&rest[..n]);
                    i += n;
                    continue;
                }
            }
            let b = input[i];
            i += 1;
            if b == b'\r' {
                self.pending_cr = true;
            } else {
                self.content_byte(b);
            }
        }
        i
    }

    fn end_line(&mut self) {
        self.add_line_len(2);
        if self.dot_mode && self.dot_line && self.line_content == 0 {
            // RFC 5321 4.1.1.4: CRLF "." CRLF ends the mail data. The CRLF before the dot is
            // the previous line's real terminator (or the DATA command's), never a bare one.
            self.done = true;
            return;
        }
        self.emit(b"\r\n");
        self.line_len = 0;
        self.line_content = 0;
        self.at_line_start = true;
        self.dot_line = false;
    }

    /// Ends BDAT content (after the LAST chunk): a trailing lone CR is bare.
    pub fn finish(&mut self) {
        if self.pending_cr {
            self.pending_cr = false;
            self.mark_bare();
        }
        self.done = true;
    }

    /// The outcome once done: the body (exact bytes, CRLF lines, unstuffed) or the reason.
    pub fn into_result(self) -> Result<Vec<u8>, DataError> {
        match self.failed_reason() {
            Some(e) => Err(e),
            None => Ok(self.body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8]) -> (usize, bool, Result<Vec<u8>, DataError>) {
        let mut r = DataReader::new_data(1000, 100);
        let n = r.feed(input);
        let done = r.is_done();
        (n, done, r.into_result())
    }

    #[test]
    fn simple_and_unstuffing() {
        // RFC 5321 4.5.2 transparency.
        let (n, done, res) = read_all(b"a\r\n..b\r\n.c\r\n.\r\nQUIT\r\n");
        assert!(done);
        assert_eq!(n, 15);
        assert_eq!(res.unwrap(), b"a\r\n.b\r\nc\r\n");
    }

    #[test]
    fn empty_message() {
        let (n, done, res) = read_all(b".\r\n");
        assert!(done);
        assert_eq!(n, 3);
        assert_eq!(res.unwrap(), b"");
    }

    #[test]
    fn smuggling_forms_do_not_terminate() {
        // RFC 5321 2.3.8: only CRLF ends a line; none of these is an end of data.
        for form in [
            &b"a\n.\nMAIL FROM:<x>\r\n"[..],
            b"a\r.\rMAIL FROM:<x>\r\n",
            b"a\n.\r\nMAIL FROM:<x>\r\n",
            b"a\r\n.\nMAIL FROM:<x>\r\n",
            b"a\r\n.\r MAIL\r\n",
        ] {
            let mut r = DataReader::new_data(1000, 100);
            assert_eq!(r.feed(form), form.len(), "{form:?}");
            assert!(!r.is_done());
            assert_eq!(r.feed(b".\r\n"), 3);
            assert!(r.is_done());
            assert_eq!(r.into_result(), Err(DataError::BareLineEnding));
        }
    }

    #[test]
    fn line_and_size_limits() {
        let mut r = DataReader::new_data(1000, 10);
        r.feed(b"0123456789abc\r\n.\r\n");
        assert_eq!(r.into_result(), Err(DataError::LineTooLong));
        // Exactly the limit including CRLF is fine (RFC 5321 4.5.3.1.6 counts the CRLF).
        let mut r = DataReader::new_data(1000, 10);
        r.feed(b"01234567\r\n.\r\n");
        assert!(r.into_result().is_ok());
        let mut r = DataReader::new_data(5, 100);
        r.feed(b"abcdef\r\n.\r\n");
        assert!(r.is_done());
        assert_eq!(r.into_result(), Err(DataError::TooBig));
    }

    #[test]
    fn bdat_mode_raw_and_split_crlf() {
        let mut r = DataReader::new_bdat(1000, 100);
        r.feed(b"a\r");
        r.feed(b"\n.\r\nb\r\n");
        r.finish();
        assert_eq!(r.into_result().unwrap(), b"a\r\n.\r\nb\r\n");
        let mut r = DataReader::new_bdat(1000, 100);
        r.feed(b"a\r");
        r.finish();
        assert_eq!(r.into_result(), Err(DataError::BareLineEnding));
    }
}
