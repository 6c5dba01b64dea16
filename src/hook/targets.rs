//! Which modules and kernels a package transaction touched, judged by the
//! paths of the files involved.
//!
//! Two package managers hand us path lists:
//! - libalpm's `NeedsTargets` gives the matched hook targets on stdin, relative
//!   to the install root and without a leading `/`
//!   (`usr/src/vpoll-0.1/dkms.conf`, `usr/lib/modules/6.1.0-56-amd64/build/include/`);
//! - rpm gives the absolute file list of a package
//!   (`/usr/src/kernels/6.1.0-56-amd64`, `/lib/modules/6.1.0-56-amd64/config`).
//!
//! The rules, applied to each path after dropping a leading `/`:
//! - `usr/src/<name>-<version>/dkms.conf` (or `modsync.toml`) names a module; the directory is
//!   split at its **last** `-`, so `1.12.0+dfsg` stays a version and
//!   `nvidia-fs-2.17` is `nvidia-fs` / `2.17`;
//! - `(usr/)lib/modules/K/build[/...]` and `usr/src/kernels/K[/...]` are the
//!   headers (build tree) of kernel release K;
//! - any other `(usr/)lib/modules/K/<entry>` (vmlinuz, modules.order,
//!   kernel/..., config, pkgbase, ...) is the kernel K itself;
//! - `(usr/)lib/modules/K/updates/...`, `extra/...` and `weak-updates/...`
//!   are where built modules are placed (by us or by module packages), so they
//!   say nothing about the kernel and are ignored;
//! - the bare directory `(usr/)lib/modules/K/` is owned by kernel and headers
//!   packages alike and is ignored as well;
//! - release names that cannot be a kernel (anything but letters, digits and
//!   `._+-~`, a leading `.` or `-`, old Arch `extramodules-*` directories)
//!   are ignored.
//!
//! The module also maps rpm package names and versions to kernel releases for
//! the dnf hooks ([`is_kernel_package`], [`rpm_fallback_kver`]).
//!
//! Names are checked by the one validation of names that become paths
//! ([`crate::sys::names`]). Pure functions over strings.

use crate::sys::names::{self, Kind};
use std::collections::BTreeSet;

/// What a set of paths touched.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Touched {
    /// Module sources `(name, version)` from `usr/src/<name>-<version>/dkms.conf`.
    pub modules: BTreeSet<(String, String)>,
    /// Kernel releases whose kernel itself (image, modules tree) was touched.
    pub kernels: BTreeSet<String>,
    /// Kernel releases whose headers / build tree was touched.
    pub headers: BTreeSet<String>,
}

impl Touched {
    /// True when nothing was touched.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty() && self.kernels.is_empty() && self.headers.is_empty()
    }

    /// Adds everything `other` touched.
    pub fn extend(&mut self, other: Touched) {
        self.modules.extend(other.modules);
        self.kernels.extend(other.kernels);
        self.headers.extend(other.headers);
    }

    /// Every kernel release mentioned, as a kernel or as headers.
    pub fn releases(&self) -> BTreeSet<String> {
        self.kernels.union(&self.headers).cloned().collect()
    }
}

/// Classifies every path (see the module docs for the rules); unknown paths
/// are ignored.
pub fn touched_by_paths<'a>(paths: impl IntoIterator<Item = &'a str>) -> Touched {
    let mut touched = Touched::default();
    for path in paths {
        match classify(path) {
            Some(Hit::Module(name, version)) => {
                touched.modules.insert((name.to_owned(), version.to_owned()));
            }
            Some(Hit::Kernel(k)) => {
                touched.kernels.insert(k.to_owned());
            }
            Some(Hit::Headers(k)) => {
                touched.headers.insert(k.to_owned());
            }
            None => {}
        }
    }
    touched
}

/// What one path stands for.
#[derive(Debug, PartialEq, Eq)]
enum Hit<'a> {
    Module(&'a str, &'a str),
    Kernel(&'a str),
    Headers(&'a str),
}

/// Subdirectories of `lib/modules/K` where built out-of-tree modules go.
const MODULE_DIRS: &[&str] = &["updates", "extra", "weak-updates"];

fn classify(path: &str) -> Option<Hit<'_>> {
    let path = path.trim_end_matches(['\n', '\r']);
    // Empty components come from the leading '/', a trailing '/' (alpm
    // directory targets) or a doubled '/'; none of them carries meaning.
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    match parts.as_slice() {
        ["usr", "src", "kernels", k, ..] => valid_release(k).map(Hit::Headers),
        ["usr", "src", dir, "dkms.conf" | "modsync.toml"] => {
            let (name, version) = dir.rsplit_once('-')?;
            (names::valid(Kind::Module, name) && names::valid(Kind::Version, version))
                .then_some(Hit::Module(name, version))
        }
        ["usr", "lib", "modules", k, rest @ ..] | ["lib", "modules", k, rest @ ..] => {
            let k = valid_release(k)?;
            match rest.first() {
                None => None,
                Some(&"build") => Some(Hit::Headers(k)),
                Some(d) if MODULE_DIRS.contains(d) => None,
                Some(_) => Some(Hit::Kernel(k)),
            }
        }
        _ => None,
    }
}

pub(crate) fn valid_release(k: &str) -> Option<&str> {
    // Arch before 2019 kept out-of-tree modules in lib/modules/extramodules-X.Y-ARCH.
    (names::valid(Kind::Kernel, k) && !k.starts_with("extramodules-")).then_some(k)
}

/// The kernel release (`uname -r`) of a Fedora-style kernel package, built from
/// its NEVRA: `VERSION-RELEASE.ARCH` (e.g. `6.8.9-300.fc40.x86_64`). Only a
/// fallback for a kernel package that owns no `lib/modules/K` or
/// `usr/src/kernels/K` path, since the paths name the release exactly.
pub fn rpm_fallback_kver(version: &str, release: &str, arch: &str) -> String {
    format!("{version}-{release}.{arch}")
}

/// Which part of a kernel an rpm kernel package carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelPkgKind {
    /// `kernel-core`, `kernel-debug-core`, ...: the kernel image and its modules.
    Core,
    /// `kernel-devel`, `kernel-debug-devel`, ...: the headers / build tree.
    Devel,
}

/// Matches `^kernel(-[a-z0-9]+)?-(core|devel)$`: the packages whose
/// installation or removal matters to out-of-tree modules.
pub fn is_kernel_package(name: &str) -> Option<KernelPkgKind> {
    kernel_package_parts(name).map(|(_, kind)| kind)
}

/// Like [`is_kernel_package`], also returning the variant
/// (`kernel-debug-core` -> `Some("debug")`).
pub fn kernel_package_parts(name: &str) -> Option<(Option<&str>, KernelPkgKind)> {
    let rest = name.strip_prefix("kernel-")?;
    let (head, kind) = if let Some(h) = rest.strip_suffix("core") {
        (h, KernelPkgKind::Core)
    } else if let Some(h) = rest.strip_suffix("devel") {
        (h, KernelPkgKind::Devel)
    } else {
        return None;
    };
    if head.is_empty() {
        return Some((None, kind));
    }
    let variant = head.strip_suffix('-')?;
    let ok = !variant.is_empty() && variant.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    ok.then_some((Some(variant), kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn modules(v: &[(&str, &str)]) -> BTreeSet<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn alpm_module_targets_split_at_last_dash() {
        let t = touched_by_paths([
            "usr/src/vpoll-0.1/dkms.conf",
            "usr/src/nvidia-fs-2.17.5/dkms.conf",
            "usr/src/v4l2loopback-0.12.7/dkms.conf",
            "usr/src/xtables-addons-3.23+dfsg/dkms.conf",
            "usr/src/acpi-call-1.2.2~git20220930/dkms.conf",
            "usr/src/shellfree-2.0/modsync.toml",
        ]);
        assert_eq!(
            t.modules,
            modules(&[
                ("vpoll", "0.1"),
                ("nvidia-fs", "2.17.5"),
                ("v4l2loopback", "0.12.7"),
                ("xtables-addons", "3.23+dfsg"),
                ("acpi-call", "1.2.2~git20220930"),
                ("shellfree", "2.0"),
            ])
        );
        assert!(t.kernels.is_empty() && t.headers.is_empty());
    }

    #[test]
    fn module_paths_that_are_not_a_top_level_dkms_conf() {
        let t = touched_by_paths([
            "usr/src/nodash/dkms.conf",        // no version
            "usr/src/-1.0/dkms.conf",          // empty name
            "usr/src/foo-/dkms.conf",          // empty version
            "usr/src/foo-1.0/sub/dkms.conf",   // not at the top
            "usr/src/foo-1.0/dkms.conf.orig",  // another file
            "usr/src/foo-1.0/",                // the directory
            "usr/src/foo 1-1.0/dkms.conf",     // whitespace
            "usr/local/src/foo-1.0/dkms.conf", // another tree
            "",
        ]);
        assert!(t.is_empty(), "{t:?}");
    }

    #[test]
    fn alpm_kernel_and_header_targets() {
        let t = touched_by_paths([
            "usr/lib/modules/6.1.0-56-amd64/build/include/",
            "usr/lib/modules/6.1.0-54-amd64/vmlinuz",
            "usr/lib/modules/6.9.1-arch1-1/modules.order",
            "usr/lib/modules/6.6.30-1-lts/kernel/drivers/media/mc/mc.ko.zst",
        ]);
        assert_eq!(t.headers, set(&["6.1.0-56-amd64"]));
        assert_eq!(t.kernels, set(&["6.1.0-54-amd64", "6.6.30-1-lts", "6.9.1-arch1-1"]));
        assert!(t.modules.is_empty());
    }

    #[test]
    fn rpm_absolute_paths() {
        let t = touched_by_paths([
            "/usr/src/kernels/6.1.0-56-amd64",
            "/usr/src/kernels/6.8.9-300.fc40.x86_64/Makefile",
            "/lib/modules/6.1.0-56-amd64/config",
            "/usr/lib/modules/6.8.9-300.fc40.x86_64/vmlinuz",
            "/lib/modules/6.8.9-300.fc40.x86_64/build",
        ]);
        assert_eq!(t.headers, set(&["6.1.0-56-amd64", "6.8.9-300.fc40.x86_64"]));
        assert_eq!(t.kernels, set(&["6.1.0-56-amd64", "6.8.9-300.fc40.x86_64"]));
        assert_eq!(t.releases(), set(&["6.1.0-56-amd64", "6.8.9-300.fc40.x86_64"]));
    }

    #[test]
    fn bare_module_directories_and_our_own_output_are_ignored() {
        let t = touched_by_paths([
            "usr/lib/modules/6.1.0-56-amd64/",
            "/lib/modules/6.1.0-56-amd64",
            "/usr/lib/modules/",
            "usr/lib/modules/6.1.0-56-amd64/updates/dkms/hello.ko",
            "usr/lib/modules/6.1.0-56-amd64/updates/",
            "/lib/modules/6.8.9-300.fc40.x86_64/extra/hello.ko.xz",
            "/lib/modules/6.8.9-300.fc40.x86_64/weak-updates",
            "/usr/src/kernels/",
            "usr/src/kernels",
        ]);
        assert!(t.is_empty(), "{t:?}");
    }

    #[test]
    fn odd_release_names_are_rejected() {
        let t = touched_by_paths([
            "usr/lib/modules/./vmlinuz",
            "usr/lib/modules/../vmlinuz",
            "usr/lib/modules/6.1 evil/vmlinuz",
            "usr/lib/modules/6.1\tevil/vmlinuz",
            "usr/src/kernels/../etc",
            "usr/src/kernels/./x",
            "usr/lib/modules/extramodules-6.1-ARCH/foo.ko.gz",
        ]);
        assert!(t.is_empty(), "{t:?}");
    }

    #[test]
    fn doubled_slashes_and_line_ends() {
        let t = touched_by_paths([
            "usr//lib/modules/6.1.0-56-amd64//vmlinuz\n",
            "usr/src/hello-1.0/dkms.conf\r\n",
        ]);
        assert_eq!(t.kernels, set(&["6.1.0-56-amd64"]));
        assert_eq!(t.modules, modules(&[("hello", "1.0")]));
    }

    #[test]
    fn extend_merges() {
        let mut a = touched_by_paths(["usr/lib/modules/A/vmlinuz"]);
        a.extend(touched_by_paths([
            "usr/lib/modules/B/build/include/",
            "usr/src/m-1/dkms.conf",
        ]));
        assert_eq!(a.kernels, set(&["A"]));
        assert_eq!(a.headers, set(&["B"]));
        assert_eq!(a.modules, modules(&[("m", "1")]));
    }

    #[test]
    fn fallback_kver_is_fedora_uname() {
        assert_eq!(
            rpm_fallback_kver("6.8.9", "300.fc40", "x86_64"),
            "6.8.9-300.fc40.x86_64"
        );
        assert_eq!(rpm_fallback_kver("6.1.0", "56", "x86_64"), "6.1.0-56.x86_64");
    }

    #[test]
    fn kernel_package_names() {
        use KernelPkgKind::*;
        assert_eq!(is_kernel_package("kernel-core"), Some(Core));
        assert_eq!(is_kernel_package("kernel-devel"), Some(Devel));
        assert_eq!(is_kernel_package("kernel-debug-core"), Some(Core));
        assert_eq!(is_kernel_package("kernel-64k-devel"), Some(Devel));
        assert_eq!(is_kernel_package("kernel-modules-core"), Some(Core));
        assert_eq!(kernel_package_parts("kernel-debug-devel"), Some((Some("debug"), Devel)));
        assert_eq!(kernel_package_parts("kernel-core"), Some((None, Core)));
        for no in [
            "kernel",
            "kernel-",
            "kernel-modules",
            "kernel-headers",
            "kernel-devel-matched",
            "kernel-tools",
            "kernel--core",
            "kernel-Debug-core",
            "kernel-rt-debug-core",
            "kernelcore",
            "xkernel-core",
            "kernel-core-x",
            "kernel-core ",
            "kernel_core",
        ] {
            assert_eq!(is_kernel_package(no), None, "{no}");
        }
    }
}
