//! Deterministic test messages: message `i` of seed `s` is the same bytes in every run, so both
//! servers get identical mailboxes. Sizes vary around 4-20 KiB; 70% are text/plain, 20%
//! multipart/alternative (text + HTML), 10% multipart/mixed with a base64 attachment. Every
//! message has From, To, Subject, Date, Message-ID and MIME headers, CRLF line ends, lines of at
//! most 76 characters (RFC 5322 2.1.1 recommends 78).

use base64::Engine as _;

/// First Date: 2024-01-01T00:00:00Z; message `i` is about `(i % 2,000,000) * 317` seconds later.
const EPOCH_2024: i64 = 1_704_067_200;
const LINE: usize = 76;

/// Subjects draw from these words; a SUBJECT search for one of them matches about 8% of messages.
pub const SUBJECT_WORDS: &[&str] = &[
    "invoice",
    "meeting",
    "report",
    "quarterly",
    "budget",
    "review",
    "release",
    "schedule",
    "project",
    "update",
    "contract",
    "delivery",
    "holiday",
    "training",
    "security",
    "backup",
    "server",
    "migration",
    "proposal",
    "feedback",
    "agenda",
    "minutes",
    "travel",
    "expenses",
    "hiring",
    "roadmap",
    "incident",
    "outage",
    "customer",
    "support",
    "ticket",
    "renewal",
    "license",
    "payment",
    "reminder",
    "workshop",
    "newsletter",
    "survey",
    "results",
    "launch",
    "design",
    "draft",
    "approval",
    "deadline",
    "planning",
    "offsite",
    "inventory",
    "shipment",
    "audit",
    "compliance",
    "policy",
    "benefits",
    "payroll",
    "vendor",
    "quote",
    "order",
    "status",
    "weekly",
    "monthly",
    "annual",
    "summary",
    "notes",
    "question",
    "request",
];

const BODY_WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "with",
    "was",
    "on",
    "be",
    "at",
    "by",
    "this",
    "have",
    "from",
    "or",
    "we",
    "will",
    "please",
    "find",
    "attached",
    "regards",
    "thanks",
    "next",
    "week",
    "team",
    "would",
    "like",
    "discuss",
    "before",
    "friday",
    "monday",
    "office",
    "call",
    "let",
    "me",
    "know",
    "if",
    "you",
    "any",
    "questions",
    "about",
    "our",
    "plan",
    "numbers",
    "figures",
    "should",
    "could",
    "also",
    "after",
    "review",
    "update",
    "report",
    "meeting",
    "project",
    "budget",
    "customer",
    "support",
    "server",
    "backup",
    "release",
    "schedule",
    "shared",
    "document",
    "comments",
    "changes",
    "agreed",
];

const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "ve", "zu", "bri", "dal", "fen", "gor", "hul",
    "jex",
];

const FIRST: &[&str] = &[
    "Alice", "Bob", "Carol", "David", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory",
    "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter", "Zoe",
];
const LAST: &[&str] = &[
    "Smith", "Jones", "Garcia", "Miller", "Davis", "Lopez", "Wilson", "Moore", "Taylor", "Lee",
];
const DOMAINS: &[&str] = &[
    "example.test",
    "corp.test",
    "mail.test",
    "partner.test",
    "vendor.test",
    "lists.test",
];

/// splitmix64: small, fast and good enough to vary test data.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// A rare word (one of 4096): bodies contain a few, so a TEXT search for one matches few
/// messages and has to read every body in its range.
pub fn rare_word(rng: &mut Rng) -> String {
    let mut w = String::new();
    for _ in 0..3 {
        w.push_str(rng.pick(SYLLABLES));
    }
    w
}

pub struct Message {
    pub bytes: Vec<u8>,
    /// RFC 9051 date-time for APPEND, equal to the Date header.
    pub internal_date: String,
    /// Seconds since the Unix epoch of the Date header (Maildir file times and names).
    pub unix_time: i64,
}

/// Message number `index` of `seed`, addressed to `to`.
pub fn generate(seed: u64, index: u64, to: &str) -> Message {
    let mut rng = Rng::new(seed.wrapping_mul(0x1000_0000_01b3) ^ index);
    // Dates stay within about 20 years (a server may reject far-future dates), so numbers
    // beyond 2,000,000 (the mix's appends) wrap around.
    let time = EPOCH_2024 + ((index % 2_000_000) as i64) * 317 + rng.below(300) as i64;
    let target = 4096 + rng.below(16 * 1024) as usize;
    let first = rng.pick(FIRST);
    let last = rng.pick(LAST);
    let domain = rng.pick(DOMAINS);
    let mut subject = String::new();
    if rng.below(4) == 0 {
        subject.push_str("Re: ");
    }
    let words = 3 + rng.below(5);
    for i in 0..words {
        if i > 0 {
            subject.push(' ');
        }
        subject.push_str(rng.pick(SUBJECT_WORDS));
    }
    let mut head = format!(
        "Return-Path: <{f}.{l}@{domain}>\r\n\
         From: {first} {last} <{f}.{l}@{domain}>\r\n\
         To: <{to}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{index:016x}.{r:08x}@{domain}>\r\n\
         MIME-Version: 1.0\r\n",
        f = first.to_ascii_lowercase(),
        l = last.to_ascii_lowercase(),
        date = rfc5322_date(time),
        r = rng.next_u64() as u32,
    );
    let shape = rng.below(10);
    let mut body = Vec::with_capacity(target);
    let boundary = format!("=_imap-load_{index:x}_{:x}", rng.next_u64() as u32);
    if shape < 7 {
        head.push_str("Content-Type: text/plain; charset=us-ascii\r\n\r\n");
        let budget = target.saturating_sub(head.len());
        text(&mut rng, budget, &mut body);
    } else if shape < 9 {
        // RFC 2046 5.1.4: alternatives, the plain one first.
        head.push_str(&format!(
            "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n"
        ));
        let budget = target.saturating_sub(head.len()) / 2;
        let mut plain = Vec::new();
        text(&mut rng, budget, &mut plain);
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(&plain);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n<html><body>\r\n"
            )
            .as_bytes(),
        );
        for para in plain.split(|&b| b == b'\n').filter(|l| l.len() > 2) {
            body.extend_from_slice(b"<p>\r\n");
            body.extend_from_slice(para.strip_suffix(b"\r").unwrap_or(para));
            body.extend_from_slice(b"\r\n</p>\r\n");
        }
        body.extend_from_slice(format!("</body></html>\r\n--{boundary}--\r\n").as_bytes());
    } else {
        head.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
        ));
        let budget = target.saturating_sub(head.len());
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
                .as_bytes(),
        );
        text(&mut rng, budget / 3, &mut body);
        let raw: Vec<u8> = (0..budget / 2).map(|_| rng.next_u64() as u8).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: application/octet-stream; name=\"data-{index}.bin\"\r\n\
                 Content-Disposition: attachment; filename=\"data-{index}.bin\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n"
            )
            .as_bytes(),
        );
        for chunk in b64.as_bytes().chunks(LINE) {
            body.extend_from_slice(chunk);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    }
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&body);
    Message {
        bytes,
        internal_date: imap_date(time),
        unix_time: time,
    }
}

/// Paragraphs of words, `budget` bytes or a little more, lines of at most 76 characters. Two
/// percent of the words are rare words.
fn text(rng: &mut Rng, budget: usize, out: &mut Vec<u8>) {
    let start = out.len();
    let mut line = String::with_capacity(LINE + 16);
    while out.len() - start < budget {
        let word = if rng.below(50) == 0 {
            rare_word(rng)
        } else {
            rng.pick(BODY_WORDS).to_string()
        };
        if !line.is_empty() && line.len() + 1 + word.len() > LINE {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
            line.clear();
            if rng.below(8) == 0 {
                out.extend_from_slice(b"\r\n");
            }
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// (year, month 1-12, day) of days since 1970-01-01 (H. Hinnant's civil_from_days).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn split(t: i64) -> (i64, u32, u32, i64, i64, i64, usize) {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    (
        y,
        m,
        d,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
        days.rem_euclid(7) as usize,
    )
}

/// RFC 5322 3.3 date-time.
pub fn rfc5322_date(t: i64) -> String {
    let (y, m, d, hh, mm, ss, wd) = split(t);
    format!(
        "{}, {d:02} {} {y} {hh:02}:{mm:02}:{ss:02} +0000",
        WEEKDAYS[wd],
        MONTHS[(m - 1) as usize]
    )
}

/// RFC 9051 9 date-time (APPEND): "dd-Mon-yyyy hh:mm:ss +zzzz".
pub fn imap_date(t: i64) -> String {
    let (y, m, d, hh, mm, ss, _) = split(t);
    format!(
        "{d:02}-{}-{y} {hh:02}:{mm:02}:{ss:02} +0000",
        MONTHS[(m - 1) as usize]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(EPOCH_2024), "Mon, 01 Jan 2024 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(EPOCH_2024 + 60 * 86_400 + 3723),
            "Fri, 01 Mar 2024 01:02:03 +0000"
        );
        assert_eq!(
            imap_date(EPOCH_2024 + 59 * 86_400),
            "29-Feb-2024 00:00:00 +0000"
        );
    }

    #[test]
    fn deterministic_varied_and_well_formed() {
        let mut sizes = Vec::new();
        let mut shapes = [0usize; 3];
        for i in 0..400 {
            let a = generate(7, i, "bench@bench.test");
            let b = generate(7, i, "bench@bench.test");
            assert_eq!(a.bytes, b.bytes);
            assert_ne!(a.bytes, generate(8, i, "bench@bench.test").bytes);
            let text = std::str::from_utf8(&a.bytes).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            for h in [
                "From: ",
                "To: <bench@bench.test>",
                "Subject: ",
                "Date: ",
                "Message-ID: <",
            ] {
                assert!(head.contains(h), "{h} missing in {head}");
            }
            for line in text.split("\r\n") {
                assert!(line.len() <= 78, "long line {line:?}");
                assert!(!line.contains('\r') && !line.contains('\n'));
            }
            assert!(text.ends_with("\r\n"));
            if head.contains("multipart/alternative") {
                shapes[1] += 1;
                assert!(body.contains("text/html"));
            } else if head.contains("multipart/mixed") {
                shapes[2] += 1;
                assert!(body.contains("Content-Transfer-Encoding: base64"));
            } else {
                shapes[0] += 1;
            }
            sizes.push(a.bytes.len());
        }
        assert!(shapes.iter().all(|&n| n > 20), "shapes {shapes:?}");
        assert!(
            sizes.iter().all(|&s| (3500..24_000).contains(&s)),
            "{sizes:?}"
        );
        let min = *sizes.iter().min().unwrap();
        let max = *sizes.iter().max().unwrap();
        assert!(min < 6000 && max > 18_000, "sizes {min}..{max}");
    }
}
