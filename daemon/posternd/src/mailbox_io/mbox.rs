//! mboxrd (RFC 4155 and the mboxrd convention): messages separated by From_ lines, every
//! body line matching `>*From ` quoted with one more ">" on write and unquoted on read.
//!
//! Import reads a line at a time (never the whole file): a From_ line starts a message when
//! it is the file's first line or follows an empty line; the empty line before the next
//! From_ (or the end of the file) is the separator, not message content. Line ends become
//! CRLF. The From_ line's date is the internal date. The header fields `Status` (R: \Seen),
//! `X-Status` (A: \Answered, F: \Flagged, T: \Draft, D: \Deleted) and `X-Keywords`
//! (keywords, e.g. $Forwarded) give the flags and are removed from the stored message.
//!
//! Export writes `From <Return-Path or MAILER-DAEMON> <asctime of the internal date>`, the
//! message with LF line ends and those three fields (from the stored flags, replacing any
//! the message had) at the end of the header, then an empty line. A stored message with CRLF
//! line ends and a final CRLF survives export and import byte for byte.
//!
//! `--all`: the export path is a directory with one `<mailbox>.mbox` file per mailbox
//! ("Lists/rust" -> `Lists/rust.mbox`); import of a directory reads every `*.mbox` below it.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;

use super::{add_flag, has_flag, ExportMessage, ExportWriter, ImportMessage, Sink};

/// Errors of the mbox reader, with the file and line.
#[derive(Debug, thiserror::Error)]
pub enum MboxError {
    #[error("{path}:{line}: not an mbox file: the first line does not start with \"From \"")]
    MissingFromLine { path: String, line: u64 },
    #[error(
        "{path}:{line}: the file ends inside a line (truncated?); this message was not imported"
    )]
    Truncated { path: String, line: u64 },
    #[error("{path}:{line}: message larger than {max} bytes")]
    TooLarge { path: String, line: u64, max: usize },
    #[error("{path}:{line}: read error: {source}")]
    Io {
        path: String,
        line: u64,
        #[source]
        source: std::io::Error,
    },
}

/// One message as read from an mbox, before it is given a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MboxMessage {
    /// Line number of its From_ line.
    pub line: u64,
    pub sender: String,
    /// From the From_ line; None when it had no readable date.
    pub date: Option<i64>,
    pub flags: Vec<String>,
    /// CRLF line ends, quoting undone, Status/X-Status/X-Keywords removed.
    pub body: Vec<u8>,
}

/// Streaming mboxrd reader.
pub struct Reader<R> {
    input: R,
    path: String,
    line_no: u64,
    /// The From_ line that starts the next message, with its line number.
    next_from: Option<(Vec<u8>, u64)>,
    started: bool,
    max_message: usize,
    /// Bytes consumed so far (progress).
    pub position: u64,
}

fn is_from_line(line: &[u8]) -> bool {
    line.starts_with(b"From ")
}

fn is_blank(line: &[u8]) -> bool {
    line == b"\n" || line == b"\r\n"
}

/// `>*From ` lines: the mboxrd quoting set.
fn is_quoted_from(line: &[u8]) -> bool {
    let gt = line.iter().take_while(|&&b| b == b'>').count();
    line[gt..].starts_with(b"From ")
}

/// The header field name of a header line (`Status` of `Status: RO`), if it is one.
fn field_name(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    (!name.is_empty() && name.iter().all(|&b| b.is_ascii_graphic())).then_some(name)
}

const FLAG_FIELDS: [&[u8]; 3] = [b"status", b"x-status", b"x-keywords"];

fn is_flag_field(line: &[u8]) -> bool {
    field_name(line).is_some_and(|n| FLAG_FIELDS.iter().any(|f| n.eq_ignore_ascii_case(f)))
}

/// Flags of the Status / X-Status / X-Keywords field values.
fn apply_flag_field(line: &[u8], flags: &mut Vec<String>) {
    let Some(name) = field_name(line) else {
        return;
    };
    let value = String::from_utf8_lossy(&line[name.len() + 1..]);
    if name.eq_ignore_ascii_case(b"status") {
        if value.contains('R') {
            add_flag(flags, "\\Seen");
        }
    } else if name.eq_ignore_ascii_case(b"x-status") {
        for (letter, flag) in [
            ('A', "\\Answered"),
            ('F', "\\Flagged"),
            ('T', "\\Draft"),
            ('D', "\\Deleted"),
        ] {
            if value.contains(letter) {
                add_flag(flags, flag);
            }
        }
    } else {
        for keyword in value.split([' ', '\t', ',', '\r', '\n']) {
            // RFC 9051 9: flag-keyword is an atom; system flags cannot be set this way.
            if !keyword.is_empty()
                && !keyword.starts_with('\\')
                && keyword
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"(){%*\"]".contains(&b))
            {
                add_flag(flags, keyword);
            }
        }
    }
}

impl<R: BufRead> Reader<R> {
    pub fn new(input: R, path: impl Into<String>) -> Reader<R> {
        Reader {
            input,
            path: path.into(),
            line_no: 0,
            next_from: None,
            started: false,
            max_message: super::MAX_MESSAGE,
            position: 0,
        }
    }

    /// Lowers the per-message limit (tests).
    pub fn with_max_message(mut self, max: usize) -> Self {
        self.max_message = max;
        self
    }

    fn read_line(&mut self, line: &mut Vec<u8>) -> Result<bool, MboxError> {
        line.clear();
        let n = self
            .input
            .read_until(b'\n', line)
            .map_err(|source| MboxError::Io {
                path: self.path.clone(),
                line: self.line_no + 1,
                source,
            })?;
        if n == 0 {
            return Ok(false);
        }
        self.line_no += 1;
        self.position += n as u64;
        Ok(true)
    }

    /// The next message, or None at the end of the file.
    pub fn next_message(&mut self) -> Option<Result<MboxMessage, MboxError>> {
        self.read_message().transpose()
    }

    fn read_message(&mut self) -> Result<Option<MboxMessage>, MboxError> {
        let mut line = Vec::new();
        if !self.started {
            self.started = true;
            // Leading empty lines are tolerated (some tools write one).
            loop {
                if !self.read_line(&mut line)? {
                    return Ok(None);
                }
                if !is_blank(&line) {
                    break;
                }
            }
            if !is_from_line(&line) {
                return Err(MboxError::MissingFromLine {
                    path: self.path.clone(),
                    line: self.line_no,
                });
            }
            self.next_from = Some((line.clone(), self.line_no));
        }
        let Some((from, from_line)) = self.next_from.take() else {
            return Ok(None);
        };
        let from_text = String::from_utf8_lossy(&from);
        let rest = from_text["From ".len()..].trim_end();
        let (sender, date_text) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
        let date = super::date::parse_asctime(date_text);

        let mut body = Vec::new();
        let mut flags = Vec::new();
        let mut in_header = true;
        let mut skipping_field = false;
        // The last line read was empty: it may be the separator before the next From_,
        // so it is held back until the next line shows what it is.
        let mut held_blank: Option<Vec<u8>> = None;
        loop {
            if !self.read_line(&mut line)? {
                break;
            }
            if held_blank.is_some() && is_from_line(&line) {
                self.next_from = Some((line.clone(), self.line_no));
                break;
            }
            if let Some(blank) = held_blank.take() {
                push_crlf(&mut body, &blank);
            }
            if !line.ends_with(b"\n") {
                return Err(MboxError::Truncated {
                    path: self.path.clone(),
                    line: self.line_no,
                });
            }
            if in_header {
                if is_blank(&line) {
                    in_header = false;
                    skipping_field = false;
                } else if skipping_field && matches!(line.first(), Some(b' ' | b'\t')) {
                    // A folded continuation of a removed flag field (RFC 5322 2.2.3).
                    apply_flag_field_continuation(&line, &mut flags);
                    continue;
                } else {
                    skipping_field = false;
                    if is_flag_field(&line) {
                        apply_flag_field(&line, &mut flags);
                        skipping_field = true;
                        continue;
                    }
                }
            }
            if is_blank(&line) {
                held_blank = Some(line.clone());
                continue;
            }
            // mboxrd: one ">" less on every quoted From_ line.
            let content: &[u8] = if line.first() == Some(&b'>') && is_quoted_from(&line) {
                &line[1..]
            } else {
                &line
            };
            push_crlf(&mut body, content);
            if body.len() > self.max_message {
                return Err(MboxError::TooLarge {
                    path: self.path.clone(),
                    line: self.line_no,
                    max: self.max_message,
                });
            }
        }
        // At the end of the file a held empty line is the final separator.
        Ok(Some(MboxMessage {
            line: from_line,
            sender: sender.to_string(),
            date,
            flags,
            body,
        }))
    }
}

fn apply_flag_field_continuation(line: &[u8], flags: &mut Vec<String>) {
    // Only X-Keywords is long enough to be folded in practice.
    let mut joined = b"X-Keywords:".to_vec();
    joined.extend_from_slice(line);
    apply_flag_field(&joined, flags);
}

/// Appends one line with its LF end made CRLF.
fn push_crlf(body: &mut Vec<u8>, line: &[u8]) {
    match line {
        [head @ .., b'\r', b'\n'] => {
            body.extend_from_slice(head);
            body.extend_from_slice(b"\r\n");
        }
        [head @ .., b'\n'] => {
            body.extend_from_slice(head);
            body.extend_from_slice(b"\r\n");
        }
        _ => body.extend_from_slice(line),
    }
}

/// The mbox files to import and the mailbox each goes to.
#[derive(Debug)]
pub struct Scan {
    pub files: Vec<(String, PathBuf)>,
    pub bytes: u64,
}

/// A single file goes to `base` (or INBOX); a directory's `a/b.mbox` files to `base/a/b`
/// (or `a/b`). Checks that every file exists and starts like an mbox.
pub fn scan(path: &Path, base: Option<&str>) -> Result<Scan> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut files = Vec::new();
    if meta.is_dir() {
        collect_dir(path, path, base, &mut files)?;
        files.sort();
        if files.is_empty() {
            bail!("{}: no *.mbox files in this directory", path.display());
        }
    } else {
        files.push((base.unwrap_or("INBOX").to_string(), path.to_path_buf()));
    }
    let mut bytes = 0;
    for (_, file) in &files {
        bytes += std::fs::metadata(file)
            .with_context(|| format!("{}: cannot open", file.display()))?
            .len();
        // Fail early on a file that is not an mbox at all.
        let mut reader = Reader::new(
            BufReader::new(
                File::open(file).with_context(|| format!("{}: cannot open", file.display()))?,
            )
            .take(64 << 10),
            file.display().to_string(),
        );
        if let Some(Err(e @ MboxError::MissingFromLine { .. })) = reader.next_message() {
            return Err(e.into());
        }
    }
    Ok(Scan { files, bytes })
}

fn collect_dir(
    root: &Path,
    dir: &Path,
    base: Option<&str>,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_dir(root, &path, base, out)?;
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("mbox") {
            continue;
        }
        let relative = path.strip_prefix(root).unwrap_or(&path).with_extension("");
        let Some(name) = relative.to_str() else {
            bail!(
                "{}: file name is not UTF-8 (mailbox names must be)",
                path.display()
            );
        };
        let name = match base {
            Some(base) => format!("{base}/{name}"),
            None => name.to_string(),
        };
        super::check_mailbox_name(&name).with_context(|| path.display().to_string())?;
        out.push((name, path));
    }
    Ok(())
}

/// Streams every scanned file into `sink`, one message at a time.
pub fn import(scan: &Scan, sink: &mut dyn Sink, bar: &ProgressBar) -> Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut count = 0u64;
    let mut undated = 0u64;
    for (mailbox, path) in &scan.files {
        let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
        let mut reader = Reader::new(
            BufReader::with_capacity(256 << 10, file),
            path.display().to_string(),
        );
        let mut last = 0;
        while let Some(message) = reader.next_message() {
            let message = message?;
            if message.date.is_none() {
                undated += 1;
                if undated <= 10 {
                    eprintln!(
                        "postern: {}:{}: no readable date on the From_ line; using the current time",
                        path.display(),
                        message.line
                    );
                }
            }
            sink.submit(ImportMessage {
                mailbox: mailbox.clone(),
                flags: message.flags,
                internal_date: message.date.unwrap_or(now),
                body: message.body,
                origin: format!("{}:{}", path.display(), message.line),
            })?;
            count += 1;
            bar.inc(reader.position - last);
            last = reader.position;
            bar.set_message(format!("{count} messages"));
        }
    }
    Ok(())
}

/// The envelope sender for the From_ line: the Return-Path of the header, or MAILER-DAEMON.
fn sender_of(body: &[u8]) -> String {
    for line in body.split(|&b| b == b'\n') {
        if line == b"\r" || line.is_empty() {
            break;
        }
        if field_name(line).is_some_and(|n| n.eq_ignore_ascii_case(b"return-path")) {
            let value = String::from_utf8_lossy(&line["Return-Path:".len()..]);
            let address = value.trim().trim_start_matches('<').trim_end_matches('>');
            if !address.is_empty() && !address.contains(char::is_whitespace) {
                return address.to_string();
            }
            break;
        }
    }
    "MAILER-DAEMON".to_string()
}

/// The Status / X-Status / X-Keywords lines (LF) for the flags; empty fields are omitted.
pub fn flag_fields(flags: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    if has_flag(flags, "\\Seen") {
        out.extend_from_slice(b"Status: RO\n");
    }
    let mut x_status = String::new();
    for (letter, flag) in [
        ('A', "\\Answered"),
        ('F', "\\Flagged"),
        ('T', "\\Draft"),
        ('D', "\\Deleted"),
    ] {
        if has_flag(flags, flag) {
            x_status.push(letter);
        }
    }
    if !x_status.is_empty() {
        out.extend_from_slice(format!("X-Status: {x_status}\n").as_bytes());
    }
    let keywords: Vec<&str> = flags
        .iter()
        .filter(|f| !f.starts_with('\\'))
        .map(String::as_str)
        .collect();
    if !keywords.is_empty() {
        out.extend_from_slice(format!("X-Keywords: {}\n", keywords.join(" ")).as_bytes());
    }
    out
}

/// Writes one message in mboxrd form (From_ line, quoted body with LF ends, separator).
pub fn write_message(out: &mut impl Write, message: &ExportMessage) -> std::io::Result<()> {
    writeln!(
        out,
        "From {} {}",
        sender_of(&message.body),
        super::date::asctime(message.internal_date)
    )?;
    let fields = flag_fields(&message.flags);
    let mut in_header = true;
    let mut skipping_field = false;
    let mut rest: &[u8] = &message.body;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        rest = tail;
        let content = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"))
            .unwrap_or(line);
        if in_header {
            if content.is_empty() {
                in_header = false;
                out.write_all(&fields)?;
            } else if skipping_field && matches!(content.first(), Some(b' ' | b'\t')) {
                continue;
            } else {
                skipping_field = is_flag_field(content);
                if skipping_field {
                    continue;
                }
            }
        }
        if is_quoted_from(content) {
            out.write_all(b">")?;
        }
        out.write_all(content)?;
        out.write_all(b"\n")?;
    }
    if in_header {
        // A message that is only a header: the fields still go at its end.
        out.write_all(&fields)?;
    }
    // The empty line that separates messages (RFC 4155 2).
    out.write_all(b"\n")
}

/// Writes exported messages into one mbox file, or one file per mailbox under a directory.
pub struct Writer {
    path: PathBuf,
    all: bool,
    current: Option<(String, PathBuf, BufWriter<File>)>,
}

impl Writer {
    pub fn new(path: &Path, all: bool) -> Result<Writer> {
        let mut writer = Writer {
            path: path.to_path_buf(),
            all,
            current: None,
        };
        if all {
            std::fs::create_dir_all(path)
                .with_context(|| format!("creating {}", path.display()))?;
        } else {
            writer.open("", path.to_path_buf())?;
        }
        Ok(writer)
    }

    fn open(&mut self, mailbox: &str, path: PathBuf) -> Result<()> {
        self.close()?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        self.current = Some((
            mailbox.to_string(),
            path,
            BufWriter::with_capacity(256 << 10, file),
        ));
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some((_, path, writer)) = self.current.take() {
            let file = writer
                .into_inner()
                .map_err(|e| e.into_error())
                .with_context(|| format!("writing {}", path.display()))?;
            file.sync_all()
                .with_context(|| format!("syncing {}", path.display()))?;
        }
        Ok(())
    }
}

impl ExportWriter for Writer {
    fn write(&mut self, message: &ExportMessage) -> Result<()> {
        if self.all && self.current.as_ref().map(|c| c.0.as_str()) != Some(message.mailbox.as_str())
        {
            let path = self.path.join(format!("{}.mbox", message.mailbox));
            self.open(&message.mailbox, path)?;
        }
        let Some((_, path, out)) = self.current.as_mut() else {
            bail!("no mbox file open");
        };
        write_message(out, message).with_context(|| format!("writing {}", path.display()))
    }

    fn finish(&mut self) -> Result<()> {
        self.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8]) -> Result<Vec<MboxMessage>, MboxError> {
        let mut reader = Reader::new(input, "test.mbox");
        let mut out = Vec::new();
        while let Some(m) = reader.next_message() {
            out.push(m?);
        }
        Ok(out)
    }

    fn export(body: &[u8], flags: &[&str], date: i64) -> Vec<u8> {
        let mut out = Vec::new();
        write_message(
            &mut out,
            &ExportMessage {
                mailbox: "INBOX".into(),
                uid: 1,
                flags: flags.iter().map(|f| f.to_string()).collect(),
                internal_date: date,
                body: body.to_vec(),
            },
        )
        .unwrap();
        out
    }

    #[test]
    fn from_quoting_any_depth() {
        let body = b"Subject: q\r\n\r\nFrom here\r\n>From there\r\n>>>From deep\r\nFromage\r\n> From not\r\n";
        let mbox = export(body, &[], 0);
        assert_eq!(
            mbox,
            b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nSubject: q\n\n>From here\n>>From there\n>>>>From deep\nFromage\n> From not\n\n"
        );
        let back = read_all(&mbox).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].body, body);
        assert_eq!(back[0].date, Some(0));
        assert_eq!(back[0].sender, "MAILER-DAEMON");
    }

    #[test]
    fn flags_round_trip_through_status_fields() {
        let body = b"Return-Path: <a@b.test>\r\nSubject: f\r\n\r\nbody\r\n";
        let flags = [
            "\\Seen",
            "\\Answered",
            "\\Flagged",
            "\\Draft",
            "\\Deleted",
            "$Forwarded",
            "$Junk",
        ];
        let mbox = export(body, &flags, 1_700_000_000);
        let text = String::from_utf8(mbox.clone()).unwrap();
        assert!(
            text.starts_with("From a@b.test Tue Nov 14 22:13:20 2023\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "Subject: f\nStatus: RO\nX-Status: AFTD\nX-Keywords: $Forwarded $Junk\n\nbody\n\n"
            ),
            "{text}"
        );
        let back = read_all(&mbox).unwrap();
        assert_eq!(back[0].body, body);
        let mut got = back[0].flags.clone();
        got.sort();
        let mut want: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(back[0].date, Some(1_700_000_000));
    }

    #[test]
    fn stored_status_fields_are_replaced_on_export() {
        // A sender cannot make a message look read by writing its own Status field.
        let body = b"Status: RO\r\nX-Keywords: a\r\n b\r\nSubject: s\r\n\r\nx\r\n";
        let mbox = export(body, &[], 0);
        assert!(mbox.ends_with(b"\nSubject: s\n\nx\n\n"));
        let back = read_all(&mbox).unwrap();
        assert!(back[0].flags.is_empty());
        assert_eq!(back[0].body, b"Subject: s\r\n\r\nx\r\n");
    }

    #[test]
    fn several_messages_and_separators() {
        let a = b"Subject: a\r\n\r\nA\r\n\r\n".to_vec(); // ends with an empty line
        let b = b"Subject: b\r\n\r\nFrom the body\r\n".to_vec();
        let c = b"Subject: c\r\n".to_vec(); // header only
        let mut mbox = Vec::new();
        for (i, m) in [&a, &b, &c].iter().enumerate() {
            mbox.extend(export(m, &[], i as i64 * 86_400));
        }
        let back = read_all(&mbox).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[0].body, a);
        assert_eq!(back[1].body, b);
        assert_eq!(back[2].body, c);
        assert_eq!(back[1].line, 7);
        assert_eq!(back[2].date, Some(2 * 86_400));
    }

    #[test]
    fn lf_input_and_lenient_from_lines() {
        let input = b"\nFrom someone@x Sat Jan  3 01:05:34 1996\nStatus: O\nSubject: x\n\nline\nFrom inside (no blank line before: body)\n\nFrom b@x Sat Jan  3 01:05:35 1996 +0000\n\nbody\n";
        let back = read_all(input).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(
            back[0].body,
            b"Subject: x\r\n\r\nline\r\nFrom inside (no blank line before: body)\r\n"
        );
        assert!(back[0].flags.is_empty(), "Status: O is not \\Seen");
        assert_eq!(back[1].body, b"\r\nbody\r\n");
        assert_eq!(back[1].line, 9);
    }

    #[test]
    fn missing_from_line() {
        let err = read_all(b"Subject: x\n\nbody\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "test.mbox:1: not an mbox file: the first line does not start with \"From \""
        );
        assert!(read_all(b"").unwrap().is_empty());
    }

    #[test]
    fn truncated_file() {
        let input = b"From a Thu Jan  1 00:00:00 1970\nSubject: a\n\nA\n\nFrom b Thu Jan  1 00:00:00 1970\nSubject: b\n\nhalf a li";
        let mut reader = Reader::new(&input[..], "t.mbox");
        let first = reader.next_message().unwrap().unwrap();
        assert_eq!(first.body, b"Subject: a\r\n\r\nA\r\n");
        let err = reader.next_message().unwrap().unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.mbox:9: the file ends inside a line (truncated?); this message was not imported"
        );
    }

    #[test]
    fn oversized_message() {
        let input = b"From a Thu Jan  1 00:00:00 1970\nSubject: a\n\n0123456789\n0123456789\n";
        let mut reader = Reader::new(&input[..], "big.mbox").with_max_message(20);
        let err = reader.next_message().unwrap().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("big.mbox:4: message larger than 20"),
            "{err}"
        );
    }

    #[test]
    fn non_utf8_content_passes_through() {
        let body = b"Subject: \xe9t\xe9\r\n\r\n\xff\xfe\r\n";
        let mbox = export(body, &["\\Seen"], 5);
        assert_eq!(read_all(&mbox).unwrap()[0].body, body);
        let input = b"From \xff\xfe Thu Jan  1 00:00:00 1970\nSubject: a\n\nA\n";
        let m = &read_all(input).unwrap()[0];
        assert_eq!(m.date, Some(0));
        assert_eq!(m.body, b"Subject: a\r\n\r\nA\r\n");
    }
}
