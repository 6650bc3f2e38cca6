//! RFC 5322 3.4 address lists for ENVELOPE (RFC 9051 7.5.2), keeping RFC 2047 encoded words
//! as they are (RFC 9051 7.5.2 requires the raw text), with the obsolete route syntax
//! (RFC 5322 4.4) and groups. Never fails: whatever cannot be parsed is skipped.

/// One element of an ENVELOPE address list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    Mailbox {
        name: Option<Vec<u8>>,
        route: Option<Vec<u8>>,
        mailbox: Vec<u8>,
        host: Vec<u8>,
    },
    /// RFC 9051 7.5.2: start of group: host NIL, mailbox = group name.
    GroupStart(Vec<u8>),
    /// End of group: all four NIL.
    GroupEnd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(Vec<u8>),
    Special(u8),
    DomainLiteral(Vec<u8>),
    Comment(Vec<u8>),
}

/// RFC 5322 3.2.3 atext, plus "." (dot-atoms and obs-phrase) and 8-bit (RFC 6532).
fn is_atext(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c >= 0x80 || b"!#$%&'*+-/=?^_`{|}~.".contains(&c)
}

/// Nesting bound for comments.
const MAX_COMMENT_DEPTH: usize = 16;

fn tokenize(s: &[u8]) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'"' => {
                let mut w = Vec::new();
                i += 1;
                while i < s.len() && s[i] != b'"' {
                    if s[i] == b'\\' && i + 1 < s.len() {
                        i += 1;
                    }
                    if s[i] != b'\r' && s[i] != b'\n' {
                        w.push(s[i]);
                    }
                    i += 1;
                }
                i += 1;
                out.push(Tok::Word(w));
            }
            b'(' => {
                let mut depth = 0usize;
                let mut w = Vec::new();
                while i < s.len() {
                    match s[i] {
                        b'\\' if i + 1 < s.len() => {
                            i += 1;
                            w.push(s[i]);
                        }
                        b'(' => {
                            if depth > 0 && depth < MAX_COMMENT_DEPTH {
                                w.push(b'(');
                            }
                            depth += 1;
                        }
                        b')' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                            w.push(b')');
                        }
                        b'\r' | b'\n' => {}
                        c => w.push(c),
                    }
                    i += 1;
                }
                out.push(Tok::Comment(w));
            }
            b'[' => {
                let start = i;
                while i < s.len() && s[i] != b']' {
                    i += 1;
                }
                i = (i + 1).min(s.len());
                out.push(Tok::DomainLiteral(s[start..i].to_vec()));
            }
            c if is_atext(c) => {
                let start = i;
                while i < s.len() && is_atext(s[i]) {
                    i += 1;
                }
                out.push(Tok::Word(s[start..i].to_vec()));
            }
            c => {
                out.push(Tok::Special(c));
                i += 1;
            }
        }
    }
    out
}

struct P {
    toks: Vec<Tok>,
    i: usize,
}

impl P {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }

    fn skip_comments(&mut self) -> Option<Vec<u8>> {
        let mut last = None;
        while let Some(Tok::Comment(c)) = self.peek() {
            last = Some(c.clone());
            self.i += 1;
        }
        last
    }

    fn is_special(&self, c: u8) -> bool {
        matches!(self.peek(), Some(Tok::Special(x)) if *x == c)
    }

    /// Words (phrase or local part) up to the next special.
    fn words(&mut self) -> Vec<Vec<u8>> {
        let mut w = Vec::new();
        loop {
            match self.peek() {
                Some(Tok::Word(x)) => {
                    w.push(x.clone());
                    self.i += 1;
                }
                Some(Tok::Comment(_)) => self.i += 1,
                _ => return w,
            }
        }
    }

    /// A domain: words, dots and domain literals until a special.
    fn domain(&mut self) -> Vec<u8> {
        let mut d = Vec::new();
        loop {
            match self.peek() {
                Some(Tok::Word(x)) | Some(Tok::DomainLiteral(x)) => {
                    d.extend_from_slice(x);
                    self.i += 1;
                }
                Some(Tok::Comment(_)) => self.i += 1,
                _ => return d,
            }
        }
    }

    /// Skips to just after the next `c` at this level (or to the end).
    fn skip_past(&mut self, stop: &[u8]) {
        while let Some(t) = self.peek() {
            if let Tok::Special(x) = t {
                if stop.contains(x) {
                    return;
                }
            }
            self.i += 1;
        }
    }

    /// One mailbox (RFC 5322 3.4: name-addr / addr-spec); None when nothing usable.
    fn mailbox(&mut self) -> Option<Item> {
        let phrase = self.words();
        // An empty display name ("" <a@b>) is no name, as in Dovecot.
        let name = Some(phrase.join(&b' ')).filter(|n| !n.is_empty());
        if self.is_special(b'<') {
            self.i += 1;
            // RFC 5322 4.4 obs-route = obs-domain-list ":"
            let mut route: Option<Vec<u8>> = None;
            while self.is_special(b'@') {
                self.i += 1;
                let d = self.domain();
                let r = route.get_or_insert_with(Vec::new);
                if !r.is_empty() {
                    r.push(b',');
                }
                r.push(b'@');
                r.extend_from_slice(&d);
                while self.is_special(b',') {
                    self.i += 1;
                }
            }
            if route.is_some() && self.is_special(b':') {
                self.i += 1;
            }
            let local = self.words().concat();
            let host = if self.is_special(b'@') {
                self.i += 1;
                self.domain()
            } else {
                Vec::new()
            };
            self.skip_past(b">,;");
            if self.is_special(b'>') {
                self.i += 1;
            }
            self.skip_comments();
            return Some(mailbox_item(name, route, local, host));
        }
        if self.is_special(b'@') {
            self.i += 1;
            let local = phrase.concat();
            let host = self.domain();
            // RFC 822 style "addr (Name)": the comment names the mailbox.
            let comment = self.trailing_comment();
            return Some(mailbox_item(comment, None, local, host));
        }
        if phrase.is_empty() {
            return None;
        }
        Some(mailbox_item(None, None, phrase.concat(), Vec::new()))
    }

    fn trailing_comment(&mut self) -> Option<Vec<u8>> {
        // The domain loop skipped comments; look back for the last one before the next special.
        let mut j = self.i;
        let mut comment = None;
        while j > 0 {
            j -= 1;
            match &self.toks[j] {
                Tok::Comment(c) => {
                    comment = Some(c.clone());
                    break;
                }
                Tok::Special(b'@') => break,
                _ => {}
            }
        }
        comment.filter(|c| !c.is_empty())
    }
}

fn mailbox_item(
    name: Option<Vec<u8>>,
    route: Option<Vec<u8>>,
    mailbox: Vec<u8>,
    host: Vec<u8>,
) -> Item {
    // Dovecot's placeholders where RFC 9051 7.5.2 would otherwise read a group marker.
    let mailbox = if mailbox.is_empty() {
        b"MISSING_MAILBOX".to_vec()
    } else {
        mailbox
    };
    let host = if host.is_empty() {
        b"MISSING_DOMAIN".to_vec()
    } else {
        host
    };
    Item::Mailbox {
        name,
        route,
        mailbox,
        host,
    }
}

/// Parses an address-list header value (RFC 5322 3.4: address-list, with groups).
pub(crate) fn parse_list(value: &[u8]) -> Vec<Item> {
    let mut p = P {
        toks: tokenize(value),
        i: 0,
    };
    let mut out = Vec::new();
    while p.i < p.toks.len() {
        let start = p.i;
        // A group: display-name ":" [group-list] ";" (RFC 5322 3.4).
        let save = p.i;
        let phrase = p.words();
        if p.is_special(b':') && !phrase.is_empty() {
            p.i += 1;
            out.push(Item::GroupStart(phrase.join(&b' ')));
            loop {
                while p.is_special(b',') {
                    p.i += 1;
                }
                match p.peek() {
                    None => break,
                    Some(Tok::Special(b';')) => {
                        p.i += 1;
                        break;
                    }
                    _ => {}
                }
                let before = p.i;
                if let Some(m) = p.mailbox() {
                    out.push(m);
                }
                p.skip_past(b",;");
                if p.i == before {
                    p.i += 1;
                }
            }
            out.push(Item::GroupEnd);
        } else {
            p.i = save;
            if let Some(m) = p.mailbox() {
                out.push(m);
            }
            p.skip_past(b",");
        }
        while p.is_special(b',') || matches!(p.peek(), Some(Tok::Comment(_))) {
            p.i += 1;
        }
        if p.i == start {
            p.i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(name: Option<&str>, mailbox: &str, host: &str) -> Item {
        Item::Mailbox {
            name: name.map(|n| n.as_bytes().to_vec()),
            route: None,
            mailbox: mailbox.as_bytes().to_vec(),
            host: host.as_bytes().to_vec(),
        }
    }

    #[test]
    fn lists() {
        assert_eq!(
            parse_list(b"Terry Gray <gray@cac.washington.edu>"),
            vec![mb(Some("Terry Gray"), "gray", "cac.washington.edu")]
        );
        assert_eq!(
            parse_list(b"a@b, \"John \\\"Q\\\" Doe\" <j@x>"),
            vec![mb(None, "a", "b"), mb(Some("John \"Q\" Doe"), "j", "x")]
        );
        assert_eq!(
            parse_list(b"gray@x.y (Terry Gray)"),
            vec![mb(Some("Terry Gray"), "gray", "x.y")]
        );
        assert_eq!(
            parse_list(b"(comment) gray@x.y"),
            vec![mb(None, "gray", "x.y")]
        );
        assert_eq!(
            parse_list(b"undisclosed-recipients:;"),
            vec![
                Item::GroupStart(b"undisclosed-recipients".to_vec()),
                Item::GroupEnd
            ]
        );
        assert_eq!(
            parse_list(b"<@r1,@r2:a@b>"),
            vec![Item::Mailbox {
                name: None,
                route: Some(b"@r1,@r2".to_vec()),
                mailbox: b"a".to_vec(),
                host: b"b".to_vec()
            }]
        );
        assert_eq!(
            parse_list(b"<>"),
            vec![mb(None, "MISSING_MAILBOX", "MISSING_DOMAIN")]
        );
        assert_eq!(parse_list(b""), vec![]);
        // Garbage never panics.
        for g in [
            &b"<<<"[..],
            b"@@@",
            b":::;;;",
            b"\"unterminated",
            b"(((",
            b"a@",
            b"@b",
            b"[x",
        ] {
            let _ = parse_list(g);
        }
    }
}
