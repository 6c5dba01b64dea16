//! GRUB with Boot Loader Specification entries, as Fedora and RHEL set it
//! up: `grubby --set-default` chooses the entry (it stores `saved_entry`).
//! `UPDATEDEFAULT=no` in `/etc/sysconfig/kernel` means the user keeps the
//! default themselves, and the guard leaves it alone.

use super::{output_in, run_in, Change};
use anyhow::Result;
use std::path::Path;

/// grubby and BLS entries are there.
pub fn detect(root: &Path) -> bool {
    root.join("boot/loader/entries").is_dir()
        && ["usr/sbin/grubby", "sbin/grubby", "usr/bin/grubby"]
            .iter()
            .any(|p| root.join(p).exists())
}

/// `UPDATEDEFAULT=no` in the sysconfig text. Pure.
pub fn keeps_default(sysconfig_kernel: &str) -> bool {
    sysconfig_kernel.lines().any(|l| {
        l.trim()
            .strip_prefix("UPDATEDEFAULT=")
            .is_some_and(|v| v.trim_matches('"').eq_ignore_ascii_case("no"))
    })
}

/// Why the default is the user's, if it is.
pub fn user_choice(root: &Path) -> Option<String> {
    keeps_default(&std::fs::read_to_string(root.join("etc/sysconfig/kernel")).unwrap_or_default())
        .then(|| "UPDATEDEFAULT=no in /etc/sysconfig/kernel: the default kernel is yours to choose".to_string())
}

/// The kernel image grubby names a kernel by.
pub fn image(k: &str) -> String {
    format!("/boot/vmlinuz-{k}")
}

/// Makes kernel `k` the default.
pub fn hold(root: &Path, k: &str) -> Result<Change> {
    run_in(root, &["grubby", &format!("--set-default={}", image(k))])?;
    Ok(Change::Grubby { image: image(k) })
}

/// Back to the newest kernel, unless someone chose another since.
pub fn lift(root: &Path, change: &Change, newest: &str) -> Result<()> {
    let Change::Grubby { image: ours } = change else {
        return Ok(());
    };
    if output_in(root, &["grubby", "--default-kernel"])?.trim() != ours {
        return Ok(());
    }
    run_in(root, &["grubby", &format!("--set-default={}", image(newest))])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updatedefault_no_keeps_the_users_default() {
        assert!(keeps_default("UPDATEDEFAULT=no\nDEFAULTKERNEL=kernel-core\n"));
        assert!(keeps_default("UPDATEDEFAULT=\"NO\"\n"));
        assert!(!keeps_default("UPDATEDEFAULT=yes\n"));
        assert!(!keeps_default(""));
        assert_eq!(image("6.9.1-200.fc40.x86_64"), "/boot/vmlinuz-6.9.1-200.fc40.x86_64");
    }
}
