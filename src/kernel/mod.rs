//! Kernels: where their headers and modules are, their configuration, the
//! compression of their modules, and what the distribution calls things.

pub mod distro;
pub mod kconfig;
pub mod version;

use std::path::{Path, PathBuf};

/// One target kernel of a build or install.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Kernel {
    pub release: String,
    pub arch: String,
    /// The headers (kbuild) directory: `/lib/modules/K/build` or `--kernelsourcedir`.
    pub source_dir: PathBuf,
    /// `$install_tree/K`.
    pub modules_dir: PathBuf,
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

impl Kernel {
    pub fn new(release: &str, arch: &str, install_tree: &Path, source_dir: Option<&Path>) -> Kernel {
        let modules_dir = install_tree.join(release);
        Kernel {
            release: release.to_string(),
            arch: arch.to_string(),
            source_dir: source_dir.map(Path::to_path_buf).unwrap_or_else(|| modules_dir.join("build")),
            modules_dir,
        }
    }

    /// dkms's test: the headers' `include` directory exists.
    pub fn has_headers(&self) -> bool {
        self.source_dir.join("include").is_dir()
    }

    /// The kernel configuration file, as dkms looks for it.
    pub fn config_path(&self) -> Option<PathBuf> {
        [
            self.source_dir.join("include/config/auto.conf"),
            self.source_dir.join(".config"),
            self.modules_dir.join("config"),
            PathBuf::from(format!("/boot/config-{}", self.release)),
        ]
        .into_iter()
        .find(|p| p.is_file())
    }

    /// The compression of the kernel's own modules: the strongest suffix
    /// found under the module tree wins, as in dkms (zst > xz > gz > none).
    pub fn module_compression(&self) -> Compression {
        let mut best = Compression::None;
        let mut stack = vec![self.modules_dir.join("kernel")];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                match e.file_type() {
                    Ok(t) if t.is_dir() => stack.push(e.path()),
                    _ if name.ends_with(".ko.zst") => return Compression::Zstd,
                    _ if name.ends_with(".ko.xz") => best = Compression::Xz,
                    _ if name.ends_with(".ko.gz") && best == Compression::None => best = Compression::Gzip,
                    _ => {}
                }
            }
        }
        best
    }
}

/// The machine's architecture (`uname -m`).
pub fn machine_arch() -> String {
    // SAFETY: uname fills a plain struct of fixed-size char arrays.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) == 0 {
            return std::ffi::CStr::from_ptr(u.machine.as_ptr()).to_string_lossy().into_owned();
        }
    }
    "x86_64".to_string()
}

/// The running kernel's release (`uname -r`).
pub fn running_release() -> String {
    // SAFETY: as above.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) == 0 {
            return std::ffi::CStr::from_ptr(u.release.as_ptr()).to_string_lossy().into_owned();
        }
    }
    String::new()
}

/// Kernel releases with a directory under the install tree, sorted.
pub fn installed_releases(install_tree: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(install_tree)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
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
    fn compression_follows_existing_modules() {
        let d = tempfile::tempdir().unwrap();
        let k = Kernel::new("6.1", "x86_64", d.path(), None);
        assert_eq!(k.module_compression(), Compression::None);
        std::fs::create_dir_all(d.path().join("6.1/kernel/drivers/a")).unwrap();
        std::fs::write(d.path().join("6.1/kernel/drivers/a/x.ko.gz"), "").unwrap();
        assert_eq!(k.module_compression(), Compression::Gzip);
        std::fs::write(d.path().join("6.1/kernel/drivers/y.ko.xz"), "").unwrap();
        assert_eq!(k.module_compression(), Compression::Xz);
        assert!(!k.has_headers());
        std::fs::create_dir_all(d.path().join("6.1/build/include")).unwrap();
        assert!(k.has_headers());
    }
}
