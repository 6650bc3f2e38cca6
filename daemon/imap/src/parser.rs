//! Lexical primitives of the IMAP formal syntax (RFC 9051 section 9, RFC 3501 section 9).
//!
//! The parser works on one complete command as assembled by
//! [`CommandReceiver`](crate::receiver::CommandReceiver): the command's lines, each ending in
//! CRLF, with every literal's data following its `{n}` announcement and CRLF.

use std::fmt;

/// A syntax error in a command; the server answers `tag BAD <message>` (RFC 9051 7.1.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(message: impl fmt::Display) -> ParseError {
        ParseError {
            message: message.to_string(),
        }
    }
}

pub(crate) type PResult<T> = Result<T, ParseError>;

/// RFC 9051 9: atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials /
/// resp-specials.
pub(crate) fn is_atom_char(c: u8) -> bool {
    (0x20..0x7f).contains(&c)
        && !matches!(
            c,
            b'(' | b')' | b'{' | b' ' | b'%' | b'*' | b'"' | b'\\' | b']'
        )
}

/// RFC 9051 9: ASTRING-CHAR = ATOM-CHAR / resp-specials.
pub(crate) fn is_astring_char(c: u8) -> bool {
    is_atom_char(c) || c == b']'
}

/// RFC 9051 9: tag = 1*<any ASTRING-CHAR except "+">.
pub(crate) fn is_tag_char(c: u8) -> bool {
    is_astring_char(c) && c != b'+'
}

/// RFC 9051 9: list-char = ATOM-CHAR / list-wildcards / resp-specials.
pub(crate) fn is_list_char(c: u8) -> bool {
    is_astring_char(c) || c == b'%' || c == b'*'
}

/// A literal's announcement `{n}`, `{n+}` (RFC 7888 LITERAL+/LITERAL-) or `~{n}` (RFC 3516
/// literal8) at the end of a line (without its CRLF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LiteralAnnouncement {
    pub size: u64,
    pub synchronizing: bool,
    pub binary: bool,
}

/// Finds a literal announcement at the end of `line` (the line without CRLF). RFC 9051 9:
/// literal = "{" number64 ["+"] "}" CRLF *CHAR8; "{" is never an ATOM-CHAR and quoted strings
/// end in DQUOTE, so a line ending in "}" after "{digits" always announces a literal.
pub(crate) fn literal_at_end(line: &[u8]) -> Option<LiteralAnnouncement> {
    let body = line.strip_suffix(b"}")?;
    let (body, synchronizing) = match body.strip_suffix(b"+") {
        Some(b) => (b, false),
        None => (body, true),
    };
    let digits_len = body.iter().rev().take_while(|c| c.is_ascii_digit()).count();
    if digits_len == 0 || digits_len > 19 {
        return None;
    }
    let digits = &body[body.len() - digits_len..];
    let before = body[..body.len() - digits_len].strip_suffix(b"{")?;
    let binary = before.ends_with(b"~");
    let size = parse_u64(digits)?;
    Some(LiteralAnnouncement {
        size,
        synchronizing,
        binary,
    })
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(n)
}

/// Cursor over one assembled command.
pub(crate) struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
    depth: usize,
    max_depth: usize,
}

impl<'a> Parser<'a> {
    pub fn new(buf: &'a [u8], max_depth: usize) -> Parser<'a> {
        Parser {
            buf,
            pos: 0,
            depth: 0,
            max_depth,
        }
    }

    pub fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub fn peek_at(&self, off: usize) -> Option<u8> {
        self.buf.get(self.pos + off).copied()
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }

    pub fn advance(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }

    pub fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub fn expect(&mut self, c: u8) -> PResult<()> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.error(format!("expected {:?}", c as char)))
        }
    }

    pub fn sp(&mut self) -> PResult<()> {
        if self.eat(b' ') {
            Ok(())
        } else {
            Err(self.error("expected a space"))
        }
    }

    /// True when the command has no more arguments (only its final CRLF remains).
    pub fn at_end(&self) -> bool {
        matches!(self.rest(), b"\r\n" | b"")
    }

    /// The end of the command: CRLF and nothing after it.
    pub fn end(&mut self) -> PResult<()> {
        if self.at_end() {
            self.pos = self.buf.len();
            Ok(())
        } else {
            Err(self.error("unexpected characters at the end of the command"))
        }
    }

    pub fn error(&self, what: impl fmt::Display) -> ParseError {
        let rest = self.rest();
        let shown: String = rest
            .iter()
            .take(20)
            .take_while(|&&c| c != b'\r' && c != b'\n')
            .map(|&c| {
                if (0x20..0x7f).contains(&c) {
                    c as char
                } else {
                    '?'
                }
            })
            .collect();
        if shown.is_empty() {
            ParseError::new(what)
        } else {
            ParseError::new(format!("{what} near \"{shown}\""))
        }
    }

    /// Enters one level of parenthesised nesting; bounded so that hostile input cannot
    /// exhaust the stack (search programs, body structures in APPEND are recursive).
    pub fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(ParseError::new("too deeply nested"));
        }
        Ok(())
    }

    pub fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if !f(c) {
                break;
            }
            self.pos += 1;
        }
        &self.buf[start..self.pos]
    }

    /// RFC 9051 9: atom = 1*ATOM-CHAR.
    pub fn atom(&mut self) -> PResult<&'a [u8]> {
        let a = self.take_while(is_atom_char);
        if a.is_empty() {
            Err(self.error("expected an atom"))
        } else {
            Ok(a)
        }
    }

    /// An atom, upper-cased, as a keyword for case-insensitive comparison (RFC 9051 9:
    /// "keywords are case-insensitive").
    pub fn keyword(&mut self) -> PResult<String> {
        let a = self.atom()?;
        Ok(String::from_utf8_lossy(a).to_ascii_uppercase())
    }

    /// A keyword that may contain "." and "[" (fetch attributes): ATOM-CHARs only.
    pub fn tag(&mut self) -> PResult<String> {
        let t = self.take_while(is_tag_char);
        if t.is_empty() {
            return Err(self.error("expected a tag"));
        }
        Ok(String::from_utf8_lossy(t).into_owned())
    }

    /// Case-insensitive match of a fixed keyword; consumes it only on a match that is not
    /// followed by more atom characters.
    pub fn eat_keyword(&mut self, kw: &str) -> bool {
        let kb = kw.as_bytes();
        let rest = self.rest();
        if rest.len() >= kb.len()
            && rest[..kb.len()].eq_ignore_ascii_case(kb)
            && !rest.get(kb.len()).is_some_and(|&c| is_atom_char(c))
        {
            self.pos += kb.len();
            true
        } else {
            false
        }
    }

    /// Case-insensitive match of a fixed prefix (no boundary check).
    pub fn eat_prefix_ci(&mut self, p: &str) -> bool {
        let pb = p.as_bytes();
        let rest = self.rest();
        if rest.len() >= pb.len() && rest[..pb.len()].eq_ignore_ascii_case(pb) {
            self.pos += pb.len();
            true
        } else {
            false
        }
    }

    /// RFC 9051 9: number = 1*DIGIT (unsigned 32-bit).
    pub fn number(&mut self) -> PResult<u32> {
        let d = self.take_while(|c| c.is_ascii_digit());
        if d.is_empty() {
            return Err(self.error("expected a number"));
        }
        parse_u64(d)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| self.error("number out of range"))
    }

    /// RFC 9051 9: nz-number.
    pub fn nz_number(&mut self) -> PResult<u32> {
        let n = self.number()?;
        if n == 0 {
            return Err(self.error("zero is not allowed here"));
        }
        Ok(n)
    }

    /// RFC 9051 9: number64 = 1*DIGIT (0 <= n <= 9,223,372,036,854,775,807).
    pub fn number64(&mut self) -> PResult<u64> {
        let d = self.take_while(|c| c.is_ascii_digit());
        if d.is_empty() {
            return Err(self.error("expected a number"));
        }
        match parse_u64(d) {
            Some(n) if n <= i64::MAX as u64 => Ok(n),
            _ => Err(self.error("number out of range")),
        }
    }

    /// RFC 9051 9: quoted = DQUOTE *QUOTED-CHAR DQUOTE; QUOTED-CHAR allows "\" escapes of
    /// DQUOTE and "\" only, and UTF-8 (utf8-quoted, RFC 9051 / RFC 6855).
    pub fn quoted(&mut self) -> PResult<Vec<u8>> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r') | Some(b'\n') | Some(0) => {
                    return Err(self.error("unterminated quoted string"))
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => {
                            out.push(c);
                            self.pos += 1;
                        }
                        _ => return Err(self.error("bad escape in quoted string")),
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// RFC 9051 9: literal = "{" number64 ["+"] "}" CRLF *CHAR8; with `binary`, also
    /// literal8 = "~{" number64 ["+"] "}" CRLF *OCTET (RFC 3516 4.1). Returns the data and
    /// whether it was a literal8.
    pub fn literal_any(&mut self, allow_binary: bool) -> PResult<(Vec<u8>, bool)> {
        let binary = self.eat(b'~');
        if binary && !allow_binary {
            return Err(self.error("binary literal not allowed here"));
        }
        self.expect(b'{')?;
        let n = self.number64()?;
        self.eat(b'+');
        self.expect(b'}')?;
        if !self.rest().starts_with(b"\r\n") {
            return Err(self.error("expected CRLF after literal size"));
        }
        self.pos += 2;
        let n = usize::try_from(n).map_err(|_| ParseError::new("literal too large"))?;
        if self.buf.len() - self.pos < n {
            return Err(ParseError::new("literal data missing"));
        }
        let data = &self.buf[self.pos..self.pos + n];
        if !binary && data.contains(&0) {
            // RFC 9051 4.3: CHAR8 excludes NUL in a non-binary literal.
            return Err(ParseError::new("NUL in literal"));
        }
        self.pos += n;
        Ok((data.to_vec(), binary))
    }

    /// RFC 9051 9: string = quoted / literal.
    pub fn string(&mut self) -> PResult<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => Ok(self.literal_any(false)?.0),
            _ => Err(self.error("expected a string")),
        }
    }

    /// RFC 9051 9: astring = 1*ASTRING-CHAR / string.
    pub fn astring(&mut self) -> PResult<Vec<u8>> {
        match self.peek() {
            Some(b'"') | Some(b'{') => self.string(),
            _ => {
                let a = self.take_while(is_astring_char);
                if a.is_empty() {
                    Err(self.error("expected an astring"))
                } else {
                    Ok(a.to_vec())
                }
            }
        }
    }

    /// RFC 9051 9: nstring = string / nil.
    pub fn nstring(&mut self) -> PResult<Option<Vec<u8>>> {
        if self.eat_keyword("NIL") {
            Ok(None)
        } else {
            self.string().map(Some)
        }
    }

    /// RFC 9051 9: list-mailbox = 1*list-char / string.
    pub fn list_mailbox(&mut self) -> PResult<Vec<u8>> {
        match self.peek() {
            Some(b'"') | Some(b'{') => self.string(),
            _ => {
                let a = self.take_while(is_list_char);
                if a.is_empty() {
                    Err(self.error("expected a mailbox pattern"))
                } else {
                    Ok(a.to_vec())
                }
            }
        }
    }

    /// Parses "(" item *(SP item) ")" or, with `allow_empty`, also "()".
    pub fn paren_list<T>(
        &mut self,
        allow_empty: bool,
        mut item: impl FnMut(&mut Parser<'a>) -> PResult<T>,
    ) -> PResult<Vec<T>> {
        self.expect(b'(')?;
        self.enter()?;
        let mut out = Vec::new();
        if self.eat(b')') {
            self.leave();
            if allow_empty {
                return Ok(out);
            }
            return Err(self.error("empty list"));
        }
        loop {
            out.push(item(self)?);
            if self.eat(b')') {
                break;
            }
            self.sp()?;
        }
        self.leave();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_announcements() {
        let a = literal_at_end(b"A1 LOGIN {5}").unwrap();
        assert_eq!((a.size, a.synchronizing, a.binary), (5, true, false));
        let a = literal_at_end(b"A1 APPEND x ~{12+}").unwrap();
        assert_eq!((a.size, a.synchronizing, a.binary), (12, false, true));
        assert!(literal_at_end(b"A1 LOGIN \"{5}\"").is_none());
        assert!(literal_at_end(b"A1 LOGIN {}").is_none());
        assert!(literal_at_end(b"A1 LOGIN 5}").is_none());
        assert!(literal_at_end(b"{99999999999999999999}").is_none());
        assert!(literal_at_end(b"A1 X {5-}").is_none());
    }

    #[test]
    fn strings() {
        let mut p = Parser::new(b"\"a\\\"b\\\\c\" {3}\r\nxyz atom NIL\r\n", 10);
        assert_eq!(p.astring().unwrap(), b"a\"b\\c");
        p.sp().unwrap();
        assert_eq!(p.astring().unwrap(), b"xyz");
        p.sp().unwrap();
        assert_eq!(p.astring().unwrap(), b"atom");
        p.sp().unwrap();
        assert_eq!(p.nstring().unwrap(), None);
        p.end().unwrap();
        let mut p = Parser::new(b"\"a\\qb\"", 10);
        assert!(p.quoted().is_err());
        let mut p = Parser::new(b"{10}\r\nabc", 10);
        assert!(p.string().is_err());
        let mut p = Parser::new(b"99999999999", 10);
        assert!(p.number().is_err());
    }
}
