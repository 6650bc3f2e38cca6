//! The accounts file: locking, atomic replacement, durability.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::{AccountError, Accounts};

pub const ACCOUNTS_FILE: &str = "accounts.json";
pub const LOCK_FILE: &str = "accounts.lock";
const FORMAT_VERSION: u32 = 1;

/// The file: a version number around the model, so that later formats can be told apart.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat<T> {
    version: u32,
    accounts: T,
}

/// Identity of one version of the accounts file. Every write replaces the file by rename, so
/// the inode changes on each write even when mtime and length do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub modified: SystemTime,
    pub len: u64,
    pub ino: u64,
    pub dev: u64,
}

/// Handle on `<data_dir>/accounts.json`. Cheap; holds no open files.
#[derive(Debug, Clone)]
pub struct AccountStore {
    dir: PathBuf,
    file: PathBuf,
    lock: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> AccountError + '_ {
    move |source| AccountError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl AccountStore {
    /// Opens the store in `data_dir`, creating the directory if needed. A missing accounts
    /// file is an empty set of accounts.
    pub fn open(data_dir: &Path) -> Result<Self, AccountError> {
        fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
        Ok(AccountStore {
            dir: data_dir.to_path_buf(),
            file: data_dir.join(ACCOUNTS_FILE),
            lock: data_dir.join(LOCK_FILE),
        })
    }

    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Reads the current accounts. No lock is needed: writers replace the file atomically.
    pub fn load(&self) -> Result<Accounts, AccountError> {
        let bytes = match fs::read(&self.file) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Accounts::default()),
            Err(e) => return Err(io_err(&self.file)(e)),
        };
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let corrupt = |source| AccountError::Corrupt {
            path: self.file.clone(),
            source,
        };
        let v: Version = serde_json::from_slice(&bytes).map_err(corrupt)?;
        if v.version != FORMAT_VERSION {
            return Err(AccountError::UnsupportedVersion {
                path: self.file.clone(),
                version: v.version,
            });
        }
        let f: FileFormat<Accounts> = serde_json::from_slice(&bytes).map_err(corrupt)?;
        Ok(f.accounts)
    }

    /// Read-modify-write under the exclusive lock. The file is rewritten only when `f`
    /// succeeds and changed something; when `f` fails nothing is written.
    pub fn modify<T>(
        &self,
        f: impl FnOnce(&mut Accounts) -> Result<T, AccountError>,
    ) -> Result<T, AccountError> {
        let _lock = Lock::acquire(&self.lock)?;
        let before = self.load()?;
        let mut accounts = before.clone();
        let out = f(&mut accounts)?;
        if accounts != before {
            self.write(&accounts)?;
        }
        Ok(out)
    }

    /// mtime and length of the accounts file, for cheap reload detection; `None` if absent.
    pub fn file_stamp(&self) -> Option<(SystemTime, u64)> {
        self.stamp().map(|s| (s.modified, s.len))
    }

    /// A stronger stamp including the inode, which every write changes.
    pub fn stamp(&self) -> Option<FileStamp> {
        let m = fs::metadata(&self.file).ok()?;
        Some(FileStamp {
            modified: m.modified().ok()?,
            len: m.len(),
            ino: m.ino(),
            dev: m.dev(),
        })
    }

    /// Atomic replacement: temp file in the same directory (same filesystem, so rename is
    /// atomic), fsync, rename over, fsync the directory so the rename itself is durable.
    fn write(&self, accounts: &Accounts) -> Result<(), AccountError> {
        let json = serde_json::to_vec_pretty(&FileFormat {
            version: FORMAT_VERSION,
            accounts,
        })
        .map_err(|source| AccountError::Corrupt {
            path: self.file.clone(),
            source,
        })?;
        let tmp = self.dir.join(format!(
            ".{ACCOUNTS_FILE}.tmp-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600) // password hashes: owner only
                .open(&tmp)?;
            f.write_all(&json)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &self.file)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&self.file)(e));
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))
    }
}

/// An exclusive flock, released when dropped (closing the descriptor releases it).
struct Lock {
    _file: File,
}

impl Lock {
    fn acquire(path: &Path) -> Result<Lock, AccountError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io_err(path))?;
        loop {
            // SAFETY: flock on a descriptor we own and keep open for the call's duration.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(Lock { _file: file });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(io_err(path)(e));
            }
        }
    }
}
