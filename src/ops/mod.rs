//! The operations, one module per dkms verb (and modsync's own), over one
//! context ([`Cx`]) that holds the settings, the tree, the distribution
//! and the command line's options and never changes during a command. Each
//! operation gathers its inputs (the tree, each dkms.conf evaluated once
//! per module and kernel), asks the planner what to do, has the executor
//! do it, and finishes with what the executor's record says (depmod, the
//! initramfs, dependent rebuilds, post_transaction).

pub mod add;
pub mod autoinstall;
pub mod autoinstaller;
pub mod boot;
pub mod build;
pub mod cache;
pub mod check;
pub mod convert;
pub mod explain;
pub mod finish;
pub mod generate_docs;
pub mod guard;
pub mod kernel_hooks;
pub mod ldtarball;
pub mod log;
pub mod manifest;
pub mod matching;
pub mod mktarball;
pub mod package;
pub mod recover;
pub mod remove;
pub mod status;

use crate::config::directives::{self, Evaluated};
use crate::config::dkms_conf::{self, ReadFor};
use crate::config::settings::{Compat, Jobs, Settings};
use crate::error::{code, fail, Failure};
use crate::kernel::distro::Distro;
use crate::kernel::{Kernel, Locations};
use crate::state::lock::Lock;
use crate::state::{SourceState, Tree};
use crate::sys::names::{self, Kind};
use crate::ui::Sink;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// The command line's options that change how operations behave.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub force: bool,
    pub force_version_override: bool,
    pub no_depmod: bool,
    pub verbose: bool,
    /// `--kernelsourcedir`.
    pub headers_dir: Option<PathBuf>,
    /// `--config`: the kernel configuration to use.
    pub kernel_config: Option<PathBuf>,
    /// `-c`: a dkms.conf instead of the module's own.
    pub conf: Option<PathBuf>,
    /// `--directive NAME=value`.
    pub directives: Vec<String>,
    pub rpm_safe_upgrade: bool,
    pub modprobe_on_install: bool,
    pub symlink_modules: bool,
    pub templatekernel: Option<String>,
    /// Called from a package-manager hook (modsync's own behaviour where it differs).
    pub hook: bool,
}

/// What every operation of one command shares.
pub struct Cx {
    pub settings: Settings,
    pub tree: Tree,
    pub distro: Option<Distro>,
    pub opts: Options,
}

/// The module and version named on the command line, and the kernels.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub module: Option<String>,
    pub version: Option<String>,
    /// (release, arch) pairs, as dkms sets them up.
    pub kernels: Vec<(String, String)>,
    pub all: bool,
    /// A source directory given as the argument (`add DIR`, `build DIR`).
    pub source_dir: Option<PathBuf>,
}

impl Cx {
    pub fn compat(&self) -> Compat {
        self.settings.compat
    }

    pub fn locations(&self) -> Locations {
        Locations {
            install_tree: self.settings.install_tree.clone(),
            headers_dir: self.opts.headers_dir.clone(),
            config_file: self.opts.kernel_config.clone(),
        }
    }

    pub fn kernel(&self, release: &str, arch: &str) -> Kernel {
        Kernel::new(release, arch, &self.locations())
    }

    /// Where modules go under `/lib/modules/K` instead of DEST_MODULE_LOCATION.
    pub fn dest_override(&self) -> Option<String> {
        if let Some(d) = std::env::var("ADDON_MODULES_DIR").ok().filter(|d| !d.is_empty()) {
            return Some(format!("/{}", d.trim_start_matches('/')));
        }
        self.distro
            .as_ref()
            .and_then(Distro::module_location)
            .map(str::to_string)
    }

    /// dkms's variables for dkms.conf and the commands of m/v for a kernel.
    pub fn read_for(&self, m: &str, v: &str, k: &Kernel) -> ReadFor {
        ReadFor {
            module: m.to_string(),
            module_version: v.to_string(),
            kernelver: k.release.clone(),
            arch: k.arch.clone(),
            kernel_source_dir: k.headers_dir.display().to_string(),
            kernel_config: k.config_file.display().to_string(),
            dkms_tree: self.settings.dkms_tree.display().to_string(),
            source_tree: self.settings.source_tree.display().to_string(),
            install_tree: self.settings.install_tree.display().to_string(),
            parallel_jobs: match self.settings.jobs {
                Jobs::Explicit(0) | Jobs::Budget(0) => String::new(),
                Jobs::Explicit(n) | Jobs::Budget(n) => n.to_string(),
            },
            running_distribution: self.distro.as_ref().map(|d| d.name.clone()).unwrap_or_default(),
            tmp_location: self.settings.tmp_location.display().to_string(),
        }
    }

    /// The variables a job's commands and scripts see.
    pub fn job_vars(&self, m: &str, v: &str, k: &Kernel, e: &Evaluated) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = self
            .read_for(m, v, k)
            .vars()
            .into_iter()
            .map(|(a, b)| (a.to_string(), b))
            .collect();
        vars.push(("PACKAGE_NAME".into(), e.conf.package_name.clone()));
        vars.push(("PACKAGE_VERSION".into(), e.conf.package_version.clone()));
        vars
    }

    /// The configuration of m/v: `-c`, else `m/v/source/modsync.toml` when
    /// the module ships one, else `m/v/source/dkms.conf`.
    pub fn conf_path(&self, m: &str, v: &str) -> PathBuf {
        self.opts
            .conf
            .clone()
            .unwrap_or_else(|| crate::config::manifest::config_in(&self.tree.source_link(m, v)))
    }

    /// Reads the dkms.conf at `conf` for m/v and the kernel, once; bash's
    /// messages go to `sink`. With `strict` (add, build, install) the
    /// warnings dkms prints for those are printed too. A missing file is
    /// dkms's exit 4. A modsync.toml is parsed, never run ([`manifest`]).
    pub fn evaluate(
        &self,
        conf: &Path,
        m: &str,
        v: &str,
        k: &Kernel,
        strict: bool,
        sink: &dyn Sink,
    ) -> Result<Evaluated, Failure> {
        if !conf.is_file() {
            return Err(Failure {
                code: code::BROKEN,
                message: format!(
                    "{} does not exist: the module has no dkms.conf (reinstall the package that ships it)",
                    conf.display()
                ),
            });
        }
        if crate::config::manifest::is_manifest(conf) {
            if !self.opts.directives.is_empty() {
                sink.warn(&format!(
                    "--directive sets dkms.conf values; {} is a manifest, so it has no effect",
                    conf.display()
                ));
            }
            return self.evaluate_manifest(conf, m, v, k);
        }
        let r = self.read_for(m, v, k);
        let sourced =
            dkms_conf::read(conf, &self.settings.etc_dkms(), &r, &self.opts.directives).map_err(|e| Failure {
                code: code::BAD_CONF,
                message: format!("{e:#}"),
            })?;
        for l in sourced.stderr.lines() {
            sink.err(l);
        }
        if !sourced.stderr.is_empty() && crate::config::shell::has_crlf(conf) && sourced.stderr.contains("syntax error")
        {
            sink.err(&format!(
                "{} has Windows (CRLF) line endings; convert it with `dos2unix` and try again",
                conf.display()
            ));
        }
        for d in &self.opts.directives {
            if let Some((n, val)) = d.split_once('=') {
                sink.out(&format!("DIRECTIVE: {n}=\"{val}\""));
            }
        }
        let e = self.in_context(&r, k, |c| directives::evaluate(&sourced.raw, c));
        if strict {
            for w in &e.warnings {
                sink.err(&format!("{}: warning: {w}", conf.display()));
            }
        }
        Ok(e)
    }

    /// Hands `f` the facts about kernel `k` and the tree that a module's
    /// configuration (dkms.conf or modsync.toml) is evaluated with.
    fn in_context<T>(&self, r: &ReadFor, k: &Kernel, f: impl FnOnce(&directives::Context) -> T) -> T {
        let kconfig = k.config();
        let dest = self.dest_override();
        f(&directives::Context {
            kernelver: &k.release,
            arch: &k.arch,
            kernel_source_dir: &r.kernel_source_dir,
            dkms_tree: &r.dkms_tree,
            module: &r.module,
            module_version: &r.module_version,
            dest_override: dest.as_deref(),
            kconfig: kconfig.as_ref(),
            clang: kconfig.as_ref().is_some_and(|c| c.enabled("CONFIG_CC_IS_CLANG")),
            per_module_exclusive: self.compat().per_module_exclusive(),
            records_by_index: self.compat().records_by_index(),
        })
    }

    /// dkms's refusal of a dkms.conf: every problem, then exit 8.
    pub fn bad_conf(&self, conf: &Path, e: &Evaluated, strict: bool) -> Failure {
        let mut lines: Vec<String> = e.errors.iter().map(|x| format!("{}: {x}", conf.display())).collect();
        if strict {
            lines.extend(e.strict_errors.iter().map(|x| format!("{}: {x}", conf.display())));
        }
        let kind = if crate::config::manifest::is_manifest(conf) {
            crate::config::manifest::FILE_NAME
        } else {
            "dkms.conf"
        };
        lines.push(format!(
            "{} is not a valid {kind}; fix the lines above.",
            conf.display()
        ));
        Failure {
            code: code::BAD_CONF,
            message: lines.join("\n"),
        }
    }

    /// The default kernel and architecture: the running ones.
    pub fn default_kernel() -> String {
        crate::kernel::running_release()
    }

    /// The module and version a verb needs (dkms's `check_module_args`), checked as names.
    pub fn module_version(&self, t: &Target, verb: &str) -> Result<(String, String)> {
        let (Some(m), Some(v)) = (
            t.module.clone().filter(|m| !m.is_empty()),
            t.version.clone().filter(|v| !v.is_empty()),
        ) else {
            return Err(fail(
                code::GENERIC,
                format!("name the module and its version: `{verb} MODULE/VERSION` or `{verb} -m MODULE -v VERSION`"),
            ));
        };
        let not_here = if verb == "add" { code::USAGE } else { code::NOT_IN_TREE };
        for (kind, s) in [(Kind::Module, &m), (Kind::Version, &v)] {
            if let Some(p) = names::problem(kind, s) {
                return Err(fail(
                    not_here,
                    format!(
                        "{p}; no such module can be in {}",
                        if verb == "add" {
                            self.settings.source_tree.display()
                        } else {
                            self.settings.dkms_tree.display()
                        }
                    ),
                ));
            }
        }
        Ok((m, v))
    }

    /// dkms's `module_is_broken_and_die` (dkms 3.4).
    pub fn refuse_broken(&self, m: &str, v: &str) -> Result<()> {
        if self.tree.source_state(m, v, self.compat()) == SourceState::Broken {
            return Err(fail(
                code::BROKEN,
                format!(
                    "{m}/{v} is broken: {} is missing or points nowhere. Reinstall the package that ships its source, or remove {} by hand.",
                    self.tree.source_link(m, v).display(),
                    self.tree.version_dir(m, v).display()
                ),
            ));
        }
        Ok(())
    }

    /// dkms's `module_is_added_or_die`.
    pub fn refuse_absent(&self, m: &str, v: &str) -> Result<()> {
        match self.tree.source_state(m, v, self.compat()) {
            SourceState::Added(_) | SourceState::AddedGone => Ok(()),
            _ => Err(fail(
                code::NOT_IN_TREE,
                format!(
                    "{m}/{v} is not in the DKMS tree ({}); `dkms status` lists what is",
                    self.settings.dkms_tree.display()
                ),
            )),
        }
    }

    /// Takes the tree's lock and finishes what a killed run left (dkms's
    /// `check_rw_dkms_tree` first: the tree must exist and be writable; only
    /// the default /var/lib/dkms is made when missing).
    pub fn lock(&self, sink: &dyn Sink) -> Result<Lock> {
        let t = &self.settings.dkms_tree;
        if t == Path::new("/") || !t.is_absolute() {
            return Err(fail(
                code::GENERIC,
                format!(
                    "{} cannot be a DKMS tree; give --dkmstree an absolute directory of its own",
                    t.display()
                ),
            ));
        }
        // the packages ship /var/lib/dkms; a binary installed by hand makes it
        if t == Path::new("/var/lib/dkms") && !t.exists() {
            let _ = std::fs::create_dir(t);
        }
        let c = std::ffi::CString::new(t.as_os_str().as_encoded_bytes())
            .map_err(|_| fail(code::GENERIC, "the DKMS tree's path holds a NUL"))?;
        // SAFETY: access only reads the NUL-terminated path.
        if !t.is_dir() || unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
            return Err(fail(
                code::GENERIC,
                format!(
                    "no write access to the DKMS tree {} (it must exist; run as root)",
                    t.display()
                ),
            ));
        }
        let lock = Lock::acquire(t)?;
        recover::run(self, sink);
        Ok(lock)
    }
}

/// dkms's `check_root`.
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(fail(
            code::GENERIC,
            "this command changes the system's module trees; run it as root",
        ));
    }
    Ok(())
}
