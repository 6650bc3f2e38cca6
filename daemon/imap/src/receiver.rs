//! Streaming command framing (RFC 9051 2.2, 4.3, 7.5 continuation requests): CRLF lines,
//! synchronising literals `{n}` (the server must send "+" before the client sends the data),
//! non-synchronising literals `{n+}` (LITERAL+ and LITERAL-, RFC 7888), binary literals
//! `~{n}` (RFC 3516 4.1), with limits, and resynchronisation after errors.

use crate::command::{parse_command, Command, ParseOptions};
use crate::parser::{is_tag_char, literal_at_end, LiteralAnnouncement};

/// Limits of the receiver. Defaults follow RFC 7162 4 (lines of at least 8192 octets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line (without CRLF), literal data excluded.
    pub max_line: usize,
    /// Largest literal of APPEND (the message size limit; RFC 7889 APPENDLIMIT).
    pub max_append_literal: u64,
    /// Largest literal of any other command (LOGIN passwords, search strings, names).
    pub max_literal: u64,
    /// Largest command in total, lines and literals (bounds MULTIAPPEND).
    pub max_command: usize,
    /// With LITERAL- (RFC 7888 4) instead of LITERAL+, non-synchronising literals are limited
    /// to 4096 octets; set this when the server announces LITERAL-.
    pub literal_minus: bool,
    /// Nesting bound of the parser (parenthesised lists, NOT/OR chains).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line: 65_536,
            max_append_literal: 52_428_800,
            max_literal: 65_536,
            max_command: 64 * 1024 * 1024,
            literal_minus: false,
            max_depth: 32,
        }
    }
}

/// One result of [`CommandReceiver::next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A complete command.
    Command(Command),
    /// The client announced a synchronising literal: send a continuation request (`+ Ready`,
    /// [`crate::response::continuation`]) and keep reading (RFC 9051 7.5).
    NeedContinuation { tag: Option<String>, size: u64 },
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveErrorKind {
    /// A line exceeded [`Limits::max_line`]; the rest of the line was skipped.
    #[error("line too long")]
    LineTooLong,
    /// A literal exceeded its limit. If it was synchronising, the client sends nothing more
    /// for this command; a non-synchronising one is skipped without being buffered. For
    /// APPEND answer `NO [TOOBIG]` (RFC 9051 7.1), otherwise `BAD`.
    #[error("literal too large")]
    LiteralTooLarge {
        size: u64,
        limit: u64,
        synchronizing: bool,
        append: bool,
    },
    /// The command with its literals exceeded [`Limits::max_command`].
    #[error("command too large")]
    CommandTooLarge,
    /// The command does not follow the grammar.
    #[error("{0}")]
    Syntax(String),
}

/// An error about one command: answer `tag BAD <kind>` (or `* BAD` without a tag, RFC 9051
/// 7.1.3); the receiver has already resynchronised at the next command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ReceiveError {
    pub tag: Option<String>,
    pub kind: ReceiveErrorKind,
}

impl ReceiveError {
    /// The tagged (or untagged) response line for this error, CRLF included.
    pub fn response(&self) -> Vec<u8> {
        let (status, code, text) = match &self.kind {
            ReceiveErrorKind::LiteralTooLarge { append: true, .. } => {
                ("NO", Some("TOOBIG"), "Message too large".to_string())
            }
            ReceiveErrorKind::LiteralTooLarge { .. } => {
                ("BAD", Some("TOOBIG"), "Literal too large".to_string())
            }
            ReceiveErrorKind::LineTooLong => ("BAD", Some("TOOBIG"), "Line too long".into()),
            ReceiveErrorKind::CommandTooLarge => {
                ("BAD", Some("TOOBIG"), "Command too large".into())
            }
            ReceiveErrorKind::Syntax(m) => ("BAD", Some("CLIENTBUG"), format!("Syntax: {m}")),
        };
        let tag = self.tag.as_deref().unwrap_or("*");
        let mut out = Vec::new();
        out.extend_from_slice(tag.as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.as_bytes());
        if let Some(code) = code {
            out.extend_from_slice(b" [");
            out.extend_from_slice(code.as_bytes());
            out.push(b']');
        }
        out.push(b' ');
        crate::response::push_text(&mut out, &text);
        out.extend_from_slice(b"\r\n");
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Reading a line of the current command.
    Line,
    /// Copying literal data into the command.
    Literal { remaining: u64 },
    /// Skipping the rest of an overlong line; `tail` keeps its last bytes to recognise a
    /// literal announcement at its end.
    DiscardLine { tail: Vec<u8> },
    /// Skipping literal data of a command that was already answered.
    DiscardLiteral { remaining: u64 },
}

/// Assembles commands from received bytes; see the module documentation.
#[derive(Debug)]
pub struct CommandReceiver {
    limits: Limits,
    input: Vec<u8>,
    /// Start of unconsumed input.
    pos: usize,
    /// The command assembled so far (lines with CRLF, literal data).
    command: Vec<u8>,
    state: State,
    /// The current command was already answered with an error: skip the rest of it.
    discarding: bool,
}

const TAIL: usize = 32;

impl CommandReceiver {
    pub fn new(limits: Limits) -> CommandReceiver {
        CommandReceiver {
            limits,
            input: Vec::new(),
            pos: 0,
            command: Vec::new(),
            state: State::Line,
            discarding: false,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Changes the limits (e.g. LITERAL- after the capability changes); takes effect for the
    /// next literal or line.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos == self.input.len() {
            self.input.clear();
            self.pos = 0;
        } else if self.pos > 65_536 && self.pos * 2 > self.input.len() {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// Frees the input buffer once everything in it is consumed, if it grew beyond a short
    /// command's size: a server calls this before waiting, so a session idle after a large
    /// command does not keep that command's buffer.
    pub fn release_consumed(&mut self) {
        if self.pos == self.input.len() && self.input.capacity() > 4096 {
            self.input = Vec::new();
            self.pos = 0;
        }
    }

    /// Bytes received but not yet consumed. After STARTTLS the server must discard them
    /// (RFC 9051 6.2.1, plaintext injection); after COMPRESS they are compressed data
    /// (RFC 4978 3).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        let rest = self.input.split_off(self.pos.min(self.input.len()));
        self.input.clear();
        self.pos = 0;
        rest
    }

    /// Whether unconsumed bytes or a partial command are held.
    pub fn has_pending(&self) -> bool {
        self.pos < self.input.len() || !self.command.is_empty() || self.state != State::Line
    }

    /// Whether a command is partly received (for timeouts: RFC 9051 5.4 autologout).
    pub fn in_command(&self) -> bool {
        !self.command.is_empty() || self.state != State::Line
    }

    /// Raw line mode: the next CRLF-terminated line without its CRLF (a bare LF is accepted),
    /// for AUTHENTICATE responses (RFC 9051 6.2.2) and IDLE's "DONE" (6.3.13). Only call it
    /// between commands. An overlong line yields `LineTooLong` once it ends.
    pub fn next_line(&mut self) -> Option<Result<Vec<u8>, ReceiveError>> {
        loop {
            match &mut self.state {
                State::DiscardLine { .. } => {
                    let avail = &self.input[self.pos..];
                    match memchr::memchr(b'\n', avail) {
                        Some(i) => {
                            self.pos += i + 1;
                            self.state = State::Line;
                            return Some(Err(ReceiveError {
                                tag: None,
                                kind: ReceiveErrorKind::LineTooLong,
                            }));
                        }
                        None => {
                            self.pos = self.input.len();
                            return None;
                        }
                    }
                }
                State::Line if self.command.is_empty() => {
                    let avail = &self.input[self.pos..];
                    match memchr::memchr(b'\n', avail) {
                        Some(i) => {
                            let mut line = &avail[..i];
                            if let Some(l) = line.strip_suffix(b"\r") {
                                line = l;
                            }
                            if line.len() > self.limits.max_line {
                                self.pos += i + 1;
                                return Some(Err(ReceiveError {
                                    tag: None,
                                    kind: ReceiveErrorKind::LineTooLong,
                                }));
                            }
                            let line = line.to_vec();
                            self.pos += i + 1;
                            return Some(Ok(line));
                        }
                        None => {
                            if avail.len() > self.limits.max_line + 1 {
                                self.pos = self.input.len();
                                self.state = State::DiscardLine { tail: Vec::new() };
                                continue;
                            }
                            return None;
                        }
                    }
                }
                // Misuse in the middle of a command: finish the command first.
                _ => return None,
            }
        }
    }

    /// The next command, continuation request or error; `None` when more input is needed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<Received, ReceiveError>> {
        loop {
            match &mut self.state {
                State::Literal { remaining } => {
                    let avail = self.input.len() - self.pos;
                    if avail == 0 {
                        return None;
                    }
                    let take = usize::try_from(*remaining).unwrap_or(usize::MAX).min(avail);
                    self.command
                        .extend_from_slice(&self.input[self.pos..self.pos + take]);
                    self.pos += take;
                    *remaining -= take as u64;
                    if *remaining > 0 {
                        return None;
                    }
                    self.state = State::Line;
                }
                State::DiscardLiteral { remaining } => {
                    let avail = (self.input.len() - self.pos) as u64;
                    if avail == 0 {
                        return None;
                    }
                    let take = (*remaining).min(avail);
                    self.pos += take as usize;
                    *remaining -= take;
                    if *remaining > 0 {
                        return None;
                    }
                    self.state = State::Line;
                }
                State::DiscardLine { tail } => {
                    let avail = &self.input[self.pos..];
                    match memchr::memchr(b'\n', avail) {
                        None => {
                            keep_tail(tail, avail);
                            self.pos = self.input.len();
                            return None;
                        }
                        Some(i) => {
                            keep_tail(tail, &avail[..i]);
                            let mut t = std::mem::take(tail);
                            if t.last() == Some(&b'\r') {
                                t.pop();
                            }
                            self.pos += i + 1;
                            self.state = State::Line;
                            self.after_discarded_line(literal_at_end(&t));
                        }
                    }
                }
                State::Line => {
                    let avail = &self.input[self.pos..];
                    let Some(i) = memchr::memchr(b'\n', avail) else {
                        if avail.len() > self.limits.max_line + 1 {
                            let silent = self.discarding;
                            let e = self.line_too_long(None);
                            if silent {
                                continue;
                            }
                            return Some(Err(e));
                        }
                        return None;
                    };
                    let mut line = &avail[..i];
                    if let Some(l) = line.strip_suffix(b"\r") {
                        line = l;
                    }
                    if line.len() > self.limits.max_line {
                        // Within a command already answered, skip without a second answer.
                        let silent = self.discarding;
                        let e = self.line_too_long(Some(i));
                        if silent {
                            continue;
                        }
                        return Some(Err(e));
                    }
                    let announcement = literal_at_end(line);
                    let line_len = line.len();
                    if self.discarding {
                        self.pos += i + 1;
                        self.after_discarded_line(announcement);
                        continue;
                    }
                    if self.command.len() + line_len + 2 > self.limits.max_command {
                        self.pos += i + 1;
                        let tag = self.current_tag();
                        self.command.clear();
                        self.after_discarded_line(announcement);
                        return Some(Err(ReceiveError {
                            tag,
                            kind: ReceiveErrorKind::CommandTooLarge,
                        }));
                    }
                    self.command
                        .extend_from_slice(&self.input[self.pos..self.pos + line_len]);
                    self.command.extend_from_slice(b"\r\n");
                    self.pos += i + 1;
                    match announcement {
                        None => return Some(self.finish()),
                        Some(a) => {
                            if let Some(r) = self.start_literal(a) {
                                return Some(r);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Answers an overlong line: `line_end` is the offset of its LF from `pos` when it is
    /// complete; otherwise the rest is skipped as it arrives.
    fn line_too_long(&mut self, line_end: Option<usize>) -> ReceiveError {
        // The tag is looked for in the first max_line + 1 bytes only, so that the answer does
        // not depend on how much of the line has arrived (found by the command_receiver fuzz
        // target: a tag longer than the line limit).
        let tag = if self.command.is_empty() {
            let end = self.input.len().min(
                self.pos
                    .saturating_add(self.limits.max_line)
                    .saturating_add(1),
            );
            tag_of(&self.input[self.pos..end])
        } else {
            self.current_tag()
        };
        self.command.clear();
        match line_end {
            Some(i) => {
                let mut line = &self.input[self.pos..self.pos + i];
                if let Some(l) = line.strip_suffix(b"\r") {
                    line = l;
                }
                let a = literal_at_end(line);
                self.pos += i + 1;
                self.after_discarded_line(a);
            }
            None => {
                let mut tail = Vec::new();
                keep_tail(&mut tail, &self.input[self.pos..]);
                self.pos = self.input.len();
                self.state = State::DiscardLine { tail };
            }
        }
        ReceiveError {
            tag,
            kind: ReceiveErrorKind::LineTooLong,
        }
    }

    /// After a skipped line: a non-synchronising literal is skipped too and the command goes
    /// on; otherwise (end of command, or a synchronising literal the client will not send
    /// without our "+") the skipped command is over.
    fn after_discarded_line(&mut self, announcement: Option<LiteralAnnouncement>) {
        match announcement {
            Some(a) if !a.synchronizing => {
                self.discarding = true;
                self.state = State::DiscardLiteral { remaining: a.size };
            }
            _ => {
                self.discarding = false;
                self.state = State::Line;
            }
        }
    }

    fn start_literal(&mut self, a: LiteralAnnouncement) -> Option<Result<Received, ReceiveError>> {
        let append = self.is_append();
        let mut limit = if append {
            self.limits.max_append_literal
        } else {
            self.limits.max_literal
        };
        // RFC 7888 4: LITERAL- allows non-synchronising literals of at most 4096 octets.
        if self.limits.literal_minus && !a.synchronizing {
            limit = limit.min(4096);
        }
        let tag = self.current_tag();
        if a.size > limit {
            self.command.clear();
            self.after_discarded_line(Some(a));
            return Some(Err(ReceiveError {
                tag,
                kind: ReceiveErrorKind::LiteralTooLarge {
                    size: a.size,
                    limit,
                    synchronizing: a.synchronizing,
                    append,
                },
            }));
        }
        if self.command.len() as u64 + a.size > self.limits.max_command as u64 {
            self.command.clear();
            self.after_discarded_line(Some(a));
            return Some(Err(ReceiveError {
                tag,
                kind: ReceiveErrorKind::CommandTooLarge,
            }));
        }
        self.command
            .reserve(usize::try_from(a.size).unwrap_or(0).min(1 << 20));
        self.state = if a.size == 0 {
            State::Line
        } else {
            State::Literal { remaining: a.size }
        };
        if a.synchronizing {
            Some(Ok(Received::NeedContinuation { tag, size: a.size }))
        } else {
            None
        }
    }

    fn finish(&mut self) -> Result<Received, ReceiveError> {
        let buf = std::mem::take(&mut self.command);
        let opts = ParseOptions {
            max_depth: self.limits.max_depth,
        };
        match parse_command(&buf, opts) {
            Ok(c) => Ok(Received::Command(c)),
            Err((tag, e)) => Err(ReceiveError {
                tag,
                kind: ReceiveErrorKind::Syntax(e.message),
            }),
        }
    }

    fn current_tag(&self) -> Option<String> {
        tag_of(&self.command)
    }

    /// Whether the command being assembled is APPEND (its literals are messages).
    fn is_append(&self) -> bool {
        let mut words = self.command.split(|&c| c == b' ');
        let _tag = words.next();
        words
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case(b"APPEND"))
    }
}

fn keep_tail(tail: &mut Vec<u8>, more: &[u8]) {
    tail.extend_from_slice(&more[more.len().saturating_sub(TAIL)..]);
    if tail.len() > TAIL {
        tail.drain(..tail.len() - TAIL);
    }
}

/// The tag at the start of a command, if it is a valid tag followed by a space.
fn tag_of(buf: &[u8]) -> Option<String> {
    let n = buf.iter().take_while(|&&c| is_tag_char(c)).count();
    if n == 0 || buf.get(n) != Some(&b' ') {
        return None;
    }
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::CommandBody;

    fn limits() -> Limits {
        Limits {
            max_line: 100,
            max_append_literal: 1000,
            max_literal: 50,
            max_command: 5000,
            literal_minus: false,
            max_depth: 8,
        }
    }

    /// Feeds `input` in chunks of `chunk` bytes and collects everything the receiver yields.
    fn run(input: &[u8], chunk: usize, l: Limits) -> Vec<Result<Received, ReceiveError>> {
        let mut r = CommandReceiver::new(l);
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            r.push(c);
            while let Some(x) = r.next() {
                out.push(x);
            }
        }
        out
    }

    fn cmd(x: &Result<Received, ReceiveError>) -> &CommandBody {
        match x {
            Ok(Received::Command(c)) => &c.body,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pipelined_commands_any_split() {
        let input = b"a1 NOOP\r\nb2 LOGIN {5}\r\nalice {3+}\r\npwd\r\nc3 CAPABILITY\nd4 APPEND x ~{3}\r\na\0b\r\n";
        let whole = run(input, input.len(), limits());
        for chunk in 1..input.len() {
            assert_eq!(run(input, chunk, limits()), whole, "chunk {chunk}");
        }
        assert_eq!(whole.len(), 6);
        assert_eq!(cmd(&whole[0]), &CommandBody::Noop);
        assert_eq!(
            whole[1],
            Ok(Received::NeedContinuation {
                tag: Some("b2".into()),
                size: 5
            })
        );
        assert_eq!(
            cmd(&whole[2]),
            &CommandBody::Login {
                username: b"alice".to_vec(),
                password: b"pwd".to_vec()
            }
        );
        assert_eq!(cmd(&whole[3]), &CommandBody::Capability);
        assert!(matches!(
            whole[4],
            Ok(Received::NeedContinuation { size: 3, .. })
        ));
        assert!(
            matches!(cmd(&whole[5]), CommandBody::Append { messages, .. } if messages[0].data == b"a\0b")
        );
    }

    #[test]
    fn literal_containing_crlf_and_braces() {
        let input = b"a LOGIN {8+}\r\n{1}\r\nx\r\n \"p\"\r\nb NOOP\r\n";
        let out = run(input, 1, limits());
        assert_eq!(out.len(), 2);
        assert_eq!(
            cmd(&out[0]),
            &CommandBody::Login {
                username: b"{1}\r\nx\r\n".to_vec(),
                password: b"p".to_vec()
            }
        );
        assert_eq!(cmd(&out[1]), &CommandBody::Noop);
    }

    #[test]
    fn consumed_input_is_released_but_pending_input_is_kept() {
        let mut r = CommandReceiver::new(Limits {
            max_append_literal: 100_000,
            max_command: 200_000,
            ..limits()
        });
        let mut big = b"a1 APPEND x {20000+}\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'x', 20_000));
        big.extend_from_slice(b"\r\nb2 NO");
        r.push(&big);
        assert!(matches!(r.next(), Some(Ok(Received::Command(_)))));
        assert!(r.next().is_none());
        // "b2 NO" is not consumed yet: nothing is freed.
        r.release_consumed();
        r.push(b"OP\r\n");
        let Some(Ok(Received::Command(c))) = r.next() else {
            panic!("b2 NOOP lost");
        };
        assert_eq!(c.body, CommandBody::Noop);
        // Everything consumed: the 20 KB buffer goes.
        r.release_consumed();
        assert_eq!(r.input.capacity(), 0);
        r.push(b"c3 NOOP\r\n");
        assert!(matches!(r.next(), Some(Ok(Received::Command(_)))));
    }

    #[test]
    fn syntax_error_keeps_tag_and_resyncs() {
        let out = run(b"a1 FOO bar\r\n+x NOOP\r\na2 NOOP\r\n", 3, limits());
        assert_eq!(out.len(), 3);
        let Err(e) = &out[0] else { panic!() };
        assert_eq!(e.tag.as_deref(), Some("a1"));
        assert!(e.response().starts_with(b"a1 BAD "));
        let Err(e) = &out[1] else { panic!() };
        assert_eq!(e.tag, None);
        assert!(e.response().starts_with(b"* BAD "));
        assert_eq!(cmd(&out[2]), &CommandBody::Noop);
    }

    #[test]
    fn overlong_line() {
        let mut input = b"a1 SEARCH ".to_vec();
        input.extend(std::iter::repeat_n(b'X', 500));
        input.extend_from_slice(b"\r\na2 NOOP\r\n");
        for chunk in [1, 7, 64, 1000] {
            let out = run(&input, chunk, limits());
            assert_eq!(out.len(), 2, "chunk {chunk}: {out:?}");
            let Err(e) = &out[0] else { panic!() };
            assert_eq!(e.kind, ReceiveErrorKind::LineTooLong);
            assert_eq!(e.tag.as_deref(), Some("a1"));
            assert_eq!(cmd(&out[1]), &CommandBody::Noop);
        }
    }

    #[test]
    fn overlong_tag_answer_does_not_depend_on_split() {
        // Fuzz finding: a tag longer than the line limit was echoed when the whole line had
        // arrived and not when it came in pieces.
        let mut input = vec![b'o'; 240];
        input.extend_from_slice(b" NOOP\r\na2 NOOP\r\n");
        let whole = run(&input, input.len(), limits());
        assert_eq!(whole, run(&input, 1, limits()));
        let Err(e) = &whole[0] else { panic!() };
        assert_eq!(e.tag, None);
        assert_eq!(cmd(&whole[1]), &CommandBody::Noop);
    }

    #[test]
    fn overlong_line_ending_in_nonsync_literal_skips_literal() {
        let mut input = b"a1 LOGIN ".to_vec();
        input.extend(std::iter::repeat_n(b'X', 200));
        input.extend_from_slice(b" {5+}\r\nNOOP!\r\na2 NOOP\r\n");
        for chunk in [1, 5, 1000] {
            let out = run(&input, chunk, limits());
            assert_eq!(out.len(), 2, "chunk {chunk}: {out:?}");
            assert!(out[0].is_err());
            assert_eq!(cmd(&out[1]), &CommandBody::Noop);
        }
    }

    #[test]
    fn huge_literals() {
        // Synchronising: refused, the client sends nothing more for it.
        let out = run(b"a1 LOGIN {999999999999}\r\na2 NOOP\r\n", 4, limits());
        let Err(e) = &out[0] else { panic!() };
        assert!(matches!(
            e.kind,
            ReceiveErrorKind::LiteralTooLarge {
                synchronizing: true,
                append: false,
                ..
            }
        ));
        assert_eq!(cmd(&out[1]), &CommandBody::Noop);
        // APPEND gets its own limit and NO [TOOBIG].
        let out = run(b"a1 APPEND x {2000}\r\na2 NOOP\r\n", 4, limits());
        let Err(e) = &out[0] else { panic!() };
        assert!(e.response().starts_with(b"a1 NO [TOOBIG]"));
        assert_eq!(cmd(&out[1]), &CommandBody::Noop);
        let out = run(b"a1 APPEND x {500}\r\n", 4, limits());
        assert!(matches!(
            out[0],
            Ok(Received::NeedContinuation { size: 500, .. })
        ));
        // Non-synchronising: skipped unbuffered, including the rest of the command.
        let mut input = b"a1 LOGIN {60+}\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'Z', 60));
        input.extend_from_slice(b" {3+}\r\nabc\r\na2 NOOP\r\n");
        for chunk in [1, 9, 500] {
            let out = run(&input, chunk, limits());
            assert_eq!(out.len(), 2, "{out:?}");
            assert!(out[0].is_err());
            assert_eq!(cmd(&out[1]), &CommandBody::Noop);
        }
        // An absurd announcement does not allocate.
        let out = run(b"a1 APPEND x {9223372036854775807+}\r\n", 100, limits());
        assert!(out[0].is_err());
    }

    #[test]
    fn literal_minus() {
        let l = Limits {
            literal_minus: true,
            max_append_literal: 100_000,
            max_command: 200_000,
            ..limits()
        };
        let out = run(b"a1 APPEND x {5000+}\r\n", 100, l);
        assert!(matches!(
            &out[0],
            Err(ReceiveError {
                kind: ReceiveErrorKind::LiteralTooLarge { limit: 4096, .. },
                ..
            })
        ));
        let out = run(b"a1 APPEND x {5000}\r\n", 100, l);
        assert!(matches!(out[0], Ok(Received::NeedContinuation { .. })));
    }

    #[test]
    fn command_too_large() {
        let l = Limits {
            max_command: 300,
            max_literal: 200,
            ..limits()
        };
        let mut input = Vec::new();
        input.extend_from_slice(b"a1 LOGIN {150+}\r\n");
        input.extend(std::iter::repeat_n(b'a', 150));
        input.extend_from_slice(b" {150+}\r\n");
        input.extend(std::iter::repeat_n(b'b', 150));
        input.extend_from_slice(b"\r\na2 NOOP\r\n");
        let out = run(&input, 13, l);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(matches!(
            &out[0],
            Err(ReceiveError {
                kind: ReceiveErrorKind::CommandTooLarge,
                ..
            })
        ));
        assert_eq!(cmd(&out[1]), &CommandBody::Noop);
    }

    #[test]
    fn nesting_bound() {
        let deep = format!("a1 SEARCH {}ALL{}\r\n", "(".repeat(20), ")".repeat(20));
        let out = run(deep.as_bytes(), 1000, limits());
        assert!(matches!(&out[0], Err(e) if matches!(e.kind, ReceiveErrorKind::Syntax(_))));
    }

    #[test]
    fn raw_lines() {
        let mut r = CommandReceiver::new(limits());
        r.push(b"a1 AUTHENTICATE PLAIN\r\nAGFsaWNlAHB3ZA==\r");
        let Some(Ok(Received::Command(c))) = r.next() else {
            panic!()
        };
        assert_eq!(c.tag, "a1");
        assert_eq!(r.next_line(), None);
        r.push(b"\nDONE\na2 NOOP\r\n");
        assert_eq!(r.next_line(), Some(Ok(b"AGFsaWNlAHB3ZA==".to_vec())));
        assert_eq!(r.next_line(), Some(Ok(b"DONE".to_vec())));
        assert!(matches!(r.next(), Some(Ok(Received::Command(_)))));
        assert!(!r.has_pending());
        let mut long = vec![b'x'; 300];
        long.extend_from_slice(b"\r\nDONE\r\n");
        for c in long.chunks(7) {
            r.push(c);
        }
        assert!(matches!(r.next_line(), Some(Err(_))));
        assert_eq!(r.next_line(), Some(Ok(b"DONE".to_vec())));
    }

    #[test]
    fn take_buffered_after_starttls() {
        let mut r = CommandReceiver::new(limits());
        r.push(b"a STARTTLS\r\nb NOOP\r\n");
        assert!(matches!(r.next(), Some(Ok(Received::Command(_)))));
        assert_eq!(r.take_buffered(), b"b NOOP\r\n");
        assert_eq!(r.next(), None);
    }

    #[test]
    fn memory_stays_bounded_for_unterminated_input() {
        let mut r = CommandReceiver::new(limits());
        let mut errors = 0;
        for _ in 0..10_000 {
            r.push(&[b'x'; 100]);
            while let Some(x) = r.next() {
                assert!(x.is_err());
                errors += 1;
            }
        }
        assert_eq!(errors, 1);
        assert!(r.input.len() < 200_000, "{}", r.input.len());
    }
}
