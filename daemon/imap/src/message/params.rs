//! Content-Type and Content-Disposition values (RFC 2045 5.1, RFC 2183 2) with RFC 2231
//! parameter continuations merged the way Dovecot reports them: `name*0`, `name*1` become
//! `name`; extended values (`name*`, `name*0*`) keep their encoded form under `name*`.

/// A parsed `type/subtype; params` (or `disposition; params`) value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MimeValue {
    /// Type (or disposition type) as written.
    pub main: Vec<u8>,
    /// Subtype as written (Content-Type only).
    pub sub: Vec<u8>,
    pub params: Vec<(Vec<u8>, Vec<u8>)>,
}

impl MimeValue {
    pub fn param(&self, name: &str) -> Option<&[u8]> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
    }
}

/// RFC 2045 5.1: token = 1*<any (US-ASCII) CHAR except SPACE, CTLs, or tspecials>.
fn is_token(c: u8) -> bool {
    c > 0x20 && c != 0x7f && !b"()<>@,;:\\\"/[]?=".contains(&c)
}

struct Cur<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cur<'_> {
    fn ws(&mut self) {
        loop {
            match self.s.get(self.i) {
                Some(b' ' | b'\t' | b'\r' | b'\n') => self.i += 1,
                Some(b'(') => {
                    // RFC 2045 5.1: comments are allowed; bounded nesting.
                    let mut depth = 0usize;
                    while let Some(&c) = self.s.get(self.i) {
                        self.i += 1;
                        match c {
                            b'\\' => self.i += 1,
                            b'(' => depth += 1,
                            b')' => {
                                depth = depth.saturating_sub(1);
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => return,
            }
        }
    }

    fn token(&mut self) -> Vec<u8> {
        let start = self.i;
        while self.s.get(self.i).is_some_and(|&c| is_token(c)) {
            self.i += 1;
        }
        self.s[start..self.i].to_vec()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Vec<u8> {
        if self.eat(b'"') {
            let mut v = Vec::new();
            while let Some(&c) = self.s.get(self.i) {
                self.i += 1;
                match c {
                    b'"' => break,
                    b'\\' => {
                        if let Some(&n) = self.s.get(self.i) {
                            v.push(n);
                            self.i += 1;
                        }
                    }
                    b'\r' | b'\n' => {}
                    c => v.push(c),
                }
            }
            v
        } else {
            // Lenient: 8-bit and other junk up to ";" is taken as the value.
            let start = self.i;
            while self
                .s
                .get(self.i)
                .is_some_and(|&c| c != b';' && !matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
            {
                self.i += 1;
            }
            self.s[start..self.i].to_vec()
        }
    }
}

/// Parses `main[/sub] *(; attribute=value)`. With `with_subtype`, a missing "/" leaves `sub`
/// empty.
pub(crate) fn parse(value: &[u8], with_subtype: bool) -> MimeValue {
    let mut c = Cur { s: value, i: 0 };
    c.ws();
    let main = c.token();
    let mut sub = Vec::new();
    c.ws();
    if with_subtype && c.eat(b'/') {
        c.ws();
        sub = c.token();
    }
    let mut raw_params: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    // Bounded: a parameter needs at least 3 bytes, so this loop ends.
    loop {
        c.ws();
        if c.i >= value.len() {
            break;
        }
        if !c.eat(b';') {
            // Junk: skip to the next ";".
            while c.i < value.len() && value[c.i] != b';' {
                c.i += 1;
            }
            continue;
        }
        c.ws();
        let name = c.token();
        c.ws();
        if name.is_empty() || !c.eat(b'=') {
            continue;
        }
        c.ws();
        let v = c.value();
        raw_params.push((name, v));
    }
    MimeValue {
        main,
        sub,
        params: merge_2231(raw_params),
    }
}

/// RFC 2231 3: `name*N` / `name*N*` sections are concatenated in order under `name` (or
/// `name*` when the first section is extended); other parameters keep their place.
fn merge_2231(raw: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    // base name -> (index in out, sections)
    /// (section number, extended, value)
    type Sections = Vec<(u32, bool, Vec<u8>)>;
    let mut sections: Vec<(Vec<u8>, usize, Sections)> = Vec::new();
    for (name, value) in raw {
        let Some(star) = name.iter().position(|&c| c == b'*') else {
            out.push((name, value));
            continue;
        };
        let base = name[..star].to_vec();
        let rest = &name[star + 1..];
        let (num, extended) = match rest.strip_suffix(b"*") {
            Some(n) => (n, true),
            None => (rest, false),
        };
        if num.is_empty() || !num.iter().all(|c| c.is_ascii_digit()) || num.len() > 4 {
            // `name*` alone (or junk): kept as it is.
            out.push((name, value));
            continue;
        }
        let n: u32 = std::str::from_utf8(num)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(u32::MAX);
        match sections
            .iter_mut()
            .find(|(b, _, _)| b.eq_ignore_ascii_case(&base))
        {
            Some((_, _, secs)) => secs.push((n, extended, value)),
            None => {
                out.push((Vec::new(), Vec::new()));
                sections.push((base, out.len() - 1, vec![(n, extended, value)]));
            }
        }
    }
    for (base, idx, mut secs) in sections {
        secs.sort_by_key(|s| s.0);
        let extended = secs.first().is_some_and(|s| s.1);
        let mut name = base;
        if extended {
            name.push(b'*');
        }
        let value: Vec<u8> = secs.into_iter().flat_map(|s| s.2).collect();
        out[idx] = (name, value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let v = parse(b"Text/Plain; CharSet=ISO-8859-1; format=flowed", true);
        assert_eq!(v.main, b"Text");
        assert_eq!(v.sub, b"Plain");
        assert_eq!(v.params.len(), 2);
        assert_eq!(v.param("charset"), Some(&b"ISO-8859-1"[..]));
        let v = parse(b"multipart/mixed; boundary=\"a b\\\"c\" (comment)", true);
        assert_eq!(v.param("BOUNDARY"), Some(&b"a b\"c"[..]));
        let v = parse(
            b"application/octet-stream;\r\n name*0=\"long\";\r\n name*1=\"name.bin\"",
            true,
        );
        assert_eq!(v.params, vec![(b"name".to_vec(), b"longname.bin".to_vec())]);
        let v = parse(b"attachment; filename*=utf-8''%C3%A9.pdf", false);
        assert_eq!(v.main, b"attachment");
        assert_eq!(
            v.params,
            vec![(b"filename*".to_vec(), b"utf-8''%C3%A9.pdf".to_vec())]
        );
        let v = parse(b"x/y; a*1*=b; a*0*=us-ascii''a", true);
        assert_eq!(v.params, vec![(b"a*".to_vec(), b"us-ascii''ab".to_vec())]);
        for junk in [
            &b""[..],
            b";;;",
            b"/",
            b"a/b; =",
            b"a/b; x=\"",
            b"((",
            b"a/b;x",
        ] {
            let _ = parse(junk, true);
        }
    }
}
