//! `mktarball`: m/v's builds for the given kernels (`-k`, or `--all` the
//! kernels it is built for) and its source, in dkms's tarball layout
//! ([`tarball_layout`]), written to `$dkms_tree/m/v/tarball/` or where
//! `--archive` says. `--source-only` leaves the builds out,
//! `--binaries-only` puts the dkms.conf in place of the source. The module
//! must be built for every kernel named (else dkms's exit 6); the tarball
//! appears whole or not at all (written beside, then renamed).

use super::{Cx, Target};
use crate::config::manifest::FILE_NAME as MANIFEST;
use crate::error::{code, fail};
use crate::state::tarball_layout::{self as layout, Content};
use crate::sys::compress;
use crate::ui::Sink;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A small file made for the tarball (`PACKAGE_NAME`, `PACKAGE_VERSION`).
fn append_text(b: &mut tar::Builder<&mut dyn Write>, name: &str, text: &str) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(text.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    b.append_data(&mut h, name, text.as_bytes())
}

/// What goes into the tarball, read from the tree before anything is written.
struct Parts {
    /// (kernel, arch, its build directory).
    builds: Vec<(String, String, PathBuf)>,
    /// The source directory, resolved (none with --binaries-only).
    source: Option<PathBuf>,
    /// The configuration files put in place of the source.
    confs: Vec<PathBuf>,
}

fn fill(b: &mut tar::Builder<&mut dyn Write>, m: &str, v: &str, p: &Parts, top: &Path) -> std::io::Result<()> {
    b.follow_symlinks(false);
    b.append_dir(".", top)?;
    b.append_dir(layout::MAIN_TREE, top)?;
    for (k, a, dir) in &p.builds {
        let kdir = dir.parent().unwrap_or(dir);
        b.append_dir(format!("{}/{k}", layout::MAIN_TREE), kdir)?;
        b.append_dir_all(format!("{}/{k}/{a}", layout::MAIN_TREE), dir)?;
    }
    if let Some(src) = &p.source {
        b.append_dir_all(layout::SOURCE_TREE, src)?;
    } else {
        b.append_dir(layout::BINARIES_ONLY, top)?;
        append_text(b, &format!("{}/PACKAGE_NAME", layout::BINARIES_ONLY), &format!("{m}\n"))?;
        append_text(
            b,
            &format!("{}/PACKAGE_VERSION", layout::BINARIES_ONLY),
            &format!("{v}\n"),
        )?;
        for c in &p.confs {
            let name = c
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = if name == MANIFEST {
                name
            } else {
                "dkms.conf".to_string()
            };
            b.append_path_with_name(c, format!("{}/{name}", layout::BINARIES_ONLY))?;
        }
    }
    b.finish()
}

/// Writes the tarball of the target; returns 0.
pub fn run(cx: &Cx, t: &Target, content: Content, archive: Option<&Path>, sink: &dyn Sink) -> Result<i32> {
    let (m, v) = cx.module_version(t, "mktarball")?;
    cx.refuse_broken(&m, &v)?;
    cx.refuse_absent(&m, &v)?;
    let kernels = if t.all {
        super::remove::all_kernels(cx, &m, &v)
    } else {
        t.kernels.clone()
    };
    let conf = cx.conf_path(&m, &v);
    let (k0, a0) = kernels
        .first()
        .cloned()
        .unwrap_or_else(|| (Cx::default_kernel(), crate::kernel::machine_arch()));
    let e = cx.evaluate(&conf, &m, &v, &cx.kernel(&k0, &a0), false, sink)?;
    if !e.usable() {
        return Err(cx.bad_conf(&conf, &e, false).into());
    }
    let mut parts = Parts {
        builds: Vec::new(),
        source: None,
        confs: Vec::new(),
    };
    if content != Content::SourceOnly {
        for (k, a) in &kernels {
            let dir = cx.tree.build_result(&m, &v, k, a);
            if !dir.is_dir() {
                return Err(fail(
                    code::INSTALL_FAILED,
                    format!(
                        "No modules built for {k} ({a}). Modules must already be in the built state before using mktarball: `dkms build {m}/{v} -k {k}/{a}` first."
                    ),
                ));
            }
            sink.out(&format!("Marking modules for {k} ({a}) for archiving..."));
            parts.builds.push((k.clone(), a.clone(), dir));
        }
    }
    let source_link = cx.tree.source_link(&m, &v);
    if content == Content::BinariesOnly {
        sink.out("\nCreating tarball structure to specifically accommodate binaries.");
        let dkms_conf = cx.opts.conf.clone().unwrap_or_else(|| source_link.join("dkms.conf"));
        parts.confs = [dkms_conf, source_link.join(MANIFEST)]
            .into_iter()
            .filter(|p| p.is_file())
            .collect();
    } else {
        sink.out(&format!("\nMarking {} for archiving...", source_link.display()));
        parts.source =
            Some(std::fs::canonicalize(&source_link).with_context(|| format!("resolving {}", source_link.display()))?);
    }
    let name = layout::archive_name(&m, &v, &kernels, content);
    let dest = layout::destination(&cx.tree.version_dir(&m, &v), &name, archive);
    let dir = dest
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    sink.out(&format!("\nTarball location: {}", dest.display()));
    let no_write = || {
        fail(
            code::NO_DKMS_CONF,
            format!(
                "Missing write permissions for {}: run as root or give --archive a writable place",
                dir.display()
            ),
        )
    };
    std::fs::create_dir_all(&dir).map_err(|_| no_write())?;
    let tmp = tempfile::Builder::new()
        .prefix(".mktarball.")
        .tempfile_in(&dir)
        .map_err(|_| no_write())?;
    let file = tmp
        .reopen()
        .with_context(|| format!("opening {}", tmp.path().display()))?;
    let top = cx.tree.version_dir(&m, &v);
    compress::write(file, layout::compression_for(&dest.to_string_lossy()), |w| {
        fill(&mut tar::Builder::new(w), &m, &v, &parts, &top)
    })
    .map_err(|e| {
        fail(
            code::INSTALL_FAILED,
            format!("Failed to make tarball {}: {e}", dest.display()),
        )
    })?;
    let tmp_path = tmp.into_temp_path();
    std::fs::set_permissions(&tmp_path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .with_context(|| format!("setting the mode of {}", dest.display()))?;
    tmp_path.persist(&dest).map_err(|e| {
        fail(
            code::INSTALL_FAILED,
            format!("Failed to make tarball {}: {e}", dest.display()),
        )
    })?;
    Ok(0)
}
