//! The marker a binary module package (`modsync mkdeb|mkrpm|mkpkg`) owns:
//! `/usr/lib/modsync/packaged/<module>/<kernel>`, TOML naming the module,
//! its version, the kernel, the architecture, the package and its files.
//! `status` lists what the markers say, and autoinstall and the hooks leave
//! a module alone for a kernel a package provides it for. What a marker
//! says is input: one whose names are not plain names is ignored.

use crate::sys::names::{self, Kind};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the markers are, under the system root.
pub const DIR: &str = "usr/lib/modsync/packaged";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub module: String,
    pub version: String,
    pub kernel: String,
    pub arch: String,
    pub package: String,
    pub files: Vec<String>,
}

impl Marker {
    /// The marker's path inside a package (absolute).
    pub fn path(module: &str, kernel: &str) -> String {
        format!("/{DIR}/{module}/{kernel}")
    }

    pub fn to_toml(&self) -> String {
        format!(
            "# written by modsync: this module is installed from the package named here\n{}",
            toml::to_string(self).expect("a marker serialises")
        )
    }

    /// Parses a marker's text; None when it is not one or holds bad names.
    pub fn parse(text: &str) -> Option<Marker> {
        let m: Marker = toml::from_str(text).ok()?;
        let sane = names::valid(Kind::Module, &m.module)
            && names::valid(Kind::Version, &m.version)
            && names::valid(Kind::Kernel, &m.kernel)
            && names::valid(Kind::Arch, &m.arch)
            && names::valid(Kind::Module, &m.package);
        sane.then_some(m)
    }
}

fn dir(sysroot: &Path) -> PathBuf {
    sysroot.join(DIR)
}

/// Every readable marker under the system root, by module then kernel.
pub fn all(sysroot: &Path) -> Vec<Marker> {
    let base = dir(sysroot);
    let mut out = Vec::new();
    for m in crate::sys::fs::sorted_names(&base) {
        for k in crate::sys::fs::sorted_names(&base.join(&m)) {
            let p = base.join(&m).join(&k);
            match std::fs::read_to_string(&p).ok().and_then(|t| Marker::parse(&t)) {
                Some(mk) if mk.module == m && mk.kernel == k => out.push(mk),
                _ => log::warn!("ignoring {}: not a modsync package marker", p.display()),
            }
        }
    }
    out
}

/// The marker of module `m` for kernel `k`, if a package provides it.
pub fn find(sysroot: &Path, m: &str, k: &str) -> Option<Marker> {
    if !names::valid(Kind::Module, m) || !names::valid(Kind::Kernel, k) {
        return None;
    }
    let text = std::fs::read_to_string(dir(sysroot).join(m).join(k)).ok()?;
    Marker::parse(&text).filter(|mk| mk.module == m && mk.kernel == k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_bad_ones_are_ignored() {
        let mk = Marker {
            module: "hello".into(),
            version: "1.0".into(),
            kernel: "6.1.0-56-amd64".into(),
            arch: "x86_64".into(),
            package: "hello-modules-6.1.0-56-amd64".into(),
            files: vec!["/lib/modules/6.1.0-56-amd64/updates/dkms/hello.ko.xz".into()],
        };
        assert_eq!(Marker::parse(&mk.to_toml()), Some(mk.clone()));
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(DIR).join("hello");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("6.1.0-56-amd64"), mk.to_toml()).unwrap();
        std::fs::write(p.join("6.1.0-54-amd64"), mk.to_toml()).unwrap(); // names another kernel
        let bad = Marker {
            module: "../x".into(),
            ..mk.clone()
        };
        std::fs::create_dir_all(d.path().join(DIR).join("x")).unwrap();
        std::fs::write(d.path().join(DIR).join("x/6.1"), bad.to_toml()).unwrap();
        assert_eq!(all(d.path()), vec![mk.clone()]);
        assert_eq!(find(d.path(), "hello", "6.1.0-56-amd64"), Some(mk));
        assert_eq!(find(d.path(), "hello", "6.1.0-54-amd64"), None);
        assert_eq!(find(d.path(), "../hello", "6.1"), None);
    }
}
