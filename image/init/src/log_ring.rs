//! A bounded log on /persist: `COUNT` files of at most `FILE_SIZE` bytes (`0.log` ...),
//! written round-robin. `current` names the file being written, so a reader (or the next
//! boot) knows where the newest lines are. Whole lines only: a line never straddles files.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub const FILE_SIZE: u64 = 256 * 1024;
pub const COUNT: u32 = 8;

pub struct LogRing {
    dir: PathBuf,
    file_size: u64,
    count: u32,
    index: u32,
    file: File,
    written: u64,
}

impl LogRing {
    pub fn open(dir: &Path) -> Result<LogRing> {
        LogRing::open_with(dir, FILE_SIZE, COUNT)
    }

    pub fn open_with(dir: &Path, file_size: u64, count: u32) -> Result<LogRing> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let index = fs::read_to_string(dir.join("current"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|i| *i < count)
            .unwrap_or(0);
        let path = dir.join(format!("{index}.log"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogRing {
            dir: dir.to_path_buf(),
            file_size,
            count,
            index,
            file,
            written,
        })
    }

    fn rotate(&mut self) -> Result<()> {
        self.index = (self.index + 1) % self.count;
        let path = self.dir.join(format!("{}.log", self.index));
        self.file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        self.written = 0;
        fs::write(self.dir.join("current"), format!("{}\n", self.index))
            .with_context(|| format!("writing {}/current", self.dir.display()))
    }

    /// Appends one line (a newline is added); lines longer than a file are cut.
    pub fn write_line(&mut self, line: &str) -> Result<()> {
        let max = (self.file_size as usize).saturating_sub(1);
        let mut cut = line.len().min(max);
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        let line = &line[..cut];
        if self.written + line.len() as u64 + 1 > self.file_size {
            self.rotate()?;
        }
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.file.write_all(&bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    pub fn sync(&self) {
        let _ = self.file.sync_data();
    }
}

/// The ring's lines, oldest first (for tests and `postern-init log DIR`).
pub fn read_all(dir: &Path, count: u32) -> Vec<String> {
    let current = fs::read_to_string(dir.join("current"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let mut lines = Vec::new();
    for step in 1..=count {
        let index = (current + step) % count;
        if let Ok(text) = fs::read_to_string(dir.join(format!("{index}.log"))) {
            lines.extend(text.lines().map(str::to_string));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_oldest_lines_dropped_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut ring = LogRing::open_with(dir.path(), 100, 3).unwrap();
        for i in 0..100 {
            ring.write_line(&format!("line {i:03}")).unwrap();
        }
        let total: u64 = (0..3)
            .map(|i| {
                fs::metadata(dir.path().join(format!("{i}.log")))
                    .unwrap()
                    .len()
            })
            .sum();
        assert!(total <= 300, "{total}");
        let lines = read_all(dir.path(), 3);
        assert_eq!(lines.last().unwrap(), "line 099");
        // Consecutive, oldest first.
        let first: usize = lines[0][5..].parse().unwrap();
        let expected: Vec<String> = (first..100).map(|i| format!("line {i:03}")).collect();
        assert_eq!(lines, expected);
    }

    #[test]
    fn reopening_continues_in_the_current_file() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut ring = LogRing::open_with(dir.path(), 50, 4).unwrap();
            for i in 0..10 {
                ring.write_line(&format!("a{i}")).unwrap();
            }
        }
        let mut ring = LogRing::open_with(dir.path(), 50, 4).unwrap();
        ring.write_line("after reopen").unwrap();
        ring.write_line(&"x".repeat(500)).unwrap();
        let lines = read_all(dir.path(), 4);
        assert!(lines.contains(&"after reopen".to_string()));
        assert_eq!(lines.last().unwrap().len(), 49);
    }
}
