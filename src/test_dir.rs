//! A temp directory for unit tests, removed when it is dropped, also when the test fails.

use std::path::PathBuf;

pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    /// An empty directory named after `tag` and the process (tests run in parallel threads,
    /// so each test needs its own tag).
    pub(crate) fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
