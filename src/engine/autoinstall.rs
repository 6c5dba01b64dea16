//! `autoinstall`: the latest version of every AUTOINSTALL=yes module, built
//! and installed for each given kernel, in BUILD_DEPENDS order, all jobs at
//! once under the shared CPU budget. Also the planner the hooks use.

use super::jobs::{self, Job, Outcome};
use super::Ctx;
use crate::error::code;
use crate::kernel::{version, Kernel};
use crate::state::SourceState;
use std::collections::BTreeMap;

/// The plan: jobs plus what could not be planned.
#[derive(Debug, Default)]
pub struct Plan {
    pub jobs: Vec<Job>,
    /// Modules already installed, per kernel (reported, not rebuilt).
    pub current: Vec<String>,
    /// Modules that cannot be planned (broken, bad dkms.conf, missing deps).
    pub failures: Vec<(String, String)>,
    pub notes: Vec<String>,
}

/// The latest added version of each module, by dkms's version order.
pub fn latest_versions(ctx: &Ctx) -> (BTreeMap<String, String>, Vec<(String, String)>) {
    let mut latest: BTreeMap<String, String> = BTreeMap::new();
    let mut broken = Vec::new();
    for (m, v) in ctx.tree.registered() {
        match ctx.tree.source_state(&m, &v) {
            SourceState::Added(_) => {
                let e = latest.entry(m.clone()).or_insert_with(|| v.clone());
                if version::compare(&v, e) == std::cmp::Ordering::Greater {
                    *e = v;
                }
            }
            SourceState::Broken => broken.push((format!("{m}/{v}"), "broken: its source is missing".to_string())),
            SourceState::Absent => {}
        }
    }
    (latest, broken)
}

/// Plans install jobs of `modules` (name -> version) for `kernels`;
/// `only_autoinstall` keeps AUTOINSTALL=yes modules only.
pub fn plan(ctx: &Ctx, modules: &BTreeMap<String, String>, kernels: &[Kernel], only_autoinstall: bool) -> Plan {
    let mut plan = Plan::default();
    for kernel in kernels {
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let mut wants: Vec<(usize, Vec<String>)> = Vec::new();
        for (m, v) in modules {
            let label = format!("{m}/{v}");
            if !ctx.opts.force && ctx.tree.is_installed(m, v, &kernel.release, &kernel.arch) {
                plan.current.push(format!("{label} ({})", kernel.release));
                continue;
            }
            let conf = match ctx.read_conf(m, v, kernel) {
                Ok(c) => c,
                Err(e) => {
                    plan.failures.push((format!("{label} for {}", kernel.release), format!("{e:#}")));
                    continue;
                }
            };
            if only_autoinstall && !conf.autoinstall {
                continue;
            }
            index.insert(m.clone(), plan.jobs.len());
            wants.push((plan.jobs.len(), conf.build_depends.clone()));
            plan.jobs.push(Job { m: m.clone(), v: v.clone(), kernel: kernel.clone(), install: true, deps: vec![] });
        }
        for (j, depends) in wants {
            for d in depends {
                if let Some(&i) = index.get(&d) {
                    plan.jobs[j].deps.push(i);
                } else if !ctx.tree.versions(&d).iter().any(|dv| ctx.tree.is_installed(&d, dv, &kernel.release, &kernel.arch)) {
                    let label = plan.jobs[j].label();
                    if ctx.tree.versions(&d).is_empty() {
                        plan.notes.push(format!("{label}: BUILD_DEPENDS {d} is not registered; building anyway may fail"));
                    } else {
                        plan.jobs[j].deps.push(usize::MAX);
                        plan.failures.push((label, format!("its BUILD_DEPENDS {d} is not installed for {} and not autoinstalled", kernel.release)));
                    }
                }
            }
        }
    }
    // jobs whose dependency can't be met are dropped (already reported)
    let impossible: Vec<bool> = plan.jobs.iter().map(|j| j.deps.contains(&usize::MAX)).collect();
    if impossible.iter().any(|x| *x) {
        let keep: Vec<usize> = (0..plan.jobs.len()).filter(|&i| !impossible[i]).collect();
        let remap: BTreeMap<usize, usize> = keep.iter().enumerate().map(|(new, &old)| (old, new)).collect();
        plan.jobs = keep
            .iter()
            .map(|&i| {
                let mut j = plan.jobs[i].clone();
                j.deps = j.deps.iter().map(|d| remap.get(d).copied().unwrap_or(usize::MAX)).collect();
                j
            })
            .collect();
    }
    plan
}

/// Summary of a run: (succeeded labels, skipped, failed (label, code)).
pub fn summarize(plan: &Plan, outcomes: &[Outcome]) -> (Vec<String>, Vec<String>, Vec<(String, i32)>) {
    let mut ok = Vec::new();
    let mut skipped = Vec::new();
    let mut failed: Vec<(String, i32)> = plan.failures.iter().map(|(l, _)| (l.clone(), code::AUTOINSTALL)).collect();
    for (j, o) in plan.jobs.iter().zip(outcomes) {
        match o {
            Outcome::Done | Outcome::Current => ok.push(j.label()),
            Outcome::Skipped(_) => skipped.push(j.label()),
            Outcome::Failed { code, .. } => failed.push((j.label(), *code)),
        }
    }
    (ok, skipped, failed)
}

/// Runs autoinstall for `kernels`; returns the exit code (0, or 11).
pub fn autoinstall(ctx: &Ctx, kernels: &[Kernel]) -> i32 {
    if ctx.settings.sysconf_root.join("etc/dkms/no-autoinstall").exists() {
        println!("Automatic installation of modules is disabled (/etc/dkms/no-autoinstall exists).");
        return 0;
    }
    let (latest, broken) = latest_versions(ctx);
    let mut plan = plan(ctx, &latest, kernels, true);
    for (label, why) in broken {
        eprintln!("Error! {label}: {why}; skipped");
    }
    for (label, why) in &plan.failures {
        eprintln!("Error! {label}: {why}");
    }
    for n in &plan.notes {
        eprintln!("Warning: {n}");
    }
    let outcomes = jobs::run(ctx, &plan.jobs);
    let (ok, skipped, failed) = summarize(&plan, &outcomes);
    plan.jobs.clear();
    let ks: Vec<&str> = kernels.iter().map(|k| k.release.as_str()).collect();
    if !plan.current.is_empty() {
        println!("Already installed, nothing to do: {}.", plan.current.join(" "));
    }
    if !ok.is_empty() {
        println!("Autoinstall on {} succeeded for module(s) {}.", ks.join(", "), ok.join(" "));
    }
    if !skipped.is_empty() {
        println!("Autoinstall on {} was skipped for module(s) {}.", ks.join(", "), skipped.join(" "));
    }
    if !failed.is_empty() {
        let list: Vec<String> = failed.iter().map(|(l, c)| format!("{l}({c})")).collect();
        eprintln!("Error! Autoinstall on {} failed for module(s) {}.", ks.join(", "), list.join(" "));
        return code::AUTOINSTALL;
    }
    0
}
