//! Maildir and Maildir++ (<https://cr.yp.to/proto/maildir.html>, Courier's Maildir++).
//!
//! Import: the messages of `cur/` and `new/`, with the info flags of `:2,FLAGS` names, the
//! file mtime as internal date (the name's leading timestamp when the mtime is unusable),
//! and LF line ends turned into CRLF. Subfolders `.Sent`, `.Lists.rust` become the mailboxes
//! `Sent`, `Lists/rust` (under `--mailbox NAME` when given: `NAME/Sent`).
//!
//! Export: `cur/<uid>:2,<FLAGS>` holding the stored bytes unchanged, mtime = internal date;
//! with `--all` one Maildir++ folder per mailbox (INBOX at the root). A "." inside a name
//! level is written `%2E` (and "%" as `%25`), since "." is Maildir++'s delimiter.
//!
//! Keywords: `$Forwarded` is the standard letter `P`; other keywords use Dovecot's scheme
//! (both ways): the folder's `dovecot-keywords` file maps the letters `a`..`z` to keywords
//! (lines `N keyword`, N = 0 for `a`), and a message's letters follow the system letters in
//! its info (`:2,FSac`). A folder has at most 26 such keywords: on export, keywords beyond
//! the 26th of a folder are left out (the CLI says how many); an existing `dovecot-keywords`
//! in the target folder is kept and extended.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use indicatif::ProgressBar;

use super::{add_flag, has_flag, lf_to_crlf, ExportMessage, ExportWriter, ImportMessage, Sink};

/// Maildir info letters (in the ASCII order the spec requires) and their IMAP flags.
pub const FLAG_LETTERS: [(u8, &str); 6] = [
    (b'D', "\\Draft"),
    (b'F', "\\Flagged"),
    (b'P', "$Forwarded"),
    (b'R', "\\Answered"),
    (b'S', "\\Seen"),
    (b'T', "\\Deleted"),
];

/// Dovecot's keyword table of a Maildir folder.
pub const KEYWORDS_FILE: &str = "dovecot-keywords";
/// Keyword letters `a`..`z`.
pub const MAX_KEYWORDS: usize = 26;

/// A folder's keyword letters (`dovecot-keywords`): slot N is the letter `a` + N.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Keywords {
    slots: Vec<Option<String>>,
}

impl Keywords {
    /// Parses `dovecot-keywords` as Dovecot does: lines `N keyword`; lines that are not
    /// that, numbers beyond 25, and keywords that are not IMAP atoms are skipped.
    pub fn parse(text: &[u8]) -> Keywords {
        let mut keywords = Keywords::default();
        for line in text.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(space) = line.iter().position(|&b| b == b' ') else {
                continue;
            };
            let (Ok(number), Ok(name)) = (
                std::str::from_utf8(&line[..space]),
                std::str::from_utf8(&line[space + 1..]),
            ) else {
                continue;
            };
            let Ok(index) = number.parse::<usize>() else {
                continue;
            };
            if index < MAX_KEYWORDS && is_keyword(name) && keywords.letter_of(name).is_none() {
                if keywords.slots.len() <= index {
                    keywords.slots.resize(index + 1, None);
                }
                keywords.slots[index] = Some(name.to_string());
            }
        }
        keywords
    }

    /// The `dovecot-keywords` of the Maildir folder `dir`; empty when there is none.
    pub fn read(dir: &Path) -> Result<Keywords> {
        let path = dir.join(KEYWORDS_FILE);
        match std::fs::read(&path) {
            Ok(text) => Ok(Keywords::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Keywords::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The file's text: one `N keyword` line per letter in use.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (index, name) in self.slots.iter().enumerate() {
            if let Some(name) = name {
                out.push_str(&format!("{index} {name}\n"));
            }
        }
        out
    }

    /// The keyword of letter `letter` (`a`..`z`).
    pub fn keyword(&self, letter: u8) -> Option<&str> {
        let index = usize::from(letter.checked_sub(b'a')?);
        self.slots.get(index)?.as_deref()
    }

    /// The letter of `keyword` (keywords compare case-insensitively).
    pub fn letter_of(&self, keyword: &str) -> Option<u8> {
        let index = self.slots.iter().position(|s| {
            s.as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case(keyword))
        })?;
        Some(b'a' + u8::try_from(index).ok()?)
    }

    /// The letter of `keyword`, given the first free one if it has none yet (the bool says
    /// the table changed); None when all 26 letters are taken.
    pub fn assign(&mut self, keyword: &str) -> Option<(u8, bool)> {
        if let Some(letter) = self.letter_of(keyword) {
            return Some((letter, false));
        }
        let index = match self.slots.iter().position(Option::is_none) {
            Some(index) => index,
            None if self.slots.len() < MAX_KEYWORDS => {
                self.slots.push(None);
                self.slots.len() - 1
            }
            None => return None,
        };
        self.slots[index] = Some(keyword.to_string());
        Some((b'a' + u8::try_from(index).ok()?, true))
    }
}

/// RFC 9051 9: a flag-keyword is an atom.
fn is_keyword(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('\\')
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"(){%*\"]".contains(&b))
}

/// IMAP flags of a Maildir file name (`...:2,FRSab`): the system letters, and the keywords
/// that `keywords` gives the letters `a`..`z`. Other letters are ignored.
pub fn flags_from_name(name: &[u8], keywords: &Keywords) -> Vec<String> {
    let mut flags = Vec::new();
    if let Some(info) = info_of(name) {
        for &(letter, flag) in &FLAG_LETTERS {
            if info.contains(&letter) {
                add_flag(&mut flags, flag);
            }
        }
        for &letter in info {
            if let Some(keyword) = keywords.keyword(letter) {
                add_flag(&mut flags, keyword);
            }
        }
    }
    flags
}

/// The flag letters after `:2,` (or `!2,`, used where ":" is not allowed in names).
fn info_of(name: &[u8]) -> Option<&[u8]> {
    let at = name.windows(3).rposition(|w| w == b":2," || w == b"!2,")?;
    Some(&name[at + 3..])
}

/// The info part (`2,FRSac`) of the flags: the system letters, then the keyword letters
/// in ASCII order (as Dovecot writes them), letters given to new keywords in `keywords`.
/// The bools say whether `keywords` changed and whether a keyword was left out (no letter
/// left).
pub fn info_from_flags(flags: &[String], keywords: &mut Keywords) -> (String, bool, bool) {
    let mut info = String::from("2,");
    for &(letter, flag) in &FLAG_LETTERS {
        if has_flag(flags, flag) {
            info.push(letter as char);
        }
    }
    let (mut changed, mut dropped) = (false, false);
    let mut letters = Vec::new();
    for flag in flags {
        if flag.starts_with('\\') || flag.eq_ignore_ascii_case("$Forwarded") {
            continue;
        }
        match keywords.assign(flag) {
            Some((letter, new)) => {
                changed |= new;
                letters.push(letter);
            }
            None => dropped = true,
        }
    }
    letters.sort_unstable();
    letters.dedup();
    info.extend(letters.into_iter().map(char::from));
    (info, changed, dropped)
}

/// The leading Unix timestamp of a Maildir name (`1700000000.M1P2.host`).
pub fn name_timestamp(name: &[u8]) -> Option<i64> {
    let end = name.iter().position(|&b| b == b'.')?;
    std::str::from_utf8(&name[..end]).ok()?.parse().ok()
}

/// Maildir++ folder directory name (without the leading ".") to a mailbox name.
pub fn folder_to_mailbox(folder: &OsStr) -> Result<String> {
    let Some(text) = folder.to_str() else {
        bail!(
            "folder name {:?} is not UTF-8 (mailbox names must be)",
            folder.to_string_lossy()
        );
    };
    let levels: Vec<String> = text.split('.').map(unescape_level).collect();
    let name = levels.join("/");
    super::check_mailbox_name(&name).with_context(|| format!("folder .{text}"))?;
    Ok(name)
}

/// Mailbox name to a Maildir++ folder directory name (with the leading ".").
pub fn mailbox_to_folder(name: &str) -> String {
    let mut out = String::new();
    for level in name.split('/') {
        out.push('.');
        for c in level.chars() {
            match c {
                '%' => out.push_str("%25"),
                '.' => out.push_str("%2E"),
                c => out.push(c),
            }
        }
    }
    out
}

fn unescape_level(level: &str) -> String {
    level
        .replace("%2E", ".")
        .replace("%2e", ".")
        .replace("%25", "%")
}

/// One message file found by [`scan`].
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    pub flags: Vec<String>,
    pub internal_date: i64,
    pub size: u64,
}

/// The folders of a Maildir and their messages (paths only).
#[derive(Debug)]
pub struct Scan {
    pub root: PathBuf,
    pub folders: Vec<(String, Vec<Entry>)>,
    pub messages: u64,
    pub bytes: u64,
}

fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir() || dir.join("new").is_dir()
}

/// Lists the Maildir at `root` and its Maildir++ subfolders. The root becomes `base` (or
/// INBOX); a subfolder `.a.b` becomes `base/a/b` (or `a/b`). Fails on anything unusable
/// (not a Maildir, a non-UTF-8 folder name) before a single message is imported.
pub fn scan(root: &Path, base: Option<&str>) -> Result<Scan> {
    if !is_maildir(root) {
        bail!("{}: not a Maildir (no cur/ or new/)", root.display());
    }
    let mut folders = vec![(base.unwrap_or("INBOX").to_string(), list_messages(root)?)];
    let mut subs = Vec::new();
    for entry in std::fs::read_dir(root).with_context(|| format!("reading {}", root.display()))? {
        let entry = entry.with_context(|| format!("reading {}", root.display()))?;
        let name = entry.file_name();
        let bytes = name.as_bytes();
        if bytes.len() < 2 || bytes[0] != b'.' || bytes == b".." || !is_maildir(&entry.path()) {
            continue;
        }
        let folder = OsStr::from_bytes(&bytes[1..]);
        let mailbox =
            folder_to_mailbox(folder).with_context(|| format!("{}", entry.path().display()))?;
        let mailbox = match base {
            Some(base) => format!("{base}/{mailbox}"),
            None => mailbox,
        };
        subs.push((mailbox, entry.path()));
    }
    subs.sort();
    for (mailbox, path) in subs {
        if folders.iter().any(|(m, _)| *m == mailbox) {
            bail!("{}: two folders map to mailbox {mailbox:?}", path.display());
        }
        folders.push((mailbox, list_messages(&path)?));
    }
    let messages = folders.iter().map(|(_, e)| e.len() as u64).sum();
    let bytes = folders
        .iter()
        .flat_map(|(_, e)| e.iter().map(|e| e.size))
        .sum();
    Ok(Scan {
        root: root.to_path_buf(),
        folders,
        messages,
        bytes,
    })
}

fn unix_seconds(time: SystemTime) -> Option<i64> {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).ok(),
        Err(e) => i64::try_from(e.duration().as_secs()).ok().map(|s| -s),
    }
}

/// The messages of one Maildir folder's cur/ and new/, oldest first (name as tie-break).
fn list_messages(folder: &Path) -> Result<Vec<Entry>> {
    let keywords = Keywords::read(folder)?;
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        let dir = folder.join(sub);
        if !dir.is_dir() {
            continue;
        }
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let name = entry.file_name();
            if name.as_bytes().first() == Some(&b'.') {
                continue;
            }
            let path = entry.path();
            let meta = std::fs::metadata(&path)
                .with_context(|| format!("{}: reading metadata", path.display()))?;
            if !meta.is_file() {
                continue;
            }
            let internal_date = meta
                .modified()
                .ok()
                .and_then(unix_seconds)
                .filter(|&t| t > 0)
                .or_else(|| name_timestamp(name.as_bytes()))
                .unwrap_or(0);
            out.push(Entry {
                flags: flags_from_name(name.as_bytes(), &keywords),
                path,
                internal_date,
                size: meta.len(),
            });
        }
    }
    out.sort_by(|a, b| {
        (a.internal_date, a.path.as_os_str()).cmp(&(b.internal_date, b.path.as_os_str()))
    });
    Ok(out)
}

/// Reads every scanned message (one at a time) into `sink`.
pub fn import(scan: &Scan, sink: &mut dyn Sink, bar: &ProgressBar) -> Result<()> {
    let mut done = 0u64;
    for (mailbox, entries) in &scan.folders {
        for entry in entries {
            let raw = std::fs::read(&entry.path)
                .with_context(|| format!("{}: reading", entry.path.display()))?;
            if raw.len() > super::MAX_MESSAGE {
                bail!("{}: message too large", entry.path.display());
            }
            let mut body = Vec::with_capacity(raw.len() + raw.len() / 32);
            lf_to_crlf(&raw, &mut body);
            drop(raw);
            sink.submit(ImportMessage {
                mailbox: mailbox.clone(),
                flags: entry.flags.clone(),
                internal_date: entry.internal_date,
                body,
                origin: entry.path.display().to_string(),
            })?;
            done += 1;
            bar.inc(entry.size);
            bar.set_message(format!("{done}/{} messages", scan.messages));
        }
    }
    Ok(())
}

/// Writes exported messages as Maildir (one mailbox at the root) or Maildir++ (`all`).
pub struct Writer {
    root: PathBuf,
    all: bool,
    prepared: Vec<Folder>,
    sequence: u64,
}

/// A folder the export writes to.
struct Folder {
    mailbox: String,
    dir: PathBuf,
    keywords: Keywords,
    /// Messages whose keywords found no letter.
    dropped: u64,
}

impl Writer {
    pub fn new(root: &Path, all: bool) -> Result<Writer> {
        Ok(Writer {
            root: root.to_path_buf(),
            all,
            prepared: Vec::new(),
            sequence: 0,
        })
    }

    /// The index in `prepared` of `mailbox`'s folder, created on first use.
    fn folder(&mut self, mailbox: &str) -> Result<usize> {
        if let Some(i) = self.prepared.iter().position(|f| f.mailbox == mailbox) {
            return Ok(i);
        }
        let dir = if !self.all || mailbox == "INBOX" {
            self.root.clone()
        } else {
            self.root.join(mailbox_to_folder(mailbox))
        };
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        if dir != self.root {
            // Maildir++: a subfolder is marked by this empty file.
            let marker = dir.join("maildirfolder");
            std::fs::write(&marker, b"")
                .with_context(|| format!("creating {}", marker.display()))?;
        }
        // Letters already given in this folder keep their meaning.
        let keywords = Keywords::read(&dir)?;
        self.prepared.push(Folder {
            mailbox: mailbox.to_string(),
            dir,
            keywords,
            dropped: 0,
        });
        Ok(self.prepared.len() - 1)
    }
}

/// Replaces `dir`'s `dovecot-keywords` (written aside, then renamed over it).
fn write_keywords(dir: &Path, keywords: &Keywords, sequence: u64) -> Result<()> {
    let path = dir.join(KEYWORDS_FILE);
    let tmp = dir
        .join("tmp")
        .join(format!("{}.{sequence}.keywords", std::process::id()));
    std::fs::write(&tmp, keywords.render())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

impl ExportWriter for Writer {
    fn write(&mut self, message: &ExportMessage) -> Result<()> {
        let index = self.folder(&message.mailbox)?;
        self.sequence += 1;
        let folder = &mut self.prepared[index];
        let dir = folder.dir.clone();
        let (info, changed, dropped) = info_from_flags(&message.flags, &mut folder.keywords);
        if dropped {
            folder.dropped += 1;
        }
        if changed {
            // Before the message that uses the new letter.
            write_keywords(&dir, &folder.keywords, self.sequence)?;
        }
        // Maildir delivery: write under tmp/, then rename into cur/.
        let tmp = dir
            .join("tmp")
            .join(format!("{}.{}.export", std::process::id(), self.sequence));
        let name = format!("{}:{info}", message.uid);
        let dest = dir.join("cur").join(&name);
        let mut file =
            std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        file.write_all(&message.body)
            .with_context(|| format!("writing {}", tmp.display()))?;
        let mtime = if message.internal_date >= 0 {
            UNIX_EPOCH + Duration::from_secs(message.internal_date.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_secs(message.internal_date.unsigned_abs())
        };
        file.set_modified(mtime)
            .with_context(|| format!("setting the mtime of {}", tmp.display()))?;
        drop(file);
        std::fs::rename(&tmp, &dest)
            .with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if self.prepared.is_empty() {
            // An empty mailbox still exports as an (empty) Maildir.
            let mailbox = "INBOX".to_string();
            self.folder(&mailbox)?;
        }
        for folder in &self.prepared {
            if folder.dropped > 0 {
                eprintln!(
                    "postern: {}: {} messages lost keywords: a Maildir folder has letters for \
                     {MAX_KEYWORDS} keywords (dovecot-keywords)",
                    folder.dir.display(),
                    folder.dropped
                );
            }
        }
        super::sync_filesystem(&self.root).map_err(|e| anyhow!("{e:#}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_letters_both_ways() {
        let none = Keywords::default();
        assert_eq!(
            flags_from_name(b"1700000000.M1P2.host,U=7:2,DFPRST", &none),
            vec![
                "\\Draft",
                "\\Flagged",
                "$Forwarded",
                "\\Answered",
                "\\Seen",
                "\\Deleted"
            ]
        );
        assert_eq!(flags_from_name(b"17.x:2,", &none), Vec::<String>::new());
        assert_eq!(flags_from_name(b"17.x", &none), Vec::<String>::new());
        // Keyword letters without a dovecot-keywords entry and unknown letters are ignored;
        // "!" as info separator.
        assert_eq!(flags_from_name(b"17.x!2,Sab", &none), vec!["\\Seen"]);
        let flags: Vec<String> = ["\\Seen", "\\answered", "$Forwarded"]
            .map(String::from)
            .into();
        let mut keywords = Keywords::default();
        assert_eq!(
            info_from_flags(&flags, &mut keywords),
            ("2,PRS".to_string(), false, false)
        );
        assert_eq!(
            keywords,
            Keywords::default(),
            "$Forwarded is P, not a keyword letter"
        );
        assert_eq!(
            info_from_flags(&[], &mut keywords),
            ("2,".to_string(), false, false)
        );
        for letters in ["2,", "2,S", "2,DFPRST", "2,RT"] {
            let name = format!("1:{letters}");
            let flags = flags_from_name(name.as_bytes(), &none);
            assert_eq!(info_from_flags(&flags, &mut keywords).0, letters);
        }
    }

    #[test]
    fn keyword_letters_both_ways() {
        let mut keywords = Keywords::default();
        let flags: Vec<String> = ["$Junk", "\\Seen", "Work", "$Forwarded", "\\Flagged"]
            .map(String::from)
            .into();
        assert_eq!(
            info_from_flags(&flags, &mut keywords),
            ("2,FPSab".to_string(), true, false)
        );
        assert_eq!(keywords.render(), "0 $Junk\n1 Work\n");
        // Known keywords (any case) keep their letter; letters sort after the system ones.
        let flags: Vec<String> = ["work", "Later", "$junk", "\\Answered"]
            .map(String::from)
            .into();
        assert_eq!(
            info_from_flags(&flags, &mut keywords),
            ("2,Rabc".to_string(), true, false)
        );
        assert_eq!(
            flags_from_name(b"9:2,FPSab", &keywords),
            vec!["\\Flagged", "$Forwarded", "\\Seen", "$Junk", "Work"]
        );
        assert_eq!(
            Keywords::parse(keywords.render().as_bytes()),
            keywords,
            "render and parse agree"
        );

        // Dovecot's file: gaps, CRLF, junk lines, out-of-range numbers, non-atoms skipped.
        let dovecot = Keywords::parse(
            b"0 $Label1\n2 NonJunk\r\nbad line\nx y\n26 TooFar\n3 two words\n4 \n5 $label1\n",
        );
        assert_eq!(dovecot.keyword(b'a'), Some("$Label1"));
        assert_eq!(dovecot.keyword(b'b'), None);
        assert_eq!(dovecot.keyword(b'c'), Some("NonJunk"));
        assert_eq!(dovecot.keyword(b'd'), None);
        assert_eq!(dovecot.keyword(b'f'), None, "a keyword has one letter");
        assert_eq!(dovecot.keyword(b'z'), None);
        assert_eq!(
            flags_from_name(b"1.M2.host:2,Sacz", &dovecot),
            vec!["\\Seen", "$Label1", "NonJunk"]
        );
        // New keywords fill the gaps first.
        let mut dovecot = dovecot;
        assert_eq!(dovecot.assign("New"), Some((b'b', true)));

        // 26 letters, then keywords are left out (and said so).
        let mut full = Keywords::default();
        let many: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
        let (info, changed, dropped) = info_from_flags(&many, &mut full);
        assert_eq!(info, format!("2,{}", ('a'..='z').collect::<String>()));
        assert!(changed && dropped);
        assert_eq!(full.keyword(b'z'), Some("k25"));
        assert_eq!(full.assign("k3"), Some((b'd', false)));
        assert_eq!(full.assign("k27"), None);
    }

    #[test]
    fn timestamps_from_names() {
        assert_eq!(
            name_timestamp(b"1700000000.M1P2.host:2,S"),
            Some(1_700_000_000)
        );
        assert_eq!(name_timestamp(b"abc.def"), None);
    }

    #[test]
    fn folder_names() {
        assert_eq!(folder_to_mailbox(OsStr::new("Sent")).unwrap(), "Sent");
        assert_eq!(
            folder_to_mailbox(OsStr::new("Lists.rust")).unwrap(),
            "Lists/rust"
        );
        assert_eq!(mailbox_to_folder("Lists/rust"), ".Lists.rust");
        assert_eq!(mailbox_to_folder("v1.2/50%"), ".v1%2E2.50%25");
        assert_eq!(
            folder_to_mailbox(OsStr::new("v1%2E2.50%25")).unwrap(),
            "v1.2/50%"
        );
        assert!(folder_to_mailbox(OsStr::new("a..b")).is_err());
        let err = folder_to_mailbox(OsStr::from_bytes(b"Caf\xe9")).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }

    #[test]
    fn scan_reads_folders_flags_and_dates() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("md");
        for f in ["", ".Sent", ".Lists.rust"] {
            for sub in ["cur", "new", "tmp"] {
                std::fs::create_dir_all(root.join(f).join(sub)).unwrap();
            }
        }
        let write = |path: PathBuf, body: &[u8], mtime: u64| {
            std::fs::write(&path, body).unwrap();
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(UNIX_EPOCH + Duration::from_secs(mtime))
                .unwrap();
        };
        write(root.join("cur/2.b:2,S"), b"B\n", 200);
        write(root.join("new/1.a"), b"A\n", 100);
        // A non-UTF-8 message file name is fine: only folder names become mailbox names.
        write(
            root.join("cur").join(OsStr::from_bytes(b"3.\xff:2,RF")),
            b"C\r\n",
            300,
        );
        write(root.join(".Lists.rust/cur/5.x:2,T"), b"R\n", 50);
        let scan = scan(&root, None).unwrap();
        let names: Vec<&str> = scan.folders.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["INBOX", "Lists/rust", "Sent"]);
        let inbox = &scan.folders[0].1;
        assert_eq!(
            inbox.iter().map(|e| e.internal_date).collect::<Vec<_>>(),
            [100, 200, 300]
        );
        assert_eq!(inbox[2].flags, vec!["\\Flagged", "\\Answered"]);
        assert_eq!(scan.messages, 4);
        assert_eq!(scan.bytes, 2 + 2 + 3 + 2);

        let under = super::scan(&root, Some("Old")).unwrap();
        let names: Vec<&str> = under.folders.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Old", "Old/Lists/rust", "Old/Sent"]);

        assert!(super::scan(&dir.path().join("nothing"), None)
            .unwrap_err()
            .to_string()
            .contains("not a Maildir"));
        std::fs::create_dir_all(root.join(OsStr::from_bytes(b".Caf\xe9/cur"))).unwrap();
        let err = format!("{:#}", super::scan(&root, None).unwrap_err());
        assert!(err.contains("not UTF-8") && err.contains(".Caf"), "{err}");
    }
}
