//! `status`: dkms's lines, read from the tree and the build records without
//! starting a process or evaluating a dkms.conf:
//!
//! ```text
//! m/v: added
//! m/v: broken                      (dkms 3.4; the error goes to stderr)
//! m/v, K, A: built
//! m/v, K, A: installed (Original modules exist) (Differences between built and installed modules)
//! ```
//!
//! in dkms's order (modules, versions, kernels by name), with the
//! annotations in the wording of the dkms release modsync behaves as. With
//! `--json`, the same plus the last failed build of each module version,
//! with the diagnosis the build recorded (why, what to do), and last the
//! boot guard's hold when one is in force (`{"boot_guard": {...}}`; on
//! stderr without `--json`). Modules that a
//! binary package installed (`modsync mkdeb|mkrpm|mkpkg`) are listed from
//! their markers as `m/v, K, A: installed (package NAME)`.

use super::Cx;
use crate::config::settings::Compat;
use crate::diagnose::{record, Diagnosis};
use crate::kernel::modinfo;
use crate::state::{module_file_in, packaged, SourceState, Tree};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Line {
    pub module: String,
    pub version: String,
    pub kernel: Option<String>,
    pub arch: Option<String>,
    /// added, broken, built, installed (failed: only in JSON).
    pub state: &'static str,
    pub notes: Vec<&'static str>,
    /// The binary package it is installed from (modsync's own; see [`packaged`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// The make.log of a failed build (JSON only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub make_log: Option<PathBuf>,
    /// Why a failed build failed and what to do (JSON only; recorded by the build).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<Diagnosis>,
}

impl Line {
    /// dkms's format.
    pub fn render(&self) -> String {
        let mut s = match (&self.kernel, &self.arch) {
            (Some(k), Some(a)) => format!("{}/{}, {k}, {a}: {}", self.module, self.version, self.state),
            _ => format!("{}/{}: {}", self.module, self.version, self.state),
        };
        if let Some(p) = &self.package {
            s.push_str(&format!(" (package {p})"));
        }
        for n in &self.notes {
            s.push_str(&format!(" ({n})"));
        }
        s
    }
}

/// What to list.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub module: Option<String>,
    pub version: Option<String>,
    pub kernel: Option<String>,
    pub arch: Option<String>,
}

/// The listing.
#[derive(Debug, Default)]
pub struct Listing {
    pub lines: Vec<Line>,
    /// Messages for stderr, each with the number of lines printed before it.
    pub errors: Vec<(usize, String)>,
}

/// The annotation texts (original, missing, differ) of a dkms release.
pub fn wording(c: Compat) -> [&'static str; 3] {
    if c.new_wording() {
        [
            "Original modules exist",
            "Built modules are missing in the kernel modules folder",
            "Differences between built and installed modules",
        ]
    } else {
        [
            "original_module exists",
            "WARNING! Missing some built modules!",
            "WARNING! Diff between built and installed module!",
        ]
    }
}

/// The modules a build made and where each may be installed: from its
/// record, else (a tree built by dkms) from its files.
fn built_modules(cx: &Cx, m: &str, v: &str, k: &str, a: &str) -> Vec<(String, Vec<String>)> {
    match cx.tree.read_record(m, v, k, a) {
        Some(r) => r
            .modules
            .into_iter()
            .map(|b| (b.name, vec![b.location, b.declared_location]))
            .collect(),
        None => {
            let loc = cx.dest_override().into_iter().collect::<Vec<_>>();
            cx.tree
                .built_files(m, v, k, a)
                .into_iter()
                .map(|f| (f.split(".ko").next().unwrap_or(&f).to_string(), loc.clone()))
                .collect()
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) if x.len() == y.len() => std::fs::read(a).ok() == std::fs::read(b).ok(),
        _ => false,
    }
}

/// The installed file of module `name` that belongs to the active build
/// (same version): dkms's `find_actual_dest_module_location`.
fn installed_copy(
    tree: &Tree,
    kdir: &Path,
    m: &str,
    k: &str,
    a: &str,
    name: &str,
    locations: &[String],
) -> Option<PathBuf> {
    let active = tree.active_version(m, k, a)?;
    let owned = tree
        .built_file(m, &active, k, a, name)
        .and_then(|p| modinfo::read(&p).ok())?;
    locations
        .iter()
        .filter_map(|l| module_file_in(&kdir.join(l.trim_start_matches('/')), name))
        .find(|p| modinfo::read(p).is_ok_and(|i| i.version == owned.version))
}

fn notes(cx: &Cx, m: &str, v: &str, k: &str, a: &str, installed: bool) -> Vec<&'static str> {
    let [original, missing, differ] = wording(cx.compat());
    let mut out = Vec::new();
    if cx.tree.original_dir(m, k, a).is_dir() {
        out.push(original);
    }
    let kdir = cx.settings.install_tree.join(k);
    let records = cx.tree.read_record(m, v, k, a).is_some();
    for (name, locations) in built_modules(cx, m, v, k, a) {
        let Some(tree_mod) = cx.tree.built_file(m, v, k, a, &name) else {
            if records {
                out.push(missing);
                if cx.compat().new_wording() {
                    break;
                }
            }
            continue;
        };
        if installed && !locations.is_empty() {
            let same =
                installed_copy(&cx.tree, &kdir, m, k, a, &name, &locations).is_some_and(|p| same_file(&tree_mod, &p));
            if !same {
                out.push(differ);
                if cx.compat().new_wording() {
                    break;
                }
            }
        }
    }
    out
}

/// The status lines for the filter: the tree's, then what binary packages
/// installed (a package's line replaces the tree's line of the same build).
pub fn collect(cx: &Cx, f: &Filter) -> Listing {
    let mut l = from_tree(cx, f);
    for mk in packaged::all(&cx.settings.sysconf_root) {
        let wanted = f.module.as_ref().is_none_or(|x| *x == mk.module)
            && f.version.as_ref().is_none_or(|x| *x == mk.version)
            && f.kernel.as_ref().is_none_or(|x| *x == mk.kernel)
            && f.arch.as_ref().is_none_or(|x| *x == mk.arch);
        if !wanted {
            continue;
        }
        let line = Line {
            module: mk.module.clone(),
            version: mk.version.clone(),
            kernel: Some(mk.kernel.clone()),
            arch: Some(mk.arch.clone()),
            state: "installed",
            notes: vec![],
            package: Some(mk.package.clone()),
            make_log: None,
            diagnosis: None,
        };
        match l.lines.iter_mut().find(|x| {
            (&x.module, &x.version, &x.kernel, &x.arch) == (&line.module, &line.version, &line.kernel, &line.arch)
        }) {
            Some(x) => *x = line,
            None => l.lines.push(line),
        }
    }
    l
}

fn from_tree(cx: &Cx, f: &Filter) -> Listing {
    let mut l = Listing::default();
    for (m, v) in cx.tree.combos() {
        if f.module.as_ref().is_some_and(|x| *x != m) || f.version.as_ref().is_some_and(|x| *x != v) {
            continue;
        }
        let line = |kernel: Option<&str>, arch: Option<&str>, state, notes| Line {
            module: m.clone(),
            version: v.clone(),
            kernel: kernel.map(str::to_string),
            arch: arch.map(str::to_string),
            state,
            notes,
            package: None,
            make_log: None,
            diagnosis: None,
        };
        let builds = cx.tree.built(&m, &v, f.kernel.as_deref(), f.arch.as_deref());
        match cx.tree.source_state(&m, &v, cx.compat()) {
            SourceState::Added(_) => {}
            SourceState::Broken => {
                l.lines.push(line(None, None, "broken", vec![]));
                l.errors.push((l.lines.len(), format!(
                    "\nError! {m}/{v} is broken: its source directory, or the link to it ({}), is missing. Reinstall its package, or remove {} by hand.",
                    cx.tree.source_link(&m, &v).display(),
                    cx.tree.version_dir(&m, &v).display()
                )));
                continue;
            }
            SourceState::AddedGone if !builds.is_empty() => {
                // dkms 3.0 stops listing at a built module whose dkms.conf is gone
                l.errors.push((l.lines.len(), format!(
                    "\nError! {}/dkms.conf does not exist: the source of {m}/{v} is gone, so the listing stops here. Reinstall its package, or remove {} by hand.",
                    cx.tree.source_link(&m, &v).display(),
                    cx.tree.version_dir(&m, &v).display()
                )));
                return l;
            }
            SourceState::AddedGone => {}
            SourceState::Absent => continue,
        }
        for (k, a) in &builds {
            let installed = cx.tree.active_version(&m, k, a).as_deref() == Some(v.as_str());
            let n = notes(cx, &m, &v, k, a, installed);
            l.lines
                .push(line(Some(k), Some(a), if installed { "installed" } else { "built" }, n));
        }
        if builds.is_empty() {
            l.lines.push(line(None, None, "added", vec![]));
        }
    }
    l
}

/// The last failed builds of the listed modules (for `--json`).
pub fn failures(cx: &Cx, f: &Filter) -> Vec<Line> {
    let mut out = Vec::new();
    for (m, v) in cx.tree.combos() {
        if f.module.as_ref().is_some_and(|x| *x != m) || f.version.as_ref().is_some_and(|x| *x != v) {
            continue;
        }
        let base = cx.tree.version_dir(&m, &v).join(".modsync/failed");
        for ka in crate::sys::fs::sorted_names(&base) {
            let Some((k, a)) = ka.rsplit_once('-') else { continue };
            if f.kernel.as_ref().is_some_and(|x| x != k) || cx.tree.is_built(&m, &v, k, a) {
                continue;
            }
            out.push(Line {
                module: m.clone(),
                version: v.clone(),
                kernel: Some(k.to_string()),
                arch: Some(a.to_string()),
                state: "failed",
                notes: vec![],
                package: None,
                make_log: Some(base.join(&ka).join("make.log")),
                diagnosis: record::read(&base.join(&ka)),
            });
        }
    }
    out
}

/// `dkms status [m[/v]] [-k K]... [-a A]`: prints the lines (once per `-k`,
/// as dkms does) and the errors; exits 0 as dkms does.
pub fn print(cx: &Cx, t: &super::Target, json: bool) -> anyhow::Result<i32> {
    use std::io::Write;
    let base = Filter {
        module: t.module.clone().filter(|m| !m.is_empty()),
        version: t.version.clone(),
        ..Default::default()
    };
    let filters: Vec<Filter> = if t.kernels.is_empty() {
        vec![base]
    } else {
        t.kernels
            .iter()
            .map(|(k, a)| Filter {
                kernel: Some(k.clone()),
                arch: (!a.is_empty()).then(|| a.clone()),
                ..base.clone()
            })
            .collect()
    };
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for f in &filters {
        let l = collect(cx, f);
        let before = lines.len();
        errors.extend(l.errors.into_iter().map(|(at, e)| (before + at, e)));
        lines.extend(l.lines);
        if json {
            lines.extend(failures(cx, f));
        }
    }
    // a hold of the boot guard: the last element of --json, on stderr otherwise
    let held = crate::guard::record::read(&cx.settings.dkms_tree).unwrap_or_else(|e| {
        errors.push((usize::MAX, format!("{e:#}")));
        None
    });
    let mut out = std::io::stdout().lock();
    if json {
        let mut all = serde_json::to_value(&lines)?;
        if let (Some(r), Some(a)) = (&held, all.as_array_mut()) {
            let guard: serde_json::Value = serde_json::from_str(&super::guard::json(Some(r)))?;
            a.push(serde_json::json!({ "boot_guard": guard }));
        }
        let text = serde_json::to_string_pretty(&all)? + "\n";
        match out.write_all(text.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
            r => r?,
        }
        for (_, e) in errors {
            eprintln!("{e}");
        }
        return Ok(0);
    }
    let mut pending = errors.into_iter().peekable();
    for (i, l) in lines.iter().enumerate() {
        while let Some((_, e)) = pending.next_if(|(at, _)| *at <= i) {
            let _ = out.flush();
            eprintln!("{e}");
        }
        match writeln!(out, "{}", l.render()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
            r => r?,
        }
    }
    let _ = out.flush();
    for (_, e) in pending {
        eprintln!("{e}");
    }
    if let Some(r) = &held {
        eprintln!("{}", crate::guard::describe(r));
    }
    Ok(0)
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
            notes: vec![
                "Original modules exist",
                "Differences between built and installed modules",
            ],
            package: None,
            make_log: None,
            diagnosis: None,
        };
        assert_eq!(l.render(), "foo/1.0, 6.1.0-56-amd64, x86_64: installed (Original modules exist) (Differences between built and installed modules)");
        let p = Line {
            package: Some("foo-modules-6.1".into()),
            notes: vec![],
            ..l.clone()
        };
        assert_eq!(
            p.render(),
            "foo/1.0, 6.1.0-56-amd64, x86_64: installed (package foo-modules-6.1)"
        );
        l.kernel = None;
        l.arch = None;
        l.state = "added";
        l.notes.clear();
        assert_eq!(l.render(), "foo/1.0: added");
        assert_eq!(wording(Compat::V30)[0], "original_module exists");
    }
}
