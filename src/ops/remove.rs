//! `uninstall`, `unbuild` and `remove`, as dkms does them: for each kernel
//! (`-k`, or with `--all` every kernel the version is built for) the
//! version is uninstalled where it is installed, and for unbuild and remove
//! its build is deleted; `remove` then deletes the version from the tree
//! when no build is left (and the module when no version is left). Under
//! `--rpm_safe_upgrade`, a remove that is the second half of an RPM upgrade
//! of the same version does nothing.

use super::{finish, Cx, Target};
use crate::error::{code, fail, Failure};
use crate::install::{self, uninstall};
use crate::kernel::Kernel;
use crate::run::Change;
use crate::state::journal::Journal;
use crate::sys::fs::{is_temp_name, remove_within, sorted_names};
use crate::ui::Sink;
use anyhow::Result;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Teardown {
    Uninstall,
    Unbuild,
    Remove,
}

/// Uninstalls m/v from a kernel when it is the installed version; the
/// message dkms prints otherwise. Returns the names taken out.
pub fn uninstall_one(cx: &Cx, m: &str, v: &str, k: &Kernel, sink: &dyn Sink) -> Result<Vec<String>, Failure> {
    let conf_path = cx.conf_path(m, v);
    if !cx.tree.is_installed(m, v, &k.release, &k.arch) {
        // like dkms, say nothing where BUILD_EXCLUSIVE may explain the absence
        let quiet = cx
            .evaluate(&conf_path, m, v, k, false, &crate::ui::Buffered::default())
            .is_ok_and(|e| e.conf.has_exclusive);
        if !quiet {
            sink.out(&format!(
                "{m}/{v} is not installed for kernel {}; nothing to uninstall.",
                k.label()
            ));
        }
        return Ok(Vec::new());
    }
    let e = cx.evaluate(&conf_path, m, v, k, false, sink)?;
    if !e.usable() {
        return Err(cx.bad_conf(&conf_path, &e, false));
    }
    let target = install::Target {
        tree: &cx.tree,
        module: m,
        version: v,
        kernel: k,
        conf: &e.conf,
        compression: k.module_compression(),
    };
    let vars = cx.job_vars(m, v, k, &e);
    let scripts = install::ScriptEnv {
        source_dir: cx.tree.source_link(m, v),
        overrides: cx.compat().etc_overrides().then(|| cx.settings.etc_dkms().join(m)),
        vars: &vars,
    };
    let journal = Journal::new(&cx.settings.dkms_tree);
    Ok(uninstall::uninstall(&target, &install::Options::default(), &scripts, &journal, sink)?.names)
}

/// Deletes the build of m/v for a kernel (`m/v/K/A`, and `m/v/K` when it is
/// left empty); false when there was none.
pub fn unbuild_one(cx: &Cx, m: &str, v: &str, k: &Kernel, sink: &dyn Sink) -> Result<bool> {
    if !cx.tree.is_built(m, v, &k.release, &k.arch) {
        sink.out(&format!(
            "{m}/{v} is not built for kernel {}; nothing to unbuild.",
            k.label()
        ));
        return Ok(false);
    }
    remove_within(&cx.tree.root, &cx.tree.build_result(m, v, &k.release, &k.arch))?;
    remove_within(&cx.tree.root, &cx.tree.failed_dir(m, v, &k.release, &k.arch))?;
    let kdir = cx.tree.kernel_dir(m, v, &k.release);
    if !sorted_names(&kdir).iter().any(|n| kdir.join(n).is_dir()) {
        remove_within(&cx.tree.root, &kdir)?;
    }
    Ok(true)
}

/// Deletes m/v from the tree when no build is left in it, and the module
/// when nothing is left of it; true when the version went.
pub fn forget_if_unbuilt(cx: &Cx, m: &str, v: &str, sink: &dyn Sink) -> Result<bool> {
    let vdir = cx.tree.version_dir(m, v);
    let kept = ["build", "tarball", "driver_disk", "rpm", "deb", "source"];
    let left = sorted_names(&vdir)
        .into_iter()
        .filter(|n| !n.starts_with('.') && !kept.contains(&n.as_str()))
        .any(|n| vdir.join(n).is_dir());
    if left {
        return Ok(false);
    }
    sink.out(&format!("Deleting module {m}/{v} completely from the DKMS tree."));
    remove_within(&cx.tree.root, &vdir)?;
    let mdir = cx.tree.module_dir(m);
    if sorted_names(&mdir).iter().all(|n| n.starts_with('.')) {
        remove_within(&cx.tree.root, &mdir)?;
    }
    Ok(true)
}

/// Temporaries and empty directories a killed build left in m/v (dkms's remove does the same).
fn tidy(cx: &Cx, m: &str, v: &str) {
    let vdir = cx.tree.version_dir(m, v);
    for k in sorted_names(&vdir) {
        let kd = vdir.join(&k);
        for a in sorted_names(&kd) {
            if is_temp_name(&a) {
                let _ = remove_within(&cx.tree.root, &kd.join(a));
            }
        }
        if kd.is_dir() && sorted_names(&kd).is_empty() && k != "build" {
            let _ = std::fs::remove_dir(&kd);
        }
    }
}

/// The kernels of `--all`: every one m/v is built for, in version order.
pub fn all_kernels(cx: &Cx, m: &str, v: &str) -> Vec<(String, String)> {
    let mut ks = cx.tree.built(m, v, None, None);
    ks.sort_by(|a, b| crate::kernel::version::compare(&format!("{}/{}", a.0, a.1), &format!("{}/{}", b.0, b.1)));
    ks
}

pub fn teardown(cx: &Cx, t: &Target, what: Teardown, sink: &dyn Sink) -> Result<i32> {
    let verb = match what {
        Teardown::Uninstall => "uninstall",
        Teardown::Unbuild => "unbuild",
        Teardown::Remove => "remove",
    };
    let (m, v) = cx.module_version(t, verb)?;
    if cx.compat().broken_state() {
        cx.refuse_broken(&m, &v)?;
    }
    cx.refuse_absent(&m, &v)?;
    if what == Teardown::Uninstall {
        super::require_root()?;
    }
    let _lock = cx.lock(sink)?;
    let kernels = if t.all {
        all_kernels(cx, &m, &v)
    } else {
        t.kernels.clone()
    };
    if what == Teardown::Remove {
        tidy(cx, &m, &v);
        if cx.opts.rpm_safe_upgrade && super::add::take_rpm_lock(cx, &m, &v) {
            sink.warn(&format!("not removing {m}/{v}: this is the second half of an RPM upgrade of the same version (--rpm_safe_upgrade)"));
            return Ok(0);
        }
    }
    let mut changes: BTreeMap<String, Change> = BTreeMap::new();
    for (i, (r, a)) in kernels.iter().enumerate() {
        let k = cx.kernel(r, a);
        if i > 0 && what != Teardown::Remove {
            sink.out("");
        }
        let names = uninstall_one(cx, &m, &v, &k, sink).map_err(anyhow::Error::from)?;
        changes.entry(r.clone()).or_default().removed.extend(names);
        if what != Teardown::Uninstall {
            unbuild_one(cx, &m, &v, &k, sink)?;
        }
        if what == Teardown::Remove {
            sink.out("");
        }
    }
    let mut rc = finish::depmod(cx, &changes, sink);
    finish::initramfs(cx, &changes, sink);
    if what == Teardown::Remove {
        forget_if_unbuilt(cx, &m, &v, sink)?;
    }
    if rc == 0 {
        finish::post_transaction(cx, &kernels.first().map(|k| k.0.clone()).unwrap_or_default(), sink);
    } else {
        rc = code::INSTALL_FAILED;
    }
    Ok(rc)
}

/// Refuses `--all` where dkms does.
pub fn no_all(t: &Target, verb: &str) -> Result<()> {
    if t.all {
        return Err(fail(code::REFUSED, format!("{verb} does not accept --all")));
    }
    Ok(())
}
