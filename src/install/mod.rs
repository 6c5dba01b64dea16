//! Installing a built module version into `/lib/modules/K` and taking it out
//! again, as dkms does: PRE_INSTALL, the version check, an in-kernel module
//! of the same name archived (and restored on uninstall), the files placed,
//! the active link set, POST_INSTALL. Every change is first written to the
//! journal as a list of steps ([`steps`]) so that a crash at any point is
//! finished by the next run. depmod and the initramfs come after, once per
//! kernel ([`depmod`], [`initramfs`]).

pub mod depmod;
pub mod initramfs;
pub mod steps;
pub mod uninstall;
pub mod version_check;

use crate::config::directives::ModuleConf;
use crate::error::{code, Failure};
use crate::kernel::modinfo;
use crate::kernel::{Compression, Kernel};
use crate::scripts::{self, Script};
use crate::state::journal::{Entry, Journal, Step};
use crate::state::Tree;
use crate::ui::Sink;
use std::path::{Path, PathBuf};

/// The module version to install and where.
pub struct Target<'a> {
    pub tree: &'a Tree,
    pub module: &'a str,
    pub version: &'a str,
    pub kernel: &'a Kernel,
    pub conf: &'a ModuleConf,
    pub compression: Compression,
}

/// How to install.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub force: bool,
    pub force_version_override: bool,
    /// dkms's `--symlink-modules`: link into the tree instead of copying.
    pub symlink_modules: bool,
    /// Move an in-kernel module of the same name aside (to restore it on
    /// uninstall) rather than leave it in place (dkms 3.0 on Debian/Ubuntu).
    pub archive_originals: bool,
    /// Refuse a module whose version equals the existing one's (dkms 3.0).
    pub refuse_same_version: bool,
}

/// What scripts need: the module's source directory (as dkms names it),
/// the override directory, and dkms's variables.
pub struct ScriptEnv<'a> {
    pub source_dir: PathBuf,
    pub overrides: Option<PathBuf>,
    pub vars: &'a [(String, String)],
}

/// What an install did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    /// Module names placed into the kernel's tree.
    pub names: Vec<String>,
}

fn fail(code: i32, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

/// Every module file named `name.ko` or `name.ko<suffix>` under the kernel's
/// module tree (not following its build and source links).
pub fn find_named(kdir: &Path, name: &str, suffix: &str) -> Vec<PathBuf> {
    let (plain, compressed) = (format!("{name}.ko"), format!("{name}.ko{suffix}"));
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(kdir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            let n = e.file_name().to_string_lossy();
            n == plain || n == compressed
        })
        .map(|e| e.into_path())
        .collect();
    v.sort();
    v
}

/// `dir/name.ko` or `dir/name.ko<suffix>`, whichever exists (dkms's
/// `compressed_or_uncompressed`).
pub fn either(dir: &Path, name: &str, suffix: &str) -> Option<PathBuf> {
    [format!("{name}.ko"), format!("{name}.ko{suffix}")]
        .into_iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
}

fn same_content(a: &Path, b: &Path) -> bool {
    std::fs::read(a)
        .ok()
        .is_some_and(|x| std::fs::read(b).ok().is_some_and(|y| x == y))
}

/// Installs the built module version for the kernel.
pub fn install(
    t: &Target,
    o: &Options,
    scripts_env: &ScriptEnv,
    journal: &Journal,
    sink: &dyn Sink,
) -> Result<Installed, Failure> {
    let (m, v, k) = (t.module, t.version, t.kernel);
    let (kr, ka) = (k.release.as_str(), k.arch.as_str());
    let suffix = t.compression.suffix();
    if !k.modules_dir.exists() {
        return Err(fail(
            code::INSTALL_FAILED,
            format!(
                "{} does not exist: kernel {kr} is not installed here, so nothing can be installed into it",
                k.modules_dir.display()
            ),
        ));
    }
    let built_dir = t.tree.built_modules_dir(m, v, kr, ka);
    for s in t.conf.buildable() {
        if either(&built_dir, &s.dest_name, suffix).is_none() && t.tree.built_file(m, v, kr, ka, &s.dest_name).is_none()
        {
            return Err(fail(
                code::INSTALL_FAILED,
                format!(
                    "the built module {} is missing from {}; rebuild it with `dkms build {m}/{v} -k {kr} --force`",
                    s.dest_name,
                    built_dir.display()
                ),
            ));
        }
    }
    if let Some(pre) = &t.conf.pre_install {
        let s = Script {
            what: "pre_install",
            value: pre,
            dir: scripts_env.source_dir.clone(),
            overrides: scripts_env.overrides.clone(),
        };
        let rc = scripts::run(&s, scripts_env.vars, sink).map_err(|e| fail(code::PRE_INSTALL, format!("{e:#}")))?;
        if rc.is_some_and(|c| c != 0) && !o.force {
            return Err(fail(code::PRE_INSTALL, format!("the pre_install script of {m}/{v} exited with status {}; installation aborted (use --force to install anyway)", rc.unwrap_or(0))));
        }
    }
    let active = t.tree.active_version(m, kr, ka);
    let original_dir = t.tree.original_dir(m, kr, ka);
    let mut steps = Vec::new();
    let mut names = Vec::new();
    for s in t.conf.buildable() {
        let ours = t.tree.built_file(m, v, kr, ka, &s.dest_name).expect("checked above");
        let file = ours
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let found = find_named(&k.modules_dir, &s.dest_name, suffix);
        let ours_info = modinfo::read(&ours).ok();
        let theirs_info = (found.len() == 1).then(|| modinfo::read(&found[0]).ok()).flatten();
        let verdict = version_check::check(&version_check::Facts {
            file: &file,
            kernel: kr,
            obsolete_by: t.conf.obsolete_by.as_deref(),
            found: &found,
            theirs: theirs_info.as_ref(),
            ours: ours_info.as_ref(),
            identical_files: found.len() == 1 && same_content(&found[0], &ours),
            force: o.force,
            force_version_override: o.force_version_override,
            refuse_same_version: o.refuse_same_version,
        });
        match verdict {
            version_check::Verdict::Refuse(why) => {
                sink.error(&why);
                continue;
            }
            version_check::Verdict::InstallWarned(w) => sink.warn(&w),
            version_check::Verdict::Install => {}
        }
        let dest_dir = k.modules_dir.join(s.dest_location.trim_start_matches('/'));
        if active.is_some() && either(&original_dir, &s.dest_name, suffix).is_some() {
            sink.out(&format!(
                "An original {file} was archived by an earlier install; it stays archived"
            ));
        } else if active.is_none() && o.archive_originals {
            let mut candidates: Vec<PathBuf> = ["extra", "updates", s.dest_location.trim_start_matches('/')]
                .iter()
                .filter_map(|d| either(&k.modules_dir.join(d), &s.dest_name, suffix))
                .collect();
            candidates.extend(found.iter().cloned());
            if let Some(orig) = candidates.into_iter().find(|p| p.is_file()) {
                sink.out(&format!(
                    "Found {}, a module of the same name: archiving it to put it back on uninstall",
                    orig.display()
                ));
                let name = orig
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                steps.push(Step::Archive {
                    from: orig.clone(),
                    to: original_dir.join(&name),
                    origin: original_dir.join(format!("{name}.origin")),
                });
            }
        }
        let dest = dest_dir.join(&file);
        sink.out(&format!("Installing {}", dest.display()));
        steps.push(if o.symlink_modules {
            Step::Link {
                link: dest,
                target: Some(ours.display().to_string()),
            }
        } else {
            Step::Place { from: ours, to: dest }
        });
        names.push(s.dest_name.clone());
    }
    if !t.conf.modules.is_empty() && names.is_empty() {
        return Err(fail(
            code::INSTALL_FAILED,
            format!(
                "no module of {m}/{v} was installed for kernel {}; installation aborted",
                k.label()
            ),
        ));
    }
    steps.push(Step::Link {
        link: t.tree.active_link(m, kr, ka),
        target: Some(format!("{v}/{kr}/{ka}")),
    });
    let entry = Entry {
        what: format!("installing {m}/{v} for kernel {}", k.label()),
        kernel: Some(kr.to_string()),
        steps,
    };
    apply_entry(journal, &entry).map_err(|e| {
        fail(
            code::INSTALL_FAILED,
            format!("installing {m}/{v} for kernel {} failed: {e:#}", k.label()),
        )
    })?;
    if let Some(post) = &t.conf.post_install {
        let s = Script {
            what: "post_install",
            value: post,
            dir: scripts_env.source_dir.clone(),
            overrides: scripts_env.overrides.clone(),
        };
        if let Ok(Some(rc)) = scripts::run(&s, scripts_env.vars, sink) {
            if rc != 0 {
                sink.warn(&format!("the post_install script of {m}/{v} exited with status {rc}"));
            }
        }
    }
    Ok(Installed { names })
}

/// Writes the entry, applies its steps, and marks it done; on an error the
/// steps done so far are undone where that is safe, and the error returned.
pub fn apply_entry(journal: &Journal, entry: &Entry) -> anyhow::Result<()> {
    let path = journal.begin(entry)?;
    for (i, s) in entry.steps.iter().enumerate() {
        if let Err(e) = steps::apply(s) {
            undo(&entry.steps[..i]);
            steps::sweep(&entry.steps);
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
    }
    journal.finish(&path, entry)
}

/// Undoes completed install steps after a failure (not after a crash: a
/// crash is finished forward by the journal).
fn undo(done: &[Step]) {
    for s in done.iter().rev() {
        let r = match s {
            Step::Place { to, .. } => std::fs::remove_file(to).map_err(anyhow::Error::from),
            Step::Archive { from, to, origin } => steps::apply(&Step::Restore {
                from: to.clone(),
                to: from.clone(),
                origin: origin.clone(),
            }),
            Step::Link { link, target: Some(_) } => std::fs::remove_file(link).map_err(anyhow::Error::from),
            _ => Ok(()),
        };
        if let Err(e) = r {
            log::warn!("undoing a step of a failed install: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_modules_are_found_with_either_suffix_and_not_through_links() {
        let d = tempfile::tempdir().unwrap();
        let k = d.path().join("K");
        std::fs::create_dir_all(k.join("kernel/drivers/x")).unwrap();
        std::fs::create_dir_all(k.join("updates/dkms")).unwrap();
        std::fs::create_dir_all(d.path().join("headers")).unwrap();
        std::fs::write(k.join("kernel/drivers/x/foo.ko.xz"), "").unwrap();
        std::fs::write(k.join("updates/dkms/foo.ko"), "").unwrap();
        std::fs::write(k.join("updates/dkms/foo.ko.gz"), "").unwrap();
        std::fs::write(d.path().join("headers/foo.ko"), "").unwrap();
        std::os::unix::fs::symlink(d.path().join("headers"), k.join("build")).unwrap();
        assert_eq!(
            find_named(&k, "foo", ".xz"),
            vec![k.join("kernel/drivers/x/foo.ko.xz"), k.join("updates/dkms/foo.ko")]
        );
        assert_eq!(find_named(&k, "bar", ""), Vec::<PathBuf>::new());
        assert_eq!(
            either(&k.join("updates/dkms"), "foo", ".gz"),
            Some(k.join("updates/dkms/foo.ko"))
        );
    }

    #[test]
    fn a_failed_step_undoes_what_was_done() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::new(d.path());
        std::fs::write(d.path().join("orig.ko"), "kernel's").unwrap();
        std::fs::write(d.path().join("ours.ko"), "ours").unwrap();
        let entry = Entry {
            what: "t".into(),
            kernel: Some("K".into()),
            steps: vec![
                Step::Archive {
                    from: d.path().join("orig.ko"),
                    to: d.path().join("a/orig.ko"),
                    origin: d.path().join("a/orig.ko.origin"),
                },
                Step::Place {
                    from: d.path().join("ours.ko"),
                    to: d.path().join("lib/foo.ko"),
                },
                Step::Place {
                    from: d.path().join("missing.ko"),
                    to: d.path().join("lib/bar.ko"),
                },
            ],
        };
        assert!(apply_entry(&j, &entry).is_err());
        assert_eq!(std::fs::read(d.path().join("orig.ko")).unwrap(), b"kernel's");
        assert!(!d.path().join("lib/foo.ko").exists());
        assert!(j.pending().is_empty() && j.depmod_pending().is_empty());
    }
}
