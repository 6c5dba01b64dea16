//! `match --templatekernel=T -k K [module]`: builds and installs on K every
//! module version that is installed on T.

use super::build::{after_installs, execute, job, source_of, state};
use super::status::{collect, Filter};
use super::{Cx, Target};
use crate::error::{code, fail};
use crate::plan::{self, Decision, Verb};
use crate::ui::Sink;
use anyhow::Result;
use std::sync::Arc;

pub fn run(cx: &Cx, t: &Target, sink: &dyn Sink) -> Result<i32> {
    super::require_root()?;
    let (r, a) = super::autoinstall::one_kernel(t, "match", false)?;
    let Some(template) = cx.opts.templatekernel.clone() else {
        return Err(fail(
            code::GENERIC,
            "match needs --templatekernel=KERNEL (the kernel whose modules to copy) and -k KERNEL",
        ));
    };
    if template == r {
        return Err(fail(
            code::USAGE,
            "the template kernel and the kernel to match are the same",
        ));
    }
    if let Some(m) = &t.module {
        if !cx.tree.module_dir(m).is_dir() {
            return Err(fail(code::NOT_IN_TREE, format!("{m} is not in the DKMS tree")));
        }
    }
    let _lock = cx.lock(sink)?;
    let listing = collect(
        cx,
        &Filter {
            module: t.module.clone(),
            kernel: Some(template.clone()),
            arch: Some(a.clone()),
            ..Default::default()
        },
    );
    let wanted: Vec<(String, String)> = listing
        .lines
        .iter()
        .filter(|l| l.state == "installed")
        .map(|l| (l.module.clone(), l.version.clone()))
        .collect();
    sink.out(&format!(
        "\nMatching the modules of kernel {r} ({a}) to those installed on {template} ({a})"
    ));
    if wanted.is_empty() {
        sink.out("\nNothing is installed on the template kernel: nothing to do.");
        return Ok(0);
    }
    let k = cx.kernel(&r, &a);
    if !k.has_headers() {
        return Err(fail(
            cx.compat().headers_missing_code(),
            format!(
                "the headers of kernel {r} are not installed ({} has no include/)",
                k.headers_dir.display()
            ),
        ));
    }
    let mut jobs = Vec::new();
    let mut rc = 0;
    for (m, v) in wanted {
        sink.out(&format!("Module:  {m}\nVersion: {v}"));
        let e = match cx.evaluate(&cx.conf_path(&m, &v), &m, &v, &k, true, sink) {
            Ok(e) => e,
            Err(f) => {
                sink.error(&f.message);
                rc = f.code;
                continue;
            }
        };
        match plan::decide(Verb::Install, state(cx, &m, &v, &k), &e, cx.opts.force) {
            Decision::Run(w) => jobs.push(job(cx, &m, &v, &k, w, Arc::new(e), source_of(cx, &m, &v)?)),
            Decision::Current => sink.out(&format!("{m}/{v} is already installed for kernel {}", k.label())),
            Decision::Excluded => rc = code::EXCLUDED,
            Decision::Refused(c) => rc = c,
        }
    }
    let record = execute(cx, &jobs, sink);
    let after = after_installs(cx, &record, sink);
    Ok(record
        .outcomes
        .iter()
        .map(|o| o.code())
        .find(|c| *c != 0)
        .unwrap_or(if rc == 0 { after } else { rc }))
}
