//! The boot guard's decision over plain values: which kernel the boot
//! loader should start, given what each installed kernel lacks of the
//! modules the system depends on. Pure.

use crate::kernel::version::compare;
use std::cmp::Ordering;
use std::collections::BTreeSet;

/// One bootable kernel and the required modules it does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelFacts {
    pub release: String,
    pub missing: BTreeSet<String>,
}

/// What the boot loader's default should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to guard: no kernel, or nothing required.
    Nothing,
    /// The newest kernel has every required module: it boots (any hold lifts).
    Newest { kernel: String },
    /// The newest kernel lacks `missing`: `kernel` (the newest that has them
    /// all) stays the default.
    Hold {
        kernel: String,
        newest: String,
        missing: BTreeSet<String>,
    },
    /// No kernel has them all: holding would not help, the newest boots.
    NoneComplete { newest: String, missing: BTreeSet<String> },
}

/// Normalises a module name as the kernel does (`-` and `_` are the same).
pub fn module_key(name: &str) -> String {
    name.replace('-', "_")
}

/// The modules the system depends on: the `required` setting, and the
/// modules modsync or dkms installed for the running kernel that are loaded
/// now or are in its initramfs (`managed` ∩ (`loaded` ∪ `in_initramfs`)).
pub fn required(
    setting: &[String],
    managed: &BTreeSet<String>,
    loaded: &BTreeSet<String>,
    in_initramfs: &BTreeSet<String>,
) -> BTreeSet<String> {
    let managed: BTreeSet<String> = managed.iter().map(|m| module_key(m)).collect();
    let used = |s: &BTreeSet<String>| -> BTreeSet<String> {
        s.iter()
            .map(|m| module_key(m))
            .filter(|m| managed.contains(m))
            .collect()
    };
    let mut out: BTreeSet<String> = setting.iter().map(|m| module_key(m)).collect();
    out.extend(used(loaded));
    out.extend(used(in_initramfs));
    out
}

/// The decision for these kernels (in any order).
pub fn plan(kernels: &[KernelFacts]) -> Plan {
    let mut ks: Vec<&KernelFacts> = kernels.iter().collect();
    ks.sort_by(|a, b| compare(&b.release, &a.release));
    let Some(newest) = ks.first() else {
        return Plan::Nothing;
    };
    if newest.missing.is_empty() {
        return Plan::Newest {
            kernel: newest.release.clone(),
        };
    }
    match ks.iter().find(|k| k.missing.is_empty()) {
        Some(k) if compare(&k.release, &newest.release) == Ordering::Less => Plan::Hold {
            kernel: k.release.clone(),
            newest: newest.release.clone(),
            missing: newest.missing.clone(),
        },
        _ => Plan::NoneComplete {
            newest: newest.release.clone(),
            missing: newest.missing.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(release: &str, missing: &[&str]) -> KernelFacts {
        KernelFacts {
            release: release.into(),
            missing: missing.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn set(s: &[&str]) -> BTreeSet<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_newest_complete_kernel_is_held() {
        let ks = [
            k("6.1.0-54-amd64", &[]),
            k("6.1.0-58-amd64", &["zfs"]),
            k("6.1.0-56-amd64", &["zfs"]),
        ];
        assert_eq!(
            plan(&ks),
            Plan::Hold {
                kernel: "6.1.0-54-amd64".into(),
                newest: "6.1.0-58-amd64".into(),
                missing: set(&["zfs"]),
            }
        );
    }

    #[test]
    fn a_complete_newest_kernel_boots() {
        let ks = [k("6.1.0-54-amd64", &["nvidia"]), k("6.1.0-56-amd64", &[])];
        assert_eq!(
            plan(&ks),
            Plan::Newest {
                kernel: "6.1.0-56-amd64".into()
            }
        );
        assert_eq!(plan(&[]), Plan::Nothing);
    }

    #[test]
    fn no_complete_kernel_holds_nothing() {
        let ks = [k("6.1.0-54-amd64", &["zfs"]), k("6.1.0-56-amd64", &["zfs", "nvidia"])];
        assert_eq!(
            plan(&ks),
            Plan::NoneComplete {
                newest: "6.1.0-56-amd64".into(),
                missing: set(&["nvidia", "zfs"]),
            }
        );
    }

    #[test]
    fn required_is_the_setting_and_what_modsync_installed_that_is_in_use() {
        let r = required(
            &["zfs".into(), "nvidia-drm".into()],
            &set(&["vboxdrv", "v4l2loopback", "nvidia_drm"]),
            &set(&["ext4", "vboxdrv"]),
            &set(&["v4l2loopback", "ahci"]),
        );
        assert_eq!(r, set(&["nvidia_drm", "v4l2loopback", "vboxdrv", "zfs"]));
    }
}
