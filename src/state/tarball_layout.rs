//! The layout of a dkms tarball, as `dkms mktarball` writes it and
//! `dkms ldtarball` reads it:
//!
//! ```text
//! ./dkms_main_tree/<K>/<A>/{module/,log/}     one per kernel (none with --source-only)
//! ./dkms_source_tree/...                      the source, with its dkms.conf
//! ./dkms_binaries_only/{PACKAGE_NAME,PACKAGE_VERSION,dkms.conf}   instead, with --binaries-only
//! ```
//!
//! and its file name, `m-v-kernel<K>-<A>[-kernel<K>-<A>...].dkms.tar.gz`
//! (`m-v-source-only...`, `m-v-manykernels...` when the list is too long),
//! written to `$dkms_tree/m/v/tarball/` unless `--archive` names it. Also
//! what a loaded tarball holds, read from its extracted directory names
//! (kernel and arch names are checked before they become paths). Pure.

use crate::sys::names::{self, Kind};
use std::path::{Path, PathBuf};

/// The per-kernel builds.
pub const MAIN_TREE: &str = "dkms_main_tree";
/// The source.
pub const SOURCE_TREE: &str = "dkms_source_tree";
/// The stand-in for the source with `--binaries-only`.
pub const BINARIES_ONLY: &str = "dkms_binaries_only";

/// dkms's limit on the kernel part of the name (`wc -m` of it, newline included).
const LONGEST_KERNEL_LIST: usize = 200;

/// What goes into a tarball besides the builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Source and builds.
    Both,
    /// `--source-only`: no builds.
    SourceOnly,
    /// `--binaries-only`: builds, and the dkms.conf without the source.
    BinariesOnly,
}

/// The default file name of the tarball of m/v with the builds for `kernels`.
pub fn archive_name(m: &str, v: &str, kernels: &[(String, String)], content: Content) -> String {
    let list = if content == Content::SourceOnly {
        "source-only".to_string()
    } else {
        kernels
            .iter()
            .map(|(k, a)| format!("kernel{k}-{a}"))
            .collect::<Vec<_>>()
            .join("-")
    };
    let list = if list.chars().count() + 1 > LONGEST_KERNEL_LIST {
        "manykernels".to_string()
    } else {
        list
    };
    format!("{m}-{v}-{list}.dkms.tar.gz")
}

/// Where the tarball goes: `--archive` as a name (in the default directory)
/// or as a path, else the default name in `$dkms_tree/m/v/tarball`.
pub fn destination(version_dir: &Path, default_name: &str, archive: Option<&Path>) -> PathBuf {
    let default_dir = version_dir.join("tarball");
    match archive {
        None => default_dir.join(default_name),
        Some(a) if a.parent().is_some_and(|p| !p.as_os_str().is_empty()) => a.to_path_buf(),
        Some(a) => default_dir.join(a),
    }
}

/// How a tarball is compressed, from the name it is written to (as `tar -a`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Xz,
    Zstd,
    None,
}

pub fn compression_for(name: &str) -> Compression {
    let ends = |sfx: &[&str]| sfx.iter().any(|s| name.ends_with(s));
    if ends(&[".gz", ".tgz", ".taz"]) {
        Compression::Gzip
    } else if ends(&[".xz", ".txz"]) {
        Compression::Xz
    } else if ends(&[".zst", ".tzst"]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// What the extracted tarball's top holds (names of directories and files).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Top {
    pub main_tree: bool,
    pub source_conf: bool,
    pub binaries_conf: bool,
}

/// Where the dkms.conf that names the module is, as dkms picks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Made by mktarball, with the source.
    Source,
    /// Made by mktarball with --binaries-only.
    BinariesOnly,
    /// Any other tarball: the source is wherever its dkms.conf is.
    Plain,
}

/// Which part of a tarball names the module, or why none does (dkms's
/// exit 7 for a mktarball layout without a dkms.conf).
pub fn layout(top: &Top) -> Result<Layout, &'static str> {
    match (top.main_tree, top.source_conf, top.binaries_conf) {
        (false, _, _) => Ok(Layout::Plain),
        (true, true, _) => Ok(Layout::Source),
        (true, false, true) => Ok(Layout::BinariesOnly),
        (true, false, false) => Err("no dkms.conf in dkms_source_tree nor in dkms_binaries_only"),
    }
}

/// The (kernel, arch) builds a tarball carries, from the directory names
/// two levels under `dkms_main_tree`; every name must be a valid kernel
/// release and architecture.
pub fn builds(dirs: &[(String, String)]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (k, a) in dirs {
        if let Some(p) = names::problem(Kind::Kernel, k).or_else(|| names::problem(Kind::Arch, a)) {
            return Err(format!("{MAIN_TREE}/{k}/{a}: {p}"));
        }
        out.push((k.clone(), a.clone()));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ks(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, a)| (k.to_string(), a.to_string())).collect()
    }

    #[test]
    fn names_are_dkms_names() {
        let two = ks(&[("6.1.0-54-amd64", "x86_64"), ("6.1.0-56-amd64", "x86_64")]);
        assert_eq!(
            archive_name("hello", "1.0", &two, Content::Both),
            "hello-1.0-kernel6.1.0-54-amd64-x86_64-kernel6.1.0-56-amd64-x86_64.dkms.tar.gz"
        );
        assert_eq!(
            archive_name("hello", "1.0", &two, Content::SourceOnly),
            "hello-1.0-source-only.dkms.tar.gz"
        );
        assert_eq!(
            archive_name("hello", "1.0", &two[..1], Content::BinariesOnly),
            "hello-1.0-kernel6.1.0-54-amd64-x86_64.dkms.tar.gz"
        );
        // 199 characters plus the newline is dkms's last name that is kept
        let long = |n: usize| ks(&[(&"9".repeat(n), "x86_64")]);
        let kept = archive_name("m", "1", &long(199 - "kernel-x86_64".len()), Content::Both);
        assert!(kept.contains("kernel9"), "{kept}");
        assert_eq!(
            archive_name("m", "1", &long(200 - "kernel-x86_64".len()), Content::Both),
            "m-1-manykernels.dkms.tar.gz"
        );
    }

    #[test]
    fn archive_option_is_a_name_or_a_path() {
        let vd = Path::new("/var/lib/dkms/m/1");
        assert_eq!(
            destination(vd, "d.tgz", None),
            Path::new("/var/lib/dkms/m/1/tarball/d.tgz")
        );
        assert_eq!(
            destination(vd, "d.tgz", Some(Path::new("x.tar.gz"))),
            Path::new("/var/lib/dkms/m/1/tarball/x.tar.gz")
        );
        assert_eq!(
            destination(vd, "d.tgz", Some(Path::new("/tmp/x.tar"))),
            Path::new("/tmp/x.tar")
        );
        assert_eq!(
            destination(vd, "d.tgz", Some(Path::new("out/x.tar"))),
            Path::new("out/x.tar")
        );
    }

    #[test]
    fn compression_follows_the_suffix() {
        assert_eq!(compression_for("a.dkms.tar.gz"), Compression::Gzip);
        assert_eq!(compression_for("a.tgz"), Compression::Gzip);
        assert_eq!(compression_for("a.tar.xz"), Compression::Xz);
        assert_eq!(compression_for("a.tar.zst"), Compression::Zstd);
        assert_eq!(compression_for("a.tar"), Compression::None);
    }

    #[test]
    fn the_part_that_names_the_module_is_dkms_choice() {
        let top = |main_tree, source_conf, binaries_conf| Top {
            main_tree,
            source_conf,
            binaries_conf,
        };
        assert_eq!(layout(&top(true, true, true)), Ok(Layout::Source));
        assert_eq!(layout(&top(true, false, true)), Ok(Layout::BinariesOnly));
        assert_eq!(layout(&top(false, false, false)), Ok(Layout::Plain));
        assert!(layout(&top(true, false, false)).is_err());
    }

    #[test]
    fn build_directories_must_be_kernel_and_arch_names() {
        assert_eq!(
            builds(&ks(&[("6.1.0-56-amd64", "x86_64"), ("6.1.0-54-amd64", "x86_64")])).unwrap()[0].0,
            "6.1.0-54-amd64"
        );
        for (k, a) in [
            ("..", "x86_64"),
            ("6.1;reboot", "x86_64"),
            ("6.1", "x86/64"),
            ("-rf", "x"),
        ] {
            let e = builds(&ks(&[(k, a)])).unwrap_err();
            assert!(e.starts_with(MAIN_TREE), "{e}");
        }
    }
}
