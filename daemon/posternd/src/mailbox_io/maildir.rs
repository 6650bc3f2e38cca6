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

/// IMAP flags of a Maildir file name (`...:2,FRS`). Unknown letters (Dovecot's lowercase
/// keyword letters, experimental ones) are ignored.
pub fn flags_from_name(name: &[u8]) -> Vec<String> {
    let mut flags = Vec::new();
    if let Some(info) = info_of(name) {
        for &(letter, flag) in &FLAG_LETTERS {
            if info.contains(&letter) {
                add_flag(&mut flags, flag);
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

/// The info part (`2,FRS`) of the flags; keywords other than $Forwarded have no letter.
pub fn info_from_flags(flags: &[String]) -> String {
    let mut info = String::from("2,");
    for &(letter, flag) in &FLAG_LETTERS {
        if has_flag(flags, flag) {
            info.push(letter as char);
        }
    }
    info
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
                flags: flags_from_name(name.as_bytes()),
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
    prepared: Vec<String>,
    sequence: u64,
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

    fn folder(&mut self, mailbox: &str) -> Result<PathBuf> {
        let dir = if !self.all || mailbox == "INBOX" {
            self.root.clone()
        } else {
            self.root.join(mailbox_to_folder(mailbox))
        };
        if !self.prepared.iter().any(|m| m == mailbox) {
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
            self.prepared.push(mailbox.to_string());
        }
        Ok(dir)
    }
}

impl ExportWriter for Writer {
    fn write(&mut self, message: &ExportMessage) -> Result<()> {
        let dir = self.folder(&message.mailbox)?;
        self.sequence += 1;
        // Maildir delivery: write under tmp/, then rename into cur/.
        let tmp = dir
            .join("tmp")
            .join(format!("{}.{}.export", std::process::id(), self.sequence));
        let name = format!("{}:{}", message.uid, info_from_flags(&message.flags));
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
        super::sync_filesystem(&self.root).map_err(|e| anyhow!("{e:#}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_letters_both_ways() {
        assert_eq!(
            flags_from_name(b"1700000000.M1P2.host,U=7:2,DFPRST"),
            vec![
                "\\Draft",
                "\\Flagged",
                "$Forwarded",
                "\\Answered",
                "\\Seen",
                "\\Deleted"
            ]
        );
        assert_eq!(flags_from_name(b"17.x:2,"), Vec::<String>::new());
        assert_eq!(flags_from_name(b"17.x"), Vec::<String>::new());
        // Dovecot keyword letters and unknown letters are ignored; "!" as info separator.
        assert_eq!(flags_from_name(b"17.x!2,Sab"), vec!["\\Seen"]);
        let flags: Vec<String> = ["\\Seen", "\\answered", "$Forwarded", "$Junk"]
            .map(String::from)
            .into();
        assert_eq!(info_from_flags(&flags), "2,PRS");
        assert_eq!(info_from_flags(&[]), "2,");
        for letters in ["2,", "2,S", "2,DFPRST", "2,RT"] {
            let name = format!("1:{letters}");
            assert_eq!(info_from_flags(&flags_from_name(name.as_bytes())), letters);
        }
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
