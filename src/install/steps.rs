//! Applying journal steps ([`crate::state::journal::Step`]). Every step can
//! be applied again after a crash, at any point, and ends in the same
//! state: files are copied through a temporary beside their target and
//! renamed; an archive of an original module is made before the original
//! goes away; a restore copies back before the archive goes away.

use crate::state::journal::Step;
use crate::sys::fs::{
    copy_atomic, is_temp_name, remove_file_if_exists, remove_within, sync_dir, temp_beside, write_atomic,
};
use anyhow::{Context, Result};
use std::path::Path;

fn same_content(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) if x.len() == y.len() => std::fs::read(a).ok() == std::fs::read(b).ok(),
        _ => false,
    }
}

fn mkdirs(dir: Option<&Path>) -> Result<()> {
    if let Some(d) = dir {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    Ok(())
}

/// Applies one step.
pub fn apply(step: &Step) -> Result<()> {
    match step {
        Step::Archive { from, to, origin } => {
            mkdirs(to.parent())?;
            if !to.exists() {
                if !from.exists() {
                    return Ok(());
                }
                copy_atomic(from, to)?;
            }
            write_atomic(origin, format!("{}\n", from.display()).as_bytes(), 0o644)?;
            // the original is still there when it is the same file (a crash
            // after the copy); anything else there is already the new module
            if from.exists() && same_content(from, to) {
                std::fs::remove_file(from).with_context(|| format!("removing {}", from.display()))?;
                if let Some(d) = from.parent() {
                    sync_dir(d);
                }
            }
            Ok(())
        }
        Step::Place { from, to } => {
            mkdirs(to.parent())?;
            copy_atomic(from, to)
        }
        Step::Remove { path } => {
            remove_file_if_exists(path)?;
            Ok(())
        }
        Step::Restore { from, to, origin } => {
            if from.exists() {
                mkdirs(to.parent())?;
                copy_atomic(from, to)?;
                remove_file_if_exists(origin)?;
                remove_file_if_exists(from)?;
            }
            Ok(())
        }
        Step::Link { link, target } => match target {
            Some(t) => {
                let tmp = temp_beside(link);
                let _ = std::fs::remove_file(&tmp);
                std::os::unix::fs::symlink(t, &tmp).with_context(|| format!("creating the link {}", tmp.display()))?;
                std::fs::rename(&tmp, link)
                    .with_context(|| format!("renaming {} to {}", tmp.display(), link.display()))?;
                if let Some(d) = link.parent() {
                    sync_dir(d);
                }
                Ok(())
            }
            None => {
                remove_file_if_exists(link)?;
                Ok(())
            }
        },
        Step::RemoveDir { root, path } => {
            remove_within(root, path)?;
            Ok(())
        }
    }
}

/// Removes temporaries a killed run left beside the targets of `steps`.
pub fn sweep(steps: &[Step]) {
    for dir in steps.iter().flat_map(Step::temp_dirs) {
        for name in crate::sys::fs::sorted_names(&dir) {
            if is_temp_name(&name) {
                let p = dir.join(&name);
                log::info!("removing the leftover {}", p.display());
                let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn an_install_replayed_from_any_point_ends_the_same() {
        let d = tempfile::tempdir().unwrap();
        let k = d.path().join("lib/K");
        let orig = k.join("kernel/drivers/foo.ko");
        let ours = d.path().join("built/foo.ko");
        let archive = d.path().join("orig/foo.ko");
        fs::create_dir_all(orig.parent().unwrap()).unwrap();
        fs::create_dir_all(ours.parent().unwrap()).unwrap();
        let steps = vec![
            Step::Archive {
                from: orig.clone(),
                to: archive.clone(),
                origin: d.path().join("orig/foo.ko.origin"),
            },
            Step::Place {
                from: ours.clone(),
                to: k.join("updates/dkms/foo.ko"),
            },
            Step::Link {
                link: d.path().join("kernel-K-x86_64"),
                target: Some("1.0/K/x86_64".into()),
            },
        ];
        for crash_after in 0..=steps.len() {
            fs::write(&orig, "kernel's").unwrap();
            fs::write(&ours, "ours").unwrap();
            let _ = fs::remove_file(&archive);
            let _ = fs::remove_file(k.join("updates/dkms/foo.ko"));
            for s in &steps[..crash_after] {
                apply(s).unwrap();
            }
            for s in &steps {
                apply(s).unwrap();
            }
            assert_eq!(fs::read(&archive).unwrap(), b"kernel's", "after {crash_after}");
            assert!(!orig.exists());
            assert_eq!(fs::read(k.join("updates/dkms/foo.ko")).unwrap(), b"ours");
            assert_eq!(
                fs::read_link(d.path().join("kernel-K-x86_64")).unwrap(),
                Path::new("1.0/K/x86_64")
            );
            assert_eq!(
                fs::read_to_string(d.path().join("orig/foo.ko.origin")).unwrap().trim(),
                orig.display().to_string()
            );
        }
    }

    #[test]
    fn an_original_archived_from_our_own_location_is_not_confused_with_ours() {
        let d = tempfile::tempdir().unwrap();
        let at = d.path().join("updates/dkms/foo.ko");
        fs::create_dir_all(at.parent().unwrap()).unwrap();
        fs::write(&at, "other module's").unwrap();
        fs::write(d.path().join("ours.ko"), "ours").unwrap();
        let steps = [
            Step::Archive {
                from: at.clone(),
                to: d.path().join("a/foo.ko"),
                origin: d.path().join("a/foo.ko.origin"),
            },
            Step::Place {
                from: d.path().join("ours.ko"),
                to: at.clone(),
            },
        ];
        for s in steps.iter().chain(steps.iter()) {
            apply(s).unwrap();
        }
        assert_eq!(fs::read(&at).unwrap(), b"ours");
        assert_eq!(fs::read(d.path().join("a/foo.ko")).unwrap(), b"other module's");
    }

    #[test]
    fn restore_and_sweep() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("a")).unwrap();
        fs::write(d.path().join("a/foo.ko"), "kernel's").unwrap();
        fs::write(d.path().join("a/foo.ko.origin"), "x").unwrap();
        let to = d.path().join("lib/kernel/foo.ko");
        let s = Step::Restore {
            from: d.path().join("a/foo.ko"),
            to: to.clone(),
            origin: d.path().join("a/foo.ko.origin"),
        };
        apply(&s).unwrap();
        apply(&s).unwrap();
        assert_eq!(fs::read(&to).unwrap(), b"kernel's");
        assert!(!d.path().join("a/foo.ko").exists() && !d.path().join("a/foo.ko.origin").exists());
        let tmp = temp_beside(&to);
        fs::write(&tmp, "half").unwrap();
        sweep(&[s]);
        assert!(!tmp.exists() && to.exists());
    }
}
