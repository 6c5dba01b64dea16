//! The guard's record, `$dkms_tree/.modsync/boot-guard.toml`: which kernel
//! it holds, for which missing modules, with which boot loader, and the
//! change to undo. Present only while the guard holds a kernel.

use super::loader::Change;
use crate::sys::fs::write_atomic;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A hold in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The kernel that boots by default.
    pub kernel: String,
    /// The newest kernel, which lacks `missing`.
    pub newest: String,
    pub missing: Vec<String>,
    /// Why each is missing, a sentence each.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// The boot loader's name.
    pub loader: String,
    /// Seconds since the epoch when the hold began.
    pub since: u64,
    pub change: Change,
}

/// Where the record lives under the state tree.
pub fn path(dkms_tree: &Path) -> PathBuf {
    dkms_tree.join(".modsync/boot-guard.toml")
}

/// The record, if a hold is in force (an unreadable one is reported).
pub fn read(dkms_tree: &Path) -> Result<Option<Record>> {
    let p = path(dkms_tree);
    match std::fs::read_to_string(&p) {
        Ok(t) => toml::from_str(&t).map(Some).with_context(|| {
            format!(
                "reading {} (remove it after checking the boot loader's default)",
                p.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

/// Writes the record.
pub fn write(dkms_tree: &Path, r: &Record) -> Result<()> {
    let p = path(dkms_tree);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let text = toml::to_string(r).context("writing the boot guard's record")?;
    write_atomic(&p, text.as_bytes(), 0o644)
}

/// Removes the record.
pub fn remove(dkms_tree: &Path) -> Result<()> {
    let p = path(dkms_tree);
    match std::fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", p.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(read(t.path()).unwrap(), None);
        let r = Record {
            kernel: "6.1.0-54-amd64".into(),
            newest: "6.1.0-56-amd64".into(),
            missing: vec!["zfs".into()],
            reasons: vec!["zfs: zfs/2.1.11 failed to build".into()],
            loader: "GRUB".into(),
            since: 1,
            change: Change::GrubSaved {
                entry: "a>b".into(),
                previous: None,
            },
        };
        write(t.path(), &r).unwrap();
        assert_eq!(read(t.path()).unwrap(), Some(r));
        remove(t.path()).unwrap();
        assert_eq!(read(t.path()).unwrap(), None);
        std::fs::create_dir_all(t.path().join(".modsync")).unwrap();
        std::fs::write(path(t.path()), "kernel = 1\n").unwrap();
        assert!(read(t.path()).is_err());
    }
}
