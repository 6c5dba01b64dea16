//! `kernel_prerm` and `kernel_preinst`, dkms's entry points for a kernel
//! that is being removed or upgraded: every module built for it (for
//! kernel_preinst, every AUTOINSTALL module) is uninstalled and unbuilt,
//! with one depmod at the end; registrations stay. modsync's own hooks use
//! the same for a kernel that goes away.

use super::autoinstall::one_kernel;
use super::remove::{unbuild_one, uninstall_one};
use super::{finish, Cx, Target};
use crate::error::code;
use crate::kernel::Kernel;
use crate::run::Change;
use crate::state::history::{Event, ResultKind};
use crate::ui::Sink;
use anyhow::Result;
use std::collections::BTreeMap;

/// Uninstalls and unbuilds every module version built for the kernel
/// (`only_autoinstall`: those with AUTOINSTALL=yes). Returns what happened
/// to each: removed, or failed with its exit code.
pub fn drop_kernel(cx: &Cx, k: &Kernel, only_autoinstall: bool, sink: &dyn Sink) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    let mut changes: BTreeMap<String, Change> = BTreeMap::new();
    for (m, v) in cx.tree.combos() {
        if !cx.tree.is_built(&m, &v, &k.release, &k.arch) {
            continue;
        }
        if only_autoinstall {
            let e = cx
                .evaluate(&cx.conf_path(&m, &v), &m, &v, k, false, sink)
                .map_err(anyhow::Error::from)?;
            if !e.usable() {
                return Err(cx.bad_conf(&cx.conf_path(&m, &v), &e, false).into());
            }
            if !e.conf.autoinstall {
                continue;
            }
        }
        sink.err(&format!("modsync: removing {m}/{v} for kernel {}", k.label()));
        let res = uninstall_one(cx, &m, &v, k, sink)
            .map_err(anyhow::Error::from)
            .and_then(|names| {
                changes.entry(k.release.clone()).or_default().removed.extend(names);
                unbuild_one(cx, &m, &v, k, sink)
            });
        let mut event = Event::new(Some(format!("{m}/{v}")), &k.release, ResultKind::Removed);
        if let Err(e) = res {
            sink.error(&format!("{e:#}"));
            event.result = ResultKind::Failed;
            event.code = crate::error::exit_code(&e);
            event.reason = Some(format!("{e:#}"));
        }
        events.push(event);
        sink.out("");
    }
    finish::depmod(cx, &changes, sink);
    finish::initramfs(cx, &changes, sink);
    match super::boot::forget(cx, k) {
        Ok(true) => log::info!("forgot what the boot runs left out for {}", k.label()),
        Ok(false) => {}
        Err(e) => sink.warn(&format!("{e:#}")),
    }
    if k.modules_dir.is_dir() {
        let mut dirs: Vec<_> = walkdir::WalkDir::new(&k.modules_dir)
            .min_depth(1)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_dir())
            .map(|e| e.into_path())
            .collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
    Ok(events)
}

/// `dkms kernel_prerm -k K` / `dkms kernel_preinst -k K`.
pub fn kernel_hook(cx: &Cx, t: &Target, verb: &str, sink: &dyn Sink) -> Result<i32> {
    let (r, a) = one_kernel(t, verb, true)?;
    super::require_root()?;
    let _lock = cx.lock(sink)?;
    let failed: Vec<String> = drop_kernel(cx, &cx.kernel(&r, &a), verb == "kernel_preinst", sink)?
        .into_iter()
        .filter(|e| e.result == ResultKind::Failed)
        .map(|e| format!("{}({})", e.module.unwrap_or_default(), e.code))
        .collect();
    if !failed.is_empty() {
        sink.error(&format!("{verb} for kernel {r} ({a}) failed for {}", failed.join(" ")));
        return Ok(code::KERNEL_HOOK_FAILED);
    }
    Ok(0)
}
