//! Build-and-install jobs of one command, run concurrently by the scheduler
//! under the shared make jobserver, then one depmod per kernel. Used by
//! build, install, autoinstall and the hooks.

use super::Ctx;
use crate::build::scheduler::{self, Done};
use crate::error::code;
use crate::kernel::Kernel;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Job {
    pub m: String,
    pub v: String,
    pub kernel: Kernel,
    pub install: bool,
    /// Indices of jobs (same command) that must succeed first (BUILD_DEPENDS).
    pub deps: Vec<usize>,
}

impl Job {
    pub fn label(&self) -> String {
        format!("{}/{} for {} ({})", self.m, self.v, self.kernel.release, self.kernel.arch)
    }
}

#[derive(Debug)]
pub enum Outcome {
    /// Built (and installed, for install jobs).
    Done,
    /// Already built / installed: nothing to do.
    Current,
    /// Not for this kernel (BUILD_EXCLUSIVE).
    Skipped(String),
    Failed { code: i32, message: String },
}

impl Outcome {
    pub fn ok(&self) -> bool {
        matches!(self, Outcome::Done | Outcome::Current)
    }
}

fn run_one(ctx: &Ctx, job: &Job) -> Outcome {
    let (m, v, k, a) = (&job.m, &job.v, &job.kernel.release, &job.kernel.arch);
    let installed = ctx.tree.is_installed(m, v, k, a);
    let built = ctx.tree.is_built(m, v, k, a);
    if !ctx.opts.force && ((job.install && installed) || (!job.install && built)) {
        return Outcome::Current;
    }
    let res = (|| {
        if !built || ctx.opts.force {
            crate::build::build(ctx, m, v, &job.kernel)?;
        }
        if job.install {
            let conf = ctx.read_conf(m, v, &job.kernel)?;
            crate::install::install(ctx, m, v, &conf, &job.kernel)?;
        }
        anyhow::Ok(())
    })();
    match res {
        Ok(()) => Outcome::Done,
        Err(e) => {
            let code = crate::error::exit_code(&e);
            if code == code::EXCLUDED {
                Outcome::Skipped(format!("{e:#}"))
            } else {
                Outcome::Failed { code, message: format!("{e:#}") }
            }
        }
    }
}

/// What a terminal shows while jobs run: one line, rewritten every second.
struct Ticker {
    running: Mutex<Vec<String>>,
    done: AtomicUsize,
    total: usize,
    start: Instant,
    tty: bool,
    stop: AtomicBool,
}

impl Ticker {
    fn line(&self) -> String {
        let running = self.running.lock().unwrap();
        format!(
            "[{}/{}] {:.0} s, building: {}",
            self.done.load(Ordering::SeqCst),
            self.total,
            self.start.elapsed().as_secs_f64(),
            running.join(", ")
        )
    }

    /// Prints a finished job's line, above the progress line on a terminal.
    fn report(&self, text: &str, to_stderr: bool) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
        if to_stderr {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }
}

/// A job's expected build work, to start the longest first, in units of
/// one C file: compiling a file is mostly parsing the kernel headers it
/// includes, so the count of `.c` files matters most, their size (a unit per
/// 64 KiB) a little, plus one unit for kbuild's own steps.
fn source_weight(dir: &Path) -> u64 {
    let sizes: Vec<u64> = walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "c"))
        .filter_map(|e| e.metadata().ok())
        .map(|md| md.len())
        .collect();
    1 + sizes.len() as u64 + sizes.iter().sum::<u64>() / 65536
}

/// Runs the jobs (at most `parallel_jobs` at once, all makes sharing one
/// jobserver, the biggest sources first), printing one line per finished job (plus a live progress line
/// on a terminal), then runs depmod once per touched kernel. Returns the
/// outcomes in job order.
pub fn run(ctx: &Ctx, jobs: &[Job]) -> Vec<Outcome> {
    let deps: Vec<Vec<usize>> = jobs.iter().map(|j| j.deps.clone()).collect();
    let mut sizes: HashMap<(&str, &str), u64> = HashMap::new();
    let weights: Vec<u64> = jobs
        .iter()
        .map(|j| {
            *sizes
                .entry((j.m.as_str(), j.v.as_str()))
                .or_insert_with(|| ctx.source_dir(&j.m, &j.v).map(|d| source_weight(&d)).unwrap_or(0))
        })
        .collect();
    let workers = if ctx.isolate() { ctx.settings.parallel_jobs.max(1) } else { 1 };
    let ticker = Ticker {
        running: Mutex::new(Vec::new()),
        done: AtomicUsize::new(0),
        total: jobs.len(),
        start: Instant::now(),
        tty: std::io::stderr().is_terminal() && jobs.len() > 1,
        stop: AtomicBool::new(false),
    };
    let results = std::thread::scope(|s| {
        if ticker.tty {
            s.spawn(|| {
                while !ticker.stop.load(Ordering::SeqCst) {
                    eprint!("\r\x1b[K{}", ticker.line());
                    std::thread::sleep(Duration::from_millis(500));
                }
                eprint!("\r\x1b[K");
            });
        }
        let r = scheduler::run(&deps, &weights, workers, |o: &Outcome| o.ok(), |i| {
            let job = &jobs[i];
            // A job holds a jobserver token while it runs, for the job its
            // make runs without one: jobs and make jobs together stay in budget.
            let token = if ctx.settings.parallel_jobs == 0 { None } else { ctx.jobserver().ok().and_then(|c| c.acquire().ok()) };
            let label = format!("{}/{} ({})", job.m, job.v, job.kernel.release);
            ticker.running.lock().unwrap().push(label.clone());
            let t = Instant::now();
            let o = run_one(ctx, job);
            drop(token);
            ticker.running.lock().unwrap().retain(|l| *l != label);
            let n = ticker.done.fetch_add(1, Ordering::SeqCst) + 1;
            let what = if job.install { "installed" } else { "built" };
            let p = progress(n, ticker.total, ticker.start);
            match &o {
                Outcome::Done => ticker.report(&format!("{}: {what} ({:.1} s){p}", job.label(), t.elapsed().as_secs_f64()), false),
                Outcome::Current => ticker.report(&format!("{}: already {what}{p}", job.label()), false),
                Outcome::Skipped(why) => ticker.report(&format!("{}: skipped: {why}{p}", job.label()), false),
                Outcome::Failed { message, .. } => ticker.report(&format!("\nError! {}:\n{message}\n", job.label()), true),
            }
            o
        });
        ticker.stop.store(true, Ordering::SeqCst);
        r
    });
    if let Err(e) = ctx.finish() {
        eprintln!("Error! {e:#}");
    }
    results
        .into_iter()
        .map(|d| match d {
            Done::Ran(o) => o,
            Done::DepFailed(j) => Outcome::Failed {
                code: code::BUILD_DEPENDS,
                message: format!("not built: its dependency {} failed", jobs.get(j).map(Job::label).unwrap_or_default()),
            },
        })
        .collect()
}

fn progress(n: usize, total: usize, start: Instant) -> String {
    if total > 1 {
        format!(" [{n}/{total}, {:.0} s]", start.elapsed().as_secs_f64())
    } else {
        String::new()
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
        std::fs::write(d.path().join("README"), "x".repeat(1_000_000)).unwrap();
        assert_eq!(source_weight(d.path()), 1 + 2 + 1);
        assert_eq!(source_weight(&d.path().join("gone")), 1);
    }

    #[test]
    fn progress_only_for_several_jobs() {
        assert_eq!(progress(1, 1, Instant::now()), "");
        assert!(progress(2, 5, Instant::now()).starts_with(" [2/5, "));
    }
}
