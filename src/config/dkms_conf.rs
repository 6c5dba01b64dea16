//! Reading a module's dkms.conf for one kernel, as dkms 3.x reads it: the
//! file, then the `/etc/dkms/<module>...conf` overrides, each sourced by
//! bash ([`super::shell`]) with dkms's variables set, then `--directive`
//! values. The result is the raw arrays; [`super::directives`] turns them
//! into a value the rest of the engine uses.

use super::shell;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// The variables dkms copies back from a sourced dkms.conf.
pub const WHITELIST: &[&str] = &[
    "PACKAGE_NAME",
    "PACKAGE_VERSION",
    "POST_ADD",
    "POST_BUILD",
    "POST_INSTALL",
    "POST_REMOVE",
    "PRE_BUILD",
    "PRE_INSTALL",
    "BUILD_DEPENDS",
    "BUILD_EXCLUSIVE_ARCH",
    "BUILD_EXCLUSIVE_CONFIG",
    "BUILD_EXCLUSIVE_KERNEL",
    "BUILD_EXCLUSIVE_KERNEL_MIN",
    "BUILD_EXCLUSIVE_KERNEL_MAX",
    "build_exclude",
    "MAKE",
    "MAKE_MATCH",
    "PATCH",
    "PATCH_MATCH",
    "patch_array",
    "BUILT_MODULE_NAME",
    "built_module_name",
    "BUILT_MODULE_LOCATION",
    "built_module_location",
    "DEST_MODULE_NAME",
    "dest_module_name",
    "DEST_MODULE_LOCATION",
    "dest_module_location",
    "STRIP",
    "strip",
    "AUTOINSTALL",
    "NO_WEAK_MODULES",
    "BUILD_DEPENDS_REBUILD",
    "OBSOLETE_BY",
    "CLEAN",
    "REMAKE_INITRD",
    "MODULES_CONF",
    "MODULES_CONF_OBSOLETES",
    "MODULES_CONF_ALIAS_TYPE",
    "MODULES_CONF_OBSOLETE_ONLY",
];

/// What a dkms.conf is read for: the module it belongs to and the kernel.
#[derive(Debug, Clone, Default)]
pub struct ReadFor {
    pub module: String,
    pub module_version: String,
    pub kernelver: String,
    pub arch: String,
    pub kernel_source_dir: String,
    pub kernel_config: String,
    pub dkms_tree: String,
    pub source_tree: String,
    pub install_tree: String,
    /// "" for unlimited, as dkms passes it.
    pub parallel_jobs: String,
    pub running_distribution: String,
    pub tmp_location: String,
}

impl ReadFor {
    /// The variables dkms makes visible to dkms.conf (and to its scripts).
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("kernelver", self.kernelver.clone()),
            ("arch", self.arch.clone()),
            ("kernel_source_dir", self.kernel_source_dir.clone()),
            ("kernel_config", self.kernel_config.clone()),
            ("dkms_tree", self.dkms_tree.clone()),
            ("source_tree", self.source_tree.clone()),
            ("install_tree", self.install_tree.clone()),
            ("module", self.module.clone()),
            ("module_version", self.module_version.clone()),
            ("parallel_jobs", self.parallel_jobs.clone()),
            ("running_distribution", self.running_distribution.clone()),
            ("tmp_location", self.tmp_location.clone()),
        ]
    }
}

/// The files read, in order: `conf`, then the overrides in `etc_dkms`
/// (`m.conf`, `m-v.conf`, `m-v-K.conf`, `m-v-K-A.conf`, `m--K.conf`, `m--K-A.conf`).
pub fn files(conf: &Path, etc_dkms: &Path, r: &ReadFor) -> Vec<PathBuf> {
    let (m, v, k, a) = (&r.module, &r.module_version, &r.kernelver, &r.arch);
    let mut files = vec![conf.to_path_buf()];
    if !m.is_empty() {
        for name in [
            format!("{m}.conf"),
            format!("{m}-{v}.conf"),
            format!("{m}-{v}-{k}.conf"),
            format!("{m}-{v}-{k}-{a}.conf"),
            format!("{m}--{k}.conf"),
            format!("{m}--{k}-{a}.conf"),
        ] {
            files.push(etc_dkms.join(name));
        }
    }
    files
}

/// Reads the dkms.conf at `conf` (and its overrides) for `r`.
pub fn read(conf: &Path, etc_dkms: &Path, r: &ReadFor, directives: &[String]) -> Result<shell::Sourced> {
    let vars = r.vars();
    let vars: Vec<(&str, String)> = vars.iter().map(|(k, v)| (*k, v.clone())).collect();
    shell::source(&files(conf, etc_dkms, r), WHITELIST, &vars, directives)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_read_in_dkms_order() {
        let d = tempfile::tempdir().unwrap();
        let etc = d.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        let conf = d.path().join("dkms.conf");
        std::fs::write(
            &conf,
            "PACKAGE_NAME=foo\nPACKAGE_VERSION=1.0\nAUTOINSTALL=no\nMAKE[0]=\"make K=$kernelver\"\n",
        )
        .unwrap();
        std::fs::write(etc.join("foo.conf"), "AUTOINSTALL=yes\n").unwrap();
        std::fs::write(etc.join("foo--6.1-x86_64.conf"), "STRIP[0]=no\n").unwrap();
        let r = ReadFor {
            module: "foo".into(),
            module_version: "1.0".into(),
            kernelver: "6.1".into(),
            arch: "x86_64".into(),
            ..Default::default()
        };
        let s = read(&conf, &etc, &r, &[]).unwrap();
        assert_eq!(s.raw.scalar("AUTOINSTALL"), Some("yes"));
        assert_eq!(s.raw.scalar("STRIP"), Some("no"));
        assert_eq!(s.raw.scalar("MAKE"), Some("make K=6.1"));
        assert_eq!(files(&conf, &etc, &r).len(), 7);
    }
}
