//! TOML loading with `path:line:column: message` errors (the daemon/config convention):
//! structs use `#[serde(deny_unknown_fields)]`, so unknown keys are errors at their position.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A file that could not be read or parsed; Display is `path:line:column: message`.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

impl LoadError {
    pub fn invalid(path: &Path, line: usize, column: usize, message: impl Into<String>) -> Self {
        LoadError::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// Reads and parses `path`.
pub fn load_file<T: DeserializeOwned>(path: &Path) -> Result<T, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_str(&text, path)
}

/// Parses `text` as if read from `origin`.
pub fn parse_str<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T, LoadError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = match e.span() {
            Some(span) => line_col(text, span.start),
            None => (1, 1),
        };
        LoadError::invalid(origin, line, column, e.message().trim())
    })
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The 1-based line of the first occurrence of `needle` in `text` (for semantic errors found
/// after parsing), or 1.
pub fn line_of(text: &str, needle: &str) -> usize {
    text.find(needle)
        .map(|off| line_col(text, off).0)
        .unwrap_or(1)
}
