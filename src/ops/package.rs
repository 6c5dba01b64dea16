//! `mkdeb`, `mkrpm`, `mkpkg` (modsync's own): native packages of a module
//! version already built for the given kernels, one per kernel plus a meta
//! package that follows the newest of them (see [`crate::package`]). Every
//! kernel is checked and every package planned before the first file is
//! written; each file written is printed on stdout.

use super::{Cx, Target};
use crate::config::settings::Settings;
use crate::error::{code, fail};
use crate::package::{self, names, Built, BuiltFile, Dep, Format, Package};
use crate::ui::Sink;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the command line adds to m/v and the kernels.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub output_dir: Option<PathBuf>,
    /// `--kernel-package NAME[=VERSION]`.
    pub kernel_package: Option<String>,
}

/// The module files of m/v built for K/A: from the build's record, else
/// (a tree built by dkms) from its files at the distribution's location.
fn built(cx: &Cx, m: &str, v: &str, k: &str, a: &str) -> Result<Built> {
    let dir = cx.tree.built_modules_dir(m, v, k, a);
    let files: Vec<BuiltFile> = match cx.tree.read_record(m, v, k, a) {
        Some(r) => r
            .modules
            .into_iter()
            .map(|b| BuiltFile {
                source: dir.join(&b.file),
                name: b.name,
                location: b.location,
            })
            .collect(),
        None => {
            let location = cx.dest_override().unwrap_or_else(|| "/updates/dkms".into());
            cx.tree
                .built_files(m, v, k, a)
                .into_iter()
                .map(|f| BuiltFile {
                    name: f.split(".ko").next().unwrap_or(&f).to_string(),
                    source: dir.join(&f),
                    location: location.clone(),
                })
                .collect()
        }
    };
    if files.is_empty() {
        return Err(fail(
            code::MODULE_MISSING,
            format!(
                "{} holds no module; rebuild with `modsync build {m}/{v} -k {k} --force`",
                dir.display()
            ),
        ));
    }
    if let Some(f) = files.iter().find(|f| !f.source.is_file()) {
        return Err(fail(
            code::MODULE_MISSING,
            format!(
                "{} is missing; rebuild with `modsync build {m}/{v} -k {k} --force`",
                f.source.display()
            ),
        ));
    }
    Ok(Built {
        module: m.to_string(),
        version: v.to_string(),
        kernel: k.to_string(),
        arch: a.to_string(),
        files,
    })
}

/// pacman's kernel dependency: the package named by `K/pkgbase`, at the
/// version the local pacman database has.
fn pacman_kernel_dep(cx: &Cx, k: &str) -> Result<Dep> {
    let hint = "pass --kernel-package NAME[=VERSION] to name the kernel's package";
    let pkgbase_file = cx.settings.install_tree.join(k).join("pkgbase");
    let base = std::fs::read_to_string(&pkgbase_file)
        .map(|s| s.trim().to_string())
        .map_err(|_| {
            fail(
                code::GENERIC,
                format!(
                    "{} does not say which package kernel {k} is; {hint}",
                    pkgbase_file.display()
                ),
            )
        })?;
    if names::kernel_package_problem(&base).is_some() {
        return Err(fail(
            code::GENERIC,
            format!("{} holds {base:?}, not a package name; {hint}", pkgbase_file.display()),
        ));
    }
    let out = Command::new("pacman").args(["-Q", &base]).output();
    let version = out
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(1)
                .map(str::to_string)
        })
        .filter(|v| names::kernel_package_problem(&format!("{base}={v}")).is_none())
        .ok_or_else(|| {
            fail(
                code::GENERIC,
                format!("the version of {base} (kernel {k}) is unknown: `pacman -Q {base}` does not say; {hint}"),
            )
        })?;
    Ok(Dep {
        name: base,
        version: Some(version),
    })
}

/// The kernels to package: `-k` (arch defaulting to the machine's), or
/// with `--all` every kernel m/v is built for. A kernel it is not built
/// for is refused with the command that builds it.
fn kernels(cx: &Cx, t: &Target, m: &str, v: &str, verb: &str) -> Result<Vec<(String, String)>> {
    let ks: Vec<(String, String)> = if t.all {
        cx.tree.built(m, v, None, None)
    } else {
        t.kernels
            .iter()
            .map(|(k, a)| {
                let a = if a.is_empty() {
                    crate::kernel::machine_arch()
                } else {
                    a.clone()
                };
                (k.clone(), a)
            })
            .collect()
    };
    if ks.is_empty() {
        return Err(fail(
            code::NOT_IN_TREE,
            if t.all {
                format!("{m}/{v} is built for no kernel; build it first: `modsync build {m}/{v} -k KERNEL`")
            } else {
                format!("name the kernels: `{verb} {m}/{v} -k KERNEL...` or `--all` (every kernel it is built for)")
            },
        ));
    }
    let missing: Vec<String> = ks
        .iter()
        .filter(|(k, a)| !cx.tree.is_built(m, v, k, a))
        .map(|(k, a)| {
            if *a == crate::kernel::machine_arch() {
                format!("`modsync build {m}/{v} -k {k}`")
            } else {
                format!("`modsync build {m}/{v} -k {k}/{a}`")
            }
        })
        .collect();
    if !missing.is_empty() {
        return Err(fail(
            code::NOT_IN_TREE,
            format!(
                "{m}/{v} is not built for every kernel given; nothing was written. Build it first: {}",
                missing.join(", ")
            ),
        ));
    }
    Ok(ks)
}

/// Plans every package of the invocation: the per-kernel ones, then the meta package.
fn plan(cx: &Cx, t: &Target, f: Format, r: &Request) -> Result<(String, String, Vec<Package>)> {
    let (m, v) = cx.module_version(t, f.verb())?;
    cx.refuse_absent(&m, &v)?;
    if let Some(p) = r.kernel_package.as_deref().and_then(names::kernel_package_problem) {
        return Err(fail(code::USAGE, p));
    }
    let ks = kernels(cx, t, &m, &v, f.verb())?;
    let modules_root = match f {
        Format::Pacman => "/usr/lib/modules".to_string(),
        Format::Deb | Format::Rpm => Settings::load(&cx.settings.sysconf_root, cx.distro.as_ref())?
            .install_tree
            .display()
            .to_string(),
    };
    let mut pkgs = Vec::new();
    let mut newest: Option<(String, usize)> = None;
    for (k, a) in &ks {
        let b = built(cx, &m, &v, k, a)?;
        let dep = match &r.kernel_package {
            Some(kp) => Dep::parse(kp),
            None => match package::default_kernel_dep(f, k) {
                Some(d) => d,
                None => pacman_kernel_dep(cx, k)?,
            },
        };
        if newest
            .as_ref()
            .is_none_or(|(n, _)| crate::kernel::version::compare(k, n) == std::cmp::Ordering::Greater)
        {
            newest = Some((k.clone(), pkgs.len()));
        }
        let p = package::kernel_package(f, &b, dep, &modules_root);
        if let Some(same) = pkgs.iter().position(|q: &Package| q.name == p.name) {
            return Err(fail(
                code::USAGE,
                format!(
                    "kernels {} and {k} would both go into the package {}: an Arch kernel package holds one kernel, \
                     so its module package does too; nothing was written. Run {} once per kernel (with that \
                     kernel's --kernel-package)",
                    ks[same].0,
                    p.name,
                    f.verb()
                ),
            ));
        }
        pkgs.push(p);
    }
    let (nk, i) = newest.expect("one kernel at least");
    let meta = package::meta_package(f, &m, &v, &nk, &pkgs[i]);
    pkgs.push(meta);
    Ok((m, v, pkgs))
}

/// Writes one package.
pub fn write(f: Format, p: &Package, dir: &Path) -> Result<PathBuf> {
    match f {
        Format::Deb => package::deb::write(p, dir),
        Format::Rpm => package::rpm::write(p, dir),
        Format::Pacman => package::pacman::write(p, dir),
    }
}

/// The verb: plans, then writes each package and prints its path.
pub fn run(cx: &Cx, t: &Target, f: Format, r: &Request, sink: &dyn Sink) -> Result<i32> {
    let _lock = cx.lock(sink)?;
    let (m, v, pkgs) = plan(cx, t, f, r)?;
    let dir = r
        .output_dir
        .clone()
        .unwrap_or_else(|| cx.tree.version_dir(&m, &v).join(f.subdir()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for p in &pkgs {
        let path = write(f, p, &dir)?;
        log::debug!("wrote {} ({} files)", path.display(), p.files.len());
        sink.out(&path.display().to_string());
    }
    Ok(0)
}
