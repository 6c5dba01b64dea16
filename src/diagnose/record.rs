//! A failed build's diagnosis, kept beside its make.log in
//! `m/v/.modsync/failed/K-A/diagnosis.json`, so that `status --json` and
//! `modsync explain` read it without starting a process.

use super::Diagnosis;
use crate::sys::fs::write_atomic;
use anyhow::{Context, Result};
use std::path::Path;

pub const FILE: &str = "diagnosis.json";

/// Writes the diagnosis into a kept failure directory.
pub fn write(dir: &Path, d: &Diagnosis) -> Result<()> {
    let text = serde_json::to_string_pretty(d).context("serialising a diagnosis")? + "\n";
    write_atomic(&dir.join(FILE), text.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", dir.join(FILE).display()))
}

/// The diagnosis kept in a failure directory, if any (an unreadable one is
/// logged and treated as absent).
pub fn read(dir: &Path) -> Option<Diagnosis> {
    let p = dir.join(FILE);
    let text = std::fs::read_to_string(&p).ok()?;
    serde_json::from_str(&text)
        .map_err(|e| log::warn!("ignoring {}: {e}", p.display()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diagnosis_survives_its_file() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read(d.path()), None);
        let diag = crate::diagnose::excluded("m", "1", "6.1", "BUILD_EXCLUSIVE_KERNEL=\"^5\"");
        write(d.path(), &diag).unwrap();
        assert_eq!(read(d.path()), Some(diag));
        std::fs::write(d.path().join(FILE), "{").unwrap();
        assert_eq!(read(d.path()), None);
    }
}
