//! `uninstall`, `unbuild`, `remove`, and dropping everything built for a
//! kernel that is being removed.

use super::Ctx;
use crate::kernel::Kernel;
use anyhow::{Context, Result};

/// (kernel, arch) pairs where m/v has any state: built, failed or active.
pub fn states_of(ctx: &Ctx, m: &str, v: &str) -> Vec<(String, String)> {
    let mut all = ctx.tree.built(m, v);
    all.extend(ctx.tree.failed(m, v));
    all.sort();
    all.dedup();
    all
}

/// Uninstall + delete the build of m/v for one kernel.
pub fn unbuild_one(ctx: &Ctx, m: &str, v: &str, kernel: &Kernel) -> Result<bool> {
    let (k, a) = (&kernel.release, &kernel.arch);
    crate::install::uninstall(ctx, m, v, kernel)?;
    let mut any = false;
    for d in [ctx.tree.kernel_dir(m, v, k, a), ctx.tree.failed_dir(m, v, k, a)] {
        if d.exists() {
            std::fs::remove_dir_all(&d).with_context(|| format!("removing {}", d.display()))?;
            any = true;
            if let Some(p) = d.parent() {
                let _ = std::fs::remove_dir(p);
            }
        }
    }
    let _ = std::fs::remove_dir(ctx.tree.version_dir(m, v).join("failed"));
    Ok(any)
}

/// Deletes m/v from the tree entirely (after POST_REMOVE).
pub fn unregister(ctx: &Ctx, m: &str, v: &str, kernel: &Kernel) -> Result<()> {
    if let Ok(source) = ctx.source_dir(m, v) {
        if let Ok(conf) = ctx.read_conf(m, v, kernel) {
            if let Some(s) = &conf.post_remove {
                let rc = crate::install::run_script(ctx, m, "POST_REMOVE", s, &source, kernel)?;
                if rc != 0 {
                    eprintln!("Warning: the POST_REMOVE script of {m}/{v} exited with status {rc}");
                }
            }
        }
    }
    let vdir = ctx.tree.version_dir(m, v);
    std::fs::remove_dir_all(&vdir).with_context(|| format!("removing {}", vdir.display()))?;
    println!("Deleting module {m}/{v} completely from the DKMS tree.");
    let mdir = ctx.tree.module_dir(m);
    let _ = std::fs::remove_dir(mdir.join("original_module"));
    let _ = std::fs::remove_dir(&mdir);
    Ok(())
}

/// Drops every module built or installed for kernel `release` (the kernel is
/// being removed); registrations stay.
pub fn drop_kernel(ctx: &Ctx, release: &str) -> Result<Vec<String>> {
    let mut dropped = Vec::new();
    for (m, v) in ctx.tree.registered() {
        for (k, a) in states_of(ctx, &m, &v) {
            if k == release {
                let kernel = ctx.kernel(&k, &a);
                if unbuild_one(ctx, &m, &v, &kernel)? {
                    dropped.push(format!("{m}/{v}"));
                }
            }
        }
    }
    Ok(dropped)
}
