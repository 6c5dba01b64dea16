//! The tar archives inside .deb and pacman packages: directories and
//! regular files owned by root, with one modification time (the build's
//! `SOURCE_DATE_EPOCH` when set, for reproducible packages), in order.

use super::{Content, Entry};
use anyhow::{Context, Result};

/// One member of a tar archive.
pub enum Member<'a> {
    Dir(String),
    File(&'a Entry),
}

/// The modification time of every member.
pub fn mtime() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        })
}

/// The bytes of a file's content.
pub fn bytes(e: &Entry) -> Result<Vec<u8>> {
    match &e.content {
        Content::Bytes(b) => Ok(b.clone()),
        Content::File(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display())),
    }
}

fn header(kind: tar::EntryType, size: u64, mode: u32, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    let _ = h.set_username("root");
    let _ = h.set_groupname("root");
    h.set_mtime(mtime);
    h
}

/// A tar archive of the members; each path (absolute) gets `prefix`
/// instead of its leading '/' (`./` for deb, nothing for pacman).
pub fn tar(members: &[Member], prefix: &str) -> Result<Vec<u8>> {
    let t = mtime();
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        match m {
            Member::Dir(d) => {
                let mut h = header(tar::EntryType::Directory, 0, 0o755, t);
                let path = format!("{prefix}{}/", d.trim_matches('/'));
                b.append_data(&mut h, path.trim_end_matches('/').to_string() + "/", std::io::empty())
                    .with_context(|| format!("adding {d} to a tar archive"))?;
            }
            Member::File(e) => {
                let data = bytes(e)?;
                let mut h = header(tar::EntryType::Regular, data.len() as u64, e.mode, t);
                let path = format!("{prefix}{}", e.dest.trim_start_matches('/'));
                b.append_data(&mut h, &path, data.as_slice())
                    .with_context(|| format!("adding {} to a tar archive", e.dest))?;
            }
        }
    }
    b.into_inner().context("finishing a tar archive")
}

/// Every directory that holds a file of the package, with all its
/// parents (as .deb and pacman archives list them), parents first, then
/// the files.
pub fn members(files: &[Entry]) -> Vec<Member<'_>> {
    let mut dirs: Vec<String> = Vec::new();
    for e in files {
        let mut cur = String::new();
        let parent = e.dest.rsplit_once('/').map_or("", |(d, _)| d);
        for c in parent.split('/').filter(|c| !c.is_empty()) {
            cur = format!("{cur}/{c}");
            if !dirs.contains(&cur) {
                dirs.push(cur.clone());
            }
        }
    }
    dirs.into_iter()
        .map(Member::Dir)
        .chain(files.iter().map(Member::File))
        .collect()
}

/// Moves a written temporary file to `out`, readable by all (0644).
pub fn persist(tmp: tempfile::NamedTempFile, out: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("writing {}", out.display()))?;
    tmp.persist(out).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
