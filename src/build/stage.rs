//! Staging a finished build: strip, sign and compress the built modules
//! into a staging directory, then rename it into place as `m/v/K/A`.

use super::{Env, Job};
use crate::kernel::Compression;
use crate::state::record::{self, BuildRecord, BuiltModule};
use crate::sys::fs::{temp_beside, write_atomic};
use crate::ui::Sink;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Compresses `file` in place with the tool dkms uses; returns the new
/// path, or None when the tool failed (the module is kept uncompressed).
fn compress(file: &Path, c: Compression, opts: &crate::config::settings::CompressOpts) -> Option<PathBuf> {
    let (tool, o) = match c {
        Compression::None => return Some(file.to_path_buf()),
        Compression::Gzip => ("gzip", &opts.gzip),
        Compression::Xz => ("xz", &opts.xz),
        Compression::Zstd => ("zstd", &opts.zstd),
    };
    let st = Command::new(tool)
        .args(o.split_whitespace())
        .arg("-f")
        .arg(file)
        .status();
    let out = PathBuf::from(format!("{}{}", file.display(), c.suffix()));
    (st.is_ok_and(|s| s.success()) && out.is_file()).then_some(out)
}

/// Strip, sign and compress the built modules into a staging directory,
/// then rename it to `m/v/K/A`.
pub fn stage(env: &Env, job: &Job, sink: &dyn Sink) -> Result<()> {
    let (m, v, k, wd) = (job.module, job.version, job.kernel, job.workdir);
    let dest = env.tree.build_result(m, v, &k.release, &k.arch);
    let kdir = env.tree.kernel_dir(m, v, &k.release);
    std::fs::create_dir_all(&kdir).with_context(|| format!("creating {}", kdir.display()))?;
    let staging = temp_beside(&dest);
    let _ = std::fs::remove_dir_all(&staging);
    let res = (|| -> Result<()> {
        std::fs::create_dir_all(staging.join("module")).with_context(|| format!("creating {}", staging.display()))?;
        std::fs::create_dir_all(staging.join("log")).with_context(|| format!("creating {}", staging.display()))?;
        let symvers = wd.real.join("Module.symvers");
        if symvers.is_file() {
            std::fs::copy(&symvers, staging.join("module/Module.symvers"))
                .with_context(|| format!("copying {}", symvers.display()))?;
        }
        let clang = job.vars.iter().any(|(k, v)| k == "CC" && v == "clang");
        let mut rec = BuildRecord {
            depends: job.conf.build_depends.clone(),
            rebuild_on_depends: job.conf.build_depends_rebuild,
            ..Default::default()
        };
        for spec in job.conf.buildable() {
            let rel = format!("{}{}.ko", spec.built_location, spec.built_name);
            let built = wd.real.join(&rel);
            if spec.strip {
                let _ = Command::new(if clang { "llvm-strip" } else { "strip" })
                    .arg("-g")
                    .arg(&built)
                    .status();
            }
            if let Some(s) = job.signer {
                sink.out(&format!("Signing module {}", wd.seen.join(&rel).display()));
                if let Err(why) = crate::sign::sign(s, &built) {
                    let message = format!("could not sign {}: {why}", wd.seen.join(&rel).display());
                    let d = crate::diagnose::classify(&crate::diagnose::Facts {
                        module: m,
                        version: v,
                        kernel: &k.release,
                        message: &message,
                        ..Default::default()
                    });
                    sink.warn(&format!("{message}; the module stays unsigned.\n{}", d.render()));
                }
            }
            let (from, suffix) = match compress(&built, job.compression, &env.settings.compress) {
                Some(p) => (p, job.compression.suffix()),
                None => (built.clone(), ""),
            };
            let file = format!("{}.ko{suffix}", spec.dest_name);
            std::fs::copy(&from, staging.join("module").join(&file))
                .with_context(|| format!("copying {} to {}", from.display(), staging.display()))?;
            rec.modules.push(BuiltModule {
                name: spec.dest_name.clone(),
                file,
                location: spec.dest_location.clone(),
                declared_location: spec.declared_location.clone(),
            });
        }
        write_atomic(&staging.join(record::FILE), &record::to_json(&rec), 0o644)?;
        std::fs::set_permissions(&staging, std::os::unix::fs::PermissionsExt::from_mode(0o755)).ok();
        if dest.exists() {
            std::fs::remove_dir_all(&dest).with_context(|| format!("replacing {}", dest.display()))?;
        }
        std::fs::rename(&staging, &dest)
            .with_context(|| format!("renaming {} to {}", staging.display(), dest.display()))
    })();
    if res.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    res
}
