//! The fuzz targets' invariant checks in plain `cargo test`: every seed of
//! `tests/fuzz/seeds/<target>/` is replayed, and every input a fuzz run found
//! is kept here as a test of its own. The checks are those of the fuzz
//! targets (`tests/fuzz/src/lib.rs`, included below), so a fix is verified by
//! exactly the code that found the bug. Run the fuzzers with
//! `tests/fuzz/run.sh`.

#[path = "fuzz/src/lib.rs"]
mod checks;

use std::path::PathBuf;

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/seeds").join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

fn replay(target: &str, check: fn(&[u8])) {
    for (path, data) in seeds(target) {
        eprintln!("replaying {}", path.display());
        check(&data);
    }
}

#[test]
fn seeds_dkms_conf_dump() {
    for (path, data) in seeds("dkms_conf_dump") {
        let conf = checks::dkms_conf_dump(&data);
        // The seeds are dumps of real (and a few hand-written) dkms.conf files,
        // made by modsync's own bash evaluation; all of them are valid.
        let conf = conf.unwrap_or_else(|| panic!("{} was not accepted", path.display()));
        assert!(!conf.modules.is_empty(), "{}: no modules", path.display());
    }
}

#[test]
fn seeds_settings_toml() {
    replay("settings_toml", checks::settings_toml);
}

#[test]
fn seeds_hook_args() {
    replay("hook_args", checks::hook_args);
}

#[test]
fn seeds_state_tree() {
    replay("state_tree", checks::state_tree);
}

// ------------------------------------------------ findings of fuzz runs
//
// Each test names the fuzz target and the function at fault; the input is the
// fuzzer's (minimised by hand where that made it readable).

/// Runs `f` on another thread and fails if it has not returned within
/// `secs` seconds (for inputs that made a function loop).
fn within(secs: u64, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
        Ok(()) => {}
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("still running after {secs}s"),
        // The closure panicked: its message is on stderr.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("panicked"),
    }
}

/// hook_args, `hook::dnf::from_json`: the fallback release of a kernel
/// package without /lib/modules paths is `VERSION-RELEASE.ARCH` unchecked, so
/// it can hold '/', ".." or spaces and becomes a path under /lib/modules.
#[test]
fn dnf_fallback_release_is_one_path_component() {
    checks::hook_args(br#"{"in":[{"name":"kernel-core","version":"6.9","release":"1/../../../etc","arch":"x86_64"}]}"#);
    checks::hook_args(br#"{"out":[{"name":"kernel-devel","version":"6.9","release":"1.fc a","arch":"x86_64","files":["/usr/share/doc/x"]}]}"#);
    // The fuzzer's own input (fuzz run of hook_args, 5 s in).
    checks::hook_args(b"{\"in\":[{\"name\":\"kernel-core\",\"version\":\"6.9\",\"release\":\"1.fc a\",\"arch\":\"x86_64\",\"files\":[\"/lib/modules~/6\x90\x90.9-18el\",\"ve40.\x94\x86_64/vmlinuz\"]}]}");
}

/// dkms_conf_dump, `config::directives::from_raw`: a huge index of a
/// BUILD_EXCLUSIVE_* array (bash allows up to 2^63-1) makes it loop over every
/// index below it (the fuzzer's timeout input, index 16397105843297379212).
#[test]
fn sparse_build_exclusive_index_does_not_loop() {
    within(20, || {
        checks::dkms_conf_dump(b"PACKAGE_NAME\x000\x00foo\x00PACKAGE_VERSION\x000\x001.0\x00DEST_MODULE_LOCATION\x000\x00/updates\x00BUILD_EXCLUSIVE_CONFIG\x0016397105843297379212\x00CONFIG_I2C\x00");
    });
    within(20, || {
        checks::dkms_conf_dump(b"PACKAGE_NAME\x000\x00foo\x00PACKAGE_VERSION\x000\x001.0\x00DEST_MODULE_LOCATION\x000\x00/updates\x00BUILD_EXCLUSIVE_ARCH\x009223372036854775807\x00x86_64\x00");
    });
}

/// dkms_conf_dump, `config::directives::from_raw`: index usize::MAX of a
/// module record overflows `max + 1` (a panic with overflow checks; without
/// them the module count wraps to 0 and every module is silently dropped).
#[test]
fn max_record_index_does_not_overflow() {
    within(20, || {
        checks::dkms_conf_dump(b"PACKAGE_NAME\x000\x00foo\x00PACKAGE_VERSION\x000\x001.0\x00DEST_MODULE_LOCATION\x000\x00/updates\x00BUILT_MODULE_NAME\x0018446744073709551615\x00foo\x00");
    });
}

/// dkms_conf_dump, `config::directives::from_raw`: BUILT_MODULE_LOCATION="/"
/// (or "//") passes the containment check once its trailing '/' are trimmed,
/// but is kept as "/": the engine then strips and reads `/NAME.ko`, outside
/// the build directory (`wd.real.join("/")` is "/").
#[test]
fn built_module_location_root_is_refused() {
    for loc in ["/", "//"] {
        let dump = format!("PACKAGE_NAME\x000\x00foo\x00PACKAGE_VERSION\x000\x001.0\x00DEST_MODULE_LOCATION\x000\x00/updates\x00BUILT_MODULE_LOCATION\x000\x00{loc}\x00");
        checks::dkms_conf_dump(dump.as_bytes());
    }
}

/// settings_toml, `config::settings::parse_simple_shell_assignments`: lines
/// bash reads differently are taken as plain assignments. bash expands an
/// unquoted `~` (`dkms_tree=~/dkms` is /root/dkms), and `k= v` runs the
/// command v (k stays unset); both must be left to bash (None).
#[test]
fn framework_conf_lines_bash_reads_differently() {
    checks::settings_toml(b"dkms_tree=~/dkms\n");
    checks::settings_toml(b"source_tree=/srv/src:~/src\n");
    checks::settings_toml(b"install_tree= /srv/modules\n");
    checks::settings_toml(b"parallel_jobs=\t4\n");
}
