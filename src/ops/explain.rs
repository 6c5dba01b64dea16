//! `modsync explain MODULE[/VERSION] [-k KERNEL]...` (modsync's own): why a
//! module version is not built for a kernel, and what to do. Without `-k`,
//! every kernel for which a build of the module failed. A failed build is
//! explained by the diagnosis it recorded (else its kept make.log is
//! diagnosed now); a driver that does not support the kernel is named with
//! the package that ships it, when the package manager knows its dkms.conf;
//! a kernel BUILD_EXCLUSIVE keeps out is named with the rule; a kernel
//! without headers, with the package to install.

use super::{Cx, Target};
use crate::diagnose::{self, facts, record, Diagnosis};
use crate::error::{code, fail};
use crate::kernel::distro::Family;
use crate::ui::{Buffered, Sink};
use anyhow::Result;
use std::path::PathBuf;

/// One (version, kernel) explained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained {
    pub module: String,
    pub version: String,
    pub kernel: String,
    pub arch: String,
    /// installed, built, not-built, or the diagnosis's class.
    pub state: String,
    pub diagnosis: Option<Diagnosis>,
    pub make_log: Option<PathBuf>,
}

impl Explained {
    /// For people: a status-like first line, then the diagnosis, indented. Pure.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{}/{}, {}, {}: {}",
            self.module, self.version, self.kernel, self.arch, self.state
        );
        match &self.diagnosis {
            Some(d) => {
                for l in d.render().lines() {
                    s.push_str(&format!("\n  {l}"));
                }
            }
            None if self.state == "not-built" => s.push_str(&format!(
                "\n  No failed build is recorded; `modsync build {}/{} -k {}` builds it.",
                self.module, self.version, self.kernel
            )),
            None => {}
        }
        if let Some(l) = &self.make_log {
            s.push_str(&format!("\n  Build log: {}", l.display()));
        }
        s
    }
}

fn family(cx: &Cx) -> Family {
    cx.distro.as_ref().map(|d| d.family).unwrap_or(Family::Other)
}

/// The kept failure of m/v for a kernel, explained (recorded, else diagnosed now).
fn failure(cx: &Cx, m: &str, v: &str, k: &str, a: &str) -> Option<(Diagnosis, PathBuf)> {
    let kept = cx.tree.failed_dir(m, v, k, a);
    let log = kept.join("make.log");
    if !log.is_file() {
        return None;
    }
    let d = record::read(&kept).unwrap_or_else(|| {
        let reason = std::fs::read_to_string(kept.join("reason")).unwrap_or_default();
        let (c, message) = reason.split_once('\n').unwrap_or(("", &reason));
        let build_dir = cx.tree.build_dir(m, v).display().to_string();
        facts::diagnose(
            &facts::Failure {
                module: m,
                version: v,
                kernel: &cx.kernel(k, a),
                code: c.trim().parse().unwrap_or(code::MAKE_FAILED),
                message: message.trim_end(),
                kept_log: &log,
                log_path: &log.display().to_string(),
                build_dir: &build_dir,
            },
            &cx.settings.sysconf_root,
        )
    });
    let conf = std::fs::canonicalize(cx.tree.source_link(m, v)).map(|d| d.join("dkms.conf"));
    let owner = match (&d.class, conf) {
        (diagnose::Class::KernelUnsupported, Ok(c)) => facts::owner_package(family(cx), &c),
        _ => None,
    };
    Some((d.with_owner(owner.as_deref(), family(cx)), log))
}

/// Why m/v is (not) built for the kernel.
pub fn explain_one(cx: &Cx, m: &str, v: &str, k: &str, a: &str) -> Result<Explained> {
    let mut e = Explained {
        module: m.into(),
        version: v.into(),
        kernel: k.into(),
        arch: a.into(),
        state: "not-built".into(),
        diagnosis: None,
        make_log: None,
    };
    if cx.tree.is_built(m, v, k, a) {
        let installed = cx.tree.active_version(m, k, a).as_deref() == Some(v);
        e.state = if installed { "installed" } else { "built" }.into();
        return Ok(e);
    }
    let kernel = cx.kernel(k, a);
    let d = if let Some((d, log)) = failure(cx, m, v, k, a) {
        e.make_log = Some(log);
        Some(d)
    } else {
        // dkms.conf's own messages are not the point here
        let quiet = Buffered::default();
        let conf = cx
            .evaluate(&cx.conf_path(m, v), m, v, &kernel, false, &quiet)
            .map_err(anyhow::Error::from)?;
        if let Some(rule) = conf.conf.exclusion() {
            Some(diagnose::excluded(m, v, k, rule))
        } else if !kernel.has_headers() {
            let hint = cx
                .distro
                .as_ref()
                .map(|d| d.headers_hint(k, &cx.settings.install_tree))
                .unwrap_or_else(|| format!("install the headers of {k}"));
            Some(diagnose::headers_missing(m, v, k, &hint))
        } else {
            None
        }
    };
    if let Some(d) = d {
        e.state = d.class.name();
        e.diagnosis = Some(d);
    }
    Ok(e)
}

/// The (version, kernel, arch) triples with a kept failed build.
fn failed_builds(cx: &Cx, m: &str, versions: &[String]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for v in versions {
        let base = cx.tree.version_dir(m, v).join(".modsync/failed");
        for ka in crate::sys::fs::sorted_names(&base) {
            if let Some((k, a)) = ka.rsplit_once('-') {
                if !cx.tree.is_built(m, v, k, a) {
                    out.push((v.clone(), k.to_string(), a.to_string()));
                }
            }
        }
    }
    out
}

/// `modsync explain`: prints the explanations; exits 0.
pub fn run(cx: &Cx, t: &Target, sink: &dyn Sink) -> Result<i32> {
    let Some(m) = t.module.as_deref().filter(|m| !m.is_empty()) else {
        return Err(fail(
            code::USAGE,
            "explain needs a module: modsync explain MODULE[/VERSION] [-k KERNEL]",
        ));
    };
    let versions = match &t.version {
        Some(v) => vec![v.clone()],
        None => cx.tree.versions(m),
    };
    if versions.iter().all(|v| !cx.tree.version_dir(m, v).is_dir()) {
        return Err(fail(
            code::NOT_IN_TREE,
            format!(
                "{m}{} is not added to the tree",
                t.version.as_ref().map(|v| format!("/{v}")).unwrap_or_default()
            ),
        ));
    }
    let targets: Vec<(String, String, String)> = if t.kernels.is_empty() {
        failed_builds(cx, m, &versions)
    } else {
        let arch = crate::kernel::machine_arch();
        versions
            .iter()
            .flat_map(|v| {
                t.kernels.iter().map(|(k, a)| {
                    (
                        v.clone(),
                        k.clone(),
                        if a.is_empty() { arch.clone() } else { a.clone() },
                    )
                })
            })
            .collect()
    };
    if targets.is_empty() {
        sink.out(&format!(
            "{m}: no failed build is recorded; `modsync explain {m} -k KERNEL` tells why it is not built for a kernel."
        ));
        return Ok(0);
    }
    let mut first = true;
    for (v, k, a) in targets {
        if !first {
            sink.out("");
        }
        first = false;
        sink.out(&explain_one(cx, m, &v, &k, &a)?.render());
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_an_explanation() {
        let mut e = Explained {
            module: "vpoll".into(),
            version: "0.1".into(),
            kernel: "6.12".into(),
            arch: "x86_64".into(),
            state: "not-built".into(),
            diagnosis: None,
            make_log: None,
        };
        assert_eq!(
            e.render(),
            "vpoll/0.1, 6.12, x86_64: not-built\n  No failed build is recorded; `modsync build vpoll/0.1 -k 6.12` builds it."
        );
        e.state = "excluded".into();
        e.diagnosis = Some(diagnose::excluded(
            "vpoll",
            "0.1",
            "6.12",
            "BUILD_EXCLUSIVE_KERNEL=\"^6\\.1\"",
        ));
        e.make_log = Some("/l/make.log".into());
        let r = e.render();
        assert!(
            r.starts_with("vpoll/0.1, 6.12, x86_64: excluded\n  Why: vpoll/0.1 is not built"),
            "{r}"
        );
        assert!(r.contains("\n  What to do: nothing to do"), "{r}");
        assert!(r.ends_with("\n  Build log: /l/make.log"), "{r}");
        e.diagnosis = None;
        e.make_log = None;
        e.state = "installed".into();
        assert_eq!(e.render(), "vpoll/0.1, 6.12, x86_64: installed");
    }
}
