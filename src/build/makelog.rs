//! make.log in dkms's format, which its test suite and users' tools read:
//! a first line naming the build, the date, then one section per step
//! (patch, script, make):
//!
//! ```text
//!
//! <description>
//! # command: <command>
//! <output of the command>
//!
//! # exit code: N
//! # elapsed time: HH:MM:SS
//! ----------------------------------------------------------------
//! ```
//!
//! The same format serves `$dkms_tree/post_transaction.log`.

use anyhow::{Context, Result};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

pub const RULE: &str = "----------------------------------------------------------------";

/// `HH:MM:SS` as `date +%T` prints an elapsed time.
pub fn hms(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// The date line (`date`'s format: "Wed Dec  2 02:44:07 UTC 2026").
pub fn date_line() -> String {
    std::process::Command::new("date")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The first two lines of a make.log.
pub fn header(version: &str, m: &str, v: &str, kernel: &str, arch: &str) -> String {
    format!(
        "DKMS ({version}) make.log for {m}/{v} for kernel {kernel} ({arch})\n{} (modsync {})\n",
        date_line(),
        env!("CARGO_PKG_VERSION")
    )
}

/// The lines that open a step's section.
pub fn section_start(description: &str, command: &str) -> String {
    format!("\n{description}\n# command: {command}\n")
}

/// The lines that close a step's section.
pub fn section_end(code: i32, elapsed: Duration) -> String {
    format!("\n# exit code: {code}\n# elapsed time: {}\n{RULE}\n", hms(elapsed))
}

/// Creates (or truncates) a log and writes `text`.
pub fn create(path: &Path, text: &str) -> Result<File> {
    let mut f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(f)
}

/// Appends `text` to an open log.
pub fn append(f: &mut File, text: &str) -> Result<()> {
    f.write_all(text.as_bytes()).context("writing make.log")?;
    f.flush().ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_have_dkms_shape() {
        assert_eq!(hms(Duration::from_secs(3725)), "01:02:05");
        let s = section_start("Building module(s)", "make -j1 KERNELRELEASE=6.1 -C /k M=/b")
            + "  CC x.o\n"
            + &section_end(0, Duration::from_secs(2));
        assert_eq!(
            s,
            format!("\nBuilding module(s)\n# command: make -j1 KERNELRELEASE=6.1 -C /k M=/b\n  CC x.o\n\n# exit code: 0\n# elapsed time: 00:00:02\n{RULE}\n")
        );
        let h = header("dkms-3.4.3", "foo", "1.0", "6.1", "x86_64");
        assert!(h.starts_with("DKMS (dkms-3.4.3) make.log for foo/1.0 for kernel 6.1 (x86_64)\n"));
        assert_eq!(h.lines().count(), 2);
    }
}
