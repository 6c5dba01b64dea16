//! Extraction of an untrusted tar archive into a private, empty directory
//! that nothing can leave: entries with an absolute path or a `..` are
//! refused, as are device files, FIFOs, set-user/group-ID bits, files
//! written through a symbolic link, symbolic links whose target (followed
//! to the end) lies outside the directory, and hard links to anything but
//! a regular file extracted before (they become copies). Ownership is not
//! kept, and group/other write bits are dropped. A size and an entry limit
//! stop archive bombs. Any refusal is an error naming the entry; the caller
//! removes the directory.

use anyhow::{bail, Context, Result};
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// More than this much data in one archive is refused (4 GiB).
const MAX_BYTES: u64 = 4 << 30;
/// More entries than this are refused.
const MAX_ENTRIES: usize = 500_000;

/// What an extraction made.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Extracted {
    pub entries: usize,
    pub bytes: u64,
}

/// `p` as a path below the extraction directory, or why it is not one;
/// empty for the archive's own top (`.`, `./`).
pub fn below(p: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err(format!("{} goes up with '..'", p.display())),
            Component::RootDir | Component::Prefix(_) => return Err(format!("{} is an absolute path", p.display())),
        }
    }
    Ok(out)
}

/// Where a symbolic link at `link` (relative) pointing to `target` lands,
/// relative to the top, read as text; `None` when it goes above the top
/// or is absolute.
pub fn link_lands(link: &Path, target: &Path) -> Option<PathBuf> {
    let mut at: Vec<&std::ffi::OsStr> = link
        .parent()
        .map(|p| {
            p.components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    for c in target.components() {
        match c {
            Component::Normal(n) => at.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                at.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(at.iter().collect())
}

/// Creates the directories above `rel` that are missing and refuses when
/// one of them is not a real directory (a symbolic link above a file would
/// redirect the write).
fn parents(top: &Path, rel: &Path) -> Result<()> {
    let mut cur = top.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for c in &comps[..comps.len().saturating_sub(1)] {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => bail!(
                "{} would be written through {}, which is not a directory",
                rel.display(),
                cur.display()
            ),
            Err(_) => mkdir(&cur)?,
        }
    }
    Ok(())
}

fn mkdir(p: &Path) -> Result<()> {
    fs::create_dir(p).with_context(|| format!("creating {}", p.display()))?;
    fs::set_permissions(p, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("setting the mode of {}", p.display()))
}

/// A new regular file at `to` (never through a link, never over anything) with `data`.
fn new_file(to: &Path, mode: u32, data: &mut dyn Read, limit: u64) -> Result<u64> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(to)
        .with_context(|| format!("creating {} (an archive entry may appear only once)", to.display()))?;
    let n = io::copy(&mut data.take(limit + 1), &mut f).with_context(|| format!("writing {}", to.display()))?;
    if n > limit {
        bail!("the archive holds more than {} bytes; refusing it", MAX_BYTES);
    }
    f.set_permissions(fs::Permissions::from_mode(mode & 0o755 | 0o600))
        .with_context(|| format!("setting the mode of {}", to.display()))?;
    Ok(n)
}

/// Extracts the archive `from` (plain, gzip, xz or zstd) into `top`, which
/// must be an empty directory only this process writes.
pub fn extract(from: &Path, top: &Path) -> Result<Extracted> {
    let mut ar = tar::Archive::new(super::compress::reader(from)?);
    let mut done = Extracted::default();
    let mut links = Vec::new();
    let bad = |what: String| anyhow::anyhow!("{}: {what}", from.display());
    for entry in ar.entries().with_context(|| format!("reading {}", from.display()))? {
        let mut entry = entry.with_context(|| format!("reading {} (is it a tar archive?)", from.display()))?;
        done.entries += 1;
        if done.entries > MAX_ENTRIES {
            return Err(bad(format!("more than {MAX_ENTRIES} entries; refusing it")));
        }
        let raw = entry
            .path()
            .with_context(|| format!("reading {}", from.display()))?
            .into_owned();
        let rel = below(&raw).map_err(bad)?;
        let ty = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0o644);
        if mode & 0o6000 != 0 {
            return Err(bad(format!(
                "{} has the set-user-ID or set-group-ID bit",
                raw.display()
            )));
        }
        if ty.is_pax_global_extensions() {
            continue;
        }
        let to = top.join(&rel);
        if rel.as_os_str().is_empty() {
            if ty.is_dir() {
                continue;
            }
            return Err(bad(format!("{} is not a directory yet names the top", raw.display())));
        }
        parents(top, &rel).map_err(|e| bad(format!("{e:#}")))?;
        if ty.is_dir() {
            match fs::symlink_metadata(&to) {
                Ok(md) if md.is_dir() => {}
                Ok(_) => return Err(bad(format!("{} is a directory and something else", raw.display()))),
                Err(_) => mkdir(&to)?,
            }
        } else if ty.is_file() || ty == tar::EntryType::Continuous {
            let left = MAX_BYTES - done.bytes;
            done.bytes += new_file(&to, mode, &mut entry, left).map_err(|e| bad(format!("{e:#}")))?;
        } else if ty.is_symlink() {
            let target = entry.link_name()?.map(|t| t.into_owned()).unwrap_or_default();
            if link_lands(&rel, &target).is_none() {
                return Err(bad(format!(
                    "the symbolic link {} points to {}, outside the archive",
                    raw.display(),
                    target.display()
                )));
            }
            std::os::unix::fs::symlink(&target, &to).with_context(|| format!("creating {}", to.display()))?;
            links.push(rel);
        } else if ty.is_hard_link() {
            let target = entry.link_name()?.map(|t| t.into_owned()).unwrap_or_default();
            let src = below(&target).map_err(bad)?;
            parents(top, &src).map_err(|e| bad(format!("{e:#}")))?;
            if !fs::symlink_metadata(top.join(&src)).is_ok_and(|m| m.is_file()) {
                return Err(bad(format!(
                    "the hard link {} names {}, which is not a file extracted before it",
                    raw.display(),
                    target.display()
                )));
            }
            let mut f = fs::File::open(top.join(&src)).with_context(|| format!("opening {}", src.display()))?;
            let left = MAX_BYTES - done.bytes;
            done.bytes += new_file(&to, mode, &mut f, left).map_err(|e| bad(format!("{e:#}")))?;
        } else {
            return Err(bad(format!(
                "{} is a {:?} entry (device, FIFO or other special file); only files, directories and links are accepted",
                raw.display(),
                ty
            )));
        }
    }
    // a chain of links can leave even when each one read alone stays inside
    let real_top = fs::canonicalize(top).with_context(|| format!("resolving {}", top.display()))?;
    for l in links {
        match fs::canonicalize(top.join(&l)) {
            Ok(p) if p.starts_with(&real_top) => {}
            _ => {
                return Err(bad(format!(
                    "the symbolic link {} leads outside the archive or to nothing",
                    l.display()
                )))
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_below_the_top_pass() {
        assert_eq!(below(Path::new("./a/b")).unwrap(), Path::new("a/b"));
        assert_eq!(below(Path::new("./")).unwrap(), Path::new(""));
        assert!(below(Path::new("a/../../b")).is_err());
        assert!(below(Path::new("/etc/passwd")).is_err());
    }

    #[test]
    fn links_are_followed_as_text() {
        assert_eq!(link_lands(Path::new("a/l"), Path::new("../b")).unwrap(), Path::new("b"));
        assert_eq!(link_lands(Path::new("a/l"), Path::new("c")).unwrap(), Path::new("a/c"));
        assert!(link_lands(Path::new("a/l"), Path::new("../../b")).is_none());
        assert!(link_lands(Path::new("l"), Path::new("/etc")).is_none());
    }

    /// One raw entry: path, type, link target, data, mode.
    type Raw<'a> = (&'a str, tar::EntryType, &'a str, &'a [u8], u32);

    /// A tar with the given raw entries.
    fn archive(entries: &[Raw]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut b = tar::Builder::new(f.reopen().unwrap());
        for (path, ty, link, data, mode) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*ty);
            h.set_size(data.len() as u64);
            h.set_mode(*mode);
            // set_path refuses '..' and absolute paths; write the raw name
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.finish().unwrap();
        f
    }

    #[test]
    fn hostile_entries_are_refused_and_nothing_leaves_the_top() {
        use tar::EntryType as T;
        let d = tempfile::tempdir().unwrap();
        let cases: &[(&str, &[Raw])] = &[
            ("goes up", &[("../escape", T::Regular, "", b"x", 0o644)]),
            ("absolute", &[("/tmp/escape", T::Regular, "", b"x", 0o644)]),
            ("outside", &[("l", T::Symlink, "../..", b"", 0o777)]),
            (
                "written through",
                &[("d", T::Symlink, ".", b"", 0o777), ("d/f", T::Regular, "", b"x", 0o644)],
            ),
            (
                "chain",
                &[
                    ("a/up", T::Symlink, "..", b"", 0o777),
                    ("a/l", T::Symlink, "up/..", b"", 0o777),
                ],
            ),
            ("setuid", &[("f", T::Regular, "", b"x", 0o4755)]),
            ("device", &[("null", T::Char, "", b"", 0o666)]),
            ("hard link out", &[("h", T::Link, "/etc/passwd", b"", 0o644)]),
            (
                "twice",
                &[("f", T::Regular, "", b"x", 0o644), ("f", T::Regular, "", b"y", 0o644)],
            ),
        ];
        for (what, entries) in cases {
            let top = tempfile::tempdir_in(d.path()).unwrap();
            let a = archive(entries);
            assert!(extract(a.path(), top.path()).is_err(), "{what} was accepted");
            assert!(!d.path().join("escape").exists());
        }
    }

    #[test]
    fn ordinary_entries_are_extracted_without_group_write() {
        use tar::EntryType as T;
        let top = tempfile::tempdir().unwrap();
        let a = archive(&[
            ("./", T::Directory, "", b"", 0o755),
            ("./src/a.c", T::Regular, "", b"int x;", 0o666),
            ("./src/b.c", T::Link, "./src/a.c", b"", 0o644),
            ("./inc/a.h", T::Symlink, "../src/a.c", b"", 0o777),
        ]);
        let x = extract(a.path(), top.path()).unwrap();
        assert_eq!(x, Extracted { entries: 4, bytes: 12 });
        let md = fs::metadata(top.path().join("src/a.c")).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o644);
        assert_eq!(fs::read(top.path().join("inc/a.h")).unwrap(), b"int x;");
        assert_eq!(fs::read(top.path().join("src/b.c")).unwrap(), b"int x;");
    }
}
