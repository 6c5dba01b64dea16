//! What package-manager hooks ask of the engine. The shims in `hooks/` only
//! exec `modsync hook <manager> <event> ...`; every decision is here: which
//! kernels and modules a transaction touched, whether headers exist, and the
//! failure policy (report loudly, record in status, exit 0 unless `strict`).

#[cfg(feature = "alpm")]
pub mod alpm_db;
pub mod apt;
pub mod dnf;
pub mod targets;

use crate::engine::add::{self, Target};
use crate::engine::autoinstall::{self, latest_versions};
use crate::engine::jobs;
use crate::engine::{remove, Ctx};
use crate::error::{code, fail};
use crate::kernel::{self, Kernel};
use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use targets::Touched;

/// The exit code of a hook given how many jobs failed.
fn verdict(ctx: &Ctx, failures: usize) -> i32 {
    if failures == 0 {
        return 0;
    }
    if ctx.settings.strict {
        eprintln!("modsync: {failures} module build(s) failed and strict mode is on: failing the hook.");
        return code::AUTOINSTALL;
    }
    eprintln!(
        "modsync: {failures} module build(s) failed (details above; `modsync status` lists them). \
         The package operation goes on; set strict = true in /etc/modsync/config.toml to make it fail instead."
    );
    0
}

/// Kernels among `releases` that can get modules now; explains the others.
fn buildable(ctx: &Ctx, releases: &BTreeSet<String>) -> Vec<Kernel> {
    let arch = kernel::machine_arch();
    let mut out = Vec::new();
    for r in releases {
        let mut k = ctx.kernel(r, &arch);
        if !k.has_headers() {
            let fedora_style = PathBuf::from("/usr/src/kernels").join(r);
            if ctx.opts.kernelsourcedir.is_none() && fedora_style.join("include").is_dir() {
                k.source_dir = fedora_style;
            }
        }
        if !k.modules_dir.is_dir() {
            eprintln!("modsync: kernel {r} is not installed; its modules will be built when it is.");
        } else if !k.has_headers() {
            eprintln!(
                "modsync: the headers of kernel {r} are not installed, so no module was built for it. Install them with `{}`; modsync then builds the modules.",
                headers_hint(ctx, r)
            );
        } else {
            out.push(k);
        }
    }
    out
}

/// The command installing the headers of `release`; with libalpm, the exact
/// `<pkgbase>-headers` package of the package that owns the kernel.
fn headers_hint(ctx: &Ctx, release: &str) -> String {
    #[cfg(feature = "alpm")]
    if let Some((_, headers, false)) = alpm_db::headers_package_for(release) {
        return format!("pacman -S {headers}");
    }
    ctx.distro.headers_hint(release, &ctx.settings.install_tree)
}

/// Builds and installs every autoinstall module for these kernels.
fn install_for_kernels(ctx: &Ctx, releases: &BTreeSet<String>, headers_later: bool) -> Result<i32> {
    if ctx.settings.sysconf_root.join("etc/dkms/no-autoinstall").exists() {
        eprintln!("modsync: automatic installation is disabled (/etc/dkms/no-autoinstall).");
        return Ok(0);
    }
    let kernels = buildable(ctx, releases);
    if kernels.is_empty() {
        return Ok(0);
    }
    let (latest, broken) = latest_versions(ctx);
    for (label, why) in &broken {
        eprintln!("modsync: {label} is {why}; skipped.");
    }
    let plan = autoinstall::plan(ctx, &latest, &kernels, true);
    let failures = run_plan(ctx, &plan)?;
    if headers_later {
        for k in ctx.installed_into() {
            regenerate_initramfs(ctx, &k);
        }
    }
    Ok(verdict(ctx, failures))
}

fn run_plan(ctx: &Ctx, plan: &autoinstall::Plan) -> Result<usize> {
    for (label, why) in &plan.failures {
        eprintln!("Error! {label}: {why}");
    }
    for n in &plan.notes {
        eprintln!("Warning: {n}");
    }
    let outcomes = jobs::run(ctx, &plan.jobs);
    let (_, _, failed) = autoinstall::summarize(plan, &outcomes);
    Ok(failed.len())
}

/// Drops the modules of kernels that are being removed.
fn drop_kernels(ctx: &Ctx, releases: &BTreeSet<String>) -> Result<i32> {
    for r in releases {
        let dropped = remove::drop_kernel(ctx, r)?;
        if !dropped.is_empty() {
            eprintln!("modsync: removed {} for kernel {r}", dropped.join(", "));
        }
    }
    ctx.finish()?;
    Ok(0)
}

/// The registered (module, version) whose source is `dir`.
fn registered_from(ctx: &Ctx, dir: &Path) -> Option<(String, String)> {
    let want = std::fs::canonicalize(dir).ok()?;
    ctx.tree.registered().into_iter().find(|(m, v)| std::fs::canonicalize(ctx.tree.source_link(m, v)).ok().as_ref() == Some(&want))
}

/// A module source arrived or changed: (re)register it and build it for
/// every kernel that has headers.
fn refresh_modules(ctx: &Ctx, dirs: &[PathBuf], only_autoinstall: bool) -> Result<i32> {
    let mut wanted: BTreeMap<String, String> = BTreeMap::new();
    let mut failures = 0;
    let releases: BTreeSet<String> = kernel::installed_releases(&ctx.settings.install_tree).into_iter().filter(|r| !r.contains("BOOT")).collect();
    let any_kernel = ctx.kernels(&[], None).remove(0);
    for dir in dirs {
        if let Some((m, v)) = registered_from(ctx, dir) {
            for (k, a) in remove::states_of(ctx, &m, &v) {
                remove::unbuild_one(ctx, &m, &v, &ctx.kernel(&k, &a))?;
            }
            wanted.insert(m, v);
            continue;
        }
        match add::add(ctx, &Target::Source(dir.clone()), &any_kernel) {
            Ok((m, v)) => {
                wanted.insert(m, v);
            }
            Err(e) => {
                eprintln!("Error! adding {}: {e:#}", dir.display());
                failures += 1;
            }
        }
    }
    let kernels: Vec<Kernel> = buildable(ctx, &releases);
    if kernels.is_empty() && !wanted.is_empty() {
        eprintln!("modsync: no installed kernel has its headers, so nothing was built now; modules are built when a kernel with headers is installed.");
    }
    let plan = autoinstall::plan(ctx, &wanted, &kernels, only_autoinstall);
    failures += run_plan(ctx, &plan)?;
    Ok(verdict(ctx, failures))
}

/// A module source is being removed: take it out of every kernel and unregister it.
fn remove_modules(ctx: &Ctx, dirs: &[PathBuf]) -> Result<i32> {
    let any_kernel = ctx.kernels(&[], None).remove(0);
    for dir in dirs {
        let Some((m, v)) = registered_from(ctx, dir) else { continue };
        for (k, a) in remove::states_of(ctx, &m, &v) {
            remove::unbuild_one(ctx, &m, &v, &ctx.kernel(&k, &a))?;
        }
        remove::unregister(ctx, &m, &v, &any_kernel)?;
    }
    ctx.finish()?;
    Ok(0)
}

/// Regenerates an existing initramfs of `release` with the distribution's
/// tool, when modules were added outside the kernel's own hook run.
fn regenerate_initramfs(ctx: &Ctx, release: &str) {
    if !ctx.settings.update_initramfs {
        return;
    }
    let boot = Path::new("/boot");
    let pkgbase = std::fs::read_to_string(ctx.settings.install_tree.join(release).join("pkgbase")).map(|s| s.trim().to_string()).unwrap_or_default();
    let (tool, args): (&str, Vec<String>) = if boot.join(format!("initrd.img-{release}")).exists() {
        ("update-initramfs", vec!["-u".into(), "-k".into(), release.into()])
    } else if boot.join(format!("initramfs-{release}.img")).exists() {
        ("dracut", vec!["-f".into(), "--kver".into(), release.into()])
    } else if !pkgbase.is_empty() && boot.join(format!("initramfs-{pkgbase}.img")).exists() {
        ("mkinitcpio", vec!["-p".into(), pkgbase])
    } else {
        return;
    };
    eprintln!("modsync: regenerating the initramfs of {release} ({tool})");
    match std::process::Command::new(tool).args(&args).stdout(std::process::Stdio::null()).status() {
        Ok(s) if s.success() => {}
        Ok(s) => eprintln!("Warning: {tool} {} exited with {s}", args.join(" ")),
        Err(e) => eprintln!("Warning: could not run {tool}: {e}"),
    }
}

fn source_dirs(ctx: &Ctx, t: &Touched) -> Vec<PathBuf> {
    t.modules.iter().map(|(m, v)| ctx.settings.source_tree.join(format!("{m}-{v}"))).collect()
}

fn read_stdin() -> Result<String> {
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s).context("reading the hook's targets on stdin")?;
    Ok(s)
}

fn rpm_files(nevra: &str) -> Vec<String> {
    std::process::Command::new("rpm")
        .args(["-ql", nevra])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect())
        .unwrap_or_default()
}

fn run_dnf(ctx: &Ctx, t: &dnf::DnfTransaction) -> Result<i32> {
    let mut rc = drop_kernels(ctx, &t.removed_kernels)?;
    for k in &t.removed.headers {
        eprintln!("modsync: headers of {k} removed; the modules built for it stay installed and working.");
    }
    let installed = t.installed.releases();
    if !installed.is_empty() {
        rc = rc.max(install_for_kernels(ctx, &installed, false)?);
    }
    Ok(rc)
}

/// `modsync hook MANAGER EVENT ARGS...`: returns the exit code.
pub fn run(ctx: &Ctx, manager: &str, event: &str, args: &[String]) -> Result<i32> {
    let one = |what: &str| -> Result<BTreeSet<String>> {
        let k = args.first().filter(|k| !k.is_empty()).ok_or_else(|| fail(code::USAGE, format!("modsync hook {manager} {event} needs the {what}")))?;
        Ok(BTreeSet::from([k.clone()]))
    };
    match (manager, event) {
        ("apt", ev) => {
            let params = std::env::var("DEB_MAINT_PARAMS").ok();
            match apt::decide(ev, params.as_deref()) {
                apt::Action::Install { headers_later } => install_for_kernels(ctx, &one("kernel version")?, headers_later),
                apt::Action::Drop => drop_kernels(ctx, &one("kernel version")?),
                apt::Action::Nothing(why) => {
                    log::info!("apt {ev} ({params:?}): nothing to do: {why}");
                    Ok(0)
                }
            }
        }
        ("kernel-install", "add") => install_for_kernels(ctx, &one("kernel version")?, false),
        ("kernel-install", "remove") => drop_kernels(ctx, &one("kernel version")?),
        ("kernel-install", other) => {
            log::info!("kernel-install {other}: nothing to do");
            Ok(0)
        }
        ("pacman", "install") => {
            let t = targets::touched_by_paths(read_stdin()?.lines());
            let mut rc = 0;
            let dirs = source_dirs(ctx, &t);
            let kernels = t.releases();
            if !kernels.is_empty() {
                rc = install_for_kernels(ctx, &kernels, t.kernels.is_empty())?;
            }
            if !dirs.is_empty() {
                rc = rc.max(refresh_modules(ctx, &dirs, false)?);
            }
            Ok(rc)
        }
        ("pacman", "remove") => {
            let t = targets::touched_by_paths(read_stdin()?.lines());
            let rc = remove_modules(ctx, &source_dirs(ctx, &t))?;
            for k in t.headers.difference(&t.kernels) {
                eprintln!("modsync: headers of {k} removed; the modules built for it stay installed and working.");
            }
            Ok(rc.max(drop_kernels(ctx, &t.kernels)?))
        }
        ("dnf", _) => {
            let t = dnf::from_json(&read_stdin()?).map_err(|e| fail(code::USAGE, format!("modsync hook dnf: bad JSON on stdin: {e}")))?;
            run_dnf(ctx, &t)
        }
        ("dnf5", dir) => {
            let [name, version, release, arch] = args else {
                return Err(fail(code::USAGE, "modsync hook dnf5 in|out NAME VERSION RELEASE ARCH"));
            };
            let files = rpm_files(&format!("{name}-{version}-{release}.{arch}"));
            let t = dnf::from_dnf5(dir, name, version, release, arch, &files).map_err(|e| fail(code::USAGE, e.to_string()))?;
            run_dnf(ctx, &t)
        }
        ("common-postinst", _) => common_postinst(ctx, event, args),
        _ => Err(fail(code::USAGE, format!("unknown hook `{manager} {event}`; see the README for the hook entry points"))),
    }
}

/// `/usr/lib/dkms/common.postinst NAME VERSION [TARBALL_ROOT] [ARCH] [UPGRADE]`,
/// as called by dh_dkms maintainer scripts (`event` is NAME here).
fn common_postinst(ctx: &Ctx, name: &str, args: &[String]) -> Result<i32> {
    let Some(version) = args.first() else {
        return Err(fail(code::USAGE, "common.postinst needs NAME VERSION"));
    };
    if ctx.settings.sysconf_root.join("etc/dkms/no-autoinstall").exists() {
        eprintln!("modsync: automatic installation is disabled (/etc/dkms/no-autoinstall); {name}/{version} not built.");
        return Ok(0);
    }
    let dir = ctx.tree.default_source(name, version);
    if !dir.join("dkms.conf").is_file() {
        return Err(fail(code::USAGE, format!("{} holds no dkms.conf; is the {name} package complete?", dir.display())));
    }
    if registered_from(ctx, &dir).is_none() && ctx.tree.version_dir(name, version).exists() {
        // a stale registration of the same version: start clean, as dkms does
        for (k, a) in remove::states_of(ctx, name, version) {
            remove::unbuild_one(ctx, name, version, &ctx.kernel(&k, &a))?;
        }
        let _ = std::fs::remove_dir_all(ctx.tree.version_dir(name, version));
    }
    refresh_modules(ctx, &[dir], true)
}
