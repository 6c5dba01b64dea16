//! The engine: one module per operation. `Ctx` carries what every operation
//! needs (settings, the state tree, the distribution, command-line options)
//! and reads a module's dkms.conf for a kernel.

pub mod add;
pub mod autoinstall;
pub mod commands;
pub mod jobs;
pub mod remove;
pub mod status;

use crate::config::directives::{self, ModuleConf};
use crate::config::dkms_conf::{self, EvalVars};
use crate::config::settings::Settings;
use crate::error::{code, fail};
use crate::kernel::distro::Distro;
use crate::kernel::{self, Kernel};
use crate::state::journal::Journal;
use crate::state::{SourceState, Tree};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Command-line options shared by the operations.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub force: bool,
    /// Install over a same-named module of the kernel whatever its version
    /// (`--force-version-override`, or rpm's `--rpm_safe_upgrade`, which forces).
    pub force_version_override: bool,
    pub no_depmod: bool,
    pub verbose: bool,
    pub kernelsourcedir: Option<PathBuf>,
    /// `-c`: a dkms.conf to use instead of the module's own.
    pub conf: Option<PathBuf>,
}

pub struct Ctx {
    pub settings: Settings,
    pub tree: Tree,
    pub distro: Distro,
    pub opts: Options,
    isolate: OnceLock<bool>,
    /// Serialises creating the signing key (parallel jobs would race).
    pub mok_lock: Mutex<()>,
    jobserver: OnceLock<jobserver::Client>,
    /// Kernels whose module tree changed in this command (depmod at the end),
    /// and whether modules were installed into them.
    touched: Mutex<BTreeMap<String, bool>>,
}

impl Ctx {
    pub fn new(settings: Settings, opts: Options) -> Ctx {
        let tree = Tree::new(&settings.dkms_tree, &settings.source_tree);
        let distro = Distro::detect(&settings.sysconf_root);
        Ctx {
            settings,
            tree,
            distro,
            opts,
            isolate: OnceLock::new(),
            mok_lock: Mutex::new(()),
            jobserver: OnceLock::new(),
            touched: Mutex::new(BTreeMap::new()),
        }
    }

    /// Whether jobs can get private build directories (mount namespaces).
    pub fn isolate(&self) -> bool {
        *self.isolate.get_or_init(crate::build::runner::can_isolate)
    }

    /// The make jobserver shared by every build of this command: one token
    /// per CPU of the budget. A job holds one while it runs (the job its make
    /// runs without asking), its make's further jobs take the others.
    pub fn jobserver(&self) -> Result<&jobserver::Client> {
        if let Some(c) = self.jobserver.get() {
            return Ok(c);
        }
        let c = jobserver::Client::new(self.settings.parallel_jobs.max(1)).context("creating the make jobserver")?;
        Ok(self.jobserver.get_or_init(|| c))
    }

    pub fn kernel(&self, release: &str, arch: &str) -> Kernel {
        Kernel::new(release, arch, &self.settings.install_tree, self.opts.kernelsourcedir.as_deref())
    }

    /// `-k` values (or the running kernel) as kernels.
    pub fn kernels(&self, ks: &[String], arch: Option<&str>) -> Vec<Kernel> {
        let list: Vec<String> = if ks.is_empty() { vec![kernel::running_release()] } else { ks.to_vec() };
        list.iter()
            .map(|k| match k.split_once('/') {
                Some((r, a)) => self.kernel(r, a),
                None => self.kernel(k, arch.map(str::to_string).unwrap_or_else(kernel::machine_arch).as_str()),
            })
            .collect()
    }

    /// The source directory of an added module, or the dkms exit code.
    pub fn source_dir(&self, m: &str, v: &str) -> Result<PathBuf> {
        match self.tree.source_state(m, v) {
            SourceState::Added(p) => Ok(p),
            SourceState::Broken => Err(fail(
                code::BROKEN,
                format!("{m}/{v} is broken: its source {} is missing. Reinstall the package that ships it, or run `modsync remove {m}/{v} --all`.", self.tree.source_link(m, v).display()),
            )),
            SourceState::Absent => Err(fail(
                code::NOT_FOUND,
                format!("{m}/{v} is not added. Run `modsync add {m}/{v}` (its source must be in {}).", self.tree.default_source(m, v).display()),
            )),
        }
    }

    fn conf_files(&self, conf: &Path, m: &str, v: &str, k: &str, a: &str) -> Vec<PathBuf> {
        let etc = self.settings.sysconf_root.join("etc/dkms");
        let mut files = vec![conf.to_path_buf()];
        for name in [
            format!("{m}.conf"),
            format!("{m}-{v}.conf"),
            format!("{m}-{v}-{k}.conf"),
            format!("{m}-{v}-{k}-{a}.conf"),
            format!("{m}--{k}.conf"),
            format!("{m}--{k}-{a}.conf"),
        ] {
            files.push(etc.join(name));
        }
        files
    }

    pub fn eval_vars(&self, m: &str, v: &str, kernel: &Kernel) -> EvalVars {
        let config = kernel.config_path().map(|p| p.display().to_string()).unwrap_or_default();
        EvalVars {
            kernelver: kernel.release.clone(),
            arch: kernel.arch.clone(),
            kernel_source_dir: kernel.source_dir.display().to_string(),
            kernel_config: config,
            dkms_tree: self.settings.dkms_tree.display().to_string(),
            source_tree: self.settings.source_tree.display().to_string(),
            install_tree: self.settings.install_tree.display().to_string(),
            module: m.to_string(),
            module_version: v.to_string(),
            parallel_jobs: self.settings.parallel_jobs.to_string(),
            running_distribution: self.distro.id.clone(),
        }
    }

    /// Reads and validates the dkms.conf at `conf` for module m/v and `kernel`.
    pub fn read_conf_at(&self, conf: &Path, m: &str, v: &str, kernel: &Kernel) -> Result<ModuleConf> {
        if !conf.is_file() {
            return Err(fail(code::BROKEN, format!("{} does not exist; the module needs a dkms.conf", conf.display())));
        }
        dkms_conf::check_syntax(conf).map_err(|e| fail(code::BAD_CONF, format!("{e:#}\nFix the file and try again.")))?;
        let dir = conf.parent().unwrap_or(Path::new("/"));
        let files = self.conf_files(conf, m, v, &kernel.release, &kernel.arch);
        let raw = dkms_conf::evaluate(&files, dir, &self.eval_vars(m, v, kernel))
            .with_context(|| format!("reading {}", conf.display()))?;
        let parsed = directives::from_raw(&raw).map_err(|e| fail(code::BAD_CONF, format!("{} — {e}", conf.display())))?;
        if std::fs::read(conf).is_ok_and(|b| b.windows(2).any(|w| w == b"\r\n")) {
            eprintln!("Warning: {} has Windows (CRLF) line endings; they were ignored, but convert the file with dos2unix", conf.display());
        }
        for w in &parsed.warnings {
            eprintln!("Warning: {}/{}: {w}", parsed.package_name, parsed.package_version);
        }
        Ok(parsed)
    }

    /// Reads the dkms.conf of an added module m/v for `kernel`, checking that
    /// it names the same module and version.
    pub fn read_conf(&self, m: &str, v: &str, kernel: &Kernel) -> Result<ModuleConf> {
        let conf = match &self.opts.conf {
            Some(c) => c.clone(),
            None => self.source_dir(m, v)?.join("dkms.conf"),
        };
        let c = self.read_conf_at(&conf, m, v, kernel)?;
        if c.package_name != m || c.package_version != v {
            return Err(fail(
                code::BAD_CONF,
                format!(
                    "{} declares {}/{}, but it is registered as {m}/{v}; make PACKAGE_NAME and PACKAGE_VERSION match the directory {m}-{v}",
                    conf.display(),
                    c.package_name,
                    c.package_version
                ),
            ));
        }
        Ok(c)
    }

    /// Where module `dest_location` goes under `/lib/modules/K` here.
    pub fn install_location<'a>(&self, dest_location: &'a str) -> &'a str {
        self.distro.module_location().unwrap_or(dest_location)
    }

    /// Notes that K's module tree is about to change (journal + depmod later).
    pub fn touch_kernel(&self, release: &str, installing: bool) -> Result<()> {
        let mut t = self.touched.lock().unwrap();
        match t.get_mut(release) {
            Some(i) => *i |= installing,
            None => {
                Journal::new(&self.settings.dkms_tree).begin(release)?;
                t.insert(release.to_string(), installing);
            }
        }
        Ok(())
    }

    /// Kernels into which this command installed modules so far.
    pub fn installed_into(&self) -> Vec<String> {
        self.touched.lock().unwrap().iter().filter(|(_, i)| **i).map(|(k, _)| k.clone()).collect()
    }

    /// Runs depmod once for every kernel touched by this command (and any a
    /// killed run left pending), then clears their journal entries. A kernel
    /// without modules.dep gets one only if modules were installed into it
    /// (so modinfo and modprobe find them).
    pub fn finish(&self) -> Result<()> {
        let journal = Journal::new(&self.settings.dkms_tree);
        let mut kernels: BTreeMap<String, bool> = std::mem::take(&mut *self.touched.lock().unwrap());
        for k in journal.pending() {
            kernels.entry(k).or_insert(true);
        }
        let mut first_err = None;
        for (k, installed) in kernels {
            if !self.opts.no_depmod && self.settings.install_tree.join(&k).is_dir() {
                if let Err(e) = crate::install::depmod::run(&k, &self.settings.install_tree, installed) {
                    eprintln!("modsync: {e:#}");
                    first_err.get_or_insert(e);
                    continue;
                }
            }
            journal.finish(&k);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// After a crash: removes temporary files a killed run left in the state
    /// tree and module directories. Call with the lock held.
    pub fn recover(&self) {
        for (m, v) in self.tree.registered() {
            let vdir = self.tree.version_dir(&m, &v);
            for entry in std::fs::read_dir(&vdir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(".build-") {
                    let _ = std::fs::remove_dir_all(entry.path());
                } else if entry.path().is_dir() {
                    for sub in std::fs::read_dir(entry.path()).into_iter().flatten().flatten() {
                        if crate::state::is_temp_name(&sub.file_name().to_string_lossy()) {
                            log::info!("removing leftover {}", sub.path().display());
                            let _ = std::fs::remove_dir_all(sub.path()).or_else(|_| std::fs::remove_file(sub.path()));
                        }
                    }
                }
            }
        }
        for m in self.tree.modules() {
            for e in std::fs::read_dir(self.tree.module_dir(&m)).into_iter().flatten().flatten() {
                if crate::state::is_temp_name(&e.file_name().to_string_lossy()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let loc = self.distro.module_location().unwrap_or("/updates").trim_start_matches('/');
        for k in kernel::installed_releases(&self.settings.install_tree) {
            let dir = self.settings.install_tree.join(&k).join(loc);
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if crate::state::is_temp_name(&e.file_name().to_string_lossy()) {
                    log::info!("removing leftover {}", e.path().display());
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}
