//! Installing built modules into `/lib/modules/K/<location>` and taking them
//! out again: every file is staged next to its destination and renamed into
//! place; an in-kernel module of the same name is archived first and put
//! back on uninstall (dkms's `original_module/`); one the kernel already has
//! in the same or a newer version is left in place (`version_check`).

pub mod compress;
pub mod depmod;
pub mod sign;
pub mod version_check;

use crate::config::directives::ModuleConf;
use crate::engine::Ctx;
use crate::error::{code, fail};
use crate::kernel::kconfig::KConfig;
use crate::kernel::Kernel;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The hash algorithm and key to sign modules for `kernel` with, when the
/// kernel verifies module signatures (CONFIG_MODULE_SIG) and signing is on.
pub fn signing_for(ctx: &Ctx, kernel: &Kernel) -> Option<(String, sign::SigningKey)> {
    if !ctx.settings.sign {
        return None;
    }
    let cfg = KConfig::parse(&std::fs::read_to_string(kernel.config_path()?).ok()?);
    if !cfg.enabled("CONFIG_MODULE_SIG") {
        return None;
    }
    let hash = cfg.get("CONFIG_MODULE_SIG_HASH").unwrap_or("sha256").to_string();
    let key = sign::SigningKey { key: ctx.settings.mok_key.clone(), cert: ctx.settings.mok_cert.clone() };
    let created = {
        let _one_at_a_time = ctx.mok_lock.lock().unwrap_or_else(|e| e.into_inner());
        sign::ensure_mok(&key)
    };
    match created {
        Ok(true) => eprintln!(
            "modsync: created the module signing key {} (certificate {}). Run `modsync secureboot` to see whether it must be enrolled.",
            key.key.display(),
            key.cert.display()
        ),
        Ok(false) => {}
        Err(e) => {
            eprintln!("Warning: modules for {} will not be signed: {e:#}", kernel.release);
            return None;
        }
    }
    Some((hash, key))
}

/// Copies `from` to `to` through a staged file in the same directory.
fn place_file(from: &Path, to: &Path) -> Result<()> {
    let dir = to.parent().context("destination has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".{}.modsync-new", to.file_name().unwrap_or_default().to_string_lossy()));
    let res = (|| -> std::io::Result<()> {
        std::fs::copy(from, &tmp)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, to)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("installing {} as {}", from.display(), to.display()));
    }
    Ok(())
}

pub(crate) fn module_names(name: &str) -> [String; 4] {
    let base = name.split(".ko").next().unwrap_or(name);
    [format!("{base}.ko"), format!("{base}.ko.xz"), format!("{base}.ko.zst"), format!("{base}.ko.gz")]
}

/// The in-kernel module a new module would shadow, among the `namesakes`
/// (every same-named module under `kdir`, see [`version_check::namesakes`]):
/// searched as dkms does (extra/, updates/, then the kernel's own tree),
/// skipping our own install location.
fn find_original(namesakes: &[PathBuf], kdir: &Path, own_location: &Path, file: &str) -> Option<PathBuf> {
    for sub in ["extra", "updates"] {
        let dir = kdir.join(sub);
        if dir == own_location {
            continue;
        }
        for n in module_names(file) {
            let p = dir.join(n);
            if namesakes.contains(&p) {
                return Some(p);
            }
        }
    }
    let tree = kdir.join("kernel");
    namesakes.iter().find(|p| p.starts_with(&tree)).cloned()
}

/// Installs the built m/v for `kernel`. The caller runs depmod at the end.
pub fn install(ctx: &Ctx, m: &str, v: &str, conf: &ModuleConf, kernel: &Kernel) -> Result<()> {
    let (k, a) = (&kernel.release, &kernel.arch);
    if !kernel.modules_dir.is_dir() {
        return Err(fail(
            code::INSTALL,
            format!("kernel {k} is not installed here ({} does not exist); install the kernel first", kernel.modules_dir.display()),
        ));
    }
    if ctx.tree.is_installed(m, v, k, a) && !ctx.opts.force {
        return Err(fail(code::ALREADY, format!("{m}/{v} is already installed for kernel {k} ({a}); use --force to reinstall it")));
    }
    if let Some(other) = ctx.tree.active_version(m, k, a).filter(|o| o != v) {
        eprintln!("{m}/{other} is installed for kernel {k}; replacing it with {m}/{v}");
        uninstall(ctx, m, &other, kernel)?;
    }
    let source = ctx.source_dir(m, v)?;
    if let Some(s) = &conf.pre_install {
        let rc = run_script(ctx, m, "PRE_INSTALL", s, &source, kernel)?;
        if rc != 0 && !ctx.opts.force {
            return Err(fail(code::PRE_INSTALL, format!("the PRE_INSTALL script of {m}/{v} exited with status {rc}; installation aborted (use --force to ignore it)")));
        }
    }
    let built = ctx.tree.built_modules_dir(m, v, k, a);
    let first_install = ctx.tree.active_version(m, k, a).is_none();
    ctx.touch_kernel(k, true)?;
    let mut placed: Vec<PathBuf> = Vec::new();
    let res = place_all(ctx, conf, kernel, &built, first_install, m, &mut placed);
    let left_to_kernel = match res {
        Ok(n) => n,
        Err(e) => {
            // leave no half-installed module behind: take out what this run placed
            for p in &placed {
                let _ = std::fs::remove_file(p);
            }
            let _ = restore_originals(ctx, m, kernel);
            return Err(e).with_context(|| format!("installing {m}/{v} for kernel {k} failed; nothing of it was left installed"));
        }
    };
    // Modules left to the kernel's own count as done, as in dkms.
    if placed.is_empty() && left_to_kernel == 0 && !conf.modules.is_empty() {
        return Err(fail(code::INSTALL, format!("none of the modules of {m}/{v} were built for kernel {k}; installation aborted (rebuild with --force)")));
    }
    ctx.tree.set_active(m, v, k, a)?;
    if let Some(s) = &conf.post_install {
        let rc = run_script(ctx, m, "POST_INSTALL", s, &source, kernel)?;
        if rc != 0 {
            eprintln!("Warning: the POST_INSTALL script of {m}/{v} exited with status {rc}");
        }
    }
    Ok(())
}

/// Places the built modules; returns how many were left out because the
/// kernel already has them in the same or a newer version.
fn place_all(ctx: &Ctx, conf: &ModuleConf, kernel: &Kernel, built: &Path, first_install: bool, m: &str, placed: &mut Vec<PathBuf>) -> Result<usize> {
    let mut left_to_kernel = 0;
    for spec in &conf.modules {
        let Some(file) = std::fs::read_dir(built)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|f| f.split(".ko").next() == Some(spec.dest_name.as_str()) && f.contains(".ko"))
        else {
            continue; // excluded on this kernel by BUILD_EXCLUSIVE
        };
        let location = kernel.modules_dir.join(ctx.install_location(&spec.dest_location).trim_matches('/'));
        let dest = location.join(&file);
        let check_version = !ctx.opts.force && !ctx.opts.force_version_override;
        let namesakes = if check_version || first_install { version_check::namesakes(&kernel.modules_dir, &file) } else { Vec::new() };
        if check_version {
            if let Some(msg) = version_check::check(&namesakes, &built.join(&file), &dest).refusal(&file, &kernel.release) {
                eprintln!("{msg}");
                left_to_kernel += 1;
                continue;
            }
        }
        if first_install {
            if let Some(orig) = find_original(&namesakes, &kernel.modules_dir, &location, &file) {
                archive_original(ctx, m, kernel, &orig)?;
            }
        }
        place_file(&built.join(&file), &dest)?;
        placed.push(dest);
    }
    Ok(left_to_kernel)
}

fn archive_original(ctx: &Ctx, m: &str, kernel: &Kernel, orig: &Path) -> Result<()> {
    let dir = ctx.tree.original_dir(m, &kernel.release, &kernel.arch);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = orig.file_name().context("module without a name")?;
    eprintln!("Found pre-existing {}, archiving for uninstallation", orig.display());
    std::fs::write(dir.join(format!("{}.origin", name.to_string_lossy())), orig.display().to_string())
        .with_context(|| format!("writing {}", dir.display()))?;
    std::fs::copy(orig, dir.join(name)).with_context(|| format!("archiving {}", orig.display()))?;
    std::fs::remove_file(orig).with_context(|| format!("removing {}", orig.display()))?;
    Ok(())
}

/// Paths under `/lib/modules/K` that m/v installed for k/a.
fn installed_files(ctx: &Ctx, m: &str, v: &str, kernel: &Kernel) -> Vec<PathBuf> {
    let (k, a) = (&kernel.release, &kernel.arch);
    if let Some(info) = ctx.tree.read_info(m, v, k, a) {
        return info.installed_paths.iter().map(|p| kernel.modules_dir.join(p)).collect();
    }
    // A tree built by dkms: the built files at the distribution's location,
    // or at DEST_MODULE_LOCATION read from dkms.conf elsewhere.
    let files = ctx.tree.built_files(m, v, k, a);
    let location = match ctx.distro.module_location() {
        Some(l) => vec![l.to_string(); files.len()],
        None => {
            let conf = ctx.read_conf(m, v, kernel).ok();
            files
                .iter()
                .map(|f| {
                    conf.as_ref()
                        .and_then(|c| c.modules.iter().find(|s| f.split(".ko").next() == Some(s.dest_name.as_str())))
                        .map(|s| s.dest_location.clone())
                        .unwrap_or_else(|| "/updates".into())
                })
                .collect()
        }
    };
    files.iter().zip(location).map(|(f, l)| kernel.modules_dir.join(l.trim_matches('/')).join(f)).collect()
}

/// Takes m/v out of `/lib/modules/K`: the active link first (so a crash
/// leaves it "built", to be reinstalled), then the files, then the archived
/// originals go back. The caller runs depmod at the end.
pub fn uninstall(ctx: &Ctx, m: &str, v: &str, kernel: &Kernel) -> Result<bool> {
    let (k, a) = (&kernel.release, &kernel.arch);
    if ctx.tree.active_version(m, k, a).as_deref() != Some(v) {
        return Ok(false);
    }
    ctx.touch_kernel(k, false)?;
    let link = ctx.tree.active_link(m, k, a);
    std::fs::remove_file(&link).with_context(|| format!("removing {}", link.display()))?;
    for f in installed_files(ctx, m, v, kernel) {
        match std::fs::remove_file(&f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", f.display())),
        }
        // drop the directories we created (updates/dkms, updates) once empty
        let mut dir = f.parent();
        while let Some(d) = dir {
            if d == kernel.modules_dir || std::fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }
    restore_originals(ctx, m, kernel)?;
    Ok(true)
}

fn restore_originals(ctx: &Ctx, m: &str, kernel: &Kernel) -> Result<()> {
    let dir = ctx.tree.original_dir(m, &kernel.release, &kernel.arch);
    if !dir.is_dir() {
        return Ok(());
    }
    for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(module) = name.strip_suffix(".origin") else { continue };
        let target = PathBuf::from(std::fs::read_to_string(e.path()).unwrap_or_default().trim());
        if !target.starts_with(&kernel.modules_dir) {
            log::warn!("not restoring {} to {}: outside {}", module, target.display(), kernel.modules_dir.display());
            continue;
        }
        eprintln!("Restoring archived original module {}", target.display());
        place_file(&dir.join(module), &target)?;
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    for d in [dir.parent(), dir.parent().and_then(Path::parent)].into_iter().flatten() {
        let _ = std::fs::remove_dir(d);
    }
    Ok(())
}

/// Runs a POST_ADD / PRE_INSTALL / POST_INSTALL / POST_REMOVE script from
/// the source directory, output on the terminal. Returns its exit code.
pub fn run_script(ctx: &Ctx, m: &str, what: &str, s: &str, source: &Path, kernel: &Kernel) -> Result<i32> {
    let file = s.split_whitespace().next().unwrap_or("");
    let override_path = ctx.settings.sysconf_root.join("etc/dkms").join(m).join(file);
    let path = if override_path.is_file() { override_path } else { source.join(file) };
    let exec = std::fs::metadata(&path).map(|md| std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o111 != 0).unwrap_or(false);
    if !exec {
        eprintln!("Warning: the {what} script {} is not executable; skipped", path.display());
        return Ok(0);
    }
    eprintln!("Running the {what} script:");
    let args = s.split_whitespace().skip(1).collect::<Vec<_>>().join(" ");
    let vars = ctx.eval_vars(m, "", kernel);
    let st = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("\"$0\" {args}"))
        .arg(&path)
        .current_dir(source)
        .envs(vars.pairs())
        .stdout(std::process::Stdio::inherit())
        .status()
        .with_context(|| format!("running {}", path.display()))?;
    Ok(st.code().unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_search_prefers_extra_and_skips_our_location() {
        let d = tempfile::tempdir().unwrap();
        let k = d.path();
        std::fs::create_dir_all(k.join("kernel/drivers/x")).unwrap();
        std::fs::create_dir_all(k.join("updates/dkms")).unwrap();
        std::fs::write(k.join("kernel/drivers/x/foo.ko.xz"), "").unwrap();
        std::fs::write(k.join("updates/dkms/foo.ko"), "").unwrap();
        let own = k.join("updates/dkms");
        let find = |file: &str| find_original(&version_check::namesakes(k, file), k, &own, file);
        assert_eq!(find("foo.ko"), Some(k.join("kernel/drivers/x/foo.ko.xz")));
        std::fs::create_dir_all(k.join("extra")).unwrap();
        std::fs::write(k.join("extra/foo.ko"), "").unwrap();
        assert_eq!(find("foo.ko"), Some(k.join("extra/foo.ko")));
        assert_eq!(find("bar.ko"), None);
    }

    #[test]
    fn place_file_leaves_no_temporaries() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), "x").unwrap();
        place_file(&d.path().join("a"), &d.path().join("sub/dir/b")).unwrap();
        assert_eq!(std::fs::read(d.path().join("sub/dir/b")).unwrap(), b"x");
        assert_eq!(std::fs::read_dir(d.path().join("sub/dir")).unwrap().count(), 1);
    }
}
