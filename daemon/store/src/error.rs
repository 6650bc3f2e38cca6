//! Typed errors of the store.

use std::path::PathBuf;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("io_uring backend unavailable: {0} (the kernel or a seccomp profile refuses io_uring; [store] backend = \"auto\" falls back to the portable backend)")]
    IoUringUnavailable(std::io::Error),
    #[error("store opened read-only")]
    ReadOnly,
    #[error("store is shut down")]
    Closed,
    #[error("shard {0} failed an earlier commit and accepts no more writes")]
    ShardPoisoned(usize),
    #[error("commit failed: {0}")]
    CommitFailed(String),
    #[error("unknown mailbox {0}")]
    UnknownMailbox(u32),
    #[error("no such message: mailbox {mailbox} uid {uid}")]
    UnknownMessage { mailbox: u32, uid: u32 },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("corrupt record at shard {shard} segment {segment} offset {offset}: {reason}")]
    Corrupt {
        shard: usize,
        segment: u32,
        offset: u64,
        reason: String,
    },
    #[error("shard {shard} segment {segment} offset {offset} holds a record of format version {version}, kind {kind}, written by a newer posternd; this build refuses to open the store rather than drop it (start the newer build again)")]
    NewerFormat {
        shard: usize,
        segment: u32,
        offset: u64,
        version: u8,
        kind: u8,
    },
    #[error("store at {0} is in use by another process")]
    Locked(PathBuf),
    #[error("mailbox name already in use: {0}")]
    NameTaken(String),
    #[error("invalid options: {0}")]
    InvalidOptions(String),
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}
