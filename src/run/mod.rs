//! The executor: runs the planned jobs (build, install, or both, for one
//! module version and kernel each) concurrently under one CPU budget, in
//! BUILD_DEPENDS order, and returns a record of what it did: each job's
//! outcome and the module names placed into or taken out of each kernel's
//! tree. The caller uses the record for depmod, the initramfs and the exit
//! code. A job's messages are printed as one block when it ends.

mod job;
pub mod scheduler;

use crate::build::workdir::Workdir;
use crate::cache::Cache;
use crate::config::directives::Evaluated;
use crate::config::settings::{Jobs, Settings};
use crate::install;
use crate::kernel::Kernel;
use crate::plan::Work;
use crate::sign::Signer;
use crate::state::history::{Event, ResultKind};
use crate::state::journal::Journal;
use crate::state::Tree;
use crate::sys::fs::remove_within;
use crate::ui::{Buffered, Sink};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What every job of a run shares.
pub struct Cx<'a> {
    pub tree: &'a Tree,
    pub settings: &'a Settings,
    pub journal: &'a Journal,
    pub force: bool,
    pub install: install::Options,
    pub cache: Option<Cache>,
    /// How modules are signed, per (kernel, arch).
    pub signers: BTreeMap<(String, String), Option<Signer>>,
    /// Builds of one module version may run at once (private mount namespaces).
    pub isolate: bool,
}

/// One job.
#[derive(Debug, Clone)]
pub struct Job {
    pub module: String,
    pub version: String,
    pub kernel: Kernel,
    pub work: Work,
    pub conf: Arc<Evaluated>,
    /// Jobs (indices) that must end well first.
    pub deps: Vec<usize>,
    /// dkms's variables for the job's commands and scripts.
    pub vars: Vec<(String, String)>,
    /// `m/v/source` as dkms names it, and the directory it points to.
    pub source_link: PathBuf,
    pub source: PathBuf,
    /// A line printed before the job's messages (autoinstall names each module).
    pub header: Option<String>,
}

impl Job {
    pub fn label(&self) -> String {
        format!("{}/{} for kernel {}", self.module, self.version, self.kernel.label())
    }
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done {
        built: bool,
        installed: bool,
    },
    /// Not built: BUILD_EXCLUSIVE excludes the kernel (77).
    Skipped,
    Failed {
        code: i32,
        message: String,
        log: Option<PathBuf>,
    },
    /// Not run: this job (index) did not end well.
    DepFailed(usize),
}

impl Outcome {
    /// The exit code dkms gives for this outcome.
    pub fn code(&self) -> i32 {
        match self {
            Outcome::Done { .. } => 0,
            Outcome::Skipped => crate::error::code::EXCLUDED,
            Outcome::Failed { code, .. } => *code,
            Outcome::DepFailed(_) => crate::error::code::BUILD_DEPENDS,
        }
    }

    /// The history's record of this outcome for `module` (`m/v`) and the
    /// kernel; None when nothing happened (already current, or not run).
    pub fn history(&self, module: String, kernel: &str, exclusion: Option<&str>) -> Option<Event> {
        let mut e = Event::new(Some(module), kernel, ResultKind::Installed);
        match self {
            Outcome::Done { installed: true, .. } => {}
            Outcome::Done { .. } | Outcome::DepFailed(_) => return None,
            Outcome::Skipped => {
                e.result = ResultKind::Skipped;
                e.reason = exclusion.map(|r| format!("BUILD_EXCLUSIVE: {r}"));
            }
            Outcome::Failed { code, message, log } => {
                e.result = ResultKind::Failed;
                e.code = *code;
                e.reason = Some(message.trim().to_string()).filter(|m| !m.is_empty());
                e.make_log = log.clone();
            }
        }
        Some(e)
    }

    /// Dependents may go on (dkms counts a skipped dependency as met).
    pub fn satisfies(&self) -> bool {
        matches!(self, Outcome::Done { .. } | Outcome::Skipped)
    }
}

/// The module names that changed in one kernel's tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    pub installed: Vec<String>,
    pub removed: Vec<String>,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Record {
    pub outcomes: Vec<Outcome>,
    pub changes: BTreeMap<String, Change>,
}

/// A job's expected build work, to start the longest first: compiling is
/// mostly parsing kernel headers, so the count of `.c` files weighs most.
fn source_weight(dir: &std::path::Path) -> u64 {
    let sizes: Vec<u64> = walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "c"))
        .filter_map(|e| e.metadata().ok())
        .map(|md| md.len())
        .collect();
    1 + sizes.len() as u64 + sizes.iter().sum::<u64>() / 65536
}

fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// A live progress line on a terminal while several jobs run.
struct Ticker {
    running: Mutex<Vec<String>>,
    done: AtomicUsize,
    total: usize,
    start: Instant,
    on: bool,
    stop: AtomicBool,
}

impl Ticker {
    fn line(&self) -> String {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        format!(
            "[{}/{}] {:.0} s, building: {}",
            self.done.load(Ordering::SeqCst),
            self.total,
            self.start.elapsed().as_secs_f64(),
            running.join(", ")
        )
    }
}

/// Runs the jobs; returns the record. `sink` gets every job's messages.
pub fn execute(cx: &Cx, jobs: &[Job], sink: &dyn Sink) -> Record {
    let deps: Vec<Vec<usize>> = jobs.iter().map(|j| j.deps.clone()).collect();
    let weights: Vec<u64> = jobs
        .iter()
        .map(|j| if j.work.build { source_weight(&j.source) } else { 0 })
        .collect();
    // without private namespaces, builds of one module version share m/v/build
    let mut group_of: BTreeMap<(String, String), usize> = BTreeMap::new();
    let groups: Vec<Option<usize>> = jobs
        .iter()
        .map(|j| {
            let n = group_of.len();
            let g = *group_of.entry((j.module.clone(), j.version.clone())).or_insert(n);
            (!cx.isolate && j.work.build).then_some(g)
        })
        .collect();
    let (workers, jobserver) = match cx.settings.jobs {
        Jobs::Budget(0) => (cpus(), None),
        Jobs::Budget(n) => (
            n,
            jobserver::Client::new(n)
                .map_err(|e| log::warn!("no make jobserver: {e}"))
                .ok(),
        ),
        Jobs::Explicit(0) => (1, None),
        Jobs::Explicit(n) => ((cpus() / n).max(1), None),
    };
    let single = jobs.len() == 1;
    let ticker = Ticker {
        running: Mutex::new(Vec::new()),
        done: AtomicUsize::new(0),
        total: jobs.len(),
        start: Instant::now(),
        on: !single && std::io::stderr().is_terminal(),
        stop: AtomicBool::new(false),
    };
    let failed_dirs: Mutex<Vec<Workdir>> = Mutex::new(Vec::new());
    let changes: Mutex<BTreeMap<String, Change>> = Mutex::new(BTreeMap::new());
    let out_lock = Mutex::new(());
    let results = std::thread::scope(|s| {
        if ticker.on {
            s.spawn(|| {
                while !ticker.stop.load(Ordering::SeqCst) {
                    {
                        let _o = out_lock.lock().unwrap_or_else(|e| e.into_inner());
                        eprint!("\r\x1b[K{}", ticker.line());
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                eprint!("\r\x1b[K");
            });
        }
        let graph = scheduler::Graph {
            deps: &deps,
            weights: &weights,
            groups: &groups,
        };
        let r = scheduler::run(&graph, workers.max(1), Outcome::satisfies, |i| {
            let j = &jobs[i];
            // a job holds a jobserver token while it runs, for the job its make
            // runs without one: jobs and make jobs together stay in the budget
            let token = jobserver.as_ref().and_then(|c| c.acquire().ok());
            ticker
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("{}/{} ({})", j.module, j.version, j.kernel.release));
            let buf = Buffered::default();
            let job_sink: &dyn Sink = if single { sink } else { &buf };
            if let Some(h) = &j.header {
                job_sink.out(h);
            }
            let r = job::run_job(cx, j, jobserver.as_ref(), job_sink);
            drop(token);
            ticker
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|l| !l.starts_with(&format!("{}/{} ({})", j.module, j.version, j.kernel.release)));
            ticker.done.fetch_add(1, Ordering::SeqCst);
            if let Outcome::Failed { message, .. } = &r.outcome {
                job_sink.error(message);
            }
            if !single {
                let _o = out_lock.lock().unwrap_or_else(|e| e.into_inner());
                if ticker.on {
                    eprint!("\r\x1b[K");
                }
                buf.flush(sink);
            }
            if let Some(w) = r.failed_workdir {
                failed_dirs.lock().unwrap_or_else(|e| e.into_inner()).push(w);
            }
            let mut ch = changes.lock().unwrap_or_else(|e| e.into_inner());
            let c = ch.entry(j.kernel.release.clone()).or_default();
            c.installed.extend(r.change.installed);
            c.removed.extend(r.change.removed);
            r.outcome
        });
        ticker.stop.store(true, Ordering::SeqCst);
        r
    });
    // the shared mount points of isolated builds go once no build can use
    // them (only when empty: a failed build's directory comes next)
    if cx.isolate {
        for j in jobs.iter().filter(|j| j.work.build) {
            let _ = std::fs::remove_dir(cx.tree.build_dir(&j.module, &j.version));
        }
    }
    // failed builds leave their directory where dkms leaves it: m/v/build
    for w in failed_dirs.into_inner().unwrap_or_default() {
        if w.isolated() {
            let _ = remove_within(&cx.tree.root, &w.seen);
            if std::fs::rename(&w.real, &w.seen).is_err() {
                let _ = crate::sys::fs::copy_tree(&w.real, &w.seen);
                let _ = std::fs::remove_dir_all(&w.real);
            }
        }
    }
    let outcomes = results
        .into_iter()
        .map(|d| match d {
            scheduler::Done::Ran(o) => o,
            scheduler::Done::DepFailed(i) => Outcome::DepFailed(i),
        })
        .collect();
    Record {
        outcomes,
        changes: changes.into_inner().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_follows_the_c_sources() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("src/sub")).unwrap();
        std::fs::write(d.path().join("a.c"), "x".repeat(100_000)).unwrap();
        std::fs::write(d.path().join("src/sub/b.c"), "x".repeat(50)).unwrap();
        std::fs::write(d.path().join("src/b.h"), "x".repeat(1_000_000)).unwrap();
        assert_eq!(source_weight(d.path()), 1 + 2 + 1);
        assert_eq!(source_weight(&d.path().join("gone")), 1);
    }

    #[test]
    fn outcomes_give_dkms_codes() {
        assert_eq!(
            Outcome::Done {
                built: true,
                installed: false
            }
            .code(),
            0
        );
        assert_eq!(Outcome::Skipped.code(), 77);
        assert!(Outcome::Skipped.satisfies() && !Outcome::DepFailed(0).satisfies());
        assert_eq!(
            Outcome::Failed {
                code: 10,
                message: String::new(),
                log: None
            }
            .code(),
            10
        );
    }
}
