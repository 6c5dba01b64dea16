//! Runs dependent tasks on a pool of worker threads: a task starts once all
//! its dependencies succeeded; a task whose dependency failed is not run;
//! tasks of one exclusion group never run at the same time. Of the tasks
//! ready to start, the one heading the longest chain of estimated work goes
//! first, so the longest builds do not end up alone at the end. Generic and
//! free of side effects of its own, so it is tested with plain closures.

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

/// For every task, its estimated work plus the longest chain of work that
/// waits for it (cycles are cut: a task counts once per chain).
pub fn critical_paths(deps: &[Vec<usize>], weights: &[u64]) -> Vec<u64> {
    let n = deps.len();
    let mut dependents = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds.iter().filter(|&&d| d < n) {
            dependents[d].push(i);
        }
    }
    fn chain(
        i: usize,
        dependents: &[Vec<usize>],
        weights: &[u64],
        memo: &mut [Option<u64>],
        on_path: &mut [bool],
    ) -> u64 {
        if let Some(v) = memo[i] {
            return v;
        }
        if on_path[i] {
            return 0;
        }
        on_path[i] = true;
        let longest = dependents[i]
            .iter()
            .map(|&j| chain(j, dependents, weights, memo, on_path))
            .max()
            .unwrap_or(0);
        on_path[i] = false;
        let v = weights.get(i).copied().unwrap_or(0) + longest;
        memo[i] = Some(v);
        v
    }
    let mut memo = vec![None; n];
    let mut on_path = vec![false; n];
    (0..n)
        .map(|i| chain(i, &dependents, weights, &mut memo, &mut on_path))
        .collect()
}

/// The shape of a run: `deps[i]` lists the tasks task i waits for,
/// `weights[i]` its estimated work, `groups[i]` its exclusion group.
pub struct Graph<'a> {
    pub deps: &'a [Vec<usize>],
    pub weights: &'a [u64],
    pub groups: &'a [Option<usize>],
}

/// Runs `f(i)` on every task with at most `workers` at once, the ready task
/// with the longest chain of weights first; `ok` tells whether a result
/// counts as success.
pub fn run<R, F, O>(g: &Graph, workers: usize, ok: O, f: F) -> Vec<Done<R>>
where
    R: Send,
    F: Fn(usize) -> R + Sync,
    O: Fn(&R) -> bool + Sync,
{
    let (deps, weights) = (g.deps, g.weights);
    let group = |i: usize| g.groups.get(i).copied().flatten();
    let n = deps.len();
    let priority = critical_paths(deps, weights);
    let state = Mutex::new((
        vec![State::Pending; n],
        (0..n).map(|_| None).collect::<Vec<Option<Done<R>>>>(),
    ));
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
                    let busy: Vec<usize> = (0..n).filter(|&i| st[i] == State::Running).filter_map(group).collect();
                    let ready = (0..n).filter(|&i| {
                        st[i] == State::Pending
                            && deps[i].iter().all(|&d| d >= n || st[d] == State::Ok)
                            && group(i).is_none_or(|g| !busy.contains(&g))
                    });
                    // the first of equals wins, so equal weights keep the given order
                    if let Some(i) = ready.min_by_key(|&i| std::cmp::Reverse(priority[i])) {
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
    state
        .into_inner()
        .unwrap()
        .1
        .into_iter()
        .map(|d| d.expect("every task finished"))
        .collect()
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
        let res = run(
            &Graph {
                deps: &deps,
                weights: &[],
                groups: &[],
            },
            3,
            |r: &bool| *r,
            |i| {
                std::thread::sleep(Duration::from_millis(10));
                order.lock().unwrap().push(i);
                i != 3
            },
        );
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
        run(
            &Graph {
                deps: &deps,
                weights: &[],
                groups: &[],
            },
            2,
            |_: &()| true,
            |_| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(30));
                running.fetch_sub(1, Ordering::SeqCst);
            },
        );
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_longest_chain_starts_first() {
        // 1 is heavy; 3 is light but 0 waits for it, and 0 is heavier still
        let deps = vec![vec![3], vec![], vec![], vec![]];
        let weights = [50, 40, 5, 1];
        assert_eq!(critical_paths(&deps, &weights), vec![50, 40, 5, 51]);
        let order = Mutex::new(Vec::new());
        run(
            &Graph {
                deps: &deps,
                weights: &weights,
                groups: &[],
            },
            1,
            |_: &()| true,
            |i| order.lock().unwrap().push(i),
        );
        assert_eq!(order.into_inner().unwrap(), vec![3, 0, 1, 2]);
        assert_eq!(
            critical_paths(&[vec![1], vec![0]], &[2, 3]),
            vec![5, 3],
            "a cycle is cut, not followed forever"
        );
    }

    #[test]
    fn cycles_do_not_hang() {
        let deps = vec![vec![1], vec![0], vec![]];
        let res = run(
            &Graph {
                deps: &deps,
                weights: &[],
                groups: &[],
            },
            2,
            |_: &()| true,
            |_| (),
        );
        assert!(matches!(res[0], Done::DepFailed(_)));
        assert!(matches!(res[1], Done::DepFailed(_)));
        assert!(matches!(res[2], Done::Ran(())));
    }

    #[test]
    fn tasks_of_one_group_never_overlap() {
        let running = [AtomicUsize::new(0), AtomicUsize::new(0)];
        let overlap = AtomicUsize::new(0);
        let deps = vec![vec![]; 6];
        let groups = [Some(0), Some(0), Some(0), Some(1), Some(1), None];
        run(
            &Graph {
                deps: &deps,
                weights: &[],
                groups: &groups,
            },
            4,
            |_: &()| true,
            |i| {
                if let Some(g) = groups[i] {
                    if running[g].fetch_add(1, Ordering::SeqCst) > 0 {
                        overlap.fetch_add(1, Ordering::SeqCst);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    running[g].fetch_sub(1, Ordering::SeqCst);
                }
            },
        );
        assert_eq!(overlap.load(Ordering::SeqCst), 0);
    }
}
