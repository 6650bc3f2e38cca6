//! Sender allow and block lists: global ones from the configuration (`[filter] allow`,
//! `block`) and per-user ones kept by the daemon (`postern filter allow|block`).
//!
//! An entry is one of:
//! - an address, `bob@example.com` (compared case-insensitively, RFC 5321 2.4 lets only
//!   the receiving host decide on the local part; every mail system treats it so for lists);
//! - a domain, `example.com` or `@example.com`: the domain and its subdomains;
//! - a regular expression between slashes, `/^promo-.*@/`: matched case-insensitively against
//!   the whole address (the `regex` crate: linear time, no backtracking, size-bounded).
//!
//! A message's senders are its envelope sender (MAIL FROM, RFC 5321 4.1.1.2) and the
//! addresses of its From field (RFC 5322 3.6.2); an entry matches when it matches any.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Longest entry accepted, in bytes.
pub const MAX_ENTRY_LEN: usize = 512;
/// Compiled size limit of one regular expression (the regex crate's `size_limit`).
const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// Entries per list of one user.
pub const MAX_ENTRIES: usize = 1000;

#[derive(Debug, Clone)]
pub enum Entry {
    Address(String),
    Domain(String),
    Regex(regex::Regex),
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.to_string() == other.to_string()
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Address(a) => f.write_str(a),
            Entry::Domain(d) => write!(f, "@{d}"),
            Entry::Regex(r) => write!(f, "/{}/", r.as_str()),
        }
    }
}

impl Entry {
    /// Parses one entry; the error says why, for `postern` and `config check`.
    pub fn parse(text: &str) -> Result<Entry, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty entry".into());
        }
        if text.len() > MAX_ENTRY_LEN {
            return Err(format!("entry longer than {MAX_ENTRY_LEN} bytes"));
        }
        if text.chars().any(char::is_control) {
            return Err("control characters in entry".into());
        }
        if let Some(inner) = text.strip_prefix('/') {
            let Some(pattern) = inner.strip_suffix('/') else {
                return Err(format!("{text:?}: a regular expression must end with /"));
            };
            if pattern.is_empty() {
                return Err("empty regular expression".into());
            }
            return regex::RegexBuilder::new(pattern)
                .case_insensitive(true)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map(Entry::Regex)
                .map_err(|e| format!("invalid regular expression {pattern:?}: {e}"));
        }
        if text.chars().any(char::is_whitespace) {
            return Err(format!("{text:?}: spaces in an address or domain"));
        }
        let lower = text.to_lowercase();
        if let Some(domain) = lower.strip_prefix('@') {
            if !valid_domain(domain) {
                return Err(format!("{text:?} is not a domain (@example.com)"));
            }
            return Ok(Entry::Domain(domain.trim_end_matches('.').to_string()));
        }
        let domain = lower.as_str();
        if let Some((local, host)) = domain.rsplit_once('@') {
            // A quoted local part may hold "@" (RFC 5321 4.1.2); a list entry may not: it
            // would be ambiguous with the @domain form.
            if local.is_empty() || local.contains('@') || !valid_domain(host) {
                return Err(format!("{text:?} is not an address (local@domain)"));
            }
            return Ok(Entry::Address(domain.to_string()));
        }
        if !valid_domain(domain) {
            return Err(format!(
                "{text:?} is not a domain, an address or a /regular expression/"
            ));
        }
        Ok(Entry::Domain(domain.trim_end_matches('.').to_string()))
    }

    /// Whether this entry matches `address` (any case).
    pub fn matches(&self, address: &str) -> bool {
        let lower = address.trim().to_lowercase();
        match self {
            Entry::Address(a) => lower == *a,
            Entry::Domain(d) => {
                let host = lower.rsplit_once('@').map(|(_, h)| h).unwrap_or(&lower);
                let host = host.trim_end_matches('.');
                host == d
                    || host
                        .strip_suffix(d.as_str())
                        .is_some_and(|p| p.ends_with('.'))
            }
            Entry::Regex(r) => r.is_match(&lower),
        }
    }
}

/// RFC 1035 2.3.1 preferred syntax, loosely: dot-separated labels of letters, digits and
/// hyphens (and non-ASCII, for internationalised names in UTF-8).
fn valid_domain(d: &str) -> bool {
    let d = d.trim_end_matches('.');
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '-' || c == '_' || !c.is_ascii())
        })
}

/// One scope's allow and block entries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SenderLists {
    pub allow: Vec<Entry>,
    pub block: Vec<Entry>,
}

/// Which list decided, if any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ListMatch {
    #[default]
    None,
    Allowed {
        scope: &'static str,
        entry: String,
    },
    Blocked {
        scope: &'static str,
        entry: String,
    },
}

impl SenderLists {
    /// Parses text entries; the first bad one is the error, with its index.
    pub fn parse(allow: &[String], block: &[String]) -> Result<SenderLists, (usize, bool, String)> {
        let parse = |list: &[String], is_allow: bool| {
            list.iter()
                .enumerate()
                .map(|(i, t)| Entry::parse(t).map_err(|e| (i, is_allow, e)))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(SenderLists {
            allow: parse(allow, true)?,
            block: parse(block, false)?,
        })
    }

    fn first(list: &[Entry], senders: &[&str]) -> Option<String> {
        list.iter()
            .find(|e| senders.iter().any(|s| !s.is_empty() && e.matches(s)))
            .map(Entry::to_string)
    }
}

/// Decides with the user's lists first, then the global ones: the user's allow list, the
/// user's block list, the global allow list, the global block list. A user can thus receive
/// from a sender the site blocks, and block one the site allows.
pub fn check(user: &SenderLists, global: &SenderLists, senders: &[&str]) -> ListMatch {
    if let Some(entry) = SenderLists::first(&user.allow, senders) {
        return ListMatch::Allowed {
            scope: "user",
            entry,
        };
    }
    if let Some(entry) = SenderLists::first(&user.block, senders) {
        return ListMatch::Blocked {
            scope: "user",
            entry,
        };
    }
    if let Some(entry) = SenderLists::first(&global.allow, senders) {
        return ListMatch::Allowed {
            scope: "global",
            entry,
        };
    }
    if let Some(entry) = SenderLists::first(&global.block, senders) {
        return ListMatch::Blocked {
            scope: "global",
            entry,
        };
    }
    ListMatch::None
}

/// The per-user lists as kept on disk (`<data_dir>/filter/lists.json`): entries as text,
/// users by address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListFile {
    pub users: BTreeMap<String, UserEntries>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserEntries {
    pub allow: Vec<String>,
    pub block: Vec<String>,
}

impl ListFile {
    /// Reads the file; a missing file is empty lists.
    pub fn load(path: &Path) -> Result<ListFile, String> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ListFile::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Replaces the file atomically (temporary file, fsync, rename, directory fsync).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        use std::io::Write;
        let json = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let tmp = path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The compiled lists of `user` (entries that no longer parse are skipped).
    pub fn lists_of(&self, user: &str) -> SenderLists {
        let Some(u) = self.users.get(user) else {
            return SenderLists::default();
        };
        SenderLists {
            allow: u
                .allow
                .iter()
                .filter_map(|e| Entry::parse(e).ok())
                .collect(),
            block: u
                .block
                .iter()
                .filter_map(|e| Entry::parse(e).ok())
                .collect(),
        }
    }

    /// Adds an entry (normalised) to a user's allow or block list; false if it was there.
    pub fn add(&mut self, user: &str, allow: bool, entry: &str) -> Result<bool, String> {
        let entry = Entry::parse(entry)?.to_string();
        let u = self.users.entry(user.to_string()).or_default();
        let list = if allow { &mut u.allow } else { &mut u.block };
        if list.contains(&entry) {
            return Ok(false);
        }
        if list.len() >= MAX_ENTRIES {
            return Err(format!("a list holds at most {MAX_ENTRIES} entries"));
        }
        list.push(entry);
        Ok(true)
    }

    /// Removes an entry; false if it was not there.
    pub fn remove(&mut self, user: &str, allow: bool, entry: &str) -> Result<bool, String> {
        let entry = Entry::parse(entry)?.to_string();
        let Some(u) = self.users.get_mut(user) else {
            return Ok(false);
        };
        let list = if allow { &mut u.allow } else { &mut u.block };
        let before = list.len();
        list.retain(|e| *e != entry);
        let removed = list.len() != before;
        if u.allow.is_empty() && u.block.is_empty() {
            self.users.remove(user);
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_match() {
        let a = Entry::parse("Bob@Example.COM").unwrap();
        assert_eq!(a.to_string(), "bob@example.com");
        assert!(a.matches("BOB@example.com"));
        assert!(!a.matches("bobby@example.com"));
        let d = Entry::parse("@example.com").unwrap();
        assert_eq!(d, Entry::parse("example.com").unwrap());
        assert!(d.matches("x@example.com"));
        assert!(d.matches("x@mail.example.com"));
        assert!(!d.matches("x@badexample.com"));
        let r = Entry::parse("/^promo-[0-9]+@/").unwrap();
        assert!(r.matches("PROMO-12@shop.example"));
        assert!(!r.matches("promo@shop.example"));
        for bad in [
            "", "/", "//", "/(/", "a b", "@", "x@", "@x@", "/abc", "a\nb@c.d",
        ] {
            assert!(Entry::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Entry::parse(&"a".repeat(600)).is_err());
        // Found by the filter_entry fuzz target: "@@...@le" printed as "@...@le", which
        // parsed as another entry. An "@" in a local part is refused.
        for bad in ["@@x.y", "a@b@c.d", "@a@b.c"] {
            assert!(Entry::parse(bad).is_err(), "{bad:?} accepted");
        }
        // What an entry prints parses back to it.
        for text in [
            "Bob@Example.COM",
            "@Example.COM.",
            "example.com",
            "/^x@/",
            "a.b-c_d@x.y",
        ] {
            let e = Entry::parse(text).unwrap();
            assert_eq!(Entry::parse(&e.to_string()).unwrap(), e);
        }
        // A regex too big to compile within the size limit is refused, not built.
        assert!(Entry::parse("/(a{1000}){1000}/").is_err());
    }

    #[test]
    fn precedence_user_first() {
        let global = SenderLists::parse(
            &["partner.example".into()],
            &["/^spam/".into(), "bad.example".into()],
        )
        .unwrap();
        let user = SenderLists::parse(&["friend@bad.example".into()], &["partner.example".into()])
            .unwrap();
        assert!(matches!(
            check(&user, &global, &["friend@bad.example"]),
            ListMatch::Allowed { scope: "user", .. }
        ));
        assert!(matches!(
            check(&user, &global, &["x@bad.example"]),
            ListMatch::Blocked {
                scope: "global",
                ..
            }
        ));
        assert!(matches!(
            check(&user, &global, &["x@partner.example"]),
            ListMatch::Blocked { scope: "user", .. }
        ));
        assert!(matches!(
            check(&SenderLists::default(), &global, &["x@partner.example"]),
            ListMatch::Allowed {
                scope: "global",
                ..
            }
        ));
        assert_eq!(
            check(&user, &global, &["", "nobody@else.example"]),
            ListMatch::None
        );
        assert!(matches!(
            check(&user, &global, &["", "spammer@else.example"]),
            ListMatch::Blocked { .. }
        ));
    }

    #[test]
    fn list_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lists.json");
        let mut f = ListFile::load(&path).unwrap();
        assert!(f.add("alice@x.test", true, "Friend@Y.test").unwrap());
        assert!(!f.add("alice@x.test", true, "friend@y.test").unwrap());
        assert!(f.add("alice@x.test", false, "/^x/").unwrap());
        assert!(f.add("alice@x.test", false, "/(/").is_err());
        f.save(&path).unwrap();
        let mut back = ListFile::load(&path).unwrap();
        assert_eq!(back, f);
        assert_eq!(back.lists_of("alice@x.test").allow.len(), 1);
        assert!(back.remove("alice@x.test", true, "friend@y.test").unwrap());
        assert!(!back.remove("alice@x.test", true, "friend@y.test").unwrap());
        assert!(back.remove("alice@x.test", false, "/^x/").unwrap());
        assert!(back.users.is_empty());
    }
}
