//! Reading a module's modsync.toml for one kernel: the file parsed (never
//! run), then evaluated with the same kernel facts a dkms.conf gets, into
//! the same [`Evaluated`] value. [`Cx::evaluate`] comes here for `*.toml`.

use super::Cx;
use crate::config::directives::{Context, Evaluated};
use crate::config::manifest::{self, evaluate::evaluate};
use crate::error::{code, Failure};
use crate::kernel::Kernel;
use std::path::Path;

impl Cx {
    /// The manifest at `path` for m/v and the kernel; a file that does not
    /// parse is dkms's exit 8, with its line and column.
    pub(super) fn evaluate_manifest(&self, path: &Path, m: &str, v: &str, k: &Kernel) -> Result<Evaluated, Failure> {
        let text = std::fs::read_to_string(path).map_err(|e| Failure {
            code: code::BAD_CONF,
            message: format!("reading {}: {e}", path.display()),
        })?;
        let parsed = manifest::parse(&text).map_err(|e| Failure {
            code: code::BAD_CONF,
            message: format!("{}: {e}", path.display()),
        })?;
        log::debug!("read the manifest {} for kernel {}", path.display(), k.label());
        let r = self.read_for(m, v, k);
        // dkms's compatibility modes apply to dkms.conf only
        Ok(self.in_context(&r, k, |c| {
            let c = Context {
                per_module_exclusive: true,
                records_by_index: true,
                ..c.clone()
            };
            evaluate(&parsed, &c, &r.parallel_jobs)
        }))
    }
}
