//! The file-access seam of the stack loader: the loader reads stack files, `env_file`s and
//! `file:` secrets/configs only through [`SourceFs`], so tests and fuzzers can feed it memory.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Reads whole files. Implementations must not panic.
pub trait SourceFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

impl SourceFs for RealFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
}

/// Files held in memory, keyed by path exactly as the loader will ask for them.
#[derive(Clone, Debug, Default)]
pub struct MemFs {
    files: BTreeMap<PathBuf, Vec<u8>>,
}

impl MemFs {
    pub fn new() -> Self {
        MemFs::default()
    }

    /// Adds (or replaces) a file; returns `self` for chaining.
    pub fn with(mut self, path: impl Into<PathBuf>, content: impl Into<Vec<u8>>) -> Self {
        self.insert(path, content);
        self
    }

    pub fn insert(&mut self, path: impl Into<PathBuf>, content: impl Into<Vec<u8>>) {
        self.files.insert(path.into(), content.into());
    }
}

impl SourceFs for MemFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files.get(path).cloned().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no such file (in-memory file system)",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_fs_reads_what_was_inserted_and_nothing_else() {
        let fs = MemFs::new().with("/a/b.yml", "x: 1");
        assert_eq!(fs.read(Path::new("/a/b.yml")).unwrap(), b"x: 1");
        let err = fs.read(Path::new("/a/c.yml")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
