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

/// One step of a path into a TOML document: a key of a table or an index into an array (an
/// array of tables included: `[[array]]` number 2 is `Key("array"), Index(1)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Finds where a value sits in a document that already parsed, for errors found after
/// deserialising (cross-references, ranges): serde has forgotten the positions by then.
pub struct Locator<'a> {
    text: &'a str,
    root: Option<toml::Spanned<toml::de::DeTable<'a>>>,
}

impl<'a> Locator<'a> {
    pub fn new(text: &'a str) -> Locator<'a> {
        Locator {
            text,
            root: toml::de::DeTable::parse(text).ok(),
        }
    }

    /// 1-based line and column of `path`: the key when the path ends with a key, the element
    /// when it ends with an index (a `[[table]]` element is its header). A path that is not in
    /// the document (a key left to its default) gives its nearest ancestor that is; the whole
    /// document is line 1, column 1.
    pub fn position(&self, path: &[Seg<'_>]) -> (usize, usize) {
        use toml::de::DeValue;
        let Some(root) = &self.root else {
            return (1, 1);
        };
        let mut found = None;
        let mut table = Some(root.get_ref());
        let mut array = None;
        for seg in path {
            // A key's span is the key itself; an element's is the element (for `[[x]]`, the
            // header).
            let next = match (seg, table, array) {
                (Seg::Key(key), Some(t), _) => t
                    .iter()
                    .find(|(k, _)| k.get_ref().as_ref() == *key)
                    .map(|(k, v)| (k.span(), v)),
                (Seg::Index(i), _, Some(a)) => {
                    let a: &toml::de::DeArray<'a> = a;
                    a.get(*i).map(|v| (v.span(), v))
                }
                _ => None,
            };
            let Some((span, value)) = next else {
                break;
            };
            found = Some(span);
            (table, array) = match value.get_ref() {
                DeValue::Table(t) => (Some(t), None),
                DeValue::Array(a) => (None, Some(a)),
                _ => (None, None),
            };
        }
        match found {
            Some(span) => line_col(self.text, span.start),
            None => (1, 1),
        }
    }
}
