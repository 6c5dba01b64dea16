//! Taking one entry out of a shared cache without harming another host:
//! the entry is first renamed to a trash name of our own (atomic, so others
//! see it whole or not at all, and nobody else can reach it any more), then
//! the reason is checked again on what was moved: an unused entry that a
//! reader leased in the meantime, or a damaged entry that turns out to be
//! another (a writer replaced it after we looked), is put back; anything
//! else is deleted. A trash directory that cannot be deleted (NFS keeps a
//! file another client has open) is swept once stale.

use super::clock;
use super::lease;
use super::names;
use crate::sys::fs::sync_dir;
use anyhow::{Context, Result};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Which directory an entry is: (device, inode), kept by a rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity(u64, u64);

impl Identity {
    pub fn of(path: &Path) -> Option<Identity> {
        std::fs::symlink_metadata(path).ok().map(|m| Identity(m.dev(), m.ino()))
    }
}

/// Why an entry goes.
#[derive(Debug, Clone, Copy)]
pub enum Reason {
    /// Pruning or clearing: only while no one holds a lease on it.
    Unused,
    /// It failed verification: only the very directory that failed.
    Damaged(Identity),
}

/// What [`evict`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evicted {
    Removed,
    /// Left in place: a lease is held on it.
    Leased,
    /// Moved aside, then put back (a lease appeared, or it was not the
    /// damaged directory).
    Restored,
    /// There was nothing under the key.
    Gone,
}

/// Takes the entry `key` out of the cache at `dir` for `reason`.
pub fn evict(dir: &Path, key: &str, reason: Reason, now: SystemTime) -> Result<Evicted> {
    if matches!(reason, Reason::Unused) && lease::held(dir, key, now) {
        return Ok(Evicted::Leased);
    }
    match Trashed::take(dir, key)? {
        Some(t) => t.settle(reason, now),
        None => Ok(Evicted::Gone),
    }
}

/// An entry moved to our own trash name, not yet deleted.
pub struct Trashed {
    entry: PathBuf,
    path: PathBuf,
}

impl Trashed {
    /// Renames the entry `key` to a fresh trash name; `None` when it is not there.
    pub fn take(dir: &Path, key: &str) -> Result<Option<Trashed>> {
        let entry = dir.join(key);
        let path = dir.join(names::trash());
        match std::fs::rename(&entry, &path) {
            Ok(()) => {
                // a rename keeps the entry's old time: staleness of the trash counts from now
                let _ = clock::touch(&path);
                Ok(Some(Trashed { entry, path }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("moving {} aside to {}", entry.display(), path.display())),
        }
    }

    /// Checks `reason` again on the moved directory: puts it back, or deletes it.
    pub fn settle(self, reason: Reason, now: SystemTime) -> Result<Evicted> {
        let dir = self.entry.parent().unwrap_or(Path::new("/"));
        let key = self
            .entry
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let keep = match reason {
            Reason::Unused => lease::held(dir, &key, now),
            Reason::Damaged(id) => Identity::of(&self.path) != Some(id),
        };
        if keep {
            match std::fs::rename(&self.path, &self.entry) {
                Ok(()) => {
                    sync_dir(dir);
                    return Ok(Evicted::Restored);
                }
                // a writer placed a new entry under the key meanwhile: that one serves
                Err(e) => log::debug!("not putting {} back: {e}", self.entry.display()),
            }
        }
        sync_dir(dir);
        remove_trash(&self.path);
        Ok(Evicted::Removed)
    }
}

/// Deletes a trash directory (false when some of it stays: it is swept once stale).
pub fn remove_trash(path: &Path) -> bool {
    match std::fs::remove_dir_all(path) {
        Ok(()) => true,
        Err(e) => {
            log::debug!(
                "{} stays until it is stale ({} s): {e}",
                path.display(),
                clock::STALE.as_secs()
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::lease::Lease;

    const KEY: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

    fn entry(dir: &Path, content: &str) -> PathBuf {
        let e = dir.join(KEY);
        std::fs::create_dir_all(e.join("tree")).unwrap();
        std::fs::write(e.join("tree/f"), content).unwrap();
        e
    }

    fn names_in(dir: &Path) -> Vec<String> {
        crate::sys::fs::sorted_names(dir)
    }

    #[test]
    fn an_unused_entry_goes_and_a_leased_one_stays() {
        let d = tempfile::tempdir().unwrap();
        let now = clock::server_now(d.path()).unwrap();
        entry(d.path(), "x");
        let lease = Lease::take(d.path(), KEY).unwrap();
        assert_eq!(evict(d.path(), KEY, Reason::Unused, now).unwrap(), Evicted::Leased);
        assert!(d.path().join(KEY).join("tree/f").is_file());
        drop(lease);
        assert_eq!(evict(d.path(), KEY, Reason::Unused, now).unwrap(), Evicted::Removed);
        assert_eq!(evict(d.path(), KEY, Reason::Unused, now).unwrap(), Evicted::Gone);
        assert!(names_in(d.path()).is_empty(), "{:?}", names_in(d.path()));
    }

    #[test]
    fn a_reader_that_leases_after_the_entry_moved_aside_gets_it_back() {
        let d = tempfile::tempdir().unwrap();
        let now = clock::server_now(d.path()).unwrap();
        entry(d.path(), "x");
        // the pruner moved it aside, then a reader (another host) leased the key
        let t = Trashed::take(d.path(), KEY).unwrap().unwrap();
        assert!(!d.path().join(KEY).exists());
        let lease = Lease::take(d.path(), KEY).unwrap();
        assert_eq!(t.settle(Reason::Unused, now).unwrap(), Evicted::Restored);
        assert_eq!(std::fs::read_to_string(d.path().join(KEY).join("tree/f")).unwrap(), "x");
        drop(lease);
        // ... and when a writer placed a new entry meanwhile, the old one goes, the new one stays
        let t = Trashed::take(d.path(), KEY).unwrap().unwrap();
        let lease = Lease::take(d.path(), KEY).unwrap();
        entry(d.path(), "new");
        assert_eq!(t.settle(Reason::Unused, now).unwrap(), Evicted::Removed);
        assert_eq!(
            std::fs::read_to_string(d.path().join(KEY).join("tree/f")).unwrap(),
            "new"
        );
        drop(lease);
        assert_eq!(names_in(d.path()), vec![KEY.to_string()]);
    }

    #[test]
    fn only_the_damaged_directory_itself_is_removed() {
        let d = tempfile::tempdir().unwrap();
        let now = clock::server_now(d.path()).unwrap();
        let damaged = Identity::of(&entry(d.path(), "bad")).unwrap();
        // another host replaced the damaged entry by a good one after we looked
        let aside = d.path().join("aside");
        std::fs::rename(d.path().join(KEY), &aside).unwrap();
        entry(d.path(), "good");
        let held_even_by_a_lease = Lease::take(d.path(), KEY).unwrap();
        assert_eq!(
            evict(d.path(), KEY, Reason::Damaged(damaged), now).unwrap(),
            Evicted::Restored
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join(KEY).join("tree/f")).unwrap(),
            "good"
        );
        // the damaged one itself goes, lease or not
        std::fs::remove_dir_all(d.path().join(KEY)).unwrap();
        std::fs::rename(&aside, d.path().join(KEY)).unwrap();
        assert_eq!(
            evict(d.path(), KEY, Reason::Damaged(damaged), now).unwrap(),
            Evicted::Removed
        );
        drop(held_even_by_a_lease);
        assert!(names_in(d.path()).is_empty(), "{:?}", names_in(d.path()));
    }
}
