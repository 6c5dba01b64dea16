//! Taking an installed module version out of `/lib/modules/K`, as dkms
//! does: each module file is removed only where it is still this version's
//! (same version as the active build, at the distribution's location or at
//! DEST_MODULE_LOCATION), archived originals go back to where they came
//! from, the active link goes, POST_REMOVE runs. Journaled like an install.

use super::{apply_entry, either, Options, ScriptEnv, Target};
use crate::error::{code, Failure};
use crate::kernel::modinfo;
use crate::scripts::{self, Script};
use crate::state::journal::{Entry, Journal, Step};
use crate::sys::fs::{remove_empty_dirs_up, sorted_names};
use crate::ui::Sink;
use std::path::{Path, PathBuf};

/// What an uninstall did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uninstalled {
    /// The version was active (installed) for the kernel.
    pub was_active: bool,
    /// Module names taken out of the kernel's tree.
    pub names: Vec<String>,
}

/// The installed file of `name` that is this version's: dkms's
/// `find_actual_dest_module_location`.
fn actual_location(
    kdir: &Path,
    locations: &[String],
    name: &str,
    suffix: &str,
    owned: Option<&Path>,
) -> Option<PathBuf> {
    let owned_info = owned.and_then(|p| modinfo::read(p).ok());
    for l in locations {
        let Some(installed) = either(&kdir.join(l.trim_start_matches('/')), name, suffix) else {
            continue;
        };
        let same = match (&owned_info, modinfo::read(&installed).ok()) {
            (Some(a), Some(b)) => a.version == b.version,
            _ => false,
        };
        if same {
            return Some(installed);
        }
    }
    None
}

/// The archived originals of module `name`, with where each came from.
fn originals(dir: &Path, name: &str) -> Vec<(PathBuf, PathBuf, PathBuf)> {
    sorted_names(dir)
        .into_iter()
        .filter(|n| n.starts_with(&format!("{name}.")) && n.ends_with(".origin"))
        .filter_map(|n| {
            let origin = dir.join(&n);
            let archived = dir.join(n.trim_end_matches(".origin"));
            let to = std::fs::read_to_string(&origin)
                .ok()?
                .lines()
                .next()?
                .trim()
                .to_string();
            archived.is_file().then(|| (archived, PathBuf::from(to), origin))
        })
        .collect()
}

/// True when `p` is inside `kdir` without `..`.
fn inside(p: &Path, kdir: &Path) -> bool {
    p.starts_with(kdir) && !p.components().any(|c| matches!(c, std::path::Component::ParentDir))
}

/// Uninstalls the module version from the kernel when it is the active one.
pub fn uninstall(
    t: &Target,
    _o: &Options,
    scripts_env: &ScriptEnv,
    journal: &Journal,
    sink: &dyn Sink,
) -> Result<Uninstalled, Failure> {
    let (m, v, k) = (t.module, t.version, t.kernel);
    let (kr, ka) = (k.release.as_str(), k.arch.as_str());
    let suffix = t.compression.suffix();
    sink.out(&format!("Uninstalling {m}/{v} from kernel {}:", k.label()));
    let mut done = Uninstalled::default();
    let mut dirs_to_tidy = Vec::new();
    if t.tree.active_version(m, kr, ka).as_deref() == Some(v) {
        done.was_active = true;
        let record = t.tree.read_record(m, v, kr, ka);
        let original_dir = t.tree.original_dir(m, kr, ka);
        let mut steps = Vec::new();
        for s in &t.conf.modules {
            let mut locations = vec![s.dest_location.clone()];
            if s.declared_location != s.dest_location {
                locations.push(s.declared_location.clone());
            }
            if let Some(r) = record
                .as_ref()
                .and_then(|r| r.modules.iter().find(|b| b.name == s.dest_name))
            {
                if !locations.contains(&r.location) {
                    locations.push(r.location.clone());
                }
            }
            let owned = t.tree.built_file(m, v, kr, ka, &s.dest_name);
            match actual_location(&k.modules_dir, &locations, &s.dest_name, suffix, owned.as_deref()) {
                Some(file) => {
                    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
                    sink.out(&format!("Deleting {}", file.display()));
                    for f in sorted_names(&dir).into_iter().filter(|f| f == &format!("{}.ko", s.dest_name) || f.starts_with(&format!("{}.ko.", s.dest_name))) {
                        steps.push(Step::Remove { path: dir.join(f) });
                    }
                    dirs_to_tidy.push(dir);
                    done.names.push(s.dest_name.clone());
                }
                None => sink.out(&format!("{}.ko{suffix} of {m}/{v} is not in {} (another module or version is there, or nothing); left alone", s.dest_name, k.modules_dir.display())),
            }
            for (archived, to, origin) in originals(&original_dir, &s.dest_name) {
                if inside(&to, &k.modules_dir) {
                    sink.out(&format!("Restoring the archived original {}", to.display()));
                    steps.push(Step::Restore {
                        from: archived,
                        to,
                        origin,
                    });
                } else {
                    sink.warn(&format!(
                        "{} says the original came from {}, outside {}; it stays archived",
                        origin.display(),
                        to.display(),
                        k.modules_dir.display()
                    ));
                }
            }
            // archived by an older dkms without a .origin file
            if let Some(old) = either(&original_dir, &s.dest_name, suffix) {
                if !old
                    .with_file_name(format!(
                        "{}.origin",
                        old.file_name().unwrap_or_default().to_string_lossy()
                    ))
                    .exists()
                {
                    let to = k
                        .modules_dir
                        .join(s.declared_location.trim_start_matches('/'))
                        .join(old.file_name().unwrap_or_default());
                    sink.out(&format!("Restoring the archived original {}", to.display()));
                    steps.push(Step::Restore {
                        from: old.clone(),
                        to,
                        origin: old.with_extension("origin-none"),
                    });
                }
            }
        }
        steps.push(Step::Link {
            link: t.tree.active_link(m, kr, ka),
            target: None,
        });
        let entry = Entry {
            what: format!("uninstalling {m}/{v} from kernel {}", k.label()),
            kernel: Some(kr.to_string()),
            steps,
        };
        apply_entry(journal, &entry).map_err(|e| Failure {
            code: code::GENERIC,
            message: format!("uninstalling {m}/{v} from kernel {} failed: {e:#}", k.label()),
        })?;
        for d in dirs_to_tidy {
            remove_empty_dirs_up(&d, &k.modules_dir);
        }
        tidy_originals(&t.tree.module_dir(m).join("original_module"), kr, ka);
    } else {
        sink.out(&format!(
            "{m}/{v} is not the installed version for kernel {}; nothing was removed",
            k.label()
        ));
    }
    if let Some(post) = &t.conf.post_remove {
        let s = Script {
            what: "post_remove",
            value: post,
            dir: scripts_env.source_dir.clone(),
            overrides: scripts_env.overrides.clone(),
        };
        if let Ok(Some(rc)) = scripts::run(&s, scripts_env.vars, sink) {
            if rc != 0 {
                sink.warn(&format!("the post_remove script of {m}/{v} exited with status {rc}"));
            }
        }
    }
    Ok(done)
}

/// Removes `original_module/K/A` once nothing archived is left in it, then
/// the empty parents.
fn tidy_originals(base: &Path, k: &str, a: &str) {
    let dir = base.join(k).join(a);
    let leftover = walkdir::WalkDir::new(&dir)
        .into_iter()
        .flatten()
        .any(|e| e.file_type().is_file() && e.file_name().to_string_lossy().contains(".ko"));
    if leftover {
        return;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir(base.join(k));
    let _ = std::fs::remove_dir(base);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn originals_are_read_with_their_origin() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("foo.ko.xz"), "x").unwrap();
        std::fs::write(d.path().join("foo.ko.xz.origin"), "/lib/modules/K/kernel/foo.ko.xz\n").unwrap();
        std::fs::write(d.path().join("foobar.ko.origin"), "/x\n").unwrap();
        let o = originals(d.path(), "foo");
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].1, PathBuf::from("/lib/modules/K/kernel/foo.ko.xz"));
        assert!(inside(&o[0].1, Path::new("/lib/modules/K")));
        assert!(!inside(
            Path::new("/lib/modules/K/../../etc/passwd"),
            Path::new("/lib/modules/K")
        ));
        assert!(!inside(Path::new("/etc/passwd"), Path::new("/lib/modules/K")));
    }

    #[test]
    fn archive_dirs_go_only_when_empty_of_modules() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("original_module");
        std::fs::create_dir_all(base.join("K/x86_64")).unwrap();
        std::fs::write(base.join("K/x86_64/foo.ko"), "kept").unwrap();
        tidy_originals(&base, "K", "x86_64");
        assert!(base.join("K/x86_64/foo.ko").exists());
        std::fs::remove_file(base.join("K/x86_64/foo.ko")).unwrap();
        tidy_originals(&base, "K", "x86_64");
        assert!(!base.exists());
    }
}
