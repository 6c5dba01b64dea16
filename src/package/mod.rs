//! Native packages of built modules (`modsync mkdeb|mkrpm|mkpkg`): the plan
//! of each package, pure and format-neutral ([`Package`]: name, version,
//! architecture, dependencies, directories, files with their source and
//! mode, scripts), from what a build made; then one writer per format
//! ([`deb`], [`rpm`], [`pacman`]) that turns a plan into a file with
//! crates only, so any build host can write any format.
//!
//! Per kernel K a package holding the built `.ko` files at the install
//! step's location under the kernel's module tree, a marker
//! ([`crate::state::packaged`]) and the scripts ([`scripts`]); plus one
//! meta package that depends on the newest kernel's package, its version
//! carrying that kernel so a newer kernel's meta package is an upgrade.
//!
//! deb and rpm install several kernels side by side, so their per-kernel
//! packages are named for K (`hello-modules-K`, `kmod-hello-K`). An Arch
//! kernel package holds one kernel at a time and its upgrade replaces it, so
//! pacman's is named for the kernel's package (`hello-modules-linux`) and
//! its version carries K: the module package is upgraded with the kernel.

pub mod archive;
pub mod deb;
pub mod names;
pub mod pacman;
pub mod rpm;
pub mod scripts;

use crate::state::packaged::Marker;
use std::path::PathBuf;

/// The package formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Deb,
    Rpm,
    Pacman,
}

impl Format {
    /// The verb that writes it.
    pub fn verb(self) -> &'static str {
        match self {
            Format::Deb => "mkdeb",
            Format::Rpm => "mkrpm",
            Format::Pacman => "mkpkg",
        }
    }

    /// The default output directory's name under `$dkms_tree/m/v/`.
    pub fn subdir(self) -> &'static str {
        match self {
            Format::Deb => "deb",
            Format::Rpm => "rpm",
            Format::Pacman => "pkg",
        }
    }
}

/// A dependency on a package, of exactly this version when one is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    pub name: String,
    pub version: Option<String>,
}

impl Dep {
    /// `NAME[=VERSION]` (as `--kernel-package` takes it; checked before).
    pub fn parse(s: &str) -> Dep {
        match s.split_once('=') {
            Some((n, v)) => Dep {
                name: n.to_string(),
                version: Some(v.to_string()),
            },
            None => Dep {
                name: s.to_string(),
                version: None,
            },
        }
    }
}

/// Where a file's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    File(PathBuf),
    Bytes(Vec<u8>),
}

/// A regular file of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Absolute path on the target.
    pub dest: String,
    pub content: Content,
    pub mode: u32,
}

/// A package to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    /// The version in the format's charset (deb: the whole version).
    pub version: String,
    /// rpm's release and pacman's pkgrel (empty for deb).
    pub release: String,
    pub arch: String,
    pub summary: String,
    pub description: String,
    pub depends: Vec<Dep>,
    /// Directories the package owns (absolute), parents first.
    pub dirs: Vec<String>,
    pub files: Vec<Entry>,
    pub scripts: Option<scripts::Scripts>,
}

impl Package {
    /// The version as dependencies name it (`version[-release]`).
    pub fn full_version(&self) -> String {
        if self.release.is_empty() {
            self.version.clone()
        } else {
            format!("{}-{}", self.version, self.release)
        }
    }
}

/// One module file of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltFile {
    /// DEST_MODULE_NAME.
    pub name: String,
    /// The file in the build's `module/` directory.
    pub source: PathBuf,
    /// Where the install step puts it under the kernel's tree (`/updates/dkms`).
    pub location: String,
}

/// A module version built for one kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub module: String,
    pub version: String,
    pub kernel: String,
    /// The machine architecture (`uname -m` form).
    pub arch: String,
    pub files: Vec<BuiltFile>,
}

/// The per-kernel package's name: for kernel K (deb, rpm), for the
/// kernel's package `kernel_dep` (pacman).
pub fn kernel_package_name(f: Format, module: &str, kernel: &str, kernel_dep: &Dep) -> String {
    names::name(
        f,
        &match f {
            Format::Rpm => format!("kmod-{module}-{kernel}"),
            Format::Deb => format!("{module}-modules-{kernel}"),
            Format::Pacman => format!("{module}-modules-{}", kernel_dep.name),
        },
    )
}

/// A per-kernel package's version: the module's (deb, rpm), the module's
/// then the kernel's for pacman, whose package follows its kernel's upgrades.
fn kernel_package_version(f: Format, module_version: &str, kernel: &str) -> String {
    match f {
        Format::Deb | Format::Rpm => names::version(f, module_version),
        Format::Pacman => format!(
            "{}+{}",
            names::version(f, module_version),
            names::kernel_component(f, kernel)
        ),
    }
}

/// The meta package's name.
pub fn meta_package_name(f: Format, module: &str) -> String {
    names::name(
        f,
        &match f {
            Format::Rpm => format!("kmod-{module}"),
            Format::Deb | Format::Pacman => format!("{module}-modules"),
        },
    )
}

/// The dependency on the kernel when `--kernel-package` does not say (deb
/// and rpm; pacman's comes from the kernel's pkgbase and the local database).
pub fn default_kernel_dep(f: Format, kernel: &str) -> Option<Dep> {
    match f {
        Format::Deb => Some(Dep {
            name: format!("linux-image-{kernel}"),
            version: None,
        }),
        Format::Rpm => Some(Dep {
            name: "kernel-uname-r".into(),
            version: Some(kernel.to_string()),
        }),
        Format::Pacman => None,
    }
}

/// Every directory from below `top` down to `dir` (both absolute).
fn dirs_below(top: &str, dir: &str) -> Vec<String> {
    let rest = dir.strip_prefix(top).unwrap_or("").trim_matches('/');
    let mut out = Vec::new();
    let mut cur = top.trim_end_matches('/').to_string();
    for c in rest.split('/').filter(|c| !c.is_empty()) {
        cur = format!("{cur}/{c}");
        out.push(cur.clone());
    }
    out
}

/// The package of one build: the files under `modules_root/K/<location>`,
/// the marker, the scripts; depending on the kernel's package.
pub fn kernel_package(f: Format, b: &Built, kernel_dep: Dep, modules_root: &str) -> Package {
    let name = kernel_package_name(f, &b.module, &b.kernel, &kernel_dep);
    let kdir = format!("{}/{}", modules_root.trim_end_matches('/'), b.kernel);
    let mut dirs: Vec<String> = Vec::new();
    let mut files = Vec::new();
    for bf in &b.files {
        let dir = format!("{kdir}{}", bf.location.trim_end_matches('/'));
        for d in dirs_below(&kdir, &dir) {
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        let file = bf
            .source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        files.push(Entry {
            dest: format!("{dir}/{file}"),
            content: Content::File(bf.source.clone()),
            mode: 0o644,
        });
    }
    let marker = Marker {
        module: b.module.clone(),
        version: b.version.clone(),
        kernel: b.kernel.clone(),
        arch: b.arch.clone(),
        package: name.clone(),
        files: files.iter().map(|e| e.dest.clone()).collect(),
    };
    let marker_path = Marker::path(&b.module, &b.kernel);
    for d in dirs_below("/usr/lib", marker_path.rsplit_once('/').map_or("", |(d, _)| d)) {
        dirs.push(d);
    }
    files.push(Entry {
        dest: marker_path,
        content: Content::Bytes(marker.to_toml().into_bytes()),
        mode: 0o644,
    });
    let scripts = scripts::scripts(&scripts::ScriptFacts {
        module: b.module.clone(),
        kernel: b.kernel.clone(),
        modules_root: modules_root.to_string(),
        names: b.files.iter().map(|x| x.name.clone()).collect(),
        package: name.clone(),
    });
    Package {
        version: kernel_package_version(f, &b.version, &b.kernel),
        release: if f == Format::Deb { String::new() } else { "1".into() },
        arch: names::arch(f, &b.arch),
        summary: format!("{} {} kernel modules for Linux {}", b.module, b.version, b.kernel),
        description: format!(
            "The {} module(s) of {} {}, built and signed by modsync for kernel {}.",
            b.files.iter().map(|x| x.name.as_str()).collect::<Vec<_>>().join(", "),
            b.module,
            b.version,
            b.kernel
        ),
        depends: vec![kernel_dep],
        dirs,
        files,
        scripts: Some(scripts),
        name,
    }
}

/// The meta package: depends on `newest`'s package (the package of the
/// newest kernel), its version carrying that kernel.
pub fn meta_package(f: Format, module: &str, module_version: &str, newest_kernel: &str, newest: &Package) -> Package {
    let kc = names::kernel_component(f, newest_kernel);
    let (version, release) = match f {
        Format::Deb => (format!("{}+{kc}", names::version(f, module_version)), String::new()),
        Format::Rpm => (names::version(f, module_version), kc),
        Format::Pacman => (format!("{}+{kc}", names::version(f, module_version)), "1".into()),
    };
    Package {
        name: meta_package_name(f, module),
        version,
        release,
        arch: newest.arch.clone(),
        summary: format!("{module} {module_version} kernel modules for the newest kernel"),
        description: format!(
            "Depends on the {module} modules built for kernel {newest_kernel}, so that upgrading this package follows new kernels."
        ),
        depends: vec![Dep {
            name: newest.name.clone(),
            version: Some(newest.full_version()),
        }],
        dirs: Vec::new(),
        files: Vec::new(),
        scripts: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(k: &str) -> Built {
        Built {
            module: "hello".into(),
            version: "1.0".into(),
            kernel: k.into(),
            arch: "x86_64".into(),
            files: vec![BuiltFile {
                name: "hello".into(),
                source: PathBuf::from(format!("/var/lib/dkms/hello/1.0/{k}/x86_64/module/hello.ko.xz")),
                location: "/updates/dkms".into(),
            }],
        }
    }

    #[test]
    fn a_kernel_package_holds_the_modules_and_the_marker() {
        let k = "6.1.0-56-amd64";
        let p = kernel_package(
            Format::Deb,
            &built(k),
            default_kernel_dep(Format::Deb, k).unwrap(),
            "/lib/modules",
        );
        assert_eq!(p.name, "hello-modules-6.1.0-56-amd64");
        assert_eq!((p.version.as_str(), p.arch.as_str()), ("1.0", "amd64"));
        assert_eq!(
            p.files.iter().map(|e| e.dest.as_str()).collect::<Vec<_>>(),
            [
                "/lib/modules/6.1.0-56-amd64/updates/dkms/hello.ko.xz",
                "/usr/lib/modsync/packaged/hello/6.1.0-56-amd64"
            ]
        );
        assert_eq!(
            p.dirs,
            [
                "/lib/modules/6.1.0-56-amd64/updates",
                "/lib/modules/6.1.0-56-amd64/updates/dkms",
                "/usr/lib/modsync",
                "/usr/lib/modsync/packaged",
                "/usr/lib/modsync/packaged/hello"
            ]
        );
        assert_eq!(p.depends, [Dep::parse("linux-image-6.1.0-56-amd64")]);
        let Content::Bytes(marker) = &p.files[1].content else {
            panic!()
        };
        let mk = Marker::parse(std::str::from_utf8(marker).unwrap()).unwrap();
        assert_eq!(
            (mk.package.as_str(), mk.files.len()),
            ("hello-modules-6.1.0-56-amd64", 1)
        );
        let r = kernel_package(
            Format::Rpm,
            &built(k),
            default_kernel_dep(Format::Rpm, k).unwrap(),
            "/lib/modules",
        );
        assert_eq!(
            (r.name.as_str(), r.full_version().as_str()),
            ("kmod-hello-6.1.0-56-amd64", "1.0-1")
        );
        assert_eq!(r.depends, [Dep::parse("kernel-uname-r=6.1.0-56-amd64")]);
    }

    #[test]
    fn a_pacman_package_is_named_for_the_kernel_package_and_upgraded_with_it() {
        let dep = Dep::parse("linux-lts=6.1.56-1");
        let old = kernel_package(Format::Pacman, &built("6.1.54-1-lts"), dep.clone(), "/usr/lib/modules");
        let new = kernel_package(Format::Pacman, &built("6.1.56-1-lts"), dep.clone(), "/usr/lib/modules");
        assert_eq!(
            (old.name.as_str(), new.name.as_str()),
            ("hello-modules-linux-lts", "hello-modules-linux-lts")
        );
        assert_eq!(new.full_version(), "1.0+6.1.56_1_lts-1");
        assert_eq!(new.depends, [dep]);
        assert_eq!(
            crate::kernel::version::compare(&old.full_version(), &new.full_version()),
            std::cmp::Ordering::Less
        );
        assert_eq!(
            new.files[0].dest,
            "/usr/lib/modules/6.1.56-1-lts/updates/dkms/hello.ko.xz"
        );
    }

    #[test]
    fn the_meta_package_follows_the_newest_kernel() {
        for f in [Format::Deb, Format::Rpm, Format::Pacman] {
            let dep = Dep::parse("linux");
            let old = kernel_package(f, &built("6.1.0-54-amd64"), dep.clone(), "/usr/lib/modules");
            let new = kernel_package(f, &built("6.1.0-56-amd64"), dep, "/usr/lib/modules");
            let (a, b) = (
                meta_package(f, "hello", "1.0", "6.1.0-54-amd64", &old),
                meta_package(f, "hello", "1.0", "6.1.0-56-amd64", &new),
            );
            assert_eq!(a.name, b.name);
            assert_eq!(b.depends[0].name, new.name);
            assert_eq!(
                crate::kernel::version::compare(&a.full_version(), &b.full_version()),
                std::cmp::Ordering::Less,
                "{f:?}: {} < {}",
                a.full_version(),
                b.full_version()
            );
        }
        assert_eq!(meta_package_name(Format::Rpm, "Hello_X"), "kmod-hello_x");
    }
}
