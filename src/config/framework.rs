//! dkms's `/etc/dkms/framework.conf` and `framework.conf.d/*.conf`, read as
//! dkms reads them: sourced through the same whitelist as dkms.conf (so a
//! file can define functions or run commands without reaching modsync), the
//! general keys once, the signing keys and `post_transaction` later with
//! `$kernelver` set. Files made only of plain assignments are read without a
//! shell. Some keys are taken from the environment when no file sets them,
//! as dkms lets them leak in (its own test suite sets `parallel_jobs` so).

use super::shell;
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The keys read once, at start.
pub const GENERAL: &[&str] = &[
    "source_tree",
    "dkms_tree",
    "install_tree",
    "tmp_location",
    "verbose",
    "symlink_modules",
    "autoinstall_all_kernels",
    "modprobe_on_install",
    "parallel_jobs",
    "compress_gzip_opts",
    "compress_xz_opts",
    "compress_zstd_opts",
    "build_environment",
    "post_transaction",
];

/// The keys read for a kernel when its modules are about to be signed.
pub const SIGNING: &[&str] = &["sign_file", "mok_signing_key", "mok_certificate", "try_sign_modules"];

/// The command run after a successful transaction (read again before it runs).
pub const POST_TRANSACTION: &[&str] = &["post_transaction"];

/// Keys dkms gives a value at start, so the environment never reaches them.
const DEFAULTED: &[&str] = &[
    "source_tree",
    "dkms_tree",
    "install_tree",
    "tmp_location",
    "verbose",
    "symlink_modules",
    "compress_gzip_opts",
    "compress_xz_opts",
    "compress_zstd_opts",
];

/// The value of each key that is set (empty values count as unset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Framework {
    pub values: BTreeMap<String, String>,
}

impl Framework {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// framework.conf, then framework.conf.d/*.conf in name order, under `etc_dkms`.
pub fn files(etc_dkms: &Path) -> Vec<PathBuf> {
    let mut files = vec![etc_dkms.join("framework.conf")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(etc_dkms.join("framework.conf.d"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "conf"))
                .collect()
        })
        .unwrap_or_default();
    more.sort();
    files.extend(more);
    files.retain(|f| f.exists());
    files
}

/// The defaults dkms assigns before reading (the environment never reaches
/// those), and the process environment for the keys it does not assign.
fn seeds(keys: &[&str], defaults: &[(&str, String)]) -> Vec<(String, String)> {
    keys.iter()
        .filter_map(|k| match defaults.iter().find(|(d, _)| d == k) {
            Some((_, v)) => Some((k.to_string(), v.clone())),
            None if DEFAULTED.contains(k) => Some((k.to_string(), String::new())),
            None => std::env::var(k).ok().map(|v| (k.to_string(), v)),
        })
        .collect()
}

/// Reads `keys` from the framework files under `etc_dkms`, starting from
/// `defaults`; `kernelver` is visible to the files when given.
pub fn read(etc_dkms: &Path, keys: &[&str], defaults: &[(&str, String)], kernelver: Option<&str>) -> Result<Framework> {
    let files = files(etc_dkms);
    let mut values: BTreeMap<String, String> = seeds(keys, defaults).into_iter().collect();
    let texts: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect();
    let plain: Option<Vec<_>> = texts.iter().map(|t| shell::parse_plain_assignments(t)).collect();
    match plain {
        Some(maps) => {
            for (k, v) in maps.into_iter().flatten() {
                if keys.contains(&k.as_str()) {
                    values.insert(k, v);
                }
            }
        }
        None => {
            let mut vars: Vec<(&str, String)> = values.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            if let Some(k) = kernelver {
                vars.push(("kernelver", k.to_string()));
            }
            let s = shell::source_over(&files, keys, &vars)?;
            if !s.stderr.trim().is_empty() {
                eprint!("{}", s.stderr);
            }
            for k in keys {
                if let Some(v) = s.raw.get(k, 0) {
                    values.insert(k.to_string(), v.to_string());
                }
            }
        }
    }
    values.retain(|_, v| !v.is_empty());
    Ok(Framework { values })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_files_win_and_functions_do_not_leak() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("framework.conf.d")).unwrap();
        std::fs::write(d.path().join("framework.conf"), "dkms_tree=/a\nsource_tree=/s\n").unwrap();
        std::fs::write(d.path().join("framework.conf.d/b.conf"), "dkms_tree=\"/b\"\n").unwrap();
        std::fs::write(d.path().join("framework.conf.d/ignored.txt"), "dkms_tree=/c\n").unwrap();
        let f = read(d.path(), GENERAL, &[("dkms_tree", "/var/lib/dkms".into())], None).unwrap();
        assert_eq!((f.get("dkms_tree"), f.get("source_tree")), (Some("/b"), Some("/s")));
        std::fs::write(
            d.path().join("framework.conf.d/h.conf"),
            "do_status() { echo hijacked; }\nX=$(echo /c)\nparallel_jobs=$X\n",
        )
        .unwrap();
        let f = read(d.path(), GENERAL, &[], None).unwrap();
        assert_eq!(f.get("parallel_jobs"), Some("/c"));
    }

    #[test]
    fn signing_keys_see_the_kernel() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("framework.conf"),
            "sign_file=\"/lib/modules/${kernelver}/build/scripts/sign-file\"\n",
        )
        .unwrap();
        let f = read(d.path(), SIGNING, &[], Some("6.1.0-56-amd64")).unwrap();
        assert_eq!(
            f.get("sign_file"),
            Some("/lib/modules/6.1.0-56-amd64/build/scripts/sign-file")
        );
        assert_eq!(f.get("try_sign_modules"), None);
    }
}
