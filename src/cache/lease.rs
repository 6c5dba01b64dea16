//! Leases: a reader copying out of an entry, or a writer placing one, marks
//! the key as in use with a file of its own (`.modsync-lease-<key>.<token>`)
//! and removes it when done; pruning skips a leased entry, and checks again
//! after it has moved an entry aside. No lock is taken, so hosts sharing
//! the cache over NFS never wait for each other; a lease older than
//! [`STALE`](super::clock::STALE) (its holder died) counts for nothing.

use super::clock;
use super::names::{self, Name};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A lease on a key, given back when dropped.
#[derive(Debug)]
pub struct Lease {
    path: PathBuf,
}

impl Lease {
    /// Marks `key` in use; fails when the cache directory does not exist.
    pub fn take(dir: &Path, key: &str) -> Result<Lease> {
        let path = dir.join(names::lease(key));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("creating the lease {}", path.display()))?;
        Ok(Lease { path })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            log::debug!("removing the lease {}: {e}", self.path.display());
        }
    }
}

/// True when someone holds a lease on `key` that is not stale by `now`.
pub fn held(dir: &Path, key: &str, now: SystemTime) -> bool {
    std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
        let name = e.file_name();
        matches!(names::classify(&name.to_string_lossy()), Name::Lease { key: k } if k == key)
            && !clock::stale(&e.path(), now)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::FileTimes;
    use std::time::Duration;

    const KEY: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const OTHER: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn a_lease_holds_its_key_until_dropped_or_stale() {
        let d = tempfile::tempdir().unwrap();
        let now = clock::server_now(d.path()).unwrap();
        assert!(!held(d.path(), KEY, now));
        let first = Lease::take(d.path(), KEY).unwrap();
        let second = Lease::take(d.path(), KEY).unwrap();
        assert!(held(d.path(), KEY, now) && !held(d.path(), OTHER, now));
        drop(first);
        assert!(held(d.path(), KEY, now), "the other holder's lease still counts");
        // a holder that died long ago holds nothing
        std::fs::File::options()
            .write(true)
            .open(&second.path)
            .unwrap()
            .set_times(FileTimes::new().set_modified(now - Duration::from_secs(7200)))
            .unwrap();
        assert!(!held(d.path(), KEY, now));
        drop(second);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        assert!(Lease::take(&d.path().join("missing"), KEY).is_err());
    }
}
