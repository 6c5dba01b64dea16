//! The build cache: the finished result of a build (the whole `m/v/K/A`
//! directory: signed, compressed modules, make.log, what POST_BUILD put
//! there), stored under a key that hashes everything the result depends on
//! ([`KeyBuilder`]), so a reinstall, a remove and add of the same version, a
//! re-run after a crash, or another host with the same kernel and source
//! reuses it instead of compiling.
//!
//! The cache directory may be shared by several build hosts (NFS or
//! similar), and no lock is taken on it (flock over NFS is unreliable and
//! would serialise the hosts). Safety rests on atomic renames and on
//! verification instead: an entry `<key>/` holds the result as `tree/` and a
//! [`Manifest`] of it, written by [`store`] in a temporary directory with a
//! name unique across hosts, fsync'd, checked, then renamed into place (a
//! second writer of the key loses the rename and keeps the winner's entry).
//! A reader ([`fetch`]) copies `tree/` out and checks the copy against the
//! manifest, so an entry cut short, damaged, or moved away during the copy
//! is never used; a damaged one is removed. Pruning ([`prune`]) takes the
//! least recently used entries out through [`evict`], which respects the
//! [`lease`]s of readers and writers on other hosts; abandoned temporaries
//! go once stale by the file server's [`clock`].

mod clock;
mod evict;
mod fetch;
mod key;
mod lease;
mod manifest;
mod names;
mod prune;
mod store;

pub use fetch::Fetched;
pub use key::KeyBuilder;
use manifest::Manifest;
pub use prune::Pruned;
pub use store::Stored;

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Inside an entry: the stored result, and its manifest.
const TREE: &str = "tree";
const MANIFEST: &str = "manifest";

#[derive(Debug, Clone)]
pub struct Cache {
    pub dir: PathBuf,
    pub max_bytes: u64,
}

impl Cache {
    fn entry(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }
}

/// Reads the manifest of the entry at `entry`.
fn read_manifest(entry: &Path) -> Result<Manifest> {
    let p = entry.join(MANIFEST);
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    Manifest::parse(&text).with_context(|| format!("reading {}", p.display()))
}

/// Checks the entry at `entry` in place: its manifest reads, and its tree
/// is exactly what the manifest lists.
fn verify(entry: &Path) -> Result<()> {
    read_manifest(entry)?.check(&entry.join(TREE))
}

#[cfg(test)]
pub(crate) mod testing {
    //! A cache and build results for the tests of the cache's parts.
    use super::Cache;
    use std::path::{Path, PathBuf};

    pub const KEY: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    pub fn cache(d: &Path, max_bytes: u64) -> Cache {
        Cache {
            dir: d.join("cache"),
            max_bytes,
        }
    }

    /// A build result whose make.log says `tag`.
    pub fn result(d: &Path, tag: &str) -> PathBuf {
        let r = d.join(format!("built-{tag}"));
        std::fs::create_dir_all(r.join("module")).unwrap();
        std::fs::create_dir_all(r.join("log")).unwrap();
        std::fs::write(r.join("module/foo.ko"), vec![7u8; 1000]).unwrap();
        std::fs::write(r.join("log/make.log"), tag).unwrap();
        r
    }

    /// The names in the cache directory that are not entries.
    pub fn leftovers(c: &Cache) -> Vec<String> {
        crate::sys::fs::sorted_names(&c.dir)
            .into_iter()
            .filter(|n| !super::names::is_key(n))
            .collect()
    }
}
