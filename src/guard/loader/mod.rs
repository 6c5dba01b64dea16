//! The boot loaders the guard can steer, what it changed in each (a
//! [`Change`], kept in the guard's record so that lifting undoes exactly
//! that), and the commands it runs in the system's root (`chroot` when the
//! root is not `/`).

pub mod grub;
pub mod grubby;
pub mod systemd_boot;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The boot loader in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loader {
    /// GRUB configured by /etc/default/grub and update-grub (Debian, Ubuntu).
    Grub,
    /// GRUB with BLS entries and grubby (Fedora, RHEL).
    Grubby,
    /// systemd-boot, its loader.conf on this ESP.
    SystemdBoot(PathBuf),
}

impl Loader {
    /// Its name in messages and the record.
    pub fn name(&self) -> &'static str {
        match self {
            Loader::Grub => "GRUB",
            Loader::Grubby => "GRUB (grubby)",
            Loader::SystemdBoot(_) => "systemd-boot",
        }
    }
}

/// What the guard changed, so that lifting undoes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Change {
    /// `/etc/default/grub.d/zz-modsync-boot-guard.cfg` names this entry.
    GrubDropIn { entry: String },
    /// grubenv's `saved_entry` set to `entry` (it was `previous`).
    GrubSaved { entry: String, previous: Option<String> },
    /// `grubby --set-default` to this kernel image.
    Grubby { image: String },
    /// The guard's `default` line in this loader.conf.
    LoaderConf { path: String },
}

/// The loader that boots this root, if one is recognised. grubby's BLS
/// setup is checked before plain GRUB (Fedora has both files).
pub fn detect(root: &Path) -> Option<Loader> {
    if grubby::detect(root) {
        Some(Loader::Grubby)
    } else if grub::detect(root) {
        Some(Loader::Grub)
    } else {
        systemd_boot::detect(root).map(Loader::SystemdBoot)
    }
}

/// Why the default entry is the user's and must not change, if it is.
pub fn user_choice(root: &Path, l: &Loader, ours: Option<&Change>) -> Option<String> {
    match l {
        Loader::Grub => {
            let saved = match ours {
                Some(Change::GrubSaved { entry, .. }) => Some(entry.as_str()),
                _ => None,
            };
            grub::user_choice(root, saved)
        }
        Loader::Grubby => grubby::user_choice(root),
        Loader::SystemdBoot(esp) => systemd_boot::user_choice(root, esp),
    }
}

/// Makes kernel `k` the default; `why` goes into the files it writes.
pub fn hold(root: &Path, l: &Loader, k: &str, why: &str) -> Result<Change> {
    match l {
        Loader::Grub => grub::hold(root, k, why),
        Loader::Grubby => grubby::hold(root, k),
        Loader::SystemdBoot(esp) => systemd_boot::hold(esp, k, why),
    }
}

/// Undoes `change`; `newest` is the kernel that boots afterwards.
pub fn lift(root: &Path, change: &Change, newest: &str) -> Result<()> {
    match change {
        Change::GrubDropIn { .. } | Change::GrubSaved { .. } => grub::lift(root, change),
        Change::Grubby { .. } => grubby::lift(root, change, newest),
        Change::LoaderConf { .. } => systemd_boot::lift(change),
    }
}

fn command_in(root: &Path, argv: &[&str]) -> Command {
    if root == Path::new("/") {
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..]);
        c
    } else {
        let mut c = Command::new("chroot");
        c.arg(root).args(argv);
        c
    }
}

/// Runs a command of the root's own, quietly; fails with its stderr.
pub fn run_in(root: &Path, argv: &[&str]) -> Result<()> {
    crate::sys::cmd::output_ok(command_in(root, argv).stdin(std::process::Stdio::null())).map(|_| ())
}

/// A command's standard output.
pub fn output_in(root: &Path, argv: &[&str]) -> Result<String> {
    let out = crate::sys::cmd::output_ok(command_in(root, argv).stdin(std::process::Stdio::null()))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
