//! The build cache: the finished result of a build (the whole `m/v/K/A`
//! directory: signed, compressed modules, make.log, what POST_BUILD put
//! there), stored under a key that hashes everything the result depends on,
//! so a reinstall, a remove and add of the same version, or a re-run after
//! a crash reuses it instead of compiling. An entry is copied into a
//! temporary directory and renamed into place, so a reader never sees half
//! of one, and two writers of one key do not corrupt it; the least recently
//! used entries go when the cache outgrows its bound.

use crate::sys::fs::{copy_tree, TEMP_PREFIX};
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[derive(Debug, Clone)]
pub struct Cache {
    pub dir: PathBuf,
    pub max_bytes: u64,
}

/// Accumulates the inputs of a key.
pub struct KeyBuilder(Sha256);

impl Default for KeyBuilder {
    fn default() -> Self {
        let mut h = Sha256::new();
        h.update(b"modsync-build-cache-v2\0");
        KeyBuilder(h)
    }
}

impl KeyBuilder {
    /// A labelled value (label and length are hashed too, so fields cannot run together).
    pub fn field(&mut self, label: &str, value: &[u8]) -> &mut Self {
        self.0.update(label.as_bytes());
        self.0.update((value.len() as u64).to_le_bytes());
        self.0.update(value);
        self
    }

    /// A file's content, or its absence.
    pub fn file(&mut self, label: &str, path: &Path) -> &mut Self {
        match std::fs::read(path) {
            Ok(b) => self.field(label, &b),
            Err(_) => self.field(label, b"\0absent"),
        }
    }

    /// A directory tree: every entry's relative path, type, mode and
    /// content, in a fixed order; a missing root hashes as an empty tree.
    pub fn tree(&mut self, label: &str, root: &Path) -> Result<&mut Self> {
        use std::os::unix::fs::PermissionsExt;
        self.field(label, b"");
        if !root.exists() {
            return Ok(self);
        }
        for e in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
            let e = e.with_context(|| format!("reading {}", root.display()))?;
            let rel = e.path().strip_prefix(root).unwrap_or(e.path());
            let md = std::fs::symlink_metadata(e.path()).with_context(|| format!("reading {}", e.path().display()))?;
            self.field("path", rel.as_os_str().as_encoded_bytes());
            self.field("mode", &md.permissions().mode().to_le_bytes());
            if md.file_type().is_symlink() {
                let t =
                    std::fs::read_link(e.path()).with_context(|| format!("reading the link {}", e.path().display()))?;
                self.field("link", t.as_os_str().as_encoded_bytes());
            } else if md.is_file() {
                let b = std::fs::read(e.path()).with_context(|| format!("reading {}", e.path().display()))?;
                self.field("data", &b);
            }
        }
        Ok(self)
    }

    pub fn finish(&self) -> String {
        self.0.clone().finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn dir_size(p: &Path) -> u64 {
    walkdir::WalkDir::new(p)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|md| md.is_file())
        .map(|md| md.len())
        .sum()
}

impl Cache {
    fn entry(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// The stored result for `key` (marked as recently used), if present.
    pub fn lookup(&self, key: &str) -> Option<PathBuf> {
        let e = self.entry(key);
        if !e.join("module").is_dir() {
            return None;
        }
        let _ = std::fs::File::open(&e).and_then(|f| f.set_modified(SystemTime::now()));
        Some(e)
    }

    /// Stores a finished build result (`m/v/K/A`) under `key`, then prunes.
    pub fn store(&self, key: &str, result: &Path) -> Result<()> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        let dest = self.entry(key);
        if dest.join("module").is_dir() {
            return Ok(());
        }
        let tmp = self.dir.join(format!("{TEMP_PREFIX}{}-{key}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let res = copy_tree(result, &tmp).and_then(|()| match std::fs::rename(&tmp, &dest) {
            Ok(()) => Ok(()),
            // another writer stored the same key first: its entry is as good
            Err(_) if dest.join("module").is_dir() => Ok(()),
            Err(e) => Err(e).with_context(|| format!("renaming {} to {}", tmp.display(), dest.display())),
        });
        let _ = std::fs::remove_dir_all(&tmp);
        res?;
        // cp -a kept the build's time; an entry's time is its last use
        let _ = std::fs::File::open(&dest).and_then(|f| f.set_modified(SystemTime::now()));
        crate::sys::fs::sync_dir(&self.dir);
        self.prune()
    }

    /// (entries, bytes).
    pub fn usage(&self) -> (usize, u64) {
        let entries = self.entries();
        (entries.len(), entries.iter().map(|(_, _, s)| *s).sum())
    }

    fn entries(&self) -> Vec<(PathBuf, SystemTime, u64)> {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| {
                let t = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                (e.path(), t, dir_size(&e.path()))
            })
            .collect()
    }

    /// Drops the least recently used entries until the cache fits, and
    /// temporaries a killed writer left long ago.
    pub fn prune(&self) -> Result<()> {
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(TEMP_PREFIX) && stale(&e.path()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let mut entries = self.entries();
        let mut total: u64 = entries.iter().map(|(_, _, s)| *s).sum();
        entries.sort_by_key(|(_, t, _)| *t);
        for (p, _, s) in entries {
            if total <= self.max_bytes {
                break;
            }
            std::fs::remove_dir_all(&p).with_context(|| format!("removing the cache entry {}", p.display()))?;
            total -= s;
        }
        Ok(())
    }

    pub fn clear(&self) -> Result<usize> {
        let entries = self.entries();
        for (p, _, _) in &entries {
            std::fs::remove_dir_all(p).with_context(|| format!("removing the cache entry {}", p.display()))?;
        }
        Ok(entries.len())
    }
}

/// A temporary of another writer is stale after an hour without change
/// (another host may be writing it right now on a shared cache).
fn stale(p: &Path) -> bool {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|e| e.as_secs() > 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_changes_with_any_input() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.c"), "int x;").unwrap();
        let k = |d: &Path, extra: &[u8]| {
            let mut b = KeyBuilder::default();
            b.tree("src", d).unwrap().field("conf", extra);
            b.finish()
        };
        let k1 = k(d.path(), b"x");
        assert_eq!(k1, k(d.path(), b"x"));
        assert_ne!(k1, k(d.path(), b"y"));
        std::fs::write(d.path().join("a.c"), "int y;").unwrap();
        assert_ne!(k1, k(d.path(), b"x"));
        let mut a = KeyBuilder::default();
        a.field("p", b"ab").field("q", b"c");
        let mut b = KeyBuilder::default();
        b.field("p", b"a").field("q", b"bc");
        assert_ne!(a.finish(), b.finish());
    }

    #[test]
    fn store_lookup_prune_clear() {
        let d = tempfile::tempdir().unwrap();
        let built = d.path().join("built");
        std::fs::create_dir_all(built.join("module")).unwrap();
        std::fs::create_dir_all(built.join("log")).unwrap();
        std::fs::write(built.join("module/foo.ko"), vec![7u8; 1000]).unwrap();
        std::fs::write(built.join("log/make.log"), "log").unwrap();
        let c = Cache {
            dir: d.path().join("cache"),
            max_bytes: 2500,
        };
        assert!(c.lookup("k1").is_none());
        c.store("k1", &built).unwrap();
        let e = c.lookup("k1").unwrap();
        assert_eq!(std::fs::read(e.join("module/foo.ko")).unwrap().len(), 1000);
        assert!(e.join("log/make.log").is_file());
        c.store("k1", &built).unwrap();
        for k in ["k2", "k3"] {
            std::thread::sleep(std::time::Duration::from_millis(20));
            c.store(k, &built).unwrap();
        }
        assert!(c.lookup("k1").is_none(), "the oldest entry is pruned");
        assert!(c.lookup("k3").is_some());
        assert_eq!(c.clear().unwrap(), 2);
        assert_eq!(c.usage().0, 0);
    }
}
