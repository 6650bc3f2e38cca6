//! Sans-IO tokenizer: a raw RFC 5322 message in, a bounded set of distinct tokens out.
//!
//! MIME structure and transfer encodings (RFC 2045 6, RFC 2047 encoded words) are decoded by
//! mail-parser; HTML parts are turned into text. Header tokens carry the field name as a
//! prefix (`subject:free`, `from:bob@example.com`, `from-domain:example.com`), as SpamBayes
//! does, so that a word in a Subject and the same word in a body are different evidence.
//! URLs give `url:<host>` tokens. Long words give a `skip:<first char> <length/10>` token
//! instead of themselves (SpamBayes), which keeps base64 runs and hashes out of the database.
//!
//! Every bound is in [`Limits`]: the raw bytes parsed, the decoded text read, the tokens
//! kept, the length of one token. A hostile message costs at most those.

use std::collections::HashSet;

use std::borrow::Cow;

use mail_parser::decoders::html::html_to_text;
use mail_parser::{MessageParser, MimeHeaders, PartType};

/// The longest token kept, in bytes (a prefix, and an address, domain or host, or a word);
/// longer ones are cut there.
pub const MAX_TOKEN_BYTES: usize = 128;

/// Bounds of one tokenization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Raw message bytes handed to the MIME parser; the rest is ignored.
    pub max_message_bytes: usize,
    /// Decoded text (all body parts together) that is scanned for words.
    pub max_text_bytes: usize,
    /// Distinct tokens kept; the first ones win (headers come first).
    pub max_tokens: usize,
    /// Longest word kept as itself, in characters; longer words become `skip:` tokens.
    pub max_word_chars: usize,
    /// Shortest word kept, in characters.
    pub min_word_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 512 * 1024,
            max_text_bytes: 128 * 1024,
            max_tokens: 3000,
            max_word_chars: 24,
            min_word_chars: 3,
        }
    }
}

/// The distinct tokens of one message (sorted; bounded by [`Limits::max_tokens`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    pub tokens: HashSet<String>,
    /// True when a limit cut the message short.
    pub truncated: bool,
}

struct Sink<'a> {
    limits: &'a Limits,
    out: Tokens,
}

impl Sink<'_> {
    fn full(&self) -> bool {
        self.out.tokens.len() >= self.limits.max_tokens
    }

    fn push(&mut self, mut token: String) {
        if self.full() {
            self.out.truncated = true;
            return;
        }
        if token.len() > MAX_TOKEN_BYTES {
            // Addresses, domains and hosts come from the message: bounded like words.
            let end = clip(&token, MAX_TOKEN_BYTES).len();
            token.truncate(end);
        }
        self.out.tokens.insert(token);
    }

    /// Splits `text` into words and pushes each with `prefix`. A message repeats most of its
    /// words: each token is built in one reused buffer and allocated only when it is new.
    fn words(&mut self, prefix: &str, text: &str) {
        let mut token = String::new();
        for word in text.split(|c: char| !is_word_char(c)) {
            if self.full() {
                self.out.truncated = true;
                return;
            }
            let word = word.trim_matches(|c: char| matches!(c, '.' | '-' | '\'' | '!' | '?'));
            let ascii = word.is_ascii();
            let chars = if ascii {
                word.len()
            } else {
                word.chars().count()
            };
            if chars < self.limits.min_word_chars {
                continue;
            }
            if chars > self.limits.max_word_chars {
                let first = word.chars().next().unwrap_or('?');
                self.push(format!("{prefix}skip:{first} {}", chars / 10 * 10));
                continue;
            }
            token.clear();
            token.push_str(prefix);
            if ascii {
                let start = token.len();
                token.push_str(word);
                token[start..].make_ascii_lowercase();
            } else {
                token.push_str(&word.to_lowercase());
            }
            if !self.out.tokens.contains(clip(&token, MAX_TOKEN_BYTES)) {
                self.push(token.clone());
            }
        }
    }
}

/// Letters, digits, and the punctuation that belongs inside words ("don't", "x-ray",
/// "$100", "3.5", "free!!").
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '\'' | '-' | '$' | '.' | '!' | '?' | '_')
}

/// Tokenizes a raw message (as stored: CRLF line ends, headers then body).
pub fn tokenize(raw: &[u8], limits: &Limits) -> Tokens {
    let mut sink = Sink {
        limits,
        out: Tokens::default(),
    };
    let raw = if raw.len() > limits.max_message_bytes {
        sink.out.truncated = true;
        &raw[..limits.max_message_bytes]
    } else {
        raw
    };
    let Some(message) = MessageParser::default().parse(raw) else {
        // Not even a header block: the bytes as text.
        sink.words("", &String::from_utf8_lossy(raw));
        return sink.out;
    };
    // RFC 5322 3.6.2: the author; RFC 5322 3.6.5: the subject.
    if let Some(subject) = message.subject() {
        sink.words("subject:", subject);
    }
    for (field, list) in [("from", message.from()), ("reply-to", message.reply_to())] {
        for addr in list.into_iter().flat_map(|l| l.iter()) {
            if let Some(address) = addr.address() {
                let address = address.to_lowercase();
                if let Some((_, domain)) = address.rsplit_once('@') {
                    sink.push(format!("{field}-domain:{domain}"));
                }
                sink.push(format!("{field}:{address}"));
            }
            if let Some(name) = addr.name() {
                sink.words(&format!("{field}-name:"), name);
            }
        }
    }
    // A few header fields whose presence or value is telling (RFC 2045 4: MIME-Version; the
    // mailer; the content type of the top part).
    for (name, value) in message.headers_raw() {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "x-mailer" | "user-agent" => {
                let v: String = value.trim().chars().take(40).collect();
                sink.push(format!("{lower}:{}", v.to_lowercase()));
            }
            "content-type" => {
                let v = value.split(';').next().unwrap_or("").trim().to_lowercase();
                sink.push(format!("content-type:{v}"));
            }
            _ => {}
        }
        if sink.full() {
            break;
        }
    }
    // Every text part, plain and HTML (both sides of a multipart/alternative: spam often
    // says different things in each), decoded (RFC 2045 6) and converted to text.
    let mut budget = limits.max_text_bytes;
    for part in &message.parts {
        if budget == 0 {
            sink.out.truncated = true;
            break;
        }
        let text: Cow<'_, str> = match &part.body {
            PartType::Text(text) => Cow::Borrowed(text.as_ref()),
            // The HTML read is bounded too: markup is mostly thrown away.
            PartType::Html(html) => Cow::Owned(html_to_text(clip(html, budget.saturating_mul(4)))),
            _ => continue,
        };
        let clipped = clip(&text, budget);
        if clipped.len() < text.len() {
            sink.out.truncated = true;
        }
        budget -= clipped.len();
        urls(&mut sink, clipped);
        sink.words("", clipped);
        if sink.full() {
            break;
        }
    }
    for part in message.attachments() {
        if let Some(ct) = part.content_type() {
            let sub = ct.subtype().unwrap_or("");
            sink.push(format!("attachment:{}/{}", ct.ctype(), sub).to_lowercase());
        }
        if let Some(name) = part.attachment_name() {
            if let Some((_, ext)) = name.rsplit_once('.') {
                let ext: String = ext.chars().take(10).collect();
                sink.push(format!("attachment-ext:{}", ext.to_lowercase()));
            }
        }
        if sink.full() {
            break;
        }
    }
    sink.out
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub(crate) fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `url:<host>` for every URL in `text` (RFC 3986 3.2.2: the host, lowercased), as
/// [`crate::urls`] finds them for the URI block lists.
fn urls(sink: &mut Sink<'_>, text: &str) {
    let mut found = crate::urls::UrlHosts::default();
    crate::urls::scan(text, sink.limits.max_tokens, &mut found);
    for host in found.hosts {
        sink.push(format!("url:{host}"));
        if sink.full() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(raw: &str) -> Tokens {
        tokenize(raw.as_bytes(), &Limits::default())
    }

    #[test]
    fn headers_and_body_give_prefixed_tokens() {
        let t = toks(
            "From: Cheap Pills <deals@pharma.example>\r\nSubject: FREE money now\r\n\r\nClick https://Win.Example/x to claim your prize!\r\n",
        );
        for want in [
            "subject:free",
            "subject:money",
            "from:deals@pharma.example",
            "from-domain:pharma.example",
            "from-name:cheap",
            "url:win.example",
            "claim",
            "prize",
            "click",
        ] {
            assert!(
                t.tokens.contains(want),
                "{want} missing from {:?}",
                t.tokens
            );
        }
        assert!(!t.truncated);
    }

    #[test]
    fn mime_parts_are_decoded() {
        let raw = "From: a@b.example\r\nSubject: =?utf-8?B?w7xiZXJyYXNjaHVuZw==?=\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQgbWVldGluZw==\r\n--XX\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>agenda=20item</p>\r\n--XX--\r\n";
        let t = toks(raw);
        assert!(t.tokens.contains("subject:überraschung"), "{:?}", t.tokens);
        assert!(t.tokens.contains("meeting"), "{:?}", t.tokens);
        assert!(t.tokens.contains("agenda"), "{:?}", t.tokens);
    }

    #[test]
    fn long_words_become_skip_tokens() {
        let t = toks(&format!("Subject: x\r\n\r\n{}\r\n", "a".repeat(100)));
        assert!(t.tokens.contains("skip:a 100"), "{:?}", t.tokens);
        assert!(t.tokens.iter().all(|t| t.len() < 64));
    }

    #[test]
    fn token_count_and_input_are_bounded() {
        let body: String = (0..20_000).map(|i| format!("word{i} ")).collect();
        let raw = format!("Subject: many\r\n\r\n{body}\r\n");
        let limits = Limits {
            max_tokens: 500,
            ..Limits::default()
        };
        let t = tokenize(raw.as_bytes(), &limits);
        assert_eq!(t.tokens.len(), 500);
        assert!(t.truncated);
        let small = Limits {
            max_message_bytes: 100,
            ..Limits::default()
        };
        let t = tokenize(raw.as_bytes(), &small);
        assert!(t.truncated);
        assert!(t.tokens.len() < 30);
        let text = Limits {
            max_text_bytes: 1000,
            ..Limits::default()
        };
        let t = tokenize(raw.as_bytes(), &text);
        assert!(t.tokens.len() < 200, "{}", t.tokens.len());
    }

    #[test]
    fn every_token_is_bounded() {
        // Found by the filter_tokenize fuzz target: a From address of any length.
        let long = "x".repeat(5000);
        let t = toks(&format!(
            "From: <a@{long}.example>\r\nSubject: s\r\n\r\nhttp://{long}.example/\r\n"
        ));
        assert!(t.tokens.iter().all(|t| t.len() <= MAX_TOKEN_BYTES), "{t:?}");
        assert!(t.tokens.iter().any(|t| t.starts_with("from-domain:xxx")));
    }

    #[test]
    fn garbage_does_not_panic() {
        for raw in [
            &b""[..],
            b"\r\n\r\n",
            b"\xff\xfe\x00",
            b"Subject: =?x?Q?\r\n\r\nhttp://",
        ] {
            let _ = tokenize(raw, &Limits::default());
        }
    }
}
