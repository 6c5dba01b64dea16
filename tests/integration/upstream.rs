//! dkms's own integration suite (`run_test.sh` of dkms 3.0.10, the version
//! Debian 12 ships, and of dkms 3.4.3) run against the modsync binary by the
//! workplace's behavioural contract runner
//! (`shared/acceptance/check-upstream-suite.sh`, with the suites in
//! `shared/upstream-dkms/`, beside the checkout): every exit code, status
//! line and file check must match what the real dkms of each release gives.
//! Output text may differ (it is printed, not compared).

use crate::support::{require, require_root, run};
use std::path::PathBuf;
use std::process::Command;

/// The workplace's shared/ directory: $MODSYNC_SHARED, else beside the checkout.
fn shared() -> PathBuf {
    std::env::var_os("MODSYNC_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

fn suite(tag: &str) {
    let test = format!("upstream suite {tag}");
    require_root(&test);
    let runner = shared().join("acceptance/check-upstream-suite.sh");
    let material = shared().join(format!("upstream-dkms/dkms-tests-{tag}.tar.gz"));
    require(
        &test,
        runner.is_file() && material.is_file(),
        &format!("{} or {} is missing", runner.display(), material.display()),
    );
    // the harness gives the suite a fresh /tmp: its scripts, the suites and
    // the binary are copied outside /tmp first, so a checkout under /tmp works
    let base = std::path::Path::new(crate::support::CACHE).join("tmp");
    std::fs::create_dir_all(&base).unwrap();
    let stage = tempfile::Builder::new()
        .prefix(&format!("upstream-{tag}."))
        .tempdir_in(&base)
        .unwrap();
    for d in ["acceptance", "upstream-dkms"] {
        crate::support::run_ok(Command::new("cp").arg("-a").arg(shared().join(d)).arg(stage.path()));
    }
    let bin = stage.path().join("modsync");
    std::fs::copy(env!("CARGO_BIN_EXE_modsync"), &bin).unwrap();
    let o = run(Command::new("bash")
        .arg(stage.path().join("acceptance/check-upstream-suite.sh"))
        .arg(&bin)
        .arg(tag));
    println!("{}", o.text());
    let last = o.stdout.lines().last().unwrap_or("").to_string();
    assert!(
        o.code == 0 && last == "upstream-suite: all tags match",
        "dkms's {tag} suite found differences (the detail file named above lists them):\n{}",
        o.show()
    );
}

#[test]
fn dkms_3_0_10_suite_matches() {
    suite("v3.0.10");
}

#[test]
fn dkms_3_4_3_suite_matches() {
    suite("v3.4.3");
}
