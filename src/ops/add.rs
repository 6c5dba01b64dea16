//! `add`: registers a module version (`m/v/source -> $source_tree/m-v`),
//! named as m/v or given as a source directory (or its dkms.conf), which is
//! first copied to `$source_tree/m-v` as dkms does; the dkms.conf (or the
//! modsync.toml, which wins when both are there) is checked strictly before
//! anything is registered; POST_ADD runs last. With
//! `--rpm_safe_upgrade` a note lets the `remove` of the same RPM upgrade
//! transaction be skipped.

use super::{require_root, Cx, Target};
use crate::config::manifest::{config_in, is_manifest, FILE_NAME as MANIFEST};
use crate::error::{code, fail};
use crate::scripts::{self, Script};
use crate::state::SourceState;
use crate::sys::fs::{copy_tree, remove_within};
use crate::ui::Sink;
use anyhow::{Context, Result};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Files under `dir` that a user other than root could change (owned by
/// someone else, or writable by a group other than root's, or by anyone):
/// building them as root would run that user's code.
fn writable_by_others(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| !e.path_is_symlink())
        .filter(|e| {
            e.metadata()
                .is_ok_and(|md| md.uid() != 0 || (md.mode() & 0o020 != 0 && md.gid() != 0) || md.mode() & 0o002 != 0)
        })
        .map(|e| e.into_path())
        .take(5)
        .collect()
}

/// `ppid`'s parent and its start time (what identifies an RPM transaction).
fn grandparent() -> Option<(u32, String)> {
    let ppid = std::os::unix::process::parent_id();
    let status = std::fs::read_to_string(format!("/proc/{ppid}/status")).ok()?;
    let pppid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))?
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pppid}/stat")).ok()?;
    let start = stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.to_string();
    Some((pppid, start))
}

/// The note `add --rpm_safe_upgrade` leaves for the `remove` that follows.
fn rpm_lock_path(tmp: &Path, pppid: u32, m: &str, v: &str) -> PathBuf {
    tmp.join(format!("modsync_rpm_safe_upgrade_lock.{pppid}.{m}-{v}"))
}

pub fn write_rpm_lock(cx: &Cx, m: &str, v: &str) {
    if let Some((pppid, start)) = grandparent() {
        let _ = std::fs::write(
            rpm_lock_path(&cx.settings.tmp_location, pppid, m, v),
            format!("{m}-{v}\n{start}\n"),
        );
    }
}

/// True (and the note consumed) when this `remove` is the second half of
/// an RPM upgrade whose `add` left a note.
pub fn take_rpm_lock(cx: &Cx, m: &str, v: &str) -> bool {
    let Some((pppid, start)) = grandparent() else {
        return false;
    };
    let p = rpm_lock_path(&cx.settings.tmp_location, pppid, m, v);
    let ok = std::fs::read_to_string(&p).is_ok_and(|t| t.lines().nth(1) == Some(start.as_str()));
    if ok {
        let _ = std::fs::remove_file(&p);
    }
    ok
}

/// Copies a source directory to `$source_tree/m-v` (dkms's add_source_tree);
/// returns the module and version its dkms.conf (or modsync.toml) names.
fn add_source_tree(cx: &Cx, dir: &Path, kernel: &(String, String), sink: &dyn Sink) -> Result<(String, String)> {
    let from = std::fs::canonicalize(dir)
        .ok()
        .filter(|f| config_in(f).is_file())
        .ok_or_else(|| {
            fail(
                code::NO_DKMS_CONF,
                format!(
                    "{} holds no dkms.conf (nor {MANIFEST}); give the directory of a module's source",
                    dir.display()
                ),
            )
        })?;
    require_root()?;
    let conf = config_in(&from);
    let k = cx.kernel(&kernel.0, &kernel.1);
    let e = cx.evaluate(&conf, "", "", &k, false, sink)?;
    if !e.usable() {
        return Err(cx.bad_conf(&conf, &e, false).into());
    }
    let (m, v) = (e.conf.package_name.clone(), e.conf.package_version.clone());
    let dest = cx.tree.default_source(&m, &v);
    if cx.opts.force && dest.is_dir() {
        sink.out(&format!("Replacing {} (--force)", dest.display()));
        remove_within(&cx.settings.source_tree, &dest)?;
    }
    let same_place = [dest.clone(), cx.tree.source_link(&m, &v), cx.tree.build_dir(&m, &v)]
        .iter()
        .any(|p| std::fs::canonicalize(p).ok().as_ref() == Some(&from) || *p == from);
    if !same_place {
        copy_tree(&from, &dest).with_context(|| format!("copying {} to {}", from.display(), dest.display()))?;
    }
    Ok((m, v))
}

/// Adds the target; returns (module, version).
pub fn add(cx: &Cx, t: &Target, sink: &dyn Sink) -> Result<(String, String)> {
    let kernel = t
        .kernels
        .first()
        .cloned()
        .unwrap_or_else(|| (Cx::default_kernel(), crate::kernel::machine_arch()));
    let (m, v) = match (&t.source_dir, &t.module, &t.version) {
        (Some(dir), None, None) => add_source_tree(cx, dir, &kernel, sink)?,
        _ => cx.module_version(t, "add")?,
    };
    if cx.opts.rpm_safe_upgrade {
        write_rpm_lock(cx, &m, &v);
    }
    match cx.tree.source_state(&m, &v, cx.compat()) {
        SourceState::Added(_) | SourceState::AddedGone => {
            return Err(fail(
                code::NOT_IN_TREE,
                format!("{m}/{v} is already added; `dkms remove {m}/{v} --all` first to add it again"),
            ));
        }
        SourceState::Broken | SourceState::Absent => {}
    }
    let source = cx.tree.default_source(&m, &v);
    if !source.is_dir() {
        return Err(fail(
            code::USAGE,
            format!(
                "{} does not exist: install the package that ships the source of {m}/{v}, or add its source directory",
                source.display()
            ),
        ));
    }
    let conf = cx.opts.conf.clone().unwrap_or_else(|| config_in(&source));
    if cx.opts.conf.is_none() && is_manifest(&conf) && source.join("dkms.conf").is_file() {
        sink.err(&format!(
            "Note: {} holds both {MANIFEST} and dkms.conf; modsync uses {MANIFEST} (dkms itself reads dkms.conf)",
            source.display()
        ));
    }
    let k = cx.kernel(&kernel.0, &kernel.1);
    let e = cx.evaluate(&conf, &m, &v, &k, true, sink)?;
    if !e.usable_strictly() {
        return Err(cx.bad_conf(&conf, &e, true).into());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 && !cx.opts.force {
        let bad = writable_by_others(&source);
        if !bad.is_empty() {
            return Err(fail(
                code::BAD_CONF,
                format!(
                    "{} can be changed by users other than root ({}); building it as root would run their code. Fix the ownership and permissions (chown -R root:root, chmod go-w) or use --force.",
                    source.display(),
                    bad.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    let vdir = cx.tree.version_dir(&m, &v);
    std::fs::create_dir_all(vdir.join("build")).with_context(|| format!("creating {}", vdir.display()))?;
    let link = cx.tree.source_link(&m, &v);
    if link.symlink_metadata().is_ok_and(|md| md.file_type().is_symlink()) {
        std::fs::remove_file(&link).with_context(|| format!("removing the dangling {}", link.display()))?;
    }
    sink.out(&format!("Creating symlink {} -> {}", link.display(), source.display()));
    std::os::unix::fs::symlink(&source, &link).with_context(|| format!("creating {}", link.display()))?;
    if let Some(s) = &e.conf.post_add {
        let script = Script {
            what: "post_add",
            value: s,
            dir: link.clone(),
            overrides: cx.compat().etc_overrides().then(|| cx.settings.etc_dkms().join(&m)),
        };
        if let Some(rc) = scripts::run(&script, &cx.job_vars(&m, &v, &k, &e), sink)?.filter(|c| *c != 0) {
            sink.warn(&format!("the post_add script of {m}/{v} exited with status {rc}"));
        }
    }
    Ok((m, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_others_can_change_are_found_but_root_group_ones_are_not() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("Makefile");
        std::fs::write(&f, "").unwrap();
        let set = |mode| std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
        set(0o666);
        assert!(writable_by_others(d.path()).contains(&f));
        set(0o664);
        // SAFETY: getegid has no preconditions.
        let root_group = unsafe { libc::getegid() } == 0;
        assert_eq!(
            writable_by_others(d.path()).contains(&f),
            !root_group || unsafe { libc::geteuid() } != 0
        );
        set(0o644);
        std::fs::set_permissions(d.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        // SAFETY: geteuid has no preconditions.
        assert_eq!(writable_by_others(d.path()).is_empty(), unsafe { libc::geteuid() } == 0);
    }
}
