//! An RPM written with the `rpm` crate: the files and owned directories,
//! `Requires` with an exact version when one is given, and the scripts as
//! `%pre`, `%post` and `%postun` (run by /bin/sh).

use super::{Content, Package};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The file name rpmbuild would give: `name-version-release.arch.rpm`.
pub fn file_name(p: &Package) -> String {
    format!("{}-{}.{}.rpm", p.name, p.full_version(), p.arch)
}

fn dependency(d: &super::Dep) -> ::rpm::Dependency {
    match &d.version {
        Some(v) => ::rpm::Dependency::eq(d.name.clone(), v.clone()),
        None => ::rpm::Dependency::any(d.name.clone()),
    }
}

fn script(body: &str) -> ::rpm::Scriptlet {
    ::rpm::Scriptlet::new(body).prog(vec!["/bin/sh"])
}

/// Writes the package into `dir`; returns its path.
pub fn write(p: &Package, dir: &Path) -> Result<PathBuf> {
    let what = || format!("building the RPM {}", p.name);
    let mut b = ::rpm::PackageBuilder::new(&p.name, &p.version, "Unknown", &p.arch, &p.summary);
    b.using_config(
        ::rpm::BuildConfig::default()
            .compression(::rpm::CompressionType::Gzip)
            .source_date(archive_time()),
    )
    .release(p.release.clone())
    .description(p.description.clone())
    .group("System Environment/Kernel");
    for d in &p.depends {
        b.requires(dependency(d));
    }
    for d in &p.dirs {
        b.with_dir_entry(::rpm::FileOptions::dir(d.clone()).permissions(0o755))
            .with_context(what)?;
    }
    for e in &p.files {
        let o = ::rpm::FileOptions::new(e.dest.clone()).permissions(e.mode as u16);
        match &e.content {
            Content::File(src) => b.with_file(src, o),
            Content::Bytes(bytes) => b.with_file_contents(bytes.clone(), o),
        }
        .with_context(what)?;
    }
    if let Some(s) = &p.scripts {
        b.pre_install_script(script(&s.pre_install))
            .post_install_script(script(&s.post_install))
            .post_uninstall_script(script(&s.post_remove));
    }
    let pkg = b.build().with_context(what)?;
    let out = dir.join(file_name(p));
    let tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("creating a file in {}", dir.display()))?;
    pkg.write(&mut std::io::BufWriter::new(tmp.as_file()))
        .with_context(|| format!("writing {}", out.display()))?;
    super::archive::persist(tmp, &out)?;
    Ok(out)
}

fn archive_time() -> u32 {
    u32::try_from(super::archive::mtime()).unwrap_or(u32::MAX)
}
