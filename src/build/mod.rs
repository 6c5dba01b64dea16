//! Building one module version for one kernel, in dkms's order: the checks
//! that refuse a build (no source, no headers, BUILD_DEPENDS), a fresh copy
//! of the source, patches, PRE_BUILD, make, then strip, sign and compress
//! into a staging directory renamed into place (`m/v/K/A`) in one step,
//! POST_BUILD, and the make.log kept with the result. A result found in the
//! build cache replaces the compile steps. The caller has decided that the
//! build should happen (not built yet, not excluded) and evaluated the
//! dkms.conf for this kernel.

pub mod makelog;
pub mod workdir;

use crate::cache::{Cache, KeyBuilder};
use crate::config::directives::ModuleConf;
use crate::config::settings::{Jobs, Settings};
use crate::error::code;
use crate::kernel::{Compression, Kernel};
use crate::scripts::{self, Script};
use crate::sign::Signer;
use crate::state::record::{self, BuildRecord, BuiltModule};
use crate::state::Tree;
use crate::sys::fs::{copy_tree, remove_within, temp_beside, write_atomic};
use crate::ui::Sink;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
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
    /// The make.log of the failed build (in the kept work directory).
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

/// The make command as dkms runs it: a leading `make` becomes
/// `make -jN KERNELRELEASE=K` (`-j` alone for unlimited); with a shared
/// jobserver the `-jN` is left out so that make takes its tokens. Pure.
pub fn make_command(conf_command: &str, release: &str, jobs: Jobs) -> String {
    match conf_command.strip_prefix("make") {
        Some(rest) => match jobs {
            Jobs::Explicit(0) => format!("make -j KERNELRELEASE={release}{rest}"),
            Jobs::Explicit(n) => format!("make -j{n} KERNELRELEASE={release}{rest}"),
            Jobs::Budget(_) => format!("make KERNELRELEASE={release}{rest}"),
        },
        None => conf_command.to_string(),
    }
}

/// KCFLAGS with `-g0` appended when every module of the build is stripped
/// (`strip -g` would discard the debug information anyway), unless the user
/// keeps it or the kernel makes BTF from it (its headers hold a vmlinux). Pure.
pub fn kcflags(conf: &ModuleConf, keep_debug: bool, kernel_makes_btf: bool, inherited: Option<&str>) -> Option<String> {
    let mut built = conf.buildable().peekable();
    let all_stripped = built.peek().is_some() && built.all(|m| m.strip);
    if keep_debug || kernel_makes_btf || !all_stripped {
        return None;
    }
    Some(match inherited.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => format!("{s} -g0"),
        None => "-g0".to_string(),
    })
}

/// The compiler variables dkms exports for a kernel: CC from the headers'
/// `.kernelvariables`, else the compiler named in CONFIG_CC_VERSION_TEXT
/// when it is installed; clang and ld.lld for kernels built with them.
fn compiler_env(kernel: &Kernel) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let kv = kernel.headers_dir.join(".kernelvariables");
    if kv.is_file() {
        let script = format!("show-%:\n\t@echo $($*)\ninclude {}\n", kv.display());
        let out = Command::new("make")
            .args(["-s", "-f", "-", "show-CC"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().map(|mut i| i.write_all(script.as_bytes()));
                c.wait_with_output()
            });
        if let Ok(o) = out {
            env.push(("CC".into(), String::from_utf8_lossy(&o.stdout).trim().to_string()));
        }
    }
    if let Some(cfg) = kernel.config() {
        if let Some(cc) = cfg
            .get("CONFIG_CC_VERSION_TEXT")
            .and_then(|t| t.trim_matches('"').split(' ').next())
            .filter(|c| !c.is_empty())
        {
            if crate::sys::cmd::on_path(cc) {
                env.push(("CC".into(), cc.to_string()));
                env.push(("KERNEL_CC".into(), cc.to_string()));
            }
        }
        if cfg.enabled("CONFIG_CC_IS_CLANG") && crate::sys::cmd::on_path("clang") {
            env.push(("CC".into(), "clang".into()));
            env.push(("KERNEL_CC".into(), "clang".into()));
        }
        if cfg.enabled("CONFIG_LD_IS_LLD") && crate::sys::cmd::on_path("ld.lld") {
            env.push(("LD".into(), "ld.lld".into()));
            env.push(("KERNEL_LD".into(), "ld.lld".into()));
        }
    }
    env
}

/// The BUILD_DEPENDS not installed for the kernel (any version counts).
pub fn missing_depends(tree: &Tree, conf: &ModuleConf, kernel: &Kernel) -> Vec<String> {
    conf.build_depends
        .iter()
        .filter(|d| tree.installed_version(d, &kernel.release, &kernel.arch).is_none())
        .cloned()
        .collect()
}

/// The installed version of each BUILD_DEPENDS for the kernel (for the key
/// and for BUILD_DEPENDS_REBUILD's `.dep_*` files): the newest built or
/// installed one.
pub fn depends_versions(tree: &Tree, conf: &ModuleConf, kernel: &Kernel) -> Vec<(String, String)> {
    conf.build_depends
        .iter()
        .filter_map(|d| {
            let mut vs: Vec<String> = tree
                .versions(d)
                .into_iter()
                .filter(|v| tree.is_built(d, v, &kernel.release, &kernel.arch))
                .collect();
            vs.sort_by(|a, b| crate::kernel::version::compare(a, b));
            vs.pop().map(|v| (d.clone(), v))
        })
        .collect()
}

/// Everything a build's result depends on, hashed.
fn cache_key(env: &Env, job: &Job) -> Result<String> {
    let k = job.kernel;
    let mut b = KeyBuilder::default();
    b.field("module", format!("{}/{}", job.module, job.version).as_bytes())
        .field("kernel", format!("{}/{}", k.release, k.arch).as_bytes())
        .field("conf", format!("{:?}", job.conf).as_bytes())
        .field("compression", job.compression.suffix().as_bytes())
        .field("compress-opts", format!("{:?}", env.settings.compress).as_bytes())
        .field("debug", &[env.settings.debug_info as u8]);
    b.tree("source", job.source)?;
    if env.settings.compat.etc_overrides() {
        b.tree("patches", &env.settings.etc_dkms().join(job.module).join("patches"))?;
    }
    b.file("config", &k.config_file)
        .file("symvers", &k.headers_dir.join("Module.symvers"));
    let cc = Command::new("gcc")
        .arg("--version")
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    b.field("compiler", &cc);
    for (d, v) in depends_versions(env.tree, job.conf, k) {
        b.field("depends", format!("{d}/{v}").as_bytes());
    }
    match job.signer {
        Some(s) => b
            .field("sign", format!("{}:{}", s.sign_file.display(), s.hash).as_bytes())
            .file("cert", &s.cert),
        None => b.field("sign", b""),
    };
    Ok(b.finish())
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
        if let Some(entry) = cache.lookup(key) {
            match place_result(env.tree, m, v, k, &entry) {
                Ok(()) => {
                    let _ = remove_within(&env.tree.root, &env.tree.failed_dir(m, v, &k.release, &k.arch));
                    sink.out(&format!(
                        "{m}/{v} for kernel {}: reused the cached build {}",
                        k.label(),
                        &key[..12]
                    ));
                    return Ok(Built { from_cache: true });
                }
                Err(e) => log::warn!("not using the cached build {key}: {e:#}"),
            }
        }
    }
    let result = compile_and_stage(env, job, sink);
    if let Err(f) = &result {
        let kept = env.tree.failed_dir(m, v, &k.release, &k.arch);
        let _ = remove_within(&env.tree.root, &kept);
        if let Some(log) = &f.log {
            if std::fs::create_dir_all(&kept).is_ok() {
                let _ = std::fs::copy(log, kept.join("make.log"));
                let _ = std::fs::write(kept.join("reason"), format!("{}\n{}\n", f.code, f.message));
            }
        }
        return result;
    }
    let _ = remove_within(&env.tree.root, &env.tree.failed_dir(m, v, &k.release, &k.arch));
    if let (Some(cache), Some(key)) = (env.cache, &key) {
        if let Err(e) = cache.store(key, &env.tree.build_result(m, v, &k.release, &k.arch)) {
            log::warn!("could not keep {m}/{v} in the build cache: {e:#}");
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

/// Copies a stored result into `m/v/K/A` through a staging directory.
fn place_result(tree: &Tree, m: &str, v: &str, k: &Kernel, entry: &Path) -> Result<()> {
    let dest = tree.build_result(m, v, &k.release, &k.arch);
    let staging = temp_beside(&dest);
    std::fs::create_dir_all(tree.kernel_dir(m, v, &k.release))
        .with_context(|| format!("creating {}", tree.kernel_dir(m, v, &k.release).display()))?;
    let res = copy_tree(entry, &staging).and_then(|()| {
        std::fs::rename(&staging, &dest)
            .with_context(|| format!("renaming {} to {}", staging.display(), dest.display()))
    });
    if res.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    res
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
    let run = |log: &mut std::fs::File, description: &str, command: &str| -> Result<i32, Failed> {
        let full = match &prelude {
            Some(p) => format!("{p}{command}"),
            None => command.to_string(),
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
            &format!("patch -p1 < ./patches/{p}"),
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
    let build_script = |log: &mut std::fs::File, what: &str, value: &Option<String>| -> Result<(), Failed> {
        let Some(value) = value else { return Ok(()) };
        let s = Script {
            what,
            value,
            dir: wd.seen.clone(),
            overrides: overrides.clone(),
        };
        let Some(command) = scripts::build_command(&s, sink) else {
            return Ok(());
        };
        sink.out(&format!("Running the {what} script"));
        let c = run(log, &format!("Running the {what} script"), &command)?;
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
    let c = run(&mut log, "Building module(s)", &make)?;
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
    stage(env, job, sink).map_err(|e| with_log(code::MODULE_MISSING, format!("{e:#}")))?;
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

/// Compresses `file` in place with the tool dkms uses; returns the new
/// path, or None when the tool failed (the module is kept uncompressed).
fn compress(file: &Path, c: Compression, opts: &crate::config::settings::CompressOpts) -> Option<PathBuf> {
    let (tool, o) = match c {
        Compression::None => return Some(file.to_path_buf()),
        Compression::Gzip => ("gzip", &opts.gzip),
        Compression::Xz => ("xz", &opts.xz),
        Compression::Zstd => ("zstd", &opts.zstd),
    };
    let st = Command::new(tool)
        .args(o.split_whitespace())
        .arg("-f")
        .arg(file)
        .status();
    let out = PathBuf::from(format!("{}{}", file.display(), c.suffix()));
    (st.is_ok_and(|s| s.success()) && out.is_file()).then_some(out)
}

/// Strip, sign and compress the built modules into a staging directory,
/// then rename it to `m/v/K/A`.
fn stage(env: &Env, job: &Job, sink: &dyn Sink) -> Result<()> {
    let (m, v, k, wd) = (job.module, job.version, job.kernel, job.workdir);
    let dest = env.tree.build_result(m, v, &k.release, &k.arch);
    let kdir = env.tree.kernel_dir(m, v, &k.release);
    std::fs::create_dir_all(&kdir).with_context(|| format!("creating {}", kdir.display()))?;
    let staging = temp_beside(&dest);
    let _ = std::fs::remove_dir_all(&staging);
    let res = (|| -> Result<()> {
        std::fs::create_dir_all(staging.join("module")).with_context(|| format!("creating {}", staging.display()))?;
        std::fs::create_dir_all(staging.join("log")).with_context(|| format!("creating {}", staging.display()))?;
        let symvers = wd.real.join("Module.symvers");
        if symvers.is_file() {
            std::fs::copy(&symvers, staging.join("module/Module.symvers"))
                .with_context(|| format!("copying {}", symvers.display()))?;
        }
        let clang = job.vars.iter().any(|(k, v)| k == "CC" && v == "clang");
        let mut rec = BuildRecord {
            depends: job.conf.build_depends.clone(),
            rebuild_on_depends: job.conf.build_depends_rebuild,
            ..Default::default()
        };
        for spec in job.conf.buildable() {
            let rel = format!("{}{}.ko", spec.built_location, spec.built_name);
            let built = wd.real.join(&rel);
            if spec.strip {
                let _ = Command::new(if clang { "llvm-strip" } else { "strip" })
                    .arg("-g")
                    .arg(&built)
                    .status();
            }
            if let Some(s) = job.signer {
                sink.out(&format!("Signing module {}", wd.seen.join(&rel).display()));
                if let Err(why) = crate::sign::sign(s, &built) {
                    sink.warn(&format!("could not sign {}: {why}", wd.seen.join(&rel).display()));
                }
            }
            let (from, suffix) = match compress(&built, job.compression, &env.settings.compress) {
                Some(p) => (p, job.compression.suffix()),
                None => (built.clone(), ""),
            };
            let file = format!("{}.ko{suffix}", spec.dest_name);
            std::fs::copy(&from, staging.join("module").join(&file))
                .with_context(|| format!("copying {} to {}", from.display(), staging.display()))?;
            rec.modules.push(BuiltModule {
                name: spec.dest_name.clone(),
                file,
                location: spec.dest_location.clone(),
                declared_location: spec.declared_location.clone(),
            });
        }
        write_atomic(&staging.join(record::FILE), &record::to_json(&rec), 0o644)?;
        std::fs::set_permissions(&staging, std::os::unix::fs::PermissionsExt::from_mode(0o755)).ok();
        if dest.exists() {
            std::fs::remove_dir_all(&dest).with_context(|| format!("replacing {}", dest.display()))?;
        }
        std::fs::rename(&staging, &dest)
            .with_context(|| format!("renaming {} to {}", staging.display(), dest.display()))
    })();
    if res.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::directives::{evaluate, Context as C};
    use crate::config::shell::Raw;

    fn conf(pairs: &[(&str, usize, &str)]) -> ModuleConf {
        let mut r = Raw::default();
        for (n, i, v) in [
            ("PACKAGE_NAME", 0, "foo"),
            ("PACKAGE_VERSION", 0, "1"),
            ("DEST_MODULE_LOCATION", 0, "/updates"),
        ]
        .iter()
        .chain(pairs)
        {
            r.vars.entry(n.to_string()).or_default().insert(*i, v.to_string());
        }
        evaluate(
            &r,
            &C {
                kernelver: "6.1",
                arch: "x86_64",
                per_module_exclusive: true,
                ..Default::default()
            },
        )
        .conf
    }

    #[test]
    fn make_is_rewritten_as_dkms_does() {
        assert_eq!(
            make_command("make -C /k M=/b", "6.1", Jobs::Explicit(1)),
            "make -j1 KERNELRELEASE=6.1 -C /k M=/b"
        );
        assert_eq!(
            make_command("make -C /k M=/b", "6.1", Jobs::Explicit(0)),
            "make -j KERNELRELEASE=6.1 -C /k M=/b"
        );
        assert_eq!(
            make_command("make all", "6.1", Jobs::Budget(4)),
            "make KERNELRELEASE=6.1 all"
        );
        assert_eq!(make_command("./build.sh", "6.1", Jobs::Explicit(2)), "./build.sh");
        assert_eq!(
            make_command("makefoo", "6.1", Jobs::Explicit(2)),
            "make -j2 KERNELRELEASE=6.1foo",
            "a prefix, as in dkms"
        );
    }

    #[test]
    fn debug_info_is_skipped_only_when_everything_is_stripped() {
        let c = conf(&[
            ("BUILT_MODULE_NAME", 0, "a"),
            ("BUILT_MODULE_NAME", 1, "b"),
            ("DEST_MODULE_LOCATION", 1, "/updates"),
        ]);
        assert_eq!(kcflags(&c, false, false, None).as_deref(), Some("-g0"));
        assert_eq!(kcflags(&c, false, false, Some("-DX ")).as_deref(), Some("-DX -g0"));
        assert_eq!(kcflags(&c, true, false, None), None, "the user keeps debug info");
        assert_eq!(kcflags(&c, false, true, None), None, "the kernel makes BTF from it");
        let c = conf(&[
            ("BUILT_MODULE_NAME", 0, "a"),
            ("BUILT_MODULE_NAME", 1, "b"),
            ("DEST_MODULE_LOCATION", 1, "/updates"),
            ("STRIP", 1, "no"),
        ]);
        assert_eq!(kcflags(&c, false, false, None), None, "b keeps its debug info");
        assert_eq!(
            kcflags(
                &conf(&[("BUILT_MODULE_NAME", 0, "a"), ("BUILD_EXCLUSIVE_ARCH", 0, "none")]),
                false,
                false,
                None
            ),
            None
        );
    }
}
