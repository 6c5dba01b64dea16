//! `autoinstall` (and `kernel_postinst`): the latest version of every
//! AUTOINSTALL module, built and installed for one kernel, all at once under
//! the CPU budget in BUILD_DEPENDS order; modules whose dependency cannot be
//! met fail (exit 11), those whose dependency is not registered at all are
//! deferred (dkms 3.4). A module that a binary package provides for the
//! kernel (its marker, [`crate::state::packaged`]) is left alone. Also what the package-manager hooks and `boot`
//! run; [`registered`] is the tree-only view `boot` decides its no-op from.

use super::build::{after_installs, execute, job, source_of, state};
use super::{Cx, Target};
use crate::config::directives::Evaluated;
use crate::error::{code, fail};
use crate::kernel::{version, Kernel};
use crate::plan::{self, Candidate, Decision, Unmet, Verb};
use crate::run::Outcome;
use crate::state::history::{Event, ResultKind};
use crate::state::{packaged, SourceState};
use crate::ui::Sink;
use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// dkms's `have_one_kernel`: `--all` is refused (5), and exactly one kernel is needed (4).
pub fn one_kernel(t: &Target, verb: &str, explicit: bool) -> Result<(String, String)> {
    if t.all {
        return Err(fail(
            code::REFUSED,
            format!("{verb} does not accept --all; name the kernel with -k"),
        ));
    }
    if t.kernels.len() != 1 {
        let why = if explicit {
            "needs exactly one kernel (-k KERNEL)"
        } else {
            "takes one kernel only (one -k)"
        };
        return Err(fail(code::BROKEN, format!("{verb} {why}")));
    }
    Ok(t.kernels[0].clone())
}

/// What an autoinstall for one kernel came to.
#[derive(Debug, Default)]
pub struct Summary {
    pub installed: Vec<String>,
    pub skipped: Vec<String>,
    pub failed: Vec<(String, i32)>,
    pub missing: Vec<(String, Vec<String>)>,
    pub deferred: Vec<(String, Vec<String>)>,
    /// What happened to each module that was not already installed, for the history.
    pub events: Vec<Event>,
    /// The command's exit code.
    pub code: i32,
}

/// The registered modules as autoinstall sees them, read from the tree alone.
#[derive(Debug, Default)]
pub struct Registered {
    /// The latest added version of each module, by dkms's version order.
    pub latest: BTreeMap<String, String>,
    /// Versions whose source is gone (skipped, reported).
    pub broken: Vec<(String, String)>,
}

/// Reads which module versions are registered (no dkms.conf is read).
pub fn registered(cx: &Cx) -> Registered {
    let mut r = Registered::default();
    for (m, v) in cx.tree.combos() {
        match cx.tree.source_state(&m, &v, cx.compat()) {
            SourceState::Added(_) => {
                let e = r.latest.entry(m).or_insert_with(|| v.clone());
                if version::compare(&v, e) == std::cmp::Ordering::Greater {
                    *e = v;
                }
            }
            SourceState::Broken | SourceState::AddedGone => r.broken.push((m, v)),
            SourceState::Absent => {}
        }
    }
    r
}

/// Autoinstall for one kernel; `sink` gets the messages. The caller holds the lock.
pub fn for_kernel(cx: &Cx, k: &Kernel, sink: &dyn Sink) -> Result<Summary> {
    let Registered { mut latest, broken } = registered(cx);
    latest.retain(|m, _| match packaged::find(&cx.settings.sysconf_root, m, &k.release) {
        Some(p) => {
            sink.out(&format!(
                "{m}: the package {} provides {m}/{} for kernel {}; not built from source",
                p.package, p.version, k.release
            ));
            false
        }
        None => true,
    });
    for (m, v) in &broken {
        sink.error(&format!(
            "{m}/{v} is broken (its source is gone) and is skipped; reinstall its package, or remove {} by hand",
            cx.tree.version_dir(m, v).display()
        ));
    }
    let known: BTreeSet<String> = latest.keys().cloned().collect();
    let mut confs: Vec<Option<Evaluated>> = Vec::new();
    let mut names = Vec::new();
    for (m, v) in &latest {
        let installed = cx.tree.is_installed(m, v, &k.release, &k.arch);
        let conf = if installed {
            None
        } else {
            Some(
                cx.evaluate(&cx.conf_path(m, v), m, v, k, false, sink)
                    .map_err(anyhow::Error::from)?,
            )
        };
        confs.push(conf);
        names.push((m.clone(), v.clone(), installed));
    }
    let candidates: Vec<Candidate> = names
        .iter()
        .zip(&confs)
        .map(|((m, v, installed), c)| Candidate {
            name: m.clone(),
            version: v.clone(),
            installed: *installed,
            conf: c.as_ref(),
        })
        .collect();
    let p = plan::autoinstall(&candidates).map_err(|i| {
        let (m, v, _) = &names[i];
        anyhow::Error::from(cx.bad_conf(&cx.conf_path(m, v), confs[i].as_ref().expect("read"), false))
    })?;
    let mut s = Summary {
        installed: p.installed.clone(),
        ..Default::default()
    };
    if p.to_install.is_empty() {
        return Ok(s);
    }
    // what each module needs: a job, or nothing (skipped, refused)
    let mut decided: BTreeMap<usize, Outcome> = BTreeMap::new();
    let mut work = BTreeMap::new();
    for (pos, &i) in p.to_install.iter().enumerate() {
        if p.blocked.contains(&pos) {
            continue;
        }
        let (m, v, _) = &names[i];
        let e = confs[i].as_ref().expect("read");
        match plan::decide(Verb::Install, state(cx, m, v, k), e, cx.opts.force) {
            Decision::Run(w) => {
                if w.build && !k.has_headers() {
                    return Err(fail(
                        cx.compat().headers_missing_code(),
                        format!("the headers of kernel {} are not installed ({} has no include/), so {m}/{v} cannot be built; install them and run autoinstall again", k.release, k.headers_dir.display()),
                    ));
                }
                work.insert(pos, w);
            }
            Decision::Excluded => {
                sink.out(&format!("Autoinstall of {m}/{v} for kernel {}", k.label()));
                sink.warn(&format!(
                    "the BUILD_EXCLUSIVE directives of {m}/{v} exclude kernel {} ({}); skipped",
                    k.label(),
                    e.conf.exclusion().unwrap_or("no rule admits it")
                ));
                decided.insert(pos, Outcome::Skipped);
            }
            Decision::Refused(c) => {
                sink.error(&cx.bad_conf(&cx.conf_path(m, v), e, true).message);
                decided.insert(
                    pos,
                    Outcome::Failed {
                        code: c,
                        message: String::new(),
                        log: None,
                    },
                );
            }
            Decision::Current => {
                decided.insert(
                    pos,
                    Outcome::Done {
                        built: false,
                        installed: false,
                    },
                );
            }
        }
    }
    // a module waiting for one that will not be installed cannot run either
    let mut blocked = p.blocked.clone();
    loop {
        let more: Vec<usize> = work
            .keys()
            .copied()
            .filter(|pos| !blocked.contains(pos))
            .filter(|&pos| {
                p.waits_for[pos]
                    .iter()
                    .any(|w| blocked.contains(w) || decided.get(w).is_some_and(|o| !o.satisfies()))
            })
            .collect();
        if more.is_empty() {
            break;
        }
        blocked.extend(more);
    }
    let mut jobs = Vec::new();
    let mut job_of: BTreeMap<usize, usize> = BTreeMap::new();
    for (&pos, &w) in work.iter().filter(|(pos, _)| !blocked.contains(pos)) {
        let i = p.to_install[pos];
        let (m, v, _) = &names[i];
        let mut j = job(
            cx,
            m,
            v,
            k,
            w,
            Arc::new(confs[i].clone().expect("read")),
            source_of(cx, m, v)?,
        );
        j.header = Some(format!("Autoinstall of {m}/{v} for kernel {}", k.label()));
        job_of.insert(pos, jobs.len());
        jobs.push(j);
    }
    for (&pos, &j) in &job_of {
        jobs[j].deps = p.waits_for[pos].iter().filter_map(|w| job_of.get(w).copied()).collect();
    }
    let record = execute(cx, &jobs, sink);
    let outcome = |pos: usize| -> Option<Outcome> {
        job_of
            .get(&pos)
            .and_then(|&j| record.outcomes.get(j).cloned())
            .or_else(|| decided.get(&pos).cloned())
    };
    let mut satisfied: BTreeSet<String> = s.installed.iter().cloned().collect();
    for (pos, &i) in p.to_install.iter().enumerate() {
        let (name, v, _) = &names[i];
        let exclusion = confs[i].as_ref().and_then(|c| c.conf.exclusion());
        if let Some(e) = outcome(pos).and_then(|o| o.history(format!("{name}/{v}"), &k.release, exclusion)) {
            s.events.push(e);
        }
        match outcome(pos) {
            Some(Outcome::Done { .. }) => {
                s.installed.push(name.clone());
                satisfied.insert(name.clone());
            }
            Some(Outcome::Skipped) => {
                s.skipped.push(name.clone());
                satisfied.insert(name.clone());
            }
            Some(Outcome::Failed { code, .. }) => s.failed.push((name.clone(), code)),
            Some(Outcome::DepFailed(_)) | None => {}
        }
    }
    for (pos, &i) in p.to_install.iter().enumerate() {
        if !matches!(outcome(pos), Some(Outcome::DepFailed(_)) | None) {
            continue;
        }
        let (m, v, _) = &names[i];
        let deps = confs[i]
            .as_ref()
            .map(|c| c.conf.build_depends.clone())
            .unwrap_or_default();
        let (kind, d, why) = match plan::unmet(&deps, &satisfied, &known, cx.compat().defers_unknown_depends()) {
            Unmet::Missing(d) => (ResultKind::NotInstalled, d, "could not be installed first"),
            Unmet::Deferred(d) => (ResultKind::Deferred, d, "is not registered yet"),
        };
        s.events.push(Event {
            reason: Some(format!("BUILD_DEPENDS {} {why}", d.join(" "))),
            ..Event::new(Some(format!("{m}/{v}")), &k.release, kind)
        });
        match kind {
            ResultKind::NotInstalled => s.missing.push((format!("{m}/{v}"), d)),
            _ => s.deferred.push((format!("{m}/{v}"), d)),
        }
    }
    let rc = after_installs(cx, &record, sink);
    s.code = if !s.failed.is_empty() || !s.missing.is_empty() {
        code::AUTOINSTALL_FAILED
    } else {
        rc
    };
    Ok(s)
}

/// Prints dkms's summary of an autoinstall.
pub fn report(k: &str, s: &Summary, sink: &dyn Sink) {
    if !s.installed.is_empty() {
        sink.out(&format!(
            "Autoinstall for kernel {k}: installed {}.",
            s.installed.join(" ")
        ));
    }
    if !s.skipped.is_empty() {
        sink.out(&format!(
            "Autoinstall for kernel {k}: skipped (BUILD_EXCLUSIVE) {}.",
            s.skipped.join(" ")
        ));
    }
    if !s.failed.is_empty() {
        let l: Vec<String> = s.failed.iter().map(|(m, c)| format!("{m}({c})")).collect();
        sink.out(&format!("Autoinstall for kernel {k}: failed {}.", l.join(" ")));
    }
    for (mv, d) in &s.missing {
        sink.out(&format!(
            "{mv}: not installed, its BUILD_DEPENDS {} could not be installed first.",
            d.join(" ")
        ));
    }
    for (mv, d) in &s.deferred {
        sink.out(&format!(
            "{mv}: deferred, its BUILD_DEPENDS {} is not registered with DKMS yet; the next autoinstall tries again.",
            d.join(" ")
        ));
    }
    if s.code == code::AUTOINSTALL_FAILED {
        sink.error("autoinstall could not install every module; the messages above say why.");
    }
}

/// `dkms autoinstall` / `dkms kernel_postinst`.
pub fn autoinstall(cx: &Cx, t: &Target, verb: &str, sink: &dyn Sink) -> Result<i32> {
    let (r, a) = one_kernel(t, verb, verb.starts_with("kernel_"))?;
    super::require_root()?;
    let _lock = cx.lock(sink)?;
    if cx.settings.etc_dkms().join("no-autoinstall").exists() {
        sink.out(&format!(
            "Automatic installation of modules is off ({} exists).",
            cx.settings.etc_dkms().join("no-autoinstall").display()
        ));
        return Ok(0);
    }
    let k = cx.kernel(&r, &a);
    let s = for_kernel(cx, &k, sink)?;
    report(&k.release, &s, sink);
    Ok(s.code)
}
