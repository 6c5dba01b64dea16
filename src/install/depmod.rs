//! depmod, once per kernel per command, skipped (as dkms does) where the
//! kernel has no modules.dep yet.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// The `depmod` arguments for kernel `release` with modules under
/// `install_tree` (`-b` when the tree is not the system's). Pure.
pub fn depmod_args(release: &str, install_tree: &Path) -> Vec<String> {
    let mut args = vec!["-a".to_string()];
    let t = install_tree.to_string_lossy();
    let base = t.trim_end_matches('/');
    for suffix in ["/lib/modules", "/usr/lib/modules"] {
        if let Some(prefix) = base.strip_suffix(suffix) {
            if !prefix.is_empty() {
                args.push("-b".into());
                args.push(prefix.to_string());
            }
            break;
        }
    }
    let map = format!("/boot/System.map-{release}");
    if Path::new(&map).is_file() && args.len() == 1 {
        args.push("-F".into());
        args.push(map);
    }
    args.push(release.to_string());
    args
}

/// Runs depmod for `release`; returns false when skipped: the kernel has no
/// modules.dep and `create` is false.
pub fn run(release: &str, install_tree: &Path, create: bool) -> Result<bool> {
    if !create && !install_tree.join(release).join("modules.dep").exists() {
        log::info!("skipping depmod for {release}: no modules.dep");
        return Ok(false);
    }
    let args = depmod_args(release, install_tree);
    let out = Command::new("depmod").args(&args).output().with_context(|| format!("running depmod {}", args.join(" ")))?;
    if !out.status.success() {
        bail!("depmod {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_dir_only_for_foreign_trees() {
        assert_eq!(depmod_args("6.1", Path::new("/srv/root/lib/modules")), vec!["-a", "-b", "/srv/root", "6.1"]);
        let a = depmod_args("6.1-nonexistent", Path::new("/lib/modules"));
        assert_eq!(a, vec!["-a", "6.1-nonexistent"]);
    }
}
