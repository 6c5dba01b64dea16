//! The build-cache key: a SHA-256 over labelled inputs (values, files,
//! whole directory trees), so any change to what a build depends on gives
//! another key.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::Path;

/// Accumulates the inputs of a key.
pub struct KeyBuilder(Sha256);

impl Default for KeyBuilder {
    fn default() -> Self {
        let mut h = Sha256::new();
        // v3: an entry is `tree/` plus a manifest (v2 entries were the bare tree)
        h.update(b"modsync-build-cache-v3\0");
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
        assert!(crate::cache::names::is_key(&k1));
    }
}
