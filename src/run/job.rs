//! One job of a run, start to end: its work directory, then build,
//! install or both for one module version and kernel, with the journal
//! entry that makes the install crash-safe. Returns what it did.

use super::{Change, Cx, Job, Outcome};
use crate::build;
use crate::build::workdir::Workdir;
use crate::install::{self, uninstall};
use crate::state::journal::{Entry, Step};
use crate::sys::fs::{remove_within, temp_beside};
use crate::ui::Sink;
/// The work directory of a job: private when builds of one version may
/// overlap, else dkms's own `m/v/build`.
fn workdir(cx: &Cx, j: &Job) -> Workdir {
    let seen = cx.tree.build_dir(&j.module, &j.version);
    if cx.isolate {
        let real = cx
            .tree
            .version_dir(&j.module, &j.version)
            .join(format!(".modsync/work-{}-{}", j.kernel.release, j.kernel.arch));
        Workdir { real, seen }
    } else {
        Workdir {
            real: seen.clone(),
            seen,
        }
    }
}

pub struct JobResult {
    pub outcome: Outcome,
    pub change: Change,
    /// The kept work directory of a failed build, to become `m/v/build`.
    pub failed_workdir: Option<Workdir>,
}

pub fn run_job(cx: &Cx, j: &Job, jobserver: Option<&jobserver::Client>, sink: &dyn Sink) -> JobResult {
    let mut change = Change::default();
    let (m, v, k) = (j.module.as_str(), j.version.as_str(), &j.kernel);
    let target = install::Target {
        tree: cx.tree,
        module: m,
        version: v,
        kernel: k,
        conf: &j.conf.conf,
        compression: k.module_compression(),
    };
    let scripts = install::ScriptEnv {
        source_dir: j.source_link.clone(),
        overrides: cx
            .settings
            .compat
            .etc_overrides()
            .then(|| cx.settings.etc_dkms().join(m)),
        vars: &j.vars,
    };
    let done = |outcome: Outcome, change: Change| JobResult {
        outcome,
        change,
        failed_workdir: None,
    };
    let failed = |code: i32, message: String, change: Change| {
        done(
            Outcome::Failed {
                code,
                message,
                log: None,
            },
            change,
        )
    };
    if j.work.uninstall_first {
        match uninstall::uninstall(&target, &cx.install, &scripts, cx.journal, sink) {
            Ok(u) => change.removed.extend(u.names),
            Err(f) => return failed(f.code, f.message, change),
        }
        sink.out("");
    }
    if j.work.unbuild_first {
        if let Err(e) = remove_within(&cx.tree.root, &cx.tree.build_result(m, v, &k.release, &k.arch)) {
            return failed(crate::error::code::GENERIC, format!("{e:#}"), change);
        }
    }
    let mut built = false;
    if j.work.build {
        let wd = workdir(cx, j);
        let staging = temp_beside(&cx.tree.build_result(m, v, &k.release, &k.arch));
        let entry = Entry {
            what: format!("building {}", j.label()),
            kernel: None,
            steps: vec![
                Step::RemoveDir {
                    root: cx.tree.root.clone(),
                    path: staging,
                },
                Step::RemoveDir {
                    root: cx.tree.root.clone(),
                    path: wd.real.clone(),
                },
            ],
        };
        let entry_path = match cx.journal.begin(&entry) {
            Ok(p) => p,
            Err(e) => return failed(crate::error::code::GENERIC, format!("{e:#}"), change),
        };
        let env = build::Env {
            tree: cx.tree,
            settings: cx.settings,
            force: cx.force,
            jobserver,
            cache: cx.cache.as_ref(),
        };
        let signer = cx.signers.get(&(k.release.clone(), k.arch.clone())).cloned().flatten();
        let job = build::Job {
            module: m,
            version: v,
            kernel: k,
            conf: &j.conf.conf,
            source: &j.source,
            vars: &j.vars,
            signer: signer.as_ref(),
            workdir: &wd,
            compression: target.compression,
        };
        let res = build::build(&env, &job, sink);
        let _ = std::fs::remove_file(&entry_path);
        match res {
            Ok(_) => built = true,
            Err(f) => {
                let keep = f.log.is_some().then(|| wd.clone());
                return JobResult {
                    outcome: Outcome::Failed {
                        code: f.code,
                        message: f.message,
                        log: f.log,
                    },
                    change,
                    failed_workdir: keep,
                };
            }
        }
    }
    let mut installed = false;
    if j.work.install {
        match install::install(&target, &cx.install, &scripts, cx.journal, sink) {
            Ok(i) => {
                installed = true;
                change.installed.extend(i.names);
            }
            Err(f) => return failed(f.code, f.message, change),
        }
    }
    done(Outcome::Done { built, installed }, change)
}
