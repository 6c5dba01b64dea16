//! Secure Boot state and Machine Owner Key (MOK) enrolment, explained.
//!
//! With UEFI Secure Boot on, the kernel (locked down) only loads modules signed by a key
//! it trusts: its own build key, or a MOK that shim passed on after the owner enrolled it.
//! modsync signs modules with the MOK key (see `sign::mok`), so on such a machine
//! that key's certificate has to be enrolled once: `mokutil --import` queues it, and
//! shim's MokManager asks for confirmation (and the one-time password) at the next boot.
//!
//! [`probe`] reads the state; [`explain`] turns it into instructions. The EFI variables
//! are read from efivarfs (`/sys/firmware/efi/efivars/NAME-GUID`: 4 attribute bytes,
//! then the data) or the older sysfs interface (`/sys/firmware/efi/vars/NAME-GUID/data`),
//! under a root prefix so tests can use fixture trees.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The EFI global variable GUID under which SecureBoot and SetupMode live.
const EFI_GLOBAL_GUID: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// What the machine says about Secure Boot. `None` means "could not be determined".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecureBootState {
    /// Booted through UEFI (`/sys/firmware/efi` exists).
    pub efi: bool,
    /// The SecureBoot variable: firmware enforces Secure Boot.
    pub secure_boot: Option<bool>,
    /// The SetupMode variable: no platform key enrolled (Secure Boot cannot be on).
    pub setup_mode: Option<bool>,
    /// Whether the signing certificate is an enrolled MOK (`mokutil --test-key`).
    pub mok_enrolled: Option<bool>,
}

/// Reads /sys/firmware/efi (root prefix for tests), the
/// SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c efivar (4 attribute bytes then 1 data
/// byte), SetupMode likewise; mok_enrolled from `mokutil --test-key CERT` when mokutil
/// exists (exit 1 + "is already enrolled" => true; "not enrolled" => false), else None.
///
/// mokutil always looks at the running machine, so it is only asked when `root` is `/`
/// (for any other root `mok_enrolled` is None), and only on an EFI system with an
/// existing certificate.
pub fn probe(root: &Path, cert: &Path) -> SecureBootState {
    let efi_dir = root.join("sys/firmware/efi");
    let efi = efi_dir.is_dir();
    let (secure_boot, setup_mode) = if efi {
        (
            read_efi_bool(&efi_dir, "SecureBoot"),
            read_efi_bool(&efi_dir, "SetupMode"),
        )
    } else {
        (None, None)
    };
    let is_host = root.canonicalize().map(|r| r == Path::new("/")).unwrap_or(false);
    let mok_enrolled = if efi && is_host && cert.is_file() {
        find_mokutil().and_then(|m| test_key(&m, cert))
    } else {
        None
    };
    let state = SecureBootState {
        efi,
        secure_boot,
        setup_mode,
        mok_enrolled,
    };
    log::debug!("secure boot state under {}: {state:?}", root.display());
    state
}

/// A human explanation: whether modules must be signed to load, which key signs them
/// (cert path), and exactly what to do: `mokutil --import CERT`, reboot, confirm in
/// MokManager with the one-time password; or that nothing is needed.
pub fn explain(state: &SecureBootState, cert: &Path) -> String {
    let c = shell_quote(&cert.display().to_string());
    let signer = format!("modsync signs modules with the key whose certificate is {c}.");
    let mut s = String::new();
    if !state.efi {
        s.push_str("Secure Boot: not applicable (this system did not boot through UEFI).\n");
        s.push_str(
            "Modules load without a trusted signature unless the kernel enforces signatures \
             (module.sig_enforce=1 on the command line or CONFIG_MODULE_SIG_FORCE=y).\n",
        );
        s.push_str(&signer);
        s.push_str("\nNothing needs to be done.\n");
        return s;
    }
    match state.secure_boot {
        Some(false) => {
            s.push_str("Secure Boot: disabled");
            if state.setup_mode == Some(true) {
                s.push_str(" (the firmware is in setup mode: no platform key is enrolled)");
            }
            s.push_str(".\nModules do not need a trusted signature to load.\n");
            s.push_str(&signer);
            s.push_str("\nNothing needs to be done. If you turn Secure Boot on later, enrol the certificate first:\n");
            push_steps(&mut s, &c);
        }
        Some(true) => {
            s.push_str("Secure Boot: enabled. The kernel only loads modules signed by a key it trusts.\n");
            s.push_str(&signer);
            s.push('\n');
            match state.mok_enrolled {
                Some(true) => {
                    s.push_str("That certificate is enrolled as a Machine Owner Key (MOK): nothing needs to be done.\n")
                }
                Some(false) => {
                    s.push_str(
                        "That certificate is NOT enrolled as a Machine Owner Key (MOK), so the kernel \
                         refuses these modules (\"Key was rejected by service\"). To fix it once:\n",
                    );
                    push_steps(&mut s, &c);
                }
                None => {
                    s.push_str(
                        "Whether that certificate is enrolled as a Machine Owner Key (MOK) could not be \
                         checked (mokutil is not installed; install the mokutil package). \
                         If it is not enrolled, the kernel refuses these modules \
                         (\"Key was rejected by service\"). To enrol it:\n",
                    );
                    push_steps(&mut s, &c);
                }
            }
        }
        None => {
            s.push_str(
                "Secure Boot: unknown (the SecureBoot EFI variable could not be read; is efivarfs \
                 mounted on /sys/firmware/efi/efivars?). Check with: mokutil --sb-state\n",
            );
            s.push_str(&signer);
            s.push_str(
                "\nIf Secure Boot is enabled, the kernel only loads modules signed by a key it trusts; \
                 unless that certificate is already enrolled as a Machine Owner Key (MOK), enrol it:\n",
            );
            push_steps(&mut s, &c);
        }
    }
    s
}

fn push_steps(s: &mut String, c: &str) {
    s.push_str(&format!(
        "  1. Run: mokutil --import {c}\n     \
         It asks for a one-time password; you type it again once, at the next boot.\n  \
         2. Reboot. Before the system starts, shim shows the blue MokManager screen.\n  \
         3. Choose \"Enroll MOK\", \"Continue\", \"Yes\", enter the one-time password, then \"Reboot\".\n  \
         Afterwards `mokutil --test-key {c}` reports that it is already enrolled.\n"
    ));
}

/// Reads a boolean EFI global variable from efivarfs, falling back to the old sysfs
/// `vars/NAME-GUID/data` file (which holds the data without the attribute bytes).
fn read_efi_bool(efi_dir: &Path, name: &str) -> Option<bool> {
    let var = format!("{name}-{EFI_GLOBAL_GUID}");
    if let Ok(bytes) = fs::read(efi_dir.join("efivars").join(&var)) {
        return parse_efivar_bool(&bytes);
    }
    match fs::read(efi_dir.join("vars").join(&var).join("data")) {
        Ok(data) if data.len() == 1 => parse_data_bool(data[0]),
        _ => None,
    }
}

/// An efivarfs file holding a one-byte boolean: 4 attribute bytes, then 0 or 1.
pub fn parse_efivar_bool(bytes: &[u8]) -> Option<bool> {
    match bytes {
        [_, _, _, _, v] => parse_data_bool(*v),
        _ => None,
    }
}

fn parse_data_bool(v: u8) -> Option<bool> {
    match v {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

/// Interprets `mokutil --test-key CERT`: exit status 1 with "is already enrolled" means
/// enrolled; "is not enrolled" means not enrolled (a key only queued by `--import`,
/// "already in the enrollment request", is not enrolled yet); anything else is unknown.
pub fn parse_test_key(exit_code: Option<i32>, output: &str) -> Option<bool> {
    if exit_code == Some(1) && output.contains("is already enrolled") {
        Some(true)
    } else if output.contains("is not enrolled") || output.contains("already in the enrollment request") {
        Some(false)
    } else {
        None
    }
}

fn test_key(mokutil: &Path, cert: &Path) -> Option<bool> {
    let out = match Command::new(mokutil).arg("--test-key").arg(cert).output() {
        Ok(o) => o,
        Err(e) => {
            log::debug!("running {} --test-key: {e}", mokutil.display());
            return None;
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r = parse_test_key(out.status.code(), &text);
    log::debug!(
        "mokutil --test-key {}: {:?} {:?} -> {r:?}",
        cert.display(),
        out.status.code(),
        text.trim()
    );
    r
}

fn find_mokutil() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/bin", "/sbin"].iter().map(PathBuf::from))
        .map(|d| d.join("mokutil"))
        .find(|p| p.is_file())
}

/// Quotes a path for a command line the user will copy, only when needed.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SB: &str = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";
    const SM: &str = "SetupMode-8be4df61-93ca-11d2-aa0d-00e098032b8c";

    /// A fixture root with an EFI dir and the given efivarfs variables.
    fn efi_root(vars: &[(&str, &[u8])]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let ev = d.path().join("sys/firmware/efi/efivars");
        fs::create_dir_all(&ev).unwrap();
        for (name, bytes) in vars {
            fs::write(ev.join(name), bytes).unwrap();
        }
        d
    }

    fn state(efi: bool, sb: Option<bool>, setup: Option<bool>, mok: Option<bool>) -> SecureBootState {
        SecureBootState {
            efi,
            secure_boot: sb,
            setup_mode: setup,
            mok_enrolled: mok,
        }
    }

    #[test]
    fn efivar_bytes() {
        assert_eq!(parse_efivar_bool(&[0x06, 0, 0, 0, 1]), Some(true));
        assert_eq!(parse_efivar_bool(&[0x06, 0, 0, 0, 0]), Some(false));
        assert_eq!(parse_efivar_bool(&[0x06, 0, 0, 0]), None, "attributes only");
        assert_eq!(parse_efivar_bool(&[1]), None, "data without attributes");
        assert_eq!(parse_efivar_bool(&[0x06, 0, 0, 0, 1, 0]), None, "too long");
        assert_eq!(parse_efivar_bool(&[0x06, 0, 0, 0, 7]), None, "not a boolean");
    }

    #[test]
    fn probe_no_efi() {
        let d = tempfile::tempdir().unwrap();
        let s = probe(d.path(), &d.path().join("mok.pub"));
        assert_eq!(s, state(false, None, None, None));
    }

    #[test]
    fn probe_secure_boot_on() {
        let d = efi_root(&[(SB, &[6, 0, 0, 0, 1]), (SM, &[6, 0, 0, 0, 0])]);
        let cert = d.path().join("mok.pub");
        fs::write(&cert, b"cert").unwrap();
        // a fixture root never consults mokutil, even if installed and the cert exists
        assert_eq!(probe(d.path(), &cert), state(true, Some(true), Some(false), None));
    }

    #[test]
    fn probe_setup_mode() {
        let d = efi_root(&[(SB, &[6, 0, 0, 0, 0]), (SM, &[6, 0, 0, 0, 1])]);
        assert_eq!(
            probe(d.path(), Path::new("/x")),
            state(true, Some(false), Some(true), None)
        );
    }

    #[test]
    fn probe_efi_without_readable_vars() {
        let d = efi_root(&[(SB, &[6, 0, 0])]);
        assert_eq!(probe(d.path(), Path::new("/x")), state(true, None, None, None));
    }

    #[test]
    fn probe_legacy_sysfs_vars() {
        let d = tempfile::tempdir().unwrap();
        let v = d.path().join("sys/firmware/efi/vars").join(SB);
        fs::create_dir_all(&v).unwrap();
        fs::write(v.join("data"), [1u8]).unwrap();
        assert_eq!(probe(d.path(), Path::new("/x")).secure_boot, Some(true));
    }

    #[test]
    fn probe_host_efi_matches_sysfs() {
        let s = probe(Path::new("/"), Path::new("/nonexistent/mok.pub"));
        assert_eq!(s.efi, Path::new("/sys/firmware/efi").is_dir());
        assert_eq!(s.mok_enrolled, None, "missing cert cannot be tested");
    }

    #[test]
    fn mokutil_output() {
        assert_eq!(
            parse_test_key(Some(1), "/var/lib/dkms/mok.pub is already enrolled\n"),
            Some(true)
        );
        assert_eq!(
            parse_test_key(Some(0), "/var/lib/dkms/mok.pub is not enrolled\n"),
            Some(false)
        );
        assert_eq!(
            parse_test_key(Some(1), "/var/lib/dkms/mok.pub is already in the enrollment request\n"),
            Some(false)
        );
        assert_eq!(
            parse_test_key(Some(255), "EFI variables are not supported on this system\n"),
            None
        );
        assert_eq!(
            parse_test_key(Some(0), "is already enrolled"),
            None,
            "enrolled needs exit 1"
        );
        assert_eq!(parse_test_key(None, ""), None);
    }

    #[test]
    fn explain_enabled_not_enrolled_gives_the_steps() {
        let cert = Path::new("/var/lib/dkms/mok.pub");
        let t = explain(&state(true, Some(true), Some(false), Some(false)), cert);
        assert!(t.contains("Secure Boot: enabled"), "{t}");
        assert!(t.contains("NOT enrolled"), "{t}");
        assert!(t.contains("mokutil --import /var/lib/dkms/mok.pub\n"), "{t}");
        assert!(t.contains("Reboot"), "{t}");
        assert!(t.contains("MokManager") && t.contains("one-time password"), "{t}");
        assert!(!t.contains("Nothing needs to be done"), "{t}");
    }

    #[test]
    fn explain_enabled_and_enrolled_needs_nothing() {
        let t = explain(
            &state(true, Some(true), Some(false), Some(true)),
            Path::new("/k/mok.pub"),
        );
        assert!(
            t.contains("/k/mok.pub") && t.contains("nothing needs to be done"),
            "{t}"
        );
        assert!(!t.contains("--import"), "{t}");
    }

    #[test]
    fn explain_enabled_unknown_enrolment_mentions_mokutil_package() {
        let t = explain(&state(true, Some(true), None, None), Path::new("/k/mok.pub"));
        assert!(t.contains("mokutil is not installed"), "{t}");
        assert!(t.contains("mokutil --import /k/mok.pub"), "{t}");
    }

    #[test]
    fn explain_disabled_and_no_efi_need_nothing() {
        let cert = Path::new("/k/mok.pub");
        let t = explain(&state(true, Some(false), Some(true), None), cert);
        assert!(
            t.contains("Secure Boot: disabled (the firmware is in setup mode"),
            "{t}"
        );
        assert!(t.contains("Nothing needs to be done"), "{t}");
        let t = explain(&state(false, None, None, None), cert);
        assert!(
            t.contains("did not boot through UEFI") && t.contains("Nothing needs to be done"),
            "{t}"
        );
        assert!(t.contains("/k/mok.pub") && !t.contains("--import"), "{t}");
    }

    #[test]
    fn explain_unknown_state_is_conditional() {
        let t = explain(&state(true, None, None, None), Path::new("/k/mok.pub"));
        assert!(
            t.contains("Secure Boot: unknown") && t.contains("mokutil --sb-state"),
            "{t}"
        );
        assert!(
            t.contains("If Secure Boot is enabled") && t.contains("mokutil --import"),
            "{t}"
        );
    }

    #[test]
    fn explain_quotes_odd_paths() {
        let t = explain(
            &state(true, Some(true), None, Some(false)),
            Path::new("/my keys/it's.der"),
        );
        assert!(t.contains(r"mokutil --import '/my keys/it'\''s.der'"), "{t}");
    }
}
