//! Keeping a shared cache within `cache_max_mb`: the least recently used
//! entries (by the file server's times) go through [`evict`], which leaves
//! an entry alone while another reader or writer holds a lease on it; and
//! what crashed writers, pruners and readers left (temporaries, trash,
//! leases, clock probes) goes once [`STALE`](clock::STALE). A live writer's
//! temporary is never deleted in place: it is renamed away first, so the
//! writer's own rename fails cleanly instead of publishing half of it.

use super::clock;
use super::evict::{evict, remove_trash, Evicted, Reason};
use super::names::{self, Name};
use super::Cache;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What [`Cache::prune`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Entries removed, and their bytes.
    pub entries: usize,
    pub bytes: u64,
    /// Entries over the bound left in place because they are in use.
    pub in_use: usize,
    /// Stale leftovers removed.
    pub swept: usize,
}

struct Listed {
    key: String,
    used: SystemTime,
    bytes: u64,
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

fn names_in(dir: &Path) -> Vec<(String, PathBuf)> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect()
}

impl Cache {
    fn entries(&self) -> Vec<Listed> {
        names_in(&self.dir)
            .into_iter()
            .filter(|(n, _)| names::classify(n) == Name::Entry)
            .map(|(key, p)| Listed {
                key,
                used: std::fs::metadata(&p)
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH),
                bytes: dir_size(&p),
            })
            .collect()
    }

    /// (entries, bytes).
    pub fn usage(&self) -> (usize, u64) {
        let entries = self.entries();
        (entries.len(), entries.iter().map(|e| e.bytes).sum())
    }

    /// Removes the least recently used entries not in use until the cache
    /// fits its bound, and stale leftovers.
    pub fn prune(&self) -> Result<Pruned> {
        let now = clock::server_now(&self.dir)?;
        let mut done = Pruned {
            swept: sweep(&self.dir, now),
            ..Pruned::default()
        };
        let mut entries = self.entries();
        let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
        entries.sort_by_key(|e| e.used);
        for e in entries {
            if total <= self.max_bytes {
                break;
            }
            match evict(&self.dir, &e.key, Reason::Unused, now)? {
                Evicted::Removed => {
                    done.entries += 1;
                    done.bytes += e.bytes;
                    total -= e.bytes;
                }
                Evicted::Gone => total -= e.bytes,
                Evicted::Leased | Evicted::Restored => done.in_use += 1,
            }
        }
        Ok(done)
    }

    /// Removes every entry not in use, and stale leftovers; returns how
    /// many entries went.
    pub fn clear(&self) -> Result<usize> {
        if !self.dir.is_dir() {
            return Ok(0);
        }
        let now = clock::server_now(&self.dir)?;
        sweep(&self.dir, now);
        let mut removed = 0;
        for e in self.entries() {
            if evict(&self.dir, &e.key, Reason::Unused, now)? == Evicted::Removed {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Removes the leftovers older than [`clock::STALE`] by `now`; returns how many.
fn sweep(dir: &Path, now: SystemTime) -> usize {
    let mut swept = 0;
    for (name, path) in names_in(dir) {
        let kind = names::classify(&name);
        if matches!(kind, Name::Entry | Name::Foreign) || !clock::stale(&path, now) {
            continue;
        }
        log::debug!("removing the stale {}", path.display());
        match kind {
            Name::Temp => {
                // renamed away first: a writer still at work fails its rename, never publishes a part
                let trash = dir.join(names::trash());
                if std::fs::rename(&path, &trash).is_ok() {
                    swept += usize::from(remove_trash(&trash));
                }
            }
            Name::Trash => swept += usize::from(remove_trash(&path)),
            _ => swept += usize::from(std::fs::remove_file(&path).is_ok()),
        }
    }
    swept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::lease::Lease;
    use crate::cache::testing::{cache, leftovers, result};
    use crate::cache::Fetched;
    use std::fs::FileTimes;
    use std::time::Duration;

    fn key(n: u8) -> String {
        format!("{n:064x}")
    }

    #[test]
    fn the_least_recently_used_entries_go_first_unless_in_use() {
        let d = tempfile::tempdir().unwrap();
        // room for two entries of ~1.3 KiB (result and manifest)
        let c = cache(d.path(), 3000);
        let built = result(d.path(), "x");
        for n in 1..=3 {
            c.store(&key(n), &built).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        // key 1 was read last: key 2 is now the least recently used
        assert_eq!(c.fetch(&key(1), &d.path().join("out")).unwrap(), Fetched::Copied);
        let p = c.prune().unwrap();
        assert_eq!((p.entries, p.in_use), (1, 0));
        assert!(c.entry(&key(1)).exists() && !c.entry(&key(2)).exists() && c.entry(&key(3)).exists());
        // a leased entry stays even when nothing fits
        let tight = cache(d.path(), 0);
        let lease = Lease::take(&c.dir, &key(3)).unwrap();
        let p = tight.prune().unwrap();
        assert_eq!((p.entries, p.in_use), (1, 1));
        assert_eq!(tight.usage().0, 1);
        drop(lease);
        assert_eq!(tight.clear().unwrap(), 1);
        assert_eq!(c.usage(), (0, 0));
        assert!(leftovers(&c).is_empty(), "{:?}", leftovers(&c));
    }

    #[test]
    fn stale_leftovers_are_swept_and_live_ones_and_foreign_files_stay() {
        let d = tempfile::tempdir().unwrap();
        let c = cache(d.path(), u64::MAX);
        std::fs::create_dir_all(&c.dir).unwrap();
        let now = clock::server_now(&c.dir).unwrap();
        let k = key(9);
        let mk = |name: String, dir: bool, age: u64| {
            let p = c.dir.join(name);
            if dir {
                std::fs::create_dir_all(p.join("tree")).unwrap();
            } else {
                std::fs::write(&p, "").unwrap();
            }
            std::fs::File::open(&p)
                .unwrap()
                .set_times(FileTimes::new().set_modified(now - Duration::from_secs(age)))
                .unwrap();
        };
        for age in [7200, 60] {
            mk(names::temp(&k), true, age);
            mk(names::trash(), true, age);
            mk(names::lease(&k), false, age);
            mk(names::clock(), false, age);
        }
        mk("lost+found".into(), true, 7200);
        mk("notes.txt".into(), false, 7200);
        let before = leftovers(&c).len();
        let p = c.prune().unwrap();
        assert_eq!(p.swept, 4);
        assert_eq!(leftovers(&c).len(), before - 4);
        assert!(c.dir.join("lost+found").is_dir() && c.dir.join("notes.txt").is_file());
        assert_eq!(c.usage().0, 0, "foreign names are not entries");
    }
}
