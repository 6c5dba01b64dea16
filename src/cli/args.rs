//! dkms's meaning of the command line: a positional argument is a source
//! directory, a dkms.conf (or modsync.toml), a tarball or MODULE/VERSION; `-k KERNEL/ARCH`
//! and `-a ARCH` pair up as dkms pairs them (one arch applies to every
//! kernel, more must match the kernels one to one); the running kernel is
//! the default; names that become paths are checked here, once.

use super::Common;
use crate::config::manifest::{config_in, FILE_NAME as MANIFEST};
use crate::error::{code, fail};
use crate::ops::Target;
use crate::sys::names::{self, Kind};
use anyhow::Result;
use std::path::{Path, PathBuf};

/// dkms's action words (a second one on the line is an error).
pub const ACTIONS: &[&str] = &[
    "add",
    "build",
    "install",
    "uninstall",
    "unbuild",
    "remove",
    "status",
    "autoinstall",
    "match",
    "mktarball",
    "ldtarball",
    "generate_mok",
    "kernel_preinst",
    "kernel_postinst",
    "kernel_prerm",
];

/// `m/v` split on the first `/` (dkms's `parse_moduleversion`).
pub fn split_module(s: &str) -> (String, Option<String>) {
    match s.split_once('/') {
        Some((m, v)) => (m.to_string(), Some(v.to_string())),
        None => (s.to_string(), None),
    }
}

/// What the positional arguments and -m/-v name, and warnings for the rest.
pub fn target(c: &Common, positionals: &[String]) -> Result<(Target, Option<PathBuf>, Vec<String>)> {
    let mut t = Target::default();
    let mut archive = c.archive.clone();
    let mut warnings = Vec::new();
    if let Some(m) = &c.module {
        let (m, v) = split_module(m);
        t.module = Some(m);
        t.version = v;
    }
    for p in positionals {
        let path = Path::new(p);
        if ACTIONS.contains(&p.as_str()) {
            return Err(fail(
                code::BROKEN,
                format!("only one action at a time: `{p}` is a second one"),
            ));
        } else if path.is_file() && (p.ends_with("dkms.conf") || p.ends_with(MANIFEST)) {
            t.source_dir = Some(
                path.parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_path_buf(),
            );
        } else if path.is_dir() && config_in(path).is_file() {
            t.source_dir = Some(path.to_path_buf());
        } else if path.is_file() {
            archive = Some(path.to_path_buf());
        } else if t.module.is_none() {
            let (m, v) = split_module(p);
            t.module = Some(m);
            t.version = v;
        } else {
            warnings.push(format!(
                "`{p}` is neither a source directory, a dkms.conf, a tarball nor MODULE/VERSION; ignored"
            ));
        }
    }
    if let Some(v) = &c.module_version {
        t.version = Some(v.clone());
    }
    t.all = c.all;
    Ok((t, archive, warnings))
}

/// The (kernel, arch) pairs, as dkms's `setup_kernels_arches` makes them.
/// `defaults`: fill in the running kernel and the machine's arch (every
/// action but status and the kernel_* ones, which need -k).
pub fn kernels(c: &Common, defaults: bool) -> Result<Vec<(String, String)>> {
    let mut ks = Vec::new();
    let mut arches = Vec::new();
    for k in &c.kernels {
        match k.split_once('/') {
            Some((r, a)) => {
                ks.push(r.to_string());
                arches.push(a.to_string());
            }
            None => ks.push(k.clone()),
        }
    }
    arches.extend(c.arches.iter().cloned());
    if arches.len() > 1 && arches.len() != ks.len() {
        return Err(fail(
            code::GENERIC,
            "give one arch for every kernel (-k KERNEL/ARCH), or one arch for all of them",
        ));
    }
    if !ks.is_empty() && c.all {
        return Err(fail(code::USAGE, "-k and --all cannot be used together"));
    }
    if !arches.is_empty() && c.all {
        return Err(fail(code::NOT_IN_TREE, "-a and --all cannot be used together"));
    }
    if defaults {
        if ks.is_empty() && !c.all {
            ks.push(crate::kernel::running_release());
        }
        if arches.is_empty() {
            arches.push(crate::kernel::machine_arch());
        }
    }
    for k in &ks {
        if let Some(p) = names::problem(Kind::Kernel, k) {
            return Err(fail(
                code::BAD_KERNEL,
                format!(
                    "{p} (-k takes a kernel release such as {})",
                    crate::kernel::running_release()
                ),
            ));
        }
    }
    for a in &arches {
        if let Some(p) = names::problem(Kind::Arch, a) {
            return Err(fail(code::BAD_KERNEL, p));
        }
    }
    let arch_for = |i: usize| {
        if arches.len() == 1 {
            arches[0].clone()
        } else {
            arches.get(i).cloned().unwrap_or_default()
        }
    };
    Ok(ks.iter().enumerate().map(|(i, k)| (k.clone(), arch_for(i))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common(ks: &[&str], arches: &[&str], all: bool) -> Common {
        Common {
            kernels: ks.iter().map(|s| s.to_string()).collect(),
            arches: arches.iter().map(|s| s.to_string()).collect(),
            all,
            ..Default::default()
        }
    }

    #[test]
    fn kernels_and_arches_pair_up_as_in_dkms() {
        let k = |ks: &[&str], a: &[&str], all: bool| {
            kernels(&common(ks, a, all), true).map_err(|e| crate::error::exit_code(&e))
        };
        assert_eq!(
            k(&["6.1", "6.2/aarch64"], &[], false).unwrap(),
            vec![("6.1".into(), "aarch64".into()), ("6.2".into(), "aarch64".into())]
        );
        assert_eq!(
            k(&["6.1", "6.2"], &["x", "y"], false).unwrap()[1],
            ("6.2".into(), "y".into())
        );
        assert_eq!(k(&["6.1", "6.2", "6.3"], &["x", "y"], false), Err(1));
        assert_eq!(k(&["6.1"], &[], true), Err(2));
        assert_eq!(k(&[], &["x"], true), Err(3));
        assert_eq!(k(&[""], &[], false), Err(16));
        assert_eq!(k(&["../../etc"], &[], false), Err(16));
        assert!(k(&[], &[], true).unwrap().is_empty());
        assert_eq!(k(&[], &[], false).unwrap().len(), 1, "the running kernel by default");
        assert!(kernels(&common(&[], &[], false), false).unwrap().is_empty());
    }

    #[test]
    fn positionals_are_classified_as_in_dkms() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("dkms.conf"), "").unwrap();
        std::fs::write(d.path().join("x.tar.gz"), "").unwrap();
        let c = Common::default();
        let arg = |s: &str| target(&c, &[s.to_string()]).unwrap().0;
        assert_eq!(arg(d.path().to_str().unwrap()).source_dir.as_deref(), Some(d.path()));
        assert_eq!(
            arg(d.path().join("dkms.conf").to_str().unwrap()).source_dir.as_deref(),
            Some(d.path())
        );
        let t = arg("foo/1.0");
        assert_eq!((t.module.as_deref(), t.version.as_deref()), (Some("foo"), Some("1.0")));
        let m = tempfile::tempdir().unwrap();
        std::fs::write(m.path().join(MANIFEST), "").unwrap();
        assert_eq!(arg(m.path().to_str().unwrap()).source_dir.as_deref(), Some(m.path()));
        assert_eq!(
            arg(m.path().join(MANIFEST).to_str().unwrap()).source_dir.as_deref(),
            Some(m.path()),
            "a manifest-only source directory"
        );
        let t = arg("/no/such/dir");
        assert_eq!(
            (t.module.as_deref(), t.version.as_deref()),
            (Some(""), Some("no/such/dir")),
            "dkms splits on the first /"
        );
        assert_eq!(
            target(&c, &[d.path().join("x.tar.gz").display().to_string()])
                .unwrap()
                .1
                .as_deref(),
            Some(d.path().join("x.tar.gz").as_path())
        );
        assert!(target(&c, &["build".to_string()]).is_err());
        let c = Common {
            module: Some("foo".into()),
            module_version: Some("2".into()),
            ..Default::default()
        };
        let (t, _, w) = target(&c, &["bar/1".to_string()]).unwrap();
        assert_eq!(
            (t.module.as_deref(), t.version.as_deref(), w.len()),
            (Some("foo"), Some("2"), 1)
        );
    }
}
