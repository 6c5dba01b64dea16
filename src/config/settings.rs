//! The settings in force for one run: modsync's own
//! `/etc/modsync/config.toml` (serde + toml, unknown keys refused) over the
//! keys of dkms's framework.conf ([`super::framework`]) over their defaults.
//! The command line goes on top in the CLI layer. Also which dkms release
//! modsync behaves as ([`Compat`]).

use super::framework::{self, Framework};
use crate::kernel::distro::{Distro, Family};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// modsync's config.toml. Every key is optional.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    /// Hooks fail (non-zero) when a module fails to build, instead of reporting and going on.
    pub strict: Option<bool>,
    /// CPU budget shared by all builds of one command (make jobserver tokens).
    pub parallel_jobs: Option<usize>,
    pub dkms_tree: Option<PathBuf>,
    pub source_tree: Option<PathBuf>,
    pub install_tree: Option<PathBuf>,
    /// Build cache on/off, its directory and size bound.
    pub cache: Option<bool>,
    pub cache_dir: Option<PathBuf>,
    pub cache_max_mb: Option<u64>,
    /// Sign modules where the kernel signs its own (default true).
    pub sign: Option<bool>,
    pub mok_signing_key: Option<PathBuf>,
    pub mok_certificate: Option<PathBuf>,
    /// Regenerate an initramfs that holds a module when the module changes.
    pub update_initramfs: Option<bool>,
    /// Which dkms release the dkms command line behaves as: "3.0" or "3.4".
    pub dkms_compat: Option<CompatName>,
    /// The older name of `dkms_compat`: "dkms-3.0" or "dkms-3.1" (= "3.4").
    pub status_wording: Option<StatusWording>,
    /// Compile with debug information even when every module of a build is
    /// stripped (default false: `strip -g` discards it, so it is not made).
    pub debug_info: Option<bool>,
    /// Where hooks append one line per module result ("" turns it off).
    pub history_log: Option<PathBuf>,
    /// Keep the boot loader's default on a kernel that has every module the
    /// system depends on (default true).
    pub boot_guard: Option<bool>,
    /// Modules the system depends on besides those in use now.
    pub required: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum CompatName {
    #[serde(rename = "3.0")]
    V30,
    #[serde(rename = "3.4")]
    V34,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum StatusWording {
    #[serde(rename = "dkms-3.0")]
    Dkms30,
    #[serde(rename = "dkms-3.1")]
    Dkms31,
}

/// The dkms release whose command-line behaviour modsync reproduces where
/// releases differ: 3.0 (what Debian 12 and Ubuntu 24.04 ship) or 3.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compat {
    V30,
    V34,
}

impl Compat {
    /// What `dkms --version` prints (and make.log's first line names).
    pub fn version_string(self) -> &'static str {
        match self {
            Compat::V30 => "dkms-3.0.10",
            Compat::V34 => "dkms-3.4.3",
        }
    }

    /// dkms 3.1.3 renamed the status annotations.
    pub fn new_wording(self) -> bool {
        self == Compat::V34
    }

    /// dkms 3.0 refuses to install a module whose version string equals
    /// that of the same-named module already in the kernel's tree (both
    /// unversioned included); dkms 3.1 refuses only the very same module.
    pub fn refuses_same_version(self) -> bool {
        self == Compat::V30
    }

    /// dkms 3.0.13 added the `broken` state; before, a module whose source
    /// is gone counts as added (and stops `status` at its first build).
    pub fn broken_state(self) -> bool {
        self == Compat::V34
    }

    /// dkms 3.4.1 defers modules whose BUILD_DEPENDS is not registered
    /// instead of failing autoinstall.
    pub fn defers_unknown_depends(self) -> bool {
        self == Compat::V34
    }

    /// Exit code when a kernel's headers are missing (dkms 3.0 used 1).
    pub fn headers_missing_code(self) -> i32 {
        match self {
            Compat::V30 => crate::error::code::GENERIC,
            Compat::V34 => crate::error::code::HEADERS_MISSING,
        }
    }

    /// dkms 3.1 stops a build when PRE_BUILD or POST_BUILD fails, with the
    /// script's exit code; dkms 3.0 ignores their exit status.
    pub fn build_scripts_can_fail(self) -> bool {
        self == Compat::V34
    }

    /// dkms 3.3 reads BUILD_EXCLUSIVE_*[i] per module; 3.0 only index 0.
    pub fn per_module_exclusive(self) -> bool {
        self == Compat::V34
    }

    /// dkms 3.4 does not sign in a chroot unless `try_sign_modules=true`
    /// (and knows try_sign_modules at all); dkms 3.0 always tries.
    pub fn signing_policy(self) -> bool {
        self == Compat::V34
    }

    /// dkms 3.4 counts dkms.conf module records to the highest array index;
    /// dkms 3.0 by the longest array's element count.
    pub fn records_by_index(self) -> bool {
        self == Compat::V34
    }

    /// dkms 3.4 takes patches and scripts from /etc/dkms/<module>/ first.
    pub fn etc_overrides(self) -> bool {
        self == Compat::V34
    }

    /// dkms 3.0 leaves an in-kernel module of the same name where it is on
    /// Debian and Ubuntu (`running_distribution` debian*/ubuntu*) and
    /// archives it elsewhere; dkms 3.4 archives it everywhere.
    pub fn archives_originals(self, running_distribution: &str) -> bool {
        self == Compat::V34
            || !(running_distribution.starts_with("debian") || running_distribution.starts_with("ubuntu"))
    }

    /// The default for a distribution: the dkms it ships.
    pub fn default_for(d: Option<&Distro>) -> Compat {
        let major = |d: &Distro| d.version_id.split('.').next().and_then(|v| v.parse::<u32>().ok());
        match d {
            Some(d) if d.family == Family::Debian && major(d).is_some_and(|v| v <= 12) => Compat::V30,
            Some(d) if d.family == Family::Ubuntu && major(d).is_some_and(|v| v <= 24) => Compat::V30,
            _ => Compat::V34,
        }
    }
}

/// How builds get CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jobs {
    /// modsync's own: every build of a command shares one make jobserver of
    /// this many tokens (0 = unlimited).
    Budget(usize),
    /// dkms's `parallel_jobs` (framework.conf, the environment or `-j`):
    /// `make -jN` for each build, as dkms runs it (0 = `-j`, unlimited).
    Explicit(usize),
}

/// Extra options of the compression tools (framework.conf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressOpts {
    pub gzip: String,
    pub xz: String,
    pub zstd: String,
}

/// The settings in force for one run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dkms_tree: PathBuf,
    pub source_tree: PathBuf,
    pub install_tree: PathBuf,
    pub tmp_location: PathBuf,
    /// Where `etc/dkms`, `etc/modsync` and os-release are read from ("/"
    /// normally; tests point it at a fixture root).
    pub sysconf_root: PathBuf,
    pub compat: Compat,
    pub jobs: Jobs,
    pub verbose: bool,
    pub symlink_modules: bool,
    pub modprobe_on_install: bool,
    pub autoinstall_all_kernels: bool,
    pub compress: CompressOpts,
    pub build_environment: Option<PathBuf>,
    pub post_transaction: bool,
    pub strict: bool,
    pub cache: bool,
    pub cache_dir: PathBuf,
    pub cache_max_bytes: u64,
    pub sign: bool,
    /// config.toml's key and certificate; framework.conf's are read per kernel.
    pub mok_signing_key: Option<PathBuf>,
    pub mok_certificate: Option<PathBuf>,
    pub update_initramfs: bool,
    pub debug_info: bool,
    /// The history of hook runs (`modsync log`); None: not kept.
    pub history_log: Option<PathBuf>,
    pub boot_guard: bool,
    pub required: Vec<String>,
}

pub fn parse_file_settings(text: &str) -> Result<FileSettings, toml::de::Error> {
    toml::from_str(text)
}

fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

impl Settings {
    /// `etc/dkms` under the configuration root.
    pub fn etc_dkms(&self) -> PathBuf {
        self.sysconf_root.join("etc/dkms")
    }

    /// Loads framework.conf (and the environment it lets in), then
    /// config.toml, under `root`.
    pub fn load(root: &Path, distro: Option<&Distro>) -> Result<Settings> {
        let toml_path = root.join("etc/modsync/config.toml");
        let file = match std::fs::read_to_string(&toml_path) {
            Ok(t) => parse_file_settings(&t).with_context(|| {
                format!(
                    "{} is not valid; fix the line named above or remove the file",
                    toml_path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileSettings::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", toml_path.display())),
        };
        Self::with_file(root, distro, file)
    }

    /// Like [`Settings::load`] without config.toml (when it cannot be read,
    /// the hooks still build with the defaults).
    pub fn load_defaults(root: &Path, distro: Option<&Distro>) -> Result<Settings> {
        Self::with_file(root, distro, FileSettings::default())
    }

    fn with_file(root: &Path, distro: Option<&Distro>, file: FileSettings) -> Result<Settings> {
        let defaults = [
            ("dkms_tree", "/var/lib/dkms".to_string()),
            ("source_tree", "/usr/src".to_string()),
            ("install_tree", "/lib/modules".to_string()),
            (
                "tmp_location",
                std::env::var("TMPDIR").unwrap_or_else(|_| "/tmp".into()),
            ),
            ("compress_xz_opts", "--check=crc32 --lzma2=dict=1MiB".to_string()),
            ("compress_zstd_opts", "-q --rm -T0".to_string()),
        ];
        let fw = framework::read(&root.join("etc/dkms"), framework::GENERAL, &defaults, None)?;
        Self::merge(root, distro, &fw, file)
    }

    fn merge(root: &Path, distro: Option<&Distro>, fw: &Framework, file: FileSettings) -> Result<Settings> {
        let path = |from_toml: Option<PathBuf>, key: &str| from_toml.or_else(|| fw.get(key).map(PathBuf::from));
        let compat = match (file.dkms_compat, file.status_wording) {
            (Some(c), Some(w)) if (c == CompatName::V34) != (w == StatusWording::Dkms31) => {
                bail!("config.toml sets dkms_compat and status_wording to different releases; keep only dkms_compat")
            }
            (Some(CompatName::V30), _) | (None, Some(StatusWording::Dkms30)) => Compat::V30,
            (Some(CompatName::V34), _) | (None, Some(StatusWording::Dkms31)) => Compat::V34,
            (None, None) => Compat::default_for(distro),
        };
        let fw_jobs = match fw.get("parallel_jobs") {
            Some(v) => Some(
                v.trim()
                    .parse::<usize>()
                    .with_context(|| format!("parallel_jobs={v:?} is not a number"))?,
            ),
            None => None,
        };
        let jobs = match (file.parallel_jobs, fw_jobs) {
            (Some(n), _) => Jobs::Budget(n),
            (None, Some(n)) => Jobs::Explicit(n),
            (None, None) => Jobs::Budget(cpus()),
        };
        let on = |k: &str| fw.get(k).is_some();
        let required = file.required.unwrap_or_default();
        if let Some(bad) = required
            .iter()
            .find(|m| m.is_empty() || !m.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        {
            bail!("required = [..] names {bad:?}, which is no module name (letters, digits, - and _ only)");
        }
        Ok(Settings {
            dkms_tree: path(file.dkms_tree, "dkms_tree").unwrap_or_else(|| "/var/lib/dkms".into()),
            source_tree: path(file.source_tree, "source_tree").unwrap_or_else(|| "/usr/src".into()),
            install_tree: path(file.install_tree, "install_tree").unwrap_or_else(|| "/lib/modules".into()),
            tmp_location: fw
                .get("tmp_location")
                .map(PathBuf::from)
                .unwrap_or_else(|| "/tmp".into()),
            sysconf_root: root.to_path_buf(),
            compat,
            jobs,
            verbose: on("verbose"),
            symlink_modules: on("symlink_modules"),
            modprobe_on_install: on("modprobe_on_install"),
            autoinstall_all_kernels: on("autoinstall_all_kernels"),
            compress: CompressOpts {
                gzip: fw.get("compress_gzip_opts").unwrap_or("").to_string(),
                xz: fw.get("compress_xz_opts").unwrap_or("").to_string(),
                zstd: fw.get("compress_zstd_opts").unwrap_or("").to_string(),
            },
            build_environment: fw.get("build_environment").map(PathBuf::from),
            post_transaction: on("post_transaction"),
            strict: file.strict.unwrap_or(false),
            cache: file.cache.unwrap_or(true),
            cache_dir: file.cache_dir.unwrap_or_else(|| "/var/cache/modsync".into()),
            cache_max_bytes: file.cache_max_mb.unwrap_or(2048).saturating_mul(1024 * 1024),
            sign: file.sign.unwrap_or(true),
            mok_signing_key: file.mok_signing_key,
            mok_certificate: file.mok_certificate,
            update_initramfs: file.update_initramfs.unwrap_or(true),
            debug_info: file.debug_info.unwrap_or(false),
            history_log: match file.history_log {
                Some(p) if p.as_os_str().is_empty() => None,
                Some(p) => Some(p),
                None => Some(root.join("var/log/modsync/history.log")),
            },
            boot_guard: file.boot_guard.unwrap_or(true),
            required,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::distro::parse_os_release;

    #[test]
    fn toml_refuses_unknown_keys_and_reads_known_ones() {
        assert!(parse_file_settings("strickt = true").is_err());
        assert!(parse_file_settings("dkms_compat = \"9\"").is_err());
        let s = parse_file_settings("strict = true\nparallel_jobs = 4\ncache = false\ndkms_compat = \"3.4\"").unwrap();
        assert_eq!(
            (s.strict, s.parallel_jobs, s.cache, s.dkms_compat),
            (Some(true), Some(4), Some(false), Some(CompatName::V34))
        );
    }

    #[test]
    fn compat_follows_the_setting_its_old_name_and_the_distribution() {
        let deb12 = parse_os_release("ID=debian\nVERSION_ID=\"12\"\n");
        let deb13 = parse_os_release("ID=debian\nVERSION_ID=\"13\"\n");
        let arch = parse_os_release("ID=arch\n");
        assert_eq!(Compat::default_for(Some(&deb12)), Compat::V30);
        assert_eq!(Compat::default_for(Some(&deb13)), Compat::V34);
        assert_eq!(Compat::default_for(Some(&arch)), Compat::V34);
        let fw = Framework::default();
        let m = |t: &str| Settings::merge(Path::new("/"), Some(&deb12), &fw, parse_file_settings(t).unwrap());
        assert_eq!(m("").unwrap().compat, Compat::V30);
        assert_eq!(m("status_wording = \"dkms-3.1\"").unwrap().compat, Compat::V34);
        assert_eq!(m("dkms_compat = \"3.4\"").unwrap().compat, Compat::V34);
        assert!(m("dkms_compat = \"3.4\"\nstatus_wording = \"dkms-3.0\"").is_err());
    }

    #[test]
    fn parallel_jobs_from_dkms_is_explicit_from_modsync_a_budget() {
        let mut fw = Framework::default();
        let m = |fw: &Framework, t: &str| {
            Settings::merge(Path::new("/"), None, fw, parse_file_settings(t).unwrap())
                .unwrap()
                .jobs
        };
        assert!(matches!(m(&fw, ""), Jobs::Budget(n) if n >= 1));
        fw.values.insert("parallel_jobs".into(), "1".into());
        assert_eq!(m(&fw, ""), Jobs::Explicit(1));
        assert_eq!(m(&fw, "parallel_jobs = 3"), Jobs::Budget(3));
        fw.values.insert("parallel_jobs".into(), "x".into());
        assert!(Settings::merge(Path::new("/"), None, &fw, FileSettings::default()).is_err());
    }

    #[test]
    fn load_layers_framework_and_toml() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc/dkms/framework.conf.d")).unwrap();
        std::fs::create_dir_all(d.path().join("etc/modsync")).unwrap();
        std::fs::write(
            d.path().join("etc/dkms/framework.conf"),
            "dkms_tree=/a\nsource_tree=/s\npost_transaction=\"echo hi\"\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/modsync/config.toml"),
            "source_tree = \"/t\"\nstrict = true\n",
        )
        .unwrap();
        let s = Settings::load(d.path(), None).unwrap();
        assert_eq!(
            (s.dkms_tree.as_path(), s.source_tree.as_path()),
            (Path::new("/a"), Path::new("/t"))
        );
        assert!(s.strict && s.post_transaction);
        assert_eq!(s.compress.xz, "--check=crc32 --lzma2=dict=1MiB");
        std::fs::write(d.path().join("etc/modsync/config.toml"), "strict = maybe\n").unwrap();
        let e = format!("{:#}", Settings::load(d.path(), None).unwrap_err());
        assert!(e.contains("config.toml"), "{e}");
        assert!(s.boot_guard && s.required.is_empty());
        std::fs::write(
            d.path().join("etc/modsync/config.toml"),
            "boot_guard = false\nrequired = [\"zfs\", \"nvidia-drm\"]\n",
        )
        .unwrap();
        let s = Settings::load(d.path(), None).unwrap();
        assert!(!s.boot_guard);
        assert_eq!(s.required, ["zfs", "nvidia-drm"]);
        std::fs::write(d.path().join("etc/modsync/config.toml"), "required = [\"../x\"]\n").unwrap();
        let e = format!("{:#}", Settings::load(d.path(), None).unwrap_err());
        assert!(e.contains("no module name"), "{e}");
    }
}
