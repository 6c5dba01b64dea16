//! Building one module version for one kernel, in dkms's order: the checks
//! that refuse a build (no source, no headers, BUILD_DEPENDS), a fresh copy
//! of the source, patches, PRE_BUILD, make, then strip, sign and compress
//! into a staging directory renamed into place (`m/v/K/A`) in one step,
//! POST_BUILD, and the make.log kept with the result. A result found in the
//! build cache replaces the compile steps. The caller has decided that the
//! build should happen (not built yet, not excluded) and evaluated the
//! dkms.conf for this kernel.

mod inputs;
mod kept;
pub mod make;
pub mod makelog;
mod stage;
pub mod workdir;

use crate::cache::{Cache, Fetched};
use crate::config::command::Command as ConfCommand;
use crate::config::directives::ModuleConf;
use crate::config::settings::{Jobs, Settings};
use crate::error::code;
use crate::kernel::{Compression, Kernel};
use crate::scripts::{self, Script};
use crate::sign::Signer;
use crate::state::Tree;
use crate::sys::fs::{copy_tree, remove_within, temp_beside, write_atomic};
use crate::ui::Sink;
use anyhow::{Context, Result};
use inputs::cache_key;
pub use inputs::{depends_versions, missing_depends};
use make::{compiler_env, kcflags, make_command};
use std::path::{Path, PathBuf};
use workdir::{Step, Workdir};

/// What every build of one command shares.
pub struct Env<'a> {
    pub tree: &'a Tree,
    pub settings: &'a Settings,
    pub force: bool,
    pub jobserver: Option<&'a jobserver::Client>,
    pub cache: Option<&'a Cache>,
}

/// One build.
pub struct Job<'a> {
    pub module: &'a str,
    pub version: &'a str,
    pub kernel: &'a Kernel,
    pub conf: &'a ModuleConf,
    /// The module's source directory.
    pub source: &'a Path,
    /// dkms's variables, visible to the commands.
    pub vars: &'a [(String, String)],
    pub signer: Option<&'a Signer>,
    pub workdir: &'a Workdir,
    pub compression: Compression,
}

/// How a build ended, when it did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub code: i32,
    pub message: String,
    /// The make.log of the failed build (its copy kept per kernel under
    /// `m/v/.modsync/failed/K-A/` once [`build`] returns).
    pub log: Option<PathBuf>,
}

fn failed(code: i32, message: impl Into<String>) -> Failed {
    Failed {
        code,
        message: message.into(),
        log: None,
    }
}

/// A build that produced its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub from_cache: bool,
}

/// Builds m/v for the kernel and records it as built.
pub fn build(env: &Env, job: &Job, sink: &dyn Sink) -> Result<Built, Failed> {
    let (m, v, k) = (job.module, job.version, job.kernel);
    let entries = std::fs::read_dir(job.source).map(|rd| rd.count()).unwrap_or(0);
    if entries < 2 {
        return Err(failed(
            code::BAD_CONF,
            format!(
                "{} holds no module source (only {entries} entr{}); the build stops here",
                env.tree.source_link(m, v).display(),
                if entries == 1 { "y" } else { "ies" }
            ),
        ));
    }
    if !k.has_headers() {
        return Err(failed(
            env.settings.compat.headers_missing_code(),
            headers_missing(env, k),
        ));
    }
    let missing = missing_depends(env.tree, job.conf, k);
    if !missing.is_empty() {
        let list = missing.join(" ");
        if !env.force {
            return Err(failed(
                code::BUILD_DEPENDS,
                format!("{m}/{v} is not built for kernel {}: BUILD_DEPENDS {list} must be installed for that kernel first (or use --force)", k.label()),
            ));
        }
        sink.warn(&format!(
            "building {m}/{v} for kernel {} although BUILD_DEPENDS {list} is not installed for it",
            k.label()
        ));
    }
    let key = env.cache.and_then(|_| {
        cache_key(env, job)
            .map_err(|e| log::warn!("not using the build cache for {m}/{v}: {e:#}"))
            .ok()
    });
    if let (Some(cache), Some(key), false) = (env.cache, &key, env.force) {
        match place_cached(env.tree, m, v, k, cache, key) {
            Ok(Fetched::Copied) => {
                let _ = remove_within(&env.tree.root, &env.tree.failed_dir(m, v, &k.release, &k.arch));
                sink.out(&format!(
                    "{m}/{v} for kernel {}: reused the cached build {}",
                    k.label(),
                    &key[..12]
                ));
                return Ok(Built { from_cache: true });
            }
            Ok(Fetched::Absent) => {}
            Ok(Fetched::CopyFailed(why)) => log::warn!("not using the cached build {key}: {why}"),
            Ok(Fetched::Discarded(why)) => log::warn!("removed the damaged cached build {key}: {why}"),
            Err(e) => log::warn!("not using the cached build {key}: {e:#}"),
        }
    }
    let result = compile_and_stage(env, job, sink);
    if let Err(mut f) = result {
        kept::keep(env, job, &mut f);
        return Err(f);
    }
    let _ = remove_within(&env.tree.root, &env.tree.failed_dir(m, v, &k.release, &k.arch));
    if let (Some(cache), Some(key)) = (env.cache, &key) {
        match cache.store(key, &env.tree.build_result(m, v, &k.release, &k.arch)) {
            Ok(stored) => log::debug!("build cache {key}: {stored:?}"),
            Err(e) => log::warn!("could not keep {m}/{v} in the build cache: {e:#}"),
        }
        match cache.prune() {
            Ok(pruned) => log::debug!("build cache pruned: {pruned:?}"),
            Err(e) => log::warn!("could not prune the build cache {}: {e:#}", cache.dir.display()),
        }
    }
    result
}

fn headers_missing(env: &Env, k: &Kernel) -> String {
    let distro = crate::kernel::distro::Distro::detect(&env.settings.sysconf_root);
    let hint = distro
        .map(|d| d.headers_hint(&k.release, &env.settings.install_tree))
        .unwrap_or_default();
    format!(
        "the headers of kernel {} are not installed: {} has no include/ directory. Install them{}, or point --kernelsourcedir at them.",
        k.release,
        k.headers_dir.display(),
        if hint.is_empty() { String::new() } else { format!(" (`{hint}`)") }
    )
}

/// Copies the result cached under `key` into `m/v/K/A` through a staging
/// directory, when the cache holds a sound one.
fn place_cached(tree: &Tree, m: &str, v: &str, k: &Kernel, cache: &Cache, key: &str) -> Result<Fetched> {
    let dest = tree.build_result(m, v, &k.release, &k.arch);
    let staging = temp_beside(&dest);
    std::fs::create_dir_all(tree.kernel_dir(m, v, &k.release))
        .with_context(|| format!("creating {}", tree.kernel_dir(m, v, &k.release).display()))?;
    let _ = std::fs::remove_dir_all(&staging);
    let fetched = cache.fetch(key, &staging)?;
    if fetched == Fetched::Copied {
        if let Err(e) = std::fs::rename(&staging, &dest) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e).with_context(|| format!("renaming {} to {}", staging.display(), dest.display()));
        }
    }
    Ok(fetched)
}

fn step_env(env: &Env, job: &Job) -> Vec<(String, String)> {
    let mut e: Vec<(String, String)> = job.vars.to_vec();
    e.extend(compiler_env(job.kernel));
    let btf = job.kernel.headers_dir.join("vmlinux").is_file();
    if let Some(flags) = kcflags(
        job.conf,
        env.settings.debug_info,
        btf,
        std::env::var("KCFLAGS").ok().as_deref(),
    ) {
        e.push(("KCFLAGS".into(), flags));
    }
    e
}

fn compile_and_stage(env: &Env, job: &Job, sink: &dyn Sink) -> Result<Built, Failed> {
    let (m, v, k, wd) = (job.module, job.version, job.kernel, job.workdir);
    let internal = |e: anyhow::Error| failed(code::GENERIC, format!("{e:#}"));
    // a fresh copy of the source, with /etc/dkms/<m>/patches over its patches
    if wd.real.exists() {
        std::fs::remove_dir_all(&wd.real)
            .map_err(|e| failed(code::GENERIC, format!("removing {}: {e}", wd.real.display())))?;
    }
    if wd.isolated() {
        std::fs::create_dir_all(&wd.seen)
            .map_err(|e| failed(code::GENERIC, format!("creating {}: {e}", wd.seen.display())))?;
    }
    copy_tree(job.source, &wd.real).map_err(internal)?;
    let overlay = env.settings.etc_dkms().join(m).join("patches");
    if env.settings.compat.etc_overrides() && overlay.is_dir() {
        copy_tree(&overlay, &wd.real.join("patches")).map_err(internal)?;
    }
    let log_path = wd.real.join("make.log");
    let seen_log = wd.seen.join("make.log");
    let mut log = makelog::create(
        &log_path,
        &makelog::header(env.settings.compat.version_string(), m, v, &k.release, &k.arch),
    )
    .map_err(internal)?;
    let with_log = |code, message: String| Failed {
        code,
        message,
        log: Some(log_path.clone()),
    };
    let vars = step_env(env, job);
    let prelude = env
        .settings
        .build_environment
        .as_ref()
        .filter(|p| p.is_file())
        .map(|p| {
            format!(
                "source <( (source '{}' &>/dev/null; export -p) ); ",
                p.display().to_string().replace('\'', "'\\''")
            )
        });
    let run = |log: &mut std::fs::File,
               description: &str,
               command: &ConfCommand,
               cwd: Option<&Path>|
     -> Result<i32, Failed> {
        // an argument list stays one: bash execs it as "$@" after the prelude
        let full = match (&prelude, command) {
            (Some(p), ConfCommand::Shell(line)) => ConfCommand::Shell(format!("{p}{line}")),
            (Some(p), ConfCommand::Argv(words)) => ConfCommand::Argv(
                [
                    "bash".to_string(),
                    "-c".into(),
                    format!("{p}exec \"$@\""),
                    "modsync".into(),
                ]
                .into_iter()
                .chain(words.iter().cloned())
                .collect(),
            ),
            (None, c) => c.clone(),
        };
        let jobserver = if matches!(env.settings.jobs, Jobs::Budget(0)) {
            None
        } else {
            env.jobserver
        };
        workdir::run(
            wd,
            &Step {
                description,
                command: &full,
                cwd,
                env: &vars,
                jobserver,
            },
            log,
        )
        .map_err(internal)
    };
    for p in &job.conf.patches {
        if format!("patches/{p}").contains("/../") {
            return Err(with_log(
                code::REFUSED,
                format!("the patch {p} named in dkms.conf has a '..' in its path; patches must be inside patches/"),
            ));
        }
        if !wd.real.join("patches").join(p).exists() {
            return Err(with_log(
                code::REFUSED,
                format!(
                    "the patch {p} named in dkms.conf is not in {}/patches/",
                    wd.seen.display()
                ),
            ));
        }
        sink.out(&format!("Applying patch {p}"));
        let c = run(
            &mut log,
            &format!("Applying patch {p}"),
            &ConfCommand::Shell(format!("patch -p1 < ./patches/{p}")),
            None,
        )?;
        if c != 0 {
            return Err(with_log(
                code::INSTALL_FAILED,
                format!(
                    "the patch {p} did not apply (exit status {c}); see {}",
                    seen_log.display()
                ),
            ));
        }
    }
    let overrides = env
        .settings
        .compat
        .etc_overrides()
        .then(|| env.settings.etc_dkms().join(m));
    let build_script = |log: &mut std::fs::File, what: &str, value: &Option<ConfCommand>| -> Result<(), Failed> {
        let Some(value) = value else { return Ok(()) };
        let s = Script {
            what,
            value,
            dir: wd.seen.clone(),
            overrides: overrides.clone(),
        };
        let Some((command, cwd)) = scripts::build_command(&s, &wd.real, sink) else {
            return Ok(());
        };
        sink.out(&format!("Running the {what} script"));
        let c = run(log, &format!("Running the {what} script"), &command, cwd.as_deref())?;
        if c != 0 && env.settings.compat.build_scripts_can_fail() {
            return Err(with_log(
                c,
                format!("the {what} script exited with status {c}; see {}", seen_log.display()),
            ));
        }
        if c != 0 {
            sink.warn(&format!(
                "the {what} script exited with status {c} (ignored, as dkms 3.0 does); see {}",
                seen_log.display()
            ));
        }
        Ok(())
    };
    build_script(&mut log, "pre_build", &job.conf.pre_build)?;
    let make = make_command(&job.conf.make_command, &k.release, env.settings.jobs);
    sink.out(&format!("Building {m}/{v} for kernel {}", k.label()));
    let c = run(&mut log, "Building module(s)", &make, None)?;
    if c != 0 {
        return Err(with_log(
            code::MAKE_FAILED,
            format!(
                "building {m}/{v} for kernel {} failed: `{make}` exited with status {c}.\nThe build log is {}",
                k.label(),
                seen_log.display()
            ),
        ));
    }
    let missing: Vec<String> = job
        .conf
        .buildable()
        .map(|s| format!("{}{}.ko", s.built_location, s.built_name))
        .filter(|f| !wd.real.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(with_log(
            code::MODULE_MISSING,
            format!(
                "make succeeded but did not produce {} for kernel {}; check BUILT_MODULE_NAME and BUILT_MODULE_LOCATION in dkms.conf, or see {}",
                missing.join(", "),
                k.label(),
                seen_log.display()
            ),
        ));
    }
    stage::stage(env, job, sink).map_err(|e| with_log(code::MODULE_MISSING, format!("{e:#}")))?;
    build_script(&mut log, "post_build", &job.conf.post_build)?;
    drop(log);
    let result = env.tree.build_result(m, v, &k.release, &k.arch);
    let _ = std::fs::rename(&log_path, result.join("log/make.log"))
        .or_else(|_| std::fs::copy(&log_path, result.join("log/make.log")).map(|_| ()));
    // an isolated build leaves the shared mount point: other builds of this
    // version may still bind over it; the executor removes it at the end
    let _ = std::fs::remove_dir_all(&wd.real);
    if job.conf.build_depends_rebuild && !env.force {
        for (d, dv) in depends_versions(env.tree, job.conf, k) {
            let _ = write_atomic(&result.join(format!(".dep_{d}")), format!("{dv}\n").as_bytes(), 0o644);
        }
    }
    Ok(Built { from_cache: false })
}
