//! Maps a parsed command line to the engine's operations and to the exit
//! code dkms would give.

use super::add::{self, Target};
use super::jobs::{self, Job, Outcome};
use super::status::{self, Filter};
use super::{autoinstall, remove, Ctx, Options};
use crate::cli::{Cli, Command, Common};
use crate::config::settings::Settings;
use crate::error::{code, fail};
use crate::kernel::Kernel;
use crate::state::lock::Lock;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

fn settings(c: &Common) -> Result<Settings> {
    let root = std::env::var_os("MODSYNC_SYSCONF_ROOT").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"));
    let mut s = Settings::load(&root)?;
    if let Some(p) = &c.dkmstree {
        s.dkms_tree = p.clone();
    }
    if let Some(p) = &c.sourcetree {
        s.source_tree = p.clone();
    }
    if let Some(p) = &c.installtree {
        s.install_tree = p.clone();
    }
    if let Some(j) = c.jobs {
        s.parallel_jobs = j;
    }
    s.verbose |= c.verbose;
    Ok(s)
}

/// module/version from the positional argument or -m/-v; a source path is
/// added first.
fn module_version(ctx: &Ctx, c: &Common, target: Option<&str>) -> Result<(String, String)> {
    match add::resolve(target, c.module.as_deref(), c.module_version.as_deref())? {
        Target::ModVer(m, v) => Ok((m, v)),
        t @ Target::Source(_) => {
            let k = first_kernel(ctx, c);
            add::add(ctx, &t, &k)
        }
    }
}

fn first_kernel(ctx: &Ctx, c: &Common) -> Kernel {
    ctx.kernels(&c.kernels, c.arch.as_deref()).remove(0)
}

fn no_all(c: &Common, verb: &str) -> Result<()> {
    if c.all {
        return Err(fail(code::ALREADY, format!("--all is not accepted by {verb}; name the kernels with -k")));
    }
    Ok(())
}

/// Kernels for uninstall/unbuild/remove: -k, or with --all every kernel m/v has state for.
fn target_kernels(ctx: &Ctx, c: &Common, m: &str, v: &str) -> Result<Vec<Kernel>> {
    if c.all && !c.kernels.is_empty() {
        return Err(fail(code::USAGE, "-k and --all cannot be used together"));
    }
    if c.all {
        let mut ks: Vec<(String, String)> = remove::states_of(ctx, m, v);
        for e in std::fs::read_dir(ctx.tree.module_dir(m)).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(rest) = n.strip_prefix("kernel-") {
                if let Some((k, a)) = rest.rsplit_once('-') {
                    if ctx.tree.active_version(m, k, a).as_deref() == Some(v) {
                        ks.push((k.to_string(), a.to_string()));
                    }
                }
            }
        }
        ks.sort();
        ks.dedup();
        return Ok(ks.iter().map(|(k, a)| ctx.kernel(k, a)).collect());
    }
    Ok(ctx.kernels(&c.kernels, c.arch.as_deref()))
}

fn build_or_install(ctx: &Ctx, c: &Common, target: Option<&str>, install: bool) -> Result<i32> {
    no_all(c, if install { "install" } else { "build" })?;
    let (m, v) = module_version(ctx, c, target)?;
    if matches!(ctx.tree.source_state(&m, &v), crate::state::SourceState::Absent) {
        add::add(ctx, &Target::ModVer(m.clone(), v.clone()), &first_kernel(ctx, c))?;
    }
    ctx.source_dir(&m, &v)?;
    let jobs: Vec<Job> = ctx
        .kernels(&c.kernels, c.arch.as_deref())
        .into_iter()
        .map(|kernel| Job { m: m.clone(), v: v.clone(), kernel, install, deps: vec![] })
        .collect();
    let outcomes = jobs::run(ctx, &jobs);
    let failed = outcomes.iter().find_map(|o| match o {
        Outcome::Failed { code, .. } => Some(*code),
        _ => None,
    });
    if let Some(code) = failed {
        return Ok(code);
    }
    if outcomes.iter().all(|o| matches!(o, Outcome::Skipped(_))) {
        return Ok(code::EXCLUDED);
    }
    Ok(0)
}

fn teardown(ctx: &Ctx, c: &Common, target: Option<&str>, verb: &str) -> Result<i32> {
    let (m, v) = module_version(ctx, c, target)?;
    if ctx.tree.source_state(&m, &v) == crate::state::SourceState::Absent && !ctx.tree.version_dir(&m, &v).is_dir() {
        return Err(fail(code::NOT_FOUND, format!("{m}/{v} is not in the tree; `modsync status` lists what is")));
    }
    let kernels = target_kernels(ctx, c, &m, &v)?;
    for k in &kernels {
        match verb {
            "uninstall" => {
                if !crate::install::uninstall(ctx, &m, &v, k)? {
                    println!("{m}/{v} is not installed for kernel {} ({}); nothing to uninstall.", k.release, k.arch);
                } else {
                    println!("Uninstalled {m}/{v} from kernel {} ({})", k.release, k.arch);
                }
            }
            _ => {
                if remove::unbuild_one(ctx, &m, &v, k)? {
                    println!("Removed {m}/{v} from kernel {} ({})", k.release, k.arch);
                }
            }
        }
    }
    ctx.finish()?;
    if verb == "remove" && (c.all || (c.kernels.is_empty() && remove::states_of(ctx, &m, &v).is_empty())) {
        remove::unregister(ctx, &m, &v, &first_kernel(ctx, c))?;
    }
    Ok(0)
}

fn status(ctx: &Ctx, c: &Common, target: Option<&str>, json: bool) -> Result<i32> {
    let (module, version) = match target.or(c.module.as_deref()) {
        Some(t) => match t.split_once('/') {
            Some((m, v)) => (Some(m.to_string()), Some(v.to_string())),
            None => (Some(t.to_string()), c.module_version.clone()),
        },
        None => (None, c.module_version.clone()),
    };
    let kernels = c.kernels.iter().map(|k| k.split('/').next().unwrap_or(k).to_string()).collect();
    let (lines, errors, stopped) = status::collect(ctx, &Filter { module, version, kernels, arch: c.arch.clone() });
    if json {
        use std::io::Write;
        let text = serde_json::to_string_pretty(&lines)? + "\n";
        match std::io::stdout().lock().write_all(text.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
            r => r.context("writing the status")?,
        }
    } else {
        let mut out = String::new();
        for l in &lines {
            out.push_str(&l.render());
            out.push('\n');
        }
        use std::io::Write;
        match std::io::stdout().lock().write_all(out.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
            r => r.context("writing the status")?,
        }
    }
    for e in errors {
        eprintln!("{e}");
    }
    Ok(if stopped { code::BROKEN } else { 0 })
}

fn secureboot(ctx: &Ctx) -> Result<i32> {
    let state = crate::secureboot::probe(Path::new("/"), &ctx.settings.mok_cert);
    println!("{}", crate::secureboot::explain(&state, &ctx.settings.mok_cert));
    Ok(0)
}

/// Runs the command; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    let c = &cli.common;
    let Some(cmd) = cli.command else {
        eprintln!("Error! No action given. Run `modsync --help` for the list of actions.");
        return Ok(0);
    };
    for (on, flag) in [(c.no_initrd, "--no-initrd"), (c.no_clean_kernel, "--no-clean-kernel"), (c.no_prepare_kernel, "--no-prepare-kernel")] {
        if on {
            eprintln!("Deprecated feature: {flag}");
        }
    }
    let opts = Options {
        force: c.force,
        force_version_override: c.force_version_override || c.rpm_safe_upgrade,
        no_depmod: c.no_depmod,
        verbose: c.verbose,
        kernelsourcedir: c.kernelsourcedir.clone(),
        conf: c.conf.clone(),
    };
    let ctx = Ctx::new(settings(c)?, opts);
    let mutating = !matches!(cmd, Command::Status { .. } | Command::Secureboot | Command::Cache { .. });
    let _lock = if mutating {
        let l = Lock::acquire(&ctx.settings.dkms_tree)?;
        ctx.recover();
        ctx.finish()?;
        Some(l)
    } else {
        None
    };
    match cmd {
        Command::Add { target } => {
            let t = add::resolve(target.as_deref(), c.module.as_deref(), c.module_version.as_deref())?;
            let (m, v) = add::add(&ctx, &t, &first_kernel(&ctx, c))?;
            println!("{m}/{v} added.");
            Ok(0)
        }
        Command::Build { target } => build_or_install(&ctx, c, target.as_deref(), false),
        Command::Install { target } => build_or_install(&ctx, c, target.as_deref(), true),
        Command::Uninstall { target } => teardown(&ctx, c, target.as_deref(), "uninstall"),
        Command::Unbuild { target } => teardown(&ctx, c, target.as_deref(), "unbuild"),
        Command::Remove { target } => teardown(&ctx, c, target.as_deref(), "remove"),
        Command::Status { target, json } => status(&ctx, c, target.as_deref(), json),
        Command::Autoinstall | Command::KernelPostinst => {
            no_all(c, "autoinstall")?;
            Ok(autoinstall::autoinstall(&ctx, &ctx.kernels(&c.kernels, c.arch.as_deref())))
        }
        Command::KernelPrerm => {
            for k in ctx.kernels(&c.kernels, c.arch.as_deref()) {
                remove::drop_kernel(&ctx, &k.release)?;
            }
            ctx.finish()?;
            Ok(0)
        }
        Command::KernelPreinst => Ok(0),
        Command::Hook { manager, event, args } => {
            // Hooks talk on stderr only (dnf5 parses stdout): send stdout there too.
            use std::io::Write;
            let _ = std::io::stdout().flush();
            // SAFETY: dup2 on the process's own standard descriptors.
            unsafe { libc::dup2(2, 1) };
            crate::hook::run(&ctx, &manager, &event, &args)
        }
        Command::Secureboot => secureboot(&ctx),
        Command::Cache { action } => {
            let cache = crate::build::cache::Cache { dir: ctx.settings.cache_dir.clone(), max_bytes: ctx.settings.cache_max_bytes };
            if action == "clear" {
                println!("Removed {} cached build(s) from {}", cache.clear()?, cache.dir.display());
            } else {
                let (n, bytes) = cache.usage();
                let state = if ctx.settings.cache { "on" } else { "off (cache = false in config.toml)" };
                println!(
                    "build cache {}: {state}; {n} build(s), {:.1} MiB of at most {} MiB",
                    cache.dir.display(),
                    bytes as f64 / 1048576.0,
                    ctx.settings.cache_max_bytes / 1048576
                );
            }
            Ok(0)
        }
        Command::GenerateMok => {
            let key = crate::install::sign::SigningKey { key: ctx.settings.mok_key.clone(), cert: ctx.settings.mok_cert.clone() };
            if crate::install::sign::ensure_mok(&key)? {
                println!("Created {} and {}", key.key.display(), key.cert.display());
            } else {
                println!("{} and {} already exist", key.key.display(), key.cert.display());
            }
            Ok(0)
        }
    }
}
