//! Runs dependent tasks on a pool of worker threads: a task starts once all
//! its dependencies succeeded; a task whose dependency failed is not run.
//! Generic and free of side effects of its own, so it is tested with plain
//! closures.

use std::sync::{Condvar, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Running,
    Ok,
    Failed,
}

/// What became of one task.
#[derive(Debug)]
pub enum Done<R> {
    Ran(R),
    /// Not run: this dependency (an index) failed.
    DepFailed(usize),
}

/// Runs `f` on every task (`deps[i]` lists the indices task i waits for) with
/// at most `workers` at once; `ok` tells whether a result counts as success.
pub fn run<R, F, O>(deps: &[Vec<usize>], workers: usize, ok: O, f: F) -> Vec<Done<R>>
where
    R: Send,
    F: Fn(usize) -> R + Sync,
    O: Fn(&R) -> bool + Sync,
{
    let n = deps.len();
    let state = Mutex::new((vec![State::Pending; n], (0..n).map(|_| None).collect::<Vec<Option<Done<R>>>>()));
    let cv = Condvar::new();
    std::thread::scope(|s| {
        for _ in 0..workers.max(1).min(n.max(1)) {
            s.spawn(|| loop {
                let mut g = state.lock().unwrap();
                let pick = loop {
                    let (st, out) = &mut *g;
                    // tasks whose dependency failed are finished without running
                    let mut changed = true;
                    while changed {
                        changed = false;
                        for i in 0..n {
                            if st[i] == State::Pending {
                                if let Some(&d) = deps[i].iter().find(|&&d| d < n && st[d] == State::Failed) {
                                    st[i] = State::Failed;
                                    out[i] = Some(Done::DepFailed(d));
                                    changed = true;
                                }
                            }
                        }
                    }
                    if let Some(i) = (0..n).find(|&i| st[i] == State::Pending && deps[i].iter().all(|&d| d >= n || st[d] == State::Ok)) {
                        st[i] = State::Running;
                        break Some(i);
                    }
                    if !st.contains(&State::Running) {
                        // nothing runs and nothing can start: the rest wait on a cycle
                        for i in 0..n {
                            if st[i] == State::Pending {
                                st[i] = State::Failed;
                                out[i] = Some(Done::DepFailed(deps[i].first().copied().unwrap_or(i)));
                            }
                        }
                        cv.notify_all();
                        break None;
                    }
                    g = cv.wait(g).unwrap();
                };
                drop(g);
                let Some(i) = pick else { return };
                let r = f(i);
                let good = ok(&r);
                let mut g = state.lock().unwrap();
                g.0[i] = if good { State::Ok } else { State::Failed };
                g.1[i] = Some(Done::Ran(r));
                cv.notify_all();
            });
        }
    });
    state.into_inner().unwrap().1.into_iter().map(|d| d.expect("every task finished")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn dependencies_run_first_and_failures_propagate() {
        let order = Mutex::new(Vec::new());
        // 0 <- 1 <- 2 ; 3 fails ; 4 depends on 3
        let deps = vec![vec![], vec![0], vec![1], vec![], vec![3]];
        let res = run(&deps, 3, |r: &bool| *r, |i| {
            std::thread::sleep(Duration::from_millis(10));
            order.lock().unwrap().push(i);
            i != 3
        });
        let order = order.into_inner().unwrap();
        let pos = |x| order.iter().position(|&y| y == x).unwrap();
        assert!(pos(0) < pos(1) && pos(1) < pos(2));
        assert!(!order.contains(&4));
        assert!(matches!(res[4], Done::DepFailed(3)));
        assert!(matches!(res[2], Done::Ran(true)));
    }

    #[test]
    fn runs_in_parallel_up_to_the_worker_count() {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let deps = vec![vec![]; 6];
        run(&deps, 2, |_: &()| true, |_| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(30));
            running.fetch_sub(1, Ordering::SeqCst);
        });
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn cycles_do_not_hang() {
        let deps = vec![vec![1], vec![0], vec![]];
        let res = run(&deps, 2, |_: &()| true, |_| ());
        assert!(matches!(res[0], Done::DepFailed(_)));
        assert!(matches!(res[1], Done::DepFailed(_)));
        assert!(matches!(res[2], Done::Ran(())));
    }
}
