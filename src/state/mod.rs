//! The on-disk state tree, in dkms's layout so that dkms and modsync read
//! each other's trees (dkms-behaviour.md §4.1):
//! `m/v/source -> /usr/src/m-v`, `m/v/K/A/{module,log}`, `m/kernel-K-A -> v/K/A`,
//! `m/original_module/K/A/`. modsync adds `m/v/failed/K/A/make.log` for
//! builds that failed (invisible to dkms, whose kernel glob needs a digit)
//! and `m/v/K/A/.modsync.json` describing what was built.

pub mod journal;
pub mod lock;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Names under `m/v/` that are not kernels.
const NOT_KERNELS: &[&str] = &["source", "build", "tarball", "failed", "log", "driver_disk", "rpm", "deb"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceState {
    /// `source` points at an existing directory.
    Added(PathBuf),
    /// The link dangles, or there is no link while the source tree has m-v.
    Broken,
    /// Neither link nor source: not registered.
    Absent,
}

/// What a build recorded about its modules (so `status` needs no dkms.conf).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuiltInfo {
    /// Installed file names relative to `$install_tree/K`, e.g. `updates/dkms/foo.ko.xz`.
    pub installed_paths: Vec<String>,
    /// Cache key the build was stored under, if any.
    #[serde(default)]
    pub cache_key: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Tree {
    pub root: PathBuf,
    pub source_tree: PathBuf,
}

fn sorted_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

impl Tree {
    pub fn new(root: &Path, source_tree: &Path) -> Tree {
        Tree { root: root.to_path_buf(), source_tree: source_tree.to_path_buf() }
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
    /// Where dkms.conf files refer to the build (`$dkms_tree/m/v/build`).
    pub fn build_dir(&self, m: &str, v: &str) -> PathBuf {
        self.version_dir(m, v).join("build")
    }
    pub fn kernel_dir(&self, m: &str, v: &str, k: &str, a: &str) -> PathBuf {
        self.version_dir(m, v).join(k).join(a)
    }
    pub fn built_modules_dir(&self, m: &str, v: &str, k: &str, a: &str) -> PathBuf {
        self.kernel_dir(m, v, k, a).join("module")
    }
    pub fn info_path(&self, m: &str, v: &str, k: &str, a: &str) -> PathBuf {
        self.kernel_dir(m, v, k, a).join(".modsync.json")
    }
    pub fn active_link(&self, m: &str, k: &str, a: &str) -> PathBuf {
        self.module_dir(m).join(format!("kernel-{k}-{a}"))
    }
    pub fn original_dir(&self, m: &str, k: &str, a: &str) -> PathBuf {
        self.module_dir(m).join("original_module").join(k).join(a)
    }
    pub fn failed_dir(&self, m: &str, v: &str, k: &str, a: &str) -> PathBuf {
        self.version_dir(m, v).join("failed").join(k).join(a)
    }
    /// The source directory a module version is added from by default.
    pub fn default_source(&self, m: &str, v: &str) -> PathBuf {
        self.source_tree.join(format!("{m}-{v}"))
    }

    pub fn source_state(&self, m: &str, v: &str) -> SourceState {
        let link = self.source_link(m, v);
        if link.symlink_metadata().is_ok() {
            return match std::fs::canonicalize(&link) {
                Ok(p) if p.is_dir() => SourceState::Added(p),
                _ => SourceState::Broken,
            };
        }
        if self.default_source(m, v).is_dir() && self.version_dir(m, v).is_dir() {
            SourceState::Broken
        } else {
            SourceState::Absent
        }
    }

    /// Module names in the tree (directories not starting with '.').
    pub fn modules(&self) -> Vec<String> {
        sorted_names(&self.root)
            .into_iter()
            .filter(|n| !n.starts_with('.') && self.root.join(n).is_dir())
            .filter(|n| !self.root.join(n).symlink_metadata().map(|m| m.file_type().is_symlink()).unwrap_or(true))
            .collect()
    }

    /// Versions of module `m` present in the tree.
    pub fn versions(&self, m: &str) -> Vec<String> {
        sorted_names(&self.module_dir(m))
            .into_iter()
            .filter(|v| v != "original_module" && !v.starts_with("kernel-") && !v.starts_with('.'))
            .filter(|v| {
                let p = self.version_dir(m, v);
                p.is_dir() && !p.symlink_metadata().map(|x| x.file_type().is_symlink()).unwrap_or(true)
            })
            .collect()
    }

    /// Every (module, version) pair in the tree, in glob order.
    pub fn registered(&self) -> Vec<(String, String)> {
        self.modules().into_iter().flat_map(|m| self.versions(&m).into_iter().map(move |v| (m.clone(), v))).collect()
    }

    /// (kernel, arch) pairs for which m/v is built (`module/` exists).
    pub fn built(&self, m: &str, v: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for k in sorted_names(&self.version_dir(m, v)) {
            if NOT_KERNELS.contains(&k.as_str()) || k.starts_with('.') {
                continue;
            }
            for a in sorted_names(&self.version_dir(m, v).join(&k)) {
                if !a.starts_with('.') && self.built_modules_dir(m, v, &k, &a).is_dir() {
                    out.push((k.clone(), a));
                }
            }
        }
        out
    }

    /// (kernel, arch) pairs with a recorded failed build of m/v.
    pub fn failed(&self, m: &str, v: &str) -> Vec<(String, String)> {
        let base = self.version_dir(m, v).join("failed");
        sorted_names(&base)
            .into_iter()
            .flat_map(|k| sorted_names(&base.join(&k)).into_iter().map(move |a| (k.clone(), a)))
            .collect()
    }

    /// The version of `m` active (installed) for k/a, from the `kernel-k-a` link.
    pub fn active_version(&self, m: &str, k: &str, a: &str) -> Option<String> {
        let target = std::fs::read_link(self.active_link(m, k, a)).ok()?;
        parse_active_target(&target.to_string_lossy(), &self.module_dir(m).to_string_lossy(), k, a)
    }

    /// The module files (`*.ko*`) built for k/a, sorted.
    pub fn built_files(&self, m: &str, v: &str, k: &str, a: &str) -> Vec<String> {
        sorted_names(&self.built_modules_dir(m, v, k, a)).into_iter().filter(|f| f.contains(".ko")).collect()
    }

    pub fn is_built(&self, m: &str, v: &str, k: &str, a: &str) -> bool {
        self.built_modules_dir(m, v, k, a).is_dir()
    }

    pub fn is_installed(&self, m: &str, v: &str, k: &str, a: &str) -> bool {
        self.is_built(m, v, k, a) && self.active_version(m, k, a).as_deref() == Some(v)
    }

    pub fn read_info(&self, m: &str, v: &str, k: &str, a: &str) -> Option<BuiltInfo> {
        let text = std::fs::read_to_string(self.info_path(m, v, k, a)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Points `kernel-k-a` at `v/k/a`, replacing any link atomically.
    pub fn set_active(&self, m: &str, v: &str, k: &str, a: &str) -> Result<()> {
        let link = self.active_link(m, k, a);
        let tmp = self.module_dir(m).join(format!(".kernel-{k}-{a}.modsync-new"));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(format!("{v}/{k}/{a}"), &tmp)
            .with_context(|| format!("creating symlink {}", tmp.display()))?;
        std::fs::rename(&tmp, &link).with_context(|| format!("renaming {} to {}", tmp.display(), link.display()))
    }
}

/// The version a `kernel-k-a` link target names: `v/k/a` relative to the
/// module directory (dkms writes it so) or absolute under it. Pure.
pub fn parse_active_target(target: &str, module_dir: &str, k: &str, a: &str) -> Option<String> {
    let rel = target.strip_prefix(&format!("{}/", module_dir.trim_end_matches('/'))).unwrap_or(target);
    let mut parts = rel.trim_start_matches("./").split('/');
    let v = parts.next().filter(|v| !v.is_empty() && *v != "..")?.to_string();
    (parts.next() == Some(k) && parts.next() == Some(a) && parts.next().is_none()).then_some(v)
}

/// Writes `data` to `path` through a temporary file in the same directory and
/// a rename, so readers see the old or the new file, never a partial one.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().context("path has no parent")?;
    let name = path.file_name().context("path has no file name")?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.modsync-new"));
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let res = f.write_all(data).and_then(|_| f.sync_all());
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", tmp.display()));
    }
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// True for names of our own temporary files (swept after a crash).
pub fn is_temp_name(name: &str) -> bool {
    name.ends_with(".modsync-new") || name.starts_with(".tmp_")
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
        fs::create_dir_all(t.built_modules_dir("foo", "1.0", "6.1.0-1-amd64", "x86_64")).unwrap();
        fs::create_dir_all(t.built_modules_dir("foo", "1.0", "6.1.0-2-amd64", "x86_64")).unwrap();
        fs::create_dir_all(t.failed_dir("foo", "1.0", "6.1.0-3-amd64", "x86_64")).unwrap();
        t.set_active("foo", "1.0", "6.1.0-1-amd64", "x86_64").unwrap();
        assert_eq!(t.registered(), vec![("foo".to_string(), "1.0".to_string())]);
        assert_eq!(t.source_state("foo", "1.0"), SourceState::Added(fs::canonicalize(&src).unwrap()));
        assert_eq!(t.built("foo", "1.0").len(), 2);
        assert_eq!(t.failed("foo", "1.0"), vec![("6.1.0-3-amd64".to_string(), "x86_64".to_string())]);
        assert!(t.is_installed("foo", "1.0", "6.1.0-1-amd64", "x86_64"));
        assert!(!t.is_installed("foo", "1.0", "6.1.0-2-amd64", "x86_64"));
        assert_eq!(fs::read_link(t.active_link("foo", "6.1.0-1-amd64", "x86_64")).unwrap(), PathBuf::from("1.0/6.1.0-1-amd64/x86_64"));
        fs::remove_dir_all(&src).unwrap();
        assert_eq!(t.source_state("foo", "1.0"), SourceState::Broken);
    }

    #[test]
    fn active_link_targets() {
        assert_eq!(parse_active_target("1.0/6.1/x86_64", "/var/lib/dkms/foo", "6.1", "x86_64").as_deref(), Some("1.0"));
        assert_eq!(parse_active_target("/var/lib/dkms/foo/2.0/6.1/x86_64", "/var/lib/dkms/foo", "6.1", "x86_64").as_deref(), Some("2.0"));
        assert_eq!(parse_active_target("1.0/6.2/x86_64", "/d/foo", "6.1", "x86_64"), None);
        assert_eq!(parse_active_target("../x/6.1/x86_64", "/d/foo", "6.1", "x86_64"), None);
        assert_eq!(parse_active_target("1.0/6.1/x86_64/extra", "/d/foo", "6.1", "x86_64"), None);
        assert_eq!(parse_active_target("", "/d/foo", "6.1", "x86_64"), None);
    }

    #[test]
    fn write_atomic_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
