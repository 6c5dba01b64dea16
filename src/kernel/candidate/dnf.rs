//! dnf's next kernel: the newest `kernel-devel` in the repositories (or the
//! devel package of the running kernel's own package, `kernel-rt-devel`
//! for `kernel-rt-core`), downloaded with `dnf download` (dnf 5, or dnf 4
//! with dnf-plugins-core) into a directory of the caller's and unpacked
//! there with the rpm crate; its `usr/src/kernels/K` names the kernel.

use super::{one_download, one_release, Candidate};
use crate::sys::cmd::output_ok;
use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;

/// The devel package that goes with the kernel package `owner` (the package
/// owning the running kernel's image, None when rpm knows none). Pure.
pub fn devel_package(owner: Option<&str>) -> String {
    let base = owner
        .map(str::trim)
        .and_then(|o| {
            o.strip_suffix("-modules-core")
                .or_else(|| o.strip_suffix("-core"))
                .or(Some(o))
        })
        .filter(|b| b.starts_with("kernel") && b.chars().all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c)));
    format!("{}-devel", base.unwrap_or("kernel"))
}

/// The package that owns the running kernel's image, if rpm knows one.
fn image_owner(running: &str, modules: &Path) -> Option<String> {
    let image = modules.join(running).join("vmlinuz");
    let out = output_ok(Command::new("rpm").args(["-qf", "--qf", "%{NAME}\\n"]).arg(&image)).ok()?;
    String::from_utf8_lossy(&out.stdout).lines().next().map(str::to_string)
}

/// Downloads and unpacks the devel package of dnf's next kernel (`modules`
/// is the module tree, /usr/lib/modules).
pub fn fetch(running: &str, modules: &Path, dir: &Path) -> Result<Candidate> {
    let package = devel_package(image_owner(running, modules).as_deref());
    let rpms = dir.join("rpms");
    std::fs::create_dir_all(&rpms).with_context(|| format!("creating {}", rpms.display()))?;
    output_ok(
        Command::new("dnf")
            .args(["download", "-q", "--destdir"])
            .arg(&rpms)
            .arg(&package),
    )
    .with_context(|| format!("downloading {package} (dnf 4 needs dnf-plugins-core for `dnf download`)"))?;
    let file = one_download(&rpms, &[".rpm"], &package)?;
    let root = dir.join("root");
    rpm::Package::open(&file)
        .and_then(|p| p.extract(&root))
        .with_context(|| format!("unpacking {} into {}", file.display(), root.display()))?;
    let (release, headers) = one_release(&root.join("usr/src/kernels"), None, &package)?;
    super::checked_release(&release, "dnf")?;
    Ok(Candidate {
        release,
        package,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devel_follows_the_kernel_package() {
        assert_eq!(devel_package(None), "kernel-devel");
        assert_eq!(devel_package(Some("kernel-core\n")), "kernel-devel");
        assert_eq!(devel_package(Some("kernel-rt-core")), "kernel-rt-devel");
        assert_eq!(devel_package(Some("kernel-64k-modules-core")), "kernel-64k-devel");
        assert_eq!(devel_package(Some("kernel")), "kernel-devel");
        assert_eq!(devel_package(Some("linux-image-6.1.0")), "kernel-devel");
        assert_eq!(devel_package(Some("kernel-x y")), "kernel-devel");
    }
}
