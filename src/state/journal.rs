//! The journal of unfinished work: before files change under a kernel's
//! module tree, a `depmod-<K>` entry is written; it is removed once depmod
//! has run for K. A run killed in between leaves the entry, and the next
//! run (under the lock) finishes the work: depmod, and removal of staged
//! temporary files left in the state tree and the module directories.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    pub fn new(dkms_tree: &Path) -> Journal {
        Journal { dir: dkms_tree.join(".modsync-journal") }
    }

    fn entry(&self, kernel: &str) -> PathBuf {
        self.dir.join(format!("depmod-{kernel}"))
    }

    /// Records that K's module tree is about to change.
    pub fn begin(&self, kernel: &str) -> Result<()> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        let p = self.entry(kernel);
        std::fs::File::create(&p)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("writing journal entry {}", p.display()))?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Marks K's change complete (depmod done).
    pub fn finish(&self, kernel: &str) {
        let _ = std::fs::remove_file(self.entry(kernel));
    }

    /// Kernels whose change a killed run left unfinished.
    pub fn pending(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().to_string_lossy().strip_prefix("depmod-").map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_until_finished() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::new(d.path());
        assert!(j.pending().is_empty());
        j.begin("6.1.0-56-amd64").unwrap();
        j.begin("6.1.0-54-amd64").unwrap();
        assert_eq!(Journal::new(d.path()).pending(), vec!["6.1.0-54-amd64", "6.1.0-56-amd64"]);
        j.finish("6.1.0-54-amd64");
        assert_eq!(j.pending(), vec!["6.1.0-56-amd64"]);
    }
}
