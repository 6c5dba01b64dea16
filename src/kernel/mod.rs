//! Kernels: where their headers, modules and configuration are, the
//! compression of their modules, and facts about the running system.

pub mod candidate;
pub mod distro;
pub mod kconfig;
pub mod modinfo;
pub mod version;

use std::path::{Path, PathBuf};

/// One target kernel of a build or install.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Kernel {
    pub release: String,
    pub arch: String,
    /// The headers (kbuild) directory: `$install_tree/K/build` or `--kernelsourcedir`.
    pub headers_dir: PathBuf,
    /// `$install_tree/K`.
    pub modules_dir: PathBuf,
    /// The kernel configuration dkms reads: `--config`, else the headers'
    /// `include/config/auto.conf` when it exists, else their `.config`.
    pub config_file: PathBuf,
}

/// Module file compression used by a kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

impl Compression {
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Xz => ".xz",
            Compression::Zstd => ".zst",
        }
    }
}

/// Where a kernel's pieces are, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct Locations {
    pub install_tree: PathBuf,
    /// `--kernelsourcedir`.
    pub headers_dir: Option<PathBuf>,
    /// `--config`.
    pub config_file: Option<PathBuf>,
}

impl Kernel {
    pub fn new(release: &str, arch: &str, at: &Locations) -> Kernel {
        let modules_dir = at.install_tree.join(release);
        let headers_dir = at.headers_dir.clone().unwrap_or_else(|| modules_dir.join("build"));
        let config_file = at.config_file.clone().unwrap_or_else(|| {
            let auto = headers_dir.join("include/config/auto.conf");
            if auto.exists() {
                auto
            } else {
                headers_dir.join(".config")
            }
        });
        Kernel {
            release: release.to_string(),
            arch: arch.to_string(),
            headers_dir,
            modules_dir,
            config_file,
        }
    }

    /// dkms's test for headers: `include` exists in the headers directory.
    pub fn has_headers(&self) -> bool {
        self.headers_dir.join("include").exists()
    }

    /// The kernel's configuration, if its file exists.
    pub fn config(&self) -> Option<kconfig::KConfig> {
        std::fs::read_to_string(&self.config_file)
            .ok()
            .map(|t| kconfig::KConfig::parse(&t))
    }

    /// The compression of the modules already under `$install_tree/K` (not
    /// following the build and source links): zstd, else xz, else gzip, else
    /// none, the order in which dkms lets one win over another.
    pub fn module_compression(&self) -> Compression {
        let mut found = Compression::None;
        for e in walkdir::WalkDir::new(&self.modules_dir).into_iter().flatten() {
            let name = e.file_name().to_string_lossy();
            if name.ends_with(".ko.zst") {
                return Compression::Zstd;
            } else if name.ends_with(".ko.xz") {
                found = Compression::Xz;
            } else if name.ends_with(".ko.gz") && found == Compression::None {
                found = Compression::Gzip;
            }
        }
        found
    }

    pub fn label(&self) -> String {
        format!("{} ({})", self.release, self.arch)
    }
}

fn uname() -> Option<libc::utsname> {
    // SAFETY: uname fills a plain struct of fixed-size char arrays.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        (libc::uname(&mut u) == 0).then_some(u)
    }
}

fn field(f: &[libc::c_char]) -> String {
    // SAFETY: uname NUL-terminates every field within its array.
    unsafe { std::ffi::CStr::from_ptr(f.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// The machine's architecture (`uname -m`).
pub fn machine_arch() -> String {
    uname()
        .map(|u| field(&u.machine))
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The running kernel's release (`uname -r`).
pub fn running_release() -> String {
    uname().map(|u| field(&u.release)).unwrap_or_default()
}

/// Kernel releases with a directory under the install tree, oldest first.
pub fn installed_releases(install_tree: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(install_tree)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|k| crate::sys::names::valid(crate::sys::names::Kind::Kernel, k))
                .collect()
        })
        .unwrap_or_default();
    v.sort_by(|a, b| version::compare(a, b));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_follows_the_modules_already_there() {
        let d = tempfile::tempdir().unwrap();
        let at = Locations {
            install_tree: d.path().to_path_buf(),
            ..Default::default()
        };
        let k = Kernel::new("6.1", "x86_64", &at);
        assert_eq!(k.module_compression(), Compression::None);
        std::fs::create_dir_all(d.path().join("6.1/kernel/drivers/a")).unwrap();
        std::fs::write(d.path().join("6.1/kernel/drivers/a/x.ko.gz"), "").unwrap();
        assert_eq!(k.module_compression(), Compression::Gzip);
        std::fs::write(d.path().join("6.1/kernel/drivers/y.ko.xz"), "").unwrap();
        assert_eq!(k.module_compression(), Compression::Xz);
        assert!(!k.has_headers());
        std::fs::create_dir_all(d.path().join("6.1/build/include/config")).unwrap();
        assert!(k.has_headers());
        assert_eq!(k.config_file, d.path().join("6.1/build/.config"));
        std::fs::write(d.path().join("6.1/build/include/config/auto.conf"), "CONFIG_X=y\n").unwrap();
        let k = Kernel::new("6.1", "x86_64", &at);
        assert!(k.config().unwrap().enabled("CONFIG_X"));
    }
}
