//! Reading an entry: the key is leased (so no host prunes it meanwhile) and
//! marked used, its manifest read, `tree/` copied out, and the copy checked
//! against the manifest: a reader uses only a copy that is exactly what the
//! writer stored, whatever happened to the entry during the copy. When the
//! copy does not match, the entry is checked in place: a damaged entry is
//! removed (only that very directory), a sound one was moved or replaced
//! under the reader, which then builds instead.

use super::clock;
use super::evict::{evict, Evicted, Identity, Reason};
use super::lease::Lease;
use super::{read_manifest, Cache, Manifest, TREE};
use crate::sys::fs::copy_tree;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// What [`Cache::fetch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// `to` holds the entry's result, verified.
    Copied,
    /// No entry under the key.
    Absent,
    /// The copy did not match the manifest while the entry does (it moved
    /// or changed during the copy, or copying failed): not used.
    CopyFailed(String),
    /// The entry failed verification and was removed.
    Discarded(String),
}

impl Cache {
    /// Copies the result stored under `key` into `to` (which must not
    /// exist). Unless the answer is [`Fetched::Copied`], `to` does not exist
    /// afterwards.
    pub fn fetch(&self, key: &str, to: &Path) -> Result<Fetched> {
        match Reading::begin(self, key)? {
            Begun::Reading(r) => r.copy_to(to),
            Begun::Done(f) => Ok(f),
        }
    }
}

pub enum Begun {
    Reading(Reading),
    Done(Fetched),
}

/// An entry leased and its manifest read, ready to copy out.
pub struct Reading {
    dir: PathBuf,
    key: String,
    entry: PathBuf,
    id: Identity,
    manifest: Manifest,
    _lease: Lease,
}

impl Reading {
    pub fn begin(cache: &Cache, key: &str) -> Result<Begun> {
        let entry = cache.entry(key);
        if !cache.dir.is_dir() {
            return Ok(Begun::Done(Fetched::Absent));
        }
        let lease = Lease::take(&cache.dir, key)?;
        let Some(id) = Identity::of(&entry) else {
            return Ok(Begun::Done(Fetched::Absent));
        };
        // least recently used: by the file server's clock
        if let Err(e) = clock::touch(&entry) {
            log::debug!("marking {} used: {e}", entry.display());
        }
        match read_manifest(&entry) {
            Ok(manifest) => Ok(Begun::Reading(Reading {
                dir: cache.dir.clone(),
                key: key.to_string(),
                entry,
                id,
                manifest,
                _lease: lease,
            })),
            Err(why) => discard(&cache.dir, key, id, format!("{why:#}")).map(Begun::Done),
        }
    }

    pub fn copy_to(self, to: &Path) -> Result<Fetched> {
        let copied = copy_tree(&self.entry.join(TREE), to).and_then(|()| self.manifest.check(to));
        let why = match copied {
            Ok(()) => return Ok(Fetched::Copied),
            Err(why) => format!("{why:#}"),
        };
        let _ = std::fs::remove_dir_all(to);
        // the same directory (an inode number can come back for a new entry)
        // with the same manifest, and its tree does not match it: damaged
        let same =
            Identity::of(&self.entry) == Some(self.id) && read_manifest(&self.entry).is_ok_and(|m| m == self.manifest);
        match self.manifest.check(&self.entry.join(TREE)) {
            Err(damage) if same => discard(&self.dir, &self.key, self.id, format!("{damage:#}")),
            _ => Ok(Fetched::CopyFailed(why)),
        }
    }
}

/// Removes the damaged entry `id` under `key`, if it is still there.
fn discard(dir: &Path, key: &str, id: Identity, why: String) -> Result<Fetched> {
    let now = clock::server_now(dir)?;
    Ok(match evict(dir, key, Reason::Damaged(id), now)? {
        Evicted::Removed => Fetched::Discarded(why),
        _ => Fetched::CopyFailed(why),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::evict::Trashed;
    use crate::cache::testing::{cache, leftovers, result, KEY};
    use crate::cache::MANIFEST;

    fn begin(c: &Cache) -> Reading {
        match Reading::begin(c, KEY).unwrap() {
            Begun::Reading(r) => r,
            Begun::Done(f) => panic!("no entry to read: {f:?}"),
        }
    }

    #[test]
    fn a_truncated_entry_is_ignored_and_removed() {
        for damage in ["tree/module/foo.ko", MANIFEST] {
            let d = tempfile::tempdir().unwrap();
            let c = cache(d.path(), u64::MAX);
            c.store(KEY, &result(d.path(), "x")).unwrap();
            let f = c.entry(KEY).join(damage);
            let len = std::fs::metadata(&f).unwrap().len();
            std::fs::File::options()
                .write(true)
                .open(&f)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
            let to = d.path().join("out");
            assert!(matches!(c.fetch(KEY, &to).unwrap(), Fetched::Discarded(_)), "{damage}");
            assert!(!to.exists() && !c.entry(KEY).exists(), "{damage}");
            assert!(leftovers(&c).is_empty(), "{damage}: {:?}", leftovers(&c));
            assert_eq!(c.fetch(KEY, &to).unwrap(), Fetched::Absent);
        }
    }

    #[test]
    fn an_entry_is_not_pruned_while_it_is_read() {
        let d = tempfile::tempdir().unwrap();
        let c = cache(d.path(), u64::MAX);
        c.store(KEY, &result(d.path(), "x")).unwrap();
        let reading = begin(&c);
        // another host prunes everything meanwhile
        let other_host = cache(d.path(), 0);
        let p = other_host.prune().unwrap();
        assert_eq!((p.entries, p.in_use), (0, 1));
        let to = d.path().join("out");
        assert_eq!(reading.copy_to(&to).unwrap(), Fetched::Copied);
        assert_eq!(std::fs::read_to_string(to.join("log/make.log")).unwrap(), "x");
        // once read, it may go
        assert_eq!(other_host.prune().unwrap().entries, 1);
        assert!(leftovers(&c).is_empty(), "{:?}", leftovers(&c));
    }

    #[test]
    fn an_entry_moved_away_during_the_copy_is_not_used_and_comes_back() {
        let d = tempfile::tempdir().unwrap();
        let c = cache(d.path(), u64::MAX);
        c.store(KEY, &result(d.path(), "x")).unwrap();
        let reading = begin(&c);
        // a pruner moved it aside before it saw the lease
        let trashed = Trashed::take(&c.dir, KEY).unwrap().unwrap();
        let to = d.path().join("out");
        assert!(matches!(reading.copy_to(&to).unwrap(), Fetched::CopyFailed(_)));
        assert!(!to.exists());
        // the reader's lease was seen after the move (the reader has let go since)
        let lease = Lease::take(&c.dir, KEY).unwrap();
        let now = clock::server_now(&c.dir).unwrap();
        assert_eq!(trashed.settle(Reason::Unused, now).unwrap(), Evicted::Restored);
        drop(lease);
        assert_eq!(c.fetch(KEY, &to).unwrap(), Fetched::Copied);
        assert!(leftovers(&c).is_empty(), "{:?}", leftovers(&c));
    }

    #[test]
    fn an_entry_replaced_during_the_copy_gives_no_mixed_result_and_survives() {
        let d = tempfile::tempdir().unwrap();
        let c = cache(d.path(), u64::MAX);
        c.store(KEY, &result(d.path(), "old")).unwrap();
        let reading = begin(&c);
        // pruned (ignoring leases, as `rm -rf` by hand would) and stored again by another host
        std::fs::remove_dir_all(c.entry(KEY)).unwrap();
        c.store(KEY, &result(d.path(), "new")).unwrap();
        let to = d.path().join("out");
        assert!(matches!(reading.copy_to(&to).unwrap(), Fetched::CopyFailed(_)));
        assert!(!to.exists());
        assert_eq!(c.fetch(KEY, &to).unwrap(), Fetched::Copied);
        assert_eq!(std::fs::read_to_string(to.join("log/make.log")).unwrap(), "new");
    }
}
