//! `status`: reads the state tree directly — no dkms.conf evaluation and no
//! child process per line — and prints dkms's lines (or JSON).

use super::Ctx;
use crate::config::settings::StatusWording;
use crate::state::SourceState;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Line {
    pub module: String,
    pub version: String,
    pub kernel: Option<String>,
    pub arch: Option<String>,
    /// added, broken, built, installed or failed.
    pub state: &'static str,
    pub notes: Vec<&'static str>,
    /// make.log of a failed build.
    pub log: Option<PathBuf>,
}

impl Line {
    /// dkms's format: `m/v, K, A: state (notes)` or `m/v: added`.
    pub fn render(&self) -> String {
        let mut s = match (&self.kernel, &self.arch) {
            (Some(k), Some(a)) => format!("{}/{}, {k}, {a}: {}", self.module, self.version, self.state),
            _ => format!("{}/{}: {}", self.module, self.version, self.state),
        };
        for n in &self.notes {
            s.push_str(" (");
            s.push_str(n);
            s.push(')');
        }
        if let Some(l) = &self.log {
            s.push_str(&format!(" (make.log: {})", l.display()));
        }
        s
    }
}

#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub module: Option<String>,
    pub version: Option<String>,
    pub kernels: Vec<String>,
    pub arch: Option<String>,
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) if x.len() == y.len() => std::fs::read(a).ok() == std::fs::read(b).ok(),
        _ => false,
    }
}

/// The three annotations in dkms's wording: (original, missing, differ).
pub fn wording(w: StatusWording) -> [&'static str; 3] {
    match w {
        StatusWording::Dkms30 => ["original_module exists", "WARNING! Missing some built modules!", "WARNING! Diff between built and installed module!"],
        StatusWording::Dkms31 => [
            "Original modules exist",
            "Built modules are missing in the kernel modules folder",
            "Differences between built and installed modules",
        ],
    }
}

fn notes(ctx: &Ctx, m: &str, v: &str, k: &str, a: &str, installed: bool) -> Vec<&'static str> {
    let [original, missing_note, differ_note] = wording(ctx.settings.status_wording);
    let mut notes = Vec::new();
    if ctx.tree.original_dir(m, k, a).is_dir() {
        notes.push(original);
    }
    let built = ctx.tree.built_modules_dir(m, v, k, a);
    let kdir = ctx.settings.install_tree.join(k);
    let paths: Vec<String> = match ctx.tree.read_info(m, v, k, a) {
        Some(info) => info.installed_paths,
        None => {
            let loc = ctx.distro.module_location().unwrap_or("/updates").trim_matches('/').to_string();
            ctx.tree.built_files(m, v, k, a).into_iter().map(|f| format!("{loc}/{f}")).collect()
        }
    };
    let mut missing = false;
    let mut differ = false;
    for p in &paths {
        let name = p.rsplit('/').next().unwrap_or(p);
        let b = built.join(name);
        if !b.is_file() {
            missing = true;
        } else if installed && !same_file(&b, &kdir.join(p)) {
            differ = true;
        }
    }
    if missing {
        notes.push(missing_note);
    } else if differ {
        notes.push(differ_note);
    }
    notes
}

/// The status lines, in dkms's order (modules, then versions, then kernels),
/// error messages, and whether the listing stopped early (dkms 3.0 mode).
pub fn collect(ctx: &Ctx, f: &Filter) -> (Vec<Line>, Vec<String>, bool) {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for (m, v) in ctx.tree.registered() {
        if f.module.as_ref().is_some_and(|x| *x != m) || f.version.as_ref().is_some_and(|x| *x != v) {
            continue;
        }
        let line = |kernel: Option<&str>, arch: Option<&str>, state, notes, log| Line {
            module: m.clone(),
            version: v.clone(),
            kernel: kernel.map(str::to_string),
            arch: arch.map(str::to_string),
            state,
            notes,
            log,
        };
        match ctx.tree.source_state(&m, &v) {
            SourceState::Added(_) => {}
            SourceState::Broken if ctx.settings.status_wording == StatusWording::Dkms30 => {
                // dkms 3.0 stops the listing at a module whose dkms.conf is gone
                errors.push(format!(
                    "Error! Could not locate dkms.conf file.\nFile: {}/dkms.conf does not exist.",
                    ctx.tree.source_link(&m, &v).display()
                ));
                return (lines, errors, true);
            }
            SourceState::Broken => {
                lines.push(line(None, None, "broken", vec![], None));
                errors.push(format!("\nError! {m}/{v}: Missing the module source directory or the symbolic link pointing to it.\nManual intervention is required! (reinstall its package, or `modsync remove {m}/{v} --all`)"));
                continue;
            }
            SourceState::Absent => continue,
        }
        let wanted = |k: &str, a: &str| {
            (f.kernels.is_empty() || f.kernels.iter().any(|x| x == k)) && f.arch.as_ref().is_none_or(|x| x == a)
        };
        let mut any = false;
        let mut entries: Vec<(String, String, bool)> = ctx.tree.built(&m, &v).into_iter().map(|(k, a)| (k, a, false)).collect();
        entries.extend(ctx.tree.failed(&m, &v).into_iter().filter(|(k, a)| !ctx.tree.is_built(&m, &v, k, a)).map(|(k, a)| (k, a, true)));
        entries.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
        for (k, a, failed) in entries {
            if !wanted(&k, &a) {
                continue;
            }
            any = true;
            if failed {
                let log = ctx.tree.failed_dir(&m, &v, &k, &a).join("make.log");
                lines.push(line(Some(&k), Some(&a), "failed", vec![], Some(log)));
                continue;
            }
            let installed = ctx.tree.active_version(&m, &k, &a).as_deref() == Some(v.as_str());
            let n = notes(ctx, &m, &v, &k, &a, installed);
            lines.push(line(Some(&k), Some(&a), if installed { "installed" } else { "built" }, n, None));
        }
        if !any {
            lines.push(line(None, None, "added", vec![], None));
        }
    }
    (lines, errors, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_dkms_lines() {
        let mut l = Line {
            module: "foo".into(),
            version: "1.0".into(),
            kernel: Some("6.1.0-56-amd64".into()),
            arch: Some("x86_64".into()),
            state: "installed",
            notes: vec!["Original modules exist"],
            log: None,
        };
        assert_eq!(l.render(), "foo/1.0, 6.1.0-56-amd64, x86_64: installed (Original modules exist)");
        l.kernel = None;
        l.arch = None;
        l.state = "added";
        l.notes.clear();
        assert_eq!(l.render(), "foo/1.0: added");
    }
}
