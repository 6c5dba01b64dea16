//! `build` and `install`: for each kernel given (`-k`, repeatable), dkms's
//! decision (already done, excluded, refused, or a job), then the jobs run
//! at once under the CPU budget, then depmod, the initramfs and the rest.
//! Also the pieces every operation that runs jobs shares: turning plans into
//! executor jobs, signing decided per kernel, and what follows a run.

use super::{finish, Cx, Target};
use crate::config::directives::Evaluated;
use crate::config::framework;
use crate::error::{code, fail};
use crate::kernel::Kernel;
use crate::plan::{self, Decision, State, Verb, Work};
use crate::run::{self, Job, Outcome, Record};
use crate::state::journal::Journal;
use crate::state::SourceState;
use crate::ui::Sink;
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The state of m/v for a kernel, as the planner needs it.
pub fn state(cx: &Cx, m: &str, v: &str, k: &Kernel) -> State {
    let t = &cx.tree;
    State {
        built: t.is_built(m, v, &k.release, &k.arch),
        installed: t.is_installed(m, v, &k.release, &k.arch),
        result_dir: t.build_result(m, v, &k.release, &k.arch).exists(),
    }
}

/// The source directory of an added module version.
pub fn source_of(cx: &Cx, m: &str, v: &str) -> Result<PathBuf> {
    match cx.tree.source_state(m, v, cx.compat()) {
        SourceState::Added(p) => Ok(p),
        SourceState::AddedGone | SourceState::Broken => Err(fail(
            code::BROKEN,
            format!(
                "the source of {m}/{v} ({}) is gone; reinstall the package that ships it",
                cx.tree.source_link(m, v).display()
            ),
        )),
        SourceState::Absent => Err(fail(code::NOT_IN_TREE, format!("{m}/{v} is not in the DKMS tree"))),
    }
}

/// An executor job for m/v on a kernel.
pub fn job(cx: &Cx, m: &str, v: &str, k: &Kernel, work: Work, conf: Arc<Evaluated>, source: PathBuf) -> Job {
    Job {
        module: m.to_string(),
        version: v.to_string(),
        kernel: k.clone(),
        work,
        vars: cx.job_vars(m, v, k, &conf),
        conf,
        deps: Vec::new(),
        source_link: cx.tree.source_link(m, v),
        source,
        header: None,
    }
}

/// How modules are signed for each kernel that some job builds for; the
/// decision is printed once per kernel, as dkms prints it.
pub fn signers(cx: &Cx, jobs: &[Job], sink: &dyn Sink) -> BTreeMap<(String, String), Option<crate::sign::Signer>> {
    let mut out = BTreeMap::new();
    let policy = cx.compat().signing_policy();
    let in_chroot = policy && crate::sign::running_in_chroot();
    for j in jobs.iter().filter(|j| j.work.build && j.kernel.has_headers()) {
        let key = (j.kernel.release.clone(), j.kernel.arch.clone());
        if out.contains_key(&key) {
            continue;
        }
        let fw = framework::read(
            &cx.settings.etc_dkms(),
            framework::SIGNING,
            &[],
            Some(&j.kernel.release),
        )
        .unwrap_or_default();
        let cfg = j.kernel.config();
        let plan = crate::sign::plan(&crate::sign::Inputs {
            enabled: cx.settings.sign,
            try_sign_modules: fw.get("try_sign_modules").filter(|_| policy).map(str::to_string),
            in_chroot,
            kernelver: j.kernel.release.clone(),
            config_file: j.kernel.config_file.clone(),
            config_exists: cfg.is_some(),
            sig_hash: cfg
                .as_ref()
                .and_then(|c| c.get("CONFIG_MODULE_SIG_HASH").map(|h| h.trim_matches('"').to_string())),
            family: cx.distro.as_ref().map(|d| d.family),
            install_tree: cx.settings.install_tree.clone(),
            sign_file: fw.get("sign_file").map(PathBuf::from),
            key: cx
                .settings
                .mok_signing_key
                .clone()
                .or_else(|| fw.get("mok_signing_key").map(PathBuf::from)),
            cert: cx
                .settings
                .mok_certificate
                .clone()
                .or_else(|| fw.get("mok_certificate").map(PathBuf::from)),
        });
        for l in &plan.lines {
            sink.out(l);
        }
        sink.out("");
        out.insert(key, plan.signer);
    }
    out
}

/// Runs the jobs.
pub fn execute(cx: &Cx, jobs: &[Job], sink: &dyn Sink) -> Record {
    let journal = Journal::new(&cx.settings.dkms_tree);
    let rcx = run::Cx {
        tree: &cx.tree,
        settings: &cx.settings,
        journal: &journal,
        force: cx.opts.force,
        install: crate::install::Options {
            force: cx.opts.force || cx.opts.rpm_safe_upgrade,
            force_version_override: cx.opts.force_version_override,
            symlink_modules: cx.opts.symlink_modules || cx.settings.symlink_modules,
            archive_originals: cx
                .settings
                .compat
                .archives_originals(&cx.distro.as_ref().map(|d| d.name.clone()).unwrap_or_default()),
            refuse_same_version: cx.settings.compat.refuses_same_version(),
        },
        cache: cx.settings.cache.then(|| crate::cache::Cache {
            dir: cx.settings.cache_dir.clone(),
            max_bytes: cx.settings.cache_max_bytes,
        }),
        signers: signers(cx, jobs, sink),
        isolate: jobs.iter().filter(|j| j.work.build).count() > 1 && crate::build::workdir::can_isolate(),
    };
    run::execute(&rcx, jobs, sink)
}

/// What follows installs: depmod, initramfs, modprobe, the modules whose
/// BUILD_DEPENDS changed, in that order. Returns 0 or dkms's 6.
pub fn after_installs(cx: &Cx, record: &Record, sink: &dyn Sink) -> i32 {
    let mut rc = finish::depmod(cx, &record.changes, sink);
    finish::initramfs(cx, &record.changes, sink);
    finish::modprobe(cx, &record.changes);
    for k in record
        .changes
        .iter()
        .filter(|(_, c)| !c.installed.is_empty())
        .map(|(k, _)| k.clone())
        .collect::<Vec<_>>()
    {
        let arch = crate::kernel::machine_arch();
        let again = finish::dependents_to_rebuild(cx, &k, &arch);
        if again.is_empty() {
            continue;
        }
        let kernel = cx.kernel(&k, &arch);
        let mut jobs = Vec::new();
        for (m, v) in again {
            sink.out(&format!(
                "\nRebuilding {m}/{v} for kernel {}: a module it was built against changed version\n",
                kernel.label()
            ));
            let Ok(src) = source_of(cx, &m, &v) else { continue };
            let Ok(e) = cx.evaluate(
                &crate::config::manifest::config_in(&cx.tree.source_link(&m, &v)),
                &m,
                &v,
                &kernel,
                true,
                sink,
            ) else {
                continue;
            };
            let installed = cx.tree.is_installed(&m, &v, &k, &arch);
            jobs.push(job(
                cx,
                &m,
                &v,
                &kernel,
                Work {
                    uninstall_first: installed,
                    unbuild_first: true,
                    build: true,
                    install: true,
                },
                Arc::new(e),
                src,
            ));
        }
        let r = execute(cx, &jobs, sink);
        rc = rc.max(finish::depmod(cx, &r.changes, sink));
        finish::initramfs(cx, &r.changes, sink);
    }
    rc
}

/// `dkms build` and `dkms install`.
pub fn build_or_install(cx: &Cx, t: &Target, verb: Verb, sink: &dyn Sink) -> Result<i32> {
    let name = if verb == Verb::Install { "install" } else { "build" };
    if t.all {
        return Err(fail(
            code::REFUSED,
            format!("{name} does not accept --all; name the kernels with -k"),
        ));
    }
    if verb == Verb::Install {
        super::require_root()?;
    }
    let _lock = cx.lock(sink)?;
    let (m, v) = match (&t.source_dir, &t.module) {
        (Some(_), None) => {
            let mv = super::add::add(cx, t, sink)?;
            sink.out("");
            mv
        }
        _ => {
            let (m, v) = cx.module_version(t, name)?;
            if cx.compat().broken_state() {
                cx.refuse_broken(&m, &v)?;
            }
            if matches!(cx.tree.source_state(&m, &v, cx.compat()), SourceState::Absent) {
                super::add::add(
                    cx,
                    &Target {
                        module: Some(m.clone()),
                        version: Some(v.clone()),
                        ..t.clone()
                    },
                    sink,
                )?;
                sink.out("");
            }
            (m, v)
        }
    };
    let source = source_of(cx, &m, &v);
    let conf_path = cx.conf_path(&m, &v);
    // one job per distinct kernel; a kernel named twice gets the first one's result
    let mut firsts: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut codes: Vec<Result<i32, usize>> = Vec::new();
    let mut jobs = Vec::new();
    for (r, a) in &t.kernels {
        if let Some(&j) = firsts.get(&(r.clone(), a.clone())) {
            codes.push(Err(j));
            continue;
        }
        let k = cx.kernel(r, a);
        let st = state(cx, &m, &v, &k);
        if (verb == Verb::Build && st.built || verb == Verb::Install && st.installed) && !cx.opts.force {
            sink.out(&format!(
                "{m}/{v} is already {} for kernel {}; nothing to do (use --force to do it again)",
                if verb == Verb::Build { "built" } else { "installed" },
                k.label()
            ));
            codes.push(Ok(0));
            continue;
        }
        let e = match cx.evaluate(&conf_path, &m, &v, &k, true, sink) {
            Ok(e) => e,
            Err(f) => {
                sink.error(&f.message);
                codes.push(Ok(f.code));
                continue;
            }
        };
        match plan::decide(verb, st, &e, cx.opts.force) {
            Decision::Current => codes.push(Ok(0)),
            Decision::Excluded => {
                sink.warn(&format!(
                    "{conf} excludes every module of {m}/{v} from kernel {} with its BUILD_EXCLUSIVE directives ({}); it is not built for that kernel",
                    k.label(),
                    e.conf.exclusion().unwrap_or("no rule admits it"),
                    conf = conf_path.display()
                ));
                codes.push(Ok(code::EXCLUDED));
            }
            Decision::Refused(c) => {
                let msg = if c == code::BAD_CONF {
                    cx.bad_conf(&conf_path, &e, true).message
                } else {
                    format!(
                        "{} exists but holds no build; `dkms unbuild {m}/{v} -k {}` first",
                        cx.tree.build_result(&m, &v, &k.release, &k.arch).display(),
                        k.release
                    )
                };
                sink.error(&msg);
                codes.push(Ok(c));
            }
            Decision::Run(work) => {
                let src = match &source {
                    Ok(s) => s.clone(),
                    Err(e) => return Err(fail(crate::error::exit_code(e), format!("{e:#}"))),
                };
                firsts.insert((r.clone(), a.clone()), jobs.len());
                codes.push(Err(jobs.len()));
                jobs.push(job(cx, &m, &v, &k, work, Arc::new(e), src));
            }
        }
    }
    let record = execute(cx, &jobs, sink);
    let mut rc_after = 0;
    if verb == Verb::Install || record.changes.values().any(|c| !c.removed.is_empty()) {
        rc_after = after_installs(cx, &record, sink);
    }
    let last = codes
        .last()
        .map(|c| match c {
            Ok(code) => *code,
            Err(j) => record.outcomes.get(*j).map(Outcome::code).unwrap_or(0),
        })
        .unwrap_or(0);
    let rc = if last == 0 { rc_after } else { last };
    if rc == 0 && verb == Verb::Install {
        finish::post_transaction(cx, &t.kernels.first().map(|k| k.0.clone()).unwrap_or_default(), sink);
    }
    Ok(rc)
}
