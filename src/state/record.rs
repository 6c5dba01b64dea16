//! `m/v/K/A/.modsync.json`: what a build made, written with the build so
//! that `status` and `uninstall` know the module names, files and install
//! locations without evaluating dkms.conf (and without a process). A tree
//! built by dkms has no record; readers fall back to the files present.
//! What the file says is input too: a record whose names or locations could
//! leave their directories is ignored.

use crate::sys::names::{self, Kind};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const FILE: &str = ".modsync.json";

/// One module of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltModule {
    /// DEST_MODULE_NAME: the file is `<name>.ko[.ext]`.
    pub name: String,
    /// The file in `module/`, with the kernel's compression suffix.
    pub file: String,
    /// Where it is installed under `/lib/modules/K`, e.g. `/updates/dkms`.
    pub location: String,
    /// DEST_MODULE_LOCATION as dkms.conf says it.
    pub declared_location: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRecord {
    pub modules: Vec<BuiltModule>,
    /// BUILD_DEPENDS, and whether the module is rebuilt when one of them
    /// changes version (BUILD_DEPENDS_REBUILD).
    #[serde(default)]
    pub depends: Vec<String>,
    #[serde(default)]
    pub rebuild_on_depends: bool,
}

/// An absolute location under the module tree, as dkms.conf may write it
/// (`/extra/`, `/kernel//drivers` are fine): nothing leads out of it.
fn location_ok(l: &str) -> bool {
    let mut parts = l.split('/').filter(|c| !c.is_empty()).peekable();
    l.starts_with('/')
        && parts.peek().is_some()
        && parts.all(|c| c != "." && c != ".." && !c.contains(char::is_whitespace))
}

impl BuildRecord {
    /// True when every name and location stays inside its directory.
    pub fn is_sane(&self) -> bool {
        self.modules.iter().all(|m| {
            names::valid(Kind::Module, &m.name)
                && ["", ".gz", ".xz", ".zst"]
                    .iter()
                    .any(|s| m.file == format!("{}.ko{s}", m.name))
                && location_ok(&m.location)
                && location_ok(&m.declared_location)
        }) && self.depends.iter().all(|d| names::valid(Kind::Module, d))
    }
}

/// The record of the build in `dir` (`m/v/K/A`), if present and sane.
pub fn read(dir: &Path) -> Option<BuildRecord> {
    let text = std::fs::read_to_string(dir.join(FILE)).ok()?;
    let r: BuildRecord = serde_json::from_str(&text).ok()?;
    if !r.is_sane() {
        log::warn!(
            "ignoring {}: it names a file or location outside its directory",
            dir.join(FILE).display()
        );
        return None;
    }
    Some(r)
}

pub fn to_json(r: &BuildRecord) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(r).unwrap_or_default();
    v.push(b'\n');
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, file: &str, loc: &str) -> BuiltModule {
        BuiltModule {
            name: name.into(),
            file: file.into(),
            location: loc.into(),
            declared_location: "/kernel/extra".into(),
        }
    }

    #[test]
    fn insane_records_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let good = BuildRecord {
            modules: vec![m("foo", "foo.ko.xz", "/updates/dkms")],
            ..Default::default()
        };
        std::fs::write(d.path().join(FILE), to_json(&good)).unwrap();
        assert_eq!(read(d.path()), Some(good));
        // as jool-dkms writes its DEST_MODULE_LOCATION
        let slashed = BuildRecord {
            modules: vec![BuiltModule {
                declared_location: "/extra/".into(),
                ..m("jool", "jool.ko", "/updates/dkms/")
            }],
            ..Default::default()
        };
        std::fs::write(d.path().join(FILE), to_json(&slashed)).unwrap();
        assert_eq!(read(d.path()), Some(slashed));
        for bad in [
            m("../x", "../x.ko", "/updates"),
            m("foo", "bar.ko", "/updates"),
            m("foo", "foo.ko", "/updates/../../etc"),
            m("foo", "foo.ko", "updates"),
            m("foo", "foo.ko", "/"),
            m("foo", "foo.ko", "/updates/./x"),
        ] {
            let r = BuildRecord {
                modules: vec![bad.clone()],
                ..Default::default()
            };
            std::fs::write(d.path().join(FILE), to_json(&r)).unwrap();
            assert_eq!(read(d.path()), None, "{bad:?}");
        }
        std::fs::write(d.path().join(FILE), "not json").unwrap();
        assert_eq!(read(d.path()), None);
    }
}
