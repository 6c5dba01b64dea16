//! `convert DIR -k K`: a modsync.toml from the dkms.conf in DIR, evaluated
//! by bash for kernel K and for a second kernel (the next `-k`, else a
//! made-up release whose headers do not exist) so that values that depend
//! on the kernel are named. The manifest goes to stdout, or to
//! `DIR/modsync.toml` with `-o`; what could not be carried over is printed
//! as notes (and kept as comments at the top of the manifest).

use super::Cx;
use crate::config::directives::Context;
use crate::config::dkms_conf::WHITELIST;
use crate::config::manifest::convert::{convert, Reading};
use crate::config::manifest::{evaluate::problems, to_text, FILE_NAME};
use crate::config::shell::{self, Raw};
use crate::error::{code, fail};
use crate::kernel::Kernel;
use crate::ui::Sink;
use anyhow::{Context as _, Result};
use std::path::Path;

/// The second kernel when only one is given: no such kernel exists, so
/// its headers and configuration are missing.
const PROBE_KERNEL: &str = "0.0.0-modsync-probe";

/// The dkms.conf's variables as bash leaves them for m/v and the kernel
/// (no /etc/dkms overrides: the vendor's file alone).
fn source(cx: &Cx, conf: &Path, m: &str, v: &str, k: &Kernel) -> Result<Raw> {
    let vars = cx.read_for(m, v, k).vars();
    let vars: Vec<(&str, String)> = vars.iter().map(|(n, s)| (*n, s.clone())).collect();
    Ok(shell::source(&[conf.to_path_buf()], WHITELIST, &vars, &[])?.raw)
}

fn context<'a>(cx: &Cx, k: &'a Kernel, ksd: &'a str, dkms_tree: &'a str, m: &'a str, v: &'a str) -> Context<'a> {
    Context {
        kernelver: &k.release,
        arch: &k.arch,
        kernel_source_dir: ksd,
        dkms_tree,
        module: m,
        module_version: v,
        per_module_exclusive: cx.compat().per_module_exclusive(),
        records_by_index: cx.compat().records_by_index(),
        ..Default::default()
    }
}

/// Converts DIR's dkms.conf; returns the exit code.
pub fn run(cx: &Cx, dir: &Path, kernels: &[(String, String)], write: bool, sink: &dyn Sink) -> Result<i32> {
    let conf = dir.join("dkms.conf");
    let text = std::fs::read_to_string(&conf)
        .map_err(|e| fail(code::NO_DKMS_CONF, format!("reading {}: {e}", conf.display())))?;
    let (release, arch) = kernels
        .first()
        .cloned()
        .unwrap_or_else(|| (Cx::default_kernel(), crate::kernel::machine_arch()));
    let k = cx.kernel(&release, &arch);
    let other = match kernels.get(1) {
        Some((r, a)) => cx.kernel(r, a),
        None => cx.kernel(PROBE_KERNEL, &arch),
    };
    // the name and version first: the commands see them as $module and $module_version
    let first = source(cx, &conf, "", "", &k)?;
    let m = first.scalar("PACKAGE_NAME").unwrap_or("").to_string();
    let v = first.scalar("PACKAGE_VERSION").unwrap_or("").to_string();
    let (raw_k, raw_o) = (source(cx, &conf, &m, &v, &k)?, source(cx, &conf, &m, &v, &other)?);
    let tree = cx.settings.dkms_tree.display().to_string();
    let (ksd_k, ksd_o) = (
        k.headers_dir.display().to_string(),
        other.headers_dir.display().to_string(),
    );
    let converted = convert(
        &text,
        &Reading {
            raw: &raw_k,
            ctx: context(cx, &k, &ksd_k, &tree, &m, &v),
        },
        &Reading {
            raw: &raw_o,
            ctx: context(cx, &other, &ksd_o, &tree, &m, &v),
        },
    )
    .map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("{}: {e}", conf.display())).collect();
        fail(
            code::BAD_CONF,
            format!("{}\nfix the dkms.conf before converting it.", lines.join("\n")),
        )
    })?;
    let mut notes = converted.notes;
    notes.extend(
        problems(&converted.manifest)
            .into_iter()
            .map(|p| format!("the manifest is not valid as written: {p}")),
    );
    let mut out = format!(
        "# {FILE_NAME} written by `modsync convert` from {} for kernel {}.\n",
        conf.display(),
        k.label()
    );
    if !notes.is_empty() {
        out.push_str("# Check before shipping it:\n");
        for n in &notes {
            out.push_str(&format!("#  - {n}\n"));
            sink.err(&format!("Note: {n}"));
        }
    }
    out.push('\n');
    out.push_str(&to_text(&converted.manifest));
    if write {
        let dest = dir.join(FILE_NAME);
        if dest.exists() && !cx.opts.force {
            return Err(fail(
                code::REFUSED,
                format!("{} exists; remove it or use --force to replace it", dest.display()),
            ));
        }
        std::fs::write(&dest, &out).with_context(|| format!("writing {}", dest.display()))?;
        sink.out(&format!("Wrote {}", dest.display()));
    } else {
        sink.out(out.trim_end());
    }
    Ok(0)
}
