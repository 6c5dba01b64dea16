//! `modsync boot [-k KERNEL]`: the boot-time safety net that
//! `modsync.service` runs. When a kernel arrived while no hook ran (an image
//! copied in by hand, headers installed with the hooks disabled, a build
//! interrupted by a power cut), it builds and installs what is missing for
//! the kernel (default: the running one), then loads the modules it
//! installed.
//!
//! On a normal boot nothing is missing, and that is decided from the state
//! tree alone ([`decide`], pure): every registered module's latest version
//! is installed for the kernel, or the last boot run found it does not want
//! to be (not AUTOINSTALL, or excluded by BUILD_EXCLUSIVE; remembered in
//! `$dkms_tree/.modsync/boot/<K>-<A>`), or its last build for the kernel
//! failed (its make.log is kept): the same source against the same kernel
//! would fail again and hold every boot, so only the hooks, `modsync
//! autoinstall` and a boot that builds something else retry it. No
//! dkms.conf is read, no process is started and no lock is taken then. A
//! hold of the boot guard ([`crate::guard`]) is said at every boot; after
//! installing something, the guard looks again.

use super::autoinstall::{self, Summary};
use super::{require_root, Cx, Target};
use crate::kernel::Kernel;
use crate::sys::fs::write_atomic;
use crate::ui::Sink;
use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

/// What the boot run has to do for one kernel.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Every registered module is installed, or known not to want to be.
    NothingMissing,
    /// These `m/v` are neither: autoinstall runs.
    Missing(Vec<String>),
}

/// A registered module's latest version as the boot run sees it for one kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub version: String,
    pub installed: bool,
    /// The last build of this version for the kernel failed.
    pub failed: bool,
}

/// The boot decision over plain values: `latest` maps each registered
/// module to what is known of its latest version for the kernel; `settled`
/// holds the `m/v` the last boot run left out on purpose. Pure.
pub fn decide(latest: &BTreeMap<String, Seen>, settled: &BTreeSet<String>) -> Decision {
    let missing: Vec<String> = latest
        .iter()
        .filter(|(_, s)| !s.installed && !s.failed)
        .map(|(m, s)| format!("{m}/{}", s.version))
        .filter(|mv| !settled.contains(mv))
        .collect();
    if missing.is_empty() {
        Decision::NothingMissing
    } else {
        Decision::Missing(missing)
    }
}

/// The `m/v` an autoinstall left uninstalled on purpose: not installed now,
/// and neither failed nor waiting for a dependency. Pure.
pub fn settled_after(latest_now: &BTreeMap<String, Seen>, s: &Summary) -> BTreeSet<String> {
    let failed: BTreeSet<String> = s.failed.iter().map(|(m, _)| m.clone()).collect();
    let waiting: BTreeSet<&str> = s.missing.iter().chain(&s.deferred).map(|(mv, _)| mv.as_str()).collect();
    latest_now
        .iter()
        .map(|(m, seen)| (m, format!("{m}/{}", seen.version), seen))
        .filter(|(m, mv, seen)| !seen.installed && !failed.contains(*m) && !waiting.contains(mv.as_str()))
        .map(|(_, mv, _)| mv)
        .collect()
}

/// What the tree says of each registered module's latest version for `k`.
fn latest_installed(cx: &Cx, k: &Kernel) -> BTreeMap<String, Seen> {
    autoinstall::registered(cx)
        .latest
        .into_iter()
        .map(|(m, v)| {
            let seen = Seen {
                installed: cx.tree.is_installed(&m, &v, &k.release, &k.arch),
                failed: cx.tree.failed_dir(&m, &v, &k.release, &k.arch).is_dir(),
                version: v,
            };
            (m, seen)
        })
        .collect()
}

/// Where the boot run remembers what it left out for K/A.
fn settled_file(cx: &Cx, k: &Kernel) -> PathBuf {
    cx.tree
        .private_dir()
        .join("boot")
        .join(format!("{}-{}", k.release, k.arch))
}

fn read_settled(cx: &Cx, k: &Kernel) -> BTreeSet<String> {
    std::fs::read_to_string(settled_file(cx, k))
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

fn write_settled(cx: &Cx, k: &Kernel, settled: &BTreeSet<String>) -> Result<()> {
    let path = settled_file(cx, k);
    let dir = path.parent().expect("a file under boot/");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let text: String = settled.iter().map(|mv| format!("{mv}\n")).collect();
    write_atomic(&path, text.as_bytes(), 0o644)
}

/// Forgets what the boot runs left out for K/A: the kernel is going (or
/// being reinstalled), so a later boot run of it looks at every module
/// again. Returns whether there was something to forget.
pub fn forget(cx: &Cx, k: &Kernel) -> Result<bool> {
    let path = settled_file(cx, k);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// `modsync boot`: returns the exit code (autoinstall's; 0 when nothing is
/// missing, when automatic installation is off, or when the kernel has no headers).
pub fn boot(cx: &Cx, t: &Target, load: bool, sink: &dyn Sink) -> Result<i32> {
    let (r, a) = autoinstall::one_kernel(t, "boot", false)?;
    let k = cx.kernel(&r, &a);
    // a hold of the boot guard is said at every boot (one file read)
    if let Ok(Some(held)) = crate::guard::record::read(&cx.settings.dkms_tree) {
        sink.err(&crate::guard::describe(&held));
    }
    let no_auto = cx.settings.etc_dkms().join("no-autoinstall");
    if no_auto.exists() {
        log::info!("{} exists: nothing to do at boot", no_auto.display());
        return Ok(0);
    }
    let missing = match decide(&latest_installed(cx, &k), &read_settled(cx, &k)) {
        Decision::NothingMissing => {
            log::info!("every registered module is installed for {}", k.label());
            return Ok(0);
        }
        Decision::Missing(l) => l,
    };
    if !k.has_headers() {
        let hint = cx
            .distro
            .as_ref()
            .map(|d| {
                format!(
                    "; `{}` installs them",
                    d.headers_hint(&k.release, &cx.settings.install_tree)
                )
            })
            .unwrap_or_default();
        sink.out(&format!(
            "{} {} not installed for kernel {}, but its headers are missing ({} has no include/){hint}.",
            missing.join(" "),
            if missing.len() == 1 { "is" } else { "are" },
            k.release,
            k.headers_dir.display()
        ));
        return Ok(0);
    }
    require_root()?;
    let _lock = cx.lock(sink)?;
    sink.out(&format!(
        "Not installed for kernel {}: {}; building.",
        k.release,
        missing.join(" ")
    ));
    let before = latest_installed(cx, &k);
    let s = autoinstall::for_kernel(cx, &k, sink)?;
    autoinstall::report(&k.release, &s, sink);
    let after = latest_installed(cx, &k);
    write_settled(cx, &k, &settled_after(&after, &s))?;
    let new: Vec<(String, String)> = after
        .into_iter()
        .filter(|(m, now)| now.installed && !before.get(m).is_some_and(|was| was.installed))
        .map(|(m, now)| (m, now.version))
        .collect();
    if !new.is_empty() {
        crate::guard::after_change(cx, sink);
    }
    if load && r == crate::kernel::running_release() {
        load_modules(cx, &k, &new, sink);
    } else if !new.is_empty() {
        log::info!(
            "{} is not the running kernel (or --no-load): nothing is loaded",
            k.release
        );
    }
    Ok(s.code)
}

/// `modprobe -b -a` the kernel modules that `new` installed (the
/// blacklist applies, as for udev's own loads).
fn load_modules(cx: &Cx, k: &Kernel, new: &[(String, String)], sink: &dyn Sink) {
    let names: Vec<String> = new
        .iter()
        .flat_map(|(m, v)| cx.tree.built_files(m, v, &k.release, &k.arch))
        .filter_map(|f| f.split(".ko").next().map(str::to_string))
        .collect();
    if names.is_empty() {
        return;
    }
    let mut c = Command::new("modprobe");
    c.args(["-b", "-a"]).args(&names);
    match crate::sys::cmd::status_ok(&mut c) {
        Ok(()) => sink.out(&format!("Loaded {}.", names.join(" "))),
        Err(e) => sink.warn(&format!("{e:#}; the new modules load at the next boot")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latest(entries: &[(&str, &str, bool)]) -> BTreeMap<String, Seen> {
        entries
            .iter()
            .map(|(m, v, i)| {
                let seen = Seen {
                    version: v.to_string(),
                    installed: *i,
                    failed: false,
                };
                (m.to_string(), seen)
            })
            .collect()
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn nothing_missing_when_every_latest_version_is_installed() {
        let l = latest(&[("a", "1.0", true), ("b", "2.3", true)]);
        assert_eq!(decide(&l, &set(&[])), Decision::NothingMissing);
        assert_eq!(decide(&BTreeMap::new(), &set(&[])), Decision::NothingMissing);
    }

    #[test]
    fn a_module_not_installed_is_missing_unless_settled_at_that_version() {
        let l = latest(&[("a", "1.0", true), ("b", "2.3", false), ("c", "1", false)]);
        assert_eq!(
            decide(&l, &set(&[])),
            Decision::Missing(vec!["b/2.3".into(), "c/1".into()])
        );
        assert_eq!(decide(&l, &set(&["b/2.3", "c/1"])), Decision::NothingMissing);
        // a newer version of a settled module is looked at again
        assert_eq!(
            decide(&l, &set(&["b/2.2", "c/1"])),
            Decision::Missing(vec!["b/2.3".into()])
        );
    }

    #[test]
    fn a_build_that_failed_for_the_kernel_is_not_retried_by_itself() {
        let mut l = latest(&[("a", "1.0", true), ("razer", "3.5.1", false)]);
        l.get_mut("razer").unwrap().failed = true;
        assert_eq!(decide(&l, &set(&[])), Decision::NothingMissing);
        l.insert("b".into(), latest(&[("b", "1", false)]).remove("b").unwrap());
        assert_eq!(decide(&l, &set(&[])), Decision::Missing(vec!["b/1".into()]));
    }

    #[test]
    fn failures_and_waiting_modules_are_not_settled() {
        let now = latest(&[
            ("ok", "1", true),
            ("noauto", "1", false),
            ("broken", "3", false),
            ("waits", "2", false),
            ("deferred", "4", false),
        ]);
        let s = Summary {
            installed: vec!["ok".into()],
            failed: vec![("broken".into(), 10)],
            missing: vec![("waits/2".into(), vec!["broken".into()])],
            deferred: vec![("deferred/4".into(), vec!["later".into()])],
            code: 11,
            ..Default::default()
        };
        assert_eq!(settled_after(&now, &s), set(&["noauto/1"]));
    }
}
