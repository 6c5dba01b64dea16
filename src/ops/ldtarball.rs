//! `ldtarball FILE` (and `add FILE`): loads a tarball made by `mktarball`,
//! or any tarball with a dkms.conf in it, as dkms does: the source goes to
//! `$source_tree/m-v`, the builds to `$dkms_tree/m/v/K/A` (one already
//! there is kept unless `--force`), a `--binaries-only` tarball's dkms.conf
//! to `$dkms_tree/m/v/source/` when the source is not on the system, and
//! the version is added. Unlike dkms, the tarball is hostile input: it is
//! extracted with [`untar`] into a private directory, its dkms.conf and
//! every name that becomes a path are checked, and only then is anything
//! written to the trees; a failure half-way puts back what was there
//! ([`Undo`]).

use super::{Cx, Target};
use crate::config::manifest::{config_in, FILE_NAME as MANIFEST};
use crate::error::{code, fail};
use crate::state::tarball_layout::{self as layout, Layout, Top};
use crate::state::SourceState;
use crate::sys::fs::{copy_tree, is_real_dir, remove_within, sorted_names, temp_beside};
use crate::sys::untar;
use crate::ui::Sink;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// What the loaded tarball holds, checked.
struct Plan {
    /// The extracted tarball.
    top: PathBuf,
    module: String,
    version: String,
    layout: Layout,
    /// The extracted source directory (not with --binaries-only).
    source: Option<PathBuf>,
    /// The extracted configuration of a --binaries-only tarball.
    conf: PathBuf,
    /// (kernel, arch) builds in the tarball.
    builds: Vec<(String, String)>,
}

/// What was changed, to be put back if a later step fails.
#[derive(Default)]
struct Undo {
    /// (root it lies in, path created).
    created: Vec<(PathBuf, PathBuf)>,
    /// (root, the copy kept of what was there, where it goes back).
    kept: Vec<(PathBuf, PathBuf, PathBuf)>,
}

impl Undo {
    /// Makes room at `path` (under `root`): what is there is kept aside.
    fn replace(&mut self, root: &Path, path: &Path, merge: bool) -> Result<()> {
        if path.symlink_metadata().is_ok() {
            let aside = temp_beside(path);
            if merge {
                copy_tree(path, &aside)?;
            } else {
                std::fs::rename(path, &aside).with_context(|| format!("moving {} aside", path.display()))?;
            }
            self.kept.push((root.to_path_buf(), aside, path.to_path_buf()));
        } else {
            self.created.push((root.to_path_buf(), path.to_path_buf()));
        }
        Ok(())
    }

    /// Puts everything back.
    fn roll_back(self, sink: &dyn Sink) {
        for (root, p) in self.created.iter().rev() {
            if let Err(e) = remove_within(root, p) {
                sink.warn(&format!("{e:#}"));
            }
        }
        for (root, aside, to) in self.kept.iter().rev() {
            let back = remove_within(root, to).and_then(|_| Ok(std::fs::rename(aside, to)?));
            if let Err(e) = back {
                sink.warn(&format!("putting back {}: {e:#}", to.display()));
            }
        }
    }

    /// Drops the copies of what was replaced.
    fn commit(self) {
        for (root, aside, _) in self.kept {
            let _ = remove_within(&root, &aside);
        }
    }
}

/// The first configuration file, nearest to the top (a plain source tarball).
fn find_conf(top: &Path) -> Option<PathBuf> {
    walkdir::WalkDir::new(top)
        .sort_by_file_name()
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && (e.file_name() == "dkms.conf" || e.file_name() == MANIFEST))
        .min_by_key(|e| e.depth())
        .map(|e| e.into_path())
}

/// The builds under `dkms_main_tree`: its directories two levels down.
fn builds(top: &Path) -> Result<Vec<(String, String)>> {
    let main = top.join(layout::MAIN_TREE);
    let mut dirs = Vec::new();
    for k in sorted_names(&main) {
        for a in sorted_names(&main.join(&k)) {
            if is_real_dir(&main.join(&k).join(&a)) {
                dirs.push((k.clone(), a));
            }
        }
    }
    layout::builds(&dirs).map_err(|p| fail(code::MODULE_MISSING, format!("{p}; this is not a valid DKMS tarball")))
}

/// Reads and checks the extracted tarball in `top`.
fn plan(cx: &Cx, top: &Path, kernel: &(String, String), sink: &dyn Sink) -> Result<Plan> {
    let facts = Top {
        main_tree: is_real_dir(&top.join(layout::MAIN_TREE)),
        source_conf: config_in(&top.join(layout::SOURCE_TREE)).is_file(),
        binaries_conf: config_in(&top.join(layout::BINARIES_ONLY)).is_file(),
    };
    let kind = layout::layout(&facts).map_err(|why| {
        fail(
            code::MODULE_MISSING,
            format!("{why}: this is not a valid DKMS tarball (make it with `dkms mktarball`)"),
        )
    })?;
    let (source, conf) = match kind {
        Layout::Source => (
            Some(top.join(layout::SOURCE_TREE)),
            config_in(&top.join(layout::SOURCE_TREE)),
        ),
        Layout::BinariesOnly => (None, config_in(&top.join(layout::BINARIES_ONLY))),
        Layout::Plain => {
            let conf = find_conf(top).ok_or_else(|| {
                fail(
                    code::NOT_IN_TREE,
                    "the tarball does not appear to be a DKMS archive: there is no dkms.conf in it",
                )
            })?;
            (conf.parent().map(Path::to_path_buf), conf)
        }
    };
    let k = cx.kernel(&kernel.0, &kernel.1);
    let e = cx.evaluate(&conf, "", "", &k, source.is_some(), sink)?;
    let ok = if source.is_some() {
        e.usable_strictly()
    } else {
        e.usable()
    };
    if !ok {
        return Err(anyhow::Error::from(cx.bad_conf(&conf, &e, source.is_some()))
            .context("the tarball's configuration is refused"));
    }
    let (module, version) = (e.conf.package_name.clone(), e.conf.package_version.clone());
    cx.module_version(
        &Target {
            module: Some(module.clone()),
            version: Some(version.clone()),
            ..Default::default()
        },
        "ldtarball",
    )?;
    let builds = if kind == Layout::Plain {
        Vec::new()
    } else {
        builds(top)?
    };
    Ok(Plan {
        top: top.to_path_buf(),
        module,
        version,
        layout: kind,
        source,
        conf,
        builds,
    })
}

/// Writes the plan into the trees, recording in `undo` what it changed.
fn apply(cx: &Cx, p: &Plan, kernel: &(String, String), undo: &mut Undo, sink: &dyn Sink) -> Result<()> {
    let (m, v) = (&p.module, &p.version);
    let (dkms_tree, source_tree) = (&cx.settings.dkms_tree, &cx.settings.source_tree);
    for d in [cx.tree.module_dir(m), cx.tree.version_dir(m, v)] {
        if !d.exists() {
            undo.created.push((dkms_tree.clone(), d.clone()));
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
            break;
        }
    }
    let dest = cx.tree.default_source(m, v);
    if let Some(src) = &p.source {
        std::fs::create_dir_all(source_tree).with_context(|| format!("creating {}", source_tree.display()))?;
        if cx.opts.force && dest.exists() {
            sink.out(&format!("Forcing install of {m}/{v}"));
        }
        undo.replace(source_tree, &dest, !cx.opts.force)?;
        copy_tree(src, &dest).with_context(|| format!("copying the tarball's source to {}", dest.display()))?;
    } else if !dest.is_dir() {
        let stub = cx.tree.source_link(m, v);
        sink.out(&format!("Creating {}", stub.display()));
        undo.replace(dkms_tree, &stub, false)?;
        std::fs::create_dir_all(&stub).with_context(|| format!("creating {}", stub.display()))?;
        let name = p.conf.file_name().unwrap_or_default();
        sink.out(&format!("Copying {} to {} ...", name.to_string_lossy(), stub.display()));
        std::fs::copy(&p.conf, stub.join(name)).with_context(|| format!("copying into {}", stub.display()))?;
    }
    for (k, a) in &p.builds {
        let to = cx.tree.build_result(m, v, k, a);
        if to.exists() && !cx.opts.force {
            sink.warn(&format!("{} already exists. Skipping...", to.display()));
            continue;
        }
        sink.out(&format!("Loading {}...", to.display()));
        undo.replace(dkms_tree, &to, false)?;
        copy_tree(&p.top.join(layout::MAIN_TREE).join(k).join(a), &to)?;
    }
    if p.layout != Layout::BinariesOnly || dest.is_dir() {
        let t = Target {
            module: Some(m.clone()),
            version: Some(v.clone()),
            kernels: vec![kernel.clone()],
            ..Default::default()
        };
        if !is_added(cx, m, v) {
            super::add::add(cx, &t, sink)?;
        }
    }
    Ok(())
}

fn is_added(cx: &Cx, m: &str, v: &str) -> bool {
    matches!(
        cx.tree.source_state(m, v, cx.compat()),
        SourceState::Added(_) | SourceState::AddedGone
    )
}

/// Loads the tarball `archive`; returns dkms's exit code.
pub fn run(cx: &Cx, archive: Option<&Path>, kernels: &[(String, String)], sink: &dyn Sink) -> Result<i32> {
    let Some(archive) = archive else {
        return Err(fail(
            code::USAGE,
            "name the tarball: `dkms ldtarball FILE` (or --archive FILE)",
        ));
    };
    if !archive.is_file() {
        return Err(fail(code::USAGE, format!("{} does not exist.", archive.display())));
    }
    if cx.opts.force {
        super::require_root().context("You must be root to use ldtarball with the --force option")?;
    }
    if archive.to_string_lossy().ends_with(".rpm") {
        return Err(fail(
            code::NO_DKMS_CONF,
            format!(
                "{} is an RPM package: install it with rpm or dnf (their hooks build the module) instead of ldtarball",
                archive.display()
            ),
        ));
    }
    let kernel = kernels
        .first()
        .cloned()
        .unwrap_or_else(|| (Cx::default_kernel(), crate::kernel::machine_arch()));
    let tmp = &cx.settings.tmp_location;
    let top = tempfile::Builder::new()
        .prefix("modsync-ldtarball.")
        .tempdir_in(tmp)
        .with_context(|| format!("creating a private directory in {}", tmp.display()))?;
    let extracted = untar::extract(archive, top.path()).map_err(|e| {
        fail(
            code::MODULE_MISSING,
            format!("{e:#}\n{} is refused; nothing was loaded.", archive.display()),
        )
    })?;
    log::debug!(
        "{}: {} entries, {} bytes extracted into {}",
        archive.display(),
        extracted.entries,
        extracted.bytes,
        top.path().display()
    );
    let _lock = cx.lock(sink)?;
    let p = plan(cx, top.path(), &kernel, sink)?;
    let (m, v) = (&p.module, &p.version);
    if is_added(cx, m, v) && !cx.opts.force {
        let c = if p.layout == Layout::Plain {
            code::NOT_IN_TREE
        } else {
            code::BAD_CONF
        };
        return Err(fail(
            c,
            format!(
                "{m}/{v} is already added! Aborting: `dkms remove {m}/{v} --all` first, or load it again with --force."
            ),
        ));
    }
    if p.layout == Layout::Plain && is_added(cx, m, v) {
        return Err(fail(
            code::NOT_IN_TREE,
            format!("DKMS tree already contains {m}/{v}; `dkms remove {m}/{v} --all` first."),
        ));
    }
    let was_added = is_added(cx, m, v);
    sink.out(&format!("\nLoading tarball for {m}/{v}"));
    let mut undo = Undo::default();
    if let Err(e) = apply(cx, &p, &kernel, &mut undo, sink) {
        undo.roll_back(sink);
        return Err(e.context(format!(
            "loading {} failed; the trees are as they were",
            archive.display()
        )));
    }
    undo.commit();
    if p.layout == Layout::BinariesOnly && !cx.tree.default_source(m, v).is_dir() {
        sink.err(&format!(
            "{m}/{v} was loaded without its source (a --binaries-only tarball): it can be installed for the kernels above but not built; dkms exits 1 here, and so does modsync."
        ));
        return Ok(code::GENERIC);
    }
    if was_added {
        return Err(fail(
            code::NOT_IN_TREE,
            format!("DKMS tree already contains {m}/{v}: its source and builds were replaced (--force), but it was not added again."),
        ));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::Direct;

    #[test]
    fn a_failed_load_puts_back_what_was_there() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let old = root.join("m-1");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("f"), "old").unwrap();
        let new = root.join("m-2");
        let mut undo = Undo::default();
        undo.replace(root, &old, false).unwrap();
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("f"), "new").unwrap();
        undo.replace(root, &new, false).unwrap();
        std::fs::create_dir_all(&new).unwrap();
        undo.roll_back(&Direct);
        assert_eq!(std::fs::read_to_string(old.join("f")).unwrap(), "old");
        assert!(!new.exists());
        assert_eq!(sorted_names(root), vec!["m-1"], "no copy is left aside");

        let mut undo = Undo::default();
        undo.replace(root, &old, true).unwrap();
        std::fs::write(old.join("g"), "merged").unwrap();
        undo.commit();
        assert_eq!(sorted_names(&old), vec!["f", "g"]);
        assert_eq!(sorted_names(root), vec!["m-1"]);
    }
}
