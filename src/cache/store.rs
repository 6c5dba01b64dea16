//! Writing an entry: the result is copied into a temporary directory whose
//! name no other host or process uses, its manifest (made from the result
//! itself) written beside it, every file and directory fsync'd, the copy
//! checked against the manifest, and the directory renamed to the key. A
//! rename onto an existing entry fails: the loser keeps the winner's entry
//! when it verifies, and replaces it only when it is damaged.

use super::clock;
use super::evict::{evict, Evicted, Identity, Reason};
use super::lease::Lease;
use super::names;
use super::{verify, Cache, Manifest, MANIFEST, TREE};
use crate::sys::fs::{copy_tree, sync_dir};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What [`Cache::store`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Our entry is now the key's.
    New,
    /// A complete entry of the key was there already (another writer's).
    AlreadyThere,
}

impl Cache {
    /// Stores a finished build result (`m/v/K/A`) under `key`.
    pub fn store(&self, key: &str, result: &Path) -> Result<Stored> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        let entry = self.entry(key);
        if entry.join(MANIFEST).is_file() {
            let _ = clock::touch(&entry);
            return Ok(Stored::AlreadyThere);
        }
        Staged::write(&self.dir, key, result)?.publish()
    }
}

/// A complete, synced entry in its temporary directory (removed when dropped unpublished).
pub struct Staged {
    dir: PathBuf,
    key: String,
    tmp: PathBuf,
}

impl Staged {
    pub fn write(dir: &Path, key: &str, result: &Path) -> Result<Staged> {
        let manifest = Manifest::of(result)?;
        let tmp = dir.join(names::temp(key));
        std::fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let staged = Staged {
            dir: dir.to_path_buf(),
            key: key.to_string(),
            tmp,
        };
        let tree = staged.tmp.join(TREE);
        copy_tree(result, &tree)?;
        let mpath = staged.tmp.join(MANIFEST);
        std::fs::File::create_new(&mpath)
            .and_then(|mut f| f.write_all(manifest.render().as_bytes()))
            .with_context(|| format!("writing {}", mpath.display()))?;
        sync_tree(&staged.tmp)?;
        // the copy is what the manifest says (nothing lost, nobody swept it)
        manifest.check(&tree)?;
        Ok(staged)
    }

    /// Renames the entry into place, holding a lease on the key meanwhile
    /// so no other host prunes it as it appears.
    pub fn publish(self) -> Result<Stored> {
        let entry = self.dir.join(&self.key);
        let _lease = Lease::take(&self.dir, &self.key)?;
        let mut replaced_damaged = false;
        loop {
            let err = match std::fs::rename(&self.tmp, &entry) {
                Ok(()) => {
                    sync_dir(&self.dir);
                    let _ = clock::touch(&entry);
                    return Ok(Stored::New);
                }
                Err(e) => e,
            };
            // another writer's entry (or ours, when NFS lost the reply to a rename that happened)
            let why = match verify(&entry) {
                Ok(()) => return Ok(Stored::AlreadyThere),
                Err(why) => why,
            };
            let damaged = Identity::of(&entry);
            if let (Some(id), false) = (damaged, replaced_damaged) {
                log::warn!("replacing the damaged cache entry {}: {why:#}", entry.display());
                let now = clock::server_now(&self.dir)?;
                if evict(&self.dir, &self.key, Reason::Damaged(id), now)? == Evicted::Removed {
                    replaced_damaged = true;
                    continue;
                }
            }
            return Err(err).with_context(|| format!("renaming {} to {}", self.tmp.display(), entry.display()));
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                log::debug!("removing {}: {e}", self.tmp.display())
            }
            _ => {}
        }
    }
}

/// fsyncs every file and directory under `root` (children first), `root` included.
fn sync_tree(root: &Path) -> Result<()> {
    for e in walkdir::WalkDir::new(root).contents_first(true) {
        let e = e.with_context(|| format!("reading {}", root.display()))?;
        if e.file_type().is_symlink() {
            continue;
        }
        std::fs::File::open(e.path())
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", e.path().display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{cache, leftovers, result, KEY};
    use crate::cache::Fetched;

    fn fetched_log(c: &Cache, d: &Path) -> String {
        let to = d.join("out");
        let _ = std::fs::remove_dir_all(&to);
        assert_eq!(c.fetch(KEY, &to).unwrap(), Fetched::Copied);
        std::fs::read_to_string(to.join("log/make.log")).unwrap()
    }

    #[test]
    fn of_two_writers_of_one_key_the_first_rename_wins_and_the_loser_keeps_it() {
        let d = tempfile::tempdir().unwrap();
        let c = cache(d.path(), u64::MAX);
        std::fs::create_dir_all(&c.dir).unwrap();
        // both have written their temporaries before either renames
        let a = Staged::write(&c.dir, KEY, &result(d.path(), "a")).unwrap();
        let b = Staged::write(&c.dir, KEY, &result(d.path(), "b")).unwrap();
        assert_ne!(a.tmp, b.tmp);
        assert_eq!(a.publish().unwrap(), Stored::New);
        assert_eq!(b.publish().unwrap(), Stored::AlreadyThere);
        assert_eq!(fetched_log(&c, d.path()), "a");
        assert!(leftovers(&c).is_empty(), "{:?}", leftovers(&c));
        verify(&c.entry(KEY)).unwrap();
        // a later writer does not even stage
        assert_eq!(c.store(KEY, &result(d.path(), "c")).unwrap(), Stored::AlreadyThere);
        assert!(leftovers(&c).is_empty());
    }

    #[test]
    fn a_writer_replaces_a_damaged_entry_but_never_a_sound_one() {
        let d = tempfile::tempdir().unwrap();
        let c = cache(d.path(), u64::MAX);
        std::fs::create_dir_all(&c.dir).unwrap();
        let late = Staged::write(&c.dir, KEY, &result(d.path(), "late")).unwrap();
        assert_eq!(c.store(KEY, &result(d.path(), "first")).unwrap(), Stored::New);
        // cut short after it was placed (a disk error, a half copy by hand)
        std::fs::write(c.entry(KEY).join("tree/module/foo.ko"), b"trunc").unwrap();
        assert_eq!(late.publish().unwrap(), Stored::New);
        assert_eq!(fetched_log(&c, d.path()), "late");
        assert!(leftovers(&c).is_empty(), "{:?}", leftovers(&c));
    }

    #[test]
    fn a_temporary_swept_under_its_writer_is_never_published() {
        let d = tempfile::tempdir().unwrap();
        let c = cache(d.path(), u64::MAX);
        std::fs::create_dir_all(&c.dir).unwrap();
        let slow = Staged::write(&c.dir, KEY, &result(d.path(), "slow")).unwrap();
        // another host judged it stale: renamed away, then deleted
        let trash = c.dir.join("gone");
        std::fs::rename(&slow.tmp, &trash).unwrap();
        std::fs::remove_dir_all(&trash).unwrap();
        assert!(slow.publish().is_err());
        assert!(!c.entry(KEY).exists());
        assert!(leftovers(&c).is_empty(), "{:?}", leftovers(&c));
    }

    #[test]
    fn a_stored_entry_is_synced_complete_and_verifies() {
        let d = tempfile::tempdir().unwrap();
        let c = cache(d.path(), u64::MAX);
        let r = result(d.path(), "x");
        std::os::unix::fs::symlink("foo.ko", r.join("module/link.ko")).unwrap();
        assert_eq!(c.store(KEY, &r).unwrap(), Stored::New);
        verify(&c.entry(KEY)).unwrap();
        Manifest::of(&r).unwrap().check(&c.entry(KEY).join(TREE)).unwrap();
        assert_eq!(crate::sys::fs::sorted_names(&c.entry(KEY)), vec![MANIFEST, TREE]);
    }
}
