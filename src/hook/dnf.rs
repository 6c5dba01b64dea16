//! The dnf side of the hooks: what a dnf transaction did to kernels.
//!
//! Two inputs, one result ([`DnfTransaction`]):
//! - the dnf4 plugin (`hooks/dnf/modsync.py`) writes one JSON document on the
//!   engine's stdin, `{"in": [PKG...], "out": [PKG...]}` with
//!   `PKG = {"name", "version", "release", "arch", "files": [absolute paths]}`;
//!   "in" are the packages the transaction installed, upgraded or reinstalled,
//!   "out" the ones it removed or replaced ([`from_json`]);
//! - the dnf5 actions plugin runs the engine once per package with
//!   `in|out NAME VERSION RELEASE ARCH`, and the engine adds the package's
//!   file list from `rpm -ql` ([`from_dnf5`]).
//!
//! Only packages named like `^kernel(-[a-z0-9]+)?-(core|devel)$` count. The
//! kernel release of such a package comes from the paths it owns
//! (`/usr/src/kernels/K`, `/lib/modules/K/...`, `/usr/lib/modules/K/...`),
//! which name it exactly; `VERSION-RELEASE.ARCH[+VARIANT]`, Fedora's
//! `uname -r`, is only the fallback for a package owning none of them.
//!
//! Policy, identical to the other package managers: installed kernels and
//! headers are build triggers; removing a kernel (`*-core`) drops its modules
//! unless the same release comes back in the same transaction (reinstall);
//! removing only headers (`*-devel`) keeps the built modules.

use std::collections::BTreeSet;
use std::fmt;

use serde::Deserialize;

use super::targets::{
    kernel_package_parts, rpm_fallback_kver, touched_by_paths, valid_release, KernelPkgKind, Touched,
};

/// What a dnf transaction means for out-of-tree modules.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DnfTransaction {
    /// Releases installed by the transaction: `kernels` from `*-core`
    /// packages, `headers` from `*-devel` packages (`modules` stays empty).
    pub installed: Touched,
    /// Kernels (`*-core`) that left the system: their modules are to be
    /// dropped. A release that a `*-core` package of the "in" side brings
    /// back (reinstall) is not listed.
    pub removed_kernels: BTreeSet<String>,
    /// Other things that left the system: `headers` of removed `*-devel`
    /// packages (again minus those reinstalled). Removed kernels are in
    /// [`removed_kernels`](Self::removed_kernels), not in `removed.kernels`,
    /// which stays empty, as does `removed.modules`.
    pub removed: Touched,
}

impl DnfTransaction {
    /// True when the transaction touched no kernel package.
    pub fn is_empty(&self) -> bool {
        self.installed.is_empty() && self.removed_kernels.is_empty() && self.removed.is_empty()
    }
}

/// One package as the dnf4 plugin describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct DnfPackage {
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub release: String,
    #[serde(default)]
    pub arch: String,
    #[serde(default)]
    pub files: Vec<String>,
}

/// The JSON document of `modsync hook dnf`.
#[derive(Debug, Default, Deserialize)]
struct DnfJson {
    #[serde(rename = "in", default)]
    incoming: Vec<DnfPackage>,
    #[serde(rename = "out", default)]
    outgoing: Vec<DnfPackage>,
}

/// Parses the dnf4 plugin's JSON (see the module docs). Unknown keys are
/// ignored; a missing "in" or "out" is an empty list.
pub fn from_json(input: &str) -> Result<DnfTransaction, serde_json::Error> {
    let doc: DnfJson = serde_json::from_str(input)?;
    Ok(from_packages(&doc.incoming, &doc.outgoing))
}

/// The direction argument of `modsync hook dnf5` was neither `in` nor `out`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadDirection(pub String);

impl fmt::Display for BadDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown package direction {:?} (expected \"in\" or \"out\")", self.0)
    }
}

impl std::error::Error for BadDirection {}

/// One package from the dnf5 actions plugin: `in|out NAME VERSION RELEASE
/// ARCH`, with the files the package owns (from `rpm -ql`; may be empty).
pub fn from_dnf5(
    direction: &str,
    name: &str,
    version: &str,
    release: &str,
    arch: &str,
    files: &[String],
) -> Result<DnfTransaction, BadDirection> {
    let pkg = DnfPackage {
        name: name.to_owned(),
        version: version.to_owned(),
        release: release.to_owned(),
        arch: arch.to_owned(),
        files: files.to_vec(),
    };
    let one = std::slice::from_ref(&pkg);
    match direction {
        "in" => Ok(from_packages(one, &[])),
        "out" => Ok(from_packages(&[], one)),
        other => Err(BadDirection(other.to_owned())),
    }
}

/// The core of both parsers: incoming and outgoing packages -> policy sets.
pub fn from_packages(incoming: &[DnfPackage], outgoing: &[DnfPackage]) -> DnfTransaction {
    let mut t = DnfTransaction::default();
    for pkg in incoming {
        if let Some((kind, releases)) = kernel_releases(pkg) {
            match kind {
                KernelPkgKind::Core => t.installed.kernels.extend(releases),
                KernelPkgKind::Devel => t.installed.headers.extend(releases),
            }
        }
    }
    for pkg in outgoing {
        if let Some((kind, releases)) = kernel_releases(pkg) {
            match kind {
                KernelPkgKind::Core => t
                    .removed_kernels
                    .extend(releases.into_iter().filter(|k| !t.installed.kernels.contains(k))),
                KernelPkgKind::Devel => t
                    .removed
                    .headers
                    .extend(releases.into_iter().filter(|k| !t.installed.headers.contains(k))),
            }
        }
    }
    t
}

/// The kind and kernel releases of a kernel package; None for other packages.
fn kernel_releases(pkg: &DnfPackage) -> Option<(KernelPkgKind, BTreeSet<String>)> {
    let (variant, kind) = kernel_package_parts(&pkg.name)?;
    let releases = touched_by_paths(pkg.files.iter().map(String::as_str)).releases();
    if !releases.is_empty() {
        return Some((kind, releases));
    }
    if pkg.version.is_empty() || pkg.release.is_empty() || pkg.arch.is_empty() {
        return Some((kind, BTreeSet::new()));
    }
    let mut k = rpm_fallback_kver(&pkg.version, &pkg.release, &pkg.arch);
    // Fedora's kernel.spec names variant kernels KVERREL+VARIANT
    // (6.8.9-300.fc40.x86_64+debug); kernel-modules-core is the plain kernel.
    match variant {
        Some(v) if v != "modules" => {
            k.push('+');
            k.push_str(v);
        }
        _ => {}
    }
    // rpm's own fields cannot hold '/' or whitespace, but nothing else checks
    // them here: a release that is not one plain path component is dropped.
    if valid_release(&k).is_none() {
        return Some((kind, BTreeSet::new()));
    }
    Some((kind, BTreeSet::from([k])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const K56: &str = "6.1.0-56-amd64";

    #[test]
    fn kernel_devel_install_from_the_contract_example() {
        let t = from_json(
            r#"{"in": [{"name":"kernel-devel","version":"6.1.0","release":"56","arch":"x86_64",
                       "files":["/usr/src/kernels/6.1.0-56-amd64"]}],
                "out": []}"#,
        )
        .unwrap();
        assert_eq!(t.installed.headers, set(&[K56]));
        assert!(t.installed.kernels.is_empty());
        assert!(t.removed_kernels.is_empty() && t.removed.is_empty());
        assert!(!t.is_empty());
    }

    #[test]
    fn kernel_core_install_and_remove() {
        let core = r#"{"name":"kernel-core","version":"6.1.0","release":"56","arch":"x86_64",
                       "files":["/lib/modules/6.1.0-56-amd64/config","/lib/modules/6.1.0-56-amd64"]}"#;
        let t = from_json(&format!(r#"{{"in":[{core}],"out":[]}}"#)).unwrap();
        assert_eq!(t.installed.kernels, set(&[K56]));
        assert!(t.installed.headers.is_empty());
        let t = from_json(&format!(r#"{{"in":[],"out":[{core}]}}"#)).unwrap();
        assert_eq!(t.removed_kernels, set(&[K56]));
        assert!(t.installed.is_empty() && t.removed.is_empty());
    }

    #[test]
    fn removing_devel_only_touches_headers() {
        let t = from_json(
            r#"{"out":[{"name":"kernel-devel","version":"6.1.0","release":"56","arch":"x86_64",
                        "files":["/usr/src/kernels/6.1.0-56-amd64"]}]}"#,
        )
        .unwrap();
        assert!(t.removed_kernels.is_empty());
        assert_eq!(t.removed.headers, set(&[K56]));
        assert!(t.removed.kernels.is_empty());
    }

    #[test]
    fn reinstall_removes_nothing() {
        let p = r#"{"name":"kernel-core","version":"6.8.9","release":"300.fc40","arch":"x86_64",
                    "files":["/usr/lib/modules/6.8.9-300.fc40.x86_64/vmlinuz"]}"#;
        let d = r#"{"name":"kernel-devel","version":"6.8.9","release":"300.fc40","arch":"x86_64",
                    "files":["/usr/src/kernels/6.8.9-300.fc40.x86_64/Makefile"]}"#;
        let t = from_json(&format!(r#"{{"in":[{p},{d}],"out":[{p},{d}]}}"#)).unwrap();
        assert!(t.removed_kernels.is_empty());
        assert!(t.removed.is_empty());
        assert_eq!(t.installed.kernels, set(&["6.8.9-300.fc40.x86_64"]));
        assert_eq!(t.installed.headers, set(&["6.8.9-300.fc40.x86_64"]));
    }

    #[test]
    fn new_headers_do_not_save_a_removed_kernel() {
        // kernel-core K leaves while kernel-devel K arrives: the kernel is gone.
        let t = from_json(
            r#"{"in":[{"name":"kernel-devel","version":"1","release":"1","arch":"x86_64","files":["/usr/src/kernels/K"]}],
                "out":[{"name":"kernel-core","version":"1","release":"1","arch":"x86_64","files":["/lib/modules/K/vmlinuz"]}]}"#,
        )
        .unwrap();
        assert_eq!(t.removed_kernels, set(&["K"]));
        assert_eq!(t.installed.headers, set(&["K"]));
    }

    #[test]
    fn installonly_cleanup_with_a_new_kernel() {
        // dnf upgrade: new kernel in, oldest kernel out (installonly_limit).
        let t = from_json(
            r#"{"in":[{"name":"kernel-core","version":"6.9","release":"1.fc40","arch":"x86_64","files":["/lib/modules/6.9-1.fc40.x86_64/vmlinuz"]},
                      {"name":"kernel-devel","version":"6.9","release":"1.fc40","arch":"x86_64","files":["/usr/src/kernels/6.9-1.fc40.x86_64"]},
                      {"name":"kernel","version":"6.9","release":"1.fc40","arch":"x86_64","files":[]},
                      {"name":"kernel-modules","version":"6.9","release":"1.fc40","arch":"x86_64","files":["/lib/modules/6.9-1.fc40.x86_64/kernel/x.ko.xz"]}],
                "out":[{"name":"kernel-core","version":"6.7","release":"1.fc40","arch":"x86_64","files":["/lib/modules/6.7-1.fc40.x86_64/vmlinuz"]},
                       {"name":"kernel-devel","version":"6.7","release":"1.fc40","arch":"x86_64","files":["/usr/src/kernels/6.7-1.fc40.x86_64"]}]}"#,
        )
        .unwrap();
        assert_eq!(t.installed.kernels, set(&["6.9-1.fc40.x86_64"]));
        assert_eq!(t.installed.headers, set(&["6.9-1.fc40.x86_64"]));
        assert_eq!(t.removed_kernels, set(&["6.7-1.fc40.x86_64"]));
        assert_eq!(t.removed.headers, set(&["6.7-1.fc40.x86_64"]));
    }

    #[test]
    fn other_packages_are_ignored() {
        let t = from_json(
            r#"{"in":[{"name":"kernel-headers","version":"6.9","release":"1","arch":"x86_64","files":["/usr/include/linux/x.h"]},
                      {"name":"kernel-tools","version":"6.9","release":"1","arch":"x86_64","files":["/usr/lib/modules/6.9/vmlinuz"]},
                      {"name":"bash","version":"5","release":"1","arch":"x86_64"}],
                "out":[{"name":"kernel","version":"6.9","release":"1","arch":"x86_64","files":[]}]}"#,
        )
        .unwrap();
        assert!(t.is_empty(), "{t:?}");
        assert!(from_json("{}").unwrap().is_empty());
    }

    #[test]
    fn fallback_when_no_path_names_the_release() {
        let t = from_json(
            r#"{"in":[{"name":"kernel-devel","version":"6.1.0","release":"56","arch":"x86_64","files":["/usr/share/doc/x"]},
                      {"name":"kernel-debug-core","version":"6.8.9","release":"300.fc40","arch":"x86_64"},
                      {"name":"kernel-modules-core","version":"6.8.9","release":"300.fc40","arch":"x86_64"}]}"#,
        )
        .unwrap();
        assert_eq!(t.installed.headers, set(&["6.1.0-56.x86_64"]));
        assert_eq!(
            t.installed.kernels,
            set(&["6.8.9-300.fc40.x86_64+debug", "6.8.9-300.fc40.x86_64"])
        );
        // Without version/release/arch there is nothing to fall back on.
        let t = from_json(r#"{"in":[{"name":"kernel-core","files":[]}]}"#).unwrap();
        assert!(t.is_empty());
    }

    #[test]
    fn malformed_json_is_an_error() {
        assert!(from_json("").is_err());
        assert!(from_json("42").is_err());
        assert!(from_json(r#"{"in":[{"version":"1"}]}"#).is_err()); // no name
        assert!(from_json(r#"{"in":{}}"#).is_err());
        // unknown keys are fine
        assert!(from_json(r#"{"in":[],"out":[],"dnf":"4.14"}"#).unwrap().is_empty());
    }

    #[test]
    fn dnf5_single_packages() {
        let files = vec!["/usr/src/kernels/6.1.0-56-amd64".to_string()];
        let t = from_dnf5("in", "kernel-devel", "6.1.0", "56", "x86_64", &files).unwrap();
        assert_eq!(t.installed.headers, set(&[K56]));
        let t = from_dnf5("out", "kernel-devel", "6.1.0", "56", "x86_64", &files).unwrap();
        assert_eq!(t.removed.headers, set(&[K56]));
        assert!(t.removed_kernels.is_empty());

        let core = vec!["/lib/modules/6.1.0-56-amd64/config".to_string()];
        let t = from_dnf5("out", "kernel-core", "6.1.0", "56", "x86_64", &core).unwrap();
        assert_eq!(t.removed_kernels, set(&[K56]));
        let t = from_dnf5("in", "kernel-core", "6.8.9", "300.fc40", "x86_64", &[]).unwrap();
        assert_eq!(t.installed.kernels, set(&["6.8.9-300.fc40.x86_64"]));

        assert!(from_dnf5("in", "kernel-headers", "6.9", "1", "x86_64", &[])
            .unwrap()
            .is_empty());
        let e = from_dnf5("sideways", "kernel-core", "1", "1", "x86_64", &[]).unwrap_err();
        assert_eq!(e, BadDirection("sideways".into()));
        assert!(e.to_string().contains("sideways"));
    }
}
