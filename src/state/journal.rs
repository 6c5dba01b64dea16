//! The journal of changes in flight. Before a multi-step change (installing
//! or uninstalling a module for a kernel, a build's temporary directories)
//! the whole list of steps is written to `$dkms_tree/.modsync/journal/`;
//! every step can be applied again without harm, so after a crash the next
//! run applies the list once more and the change is complete. A finished
//! change leaves a `depmod-<K>` mark until depmod has run for that kernel.
//! An entry whose replay fails is moved to `failed/` and reported once. This
//! module stores entries; applying steps is [`crate::install::steps`].

use crate::sys::fs::{sync_dir, write_atomic};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// One idempotent step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// Move an original (in-kernel) module into the archive, noting where it came from.
    Archive {
        from: PathBuf,
        to: PathBuf,
        origin: PathBuf,
    },
    /// Copy a built module into the module tree.
    Place { from: PathBuf, to: PathBuf },
    /// Remove an installed module file.
    Remove { path: PathBuf },
    /// Put an archived original back where it came from.
    Restore {
        from: PathBuf,
        to: PathBuf,
        origin: PathBuf,
    },
    /// Point the active link at a version (`v/K/A`), or remove it.
    Link { link: PathBuf, target: Option<String> },
    /// Remove a directory (or file) inside `root`.
    RemoveDir { root: PathBuf, path: PathBuf },
}

impl Step {
    /// Directories where applying this step leaves temporary files.
    pub fn temp_dirs(&self) -> Vec<PathBuf> {
        let parent = |p: &Path| p.parent().map(Path::to_path_buf);
        match self {
            Step::Archive { to, from, .. } => [parent(to), parent(from)].into_iter().flatten().collect(),
            Step::Place { to, .. } | Step::Restore { to, .. } => parent(to).into_iter().collect(),
            Step::Link { link, .. } => parent(link).into_iter().collect(),
            Step::Remove { .. } | Step::RemoveDir { .. } => Vec::new(),
        }
    }
}

/// A change in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// What it is, for messages ("installing foo/1.0 for 6.1.0-56-amd64").
    pub what: String,
    /// The kernel whose module tree changes (depmod afterwards); None for a build.
    pub kernel: Option<String>,
    pub steps: Vec<Step>,
}

pub struct Journal {
    dir: PathBuf,
}

/// An entry as stored.
#[derive(Debug)]
pub struct Pending {
    pub path: PathBuf,
    pub entry: Entry,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

impl Journal {
    pub fn new(dkms_tree: &Path) -> Journal {
        Journal {
            dir: dkms_tree.join(".modsync/journal"),
        }
    }

    fn ensure(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))
    }

    /// Records an entry before its first step; returns where it is stored.
    pub fn begin(&self, entry: &Entry) -> Result<PathBuf> {
        self.ensure()?;
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let path = self.dir.join(format!("{}-{n}.json", std::process::id()));
        let data = serde_json::to_vec_pretty(entry).context("encoding a journal entry")?;
        write_atomic(&path, &data, 0o644)?;
        Ok(path)
    }

    /// The entry's steps are all done: mark its kernel for depmod, drop it.
    pub fn finish(&self, path: &Path, entry: &Entry) -> Result<()> {
        if let Some(k) = &entry.kernel {
            self.mark_depmod(k)?;
        }
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
        sync_dir(&self.dir);
        Ok(())
    }

    fn mark(&self, k: &str) -> PathBuf {
        self.dir.join(format!("depmod-{k}"))
    }

    /// Notes that kernel `k` needs depmod.
    /// The mark is an empty file, created in place: installs running at
    /// once in one process may all mark the same kernel (a shared
    /// temporary name would collide).
    pub fn mark_depmod(&self, k: &str) -> Result<()> {
        self.ensure()?;
        let mark = self.mark(k);
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&mark)
            .with_context(|| format!("writing {}", mark.display()))?;
        sync_dir(&self.dir);
        Ok(())
    }

    /// depmod has run for `k`.
    pub fn depmod_done(&self, k: &str) {
        let _ = std::fs::remove_file(self.mark(k));
    }

    /// Kernels waiting for depmod.
    pub fn depmod_pending(&self) -> Vec<String> {
        crate::sys::fs::sorted_names(&self.dir)
            .into_iter()
            .filter_map(|n| n.strip_prefix("depmod-").map(str::to_string))
            .collect()
    }

    /// Entries a killed run left behind, oldest first.
    pub fn pending(&self) -> Vec<Pending> {
        let mut out = Vec::new();
        for name in crate::sys::fs::sorted_names(&self.dir) {
            if !name.ends_with(".json") {
                continue;
            }
            let path = self.dir.join(&name);
            match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Entry>(&b).ok())
            {
                Some(entry) => out.push(Pending { path, entry }),
                None => {
                    let _ = self.set_aside(&path, "the entry could not be read");
                }
            }
        }
        out
    }

    /// Moves an entry that could not be completed to `failed/`, with the reason.
    pub fn set_aside(&self, path: &Path, why: &str) -> Result<PathBuf> {
        let failed = self.dir.join("failed");
        std::fs::create_dir_all(&failed).with_context(|| format!("creating {}", failed.display()))?;
        let to = failed.join(path.file_name().unwrap_or_default());
        std::fs::rename(path, &to).with_context(|| format!("moving {} to {}", path.display(), to.display()))?;
        let _ = std::fs::write(to.with_extension("reason"), format!("{why}\n"));
        Ok(to)
    }

    /// Moves the depmod mark of `k` to `failed/` (reported once, not retried forever).
    pub fn set_aside_depmod(&self, k: &str, why: &str) {
        if self.mark(k).exists() {
            let _ = self.set_aside(&self.mark(k), why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_threads_mark_one_kernel() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::new(d.path());
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..50 {
                        j.mark_depmod("6.1.0-56-amd64").unwrap();
                    }
                });
            }
        });
        assert_eq!(j.depmod_pending(), ["6.1.0-56-amd64"]);
    }

    #[test]
    fn entries_survive_until_finished() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::new(d.path());
        let e = Entry {
            what: "installing foo".into(),
            kernel: Some("6.1.0-56-amd64".into()),
            steps: vec![Step::Place {
                from: "/a".into(),
                to: "/b/c".into(),
            }],
        };
        let p = j.begin(&e).unwrap();
        let again = Journal::new(d.path()).pending();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].entry, e);
        j.finish(&p, &e).unwrap();
        assert!(j.pending().is_empty());
        assert_eq!(j.depmod_pending(), vec!["6.1.0-56-amd64"]);
        j.depmod_done("6.1.0-56-amd64");
        assert!(j.depmod_pending().is_empty());
    }

    #[test]
    fn unreadable_and_failed_entries_are_set_aside_once() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::new(d.path());
        j.ensure().unwrap();
        std::fs::write(d.path().join(".modsync/journal/1-0.json"), "garbage").unwrap();
        assert!(j.pending().is_empty());
        assert!(d.path().join(".modsync/journal/failed/1-0.json").exists());
        j.mark_depmod("6.1").unwrap();
        j.set_aside_depmod("6.1", "depmod failed");
        assert!(j.depmod_pending().is_empty());
        assert!(j.pending().is_empty());
    }
}
