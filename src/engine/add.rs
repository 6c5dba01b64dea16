//! `add`: registers a module version (`m/v/source -> /usr/src/m-v`), given
//! as m/v, a source directory or a dkms.conf path (copied into the source
//! tree first), after validating its dkms.conf strictly.

use super::Ctx;
use crate::error::{code, fail};
use crate::kernel::Kernel;
use crate::state::SourceState;
use anyhow::{Context, Result};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    ModVer(String, String),
    /// A directory holding dkms.conf, or the dkms.conf itself.
    Source(PathBuf),
}

/// Splits `m/v` (on the first '/'). Pure.
pub fn split_mv(s: &str) -> Option<(String, String)> {
    let (m, v) = s.split_once('/')?;
    (!m.is_empty() && !v.is_empty()).then(|| (m.to_string(), v.to_string()))
}

/// What the user named: a positional argument and/or -m/-v.
pub fn resolve(arg: Option<&str>, m: Option<&str>, v: Option<&str>) -> Result<Target> {
    if let Some(a) = arg {
        let p = Path::new(a);
        let abs = |p: &Path| std::fs::canonicalize(p).with_context(|| format!("resolving {}", p.display()));
        if p.is_file() && a.ends_with("dkms.conf") {
            return Ok(Target::Source(abs(p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")))?));
        }
        if p.is_dir() && p.join("dkms.conf").is_file() {
            return Ok(Target::Source(abs(p)?));
        }
        if let Some((m, v)) = split_mv(a) {
            return Ok(Target::ModVer(m, v));
        }
        if p.exists() {
            return Err(fail(code::BAD_CONF, format!("{a} holds no dkms.conf; add the directory of a module's source (with its dkms.conf)")));
        }
    }
    let m = m.or(arg);
    match (m.and_then(split_mv), m, v) {
        (Some(mv), _, _) => Ok(Target::ModVer(mv.0, mv.1)),
        (None, Some(m), Some(v)) => Ok(Target::ModVer(m.to_string(), v.to_string())),
        _ => Err(fail(code::GENERIC, "name a module as MODULE/VERSION, with -m MODULE -v VERSION, or give its source directory")),
    }
}

/// Files under `dir` that a non-root user could change (owned by someone
/// else, or group/world-writable): building them as root would run their code.
fn unsafe_entries(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| !e.path_is_symlink())
        .filter(|e| e.metadata().is_ok_and(|md| md.uid() != 0 || md.mode() & 0o022 != 0))
        .map(|e| e.into_path())
        .take(5)
        .collect()
}

/// Copies the contents of `from` into `to`, creating it or merging over
/// what is there, as dkms's `cp -fr from/* to` does (dotfiles included).
fn copy_source(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from.join("."))
        .arg(to)
        .status()
        .with_context(|| format!("running cp -a {}/. {}", from.display(), to.display()))?;
    anyhow::ensure!(st.success(), "cp -a {}/. {} failed; check the space and permissions of {}", from.display(), to.display(), to.display());
    Ok(())
}

fn check_plain(m: &str, v: &str) -> Result<()> {
    if !crate::config::directives::is_plain_name(m) || !crate::config::directives::is_plain_name(v) {
        return Err(fail(code::GENERIC, format!("{m}/{v} is not a valid module name/version (letters, digits and ._+-~:@ only)")));
    }
    Ok(())
}

fn check_not_added(ctx: &Ctx, m: &str, v: &str) -> Result<()> {
    match ctx.tree.source_state(m, v) {
        SourceState::Added(_) => Err(fail(code::NOT_FOUND, format!("{m}/{v} is already added"))),
        SourceState::Broken => {
            log::info!("{m}/{v}: repairing its dangling source link");
            Ok(())
        }
        SourceState::Absent => Ok(()),
    }
}

/// Adds the target; returns (module, version). `kernel` is the kernel the
/// dkms.conf is evaluated for (the first -k, or the running one).
pub fn add(ctx: &Ctx, target: &Target, kernel: &Kernel) -> Result<(String, String)> {
    let (m, v, source) = match target {
        Target::ModVer(m, v) => {
            check_plain(m, v)?;
            check_not_added(ctx, m, v)?;
            (m.clone(), v.clone(), ctx.tree.default_source(m, v))
        }
        Target::Source(dir) => {
            let conf = dir.join("dkms.conf");
            let c = ctx.read_conf_at(&conf, "", "", kernel)?;
            let dest = ctx.tree.default_source(&c.package_name, &c.package_version);
            let same = std::fs::canonicalize(dir).ok() == std::fs::canonicalize(&dest).ok();
            // Refuse before touching the source tree, so a failed add changes nothing.
            check_plain(&c.package_name, &c.package_version)?;
            check_not_added(ctx, &c.package_name, &c.package_version)?;
            if !same {
                // dkms copies over an existing source tree (a re-add after
                // editing the source); --force replaces it instead.
                if dest.exists() {
                    if ctx.opts.force {
                        println!("Forcing install of {}-{}: replacing {}", c.package_name, c.package_version, dest.display());
                        std::fs::remove_dir_all(&dest).with_context(|| format!("removing {}", dest.display()))?;
                    } else {
                        log::info!("copying {} over the existing {}", dir.display(), dest.display());
                    }
                }
                copy_source(dir, &dest)?;
            }
            (c.package_name, c.package_version, dest)
        }
    };
    if !source.join("dkms.conf").is_file() {
        return Err(fail(
            code::USAGE,
            format!("{} does not exist or holds no dkms.conf; install the module's source package (or copy its source there) first", source.display()),
        ));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 && !ctx.opts.force {
        let bad = unsafe_entries(&source);
        if !bad.is_empty() {
            return Err(fail(
                code::BAD_CONF,
                format!(
                    "{} can be changed by users other than root ({}); building it as root would run their code. Fix ownership/permissions (chown -R root:root, chmod go-w) or use --force.",
                    source.display(),
                    bad.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    let c = ctx.read_conf_at(&source.join("dkms.conf"), &m, &v, kernel)?;
    if c.package_name != m || c.package_version != v {
        return Err(fail(
            code::BAD_CONF,
            format!(
                "{}/dkms.conf declares {}/{} but its directory says {m}/{v}; make PACKAGE_NAME/PACKAGE_VERSION match {}",
                source.display(),
                c.package_name,
                c.package_version,
                source.display()
            ),
        ));
    }
    let vdir = ctx.tree.version_dir(&m, &v);
    std::fs::create_dir_all(&vdir).with_context(|| format!("creating {}", vdir.display()))?;
    let link = ctx.tree.source_link(&m, &v);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&source, &link).with_context(|| format!("creating {}", link.display()))?;
    println!("Creating symlink {} -> {}", link.display(), source.display());
    if let Some(s) = &c.post_add {
        let rc = crate::install::run_script(ctx, &m, "POST_ADD", s, &source, kernel)?;
        if rc != 0 {
            eprintln!("Warning: the POST_ADD script of {m}/{v} exited with status {rc}");
        }
    }
    Ok((m, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_the_dkms_forms() {
        assert_eq!(resolve(Some("foo/1.0"), None, None).unwrap(), Target::ModVer("foo".into(), "1.0".into()));
        assert_eq!(resolve(None, Some("foo/1.0"), None).unwrap(), Target::ModVer("foo".into(), "1.0".into()));
        assert_eq!(resolve(None, Some("foo"), Some("2")).unwrap(), Target::ModVer("foo".into(), "2".into()));
        assert!(resolve(None, Some("foo"), None).is_err());
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("dkms.conf"), "").unwrap();
        let real = std::fs::canonicalize(d.path()).unwrap();
        assert_eq!(resolve(Some(d.path().to_str().unwrap()), None, None).unwrap(), Target::Source(real.clone()));
        let conf = d.path().join("dkms.conf");
        assert_eq!(resolve(Some(conf.to_str().unwrap()), None, None).unwrap(), Target::Source(real));
    }

    #[test]
    fn writable_sources_are_found() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("Makefile");
        std::fs::write(&f, "").unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
        assert!(unsafe_entries(d.path()).contains(&f));
    }
}
