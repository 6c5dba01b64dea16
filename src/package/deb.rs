//! A .deb written with crates (ar, tar, flate2, liblzma): `debian-binary`,
//! `control.tar.gz` (control, md5sums, preinst, postinst, postrm) and
//! `data.tar.xz`, as dpkg-deb reads them.

use super::archive::{self, Member};
use super::{scripts, Content, Dep, Entry, Package};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

fn dep(d: &Dep) -> String {
    match &d.version {
        Some(v) => format!("{} (= {v})", d.name),
        None => d.name.clone(),
    }
}

/// The control file. Pure.
pub fn control(p: &Package, installed_kib: u64) -> String {
    let mut s = format!(
        "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: modsync <root@localhost>\nInstalled-Size: {installed_kib}\nSection: kernel\nPriority: optional\n",
        p.name, p.version, p.arch
    );
    if !p.depends.is_empty() {
        s.push_str(&format!(
            "Depends: {}\n",
            p.depends.iter().map(dep).collect::<Vec<_>>().join(", ")
        ));
    }
    s.push_str(&format!("Description: {}\n {}\n", p.summary, p.description));
    s
}

fn md5_hex(data: &[u8]) -> Result<String> {
    let d = openssl::hash::hash(openssl::hash::MessageDigest::md5(), data).context("md5")?;
    Ok(d.iter().map(|b| format!("{b:02x}")).collect())
}

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data)?;
    Ok(e.finish()?)
}

fn xz(data: &[u8]) -> Result<Vec<u8>> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
    e.write_all(data)?;
    Ok(e.finish()?)
}

/// The file name dpkg-name would give: `name_version_arch.deb`.
pub fn file_name(p: &Package) -> String {
    format!("{}_{}_{}.deb", p.name, p.version.replace(':', "%3a"), p.arch)
}

/// Writes the package into `dir`; returns its path.
pub fn write(p: &Package, dir: &Path) -> Result<PathBuf> {
    let data = archive::tar(&archive::members(&p.files), "./")?;
    let mut sums = String::new();
    let mut size = 0u64;
    for e in &p.files {
        let b = archive::bytes(e)?;
        size += b.len() as u64;
        sums.push_str(&format!("{}  {}\n", md5_hex(&b)?, e.dest.trim_start_matches('/')));
    }
    let script = |name: &str, body: &str| Entry {
        dest: format!("/{name}"),
        content: Content::Bytes(scripts::deb_script(body).into_bytes()),
        mode: 0o755,
    };
    let mut control_files = vec![Entry {
        dest: "/control".into(),
        content: Content::Bytes(control(p, size.div_ceil(1024)).into_bytes()),
        mode: 0o644,
    }];
    if !sums.is_empty() {
        control_files.push(Entry {
            dest: "/md5sums".into(),
            content: Content::Bytes(sums.into_bytes()),
            mode: 0o644,
        });
    }
    if let Some(s) = &p.scripts {
        control_files.push(script("preinst", &s.pre_install));
        control_files.push(script("postinst", &s.post_install));
        control_files.push(script("postrm", &s.post_remove));
    }
    let mut members = vec![Member::Dir("/".into())];
    members.extend(control_files.iter().map(Member::File));
    let control_tar = archive::tar(&members, "./")?;
    let out = dir.join(file_name(p));
    let tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("creating a file in {}", dir.display()))?;
    {
        let mut ar = ar::Builder::new(tmp.as_file());
        let mtime = archive::mtime();
        for (name, content) in [
            ("debian-binary", b"2.0\n".to_vec()),
            ("control.tar.gz", gzip(&control_tar)?),
            ("data.tar.xz", xz(&data)?),
        ] {
            let mut h = ar::Header::new(name.as_bytes().to_vec(), content.len() as u64);
            h.set_mode(0o100644);
            h.set_mtime(mtime);
            ar.append(&h, content.as_slice())
                .with_context(|| format!("writing {}", out.display()))?;
        }
    }
    archive::persist(tmp, &out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_names_the_dependencies() {
        let p = Package {
            name: "hello-modules".into(),
            version: "1.0+6.1.0.56.amd64".into(),
            release: String::new(),
            arch: "amd64".into(),
            summary: "s".into(),
            description: "d".into(),
            depends: vec![
                Dep::parse("hello-modules-6.1.0-56-amd64=1.0"),
                Dep::parse("linux-image-6.1"),
            ],
            dirs: vec![],
            files: vec![],
            scripts: None,
        };
        let c = control(&p, 3);
        assert!(c.contains("Depends: hello-modules-6.1.0-56-amd64 (= 1.0), linux-image-6.1\n"));
        assert!(c.contains("Installed-Size: 3\n") && c.ends_with("Description: s\n d\n"));
        assert_eq!(file_name(&p), "hello-modules_1.0+6.1.0.56.amd64_amd64.deb");
    }
}
