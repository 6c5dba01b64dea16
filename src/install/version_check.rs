//! dkms's version sanity check before a module is installed: when the
//! kernel's module tree (its own modules and those installed there, by
//! modsync or dkms too) already holds one module of the same name whose
//! version is newer than ours, or the very same module (dkms 3.0: the same
//! version string), ours is not installed unless `--force` (`--force-version-override` skips only the
//! comparison). A module obsoleted by the kernel (OBSOLETE_BY) is refused
//! too. Pure: the caller reads the modules.

use crate::kernel::modinfo::{compare, Comparison, ModInfo};
use crate::kernel::version;
use std::cmp::Ordering;
use std::path::PathBuf;

/// The facts about one module to install.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// `name.ko[.ext]`, for messages.
    pub file: &'a str,
    pub kernel: &'a str,
    pub obsolete_by: Option<&'a str>,
    /// Every module of that name under `/lib/modules/K`.
    pub found: &'a [PathBuf],
    /// The one found module's info (when exactly one was found and readable).
    pub theirs: Option<&'a ModInfo>,
    pub ours: Option<&'a ModInfo>,
    /// The one found module is byte-identical to ours.
    pub identical_files: bool,
    pub force: bool,
    pub force_version_override: bool,
    /// dkms 3.0: the same version string (srcversion aside) is refused too.
    pub refuse_same_version: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Install,
    /// Install, after this warning.
    InstallWarned(String),
    /// Leave the module out, and say why.
    Refuse(String),
}

fn shown(v: &str) -> &str {
    if v.is_empty() {
        "no version"
    } else {
        v
    }
}

/// The decision.
pub fn check(f: &Facts) -> Verdict {
    if let (Some(obs), false) = (f.obsolete_by, f.force) {
        if version::compare(f.kernel, obs) != Ordering::Less {
            return Verdict::Refuse(format!(
                "{} is obsolete from kernel {obs} on (OBSOLETE_BY) and is not installed for {} (use --force to install it anyway)",
                f.file, f.kernel
            ));
        }
    }
    if f.found.is_empty() || f.force_version_override {
        return Verdict::Install;
    }
    if f.found.len() > 1 {
        return Verdict::InstallWarned(format!(
            "kernel {} has {} modules named {}; their versions are not compared with this one",
            f.kernel,
            f.found.len(),
            f.file
        ));
    }
    if f.force {
        return Verdict::Install;
    }
    let existing = f.found[0].display();
    match compare(f.theirs, f.ours) {
        Comparison::FirstNewer => Verdict::Refuse(format!(
            "{} is not installed for kernel {}: {existing} has version {}, newer than this one's {} (use --force to install it anyway)",
            f.file,
            f.kernel,
            shown(&f.theirs.map(|i| i.version.clone()).unwrap_or_default()),
            shown(&f.ours.map(|i| i.version.clone()).unwrap_or_default()),
        )),
        Comparison::Identical => {
            let ours = f.ours.cloned().unwrap_or_default();
            if f.refuse_same_version || !ours.version.is_empty() || !ours.srcversion.is_empty() || f.identical_files {
                Verdict::Refuse(format!(
                    "{existing} is already installed ({}); use --force to install over it",
                    if ours.version.is_empty() { "an unversioned module".to_string() } else { format!("version {}", ours.version) }
                ))
            } else {
                Verdict::Install
            }
        }
        Comparison::SameVersion if f.refuse_same_version => Verdict::Refuse(format!(
            "{} is not installed for kernel {}: its version ({}) is the same as that of {existing}, which stays (use --force to install it anyway)",
            f.file,
            f.kernel,
            shown(&f.ours.map(|i| i.version.clone()).unwrap_or_default()),
        )),
        Comparison::SameVersion | Comparison::FirstOlder | Comparison::Unknown => Verdict::Install,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i(v: &str, s: &str) -> ModInfo {
        ModInfo {
            version: v.into(),
            srcversion: s.into(),
        }
    }

    fn facts<'a>(found: &'a [PathBuf], theirs: Option<&'a ModInfo>, ours: Option<&'a ModInfo>) -> Facts<'a> {
        Facts {
            file: "foo.ko",
            kernel: "6.1.0-56-amd64",
            obsolete_by: None,
            found,
            theirs,
            ours,
            identical_files: false,
            force: false,
            force_version_override: false,
            refuse_same_version: false,
        }
    }

    #[test]
    fn decisions_follow_dkms() {
        let one = [PathBuf::from("/lib/modules/K/updates/dkms/foo.ko")];
        let two = [one[0].clone(), PathBuf::from("/lib/modules/K/kernel/foo.ko")];
        let (v1, v2) = (i("1.0", "A"), i("2.0", "B"));
        assert_eq!(check(&facts(&[], None, Some(&v1))), Verdict::Install);
        assert!(matches!(check(&facts(&one, Some(&v2), Some(&v1))), Verdict::Refuse(m) if m.contains("newer")));
        assert_eq!(check(&facts(&one, Some(&v1), Some(&v2))), Verdict::Install);
        assert!(
            matches!(check(&facts(&one, Some(&v1), Some(&v1))), Verdict::Refuse(m) if m.contains("already installed"))
        );
        assert_eq!(
            check(&facts(&one, Some(&v1), Some(&i("1.0", "other")))),
            Verdict::Install
        );
        assert!(matches!(
            check(&facts(&two, Some(&v2), Some(&v1))),
            Verdict::InstallWarned(_)
        ));
        let unversioned = i("", "");
        assert_eq!(
            check(&facts(&one, Some(&unversioned), Some(&unversioned))),
            Verdict::Install,
            "different unversioned files"
        );
        let mut f = facts(&one, Some(&unversioned), Some(&unversioned));
        f.identical_files = true;
        assert!(matches!(check(&f), Verdict::Refuse(m) if m.contains("unversioned")));
        // dkms 3.0: the same version string is enough, unversioned included
        // (gost-crypto's streebog_generic beside the kernel's own)
        for (theirs, ours) in [(&v1, i("1.0", "other")), (&unversioned, i("", "other"))] {
            let mut f = facts(&one, Some(theirs), Some(&ours));
            f.refuse_same_version = true;
            assert!(
                matches!(check(&f), Verdict::Refuse(m) if m.contains("the same as")),
                "{ours:?}"
            );
            f.force = true;
            assert_eq!(check(&f), Verdict::Install);
        }
        let mut f = facts(&one, Some(&v2), Some(&v1));
        f.force_version_override = true;
        assert_eq!(check(&f), Verdict::Install);
        f.force_version_override = false;
        f.force = true;
        assert_eq!(check(&f), Verdict::Install);
    }

    #[test]
    fn obsolete_modules_are_refused_unless_forced() {
        let mut f = facts(&[], None, None);
        f.obsolete_by = Some("6.0");
        assert!(matches!(check(&f), Verdict::Refuse(m) if m.contains("OBSOLETE_BY")));
        f.obsolete_by = Some("99.0");
        assert_eq!(check(&f), Verdict::Install);
        f.obsolete_by = Some("6.0");
        f.force = true;
        assert_eq!(check(&f), Verdict::Install);
    }
}
