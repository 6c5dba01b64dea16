//! File system operations with the path in every error: atomic writes (file
//! and directory fsync'd), tree copies, removal confined to a root that never
//! follows a symlink out of it, and the one temporary-name scheme (swept by
//! the crash recovery).

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// Prefix of every temporary file or directory modsync creates next to its
/// final place.
pub const TEMP_PREFIX: &str = ".modsync-tmp-";

/// A temporary name beside `path`: `dir/.modsync-tmp-<pid>-<name>`.
pub fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{TEMP_PREFIX}{}-{name}", std::process::id()))
}

/// True for names made by [`temp_beside`].
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX)
}

/// fsyncs a directory so a rename or a new entry in it survives a crash.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `data` to `path` (mode `mode`) through a temporary file in the same
/// directory and a rename, then syncs the directory: readers see the old or
/// the new file, never a part, even after a crash. The directory must exist.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let tmp = temp_beside(path);
    let res = (|| -> std::io::Result<()> {
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
}

/// Copies `from` to `to` through a temporary file beside `to` and a rename
/// (so `to` is never half-written), keeping `from`'s permissions.
pub fn copy_atomic(from: &Path, to: &Path) -> Result<()> {
    let tmp = temp_beside(to);
    let res = (|| -> std::io::Result<()> {
        std::fs::copy(from, &tmp)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, to)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("copying {} to {}", from.display(), to.display()));
    }
    if let Some(dir) = to.parent() {
        sync_dir(dir);
    }
    Ok(())
}

/// Copies the contents of directory `from` into `to` (created if missing,
/// merged over what is there) with `cp -a --reflink=auto`, dotfiles included.
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    let mut c = Command::new("cp");
    c.arg("-a").arg("--reflink=auto").arg(from.join(".")).arg(to);
    super::cmd::status_ok(&mut c)
}

/// Removes the file at `path` if it exists.
pub fn remove_file_if_exists(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// Checks that `path` lies under `root` without `..` and without passing
/// through a symbolic link below `root`; returns its components below root.
fn confined<'a>(root: &Path, path: &'a Path) -> Result<Vec<Component<'a>>> {
    let Ok(rel) = path.strip_prefix(root) else {
        bail!(
            "refusing to touch {}: it is not inside {}",
            path.display(),
            root.display()
        );
    };
    let comps: Vec<Component> = rel.components().collect();
    if comps.iter().any(|c| !matches!(c, Component::Normal(_))) {
        bail!(
            "refusing to touch {}: the path leaves {}",
            path.display(),
            root.display()
        );
    }
    let mut cur = root.to_path_buf();
    for c in &comps[..comps.len().saturating_sub(1)] {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(md) if md.file_type().is_symlink() => {
                bail!(
                    "refusing to touch {}: {} is a symbolic link",
                    path.display(),
                    cur.display()
                )
            }
            _ => {}
        }
    }
    Ok(comps)
}

/// Removes `path` (a directory tree, a file or a symlink; missing is fine)
/// when it lies inside `root` and no directory between them is a symlink:
/// a planted link cannot redirect the removal outside the tree. The tree
/// itself is removed without following links.
pub fn remove_within(root: &Path, path: &Path) -> Result<bool> {
    let comps = confined(root, path)?;
    if comps.is_empty() {
        bail!("refusing to remove {} itself", root.display());
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        Ok(md) if md.is_dir() => {
            std::fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))?;
            Ok(true)
        }
        Ok(_) => {
            std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
            Ok(true)
        }
    }
}

/// Removes empty directories from `dir` upwards, stopping at `stop` (kept).
pub fn remove_empty_dirs_up(dir: &Path, stop: &Path) {
    let mut d = Some(dir);
    while let Some(cur) = d {
        if cur == stop || !cur.starts_with(stop) || std::fs::remove_dir(cur).is_err() {
            break;
        }
        d = cur.parent();
    }
}

/// Entry names of a directory in byte order (a missing directory is empty).
pub fn sorted_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// True when `path` is a directory and not a symlink to one.
pub fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).map(|m| m.is_dir()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomic(&p, b"one", 0o644).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(sorted_names(d.path()), vec!["f"]);
        assert!(write_atomic(&d.path().join("missing/f"), b"x", 0o644).is_err());
    }

    #[test]
    fn removal_never_leaves_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("tree");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(root.join("m/1.0")).unwrap();
        std::fs::create_dir_all(outside.join("1.0")).unwrap();
        std::fs::write(outside.join("1.0/keep"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("evil")).unwrap();
        assert!(remove_within(&root, &root.join("evil/1.0")).is_err());
        assert!(outside.join("1.0/keep").exists());
        assert!(remove_within(&root, &root.join("m/../..")).is_err());
        assert!(remove_within(&root, &root).is_err());
        assert!(remove_within(&root, &outside).is_err());
        // the link itself may go; its target stays
        assert!(remove_within(&root, &root.join("evil")).unwrap());
        assert!(outside.join("1.0/keep").exists());
        assert!(remove_within(&root, &root.join("m/1.0")).unwrap());
        assert!(!remove_within(&root, &root.join("m/1.0")).unwrap());
    }

    #[test]
    fn temp_names_are_recognised() {
        let t = temp_beside(Path::new("/a/b/foo.ko"));
        assert!(is_temp_name(&t.file_name().unwrap().to_string_lossy()));
        assert_eq!(t.parent(), Some(Path::new("/a/b")));
        assert!(!is_temp_name("foo.ko"));
    }

    #[test]
    fn empty_dirs_are_removed_up_to_the_stop() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("k/updates/dkms")).unwrap();
        remove_empty_dirs_up(&d.path().join("k/updates/dkms"), &d.path().join("k"));
        assert!(!d.path().join("k/updates").exists());
        assert!(d.path().join("k").exists());
    }
}
