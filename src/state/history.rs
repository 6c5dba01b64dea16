//! The history of what hooks did: one JSON line per (module, kernel) result
//! of every hook run (built and installed, skipped, failed and why, removed),
//! appended to `/var/log/modsync/history.log` (the `history_log` setting;
//! logrotate rotates it), so that after an unattended upgrade `modsync log`
//! shows what happened, when, and why. Reading takes the rotated files
//! (`history.log.1`, `history.log.2.gz`, ...) too, oldest first.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// What happened to one module version for one kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResultKind {
    /// Built (or taken from the cache) and installed.
    Installed,
    /// BUILD_EXCLUSIVE keeps the kernel out.
    Skipped,
    /// The build or the install failed.
    Failed,
    /// Not built: a module it depends on (BUILD_DEPENDS) was not installed.
    NotInstalled,
    /// Waiting for a BUILD_DEPENDS module that is not registered yet.
    Deferred,
    /// Taken out of the kernel (the kernel or the module went away).
    Removed,
    /// Nothing was built for the kernel (its headers are missing); no module named.
    NotBuilt,
}

impl ResultKind {
    pub fn word(self) -> &'static str {
        match self {
            ResultKind::Installed => "installed",
            ResultKind::Skipped => "skipped",
            ResultKind::Failed => "failed",
            ResultKind::NotInstalled => "not-installed",
            ResultKind::Deferred => "deferred",
            ResultKind::Removed => "removed",
            ResultKind::NotBuilt => "not-built",
        }
    }
}

/// One result, as a hook run found it (the time and the trigger are added
/// when it is written).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `module/version`; None for a kernel-wide result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    pub kernel: String,
    pub result: ResultKind,
    /// dkms's exit code of the failure (0 for a success).
    #[serde(default)]
    pub code: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub make_log: Option<PathBuf>,
}

impl Event {
    pub fn new(module: Option<String>, kernel: &str, result: ResultKind) -> Event {
        Event {
            module,
            kernel: kernel.to_string(),
            result,
            code: 0,
            reason: None,
            make_log: None,
        }
    }
}

/// One line of the history file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// UTC, RFC 3339 to the second.
    pub time: String,
    /// What ran the hook, e.g. `apt postinst`, `pacman install`.
    pub trigger: String,
    #[serde(flatten)]
    pub event: Event,
}

/// The lines for one hook run, in order. Pure.
pub fn lines(time: &str, trigger: &str, events: &[Event]) -> String {
    let mut out = String::new();
    for e in events {
        let entry = Entry {
            time: time.to_string(),
            trigger: trigger.to_string(),
            event: e.clone(),
        };
        // an Entry has only strings, numbers and paths: it always serialises
        out += &serde_json::to_string(&entry).unwrap_or_default();
        out.push('\n');
    }
    out
}

/// Appends the run's events to the history file in one write (the
/// directory is made when missing).
pub fn append(path: &Path, trigger: &str, events: &[Event]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let text = lines(&now, trigger, events);
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("appending to {}", path.display()))
}

/// The file and its rotations, oldest first: `path.N[.gz]` for the largest
/// N down to 1, then `path`.
fn files(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return vec![path.to_path_buf()];
    };
    let name = name.to_string_lossy();
    let mut rotated: Vec<(u32, PathBuf)> = crate::sys::fs::sorted_names(dir)
        .into_iter()
        .filter_map(|f| {
            let rest = f.strip_prefix(&*name)?.strip_prefix('.')?;
            let n = rest.strip_suffix(".gz").unwrap_or(rest).parse::<u32>().ok()?;
            Some((n, dir.join(&f)))
        })
        .collect();
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    rotated
        .into_iter()
        .map(|(_, p)| p)
        .chain([path.to_path_buf()])
        .collect()
}

/// Parses history text; lines that are not entries are counted, not fatal. Pure.
pub fn parse(text: &str) -> (Vec<Entry>, usize) {
    let mut bad = 0;
    let entries = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let e = serde_json::from_str::<Entry>(l).ok();
            bad += e.is_none() as usize;
            e
        })
        .collect();
    (entries, bad)
}

/// Every entry of the file and its rotations, oldest first, and how many
/// lines could not be read.
pub fn read(path: &Path) -> Result<(Vec<Entry>, usize)> {
    let mut all = Vec::new();
    let mut bad = 0;
    for f in files(path) {
        let raw = match fs::read(&f) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", f.display())),
        };
        let text = if f.extension().is_some_and(|x| x == "gz") {
            let mut s = String::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_string(&mut s)
                .with_context(|| format!("decompressing {}", f.display()))?;
            s
        } else {
            String::from_utf8_lossy(&raw).into_owned()
        };
        let (e, b) = parse(&text);
        all.extend(e);
        bad += b;
    }
    Ok((all, bad))
}

/// One entry for a person: `TIME  KERNEL  MODULE  RESULT  [reason] [log]`. Pure.
pub fn human(e: &Entry) -> String {
    let ev = &e.event;
    let mut s = format!(
        "{}  {:<24} {:<32} {}",
        e.time,
        ev.kernel,
        ev.module.as_deref().unwrap_or("-"),
        ev.result.word()
    );
    if ev.code != 0 {
        s += &format!(" ({})", ev.code);
    }
    s += &format!("  [{}]", e.trigger);
    if let Some(r) = &ev.reason {
        s += &format!("\n    {}", r.replace('\n', "\n    "));
    }
    if let Some(l) = &ev.make_log {
        s += &format!("\n    make.log: {}", l.display());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> Event {
        Event {
            code: 10,
            reason: Some("make exited with status 2".into()),
            make_log: Some("/var/lib/dkms/x/1/.modsync/failed/6.1-x86_64/make.log".into()),
            ..Event::new(Some("x/1".into()), "6.1", ResultKind::Failed)
        }
    }

    #[test]
    fn lines_round_trip_and_bad_lines_are_counted() {
        let events = [
            Event::new(Some("v4l2loopback/0.12.7".into()), "6.1", ResultKind::Installed),
            failed(),
        ];
        let text = lines("2026-12-05T08:00:00Z", "apt postinst", &events);
        assert_eq!(text.lines().count(), 2);
        let (entries, bad) = parse(&(text + "not json\n\n"));
        assert_eq!(bad, 1);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].event, failed());
        assert_eq!(entries[1].trigger, "apt postinst");
        let h = human(&entries[1]);
        assert!(h.starts_with("2026-12-05T08:00:00Z  6.1"), "{h}");
        assert!(h.contains("x/1") && h.contains("failed (10)") && h.contains("make exited with status 2"));
        assert!(h.contains("make.log: /var/lib/dkms/x/1/"));
    }

    #[test]
    fn rotated_files_are_read_oldest_first() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("history.log");
        let entry = |k: &str| lines("t", "apt postinst", &[Event::new(None, k, ResultKind::NotBuilt)]);
        fs::write(d.path().join("history.log.1"), entry("k1")).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(entry("k2").as_bytes()).unwrap();
        fs::write(d.path().join("history.log.2.gz"), gz.finish().unwrap()).unwrap();
        fs::write(d.path().join("history.log.old"), entry("ignored")).unwrap();
        append(&p, "pacman install", &[Event::new(None, "k0", ResultKind::NotBuilt)]).unwrap();
        let (entries, bad) = read(&p).unwrap();
        let kernels: Vec<&str> = entries.iter().map(|e| e.event.kernel.as_str()).collect();
        assert_eq!((kernels, bad), (vec!["k2", "k1", "k0"], 0));
        assert!(
            entries[2].time.ends_with('Z') && entries[2].time.len() == 20,
            "{}",
            entries[2].time
        );
        // nothing to say: nothing is written, not even an empty file
        let q = d.path().join("sub/none.log");
        append(&q, "x", &[]).unwrap();
        assert!(!q.exists());
    }
}
