//! What follows a run, from its record: depmod once per kernel whose tree
//! changed, the initramfs where a changed module belongs in it, loading the
//! new modules for the running kernel (`modprobe_on_install`), the modules
//! to rebuild because a BUILD_DEPENDS changed version (BUILD_DEPENDS_REBUILD),
//! and framework.conf's `post_transaction` command.

use super::Cx;
use crate::build::makelog;
use crate::config::framework;
use crate::error::code;
use crate::install::{depmod, initramfs};
use crate::run::Change;
use crate::state::journal::Journal;
use crate::ui::Sink;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// Runs depmod for the kernels whose trees changed (and any still marked);
/// returns 0, or dkms's 6 when depmod failed.
pub fn depmod(cx: &Cx, changes: &BTreeMap<String, Change>, sink: &dyn Sink) -> i32 {
    let journal = Journal::new(&cx.settings.dkms_tree);
    let mut kernels: Vec<String> = changes
        .iter()
        .filter(|(_, c)| !c.installed.is_empty() || !c.removed.is_empty())
        .map(|(k, _)| k.clone())
        .collect();
    for k in journal.depmod_pending() {
        if !kernels.contains(&k) {
            kernels.push(k);
        }
    }
    let mut rc = 0;
    for k in kernels {
        if cx.opts.no_depmod {
            journal.depmod_done(&k);
            continue;
        }
        // the hooks make modules.dep for a kernel they installed modules into
        let create = cx.opts.hook && changes.get(&k).is_some_and(|c| !c.installed.is_empty());
        match depmod::run(&k, &cx.settings.install_tree, create) {
            Ok(depmod::Ran::Done) => {
                sink.out(&format!("Running depmod for kernel {k}: done."));
                journal.depmod_done(&k);
            }
            Ok(depmod::Ran::Emptied) => {
                sink.out(&format!(
                    "Running depmod for kernel {k}: its module tree is empty now and was removed."
                ));
                journal.depmod_done(&k);
            }
            Ok(depmod::Ran::Skipped) => {
                sink.out(&format!(
                    "Skipping depmod for kernel {k}: {} is missing (the kernel is not installed).",
                    cx.settings.install_tree.join(&k).join("modules.dep").display()
                ));
                journal.depmod_done(&k);
            }
            Err(e) => {
                journal.set_aside_depmod(&k, &format!("{e:#}"));
                sink.error(&format!("{e:#}\nThe modules are in place, but kernel {k} will not find them until `depmod -a {k}` succeeds."));
                rc = code::INSTALL_FAILED;
            }
        }
    }
    rc
}

/// Regenerates the initramfs of kernels where a changed module belongs in it.
pub fn initramfs(cx: &Cx, changes: &BTreeMap<String, Change>, sink: &dyn Sink) {
    if !cx.settings.update_initramfs {
        return;
    }
    let etc = cx.settings.sysconf_root.join("etc");
    let boot = cx.settings.sysconf_root.join("boot");
    for (k, c) in changes {
        let changed: Vec<String> = c.installed.iter().chain(&c.removed).cloned().collect();
        if changed.is_empty() {
            continue;
        }
        if let Err(e) = initramfs::refresh(&etc, &boot, &cx.settings.install_tree, k, &changed, sink) {
            sink.warn(&format!(
                "{e:#}; the initramfs of {k} may lack the new modules: regenerate it by hand"
            ));
        }
    }
}

/// `modprobe_on_install`: after installing for the running kernel, loads
/// the modules that match its devices, as dkms does.
pub fn modprobe(cx: &Cx, changes: &BTreeMap<String, Change>) {
    if !(cx.opts.modprobe_on_install || cx.settings.modprobe_on_install) {
        return;
    }
    let running = crate::kernel::running_release();
    if changes.get(&running).is_none_or(|c| c.installed.is_empty()) {
        return;
    }
    let script = "find /sys/devices -name modalias -print0 | xargs -0 cat | sort -u | xargs modprobe -a -b -q; \
                  [ -f /lib/systemd/system/systemd-modules-load.service ] && systemctl restart systemd-modules-load.service";
    let _ = std::process::Command::new("bash").arg("-c").arg(script).status();
}

/// The modules built for K/A that want a rebuild because a BUILD_DEPENDS
/// now has another version than the one they were built against (read from
/// the build records and their `.dep_*` files; no dkms.conf is evaluated).
pub fn dependents_to_rebuild(cx: &Cx, k: &str, a: &str) -> Vec<(String, String)> {
    let t = &cx.tree;
    let mut out = Vec::new();
    for (m, v) in t.combos() {
        if !t.is_built(&m, &v, k, a) {
            continue;
        }
        let Some(r) = t.read_record(&m, &v, k, a) else { continue };
        if !r.rebuild_on_depends || r.depends.is_empty() || cx.opts.force {
            continue;
        }
        let stale = r.depends.iter().any(|d| {
            let mut vs: Vec<String> = t.versions(d).into_iter().filter(|dv| t.is_built(d, dv, k, a)).collect();
            vs.sort_by(|x, y| crate::kernel::version::compare(x, y));
            let Some(now) = vs.pop() else { return false };
            let recorded = std::fs::read_to_string(t.build_result(&m, &v, k, a).join(format!(".dep_{d}"))).ok();
            recorded.map(|s| s.trim().to_string()) != Some(now)
        });
        if stale {
            out.push((m, v));
        }
    }
    out
}

/// framework.conf's `post_transaction`, read again with `$kernelver`, run
/// with its output in `$dkms_tree/post_transaction.log` (dkms's format).
pub fn post_transaction(cx: &Cx, kernelver: &str, sink: &dyn Sink) {
    if !cx.settings.post_transaction {
        return;
    }
    let log_path = cx.settings.dkms_tree.join("post_transaction.log");
    let fw = match framework::read(
        &cx.settings.etc_dkms(),
        framework::POST_TRANSACTION,
        &[],
        Some(kernelver),
    ) {
        Ok(f) => f,
        Err(e) => {
            sink.warn(&format!("reading post_transaction: {e:#}"));
            return;
        }
    };
    let Some(command) = fw.get("post_transaction").map(str::to_string) else {
        return;
    };
    let description = "Executing post-transaction command";
    let run = || -> anyhow::Result<i32> {
        let mut log = makelog::create(&log_path, &makelog::section_start(description, &command))?;
        let start = Instant::now();
        let st = std::process::Command::new("bash")
            .arg("-c")
            .arg(&command)
            .env("kernelver", kernelver)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log.try_clone()?)
            .status()?;
        let code = crate::sys::cmd::code_of(st);
        makelog::append(&mut log, &makelog::section_end(code, start.elapsed()))?;
        Ok(code)
    };
    match run() {
        Ok(0) => sink.out(&format!(
            "{description}: done (its output is in {}).",
            log_path.display()
        )),
        Ok(c) => sink.warn(&format!(
            "the post-transaction command exited with status {c}; see {}",
            log_path.display()
        )),
        Err(e) => sink.warn(&format!("running the post-transaction command: {e:#}")),
    }
}

/// True when `path` holds a module tree the kernel is installed with.
pub fn kernel_installed(install_tree: &Path, k: &str) -> bool {
    install_tree.join(k).join("modules.dep").is_file() || install_tree.join(k).join("kernel").is_dir()
}
