//! The kernel the package manager would install next, and its headers,
//! fetched (never installed) for `modsync check --candidate`: apt on Debian
//! and Ubuntu ([`apt`]), pacman on Arch ([`pacman`]), dnf on Fedora and its
//! relatives ([`dnf`]). Each asks its package manager which headers package
//! comes next, downloads it with that manager's own download command into a
//! directory of the caller's and unpacks it there; the kernel release is
//! read from the paths the package holds.

mod apt;
mod dnf;
mod pacman;

pub use apt::flavour;

use super::distro::Family;
use crate::sys::names::{self, Kind};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The package manager that names the next kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Apt,
    Pacman,
    Dnf,
}

impl Manager {
    /// The manager of a distribution family; None where modsync does not
    /// know how to ask for the next kernel. Pure.
    pub fn of(family: Family) -> Option<Manager> {
        match family {
            Family::Debian | Family::Ubuntu => Some(Manager::Apt),
            Family::Arch => Some(Manager::Pacman),
            Family::RedHat => Some(Manager::Dnf),
            Family::Suse | Family::Gentoo | Family::Other => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Manager::Apt => "apt",
            Manager::Pacman => "pacman",
            Manager::Dnf => "dnf",
        }
    }

    /// Fetches the headers of this manager's next kernel into `dir`;
    /// `running` is the running kernel's release (whose flavour or kernel
    /// package says which headers package to follow), `modules` the module
    /// tree (/lib/modules).
    pub fn fetch(self, running: &str, modules: &Path, dir: &Path) -> Result<Candidate> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        match self {
            Manager::Apt => apt::fetch(running, dir),
            Manager::Pacman => pacman::fetch(running, modules, dir),
            Manager::Dnf => dnf::fetch(running, modules, dir),
        }
    }
}

/// A fetched candidate kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its release (`6.1.0-57-amd64`, `6.12.4-arch1-1`, `6.11.4-301.fc41.x86_64`).
    pub release: String,
    /// The package that named it (`linux-headers-amd64`, `linux-headers`, `kernel-devel`).
    pub package: String,
    /// Its headers, unpacked under the caller's directory.
    pub headers: PathBuf,
}

/// Refuses a release a package manager named that is no kernel release
/// modsync accepts (a path, `..`, blanks).
fn checked_release(release: &str, manager: &str) -> Result<()> {
    if let Some(p) = names::problem(Kind::Kernel, release) {
        bail!("{manager}'s next kernel {release:?}: {p}");
    }
    Ok(())
}

/// The one kernel release under `parent` (a directory of an unpacked
/// package: `usr/lib/modules`, `usr/src/kernels`) whose directory holds the
/// headers (in `inside`, e.g. `build`, or in the directory itself); and
/// where they are. `package` names the package in errors.
fn one_release(parent: &Path, inside: Option<&str>, package: &str) -> Result<(String, PathBuf)> {
    let headers = |r: &str| inside.map_or_else(|| parent.join(r), |i| parent.join(r).join(i));
    let found: Vec<String> = crate::sys::fs::sorted_names(parent)
        .into_iter()
        .filter(|r| headers(r).is_dir())
        .collect();
    match found.as_slice() {
        [r] => Ok((r.clone(), headers(r))),
        [] => bail!(
            "{package} holds no kernel headers under {}; is it a kernel headers package?",
            parent.display()
        ),
        _ => bail!(
            "{package} holds the headers of several kernels under {} ({}); check one with `modsync check -k KERNEL --kernelsourcedir DIR`",
            parent.display(),
            found.join(", ")
        ),
    }
}

/// The only file in `dir` whose name ends with one of `suffixes`.
fn one_download(dir: &Path, suffixes: &[&str], package: &str) -> Result<PathBuf> {
    let found: Vec<String> = crate::sys::fs::sorted_names(dir)
        .into_iter()
        .filter(|n| suffixes.iter().any(|s| n.ends_with(s)))
        .collect();
    match found.as_slice() {
        [f] => Ok(dir.join(f)),
        _ => bail!(
            "expected one downloaded {package} in {}, found {found:?}",
            dir.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_family_has_its_manager() {
        assert_eq!(Manager::of(Family::Debian), Some(Manager::Apt));
        assert_eq!(Manager::of(Family::Ubuntu), Some(Manager::Apt));
        assert_eq!(Manager::of(Family::Arch), Some(Manager::Pacman));
        assert_eq!(Manager::of(Family::RedHat), Some(Manager::Dnf));
        assert_eq!(Manager::of(Family::Suse), None);
    }

    #[test]
    fn one_release_wants_exactly_one_kernel() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("usr/lib/modules");
        assert!(one_release(&m, Some("build"), "p").is_err());
        std::fs::create_dir_all(m.join("6.12.4-arch1-1/build")).unwrap();
        std::fs::create_dir_all(m.join("extramodules-6.12")).unwrap();
        let (r, h) = one_release(&m, Some("build"), "p").unwrap();
        assert_eq!(r, "6.12.4-arch1-1");
        assert_eq!(h, m.join("6.12.4-arch1-1/build"));
        std::fs::create_dir_all(m.join("6.13.1-arch1-1/build")).unwrap();
        let e = one_release(&m, Some("build"), "p").unwrap_err().to_string();
        assert!(e.contains("several kernels"), "{e}");
        assert!(checked_release("../../etc", "pacman").is_err());
        assert!(checked_release("6.12.4-arch1-1", "pacman").is_ok());
    }

    #[test]
    fn one_download_ignores_signatures() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "linux-headers-6.12.4-1-x86_64.pkg.tar.zst",
            "linux-headers-6.12.4-1-x86_64.pkg.tar.zst.sig",
        ] {
            std::fs::write(d.path().join(f), "").unwrap();
        }
        let f = one_download(d.path(), &[".pkg.tar.zst", ".pkg.tar.xz"], "linux-headers").unwrap();
        assert!(f.ends_with("linux-headers-6.12.4-1-x86_64.pkg.tar.zst"));
        assert!(one_download(d.path(), &[".rpm"], "kernel-devel").is_err());
    }
}
