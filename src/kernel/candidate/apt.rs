//! apt's next kernel and its headers, fetched (not installed). On Debian and
//! Ubuntu the headers metapackage of the running kernel's flavour
//! (`linux-headers-amd64`, `linux-headers-generic`) names the candidate's
//! headers package (`linux-headers-K`); that package and the header and
//! kbuild packages it depends on are downloaded with `apt-get download` and
//! unpacked with `dpkg-deb -x` into a directory of the caller's. Parsing is
//! pure; fetching runs apt's own tools.

use super::Candidate;
use crate::sys::cmd::output_ok;
use anyhow::{bail, Context, Result};
use regex::Regex;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The flavour of a Debian or Ubuntu kernel release (`6.1.0-56-amd64` →
/// `amd64`, `6.1.0-56-cloud-amd64` → `cloud-amd64`, `6.12.118+deb12-amd64`
/// → `amd64`, `6.8.0-40-generic` → `generic`); None for other kernels. Pure.
pub fn flavour(release: &str) -> Option<&str> {
    let re = Regex::new(r"^\d+\.\d+(?:\.\d+)?(?:-\d+|\+deb\d+)-([a-z][a-z0-9-]*)$").expect("valid regex");
    re.captures(release).and_then(|c| c.get(1)).map(|m| m.as_str())
}

/// The packages `apt-cache depends` lists as Depends whose name starts
/// with one of `prefixes`, in order. Pure.
fn depends(apt_cache_output: &str, prefixes: &[&str]) -> Vec<String> {
    apt_cache_output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .map(|p| p.trim().trim_start_matches('<').trim_end_matches('>').to_string())
        .filter(|p| prefixes.iter().any(|x| p.starts_with(x)))
        .collect()
}

fn apt_depends(package: &str) -> Result<String> {
    let out = output_ok(Command::new("apt-cache").args(["depends", package]))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The candidate kernel release for `flavour` (its headers metapackage's
/// dependency), e.g. `6.1.0-57-amd64`.
fn release_for(flavour: &str) -> Result<String> {
    let meta = format!("linux-headers-{flavour}");
    let deps = depends(&apt_depends(&meta)?, &["linux-headers-"]);
    deps.first()
        .map(|p| p["linux-headers-".len()..].to_string())
        .with_context(|| format!("{meta} names no headers package; is it in the apt sources (`apt-get update`)?"))
}

/// The flavour to look for: the running kernel's, else the machine's
/// architecture as dpkg names it (a kernel that apt did not install).
fn default_flavour(running: &str) -> Result<String> {
    if let Some(f) = flavour(running) {
        return Ok(f.to_string());
    }
    let out = output_ok(Command::new("dpkg").arg("--print-architecture"))?;
    let arch = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if arch.is_empty() {
        bail!("dpkg --print-architecture printed nothing");
    }
    Ok(arch)
}

/// apt's next kernel for the running kernel's flavour, its headers fetched
/// into `dir` ([`fetch_headers`]).
pub fn fetch(running: &str, dir: &Path) -> Result<Candidate> {
    let flavour = default_flavour(running)?;
    let release = release_for(&flavour)?;
    super::checked_release(&release, "apt")?;
    let headers = fetch_headers(&release, dir)?;
    Ok(Candidate {
        release,
        package: format!("linux-headers-{flavour}"),
        headers,
    })
}

/// Downloads the headers of `release` (and the header and kbuild packages
/// they depend on) into `dir` and unpacks them into `dir/root`; returns the
/// headers directory. The top Makefile's include of the common half is
/// pointed into `dir/root`.
fn fetch_headers(release: &str, dir: &Path) -> Result<PathBuf> {
    let top = format!("linux-headers-{release}");
    let mut packages = vec![top.clone()];
    packages.extend(depends(&apt_depends(&top)?, &["linux-headers-", "linux-kbuild-"]));
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
    output_ok(
        Command::new("apt-get")
            .args(["download", "-q", "-o", "APT::Sandbox::User=root"])
            .args(&packages)
            .current_dir(&debs),
    )?;
    let root = dir.join("root");
    for deb in crate::sys::fs::sorted_names(&debs) {
        output_ok(Command::new("dpkg-deb").arg("-x").arg(debs.join(&deb)).arg(&root))?;
    }
    let headers = root.join("usr/src").join(&top);
    let makefile = headers.join("Makefile");
    let text = std::fs::read_to_string(&makefile)
        .with_context(|| format!("reading {} (unpacked from {top})", makefile.display()))?;
    let inside = format!("include {}/usr/src/", root.display());
    std::fs::write(&makefile, text.replace("include /usr/src/", &inside))
        .with_context(|| format!("writing {}", makefile.display()))?;
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavours_of_debian_and_ubuntu_releases() {
        assert_eq!(flavour("6.1.0-56-amd64"), Some("amd64"));
        assert_eq!(flavour("6.1.0-56-cloud-amd64"), Some("cloud-amd64"));
        assert_eq!(flavour("6.12.118+deb12-amd64"), Some("amd64"));
        assert_eq!(flavour("6.8.0-40-generic"), Some("generic"));
        assert_eq!(flavour("6.18.44-fc-v1272"), None);
        assert_eq!(flavour("6.12.1-arch1-1"), None);
        assert_eq!(flavour("6.11.4-301.fc41.x86_64"), None);
    }

    #[test]
    fn depends_keeps_the_named_packages() {
        let out = "linux-headers-6.1.0-57-amd64\n  Depends: linux-headers-6.1.0-57-common\n  Depends: linux-kbuild-6.1\n  Depends: linux-compiler-gcc-12-x86\n";
        assert_eq!(
            depends(out, &["linux-headers-", "linux-kbuild-"]),
            ["linux-headers-6.1.0-57-common", "linux-kbuild-6.1"]
        );
        assert_eq!(
            depends(
                "linux-headers-amd64\n  Depends: linux-headers-6.1.0-57-amd64\n",
                &["linux-headers-"]
            ),
            ["linux-headers-6.1.0-57-amd64"]
        );
    }
}
