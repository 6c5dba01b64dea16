//! One lock for every mutating command (flock on `$dkms_tree/.modsync.lock`):
//! a second run waits, says so, and then finds the work done.

use anyhow::{Context, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

pub struct Lock {
    _file: File,
}

impl Lock {
    pub fn acquire(dkms_tree: &Path) -> Result<Lock> {
        std::fs::create_dir_all(dkms_tree).with_context(|| format!("creating {}", dkms_tree.display()))?;
        let path = dkms_tree.join(".modsync.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                eprintln!(
                    "modsync: waiting for another modsync run ({}) to finish...",
                    holder.trim().trim_start_matches("pid ").split_whitespace().next().map(|p| format!("pid {p}")).unwrap_or_else(|| "unknown pid".into())
                );
                file.lock().with_context(|| format!("locking {}", path.display()))?;
            }
            Err(TryLockError::Error(e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
        }
        file.set_len(0).ok();
        file.rewind().ok();
        let _ = writeln!(file, "pid {}", std::process::id());
        Ok(Lock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_waits_for_first() {
        let d = tempfile::tempdir().unwrap();
        let first = Lock::acquire(d.path()).unwrap();
        let p = d.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        let h = std::thread::spawn(move || {
            let _l = Lock::acquire(&p).unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(std::time::Duration::from_millis(300)).is_err(), "second lock did not wait");
        drop(first);
        rx.recv_timeout(std::time::Duration::from_secs(5)).expect("second lock never acquired");
        h.join().unwrap();
    }
}
