//! What a build's result depends on: the BUILD_DEPENDS modules installed
//! for the kernel, and the build-cache key that hashes every input (source,
//! evaluated directives, kernel identity, compiler, dependencies, signing).

use super::{Env, Job};
use crate::cache::KeyBuilder;
use crate::config::directives::ModuleConf;
use crate::kernel::Kernel;
use crate::state::Tree;
use anyhow::Result;
use std::process::Command;

/// The BUILD_DEPENDS not installed for the kernel (any version counts).
pub fn missing_depends(tree: &Tree, conf: &ModuleConf, kernel: &Kernel) -> Vec<String> {
    conf.build_depends
        .iter()
        .filter(|d| tree.installed_version(d, &kernel.release, &kernel.arch).is_none())
        .cloned()
        .collect()
}

/// The installed version of each BUILD_DEPENDS for the kernel (for the key
/// and for BUILD_DEPENDS_REBUILD's `.dep_*` files): the newest built or
/// installed one.
pub fn depends_versions(tree: &Tree, conf: &ModuleConf, kernel: &Kernel) -> Vec<(String, String)> {
    conf.build_depends
        .iter()
        .filter_map(|d| {
            let mut vs: Vec<String> = tree
                .versions(d)
                .into_iter()
                .filter(|v| tree.is_built(d, v, &kernel.release, &kernel.arch))
                .collect();
            vs.sort_by(|a, b| crate::kernel::version::compare(a, b));
            vs.pop().map(|v| (d.clone(), v))
        })
        .collect()
}

/// Everything a build's result depends on, hashed.
pub(super) fn cache_key(env: &Env, job: &Job) -> Result<String> {
    let k = job.kernel;
    let mut b = KeyBuilder::default();
    b.field("module", format!("{}/{}", job.module, job.version).as_bytes())
        .field("kernel", format!("{}/{}", k.release, k.arch).as_bytes())
        .field("conf", format!("{:?}", job.conf).as_bytes())
        .field("compression", job.compression.suffix().as_bytes())
        .field("compress-opts", format!("{:?}", env.settings.compress).as_bytes())
        .field("debug", &[env.settings.debug_info as u8]);
    b.tree("source", job.source)?;
    if env.settings.compat.etc_overrides() {
        b.tree("patches", &env.settings.etc_dkms().join(job.module).join("patches"))?;
    }
    b.file("config", &k.config_file)
        .file("symvers", &k.headers_dir.join("Module.symvers"));
    let cc = Command::new("gcc")
        .arg("--version")
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    b.field("compiler", &cc);
    for (d, v) in depends_versions(env.tree, job.conf, k) {
        b.field("depends", format!("{d}/{v}").as_bytes());
    }
    match job.signer {
        Some(s) => b
            .field("sign", format!("{}:{}", s.sign_file.display(), s.hash).as_bytes())
            .file("cert", &s.cert),
        None => b.field("sign", b""),
    };
    Ok(b.finish())
}
