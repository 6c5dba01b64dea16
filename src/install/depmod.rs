//! depmod, once per kernel per command, as dkms runs it: skipped where the
//! kernel has no modules.dep (its image is not installed), `-F` with the
//! kernel's System.map when present; `-b` when the module tree is not the
//! system's (`--installtree`). A kernel whose module tree ended up empty
//! (its image was removed, our modules are gone now) loses its stale
//! depmod files and its directory.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// The `depmod` arguments for kernel `release` under `install_tree`. Pure.
pub fn args(release: &str, install_tree: &Path, boot: &Path) -> Vec<String> {
    let mut a = vec!["-a".to_string()];
    let t = install_tree.to_string_lossy();
    let base = t.trim_end_matches('/');
    let mut foreign = false;
    for suffix in ["/lib/modules", "/usr/lib/modules"] {
        if let Some(prefix) = base.strip_suffix(suffix) {
            if !prefix.is_empty() {
                a.push("-b".into());
                a.push(prefix.to_string());
                foreign = true;
            }
            break;
        }
    }
    let map = boot.join(format!("System.map-{release}"));
    if !foreign && map.is_file() {
        a.push("-F".into());
        a.push(map.display().to_string());
    }
    a.push(release.to_string());
    a
}

/// What depmod did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    Done,
    /// No modules.dep: the kernel's image is not installed.
    Skipped,
    /// The kernel's tree was left empty and was removed.
    Emptied,
}

/// Runs depmod for `release`; without modules.dep only when `create`
/// (the package-manager hooks make it for a kernel they installed modules
/// into, as Arch's dkms hook does).
pub fn run(release: &str, install_tree: &Path, create: bool) -> Result<Ran> {
    let kdir = install_tree.join(release);
    let dep = kdir.join("modules.dep");
    if !(dep.is_file() || (create && kdir.is_dir())) {
        return Ok(Ran::Skipped);
    }
    let a = args(release, install_tree, Path::new("/boot"));
    let out = Command::new("depmod")
        .args(&a)
        .output()
        .with_context(|| format!("running depmod {}", a.join(" ")))?;
    if !out.status.success() {
        bail!(
            "depmod {} failed: {}",
            a.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if std::fs::metadata(&dep).is_ok_and(|m| m.len() == 0) {
        for e in crate::sys::fs::sorted_names(&kdir) {
            let stale = [
                "modules.alias",
                "modules.dep",
                "modules.devname",
                "modules.softdep",
                "modules.symbols",
                "modules.weakdep",
            ]
            .contains(&e.as_str())
                || (e.starts_with("modules.") && e.ends_with(".bin"));
            if stale {
                let _ = std::fs::remove_file(kdir.join(&e));
            }
        }
        if std::fs::remove_dir(&kdir).is_ok() {
            return Ok(Ran::Emptied);
        }
    }
    Ok(Ran::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_dir_only_for_foreign_trees() {
        let boot = tempfile::tempdir().unwrap();
        assert_eq!(
            args("6.1", Path::new("/srv/root/lib/modules"), boot.path()),
            vec!["-a", "-b", "/srv/root", "6.1"]
        );
        assert_eq!(args("6.1", Path::new("/lib/modules"), boot.path()), vec!["-a", "6.1"]);
        std::fs::write(boot.path().join("System.map-6.1"), "").unwrap();
        assert_eq!(args("6.1", Path::new("/lib/modules/"), boot.path())[1], "-F");
    }

    #[test]
    fn a_kernel_without_modules_dep_is_skipped() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("lib/modules/6.1")).unwrap();
        assert_eq!(run("6.1", &d.path().join("lib/modules"), false).unwrap(), Ran::Skipped);
        assert_eq!(
            run("6.2", &d.path().join("lib/modules"), true).unwrap(),
            Ran::Skipped,
            "no such kernel"
        );
    }
}
