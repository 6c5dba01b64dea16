//! Settings: modsync's own `/etc/modsync/config.toml` (serde + toml) on top of
//! the compatible keys of dkms's `/etc/dkms/framework.conf` and
//! `framework.conf.d/*.conf`. framework.conf is shell; plain `key=value`
//! lines are read here without spawning anything, anything fancier is
//! evaluated by bash.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
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
    /// Sign modules where the kernel has CONFIG_MODULE_SIG (default true).
    pub sign: Option<bool>,
    pub mok_signing_key: Option<PathBuf>,
    pub mok_certificate: Option<PathBuf>,
    /// Regenerate an existing initramfs when modules change outside the kernel's own hooks.
    pub update_initramfs: Option<bool>,
    /// `status` as dkms 3.0 prints it (Debian 12, Ubuntu 24.04: old annotation
    /// wording, the listing stops at a module whose source is gone) or as
    /// dkms 3.1 does (new wording, such a module is shown as `broken`).
    pub status_wording: Option<StatusWording>,
    /// Compile with debug information even when every module of a build is
    /// going to be stripped (default false: `strip -g` would discard it, so
    /// modsync asks the compiler not to produce it).
    pub debug_info: Option<bool>,
}

/// dkms renamed its status annotations in 3.1.3; scripts parse either.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum StatusWording {
    #[default]
    #[serde(rename = "dkms-3.0")]
    Dkms30,
    #[serde(rename = "dkms-3.1")]
    Dkms31,
}

/// The settings in force for one run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dkms_tree: PathBuf,
    pub source_tree: PathBuf,
    pub install_tree: PathBuf,
    pub parallel_jobs: usize,
    pub strict: bool,
    pub cache: bool,
    pub cache_dir: PathBuf,
    pub cache_max_bytes: u64,
    pub sign: bool,
    pub mok_key: PathBuf,
    pub mok_cert: PathBuf,
    pub sign_file: Option<String>,
    pub update_initramfs: bool,
    pub status_wording: StatusWording,
    pub debug_info: bool,
    pub verbose: bool,
    pub post_transaction: Option<String>,
    /// Where /etc/dkms and /etc/modsync live ("/" normally; tests use a fixture root).
    pub sysconf_root: PathBuf,
}

/// framework.conf keys modsync honours.
const FRAMEWORK_KEYS: &[&str] = &[
    "source_tree", "dkms_tree", "install_tree", "parallel_jobs", "verbose", "sign_file",
    "mok_signing_key", "mok_certificate", "post_transaction", "tmp_location",
];

fn unquote(v: &str) -> Option<String> {
    let v = v.trim();
    if let Some(s) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        return (!s.contains(['$', '`', '"', '\\'])).then(|| s.to_string());
    }
    if let Some(s) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return (!s.contains('\'')).then(|| s.to_string());
    }
    // `~` is expanded by bash at the start and after ':' of an assignment.
    (!v.contains(|c: char| c.is_whitespace() || "$`\"'\\;&|<>()#~".contains(c))).then(|| v.to_string())
}

/// Reads `key=value` lines; None when the text needs a shell to evaluate.
pub fn parse_simple_shell_assignments(text: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=')?;
        // `k= v` is not an assignment of v: bash runs v with k in its environment.
        if v.starts_with(char::is_whitespace) {
            return None;
        }
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        out.insert(k.to_string(), unquote(v)?);
    }
    Some(out)
}

fn framework_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("etc/dkms/framework.conf")];
    if let Ok(rd) = std::fs::read_dir(root.join("etc/dkms/framework.conf.d")) {
        let mut more: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        more.sort();
        files.extend(more);
    }
    files.retain(|f| f.is_file());
    files
}

/// The framework.conf keys we honour, from all files in dkms's order.
fn read_framework(root: &Path) -> Result<BTreeMap<String, String>> {
    let files = framework_files(root);
    let mut texts = Vec::new();
    for f in &files {
        texts.push(std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?);
    }
    let simple: Option<Vec<_>> = texts.iter().map(|t| parse_simple_shell_assignments(t)).collect();
    let merged = match simple {
        Some(maps) => maps.into_iter().flatten().collect(),
        None => eval_framework_with_bash(&files)?,
    };
    Ok(merged.into_iter().filter(|(k, _)| FRAMEWORK_KEYS.contains(&k.as_str())).collect())
}

fn eval_framework_with_bash(files: &[PathBuf]) -> Result<BTreeMap<String, String>> {
    let script = format!(
        "for __f in \"$@\"; do . \"$__f\" >/dev/null; done; for __k in {}; do [ -n \"${{!__k+x}}\" ] && printf '%s\\0%s\\0' \"$__k\" \"${{!__k}}\"; done; true",
        FRAMEWORK_KEYS.join(" ")
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("framework.conf")
        .args(files)
        .stdin(std::process::Stdio::null())
        .output()
        .context("running bash to read framework.conf")?;
    let mut map = BTreeMap::new();
    let fields: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
    for kv in fields.chunks(2) {
        if let [k, v] = kv {
            map.insert(String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned());
        }
    }
    Ok(map)
}

pub fn parse_file_settings(text: &str) -> Result<FileSettings, toml::de::Error> {
    toml::from_str(text)
}

fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

impl Settings {
    /// Loads framework.conf, then config.toml, then the environment
    /// (`parallel_jobs`, as dkms lets it leak in), under `root`.
    pub fn load(root: &Path) -> Result<Settings> {
        let fw = read_framework(root)?;
        let toml_path = root.join("etc/modsync/config.toml");
        let file = match std::fs::read_to_string(&toml_path) {
            Ok(t) => parse_file_settings(&t)
                .with_context(|| format!("{} is not valid; fix the line named above or remove the file", toml_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileSettings::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", toml_path.display())),
        };
        let path = |key: &str, from_toml: &Option<PathBuf>, default: &str| -> PathBuf {
            from_toml
                .clone()
                .or_else(|| fw.get(key).filter(|v| !v.is_empty()).map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from(default))
        };
        let env_jobs = std::env::var("parallel_jobs").ok().and_then(|v| v.parse().ok());
        let fw_jobs = fw.get("parallel_jobs").and_then(|v| v.parse().ok());
        let parallel_jobs = env_jobs.or(file.parallel_jobs).or(fw_jobs).unwrap_or_else(cpus);
        Ok(Settings {
            dkms_tree: path("dkms_tree", &file.dkms_tree, "/var/lib/dkms"),
            source_tree: path("source_tree", &file.source_tree, "/usr/src"),
            install_tree: path("install_tree", &file.install_tree, "/lib/modules"),
            parallel_jobs,
            strict: file.strict.unwrap_or(false),
            cache: file.cache.unwrap_or(true),
            cache_dir: file.cache_dir.clone().unwrap_or_else(|| PathBuf::from("/var/cache/modsync")),
            cache_max_bytes: file.cache_max_mb.unwrap_or(2048) * 1024 * 1024,
            sign: file.sign.unwrap_or(true),
            mok_key: path("mok_signing_key", &file.mok_signing_key, "/var/lib/dkms/mok.key"),
            mok_cert: path("mok_certificate", &file.mok_certificate, "/var/lib/dkms/mok.pub"),
            sign_file: fw.get("sign_file").filter(|v| !v.is_empty()).cloned(),
            update_initramfs: file.update_initramfs.unwrap_or(true),
            status_wording: file.status_wording.unwrap_or_default(),
            debug_info: file.debug_info.unwrap_or(false),
            verbose: fw.get("verbose").is_some_and(|v| !v.is_empty()),
            post_transaction: fw.get("post_transaction").filter(|v| !v.is_empty()).cloned(),
            sysconf_root: root.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_assignments() {
        let m = parse_simple_shell_assignments("# c\n\nsource_tree=\"/srv/src\"\nparallel_jobs=3\nx='a b'\n").unwrap();
        assert_eq!(m["source_tree"], "/srv/src");
        assert_eq!(m["parallel_jobs"], "3");
        assert_eq!(m["x"], "a b");
        assert!(parse_simple_shell_assignments("sign_file=\"/lib/modules/${kernelver}/x\"").is_none());
        assert!(parse_simple_shell_assignments("if true; then x=1; fi").is_none());
    }

    #[test]
    fn toml_rejects_unknown_keys_and_reads_known() {
        assert!(parse_file_settings("strickt = true").is_err());
        assert_eq!(parse_file_settings("status_wording = \"dkms-3.1\"").unwrap().status_wording, Some(StatusWording::Dkms31));
        assert!(parse_file_settings("status_wording = \"dkms-9\"").is_err());
        let s = parse_file_settings("strict = true\nparallel_jobs = 4\ncache = false").unwrap();
        assert_eq!(s.strict, Some(true));
        assert_eq!(s.parallel_jobs, Some(4));
        assert_eq!(s.cache, Some(false));
    }

    #[test]
    fn load_layers_framework_and_toml() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc/dkms/framework.conf.d")).unwrap();
        std::fs::create_dir_all(d.path().join("etc/modsync")).unwrap();
        std::fs::write(d.path().join("etc/dkms/framework.conf"), "dkms_tree=/a\nsource_tree=/s\n").unwrap();
        std::fs::write(d.path().join("etc/dkms/framework.conf.d/x.conf"), "dkms_tree=\"/b\"\n").unwrap();
        std::fs::write(d.path().join("etc/modsync/config.toml"), "source_tree = \"/t\"\nstrict = true\n").unwrap();
        let s = Settings::load(d.path()).unwrap();
        assert_eq!(s.dkms_tree, PathBuf::from("/b"));
        assert_eq!(s.source_tree, PathBuf::from("/t"));
        assert!(s.strict);
        std::fs::write(d.path().join("etc/dkms/framework.conf"), "X=$(echo /c)\ndkms_tree=$X\n").unwrap();
        std::fs::remove_file(d.path().join("etc/dkms/framework.conf.d/x.conf")).unwrap();
        assert_eq!(Settings::load(d.path()).unwrap().dkms_tree, PathBuf::from("/c"));
        std::fs::write(d.path().join("etc/modsync/config.toml"), "strict = maybe\n").unwrap();
        let e = format!("{:#}", Settings::load(d.path()).unwrap_err());
        assert!(e.contains("config.toml"), "{e}");
    }
}
