//! The planner: from plain facts (what the tree holds, each dkms.conf
//! evaluated for the kernel) to the jobs to run and what needs no job, with
//! dkms's rules: a module already built or installed is current unless
//! `--force`; a dkms.conf that is not valid refuses; BUILD_EXCLUSIVE skips
//! (77); autoinstall takes the latest version of every AUTOINSTALL module,
//! orders them by BUILD_DEPENDS, and knows which cannot run (a dependency
//! that is registered but will not be installed, a cycle) and which are
//! deferred (a dependency not registered at all, dkms 3.4). Pure.

use crate::config::directives::Evaluated;
use crate::error::code;
use std::collections::{BTreeMap, BTreeSet};

/// What a verb asks for one module version and kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Build,
    Install,
}

/// The state of one module version for one kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct State {
    /// `m/v/K/A/module` exists.
    pub built: bool,
    /// Built and the active version.
    pub installed: bool,
    /// `m/v/K/A` exists (perhaps without `module/`).
    pub result_dir: bool,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing: already built (for a build) or installed (for an install).
    Current,
    /// Not built for this kernel (BUILD_EXCLUSIVE); exit code 77.
    Excluded,
    /// Refused with dkms's code.
    Refused(i32),
    /// A job.
    Run(Work),
}

/// The work of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Work {
    /// Delete the existing build first (`--force`).
    pub unbuild_first: bool,
    /// Uninstall the installed version first (`--force`).
    pub uninstall_first: bool,
    /// Build (not built yet, or rebuilding).
    pub build: bool,
    /// Install after building.
    pub install: bool,
}

/// dkms's decision for one (module version, kernel) and verb.
pub fn decide(verb: Verb, s: State, conf: &Evaluated, force: bool) -> Decision {
    let install = verb == Verb::Install;
    if install && s.installed && !force {
        return Decision::Current;
    }
    if !install && s.built && !force {
        return Decision::Current;
    }
    let rebuild = !install && s.built && force;
    let build = !s.built || rebuild;
    if build {
        if !conf.usable_strictly() {
            return Decision::Refused(code::BAD_CONF);
        }
        if s.result_dir && !s.built {
            return Decision::Refused(code::NOT_IN_TREE);
        }
        if conf.conf.build_exclude {
            return Decision::Excluded;
        }
    } else if install && !conf.usable_strictly() {
        return Decision::Refused(code::BAD_CONF);
    }
    Decision::Run(Work {
        unbuild_first: rebuild,
        uninstall_first: install && s.installed && force,
        build,
        install,
    })
}

/// One registered module, as autoinstall sees it for one kernel.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub name: String,
    /// Its latest version.
    pub version: String,
    /// That version is installed for the kernel.
    pub installed: bool,
    /// Its dkms.conf for the kernel (read only when not installed).
    pub conf: Option<&'a Evaluated>,
}

/// What autoinstall will do for one kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoPlan {
    /// Modules whose latest version is installed already.
    pub installed: Vec<String>,
    /// Indices (into the candidates) to install, in dkms's order.
    pub to_install: Vec<usize>,
    /// For each entry of `to_install`, the entries of `to_install` it waits for.
    pub waits_for: Vec<Vec<usize>>,
    /// Entries of `to_install` that cannot run: a dependency that is not
    /// installed and not being installed (whether dkms knows it decides,
    /// after the run, between a failure and a deferral: [`unmet`]).
    pub blocked: BTreeSet<usize>,
}

/// Plans autoinstall for one kernel; `Err(index)` when a candidate's
/// dkms.conf is not valid (dkms stops autoinstall then, exit 8).
pub fn autoinstall(candidates: &[Candidate]) -> Result<AutoPlan, usize> {
    let mut plan = AutoPlan::default();
    for c in candidates {
        if c.installed {
            plan.installed.push(c.name.clone());
        }
    }
    for (i, c) in candidates.iter().enumerate() {
        if c.installed {
            continue;
        }
        let conf = c.conf.ok_or(i)?;
        if !conf.usable() {
            return Err(i);
        }
        if conf.conf.autoinstall {
            plan.to_install.push(i);
        }
    }
    let position: BTreeMap<&str, usize> = plan
        .to_install
        .iter()
        .enumerate()
        .map(|(p, &i)| (candidates[i].name.as_str(), p))
        .collect();
    for (p, &i) in plan.to_install.iter().enumerate() {
        let mut waits = Vec::new();
        for d in &candidates[i]
            .conf
            .map(|c| c.conf.build_depends.clone())
            .unwrap_or_default()
        {
            if plan.installed.iter().any(|x| x == d) {
                continue;
            }
            // itself, or a module that is not being installed: it never runs
            match position.get(d.as_str()) {
                Some(&q) if q != p => waits.push(q),
                _ => {
                    plan.blocked.insert(p);
                }
            }
        }
        plan.waits_for.push(waits);
    }
    Ok(plan)
}

/// How a module that did not get installed is reported after the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmet {
    /// It waits for modules registered with dkms: a failure (exit 11).
    Missing(Vec<String>),
    /// It waits only for modules not registered at all: deferred (dkms 3.4).
    Deferred(Vec<String>),
}

/// dkms's classification of a module left waiting: its dependencies that
/// are neither installed nor skipped, split by whether dkms knows them.
pub fn unmet(depends: &[String], satisfied: &BTreeSet<String>, known: &BTreeSet<String>, defer_unknown: bool) -> Unmet {
    let open: Vec<String> = depends.iter().filter(|d| !satisfied.contains(*d)).cloned().collect();
    if !defer_unknown || open.iter().any(|d| known.contains(d)) {
        Unmet::Missing(
            open.into_iter()
                .filter(|d| known.contains(d) || !defer_unknown)
                .collect(),
        )
    } else {
        Unmet::Deferred(open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::directives::{evaluate, Context};
    use crate::config::shell::Raw;

    fn conf(extra: &[(&str, &str)]) -> Evaluated {
        let mut r = Raw::default();
        for (n, v) in [
            ("PACKAGE_NAME", "m"),
            ("PACKAGE_VERSION", "1"),
            ("DEST_MODULE_LOCATION", "/updates"),
        ]
        .iter()
        .chain(extra)
        {
            r.vars.entry(n.to_string()).or_default().insert(0, v.to_string());
        }
        evaluate(
            &r,
            &Context {
                kernelver: "6.1.0-56-amd64",
                arch: "x86_64",
                per_module_exclusive: true,
                ..Default::default()
            },
        )
    }

    #[test]
    fn build_and_install_decisions() {
        let c = conf(&[]);
        let none = State::default();
        let built = State {
            built: true,
            result_dir: true,
            ..Default::default()
        };
        let installed = State {
            built: true,
            installed: true,
            result_dir: true,
        };
        assert_eq!(
            decide(Verb::Build, none, &c, false),
            Decision::Run(Work {
                build: true,
                ..Default::default()
            })
        );
        assert_eq!(decide(Verb::Build, built, &c, false), Decision::Current);
        assert_eq!(
            decide(Verb::Build, built, &c, true),
            Decision::Run(Work {
                unbuild_first: true,
                build: true,
                ..Default::default()
            })
        );
        assert_eq!(
            decide(Verb::Install, built, &c, false),
            Decision::Run(Work {
                install: true,
                ..Default::default()
            })
        );
        assert_eq!(decide(Verb::Install, installed, &c, false), Decision::Current);
        assert_eq!(
            decide(Verb::Install, installed, &c, true),
            Decision::Run(Work {
                uninstall_first: true,
                install: true,
                ..Default::default()
            })
        );
        assert_eq!(
            decide(Verb::Install, none, &c, false),
            Decision::Run(Work {
                build: true,
                install: true,
                ..Default::default()
            })
        );
        let excluded = conf(&[("BUILD_EXCLUSIVE_ARCH", "none")]);
        assert_eq!(decide(Verb::Build, none, &excluded, false), Decision::Excluded);
        assert_eq!(decide(Verb::Install, none, &excluded, false), Decision::Excluded);
        let bad = conf(&[("AUTOINSTALL", "maybe")]);
        assert_eq!(decide(Verb::Build, none, &bad, false), Decision::Refused(8));
        let leftover = State {
            result_dir: true,
            ..Default::default()
        };
        assert_eq!(decide(Verb::Build, leftover, &c, false), Decision::Refused(3));
    }

    fn cand<'a>(name: &str, installed: bool, c: &'a Evaluated) -> Candidate<'a> {
        Candidate {
            name: name.into(),
            version: "1".into(),
            installed,
            conf: Some(c),
        }
    }

    #[test]
    fn autoinstall_orders_by_depends_and_finds_what_cannot_run() {
        let plain = conf(&[("AUTOINSTALL", "yes")]);
        let on_a = conf(&[("AUTOINSTALL", "yes"), ("BUILD_DEPENDS", "a")]);
        let on_self = conf(&[("AUTOINSTALL", "yes"), ("BUILD_DEPENDS", "c")]);
        let on_manual = conf(&[("AUTOINSTALL", "yes"), ("BUILD_DEPENDS", "manual")]);
        let on_ghost = conf(&[("AUTOINSTALL", "yes"), ("BUILD_DEPENDS", "ghost")]);
        let manual = conf(&[]);
        let cs = vec![
            cand("a", false, &plain),
            cand("b", false, &on_a),
            cand("c", false, &on_self),
            cand("d", false, &on_manual),
            cand("e", false, &on_ghost),
            cand("manual", false, &manual),
            cand("z", true, &plain),
        ];
        let p = autoinstall(&cs).unwrap();
        assert_eq!(p.installed, vec!["z"]);
        assert_eq!(p.to_install, vec![0, 1, 2, 3, 4], "manual is not AUTOINSTALL");
        assert_eq!(p.waits_for[1], vec![0]);
        assert_eq!(p.blocked, BTreeSet::from([2, 3, 4]));
        let bad = conf(&[("AUTOINSTALL", "maybe")]);
        assert_eq!(autoinstall(&[cand("x", false, &bad)]), Err(0));
    }

    #[test]
    fn waiting_modules_are_missing_or_deferred() {
        let known: BTreeSet<String> = ["a".to_string(), "self".into()].into();
        let sat: BTreeSet<String> = ["ok".to_string()].into();
        let d = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(unmet(&d(&["a", "ok"]), &sat, &known, true), Unmet::Missing(d(&["a"])));
        assert_eq!(
            unmet(&d(&["ghost"]), &sat, &known, true),
            Unmet::Deferred(d(&["ghost"]))
        );
        assert_eq!(
            unmet(&d(&["ghost"]), &sat, &known, false),
            Unmet::Missing(d(&["ghost"]))
        );
        assert_eq!(
            unmet(&d(&["ghost", "self"]), &sat, &known, true),
            Unmet::Missing(d(&["self"]))
        );
    }
}
