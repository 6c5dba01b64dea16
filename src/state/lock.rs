//! One lock for every command that changes the tree (flock on
//! `$dkms_tree/.modsync/lock`): a second run waits, says so, and then finds
//! the work done. The tree itself must exist; it is never created here.

use anyhow::{Context, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes the lock of the tree at `dkms_tree`, waiting for another holder.
    pub fn acquire(dkms_tree: &Path) -> Result<Lock> {
        let dir = dkms_tree.join(".modsync");
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
        let path = dir.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                eprintln!("modsync: waiting for another run ({}) to finish...", holder.trim());
                file.lock().with_context(|| format!("locking {}", path.display()))?;
            }
            Err(TryLockError::Error(e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
        }
        file.set_len(0).ok();
        file.rewind().ok();
        let _ = write!(file, "pid {}", std::process::id());
        Ok(Lock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_waits_for_the_first() {
        let d = tempfile::tempdir().unwrap();
        let first = Lock::acquire(d.path()).unwrap();
        let p = d.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        let h = std::thread::spawn(move || {
            let _l = Lock::acquire(&p).unwrap();
            tx.send(()).unwrap();
        });
        // polled with a deadline: the second must still be waiting while the first is held
        let waited = rx.recv_timeout(std::time::Duration::from_millis(300));
        assert!(waited.is_err(), "the second lock did not wait");
        drop(first);
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the second lock was never acquired");
        h.join().unwrap();
    }

    #[test]
    fn a_missing_tree_is_not_created() {
        let d = tempfile::tempdir().unwrap();
        assert!(Lock::acquire(&d.path().join("missing")).is_err());
        assert!(!d.path().join("missing").exists());
    }
}
