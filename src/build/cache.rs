//! The build cache: the finished module files of a build (stripped, signed,
//! compressed), stored under a key that hashes everything the result depends
//! on, so a reinstall, a remove+add of the same version or a re-run after a
//! crash reuses them instead of compiling. Entries are written to a
//! temporary directory and renamed into place; the least recently used ones
//! go when the cache outgrows its bound.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub struct Cache {
    pub dir: PathBuf,
    pub max_bytes: u64,
}

/// Accumulates the inputs of a cache key.
pub struct KeyBuilder(Sha256);

impl Default for KeyBuilder {
    fn default() -> Self {
        let mut h = Sha256::new();
        h.update(b"modsync-build-cache-v1\0");
        KeyBuilder(h)
    }
}

impl KeyBuilder {
    /// A labelled value (label and length are hashed too, so fields can't run together).
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

    /// A directory tree: every entry's relative path, type, mode and content,
    /// in a fixed order; a missing root hashes as an empty tree.
    pub fn tree(&mut self, label: &str, root: &Path) -> Result<&mut Self> {
        use std::os::unix::fs::PermissionsExt;
        self.field(label, b"");
        if !root.exists() {
            return Ok(self);
        }
        for e in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
            let e = e.with_context(|| format!("reading {}", root.display()))?;
            let rel = e.path().strip_prefix(root).unwrap_or(e.path());
            let md = e.metadata().with_context(|| format!("reading {}", e.path().display()))?;
            self.field("path", rel.as_os_str().as_encoded_bytes());
            self.field("mode", &md.permissions().mode().to_le_bytes());
            if e.path_is_symlink() {
                let t = std::fs::read_link(e.path()).with_context(|| format!("reading link {}", e.path().display()))?;
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

/// Bytes in the regular files under `p`.
fn dir_size(p: &Path) -> u64 {
    walkdir::WalkDir::new(p)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|md| md.is_file())
        .map(|md| md.len())
        .sum()
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for e in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dest)?;
        } else {
            std::fs::copy(e.path(), &dest).with_context(|| format!("copying {} to {}", e.path().display(), dest.display()))?;
        }
    }
    Ok(())
}

impl Cache {
    fn entry(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// The entry for `key` (marked as recently used), if present.
    pub fn lookup(&self, key: &str) -> Option<PathBuf> {
        let e = self.entry(key);
        if !e.join("module").is_dir() {
            return None;
        }
        let _ = std::fs::File::open(&e).and_then(|f| f.set_modified(SystemTime::now()));
        Some(e)
    }

    /// Stores the `module/` directory and the `.modsync.json` and make.log
    /// of a finished build (`built` is `m/v/K/A`), then prunes.
    pub fn store(&self, key: &str, built: &Path) -> Result<()> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        let tmp = self.dir.join(format!(".tmp-{key}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let res = (|| {
            copy_dir(&built.join("module"), &tmp.join("module"))?;
            for f in [".modsync.json", "log/make.log"] {
                if built.join(f).is_file() {
                    std::fs::copy(built.join(f), tmp.join(Path::new(f).file_name().unwrap()))
                        .with_context(|| format!("copying {}", built.join(f).display()))?;
                }
            }
            let dest = self.entry(key);
            let _ = std::fs::remove_dir_all(&dest);
            std::fs::rename(&tmp, &dest).with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))
        })();
        if res.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        res?;
        self.prune()
    }

    /// (entries, bytes) in the cache.
    pub fn usage(&self) -> (usize, u64) {
        let entries = self.entries();
        let bytes = entries.iter().map(|(_, _, s)| *s).sum();
        (entries.len(), bytes)
    }

    fn entries(&self) -> Vec<(PathBuf, SystemTime, u64)> {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| {
                let t = e.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
                (e.path(), t, dir_size(&e.path()))
            })
            .collect()
    }

    /// Drops the least recently used entries until the cache fits its bound,
    /// and temporaries left by a killed run.
    pub fn prune(&self) -> Result<()> {
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
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
            std::fs::remove_dir_all(&p).with_context(|| format!("removing cache entry {}", p.display()))?;
            total -= s;
        }
        Ok(())
    }

    pub fn clear(&self) -> Result<usize> {
        let entries = self.entries();
        for (p, _, _) in &entries {
            std::fs::remove_dir_all(p).with_context(|| format!("removing cache entry {}", p.display()))?;
        }
        Ok(entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_changes_with_any_input() {
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
    fn store_lookup_prune() {
        let d = tempfile::tempdir().unwrap();
        let built = d.path().join("built");
        std::fs::create_dir_all(built.join("module")).unwrap();
        std::fs::create_dir_all(built.join("log")).unwrap();
        std::fs::write(built.join("module/foo.ko"), vec![7u8; 1000]).unwrap();
        std::fs::write(built.join("log/make.log"), "log").unwrap();
        let c = Cache { dir: d.path().join("cache"), max_bytes: 2500 };
        assert!(c.lookup("k1").is_none());
        c.store("k1", &built).unwrap();
        let e = c.lookup("k1").unwrap();
        assert_eq!(std::fs::read(e.join("module/foo.ko")).unwrap().len(), 1000);
        assert!(e.join("make.log").is_file());
        std::thread::sleep(std::time::Duration::from_millis(20));
        c.store("k2", &built).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        c.store("k3", &built).unwrap();
        assert!(c.lookup("k1").is_none(), "oldest entry should be pruned");
        assert!(c.lookup("k3").is_some());
        assert_eq!(c.clear().unwrap(), 2);
        assert_eq!(c.usage().0, 0);
    }
}
