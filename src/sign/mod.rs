//! Module signing, decided as dkms decides it for each kernel: off by policy
//! (`try_sign_modules=false`, or in a chroot unless it is `true`), off when
//! the kernel does not sign its own modules, off when the sign-file binary
//! is missing; otherwise with the MOK key (created when missing, see
//! [`mok`]). Modules are signed by the kernel's own `sign-file` (or the
//! `sign_file` framework.conf names), as dkms signs them. Also Secure Boot
//! explained ([`secureboot`]).

pub mod mok;
pub mod secureboot;

use crate::kernel::distro::Family;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How modules for one kernel are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub sign_file: PathBuf,
    /// CONFIG_MODULE_SIG_HASH.
    pub hash: String,
    pub key: PathBuf,
    pub cert: PathBuf,
}

/// The decision for one kernel and the lines that explain it (printed
/// before the first build for that kernel).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub signer: Option<Signer>,
    pub lines: Vec<String>,
}

/// Everything the decision depends on.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// modsync's `sign` setting.
    pub enabled: bool,
    /// framework.conf's try_sign_modules (true, false, not_in_chroot).
    pub try_sign_modules: Option<String>,
    pub in_chroot: bool,
    pub kernelver: String,
    /// The kernel configuration's path, and its CONFIG_MODULE_SIG_HASH when the file exists.
    pub config_file: PathBuf,
    pub config_exists: bool,
    pub sig_hash: Option<String>,
    pub family: Option<Family>,
    pub install_tree: PathBuf,
    /// framework.conf's sign_file, mok_signing_key, mok_certificate (config.toml's key and certificate win).
    pub sign_file: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub cert: Option<PathBuf>,
}

/// The sign-file dkms looks for on this distribution, before falling back
/// to the kernel's build tree. Pure.
pub fn default_sign_file(family: Option<Family>, kernelver: &str) -> Option<PathBuf> {
    let series = kernelver.rsplit_once('.').map_or(kernelver, |(s, _)| s);
    match family? {
        Family::Debian => Some(PathBuf::from(format!(
            "/usr/lib/linux-kbuild-{series}/scripts/sign-file"
        ))),
        Family::Ubuntu => Some(PathBuf::from(format!(
            "/usr/src/linux-headers-{kernelver}/scripts/sign-file"
        ))),
        Family::Gentoo => Some(PathBuf::from(format!("/usr/src/linux-{kernelver}/scripts/sign-file"))),
        _ => None,
    }
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Decides how to sign for one kernel; creates the MOK pair when it is
/// missing (the one effect here).
pub fn plan(i: &Inputs) -> Plan {
    let mut lines = Vec::new();
    let off = |lines: Vec<String>| Plan { signer: None, lines };
    if !i.enabled {
        lines.push("Module signing is off (sign = false in /etc/modsync/config.toml); modules are not signed.".into());
        return off(lines);
    }
    let policy = i.try_sign_modules.as_deref().unwrap_or("not_in_chroot");
    if policy == "false" {
        lines.push("Module signing is disabled (try_sign_modules=false); modules are not signed.".into());
        return off(lines);
    }
    if policy != "true" && i.in_chroot {
        lines.push("Running in a chroot: modules are not signed (set try_sign_modules=true to sign anyway).".into());
        return off(lines);
    }
    if !i.config_exists {
        lines.push(format!(
            "The kernel configuration {} is missing; modules are not signed.",
            i.config_file.display()
        ));
        return off(lines);
    }
    let Some(hash) = i.sig_hash.clone() else {
        lines.push("This kernel does not sign its modules (no CONFIG_MODULE_SIG_HASH); modules are not signed.".into());
        return off(lines);
    };
    let sign_file = i.sign_file.clone().unwrap_or_else(|| {
        default_sign_file(i.family, &i.kernelver)
            .filter(|p| p.is_file())
            .unwrap_or_else(|| i.install_tree.join(&i.kernelver).join("build/scripts/sign-file"))
    });
    lines.push(format!("Sign command: {}", sign_file.display()));
    if !executable(&sign_file) {
        lines.push(format!(
            "{} is not an executable; modules are not signed.",
            sign_file.display()
        ));
        return off(lines);
    }
    let key = i.key.clone().unwrap_or_else(|| PathBuf::from("/var/lib/dkms/mok.key"));
    let cert = i.cert.clone().unwrap_or_else(|| PathBuf::from("/var/lib/dkms/mok.pub"));
    lines.push(format!("Signing key: {}", key.display()));
    lines.push(format!("Public certificate (MOK): {}", cert.display()));
    let pkcs11 = key.to_string_lossy().starts_with("pkcs11:");
    if !pkcs11 && (!key.is_file() || !cert.is_file()) {
        match mok::create(&key, &cert) {
            Ok(()) => lines.push(format!(
                "Created the signing key {} and its certificate {}; `modsync secureboot` tells whether it must be enrolled.",
                key.display(),
                cert.display()
            )),
            Err(e) => log::info!("{e:#}"),
        }
        if !key.is_file() {
            lines.push(format!(
                "The signing key {} is missing and could not be created; modules are not signed.",
                key.display()
            ));
            return off(lines);
        }
    }
    if !cert.is_file() {
        lines.push(format!(
            "The certificate {} is missing and could not be created; modules are not signed.",
            cert.display()
        ));
        return off(lines);
    }
    Plan {
        signer: Some(Signer {
            sign_file,
            hash,
            key,
            cert,
        }),
        lines,
    }
}

/// Signs `module` in place; Err holds sign-file's own words.
pub fn sign(s: &Signer, module: &Path) -> Result<(), String> {
    let out = Command::new(&s.sign_file)
        .arg(&s.hash)
        .arg(&s.key)
        .arg(&s.cert)
        .arg(module)
        .output();
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
        .trim()
        .to_string()),
        Err(e) => Err(format!("could not run {}: {e}", s.sign_file.display())),
    }
}

/// dkms's chroot test: fakechroot, or a mount table or root directory that
/// differs from the init process's.
pub fn running_in_chroot() -> bool {
    if std::env::var("FAKECHROOT").as_deref() == Ok("true")
        && std::env::var_os("FAKECHROOT_BASE").is_some()
        && std::env::var("LD_PRELOAD").is_ok_and(|p| p.contains("libfakechroot.so"))
    {
        return true;
    }
    if let (Ok(init), Ok(me)) = (
        std::fs::read("/proc/1/mountinfo"),
        std::fs::read("/proc/self/mountinfo"),
    ) {
        if init != me {
            return true;
        }
    }
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata("/proc/1/root"), std::fs::metadata("/")) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) != (b.dev(), b.ino()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(d: &Path) -> Inputs {
        let sf = d.join("sign-file");
        std::fs::write(&sf, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&sf, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        Inputs {
            enabled: true,
            kernelver: "6.1.0-56-amd64".into(),
            config_file: d.join(".config"),
            config_exists: true,
            sig_hash: Some("sha256".into()),
            install_tree: d.to_path_buf(),
            sign_file: Some(sf),
            key: Some(d.join("k")),
            cert: Some(d.join("c")),
            ..Default::default()
        }
    }

    #[test]
    fn policy_comes_first() {
        let d = tempfile::tempdir().unwrap();
        let mut i = inputs(d.path());
        i.try_sign_modules = Some("false".into());
        assert!(plan(&i).signer.is_none());
        i.try_sign_modules = None;
        i.in_chroot = true;
        assert!(
            plan(&i).signer.is_none(),
            "not in a chroot unless try_sign_modules=true"
        );
        i.try_sign_modules = Some("true".into());
        assert!(plan(&i).signer.is_some());
        i.enabled = false;
        assert!(plan(&i).signer.is_none());
        assert!(!d.path().join("no").exists());
    }

    #[test]
    fn the_kernel_and_the_tools_decide_next() {
        let d = tempfile::tempdir().unwrap();
        let mut i = inputs(d.path());
        i.sig_hash = None;
        assert!(plan(&i).signer.is_none());
        let mut i = inputs(d.path());
        i.config_exists = false;
        assert!(plan(&i).signer.is_none());
        let mut i = inputs(d.path());
        i.sign_file = Some("/no/such/file".into());
        let p = plan(&i);
        assert!(p.signer.is_none() && p.lines[0] == "Sign command: /no/such/file");
        assert!(
            !d.path().join("k").exists(),
            "no key is made when nothing would be signed"
        );
    }

    #[test]
    fn missing_keys_are_created_where_their_directory_exists() {
        let d = tempfile::tempdir().unwrap();
        let p = plan(&inputs(d.path()));
        let s = p.signer.unwrap();
        assert!(s.key.is_file() && s.cert.is_file());
        let mut i = inputs(d.path());
        i.key = Some("/no/such/path.key".into());
        assert!(plan(&i).signer.is_none());
        assert!(!Path::new("/no/such").exists());
        let mut i = inputs(d.path());
        i.key = Some(d.path().join("k2"));
        i.cert = Some("/no/such/path.crt".into());
        assert!(plan(&i).signer.is_none());
        assert!(
            d.path().join("k2").exists(),
            "the key is written even when the certificate cannot be"
        );
    }

    #[test]
    fn debian_sign_file_is_the_kbuild_one() {
        assert_eq!(
            default_sign_file(Some(Family::Debian), "6.1.0-56-amd64"),
            Some(PathBuf::from("/usr/lib/linux-kbuild-6.1/scripts/sign-file"))
        );
        assert_eq!(default_sign_file(Some(Family::Arch), "6.6.1-arch1-1"), None);
    }
}
