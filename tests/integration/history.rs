//! The history of hook runs and `modsync log`, in an isolated world: a
//! kernel-install hook run records one line per (module, kernel) result
//! (installed, failed with its exit code, reason and make.log, removed, and a
//! kernel whose headers are missing); `modsync log` filters them; the real
//! logrotate with the packaged configuration rotates and compresses the file
//! and `modsync log` still reads every entry, oldest first; the
//! `history_log` setting moves the file or turns it off.

use crate::support::{require, require_root, run, test_kernels, World};
use std::fs;
use std::process::Command;

const BROKEN_C: &str = "#include <linux/module.h>\nMODULE_LICENSE(\"GPL\");\nstatic int x = no_such_symbol;\n";

fn log_json(w: &World, args: &[&str]) -> Vec<serde_json::Value> {
    let mut a = vec!["log", "--json"];
    a.extend_from_slice(args);
    let out = w.ok(&a).stdout;
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap_or_else(|e| panic!("log --json is not JSON ({e}):\n{out}"))
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("log --json is not an array:\n{out}"))
}

/// (module, kernel, result) of each entry.
fn triples(entries: &[serde_json::Value]) -> Vec<(String, String, String)> {
    entries
        .iter()
        .map(|e| {
            (
                e["module"].as_str().unwrap_or("-").to_string(),
                e["kernel"].as_str().unwrap_or("").to_string(),
                e["result"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn hook_runs_are_recorded_and_log_shows_them() {
    require_root("history");
    let ks = test_kernels();
    let k = &ks[0];
    let w = World::new(&ks[..1]);
    w.add_fixture("hello-1.0");
    w.add_one_file_module("broken", "", BROKEN_C);
    // a kernel that is installed but has no headers
    let bare = "6.1.0-999-amd64";
    fs::create_dir_all(w.modules_dir(bare).join("kernel")).unwrap();

    let o = w.hook(&["kernel-install", "add", k]);
    w.hook(&["kernel-install", "add", bare]);
    let entries = log_json(&w, &[]);
    let t = |m: &str, k: &str, r: &str| (m.to_string(), k.to_string(), r.to_string());
    assert_eq!(
        triples(&entries),
        vec![
            t("broken/1.0", k, "failed"),
            t("hello/1.0", k, "installed"),
            t("-", bare, "not-built")
        ],
        "{}",
        o.show()
    );
    let failed = &entries[0];
    assert_eq!(failed["code"], 10);
    assert_eq!(failed["trigger"], "kernel-install add");
    let log = failed["make_log"].as_str().expect("a failed build names its make.log");
    assert!(fs::read_to_string(log).unwrap().contains("no_such_symbol"), "{log}");
    let time = failed["time"].as_str().unwrap();
    assert!(
        time.len() == 20 && time.ends_with('Z') && time.starts_with("20"),
        "{time}"
    );
    assert!(
        entries[2]["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("linux-headers-{bare}")),
        "the reason names the headers package: {}",
        entries[2]
    );

    // filters
    assert_eq!(triples(&log_json(&w, &["--failed"])).len(), 2);
    assert_eq!(
        triples(&log_json(&w, &["hello", "-k", k])),
        vec![t("hello/1.0", k, "installed")]
    );
    assert_eq!(
        triples(&log_json(&w, &["--lines", "1"])),
        vec![t("-", bare, "not-built")]
    );
    let human = w.ok(&["log", "broken"]).stdout;
    assert!(
        human.contains("broken/1.0") && human.contains("failed (10)") && human.contains("make.log: "),
        "{human}"
    );

    // removing the kernel records what was taken out
    w.hook(&["kernel-install", "remove", k]);
    let after = triples(&log_json(&w, &["-k", k]));
    assert_eq!(after.last(), Some(&t("hello/1.0", k, "removed")), "{after:?}");
}

#[test]
fn logrotate_rotates_the_history_and_log_reads_every_rotation() {
    require_root("history rotation");
    let logrotate = run(Command::new("sh").args(["-c", "command -v logrotate"]));
    require("history rotation", logrotate.code == 0, "logrotate is not installed");
    let ks = test_kernels();
    let k = &ks[0];
    let w = World::new(&ks[..1]);
    w.add_fixture("hello-1.0");
    let history = w.p("var/log/modsync/history.log");
    // the packaged configuration, pointed at the world's file
    let packaged = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/logrotate/modsync")).unwrap();
    assert!(packaged.contains("/var/log/modsync/history.log {"), "{packaged}");
    let conf = w.p("logrotate.conf");
    fs::write(
        &conf,
        packaged.replace("/var/log/modsync/history.log", &history.display().to_string()),
    )
    .unwrap();
    let rotate = || {
        let o = run(Command::new("logrotate")
            .arg("-f")
            .arg("-s")
            .arg(w.p("logrotate.state"))
            .arg(&conf));
        assert_eq!(o.code, 0, "{}", o.show());
    };
    w.hook(&["kernel-install", "add", k]);
    rotate();
    w.hook(&["kernel-install", "remove", k]);
    rotate();
    w.hook(&["kernel-install", "add", k]);
    assert!(
        w.p("var/log/modsync/history.log.2.gz").is_file(),
        "logrotate compressed the older file"
    );
    assert!(w.p("var/log/modsync/history.log.1").is_file());
    let t = |r: &str| ("hello/1.0".to_string(), k.to_string(), r.to_string());
    assert_eq!(
        triples(&log_json(&w, &[])),
        vec![t("installed"), t("removed"), t("installed")]
    );
}

#[test]
fn history_log_moves_the_file_or_turns_it_off() {
    require_root("history_log");
    let ks = test_kernels();
    let k = &ks[0];
    let w = World::new(&ks[..1]);
    w.add_fixture("hello-1.0");
    let conf = w.p("etc/modsync/config.toml");
    let base = fs::read_to_string(&conf).unwrap();
    let moved = w.p("elsewhere/h.log");
    fs::write(&conf, format!("{base}history_log = \"{}\"\n", moved.display())).unwrap();
    w.hook(&["kernel-install", "add", k]);
    assert!(fs::read_to_string(&moved).unwrap().contains("\"hello/1.0\""));
    assert!(!w.p("var/log/modsync").exists());
    fs::write(&conf, format!("{base}history_log = \"\"\n")).unwrap();
    w.hook(&["kernel-install", "remove", k]);
    assert_eq!(
        fs::read_to_string(&moved).unwrap().lines().count(),
        1,
        "nothing appended"
    );
    assert!(!w.p("var/log/modsync").exists());
    assert!(w.ok(&["log"]).stdout.contains("No history is kept"));
}
