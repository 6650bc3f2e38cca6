//! GRUB's environment block (`grub-editenv` format): exactly 1024 bytes, the header line
//! `# GRUB Environment Block`, `key=value` lines, and `#` padding to the end. GRUB's
//! `save_env` rewrites the block in place and refuses a file of another size, so every write
//! here keeps the size and overwrites the file's bytes (no rename: GRUB may only write
//! blocks that already exist on vfat).

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

pub const SIZE: usize = 1024;
const HEADER: &str = "# GRUB Environment Block\n";

/// The variables of one block, in the order they appear (GRUB keeps insertion order; a
/// set of an existing key keeps its place).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GrubEnv {
    entries: Vec<(String, String)>,
}

impl GrubEnv {
    pub fn parse(block: &[u8]) -> Result<GrubEnv> {
        if block.len() != SIZE {
            bail!(
                "a GRUB environment block is {SIZE} bytes, this one {}",
                block.len()
            );
        }
        let Some(body) = block.strip_prefix(HEADER.as_bytes()) else {
            bail!("no `# GRUB Environment Block` header");
        };
        let text = std::str::from_utf8(body).context("the block is not UTF-8")?;
        let mut env = GrubEnv::default();
        for line in text.split('\n') {
            // Padding and comments start with '#'; the padding has no newline at its end.
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                bail!("line without '=' in the environment block: {line:?}");
            };
            env.set(key, &unescape(value))?;
        }
        Ok(env)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        if key.is_empty() || key.contains(['=', '\n', '#']) || key.starts_with(char::is_whitespace)
        {
            bail!("invalid GRUB environment variable name {key:?}");
        }
        if value.contains('\n') {
            bail!("a GRUB environment value cannot hold a newline ({key})");
        }
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_string(),
            None => self.entries.push((key.to_string(), value.to_string())),
        }
        Ok(())
    }

    pub fn unset(&mut self, key: &str) {
        self.entries.retain(|(k, _)| k != key);
    }

    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The 1024-byte block; an error when the variables do not fit.
    pub fn serialize(&self) -> Result<Vec<u8>> {
        let mut block = HEADER.as_bytes().to_vec();
        for (key, value) in &self.entries {
            block.extend_from_slice(key.as_bytes());
            block.push(b'=');
            block.extend_from_slice(escape(value).as_bytes());
            block.push(b'\n');
        }
        if block.len() > SIZE {
            bail!(
                "the GRUB environment does not fit in {SIZE} bytes ({} needed)",
                block.len()
            );
        }
        block.resize(SIZE, b'#');
        Ok(block)
    }
}

/// grub-editenv (grub-core/lib/envblk.c) puts a backslash before a backslash in a value
/// (and before a newline, which `set` refuses here: the init never stores one).
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\")
}

fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

pub fn read(path: &Path) -> Result<GrubEnv> {
    let mut block = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut block))
        .with_context(|| format!("reading {}", path.display()))?;
    GrubEnv::parse(&block).with_context(|| format!("parsing {}", path.display()))
}

/// Writes `env` over the file's bytes (creating it when missing) and fsyncs it.
pub fn write(path: &Path, env: &GrubEnv) -> Result<()> {
    let block = env.serialize()?;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&block)
        .and_then(|()| file.set_len(SIZE as u64))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads, changes and writes back (a missing file starts empty).
pub fn update(path: &Path, change: impl FnOnce(&mut GrubEnv) -> Result<()>) -> Result<GrubEnv> {
    let mut env = if path.exists() {
        read(path)?
    } else {
        GrubEnv::default()
    };
    change(&mut env)?;
    write(path, &env)?;
    Ok(env)
}

/// `postern-init grubenv get|set|unset|list FILE [KEY[=VALUE]...]`.
pub fn command(args: &[String]) -> Result<()> {
    let usage = "usage: postern-init grubenv get FILE KEY | set FILE KEY=VALUE... | unset FILE KEY... | list FILE";
    let (Some(action), Some(file)) = (args.first(), args.get(1)) else {
        bail!("{usage}");
    };
    let path = Path::new(file);
    let rest = &args[2..];
    match action.as_str() {
        "list" => {
            for (key, value) in read(path)?.entries() {
                println!("{key}={}", escape(value));
            }
        }
        "get" => {
            let [key] = rest else { bail!("{usage}") };
            match read(path)?.get(key) {
                Some(value) => println!("{value}"),
                None => bail!("{key} is not set in {file}"),
            }
        }
        "set" => {
            if rest.is_empty() {
                bail!("{usage}");
            }
            update(path, |env| {
                for assignment in rest {
                    let Some((key, value)) = assignment.split_once('=') else {
                        bail!("expected KEY=VALUE, got {assignment:?}");
                    };
                    env.set(key, value)?;
                }
                Ok(())
            })?;
        }
        "unset" => {
            update(path, |env| {
                rest.iter().for_each(|key| env.unset(key));
                Ok(())
            })?;
        }
        _ => bail!("{usage}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `grub-editenv FILE create; grub-editenv FILE set ORDER="A B" A_OK=1` writes.
    fn grub_editenv_block() -> Vec<u8> {
        let mut block = b"# GRUB Environment Block\nORDER=A B\nA_OK=1\n".to_vec();
        block.resize(SIZE, b'#');
        block
    }

    #[test]
    fn parses_what_grub_editenv_writes() {
        let env = GrubEnv::parse(&grub_editenv_block()).unwrap();
        assert_eq!(env.get("ORDER"), Some("A B"));
        assert_eq!(env.get("A_OK"), Some("1"));
        assert_eq!(env.get("B_OK"), None);
    }

    #[test]
    fn serializes_byte_for_byte_like_grub_editenv() {
        let mut env = GrubEnv::default();
        env.set("ORDER", "A B").unwrap();
        env.set("A_OK", "1").unwrap();
        assert_eq!(env.serialize().unwrap(), grub_editenv_block());
    }

    #[test]
    fn set_keeps_order_and_replaces_in_place() {
        let mut env = GrubEnv::parse(&grub_editenv_block()).unwrap();
        env.set("A_TRY", "2").unwrap();
        env.set("ORDER", "B A").unwrap();
        let keys: Vec<_> = env.entries().map(|(k, _)| k).collect();
        assert_eq!(keys, ["ORDER", "A_OK", "A_TRY"]);
        let again = GrubEnv::parse(&env.serialize().unwrap()).unwrap();
        assert_eq!(again, env);
        assert_eq!(again.get("ORDER"), Some("B A"));
    }

    #[test]
    fn escapes_round_trip() {
        let mut env = GrubEnv::default();
        env.set("X", "a\\b c").unwrap();
        let block = env.serialize().unwrap();
        assert!(std::str::from_utf8(&block)
            .unwrap()
            .contains("X=a\\\\b c\n"));
        assert_eq!(GrubEnv::parse(&block).unwrap().get("X"), Some("a\\b c"));
        assert!(env.set("Y", "two\nlines").is_err());
    }

    #[test]
    fn refuses_wrong_size_missing_header_and_overflow() {
        assert!(GrubEnv::parse(&grub_editenv_block()[..1000]).is_err());
        let mut block = vec![b'#'; SIZE];
        block[..5].copy_from_slice(b"ORDER");
        assert!(GrubEnv::parse(&block).is_err());
        let mut env = GrubEnv::default();
        env.set("BIG", &"x".repeat(SIZE)).unwrap();
        assert!(env.serialize().is_err());
        assert!(env.set("A=B", "1").is_err());
    }

    #[test]
    fn update_keeps_file_size_and_command_line_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("grubenv");
        std::fs::write(&file, grub_editenv_block()).unwrap();
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        command(&args(&["set", file.to_str().unwrap(), "A_OK=1", "A_TRY=0"])).unwrap();
        command(&args(&["unset", file.to_str().unwrap(), "ORDER"])).unwrap();
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(bytes.len(), SIZE);
        let env = GrubEnv::parse(&bytes).unwrap();
        assert_eq!(env.get("A_TRY"), Some("0"));
        assert_eq!(env.get("ORDER"), None);
        assert!(command(&args(&["get", file.to_str().unwrap(), "ORDER"])).is_err());
    }

    /// Against the real grub-editenv when the host has it (grub-common): what it writes we
    /// read, and what we write it reads.
    #[test]
    fn interoperates_with_grub_editenv() {
        // tests/run installs grub-common; a missing tool fails rather than skips.
        let tool = which_grub_editenv().expect(
            "grub-editenv (Debian grub-common) is needed by this test: tests/run installs it",
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("grubenv");
        // Through children::run, as the init runs programs: its reaper (started by other tests
        // in this process) takes every child's status, so Command::output would get ECHILD.
        let run = |args: &[&str]| {
            let (tool, file) = (tool.to_str().unwrap(), file.to_str().unwrap());
            let argv: Vec<&str> = [tool, file]
                .into_iter()
                .chain(args.iter().copied())
                .collect();
            let out = crate::children::run(&argv, std::time::Duration::from_secs(30)).unwrap();
            assert!(out.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        run(&["create"]);
        run(&[
            "set",
            "ORDER=A B",
            "A_OK=0",
            "A_TRY=2",
            "EXTRA_CMDLINE=x\\y",
        ]);
        update(&file, |env| {
            assert_eq!(env.get("ORDER"), Some("A B"));
            assert_eq!(env.get("EXTRA_CMDLINE"), Some("x\\y"));
            env.set("A_OK", "1")?;
            env.set("A_TRY", "0")
        })
        .unwrap();
        let listed = run(&["list"]);
        assert!(listed.contains("A_OK=1\n"), "{listed}");
        assert!(listed.contains("A_TRY=0\n"), "{listed}");
        assert!(listed.contains("ORDER=A B\n"), "{listed}");
    }

    fn which_grub_editenv() -> Result<std::path::PathBuf, ()> {
        ["/usr/bin/grub-editenv", "/usr/sbin/grub-editenv"]
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.exists())
            .ok_or(())
    }
}
