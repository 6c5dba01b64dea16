//! Building one module version for one kernel: checks (BUILD_EXCLUSIVE,
//! headers, BUILD_DEPENDS), a private copy of the source, patches,
//! PRE_BUILD, make, POST_BUILD, then strip / sign / compress into a staging
//! directory that is renamed into place (`m/v/K/A`) in one step.

pub mod cache;
pub mod exclusive;
pub mod runner;
pub mod scheduler;

use crate::config::directives::ModuleConf;
use crate::engine::Ctx;
use crate::error::{code, fail, Failure};
use crate::kernel::kconfig::KConfig;
use crate::kernel::Kernel;
use crate::state::{write_atomic, BuiltInfo};
use anyhow::{Context, Result};
use runner::{run_logged, Step, Workdir};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The make command for `kernel`: MAKE[i] whose MAKE_MATCH[i] matches (the
/// last one wins), else MAKE[0] unless MAKE_MATCH[0] is set, else kbuild's
/// default; a leading `make` gets `KERNELRELEASE=K` (and `-jN` when no
/// jobserver shares the CPUs). Pure.
pub fn make_command(conf: &ModuleConf, release: &str, build_dir: &Path, source_dir: &Path, jobs: Option<usize>) -> String {
    let mut chosen: Option<&String> = None;
    for (i, cmd) in &conf.make {
        if let Some(re) = conf.make_match.get(i).filter(|s| !s.is_empty()) {
            if regex::Regex::new(re).map(|r| r.is_match(release)).unwrap_or(false) {
                chosen = Some(cmd);
            }
        }
    }
    let default = format!("make -C {} M={}", source_dir.display(), build_dir.display());
    let cmd = match chosen {
        Some(c) => c.clone(),
        None if conf.make_match.get(&0).is_none_or(|s| s.is_empty()) => conf.make.get(&0).cloned().unwrap_or(default),
        None => default,
    };
    match cmd.strip_prefix("make") {
        Some(rest) => match jobs {
            Some(n) => format!("make -j{n} KERNELRELEASE={release}{rest}"),
            None => format!("make KERNELRELEASE={release}{rest}"),
        },
        None => cmd,
    }
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    let st = Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    anyhow::ensure!(st.success(), "cp -a {} {} failed", from.display(), to.display());
    Ok(())
}

fn headers_missing(ctx: &Ctx, kernel: &Kernel) -> anyhow::Error {
    fail(
        code::HEADERS_MISSING,
        format!(
            "the headers of kernel {k} are not installed ({} has no include/). Install them with `{}`, or point --kernelsourcedir at them.",
            kernel.source_dir.display(),
            ctx.distro.headers_hint(&kernel.release, &ctx.settings.install_tree),
            k = kernel.release
        ),
    )
}

/// Checks that may skip or refuse a build before any work. Returns the
/// modules (indices into conf.modules) allowed on this kernel.
pub fn preflight(ctx: &Ctx, m: &str, v: &str, conf: &ModuleConf, kernel: &Kernel) -> Result<Vec<usize>> {
    let kconfig = kernel.config_path().and_then(|p| std::fs::read_to_string(p).ok()).map(|t| KConfig::parse(&t));
    let allowed = exclusive::allowed_modules(conf, &kernel.release, &kernel.arch, kconfig.as_ref());
    if allowed.is_none() {
        return Err(fail(
            code::EXCLUDED,
            format!("{m}/{v} is not built for kernel {} ({}): its BUILD_EXCLUSIVE directives exclude this kernel, arch or config", kernel.release, kernel.arch),
        ));
    }
    if !kernel.has_headers() && !kernel.modules_dir.exists() && ctx.opts.kernelsourcedir.is_none() {
        let known = crate::kernel::installed_releases(&ctx.settings.install_tree);
        return Err(fail(
            code::HEADERS_MISSING,
            format!(
                "kernel {} is unknown here: neither {} nor its headers exist. Check the version (installed: {}), or install it and its headers (`{}`).",
                kernel.release,
                kernel.modules_dir.display(),
                if known.is_empty() { "none".to_string() } else { known.join(", ") },
                ctx.distro.headers_hint(&kernel.release, &ctx.settings.install_tree)
            ),
        ));
    }
    if !kernel.has_headers() {
        return Err(headers_missing(ctx, kernel));
    }
    if !ctx.opts.force {
        for dep in &conf.build_depends {
            let ok = ctx.tree.versions(dep).iter().any(|dv| ctx.tree.is_installed(dep, dv, &kernel.release, &kernel.arch));
            if !ok {
                return Err(fail(
                    code::BUILD_DEPENDS,
                    format!("{m}/{v} needs {dep} installed for kernel {} first (BUILD_DEPENDS); install it, or use --force", kernel.release),
                ));
            }
        }
    }
    Ok(allowed.unwrap_or_default())
}

/// Builds m/v for `kernel` and records it as built. The caller holds the lock.
pub fn build(ctx: &Ctx, m: &str, v: &str, kernel: &Kernel) -> Result<()> {
    let (k, a) = (&kernel.release, &kernel.arch);
    let conf = ctx.read_conf(m, v, kernel)?;
    let allowed = preflight(ctx, m, v, &conf, kernel)?;
    let source = ctx.source_dir(m, v)?;
    let signer = crate::install::signing_for(ctx, kernel);
    let cache = ctx.settings.cache.then(|| cache::Cache { dir: ctx.settings.cache_dir.clone(), max_bytes: ctx.settings.cache_max_bytes });
    let key = match &cache {
        Some(_) => match cache_key(ctx, m, v, &conf, &allowed, kernel, &source, signer.as_ref()) {
            Ok(k) => Some(k),
            Err(e) => {
                log::warn!("not using the build cache for {m}/{v}: {e:#}");
                None
            }
        },
        None => None,
    };
    if let (Some(c), Some(k), false) = (&cache, &key, ctx.opts.force) {
        if let Some(entry) = c.lookup(k) {
            from_cache(ctx, m, v, kernel, &entry)?;
            println!("{m}/{v} for {}: reused the cached build {}", kernel.release, &k[..12]);
            return Ok(());
        }
    }
    let seen = ctx.tree.build_dir(m, v);
    let wd = if ctx.isolate() {
        Workdir { real: ctx.tree.version_dir(m, v).join(format!(".build-{k}-{a}")), seen: seen.clone() }
    } else {
        Workdir { real: seen.clone(), seen: seen.clone() }
    };
    let _ = std::fs::remove_dir_all(&wd.real);
    if wd.isolated() {
        std::fs::create_dir_all(&seen).with_context(|| format!("creating {}", seen.display()))?;
    }
    copy_tree(&source, &wd.real)?;
    let overlay = ctx.settings.sysconf_root.join("etc/dkms").join(m).join("patches");
    if overlay.is_dir() {
        copy_tree(&overlay, &wd.real.join("patches"))?;
    }
    let log_path = wd.real.join("make.log");
    let result = compile(ctx, m, v, &conf, &allowed, kernel, &wd, &log_path)
        .and_then(|()| stage(ctx, m, v, &conf, &allowed, kernel, &wd, &log_path, signer.as_ref()));
    let failed_dir = ctx.tree.failed_dir(m, v, k, a);
    match result {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&failed_dir);
            let _ = std::fs::remove_dir_all(&wd.real);
            if let (Some(c), Some(key)) = (&cache, &key) {
                if let Err(e) = c.store(key, &ctx.tree.kernel_dir(m, v, k, a)) {
                    log::warn!("could not store {m}/{v} in the build cache: {e:#}");
                }
            }
            Ok(())
        }
        Err(e) => {
            std::fs::create_dir_all(&failed_dir).ok();
            let kept = failed_dir.join("make.log");
            let _ = std::fs::rename(&log_path, &kept).or_else(|_| std::fs::copy(&log_path, &kept).map(|_| ()));
            let _ = std::fs::remove_dir_all(&wd.real);
            let code = crate::error::exit_code(&e);
            let tail = runner::tail(&kept, 12);
            let _ = std::fs::write(failed_dir.join("reason"), format!("{e:#}\n"));
            Err(Failure::new(
                code,
                format!(
                    "building {m}/{v} for kernel {k} ({a}) failed: {e:#}\nmake.log: {}\n--- last lines of make.log ---\n{tail}\n---",
                    kept.display()
                ),
            )
            .into())
        }
    }
}

/// KCFLAGS for a build, when it should change: `-g0` appended (kbuild adds
/// KCFLAGS last, so it overrides the kernel's `-g`) when every module of the
/// build is going to be stripped, since `strip -g` discards the debug
/// information anyway, unless the user keeps it or the kernel generates BTF
/// for modules from it (its build dir has a vmlinux, as Arch's headers do).
/// Pure.
pub fn kcflags(conf: &ModuleConf, allowed: &[usize], keep_debug: bool, kernel_makes_btf: bool, inherited: Option<&str>) -> Option<String> {
    let all_stripped = !allowed.is_empty() && allowed.iter().all(|&i| conf.modules.get(i).is_some_and(|s| s.strip));
    if keep_debug || kernel_makes_btf || !all_stripped {
        return None;
    }
    Some(match inherited.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => format!("{s} -g0"),
        None => "-g0".to_string(),
    })
}

fn step_env(ctx: &Ctx, m: &str, v: &str, conf: &ModuleConf, allowed: &[usize], kernel: &Kernel) -> Vec<(String, String)> {
    let vars = ctx.eval_vars(m, v, kernel);
    let mut env: Vec<(String, String)> = vars.pairs().into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    env.push(("PACKAGE_NAME".into(), m.into()));
    env.push(("PACKAGE_VERSION".into(), v.into()));
    let btf = kernel.source_dir.join("vmlinux").is_file();
    if let Some(flags) = kcflags(conf, allowed, ctx.settings.debug_info, btf, std::env::var("KCFLAGS").ok().as_deref()) {
        log::debug!("{m}/{v}: building with KCFLAGS={flags} (all its modules are stripped)");
        env.push(("KCFLAGS".into(), flags));
    }
    env
}

#[allow(clippy::too_many_arguments)]
fn compile(ctx: &Ctx, m: &str, v: &str, conf: &ModuleConf, allowed: &[usize], kernel: &Kernel, wd: &Workdir, log_path: &Path) -> Result<()> {
    let mut log = File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;
    writeln!(
        log,
        "DKMS (modsync-{}) make.log for {m}/{v} for kernel {} ({})\n{}",
        env!("CARGO_PKG_VERSION"),
        kernel.release,
        kernel.arch,
        chrono_like_now()
    )?;
    let env = step_env(ctx, m, v, conf, allowed, kernel);
    let js = if ctx.settings.parallel_jobs == 0 { None } else { Some(ctx.jobserver()?) };
    let run = |log: &mut File, desc: &str, cmd: &str| -> Result<i32> {
        run_logged(&Step { description: desc, command: cmd, workdir: wd, subdir: "", env: &env, jobserver: js }, log)
    };
    for p in &conf.patches {
        if let Some(re) = &p.kernel_match {
            if !regex::Regex::new(re).map(|r| r.is_match(&kernel.release)).unwrap_or(false) {
                continue;
            }
        }
        if !wd.real.join("patches").join(&p.file).is_file() {
            return Err(fail(code::ALREADY, format!("patch {} named in PATCH is missing from {}/patches", p.file, m)));
        }
        let c = run(&mut log, &format!("Applying patch {}", p.file), &format!("patch -p1 < ./patches/{}", p.file))?;
        if c != 0 {
            return Err(fail(code::INSTALL, format!("patch {} did not apply (exit {c})", p.file)));
        }
    }
    if let Some(s) = &conf.pre_build {
        script(&mut log, &run, "PRE_BUILD", s, &wd.real)?;
    }
    let jobs = if js.is_some() { None } else { Some(0) };
    let make = make_command(conf, &kernel.release, &wd.seen, &kernel.source_dir, jobs).replace("-j0 ", "-j ");
    let c = run(&mut log, "Building module(s)", &make)?;
    if c != 0 {
        return Err(fail(code::MAKE_FAILED, format!("make exited with status {c}")));
    }
    if let Some(s) = &conf.post_build {
        script(&mut log, &run, "POST_BUILD", s, &wd.real)?;
    }
    Ok(())
}

fn script(log: &mut File, run: &dyn Fn(&mut File, &str, &str) -> Result<i32>, what: &str, s: &str, dir: &Path) -> Result<()> {
    let file = s.split_whitespace().next().unwrap_or("");
    let path = dir.join(file);
    let executable = std::fs::metadata(&path).map(|md| std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o111 != 0).unwrap_or(false);
    if !executable {
        eprintln!("Warning: the {what} script {file} is not executable; skipped");
        return Ok(());
    }
    let c = run(log, &format!("Running the {what} script"), &format!("./{s}"))?;
    if c != 0 {
        return Err(fail(c, format!("the {what} script {file} exited with status {c}")));
    }
    Ok(())
}

fn chrono_like_now() -> String {
    Command::new("date").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
}

/// Everything a build's result depends on, hashed: the source tree and the
/// patch overlay, the evaluated directives, the kernel's release, arch,
/// configuration and Module.symvers, the compiler, the installed versions of
/// BUILD_DEPENDS, the signing certificate and hash, and the compression.
#[allow(clippy::too_many_arguments)]
fn cache_key(
    ctx: &Ctx,
    m: &str,
    v: &str,
    conf: &ModuleConf,
    allowed: &[usize],
    kernel: &Kernel,
    source: &Path,
    signer: Option<&(String, crate::install::sign::SigningKey)>,
) -> Result<String> {
    let mut b = cache::KeyBuilder::default();
    b.field("module", format!("{m}/{v}").as_bytes())
        .field("kernel", format!("{}/{}", kernel.release, kernel.arch).as_bytes())
        .field("conf", format!("{conf:?}{allowed:?}").as_bytes())
        .field("compression", kernel.module_compression().suffix().as_bytes())
        .field("location", ctx.distro.module_location().unwrap_or("").as_bytes());
    b.tree("source", source)?;
    b.tree("patches", &ctx.settings.sysconf_root.join("etc/dkms").join(m).join("patches"))?;
    match kernel.config_path() {
        Some(p) => b.file("config", &p),
        None => b.field("config", b""),
    };
    b.file("symvers", &kernel.source_dir.join("Module.symvers"));
    let cc = Command::new("gcc").arg("--version").output().map(|o| o.stdout).unwrap_or_default();
    b.field("compiler", &cc);
    for d in &conf.build_depends {
        let active = ctx.tree.active_version(d, &kernel.release, &kernel.arch).unwrap_or_default();
        b.field("depends", format!("{d}/{active}").as_bytes());
    }
    match signer {
        Some((hash, key)) => b.field("sign", hash.as_bytes()).file("cert", &key.cert),
        None => b.field("sign", b""),
    };
    Ok(b.finish())
}

/// Fills `m/v/K/A` from a cache entry (staged and renamed like a build).
fn from_cache(ctx: &Ctx, m: &str, v: &str, kernel: &Kernel, entry: &Path) -> Result<()> {
    let (k, a) = (&kernel.release, &kernel.arch);
    let kdir = ctx.tree.version_dir(m, v).join(k);
    let staging = kdir.join(format!(".tmp_{a}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(staging.join("log")).with_context(|| format!("creating {}", staging.display()))?;
    let res = (|| {
        let st = Command::new("cp").arg("-a").arg(entry.join("module")).arg(staging.join("module")).status()?;
        anyhow::ensure!(st.success(), "copying {} failed", entry.display());
        let mut log = std::fs::read(entry.join("make.log")).unwrap_or_default();
        log.extend_from_slice(format!("\n# reused from the build cache entry {}\n", entry.display()).as_bytes());
        std::fs::write(staging.join("log/make.log"), log)?;
        if entry.join(".modsync.json").is_file() {
            std::fs::copy(entry.join(".modsync.json"), staging.join(".modsync.json"))?;
        }
        let dest = kdir.join(a);
        if dest.exists() {
            std::fs::remove_dir_all(&dest)?;
        }
        std::fs::rename(&staging, &dest)?;
        anyhow::Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    res.with_context(|| format!("installing {m}/{v} for {k} from the build cache"))?;
    let _ = std::fs::remove_dir_all(ctx.tree.failed_dir(m, v, k, a));
    Ok(())
}

/// Strip, sign and compress the built modules into a staging directory,
/// then rename it to `m/v/K/A`.
#[allow(clippy::too_many_arguments)]
fn stage(
    ctx: &Ctx,
    m: &str,
    v: &str,
    conf: &ModuleConf,
    allowed: &[usize],
    kernel: &Kernel,
    wd: &Workdir,
    log_path: &Path,
    signer: Option<&(String, crate::install::sign::SigningKey)>,
) -> Result<()> {
    let (k, a) = (&kernel.release, &kernel.arch);
    let mut missing = Vec::new();
    for &i in allowed {
        let spec = &conf.modules[i];
        let p = wd.real.join(&spec.built_location).join(format!("{}.ko", spec.built_name));
        if !p.is_file() {
            missing.push(Path::new(&spec.built_location).join(format!("{}.ko", spec.built_name)).display().to_string());
        }
    }
    if !missing.is_empty() {
        return Err(fail(
            code::MODULE_MISSING,
            format!("make succeeded but did not produce {}; check BUILT_MODULE_NAME and BUILT_MODULE_LOCATION in dkms.conf", missing.join(", ")),
        ));
    }
    let kdir = ctx.tree.version_dir(m, v).join(k);
    std::fs::create_dir_all(&kdir).with_context(|| format!("creating {}", kdir.display()))?;
    let staging = kdir.join(format!(".tmp_{a}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(staging.join("module")).with_context(|| format!("creating {}", staging.display()))?;
    std::fs::create_dir_all(staging.join("log"))?;
    let compression = kernel.module_compression();
    let mut info = BuiltInfo::default();
    for &i in allowed {
        let spec = &conf.modules[i];
        let built = wd.real.join(&spec.built_location).join(format!("{}.ko", spec.built_name));
        if spec.strip {
            let st = Command::new("strip").arg("-g").arg(&built).status().with_context(|| format!("running strip -g {}", built.display()))?;
            if !st.success() {
                log::warn!("strip -g {} failed; installing it unstripped", built.display());
            }
        }
        if let Some((hash, key)) = signer {
            crate::install::sign::sign_module(&built, hash, key).with_context(|| format!("signing {}", built.display()))?;
        }
        let data = std::fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
        let out = crate::install::compress::compress(&data, compression).with_context(|| format!("compressing {}", built.display()))?;
        let name = format!("{}.ko{}", spec.dest_name, compression.suffix());
        std::fs::write(staging.join("module").join(&name), out).with_context(|| format!("writing {name} to {}", staging.display()))?;
        let loc = ctx.install_location(&spec.dest_location).trim_matches('/');
        info.installed_paths.push(format!("{loc}/{name}"));
    }
    let symvers = wd.real.join("Module.symvers");
    if symvers.is_file() {
        std::fs::copy(&symvers, staging.join("module/Module.symvers")).ok();
    }
    std::fs::copy(log_path, staging.join("log/make.log")).with_context(|| format!("keeping {}", log_path.display()))?;
    write_atomic(&staging.join(".modsync.json"), serde_json::to_string_pretty(&info)?.as_bytes())?;
    let dest: PathBuf = kdir.join(a);
    if dest.exists() {
        std::fs::remove_dir_all(&dest).with_context(|| format!("replacing {}", dest.display()))?;
    }
    std::fs::rename(&staging, &dest).with_context(|| format!("renaming {} to {}", staging.display(), dest.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::directives::from_raw;
    use crate::config::dkms_conf::Raw;

    fn conf(pairs: &[(&str, usize, &str)]) -> ModuleConf {
        let mut r = Raw::default();
        for (n, i, v) in [("PACKAGE_NAME", 0, "foo"), ("PACKAGE_VERSION", 0, "1"), ("DEST_MODULE_LOCATION", 0, "/updates")].iter().chain(pairs) {
            r.vars.entry(n.to_string()).or_default().insert(*i, v.to_string());
        }
        from_raw(&r).unwrap()
    }

    #[test]
    fn default_make_is_kbuild_with_kernelrelease() {
        let c = conf(&[]);
        let cmd = make_command(&c, "6.1.0-56-amd64", Path::new("/var/lib/dkms/foo/1/build"), Path::new("/lib/modules/6.1.0-56-amd64/build"), Some(4));
        assert_eq!(cmd, "make -j4 KERNELRELEASE=6.1.0-56-amd64 -C /lib/modules/6.1.0-56-amd64/build M=/var/lib/dkms/foo/1/build");
        let cmd = make_command(&c, "6.1", Path::new("/b"), Path::new("/s"), None);
        assert_eq!(cmd, "make KERNELRELEASE=6.1 -C /s M=/b");
    }

    #[test]
    fn debug_info_is_skipped_only_when_everything_is_stripped() {
        let c = conf(&[("BUILT_MODULE_NAME", 0, "a"), ("BUILT_MODULE_NAME", 1, "b"), ("DEST_MODULE_LOCATION", 1, "/updates")]);
        assert_eq!(kcflags(&c, &[0, 1], false, false, None).as_deref(), Some("-g0"));
        assert_eq!(kcflags(&c, &[0, 1], false, false, Some("-DX ")).as_deref(), Some("-DX -g0"));
        assert_eq!(kcflags(&c, &[0, 1], true, false, None), None, "the user keeps debug info");
        assert_eq!(kcflags(&c, &[0, 1], false, true, None), None, "the kernel makes BTF from it");
        assert_eq!(kcflags(&c, &[], false, false, None), None);
        let c = conf(&[("BUILT_MODULE_NAME", 0, "a"), ("BUILT_MODULE_NAME", 1, "b"), ("DEST_MODULE_LOCATION", 1, "/updates"), ("STRIP", 1, "no")]);
        assert_eq!(kcflags(&c, &[0, 1], false, false, None), None, "b keeps its debug info");
        assert_eq!(kcflags(&c, &[0], false, false, None).as_deref(), Some("-g0"), "b is not built here");
    }

    #[test]
    fn make_match_picks_the_last_matching_index() {
        let c = conf(&[("MAKE", 0, "make zero"), ("MAKE", 1, "make one"), ("MAKE_MATCH", 1, "^6\\."), ("MAKE", 2, "make two"), ("MAKE_MATCH", 2, "^5\\.")]);
        assert_eq!(make_command(&c, "6.1", Path::new("/b"), Path::new("/s"), None), "make KERNELRELEASE=6.1 one");
        assert_eq!(make_command(&c, "4.9", Path::new("/b"), Path::new("/s"), None), "make KERNELRELEASE=4.9 zero");
        let c = conf(&[("MAKE", 0, "'make' x"), ("MAKE_MATCH", 0, "^9")]);
        assert_eq!(make_command(&c, "6.1", Path::new("/b"), Path::new("/s"), None), "make KERNELRELEASE=6.1 -C /s M=/b");
        let c = conf(&[("MAKE", 0, "./build.sh")]);
        assert_eq!(make_command(&c, "6.1", Path::new("/b"), Path::new("/s"), Some(2)), "./build.sh");
    }
}
