//! Message data for FETCH (RFC 9051 6.4.5, 7.5.2): ENVELOPE, BODY and BODYSTRUCTURE, body
//! sections with partial ranges, and BINARY / BINARY.SIZE (RFC 3516).
//!
//! The MIME tree (boundaries, nesting, part offsets) comes from mail-parser 0.11; header
//! fields, addresses and Content-Type parameters are read from the raw bytes here because
//! IMAP wants them undecoded (RFC 9051 7.5.2: RFC 2047 words stay encoded). The output is
//! compared byte for byte with Dovecot's in tests/dovecot.rs, including the cases the RFCs
//! leave open (missing domain, multipart without boundary, header-only messages).
//!
//! Nothing here panics on malformed input; nesting is bounded by [`MAX_DEPTH`].

pub(crate) mod address;
mod decode;
pub(crate) mod header;
mod params;

use std::ops::Range;
use std::rc::Rc;

use crate::command::{Section, SectionText};
use header::{find, Field};
use params::MimeValue;

pub(crate) use address::{parse_list as parse_addresses, Item as AddressItem};
pub(crate) use header::{fields as header_fields, find as find_field};

/// Deepest MIME nesting rendered; deeper parts are shown as leaves.
pub const MAX_DEPTH: usize = 64;

/// BINARY on a part whose Content-Transfer-Encoding is not one of 7bit, 8bit, binary, base64
/// or quoted-printable: answer `NO [UNKNOWN-CTE]` (RFC 3516 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown Content-Transfer-Encoding")]
pub struct UnknownCte;

/// Where a part's bytes live: the message itself, or a decoded copy (a message/rfc822 part
/// that was transfer-encoded, which mail-parser parses after decoding).
#[derive(Debug, Clone)]
enum Src {
    Outer,
    Own(Rc<Vec<u8>>),
}

#[derive(Debug, Clone)]
enum Kind {
    Leaf,
    Multipart(Vec<Part>),
    /// message/rfc822 (or message/global): the encapsulated message's root part.
    Message(Box<Part>),
}

#[derive(Debug, Clone)]
struct Part {
    src: Src,
    /// The header, including the empty line that ends it.
    header: Range<usize>,
    body: Range<usize>,
    kind: Kind,
    /// Inside a multipart/digest: the default type is message/rfc822 (RFC 2046 5.1.5).
    digest_child: bool,
}

/// A parsed message; render several items from one parse.
pub struct Message<'a> {
    raw: &'a [u8],
    root: Part,
}

fn range(start: u32, end: u32, len: usize) -> Range<usize> {
    let s = (start as usize).min(len);
    let e = (end as usize).min(len).max(s);
    s..e
}

fn same_buffer(a: &[u8], b: &[u8]) -> bool {
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

impl<'a> Message<'a> {
    /// Parses `raw` (the stored message, RFC822.SIZE bytes).
    pub fn parse(raw: &'a [u8]) -> Message<'a> {
        let parsed = parse_mime(raw);
        let root = match &parsed {
            Some(m) if !m.parts.is_empty() => {
                let mut r = build_root(m, raw, Src::Outer, raw, 0);
                r.header.start = 0;
                r.body.end = raw.len().max(r.body.start);
                r
            }
            _ => {
                // Nothing mail-parser recognises: all header up to the first empty line.
                let split = find_header_end(raw);
                Part {
                    src: Src::Outer,
                    header: 0..split,
                    body: split..raw.len(),
                    kind: Kind::Leaf,
                    digest_child: false,
                }
            }
        };
        Message { raw, root }
    }

    fn bytes<'s>(&'s self, src: &'s Src) -> &'s [u8] {
        match src {
            Src::Outer => self.raw,
            Src::Own(v) => v.as_slice(),
        }
    }

    fn header_of<'s>(&'s self, p: &'s Part) -> &'s [u8] {
        &self.bytes(&p.src)[p.header.clone()]
    }

    fn body_of<'s>(&'s self, p: &'s Part) -> &'s [u8] {
        &self.bytes(&p.src)[p.body.clone()]
    }

    /// The ENVELOPE structure (RFC 9051 7.5.2).
    pub fn envelope(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_envelope(&mut out, &self.root);
        out
    }

    /// BODYSTRUCTURE (`extended`) or BODY (RFC 9051 7.5.2).
    pub fn body_structure(&self, extended: bool) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_structure(&mut out, &self.root, extended, 0);
        out
    }

    /// The part a section's numbers name (RFC 9051 6.4.5: every message has a part 1; the
    /// parts of a multipart are numbered from 1; a message/rfc822 part's numbers continue in
    /// the encapsulated message).
    fn resolve(&self, path: &[u32]) -> Option<&Part> {
        let mut node = &self.root;
        // Whether `node` is a part of a multipart (not a message's own body).
        let mut in_multipart = false;
        for (i, &n) in path.iter().enumerate() {
            let n = usize::try_from(n).ok()?;
            let parent_is_multipart = matches!(node.kind, Kind::Multipart(_));
            node = if i == 0 {
                in_message(node, n)?
            } else {
                match &node.kind {
                    Kind::Multipart(ch) => ch.get(n.checked_sub(1)?)?,
                    Kind::Message(inner) => in_message(inner, n)?,
                    // Like Dovecot: part 1 of a leaf inside a multipart is the leaf itself.
                    Kind::Leaf if n == 1 && in_multipart => node,
                    Kind::Leaf => return None,
                }
            };
            in_multipart = if i == 0 {
                parent_is_multipart
            } else {
                in_multipart || parent_is_multipart
            };
        }
        Some(node)
    }

    /// The message (root part) whose header/text a section addresses: the whole message
    /// for an empty part path, else an encapsulated message/rfc822 part.
    fn message_for(&self, path: &[u32]) -> Option<&Part> {
        if path.is_empty() {
            return Some(&self.root);
        }
        match &self.resolve(path)?.kind {
            Kind::Message(inner) => Some(inner),
            _ => None,
        }
    }

    /// BODY[section] without the partial range (RFC 9051 6.4.5). A section that does not
    /// exist is empty, as Dovecot answers.
    pub fn section(&self, s: &Section) -> Vec<u8> {
        let text = match &s.text {
            None if s.part.is_empty() => return self.raw.to_vec(),
            None => {
                return self
                    .resolve(&s.part)
                    .map(|p| self.body_of(p).to_vec())
                    .unwrap_or_default()
            }
            Some(t) => t,
        };
        if let SectionText::Mime = text {
            return self
                .resolve(&s.part)
                .map(|p| self.header_of(p).to_vec())
                .unwrap_or_default();
        }
        let Some(msg) = self.message_for(&s.part) else {
            return Vec::new();
        };
        match text {
            SectionText::Header => self.header_of(msg).to_vec(),
            SectionText::Text => self.body_of(msg).to_vec(),
            SectionText::HeaderFields(names) => filter_fields(self.header_of(msg), names, true),
            SectionText::HeaderFieldsNot(names) => filter_fields(self.header_of(msg), names, false),
            SectionText::Mime => Vec::new(),
        }
    }

    /// `BINARY[part]` (RFC 3516 4.2): the part's body with its Content-Transfer-Encoding
    /// removed. For a multipart or message part (and for the whole message, an empty path)
    /// every leaf inside is decoded and labelled "Content-Transfer-Encoding: binary", as
    /// Dovecot does. A part that does not exist is empty.
    pub fn binary(&self, part: &[u32]) -> Result<Vec<u8>, UnknownCte> {
        let mut out = Vec::new();
        if part.is_empty() {
            self.convert(&self.root, true, &mut out, 0)?;
            return Ok(out);
        }
        let Some(p) = self.resolve(part) else {
            return Ok(out);
        };
        self.convert(p, false, &mut out, 0)?;
        Ok(out)
    }

    /// Writes `p` (its header when `with_header`, then its body) with transfer encodings
    /// removed.
    fn convert(
        &self,
        p: &Part,
        with_header: bool,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), UnknownCte> {
        let header = self.header_of(p);
        let body = self.body_of(p);
        match &p.kind {
            Kind::Leaf => {
                let fields = header::fields(header);
                let cte_field = find(&fields, "Content-Transfer-Encoding");
                let cte = cte_field
                    .map(|f| params::parse(f.value, false).main.to_ascii_lowercase())
                    .unwrap_or_default();
                let decoded = match cte.as_slice() {
                    b"" | b"7bit" | b"8bit" | b"binary" => None,
                    b"base64" => Some(decode::base64(body)),
                    b"quoted-printable" => Some(decode::quoted_printable(body)),
                    _ => return Err(UnknownCte),
                };
                if with_header {
                    match (&decoded, cte_field) {
                        (Some(_), Some(f)) => {
                            for g in &fields {
                                if std::ptr::eq(g.raw, f.raw) {
                                    out.extend_from_slice(b"Content-Transfer-Encoding: binary\r\n");
                                } else {
                                    out.extend_from_slice(g.raw);
                                }
                            }
                            let used: usize = fields.iter().map(|g| g.raw.len()).sum();
                            out.extend_from_slice(header.get(used..).unwrap_or_default());
                        }
                        _ => out.extend_from_slice(header),
                    }
                }
                out.extend_from_slice(decoded.as_deref().unwrap_or(body));
            }
            Kind::Multipart(children) => {
                if with_header {
                    out.extend_from_slice(header);
                }
                let src = self.bytes(&p.src);
                let mut cursor = p.body.start;
                for c in children {
                    if depth >= MAX_DEPTH {
                        break;
                    }
                    if c.header.start >= cursor && c.body.end <= p.body.end {
                        out.extend_from_slice(&src[cursor..c.header.start]);
                        cursor = c.body.end;
                    }
                    self.convert(c, true, out, depth + 1)?;
                }
                out.extend_from_slice(src.get(cursor..p.body.end).unwrap_or_default());
            }
            Kind::Message(inner) => {
                if with_header {
                    out.extend_from_slice(header);
                }
                if depth < MAX_DEPTH {
                    self.convert(inner, true, out, depth + 1)?;
                }
            }
        }
        Ok(())
    }

    /// `BINARY.SIZE[part]` (RFC 3516 4.2).
    pub fn binary_size(&self, part: &[u32]) -> Result<usize, UnknownCte> {
        self.binary(part).map(|b| b.len())
    }

    /// Text for SEARCH (RFC 9051 6.4.4 BODY/TEXT): the decoded text of every text/* leaf
    /// (transfer encoding and charset removed), and separately the header fields of
    /// encapsulated messages (TEXT searches those, BODY does not, as in Dovecot).
    pub(crate) fn search_text(&self) -> (String, String) {
        let mut body = String::new();
        let mut nested_headers = String::new();
        self.collect_text(&self.root, &mut body, &mut nested_headers, 0);
        (body, nested_headers)
    }

    fn collect_text(&self, p: &Part, body: &mut String, headers: &mut String, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        match &p.kind {
            Kind::Multipart(children) => {
                for c in children {
                    self.collect_text(c, body, headers, depth + 1);
                }
            }
            Kind::Message(inner) => {
                for f in header::fields(self.header_of(inner)) {
                    headers.push_str(&String::from_utf8_lossy(f.name));
                    headers.push_str(": ");
                    headers.push_str(&crate::search::decode_header_value(f.value));
                    headers.push('\n');
                }
                self.collect_text(inner, body, headers, depth + 1);
            }
            Kind::Leaf => {
                let fields = header::fields(self.header_of(p));
                let ct = content_type(&fields, p.digest_child);
                if !ct.main.eq_ignore_ascii_case(b"text") {
                    return;
                }
                let Ok(data) = self.convert_leaf_body(p, &fields) else {
                    return;
                };
                let text = ct
                    .param("charset")
                    .and_then(mail_parser::decoders::charsets::map::charset_decoder)
                    .map(|decode| decode(&data))
                    .unwrap_or_else(|| String::from_utf8_lossy(&data).into_owned());
                body.push_str(&text);
                body.push('\n');
            }
        }
    }

    /// A leaf's body with its transfer encoding removed.
    fn convert_leaf_body(&self, p: &Part, fields: &[Field<'_>]) -> Result<Vec<u8>, UnknownCte> {
        let body = self.body_of(p);
        let cte = find(fields, "Content-Transfer-Encoding")
            .map(|f| params::parse(f.value, false).main.to_ascii_lowercase())
            .unwrap_or_default();
        match cte.as_slice() {
            b"" | b"7bit" | b"8bit" | b"binary" => Ok(body.to_vec()),
            b"base64" => Ok(decode::base64(body)),
            b"quoted-printable" => Ok(decode::quoted_printable(body)),
            _ => Err(UnknownCte),
        }
    }

    fn write_envelope(&self, out: &mut Vec<u8>, msg: &Part) {
        let hdr = self.header_of(msg);
        let fields = header::fields(hdr);
        let get = |name: &str| find(&fields, name).map(|f: Field<'_>| f.value);
        out.push(b'(');
        header::nstring_unfolded(out, get("Date"));
        out.push(b' ');
        match get("Subject") {
            Some(s) => header::for_humans(out, s),
            None => out.extend_from_slice(b"NIL"),
        }
        let from = get("From").map(address::parse_list).unwrap_or_default();
        for name in ["From", "Sender", "Reply-To", "To", "Cc", "Bcc"] {
            out.push(b' ');
            let list = match name {
                "From" => from.clone(),
                _ => get(name).map(address::parse_list).unwrap_or_default(),
            };
            // RFC 9051 7.5.2: absent or empty Sender / Reply-To are the From value.
            let list = if list.is_empty() && matches!(name, "Sender" | "Reply-To") {
                from.clone()
            } else {
                list
            };
            write_addresses(out, &list);
        }
        out.push(b' ');
        header::nstring_unfolded(out, get("In-Reply-To"));
        out.push(b' ');
        header::nstring_unfolded(out, get("Message-ID"));
        out.push(b')');
    }

    fn write_structure(&self, out: &mut Vec<u8>, p: &Part, extended: bool, depth: usize) {
        let fields = header::fields(self.header_of(p));
        let ct = content_type(&fields, p.digest_child);
        if let Kind::Multipart(children) = &p.kind {
            // RFC 9051 7.5.2: body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
            out.push(b'(');
            for c in children {
                if depth < MAX_DEPTH {
                    self.write_structure(out, c, extended, depth + 1);
                }
            }
            out.push(b' ');
            header::string(out, &ct.sub);
            if extended {
                out.push(b' ');
                write_params(out, &ct.params);
                write_ext_common(out, &fields);
            }
            out.push(b')');
            return;
        }
        let body = self.body_of(p);
        out.push(b'(');
        header::string(out, &ct.main);
        out.push(b' ');
        header::string(out, &ct.sub);
        out.push(b' ');
        // body-fields = body-fld-param SP body-fld-id SP body-fld-desc SP body-fld-enc SP
        //   body-fld-octets
        let mut params = ct.params.clone();
        let is_text = ct.main.eq_ignore_ascii_case(b"text");
        if is_text && ct.param("charset").is_none() {
            params.push((b"charset".to_vec(), b"us-ascii".to_vec()));
        }
        write_params(out, &params);
        out.push(b' ');
        header::nstring_unfolded(out, find(&fields, "Content-ID").map(|f| f.value));
        out.push(b' ');
        header::nstring_unfolded(out, find(&fields, "Content-Description").map(|f| f.value));
        out.push(b' ');
        let enc = find(&fields, "Content-Transfer-Encoding")
            .map(|f| params::parse(f.value, false).main)
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| b"7bit".to_vec());
        header::string(out, &enc);
        out.push(b' ');
        out.extend_from_slice(body.len().to_string().as_bytes());
        let lines = memchr::memchr_iter(b'\n', body).count();
        match &p.kind {
            Kind::Message(inner) => {
                // body-type-msg = media-message SP body-fields SP envelope SP body SP
                //   body-fld-lines
                out.push(b' ');
                self.write_envelope(out, inner);
                out.push(b' ');
                if depth < MAX_DEPTH {
                    self.write_structure(out, inner, extended, depth + 1);
                } else {
                    out.extend_from_slice(b"NIL");
                }
                out.push(b' ');
                out.extend_from_slice(lines.to_string().as_bytes());
            }
            _ if is_text => {
                out.push(b' ');
                out.extend_from_slice(lines.to_string().as_bytes());
            }
            _ => {}
        }
        if extended {
            // body-ext-1part = body-fld-md5 [SP body-fld-dsp [SP body-fld-lang [SP
            //   body-fld-loc]]]
            out.push(b' ');
            header::nstring_unfolded(out, find(&fields, "Content-MD5").map(|f| f.value));
            write_ext_common(out, &fields);
        }
        out.push(b')');
    }
}

/// mail-parser's MIME parse, shielded: 0.11.9 has a `debug_assert!(false)` on some corrupted
/// multiparts (found by the message_render fuzz target; release builds recover after it), and
/// a parser bug must cost one message's rendering, not the session. On a panic the message is
/// treated as one part.
pub(crate) fn parse_mime(raw: &[u8]) -> Option<mail_parser::Message<'_>> {
    std::panic::catch_unwind(|| mail_parser::MessageParser::default().parse(raw))
        .ok()
        .flatten()
}

/// Header-only parse, shielded like [`parse_mime`].
pub(crate) fn parse_mime_headers(raw: &[u8]) -> Option<mail_parser::Message<'_>> {
    std::panic::catch_unwind(|| mail_parser::MessageParser::default().parse_headers(raw))
        .ok()
        .flatten()
}

/// Within a message whose root is `root`, part `n` (1-based).
fn in_message(root: &Part, n: usize) -> Option<&Part> {
    match &root.kind {
        Kind::Multipart(ch) => ch.get(n.checked_sub(1)?),
        _ if n == 1 => Some(root),
        _ => None,
    }
}

fn find_header_end(raw: &[u8]) -> usize {
    if raw.starts_with(b"\r\n") {
        return 2;
    }
    if raw.starts_with(b"\n") {
        return 1;
    }
    let crlf = memchr::memmem::find(raw, b"\r\n\r\n").map(|i| i + 4);
    let lf = memchr::memmem::find(raw, b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => raw.len(),
    }
}

fn build_root(
    m: &mail_parser::Message<'_>,
    buf: &[u8],
    src: Src,
    outer: &[u8],
    depth: usize,
) -> Part {
    build_part(m, 0, buf, &src, outer, depth, false)
}

fn build_part(
    m: &mail_parser::Message<'_>,
    id: usize,
    buf: &[u8],
    src: &Src,
    outer: &[u8],
    depth: usize,
    digest_child: bool,
) -> Part {
    let Some(p) = m.parts.get(id) else {
        return Part {
            src: src.clone(),
            header: 0..0,
            body: 0..0,
            kind: Kind::Leaf,
            digest_child,
        };
    };
    let len = buf.len();
    let header = range(p.offset_header, p.offset_body, len);
    let mut body = range(p.offset_body, p.offset_end, len);
    let fields = header::fields(&buf[header.clone()]);
    let ct = content_type(&fields, digest_child);
    if let (mail_parser::PartType::Multipart(_), Some(boundary)) = (&p.body, ct.param("boundary")) {
        // A multipart ends with its close-delimiter line, line break included (Dovecot; the
        // strict RFC 2046 5.1.1 reading gives that line break to the parent's delimiter).
        let close = [&b"--"[..], boundary, b"--"].concat();
        if buf[body.clone()].ends_with(&close) {
            let rest = &buf[body.end..];
            if rest.starts_with(b"\r\n") {
                body.end += 2;
            } else if rest.starts_with(b"\n") {
                body.end += 1;
            }
        }
    }
    let kind = if depth >= MAX_DEPTH {
        Kind::Leaf
    } else {
        match &p.body {
            mail_parser::PartType::Multipart(ids) => {
                let digest = ct.sub.eq_ignore_ascii_case(b"digest");
                Kind::Multipart(
                    ids.iter()
                        .filter(|&&c| c as usize != id && (c as usize) < m.parts.len())
                        .map(|&c| {
                            let mut child =
                                build_part(m, c as usize, buf, src, outer, depth + 1, digest);
                            // Children stay inside their parent's body.
                            child.body.end = child.body.end.min(body.end).max(child.body.start);
                            child
                        })
                        .collect(),
                )
            }
            mail_parser::PartType::Message(inner) if !inner.parts.is_empty() => {
                let inner_raw: &[u8] = &inner.raw_message;
                let same = same_buffer(inner_raw, buf);
                let (ibuf, isrc): (&[u8], Src) = if same_buffer(inner_raw, buf) {
                    (buf, src.clone())
                } else if same_buffer(inner_raw, outer) {
                    (outer, Src::Outer)
                } else {
                    let own = Rc::new(inner_raw.to_vec());
                    (inner_raw, Src::Own(own))
                };
                // Offsets of an encoded inner message index its decoded copy.
                let inner_part = match &isrc {
                    Src::Own(v) => {
                        let v2 = Rc::clone(v);
                        build_part(inner, 0, v2.as_slice(), &isrc, outer, depth + 1, false)
                    }
                    Src::Outer => build_part(inner, 0, ibuf, &isrc, outer, depth + 1, false),
                };
                // The encapsulated message spans the whole body of the part (mail-parser
                // ends a multipart root before its epilogue's line break).
                let mut inner_part = inner_part;
                if same {
                    inner_part.header.start = body.start.min(inner_part.header.end);
                    inner_part.body.end = body.end.max(inner_part.body.start);
                }
                Kind::Message(Box::new(inner_part))
            }
            _ if ct.main.eq_ignore_ascii_case(b"multipart") => {
                // A multipart without (usable) boundary: Dovecot shows one empty part.
                Kind::Multipart(vec![Part {
                    src: src.clone(),
                    header: body.start..body.start,
                    body: body.start..body.start,
                    kind: Kind::Leaf,
                    digest_child: false,
                }])
            }
            _ => Kind::Leaf,
        }
    };
    Part {
        src: src.clone(),
        header,
        body,
        kind,
        digest_child,
    }
}

/// The Content-Type of a part with its defaults (RFC 2045 5.2: text/plain; charset=us-ascii,
/// RFC 2046 5.1.5: message/rfc822 in a digest).
fn content_type(fields: &[Field<'_>], digest_child: bool) -> MimeValue {
    if let Some(f) = find(fields, "Content-Type") {
        let v = params::parse(f.value, true);
        if !v.main.is_empty() && !v.sub.is_empty() {
            return v;
        }
    }
    if digest_child {
        MimeValue {
            main: b"message".to_vec(),
            sub: b"rfc822".to_vec(),
            params: Vec::new(),
        }
    } else {
        MimeValue {
            main: b"text".to_vec(),
            sub: b"plain".to_vec(),
            params: Vec::new(),
        }
    }
}

fn write_params(out: &mut Vec<u8>, params: &[(Vec<u8>, Vec<u8>)]) {
    // body-fld-param = "(" string SP string *(SP string SP string) ")" / nil
    if params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (n, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        header::string(out, n);
        out.push(b' ');
        header::string(out, v);
    }
    out.push(b')');
}

/// SP body-fld-dsp SP body-fld-lang SP body-fld-loc (RFC 9051 9, RFC 2183, RFC 3282,
/// RFC 2557).
fn write_ext_common(out: &mut Vec<u8>, fields: &[Field<'_>]) {
    out.push(b' ');
    match find(fields, "Content-Disposition") {
        Some(f) => {
            let d = params::parse(f.value, false);
            if d.main.is_empty() {
                out.extend_from_slice(b"NIL");
            } else {
                out.push(b'(');
                header::string(out, &d.main);
                out.push(b' ');
                write_params(out, &d.params);
                out.push(b')');
            }
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    let langs: Vec<&[u8]> = find(fields, "Content-Language")
        .map(|f| {
            f.value
                .split(|&c| matches!(c, b',' | b' ' | b'\t' | b'\r' | b'\n'))
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if langs.is_empty() {
        out.extend_from_slice(b"NIL");
    } else {
        out.push(b'(');
        for (i, l) in langs.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            header::string(out, l);
        }
        out.push(b')');
    }
    out.push(b' ');
    header::nstring_unfolded(out, find(fields, "Content-Location").map(|f| f.value));
}

fn write_addresses(out: &mut Vec<u8>, list: &[address::Item]) {
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for item in list {
        match item {
            address::Item::Mailbox {
                name,
                route,
                mailbox,
                host,
            } => {
                out.push(b'(');
                match name {
                    Some(n) => header::for_humans(out, n),
                    None => out.extend_from_slice(b"NIL"),
                }
                out.push(b' ');
                header::nstring(out, route.as_deref());
                out.push(b' ');
                header::string(out, mailbox);
                out.push(b' ');
                header::string(out, host);
                out.push(b')');
            }
            address::Item::GroupStart(name) => {
                out.extend_from_slice(b"(NIL NIL ");
                header::string(out, name);
                out.extend_from_slice(b" NIL)");
            }
            address::Item::GroupEnd => out.extend_from_slice(b"(NIL NIL NIL NIL)"),
        }
    }
    out.push(b')');
}

/// HEADER.FIELDS / HEADER.FIELDS.NOT (RFC 9051 6.4.5): the matching fields as they are, then
/// the empty line.
fn filter_fields(header: &[u8], names: &[String], keep: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for f in header::fields(header) {
        let listed = !f.name.is_empty()
            && names
                .iter()
                .any(|n| n.as_bytes().eq_ignore_ascii_case(f.name));
        if listed == keep {
            out.extend_from_slice(f.raw);
        }
    }
    // HEADER.FIELDS always ends with the empty line; HEADER.FIELDS.NOT copies the header's
    // own (absent in a header-only message), as Dovecot does.
    if keep || header.ends_with(b"\n\n") || header.ends_with(b"\n\r\n") || header == b"\r\n" {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The `<origin.count>` range of a section (RFC 9051 6.4.5: an origin past the end gives
/// an empty string).
pub fn partial(data: &[u8], p: Option<(u32, u32)>) -> &[u8] {
    match p {
        None => data,
        Some((origin, count)) => {
            let start = (origin as usize).min(data.len());
            let end = start.saturating_add(count as usize).min(data.len());
            &data[start..end]
        }
    }
}

/// ENVELOPE of a message (RFC 9051 7.5.2).
pub fn envelope(raw: &[u8]) -> Vec<u8> {
    Message::parse(raw).envelope()
}

/// BODYSTRUCTURE (`extended`) or BODY of a message (RFC 9051 7.5.2).
pub fn body_structure(raw: &[u8], extended: bool) -> Vec<u8> {
    Message::parse(raw).body_structure(extended)
}

/// BODY[section] of a message, before any partial range (RFC 9051 6.4.5).
pub fn section(raw: &[u8], s: &Section) -> Vec<u8> {
    Message::parse(raw).section(s)
}

/// `BINARY[part]` of a message (RFC 3516 4.2).
pub fn binary(raw: &[u8], part: &[u32]) -> Result<Vec<u8>, UnknownCte> {
    Message::parse(raw).binary(part)
}

/// `BINARY.SIZE[part]` of a message (RFC 3516 4.2).
pub fn binary_size(raw: &[u8], part: &[u32]) -> Result<usize, UnknownCte> {
    Message::parse(raw).binary_size(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3501 7.4.2 / RFC 9051 7.5.2 example message: its ENVELOPE and BODY.
    #[test]
    fn rfc_example() {
        let mut raw = b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n\
From: Terry Gray <gray@cac.washington.edu>\r\n\
Subject: IMAP4rev1 WG mtg summary and minutes\r\n\
To: imap@cac.washington.edu\r\n\
cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n\
Message-Id: <B27397-0100000@cac.washington.edu>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n"
            .to_vec();
        // 92 lines, 3028 octets. Without a Content-Transfer-Encoding field the RFC example
        // shows "7BIT"; like Dovecot we write the default as "7bit" (case-insensitive).
        for i in 0..92 {
            let line = if i == 0 {
                "x".repeat(23)
            } else {
                "y".repeat(31)
            };
            raw.extend_from_slice(line.as_bytes());
            raw.extend_from_slice(b"\r\n");
        }
        let m = Message::parse(&raw);
        assert_eq!(
            String::from_utf8(m.envelope()).unwrap(),
            "(\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \"IMAP4rev1 WG mtg summary and minutes\" \
(\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) \
((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ((NIL NIL \"imap\" \"cac.washington.edu\")) \
((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")(\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) NIL NIL \
\"<B27397-0100000@cac.washington.edu>\")"
                .replace("\" (\"Terry", "\" ((\"Terry")
        );
        assert_eq!(
            String::from_utf8(m.body_structure(false)).unwrap(),
            "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7bit\" 3028 92)"
        );
    }

    #[test]
    fn malformed_never_panics() {
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"\r\n".to_vec(),
            b"\n\n\n".to_vec(),
            b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n--\r\n".to_vec(),
            b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n--a\r\n--a--".to_vec(),
            b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nRnJvbTogYUBiDQpTdWJqZWN0OiB4DQoNCmJvZHkNCg==\r\n".to_vec(),
            b"Content-Type: message/rfc822\r\n\r\n".to_vec(),
            b"From: <<<>>>@@@,,,;;;:::\r\nTo: (((((\r\n\r\n".to_vec(),
            [b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec(), b"--b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n".repeat(200)].concat(),
            [b"Content-Type: message/rfc822\r\n\r\n".repeat(300)].concat(),
            b"\xff\xfe\x00: \x00\r\n\r\n\x00".to_vec(),
        ];
        for raw in &cases {
            let m = Message::parse(raw);
            let _ = m.envelope();
            let _ = m.body_structure(true);
            let _ = m.body_structure(false);
            for path in [
                &[][..],
                &[1],
                &[1, 1],
                &[2, 1, 3],
                &[1, 1, 1, 1, 1, 1, 1, 1],
            ] {
                for text in [
                    None,
                    Some(SectionText::Header),
                    Some(SectionText::Text),
                    Some(SectionText::Mime),
                    Some(SectionText::HeaderFields(vec!["From".into()])),
                    Some(SectionText::HeaderFieldsNot(vec!["From".into()])),
                ] {
                    let _ = m.section(&Section {
                        part: path.to_vec(),
                        text,
                    });
                }
                let _ = m.binary(path);
            }
        }
    }

    #[test]
    fn encoded_rfc822_part() {
        // A base64-encoded message/rfc822 part: mail-parser parses the decoded copy.
        let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nRnJvbTogYUBiDQpTdWJqZWN0OiB4DQoNCmJvZHkNCg==\r\n--b--\r\n";
        let m = Message::parse(raw);
        let bs = String::from_utf8_lossy(&m.body_structure(true)).into_owned();
        assert!(bs.starts_with("((\"message\" \"rfc822\""), "{bs}");
        let hdr = m.section(&Section {
            part: vec![1],
            text: Some(SectionText::Header),
        });
        assert_eq!(hdr, b"From: a@b\r\nSubject: x\r\n\r\n");
    }

    #[test]
    fn partial_ranges() {
        assert_eq!(partial(b"hello", Some((1, 3))), b"ell");
        assert_eq!(partial(b"hello", Some((4, 100))), b"o");
        assert_eq!(partial(b"hello", Some((10, 1))), b"");
        assert_eq!(partial(b"hello", Some((u32::MAX, u32::MAX))), b"");
        assert_eq!(partial(b"hello", None), b"hello");
    }
}
