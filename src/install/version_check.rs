//! dkms's version sanity check before a module is installed: when the
//! kernel's module tree already holds one module of the same name whose
//! version (`modinfo`'s `version:`) is the same as ours or newer, ours is not
//! installed over it, unless `--force` or `--force-version-override`. The
//! decision is pure ([`verdict`]); finding the module and reading versions is
//! apart ([`check`]).

use super::module_names;
use crate::kernel::version;
use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What to do with our module, given the kernel's module of the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Install,
    /// The kernel's module has the same version (both none counts as same, as in dkms).
    Same { existing: PathBuf, version: String },
    /// The kernel's module has a newer version than ours.
    Newer { existing: PathBuf, version: String, ours: String },
}

/// The decision for `existing` (the kernel's module, with its version) and
/// our module's version; `None` is a version modinfo could not read, which
/// leaves nothing to compare. Pure.
pub fn verdict(existing: &Path, theirs: Option<&str>, ours: Option<&str>) -> Verdict {
    let (Some(theirs), Some(ours)) = (theirs, ours) else { return Verdict::Install };
    if theirs == ours {
        return Verdict::Same { existing: existing.to_path_buf(), version: theirs.to_string() };
    }
    if theirs.is_empty() || ours.is_empty() {
        return Verdict::Install;
    }
    match version::compare(theirs, ours) {
        Ordering::Greater => Verdict::Newer { existing: existing.to_path_buf(), version: theirs.to_string(), ours: ours.to_string() },
        _ => Verdict::Install,
    }
}

impl Verdict {
    /// The message that says why the module is left out, or None to install.
    pub fn refusal(&self, file: &str, kernel: &str) -> Option<String> {
        let shown = |v: &str| if v.is_empty() { "no version".to_string() } else { format!("version {v}") };
        match self {
            Verdict::Install => None,
            Verdict::Same { existing, version } => Some(format!(
                "{file}: kernel {kernel} already has {file} ({}, {}); leaving it in place (use --force to install over it)",
                existing.display(),
                shown(version)
            )),
            Verdict::Newer { existing, version, ours } => Some(format!(
                "{file}: kernel {kernel} already has a newer {file} ({}, {}) than this one ({}); leaving it in place (use --force to install over it)",
                existing.display(),
                shown(version),
                shown(ours)
            )),
        }
    }
}

/// The `version:` field of a module file; Some("") when it has none, None
/// when modinfo cannot read it.
fn modinfo_version(path: &Path) -> Option<String> {
    let out = Command::new("modinfo").arg("-F").arg("version").arg(path).output();
    match out {
        Ok(o) if o.status.success() => Some(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        Ok(o) => {
            log::debug!("modinfo {}: {}", path.display(), String::from_utf8_lossy(&o.stderr).trim());
            None
        }
        Err(e) => {
            log::warn!("cannot run modinfo on {}: {e}; installing without the version check", path.display());
            None
        }
    }
}

/// Every module file named like `file` (any compression) under `kdir`,
/// symlinks included, not following the `build`/`source` links: one walk
/// serves both this check and the search for an original to archive.
pub fn namesakes(kdir: &Path, file: &str) -> Vec<PathBuf> {
    let names = module_names(file);
    walkdir::WalkDir::new(kdir)
        .into_iter()
        .flatten()
        .filter(|e| !e.file_type().is_dir() && names.iter().any(|n| e.file_name() == n.as_str()))
        .map(|e| e.into_path())
        .collect()
}

/// Checks our `built` module against the kernel's module of the same name
/// among `namesakes` (our destination `dest` and symlinks, such as
/// weak-updates, excluded).
pub fn check(namesakes: &[PathBuf], built: &Path, dest: &Path) -> Verdict {
    let found: Vec<&PathBuf> = namesakes.iter().filter(|p| *p != dest && !p.is_symlink()).collect();
    match found.as_slice() {
        [] => Verdict::Install,
        [one] => verdict(one, modinfo_version(one).as_deref(), modinfo_version(built).as_deref()),
        several => {
            eprintln!(
                "Warning: {} modules named {} in the kernel's tree; installing without the version check",
                several.len(),
                built.file_name().unwrap_or_default().to_string_lossy()
            );
            Verdict::Install
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("/lib/modules/k/kernel/drivers/x/foo.ko")
    }

    #[test]
    fn the_same_or_a_newer_version_in_the_kernel_wins() {
        assert!(matches!(verdict(p(), Some("1.0"), Some("1.0")), Verdict::Same { .. }));
        assert!(matches!(verdict(p(), Some(""), Some("")), Verdict::Same { .. }));
        assert!(matches!(verdict(p(), Some("1.10"), Some("1.9")), Verdict::Newer { .. }));
        assert!(matches!(verdict(p(), Some("2.0-rc2"), Some("2.0-rc1")), Verdict::Newer { .. }));
    }

    #[test]
    fn an_older_or_unknown_version_in_the_kernel_is_replaced() {
        assert_eq!(verdict(p(), Some("1.9"), Some("1.10")), Verdict::Install);
        assert_eq!(verdict(p(), Some(""), Some("1.0")), Verdict::Install);
        assert_eq!(verdict(p(), Some("1.0"), Some("")), Verdict::Install);
        assert_eq!(verdict(p(), None, Some("1.0")), Verdict::Install);
        assert_eq!(verdict(p(), Some("1.0"), None), Verdict::Install);
    }

    #[test]
    fn the_refusal_names_the_kernels_module_and_the_way_out() {
        let m = verdict(p(), Some("1.10"), Some("1.9")).refusal("foo.ko", "6.1.0-56-amd64").unwrap();
        assert!(m.contains("/lib/modules/k/kernel/drivers/x/foo.ko") && m.contains("1.10") && m.contains("1.9") && m.contains("--force"), "{m}");
        assert_eq!(Verdict::Install.refusal("foo.ko", "k"), None);
    }

    #[test]
    fn namesakes_are_found_in_any_compression_and_ours_is_not_checked() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("kernel/drivers/x/foo.ko.xz");
        let ours = d.path().join("updates/dkms/foo.ko");
        for f in [&a, &ours, &d.path().join("kernel/foobar.ko")] {
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, "").unwrap();
        }
        let mut found = namesakes(d.path(), "foo.ko");
        found.sort();
        assert_eq!(found, vec![a.clone(), ours.clone()]);
        // an unreadable kernel module leaves nothing to compare: install
        assert_eq!(check(&found, &ours, &ours), Verdict::Install);
    }
}
