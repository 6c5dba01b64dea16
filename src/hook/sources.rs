//! Hook events about module sources rather than kernels: a `*-dkms`
//! package's source arriving (register and build it, as dkms's
//! common.postinst does) or leaving (take it out of every kernel and
//! unregister it).

use super::targets::Touched;
use super::{buildable, Verdict};
use crate::error::{code, fail};
use crate::ops::{self, Cx};
use crate::state::history::{Event, ResultKind};
use crate::ui::Sink;
use anyhow::Result;
use std::path::PathBuf;

/// The registered (module, version) whose source is `dir`.
fn registered_from(cx: &Cx, dir: &std::path::Path) -> Option<(String, String)> {
    let want = std::fs::canonicalize(dir).ok()?;
    cx.tree
        .combos()
        .into_iter()
        .find(|(m, v)| std::fs::canonicalize(cx.tree.source_link(m, v)).ok().as_ref() == Some(&want))
}

/// A module source arrived or changed: (re)register it and build it for
/// the kernels: with `all_kernels` every installed kernel with headers,
/// else the running one and the newest (dkms's common.postinst).
pub fn refresh_modules(
    cx: &Cx,
    dirs: &[PathBuf],
    only_autoinstall: bool,
    all_kernels: bool,
    sink: &dyn Sink,
) -> Result<Verdict> {
    let _lock = cx.lock(sink)?;
    let mut v = Verdict::default();
    let mut wanted = Vec::new();
    for dir in dirs {
        if let Some((m, ver)) = registered_from(cx, dir) {
            let t = ops::Target {
                module: Some(m.clone()),
                version: Some(ver.clone()),
                all: true,
                ..Default::default()
            };
            for (k, a) in ops::remove::all_kernels(cx, &m, &ver) {
                let kernel = cx.kernel(&k, &a);
                let _ = ops::remove::uninstall_one(cx, &m, &ver, &kernel, sink);
                ops::remove::unbuild_one(cx, &m, &ver, &kernel, sink)?;
            }
            let _ = t;
            wanted.push((m, ver));
            continue;
        }
        let t = ops::Target {
            source_dir: Some(dir.clone()),
            ..Default::default()
        };
        match ops::add::add(cx, &t, sink) {
            Ok(mv) => wanted.push(mv),
            Err(e) => {
                sink.error(&format!("adding {}: {e:#}", dir.display()));
                v.failures += 1;
            }
        }
    }
    let mut releases: Vec<String> = crate::kernel::installed_releases(&cx.settings.install_tree)
        .into_iter()
        .filter(|r| !r.contains("BOOT"))
        .collect();
    if !all_kernels {
        let running = crate::kernel::running_release();
        let newest = releases
            .iter()
            .rev()
            .find(|r| cx.kernel(r, &crate::kernel::machine_arch()).has_headers())
            .cloned();
        releases.retain(|r| *r == running || Some(r) == newest.as_ref());
    }
    let (kernels, events) = buildable(cx, &releases.into_iter().collect(), sink);
    v.events.extend(events);
    if kernels.is_empty() && !wanted.is_empty() {
        sink.err("modsync: no installed kernel has its headers, so nothing was built now; modules are built when a kernel with headers is installed.");
    }
    let mut jobs = Vec::new();
    for k in &kernels {
        for (m, ver) in &wanted {
            if let Some(p) = crate::state::packaged::find(&cx.settings.sysconf_root, m, &k.release) {
                sink.err(&format!(
                    "modsync: the package {} provides {m} for kernel {}; not built from source",
                    p.package, k.release
                ));
                continue;
            }
            let e = match cx.evaluate(&cx.conf_path(m, ver), m, ver, k, true, sink) {
                Ok(e) => e,
                Err(f) => {
                    sink.error(&f.message);
                    v.failures += 1;
                    continue;
                }
            };
            if only_autoinstall && !e.conf.autoinstall {
                continue;
            }
            match crate::plan::decide(crate::plan::Verb::Install, ops::build::state(cx, m, ver, k), &e, false) {
                crate::plan::Decision::Run(w) => jobs.push(ops::build::job(
                    cx,
                    m,
                    ver,
                    k,
                    w,
                    std::sync::Arc::new(e),
                    ops::build::source_of(cx, m, ver)?,
                )),
                crate::plan::Decision::Refused(_) => v.failures += 1,
                _ => {}
            }
        }
    }
    let record = ops::build::execute(cx, &jobs, sink);
    for (j, o) in jobs.iter().zip(&record.outcomes) {
        let exclusion = j.conf.conf.exclusion();
        v.events
            .extend(o.history(format!("{}/{}", j.module, j.version), &j.kernel.release, exclusion));
    }
    v.failures += record
        .outcomes
        .iter()
        .filter(|o| {
            matches!(
                o,
                crate::run::Outcome::Failed { .. } | crate::run::Outcome::DepFailed(_)
            )
        })
        .count();
    ops::build::after_installs(cx, &record, sink);
    Ok(v)
}

/// A module source is being removed: take it out of every kernel and unregister it.
pub fn remove_modules(cx: &Cx, dirs: &[PathBuf], sink: &dyn Sink) -> Result<Verdict> {
    let _lock = cx.lock(sink)?;
    let mut verdict = Verdict::default();
    let mut changes = std::collections::BTreeMap::<String, crate::run::Change>::new();
    for dir in dirs {
        let Some((m, v)) = registered_from(cx, dir) else {
            continue;
        };
        for (k, a) in ops::remove::all_kernels(cx, &m, &v) {
            let kernel = cx.kernel(&k, &a);
            let names = ops::remove::uninstall_one(cx, &m, &v, &kernel, sink).map_err(anyhow::Error::from)?;
            changes.entry(k.clone()).or_default().removed.extend(names);
            ops::remove::unbuild_one(cx, &m, &v, &kernel, sink)?;
            verdict
                .events
                .push(Event::new(Some(format!("{m}/{v}")), &k, ResultKind::Removed));
        }
        ops::remove::forget_if_unbuilt(cx, &m, &v, sink)?;
    }
    ops::finish::depmod(cx, &changes, sink);
    ops::finish::initramfs(cx, &changes, sink);
    Ok(verdict)
}

/// The /usr/src directories of the modules a transaction touched.
pub fn source_dirs(cx: &Cx, t: &Touched) -> Vec<PathBuf> {
    t.modules.iter().map(|(m, v)| cx.tree.default_source(m, v)).collect()
}

/// `/usr/lib/dkms/common.postinst NAME VERSION [TARBALL_ROOT] [ARCH] [UPGRADE]`,
/// as dh_dkms maintainer scripts call it (`name` is NAME here).
pub fn common_postinst(cx: &Cx, name: &str, args: &[String], sink: &dyn Sink) -> Result<Verdict> {
    let Some(version) = args.first() else {
        return Err(fail(code::USAGE, "common.postinst needs NAME VERSION"));
    };
    for (k, s) in [
        (crate::sys::names::Kind::Module, name),
        (crate::sys::names::Kind::Version, version.as_str()),
    ] {
        if let Some(p) = crate::sys::names::problem(k, s) {
            return Err(fail(code::USAGE, format!("common.postinst: {p}")));
        }
    }
    if cx.settings.etc_dkms().join("no-autoinstall").exists() {
        sink.err(&format!(
            "modsync: automatic installation is off (/etc/dkms/no-autoinstall); {name}/{version} was not built."
        ));
        return Ok(Verdict::default());
    }
    let dir = cx.tree.default_source(name, version);
    if !crate::config::manifest::config_in(&dir).is_file() {
        return Err(fail(
            code::USAGE,
            format!("{} holds no dkms.conf; is the {name} package complete?", dir.display()),
        ));
    }
    if registered_from(cx, &dir).is_none() && cx.tree.version_dir(name, version).exists() {
        // a stale registration of the same version: start clean, as dkms does
        let _lock = cx.lock(sink)?;
        for (k, a) in ops::remove::all_kernels(cx, name, version) {
            let kernel = cx.kernel(&k, &a);
            let _ = ops::remove::uninstall_one(cx, name, version, &kernel, sink);
            ops::remove::unbuild_one(cx, name, version, &kernel, sink)?;
        }
        crate::sys::fs::remove_within(&cx.tree.root, &cx.tree.version_dir(name, version))?;
    }
    refresh_modules(cx, &[dir], true, cx.settings.autoinstall_all_kernels, sink)
}
