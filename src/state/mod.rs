//! The on-disk state tree, in dkms's layout so that dkms and modsync read
//! each other's trees:
//!
//! ```text
//! $dkms_tree/<m>/<v>/source -> $source_tree/<m>-<v>   added
//! $dkms_tree/<m>/<v>/<K>/<A>/module/<name>.ko[.xz]     built
//! $dkms_tree/<m>/<v>/<K>/<A>/log/make.log
//! $dkms_tree/<m>/kernel-<K>-<A> -> <v>/<K>/<A>         installed (active version)
//! $dkms_tree/<m>/original_module/<K>/<A>/<name>.ko + .origin
//! ```
//!
//! plus modsync's own hidden files, which dkms never looks at:
//! `<m>/<v>/<K>/<A>/.modsync.json` (what the build made, see [`record`]),
//! `<m>/<v>/.modsync/failed/<K>-<A>/` (the last failed build), and
//! `$dkms_tree/.modsync/` (lock and journal). This module only reads; the
//! operations that change the tree live with the effects that need them.

pub mod history;
pub mod journal;
pub mod lock;
pub mod packaged;
pub mod record;
pub mod tarball_layout;

use crate::config::settings::Compat;
use crate::sys::fs::{is_real_dir, sorted_names};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Tree {
    pub root: PathBuf,
    pub source_tree: PathBuf,
}

/// Whether a module version is registered, as dkms decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceState {
    /// Registered; its source is this directory.
    Added(PathBuf),
    /// dkms 3.0's view of a registration whose source link dangles: still
    /// added, but its dkms.conf cannot be read.
    AddedGone,
    /// The source link dangles, or is missing while `$source_tree/m-v` exists.
    Broken,
    /// Not registered.
    Absent,
}

/// What the file system says about a version's source (pure input of [`source_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourceFacts {
    pub version_dir: bool,
    pub link: bool,
    pub link_target_is_dir: bool,
    pub source_is_dir: bool,
    pub default_source_exists: bool,
}

/// dkms's predicates over the facts. Pure.
pub fn source_state(f: SourceFacts, compat: Compat, target: impl FnOnce() -> PathBuf) -> SourceState {
    if !f.version_dir {
        return SourceState::Absent;
    }
    if f.link && f.link_target_is_dir {
        return SourceState::Added(target());
    }
    if compat.broken_state() {
        if f.link || f.default_source_exists {
            return SourceState::Broken;
        }
        return SourceState::Absent;
    }
    if f.source_is_dir {
        return SourceState::Added(target());
    }
    if f.link {
        return SourceState::AddedGone;
    }
    SourceState::Absent
}

/// dkms's status glob for kernel directories, `+([0-9]).*`.
pub fn looks_like_kernel(k: &str) -> bool {
    let digits = k.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && k.as_bytes().get(digits) == Some(&b'.')
}

/// Entries of `m/` that are not versions.
fn not_a_version(n: &str) -> bool {
    n == "original_module" || n.starts_with("kernel-") || n.starts_with('.')
}

impl Tree {
    pub fn new(root: &Path, source_tree: &Path) -> Tree {
        Tree {
            root: root.to_path_buf(),
            source_tree: source_tree.to_path_buf(),
        }
    }

    pub fn module_dir(&self, m: &str) -> PathBuf {
        self.root.join(m)
    }
    pub fn version_dir(&self, m: &str, v: &str) -> PathBuf {
        self.root.join(m).join(v)
    }
    pub fn source_link(&self, m: &str, v: &str) -> PathBuf {
        self.version_dir(m, v).join("source")
    }
    /// Where dkms builds and dkms.conf files refer to the build.
    pub fn build_dir(&self, m: &str, v: &str) -> PathBuf {
        self.version_dir(m, v).join("build")
    }
    /// `m/v/K`.
    pub fn kernel_dir(&self, m: &str, v: &str, k: &str) -> PathBuf {
        self.version_dir(m, v).join(k)
    }
    /// `m/v/K/A`: exists once m/v is built for K/A.
    pub fn build_result(&self, m: &str, v: &str, k: &str, a: &str) -> PathBuf {
        self.kernel_dir(m, v, k).join(a)
    }
    pub fn built_modules_dir(&self, m: &str, v: &str, k: &str, a: &str) -> PathBuf {
        self.build_result(m, v, k, a).join("module")
    }
    pub fn active_link(&self, m: &str, k: &str, a: &str) -> PathBuf {
        self.module_dir(m).join(format!("kernel-{k}-{a}"))
    }
    pub fn original_dir(&self, m: &str, k: &str, a: &str) -> PathBuf {
        self.module_dir(m).join("original_module").join(k).join(a)
    }
    /// Where the last failed build of m/v for K/A keeps its make.log.
    pub fn failed_dir(&self, m: &str, v: &str, k: &str, a: &str) -> PathBuf {
        self.version_dir(m, v).join(".modsync/failed").join(format!("{k}-{a}"))
    }
    /// The source directory a module version is added from.
    pub fn default_source(&self, m: &str, v: &str) -> PathBuf {
        self.source_tree.join(format!("{m}-{v}"))
    }
    /// modsync's own area: lock, journal.
    pub fn private_dir(&self) -> PathBuf {
        self.root.join(".modsync")
    }

    pub fn source_facts(&self, m: &str, v: &str) -> SourceFacts {
        let link = self.source_link(m, v);
        let is_link = link.symlink_metadata().is_ok_and(|md| md.file_type().is_symlink());
        SourceFacts {
            version_dir: is_real_dir(&self.version_dir(m, v)),
            link: is_link,
            link_target_is_dir: is_link && link.is_dir(),
            source_is_dir: link.is_dir(),
            default_source_exists: self.default_source(m, v).is_dir(),
        }
    }

    pub fn source_state(&self, m: &str, v: &str, compat: Compat) -> SourceState {
        let link = self.source_link(m, v);
        source_state(self.source_facts(m, v), compat, || {
            std::fs::canonicalize(&link).unwrap_or(link.clone())
        })
    }

    /// Module names in the tree, in glob order.
    pub fn modules(&self) -> Vec<String> {
        sorted_names(&self.root)
            .into_iter()
            .filter(|n| !n.starts_with('.') && is_real_dir(&self.root.join(n)))
            .collect()
    }

    /// Versions of module `m` present in the tree.
    pub fn versions(&self, m: &str) -> Vec<String> {
        sorted_names(&self.module_dir(m))
            .into_iter()
            .filter(|v| !not_a_version(v) && is_real_dir(&self.version_dir(m, v)))
            .collect()
    }

    /// Every (module, version) in the tree, in glob order.
    pub fn combos(&self) -> Vec<(String, String)> {
        self.modules()
            .into_iter()
            .flat_map(|m| self.versions(&m).into_iter().map(move |v| (m.clone(), v)))
            .collect()
    }

    /// (kernel, arch) pairs where m/v is built (`module/` exists); kernels
    /// only when they look like one, as dkms's glob, unless `kernel` names one.
    pub fn built(&self, m: &str, v: &str, kernel: Option<&str>, arch: Option<&str>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for k in sorted_names(&self.version_dir(m, v)) {
            if kernel.map_or(!looks_like_kernel(&k), |want| want != k) {
                continue;
            }
            for a in sorted_names(&self.kernel_dir(m, v, &k)) {
                if arch.is_some_and(|want| want != a) || a.starts_with('.') {
                    continue;
                }
                if self.is_built(m, v, &k, &a) {
                    out.push((k.clone(), a));
                }
            }
        }
        out
    }

    pub fn is_built(&self, m: &str, v: &str, k: &str, a: &str) -> bool {
        is_real_dir(&self.build_result(m, v, k, a)) && self.built_modules_dir(m, v, k, a).is_dir()
    }

    /// The version of `m` active (installed) for K/A, from the `kernel-K-A` link.
    pub fn active_version(&self, m: &str, k: &str, a: &str) -> Option<String> {
        let target = std::fs::read_link(self.active_link(m, k, a)).ok()?;
        parse_active_target(&target.to_string_lossy(), &self.module_dir(m).to_string_lossy(), k, a)
    }

    pub fn is_installed(&self, m: &str, v: &str, k: &str, a: &str) -> bool {
        self.is_built(m, v, k, a) && self.active_version(m, k, a).as_deref() == Some(v)
    }

    /// Any version of `m` installed for K/A.
    pub fn installed_version(&self, m: &str, k: &str, a: &str) -> Option<String> {
        self.active_version(m, k, a).filter(|v| self.is_built(m, v, k, a))
    }

    /// The module files (`*.ko*`) built for K/A.
    pub fn built_files(&self, m: &str, v: &str, k: &str, a: &str) -> Vec<String> {
        sorted_names(&self.built_modules_dir(m, v, k, a))
            .into_iter()
            .filter(|f| f.contains(".ko"))
            .collect()
    }

    /// The built file of module `name` (`name.ko` or `name.ko.<ext>`).
    pub fn built_file(&self, m: &str, v: &str, k: &str, a: &str, name: &str) -> Option<PathBuf> {
        let dir = self.built_modules_dir(m, v, k, a);
        module_file_in(&dir, name)
    }

    pub fn read_record(&self, m: &str, v: &str, k: &str, a: &str) -> Option<record::BuildRecord> {
        record::read(&self.build_result(m, v, k, a))
    }
}

/// `dir/name.ko`, else `dir/name.ko.{zst,xz,gz}`, whichever exists.
pub fn module_file_in(dir: &Path, name: &str) -> Option<PathBuf> {
    ["", ".zst", ".xz", ".gz"]
        .iter()
        .map(|s| dir.join(format!("{name}.ko{s}")))
        .find(|p| p.is_file())
}

/// The version a `kernel-K-A` link target names: `v/K/A` relative to the
/// module directory (as dkms writes it) or absolute under it. Pure.
pub fn parse_active_target(target: &str, module_dir: &str, k: &str, a: &str) -> Option<String> {
    let rel = target
        .strip_prefix(&format!("{}/", module_dir.trim_end_matches('/')))
        .unwrap_or(target);
    let mut parts = rel.trim_start_matches("./").split('/');
    let v = parts
        .next()
        .filter(|v| !v.is_empty() && *v != ".." && *v != ".")?
        .to_string();
    (parts.next() == Some(k) && parts.next() == Some(a) && parts.next().is_none()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn reads_a_dkms_layout() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src/foo-1.0");
        fs::create_dir_all(&src).unwrap();
        let t = Tree::new(&d.path().join("dkms"), &d.path().join("src"));
        fs::create_dir_all(t.version_dir("foo", "1.0")).unwrap();
        std::os::unix::fs::symlink(&src, t.source_link("foo", "1.0")).unwrap();
        for k in ["6.1.0-1-amd64", "6.1.0-2-amd64", "custom"] {
            fs::create_dir_all(t.built_modules_dir("foo", "1.0", k, "x86_64")).unwrap();
        }
        std::os::unix::fs::symlink(
            "1.0/6.1.0-1-amd64/x86_64",
            t.active_link("foo", "6.1.0-1-amd64", "x86_64"),
        )
        .unwrap();
        fs::create_dir_all(t.original_dir("foo", "6.1.0-1-amd64", "x86_64")).unwrap();
        assert_eq!(t.combos(), vec![("foo".to_string(), "1.0".to_string())]);
        assert_eq!(
            t.source_state("foo", "1.0", Compat::V34),
            SourceState::Added(fs::canonicalize(&src).unwrap())
        );
        assert_eq!(
            t.built("foo", "1.0", None, None).len(),
            2,
            "kernel dirs not looking like one are hidden, as in dkms"
        );
        assert_eq!(t.built("foo", "1.0", Some("custom"), None).len(), 1);
        assert!(t.is_installed("foo", "1.0", "6.1.0-1-amd64", "x86_64"));
        assert!(!t.is_installed("foo", "1.0", "6.1.0-2-amd64", "x86_64"));
        fs::remove_dir_all(&src).unwrap();
        assert_eq!(t.source_state("foo", "1.0", Compat::V34), SourceState::Broken);
        assert_eq!(t.source_state("foo", "1.0", Compat::V30), SourceState::AddedGone);
    }

    #[test]
    fn source_states_as_each_dkms_sees_them() {
        let f = |link, target, default| SourceFacts {
            version_dir: true,
            link,
            link_target_is_dir: link && target,
            source_is_dir: target,
            default_source_exists: default,
        };
        let p = || PathBuf::from("/usr/src/m-1");
        assert_eq!(
            source_state(f(true, true, true), Compat::V34, p),
            SourceState::Added(p())
        );
        assert_eq!(source_state(f(true, false, false), Compat::V34, p), SourceState::Broken);
        assert_eq!(source_state(f(false, false, true), Compat::V34, p), SourceState::Broken);
        assert_eq!(
            source_state(f(false, false, false), Compat::V34, p),
            SourceState::Absent
        );
        assert_eq!(
            source_state(f(true, false, false), Compat::V30, p),
            SourceState::AddedGone
        );
        assert_eq!(source_state(f(false, false, true), Compat::V30, p), SourceState::Absent);
        assert_eq!(
            source_state(SourceFacts::default(), Compat::V34, p),
            SourceState::Absent
        );
    }

    #[test]
    fn kernel_glob_and_active_links() {
        assert!(looks_like_kernel("6.1.0-56-amd64") && looks_like_kernel("10.0"));
        assert!(!looks_like_kernel("custom-k") && !looks_like_kernel("6") && !looks_like_kernel(".1"));
        assert_eq!(
            parse_active_target("1.0/6.1/x86_64", "/var/lib/dkms/foo", "6.1", "x86_64").as_deref(),
            Some("1.0")
        );
        assert_eq!(
            parse_active_target("/var/lib/dkms/foo/2.0/6.1/x86_64", "/var/lib/dkms/foo", "6.1", "x86_64").as_deref(),
            Some("2.0")
        );
        assert_eq!(parse_active_target("1.0/6.2/x86_64", "/d/foo", "6.1", "x86_64"), None);
        assert_eq!(parse_active_target("../x/6.1/x86_64", "/d/foo", "6.1", "x86_64"), None);
        assert_eq!(
            parse_active_target("1.0/6.1/x86_64/extra", "/d/foo", "6.1", "x86_64"),
            None
        );
    }
}
