//! Invariant checks of modsync's pure parsers, one entry point per fuzz target.
//!
//! | entry point        | what it feeds the input to |
//! |--------------------|----------------------------|
//! | [`dkms_conf_dump`] | `config::shell::parse_dump`, `config::directives::evaluate`, `build::make::make_command` |
//! | [`settings_toml`]  | `config::settings::parse_file_settings`, `config::shell::parse_plain_assignments` |
//! | [`hook_args`]      | `hook::apt::{maint_action, decide}`, `hook::targets::touched_by_paths`, `hook::dnf::from_json` |
//! | [`state_tree`]     | `state::{parse_active_target, source_state}`, `state::record`, a real dkms tree read with `state::Tree` |
//!
//! Each `fuzz_targets/*.rs` is one line calling its entry point. Every entry
//! point takes the raw fuzz input and panics when an invariant is broken;
//! an input a parser rejects is fine (an error is not a bug). A panic inside
//! modsync itself (an overflow, an index out of range) is a finding too.
//!
//! Only `modsync`, `serde_json`, `tempfile` and `toml` (dependencies of the
//! main crate) are used, and no `crate::` paths, so that a test of the main
//! crate can include this file with `#[path]` and replay seeds and findings
//! in plain `cargo test`.

#![allow(dead_code)]

use modsync::build::make::make_command;
use modsync::config::command::Command;
use modsync::config::directives::{evaluate, Context, Evaluated, ModuleConf, MAX_RECORDS};
use modsync::config::dkms_conf::WHITELIST;
use modsync::config::settings::{parse_file_settings, Compat, Jobs};
use modsync::config::shell::{parse_dump, parse_plain_assignments, Raw};
use modsync::hook::apt::{decide, maint_action, Action};
use modsync::hook::dnf::from_json;
use modsync::hook::targets::{touched_by_paths, Touched};
use modsync::kernel::kconfig::KConfig;
use modsync::kernel::version::{compare, normalize};
use modsync::state::record::{self, BuildRecord};
use modsync::state::{looks_like_kernel, parse_active_target, source_state, SourceFacts, SourceState, Tree};
use modsync::sys::names::{valid, Kind};
use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------- helpers

/// Path components of `p` (empty ones dropped).
fn components(p: &str) -> impl Iterator<Item = &str> {
    p.split('/').filter(|c| !c.is_empty())
}

fn has_dotdot(p: &str) -> bool {
    components(p).any(|c| c == "..")
}

/// A name that becomes one path component (a module name or version, a
/// kernel release): checked here independently of `sys::names`, which the
/// parsers use, so a too lenient `names` is caught as well.
fn assert_component(what: &str, w: &str) {
    assert!(!w.is_empty(), "{what}: empty");
    assert!(!w.contains('/'), "{what}: {w:?} contains '/'");
    assert!(w != "." && w != "..", "{what}: {w:?}");
    assert!(
        !w.chars().any(|c| c.is_whitespace() || c.is_control()),
        "{what}: {w:?} has whitespace or control characters"
    );
}

/// The directory the fuzz targets make their temporary trees in: tmpfs when
/// there is one (a tree is made and removed for every input).
fn scratch() -> Option<tempfile::TempDir> {
    let base = std::env::var_os("MODSYNC_FUZZ_TMPDIR").map(PathBuf::from).unwrap_or_else(|| {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        }
    });
    tempfile::Builder::new().prefix("modsync-fuzz-").tempdir_in(&base).ok()
}

// ------------------------------------------------------ 1. dkms_conf_dump

/// Kernels the accepted dumps are evaluated for.
pub const RELEASES: &[&str] = &["6.1.0-56-amd64", "5.10.0-30-amd64", "6.8.9-300.fc40.x86_64", "4.9", "3.5-rc2"];

const KCONFIG: &str = "CONFIG_ACPI=y\nCONFIG_USB=m\nCONFIG_I2C=y\nCONFIG_LOCALVERSION=\"-amd64\"\n# CONFIG_DRM is not set\n";

/// The arrays that make module records (the longest one's element count sets the count, as in dkms).
const RECORD: &[&str] = &["BUILT_MODULE_NAME", "BUILT_MODULE_LOCATION", "DEST_MODULE_NAME", "DEST_MODULE_LOCATION"];

/// How each kernel of [`RELEASES`] is evaluated: (arch, with a kernel
/// config, the distribution's install location, clang, per-module
/// BUILD_EXCLUSIVE as dkms 3.3+).
const SETUPS: &[(&str, bool, Option<&str>, bool, bool)] = &[
    ("x86_64", false, None, false, true),
    ("aarch64", true, Some("/updates/dkms"), true, false),
];

/// The NUL-separated `name\0index\0value\0` dump of an evaluated dkms.conf:
/// `parse_dump`, then `directives::evaluate` for every kernel of
/// [`RELEASES`] in every setup of [`SETUPS`], then the make command of each.
/// Returns the configuration for the first kernel when the file is usable.
pub fn dkms_conf_dump(data: &[u8]) -> Option<ModuleConf> {
    let raw = parse_dump(data, WHITELIST).ok()?;
    check_raw(&raw);
    let kconfig = KConfig::parse(KCONFIG);
    // the first evaluation for each way of counting records (dkms 3.4, 3.0)
    let mut first: BTreeMap<bool, Evaluated> = BTreeMap::new();
    for release in RELEASES {
        let source_dir = format!("/lib/modules/{release}/build");
        for &(arch, with_config, dest_override, clang, per_module_exclusive) in SETUPS {
            let c = Context {
                kernelver: release,
                arch,
                kernel_source_dir: &source_dir,
                dkms_tree: "/var/lib/dkms",
                module: "foo",
                module_version: "1.0",
                dest_override,
                kconfig: with_config.then_some(&kconfig),
                clang,
                per_module_exclusive,
                // dkms 3.4 and 3.0 count records differently: both setups
                records_by_index: per_module_exclusive,
            };
            let e = evaluate(&raw, &c);
            check_evaluated(&raw, &c, &e);
            match first.get(&c.records_by_index) {
                // The file-wide checks do not depend on the kernel.
                Some(f) => assert_eq!(e.errors, f.errors, "the errors differ between kernels ({release}, {arch})"),
                None => {
                    first.insert(c.records_by_index, e);
                }
            }
        }
    }
    let first_setup = SETUPS.first().map(|s| s.4);
    first_setup
        .and_then(|b| first.remove(&b))
        .filter(Evaluated::usable)
        .map(|e| e.conf)
}

fn check_raw(raw: &Raw) {
    for (name, arr) in &raw.vars {
        // Only whitelisted variables come back from a dump.
        assert!(WHITELIST.contains(&name.as_str()), "parse_dump accepted variable {name:?}");
        for v in arr.values() {
            // A value never holds the separator.
            assert!(!v.contains('\0'), "{name}: value with NUL");
        }
    }
    // Dumping the arrays again gives the same arrays.
    let mut dump = Vec::new();
    for (name, arr) in &raw.vars {
        for (i, v) in arr {
            dump.extend_from_slice(format!("{name}\0{i}\0{v}\0").as_bytes());
        }
    }
    let again = parse_dump(&dump, WHITELIST).expect("a re-dumped Raw does not parse");
    assert_eq!(again.vars, raw.vars, "parse_dump does not round-trip");
}

fn check_evaluated(raw: &Raw, c: &Context, e: &Evaluated) {
    let conf = &e.conf;
    let k = c.kernelver;
    // The strict checks come on top of the others.
    assert!(!e.usable_strictly() || e.usable(), "usable_strictly but not usable");
    // As many module records as dkms reads (3.4: to the highest index; 3.0:
    // the longest array's element count), never more than MAX_RECORDS, in
    // index order.
    let count = if c.records_by_index {
        RECORD
            .iter()
            .flat_map(|n| raw.indices(n))
            .filter(|i| *i < MAX_RECORDS)
            .max()
            .map_or(0, |m| m + 1)
    } else {
        RECORD.iter().map(|n| raw.indices(n).len()).max().unwrap_or(0).min(MAX_RECORDS)
    };
    assert_eq!(conf.modules.len(), count, "module count for {k}");
    for (i, m) in conf.modules.iter().enumerate() {
        assert_eq!(m.index, i, "module records out of order");
    }
    check_exclusive(raw, c, conf);
    check_make(raw, c, conf);
    // Patches are PATCH values (none empty), at most one per set element.
    let patch_values: BTreeSet<&str> = raw.array("PATCH").into_iter().flat_map(|a| a.values()).map(String::as_str).collect();
    assert!(conf.patches.iter().all(|p| !p.is_empty() && patch_values.contains(p.as_str())), "patches {:?}", conf.patches);
    assert!(conf.patches.len() <= raw.indices("PATCH").len(), "more patches than PATCH[] elements");
    // Scripts are the directives' values, unset when empty.
    for (name, got) in [
        ("PRE_BUILD", &conf.pre_build),
        ("POST_BUILD", &conf.post_build),
        ("POST_ADD", &conf.post_add),
        ("PRE_INSTALL", &conf.pre_install),
        ("POST_INSTALL", &conf.post_install),
        ("POST_REMOVE", &conf.post_remove),
    ] {
        assert_eq!(got.as_ref().map(shell_line), raw.scalar(name), "{name}");
    }
    if e.usable() {
        check_usable(raw, c, e);
    }
}

/// What a usable file guarantees: every name that becomes a path is one
/// component, and every location stays inside its directory.
fn check_usable(raw: &Raw, c: &Context, e: &Evaluated) {
    let conf = &e.conf;
    // PACKAGE_NAME and PACKAGE_VERSION are valid names, taken verbatim.
    assert!(valid(Kind::Module, &conf.package_name), "PACKAGE_NAME {:?} accepted", conf.package_name);
    assert!(valid(Kind::Version, &conf.package_version), "PACKAGE_VERSION {:?} accepted", conf.package_version);
    assert_component("PACKAGE_NAME", &conf.package_name);
    assert_component("PACKAGE_VERSION", &conf.package_version);
    assert_eq!(raw.scalar("PACKAGE_NAME"), Some(conf.package_name.as_str()));
    assert_eq!(raw.scalar("PACKAGE_VERSION"), Some(conf.package_version.as_str()));
    for (i, m) in conf.modules.iter().enumerate() {
        // Module names are plain file names without the .o/.ko suffix.
        for (what, n) in [("built_name", &m.built_name), ("dest_name", &m.dest_name)] {
            assert!(!n.contains('/'), "module #{i} {what} {n:?} contains '/'");
            assert!(valid(Kind::Module, n), "module #{i} {what} {n:?} is not a valid name");
            assert_component(&format!("module #{i} {what}"), n);
            assert!(!n.ends_with(".ko") && !n.ends_with(".o"), "module #{i} {what} {n:?} ends in .o/.ko");
        }
        // built_location is joined to the build directory: it must stay inside.
        let bl = &m.built_location;
        assert!(!bl.starts_with('/'), "module #{i} built_location {bl:?} is absolute");
        assert!(!has_dotdot(bl), "module #{i} built_location {bl:?} has '..'");
        assert!(bl.is_empty() || bl.ends_with('/'), "module #{i} built_location {bl:?} does not end in '/'");
        // dest_location (and the declared one) are joined to /lib/modules/K.
        for (what, loc) in [("dest_location", &m.dest_location), ("declared_location", &m.declared_location)] {
            assert!(
                ["/kernel", "/updates", "/extra"].iter().any(|p| loc.starts_with(p)),
                "module #{i} {what} {loc:?} is outside /kernel, /updates, /extra"
            );
            assert!(!has_dotdot(loc), "module #{i} {what} {loc:?} has '..'");
        }
        // The distribution's location replaces the declared one.
        assert_eq!(m.dest_location, c.dest_override.unwrap_or(&m.declared_location), "module #{i} dest_location");
    }
    if e.usable_strictly() {
        // Strictly usable: no module is built or installed twice.
        let mut dest = BTreeSet::new();
        let mut built = BTreeSet::new();
        for m in &conf.modules {
            assert!(dest.insert(&m.dest_name), "DEST_MODULE_NAME {:?} used twice", m.dest_name);
            assert!(built.insert(format!("{}{}", m.built_location, m.built_name)), "BUILT_MODULE_NAME {:?} used twice", m.built_name);
        }
    }
    // BUILD_DEPENDS are module names.
    for d in &conf.build_depends {
        assert!(valid(Kind::Module, d), "BUILD_DEPENDS {d:?} accepted");
        assert_component("BUILD_DEPENDS", d);
    }
    // AUTOINSTALL is yes/no (any case), nothing else.
    assert_eq!(conf.autoinstall, raw.scalar("AUTOINSTALL").is_some_and(|v| v.eq_ignore_ascii_case("yes")));
}

/// BUILD_EXCLUSIVE, now decided inside `evaluate` (ModuleSpec::buildable,
/// ModuleConf.build_exclude).
fn check_exclusive(raw: &Raw, c: &Context, conf: &ModuleConf) {
    let k = c.kernelver;
    let buildable = conf.buildable().count();
    // Without BUILD_EXCLUSIVE every module is built.
    if !conf.has_exclusive {
        assert_eq!(buildable, conf.modules.len(), "no BUILD_EXCLUSIVE but a module is excluded for {k}");
    }
    // build_exclude (dkms's exit 77) exactly when there are modules and none may be built.
    assert_eq!(
        conf.build_exclude,
        !conf.modules.is_empty() && buildable == 0,
        "build_exclude for {k} with {buildable} of {} modules buildable",
        conf.modules.len()
    );
    // dkms 3.0 reads index 0 only: every module or none.
    if !c.per_module_exclusive {
        assert!(buildable == 0 || buildable == conf.modules.len(), "per-module BUILD_EXCLUSIVE applied in 3.0 mode for {k}");
    }
    // A module built for K is within the package-wide kernel bounds.
    if buildable > 0 {
        if let Some(min) = raw.scalar("BUILD_EXCLUSIVE_KERNEL_MIN") {
            assert_ne!(compare(k, min), Ordering::Less, "{k} is below BUILD_EXCLUSIVE_KERNEL_MIN {min:?} but built");
        }
        if let Some(max) = raw.scalar("BUILD_EXCLUSIVE_KERNEL_MAX") {
            assert_ne!(compare(k, max), Ordering::Greater, "{k} is above BUILD_EXCLUSIVE_KERNEL_MAX {max:?} but built");
        }
    }
    // dkms's version order is a total order on the bounds seen.
    for name in ["BUILD_EXCLUSIVE_KERNEL_MIN", "BUILD_EXCLUSIVE_KERNEL_MAX", "OBSOLETE_BY"] {
        for bound in raw.array(name).into_iter().flat_map(|a| a.values()) {
            check_version_order(k, bound);
        }
    }
}

fn check_version_order(a: &str, b: &str) {
    // Antisymmetric and reflexive.
    assert_eq!(compare(a, b), compare(b, a).reverse(), "version::compare({a:?}, {b:?}) is not antisymmetric");
    assert_eq!(compare(b, b), Ordering::Equal, "version::compare({b:?}, {b:?})");
    // The normalized form is a fixed point (it is what is compared).
    let n = normalize(b);
    assert_eq!(normalize(&n), n, "version::normalize({b:?}) = {n:?} is not normalized");
}

/// A dkms.conf command is a shell line (modsync.toml's argument lists never
/// come from `evaluate`).
fn shell_line(c: &Command) -> &str {
    match c {
        Command::Shell(line) => line,
        Command::Argv(words) => panic!("a dkms.conf gave an argument list {words:?}"),
    }
}

/// The build command: `evaluate` picks MAKE[i] (or kbuild's default), then
/// `build::make::make_command` rewrites a leading `make` as dkms does
/// (`${make_command/#make/make -jN KERNELRELEASE=K}`).
fn check_make(raw: &Raw, c: &Context, conf: &ModuleConf) {
    let k = c.kernelver;
    let default = format!("make -C {} M={}/{}/{}/build", c.kernel_source_dir, c.dkms_tree, c.module, c.module_version);
    // clang kernels get LLVM=1 appended.
    let line = shell_line(&conf.make_command);
    let chosen = if c.clang {
        line.strip_suffix(" LLVM=1")
            .unwrap_or_else(|| panic!("clang kernel but no LLVM=1 in {line:?}"))
    } else {
        line
    };
    // The command is one of MAKE[] or the default.
    let make = raw.array("MAKE");
    let is_make = make.is_some_and(|a| a.values().any(|m| m == chosen));
    assert!(is_make || chosen == default, "make command for {k} {chosen:?} is none of MAKE[] {make:?} nor the default");
    // Without MAKE_MATCH, MAKE[0] (or the default) is the command.
    if raw.array("MAKE_MATCH").is_none_or(|a| a.values().all(String::is_empty)) {
        assert_eq!(chosen, raw.scalar("MAKE").unwrap_or(&default), "make command for {k} without MAKE_MATCH");
    }
    for jobs in [Jobs::Explicit(0), Jobs::Explicit(3), Jobs::Budget(4)] {
        let out = make_command(&conf.make_command, k, jobs);
        let expected = match line.strip_prefix("make") {
            Some(rest) => {
                let j = match jobs {
                    Jobs::Explicit(0) => " -j".to_string(),
                    Jobs::Explicit(n) => format!(" -j{n}"),
                    // The jobserver hands out the CPUs: no -j.
                    Jobs::Budget(_) => String::new(),
                };
                format!("make{j} KERNELRELEASE={k}{rest}")
            }
            None => line.to_string(),
        };
        assert_eq!(out, Command::Shell(expected), "make_command({:?}, {k:?}, {jobs:?})", conf.make_command);
    }
}

// ------------------------------------------------------- 2. settings_toml

/// config.toml (serde, unknown keys refused) and framework.conf's reader of
/// plain `key=value` lines (`parse_plain_assignments`: Some only when bash
/// is not needed).
pub fn settings_toml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(s) = parse_file_settings(&text) {
        // Whatever our strict schema accepts is TOML.
        assert!(text.parse::<toml::Table>().is_ok(), "parse_file_settings accepted non-TOML: {s:?}");
    }
    let all = parse_plain_assignments(&text);
    if let Some(map) = &all {
        for (k, v) in map {
            // Keys are shell variable names.
            assert!(
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !k.starts_with(|c: char| c.is_ascii_digit()),
                "key {k:?}"
            );
            assert!(!v.contains('\n'), "value of {k} spans lines: {v:?}");
        }
    }
    // Line by line: the text is plain iff every line is, and later lines win.
    let mut merged = BTreeMap::new();
    let mut plain = true;
    for line in text.lines() {
        match parse_plain_assignments(line) {
            Some(m) if !m.is_empty() => {
                // What bash does differently must be left to bash (None):
                // `k= v` runs the command v with k set in its environment only,
                // and an unquoted `~` at the start or after `:` is expanded
                // (`~/x`, `~user/x`: whether a name expands depends on the
                // user database, so every such tilde must go to bash).
                if let Some((k, raw)) = line.trim().split_once('=') {
                    assert!(!raw.starts_with(char::is_whitespace), "{line:?} read as {k}={:?}; bash runs it as a command", m.get(k));
                    let quoted = raw.starts_with('"') || raw.starts_with('\'');
                    assert!(quoted || !(raw.starts_with('~') || raw.contains(":~")), "{line:?} read as {:?}; bash expands the tilde", m.get(k));
                }
                merged.extend(m)
            }
            Some(_) => {}
            None => plain = false,
        }
    }
    assert_eq!(all, plain.then_some(merged), "parse_plain_assignments is not line-wise");
}

// ------------------------------------------------------------ 3. hook_args

/// One input, three parsers: `EVENT\0DEB_MAINT_PARAMS` for the apt hook
/// (no NUL: the variable is unset), the lines as alpm/rpm paths, the text as
/// the dnf plugin's JSON.
pub fn hook_args(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (event, params) = match text.split_once('\0') {
        Some((e, p)) => (e, Some(p)),
        None => (&*text, None),
    };
    check_apt(event, params);
    check_touched(&text.lines().collect::<Vec<_>>());
    check_dnf(&text);
}

fn check_apt(event: &str, params: Option<&str>) {
    let act = maint_action(params);
    // The action is one unquoted word.
    if let Some(a) = &act {
        assert!(!a.contains(char::is_whitespace) && !a.starts_with('\'') && !a.ends_with('\''), "maint action {a:?}");
    }
    // The decision table of Debian's kernel hooks (an unset
    // DEB_MAINT_PARAMS counts as the event's main action).
    let is = |want: &[&str]| act.as_deref().is_none_or(|a| want.contains(&a));
    let expected = match event {
        "postinst" if is(&["configure"]) => Some(Action::Install { headers_later: false }),
        "header_postinst" if is(&["configure"]) => Some(Action::Install { headers_later: true }),
        "prerm" if is(&["remove"]) => Some(Action::Drop),
        "postrm" if is(&["remove", "purge"]) => Some(Action::Drop),
        _ => None,
    };
    let got = decide(event, params);
    match expected {
        Some(e) => assert_eq!(got, e, "decide({event:?}, {params:?})"),
        None => assert!(matches!(got, Action::Nothing(_)), "decide({event:?}, {params:?}) = {got:?}"),
    }
}

/// Every release and module name a hook hands to the engine is a valid name
/// (`sys::names`) and one safe path component (it becomes `/lib/modules/K`,
/// `m/v/K/A`, `usr/src/m-v`).
fn check_touched_sets(what: &str, t: &Touched) {
    for k in t.kernels.iter().chain(&t.headers) {
        assert!(valid(Kind::Kernel, k), "{what}: kernel release {k:?} is not valid");
        assert_component(&format!("{what}: kernel release"), k);
        assert!(!k.starts_with("extramodules-"), "{what}: release {k:?}");
    }
    for (n, v) in &t.modules {
        assert!(valid(Kind::Module, n), "{what}: module name {n:?} is not valid");
        assert!(valid(Kind::Version, v), "{what}: module version {v:?} is not valid");
        assert_component(&format!("{what}: module name"), n);
        assert_component(&format!("{what}: module version"), v);
        assert!(!v.contains('-'), "{what}: version {v:?} of {n} has a '-' (the split is at the last one)");
    }
}

fn check_touched(lines: &[&str]) {
    let all = touched_by_paths(lines.iter().copied());
    check_touched_sets("touched_by_paths", &all);
    let mut union = Touched::default();
    for line in lines {
        let one = touched_by_paths([*line]);
        // A leading '/' (rpm) or its absence (alpm) means the same.
        let abs = format!("/{line}");
        assert_eq!(touched_by_paths([abs.as_str()]), one, "{line:?} and {abs:?} differ");
        union.extend(one);
    }
    // The paths are judged one by one.
    assert_eq!(union, all, "touched_by_paths is not the union of its lines");
    // What was recognised is recognised again from its canonical path.
    for (n, v) in &all.modules {
        let p = format!("usr/src/{n}-{v}/dkms.conf");
        let t = touched_by_paths([p.as_str()]);
        assert_eq!(t.modules, BTreeSet::from([(n.clone(), v.clone())]), "{p}");
    }
    for k in &all.kernels {
        let p = format!("usr/lib/modules/{k}/vmlinuz");
        assert_eq!(touched_by_paths([p.as_str()]).kernels, BTreeSet::from([k.clone()]), "{p}");
    }
    for k in &all.headers {
        let p = format!("usr/src/kernels/{k}");
        assert_eq!(touched_by_paths([p.as_str()]).headers, BTreeSet::from([k.clone()]), "{p}");
    }
}

fn check_dnf(text: &str) {
    let Ok(t) = from_json(text) else { return };
    check_touched_sets("dnf installed", &t.installed);
    check_touched_sets("dnf removed", &t.removed);
    for k in &t.removed_kernels {
        assert!(valid(Kind::Kernel, k), "dnf removed_kernels: {k:?} is not valid");
        assert_component("dnf removed_kernels", k);
    }
    // dnf names no modules, and removed kernels have a set of their own.
    assert!(t.installed.modules.is_empty() && t.removed.modules.is_empty() && t.removed.kernels.is_empty(), "{t:?}");
    // A reinstall (out and in again) drops nothing.
    assert!(t.removed_kernels.is_disjoint(&t.installed.kernels), "a reinstalled kernel is dropped: {t:?}");
    assert!(t.removed.headers.is_disjoint(&t.installed.headers), "reinstalled headers are dropped: {t:?}");
}

// ----------------------------------------------------------- 4. state_tree

/// `kernel-K-A` link targets, dkms's source-state predicates, the build
/// record (`.modsync.json`), and a real dkms tree built in a temporary
/// directory from the input read as a small script (see [`build_tree`]).
pub fn state_tree(data: &[u8]) {
    // parse_active_target: the input as TARGET\0MODULE_DIR\0K\0A.
    let f: Vec<String> = data.splitn(4, |b| *b == 0).map(|s| String::from_utf8_lossy(s).into_owned()).collect();
    let get = |i: usize, d: &str| f.get(i).cloned().unwrap_or_else(|| d.to_string());
    let (target, mdir, k, a) = (get(0, ""), get(1, "/var/lib/dkms/foo"), get(2, "6.1.0-56-amd64"), get(3, "x86_64"));
    check_active_target(&target, &mdir, &k, &a);

    // source_state: the facts are the first byte's bits.
    check_source_state(data.first().copied().unwrap_or(0));

    let text = String::from_utf8_lossy(data);
    check_record(&text);
    build_tree(&text);
}

fn check_active_target(target: &str, module_dir: &str, k: &str, a: &str) {
    if let Some(v) = parse_active_target(target, module_dir, k, a) {
        // The version is one path component, and the link points at v/K/A.
        assert!(!v.is_empty() && !v.contains('/') && v != ".." && v != ".", "parse_active_target({target:?}, {module_dir:?}, {k:?}, {a:?}) = {v:?}");
        assert!(target.ends_with(&format!("{v}/{k}/{a}")), "parse_active_target({target:?}, ..) = {v:?} for {k}/{a}");
    }
}

const COMPATS: [Compat; 2] = [Compat::V30, Compat::V34];

fn check_source_state(bits: u8) {
    let bit = |i: u8| bits & (1 << i) != 0;
    let f = SourceFacts {
        version_dir: bit(0),
        link: bit(1),
        link_target_is_dir: bit(2),
        source_is_dir: bit(3),
        default_source_exists: bit(4),
    };
    for compat in COMPATS {
        let called = Cell::new(false);
        let s = source_state(f, compat, || {
            called.set(true);
            PathBuf::from("/usr/src/m-1")
        });
        // The source path is looked up for Added, and only then.
        assert_eq!(called.get(), matches!(s, SourceState::Added(_)), "{f:?} {compat:?}: {s:?}");
        // No version directory, nothing registered.
        if !f.version_dir {
            assert_eq!(s, SourceState::Absent, "{f:?} {compat:?}");
        }
        // A link to a directory is an added version in both releases.
        if f.version_dir && f.link && f.link_target_is_dir {
            assert!(matches!(s, SourceState::Added(_)), "{f:?} {compat:?}: {s:?}");
        }
        // Added needs a source directory; dkms 3.0 accepts a real one too.
        if matches!(s, SourceState::Added(_)) {
            assert!((f.link && f.link_target_is_dir) || (compat == Compat::V30 && f.source_is_dir), "{f:?} {compat:?}: {s:?}");
        }
        // `broken` exists from dkms 3.0.13 on; before, a gone source is still added.
        match compat {
            Compat::V30 => assert_ne!(s, SourceState::Broken, "{f:?}"),
            Compat::V34 => assert_ne!(s, SourceState::AddedGone, "{f:?}"),
        }
    }
}

/// The input as a `.modsync.json`: serde round-trips, and `record::read`
/// gives exactly the sane records back.
fn check_record(text: &str) {
    let Ok(r) = serde_json::from_str::<BuildRecord>(text) else { return };
    // What the library writes reads back the same.
    let again: BuildRecord = serde_json::from_slice(&record::to_json(&r)).expect("record::to_json does not parse");
    assert_eq!(again, r, "BuildRecord does not round-trip");
    if r.is_sane() {
        check_sane_record("input", &r);
    }
    // record::read: the record of the file when it is sane, else None.
    let Some(tmp) = scratch() else { return };
    if std::fs::write(tmp.path().join(record::FILE), text).is_ok() {
        assert_eq!(record::read(tmp.path()), r.is_sane().then_some(r.clone()), "record::read of {text:?}");
    }
}

/// What a sane record guarantees: names and files are one component, the
/// locations are absolute and stay under /lib/modules/K.
fn check_sane_record(what: &str, r: &BuildRecord) {
    for m in &r.modules {
        assert_component(&format!("{what}: record module name"), &m.name);
        assert_component(&format!("{what}: record module file"), &m.file);
        assert!(m.file.starts_with(&format!("{}.ko", m.name)), "{what}: record file {:?} of {:?}", m.file, m.name);
        for loc in [&m.location, &m.declared_location] {
            assert!(loc.starts_with('/') && !components(loc).any(|c| c == ".." || c == "."), "{what}: record location {loc:?}");
        }
    }
    for d in &r.depends {
        assert!(valid(Kind::Module, d), "{what}: record depends {d:?}");
    }
}

/// A name safe as one path component (nothing can escape the temporary tree).
fn safe_name(s: &str) -> String {
    let n: String = s
        .chars()
        .take(40)
        .map(|c| if c.is_ascii_alphanumeric() || "._+-~:@".contains(c) { c } else { '_' })
        .collect();
    if n.is_empty() || n == "." || n == ".." {
        format!("_{n}")
    } else {
        n
    }
}

fn safe_rel(s: &str) -> String {
    components(s).take(8).map(safe_name).collect::<Vec<_>>().join("/")
}

/// Builds a dkms tree (`dkms/`) and a source tree (`usr/src/`) in a temporary
/// directory from lines `OP ARGS...` (names are made safe), then reads it
/// back with every reader of [`Tree`]:
///
/// ```text
/// mod M | ver M V | usrsrc M V           m/, m/v/, usr/src/m-v/
/// built M V K A | kdir M V K A           m/v/K/A/module/, m/v/K/A/
/// failed M V K A                         m/v/.modsync/failed/K-A/ (modsync's kept failed build)
/// src M V ok|rel|dangling|file|loop      the m/v/source link
/// active M K A TARGET...                 m/kernel-K-A -> TARGET (verbatim)
/// setactive M V K A                      m/kernel-K-A -> V/K/A (as an install writes it)
/// info M V K A JSON...                   m/v/K/A/.modsync.json (the build record)
/// file REL | dir REL | link REL TARGET... anything, anywhere in the dkms tree
/// ```
pub fn build_tree(script: &str) {
    use std::fs;
    use std::os::unix::fs::symlink;
    let Some(tmp) = scratch() else { return };
    let root = tmp.path().join("dkms");
    let src = tmp.path().join("usr/src");
    let _ = fs::create_dir_all(&root);
    let _ = fs::create_dir_all(&src);
    let tree = Tree::new(&root, &src);
    let mut names: BTreeSet<(String, String)> = BTreeSet::new(); // (m, v)
    let mut kas: BTreeSet<(String, String, String)> = BTreeSet::new(); // (m, k, a)

    // Writes never go through a symlink: the fuzzed link targets may point
    // anywhere on this machine, and the tree is only *read* through them.
    let safe = |p: &Path| -> bool {
        let Ok(rel) = p.strip_prefix(tmp.path()) else { return false };
        let mut cur = tmp.path().to_path_buf();
        for c in rel.components() {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(md) if md.file_type().is_symlink() => return false,
                Ok(_) => {}
                Err(_) => return true,
            }
        }
        true
    };
    let mkdir = |p: &Path| {
        if safe(p) {
            let _ = fs::create_dir_all(p);
        }
    };
    let write = |p: &Path, data: &str| {
        if safe(p) {
            let _ = fs::write(p, data);
        }
    };
    let link = |target: &Path, p: &Path| {
        if safe(p) {
            let _ = symlink(target, p);
        }
    };

    for line in script.lines().take(64) {
        let mut w = line.splitn(2, ' ');
        let op = w.next().unwrap_or("");
        let rest = w.next().unwrap_or("");
        let words: Vec<String> = rest.split(' ').map(safe_name).collect();
        let arg = |i: usize| words.get(i).cloned().unwrap_or_else(|| "x".to_string());
        let (m, v, k, a) = (arg(0), arg(1), arg(2), arg(3));
        match op {
            "mod" => mkdir(&tree.module_dir(&m)),
            "ver" => {
                mkdir(&tree.version_dir(&m, &v));
                names.insert((m, v));
            }
            "usrsrc" => mkdir(&tree.default_source(&m, &v)),
            "built" | "kdir" | "failed" | "info" => {
                let dir = match op {
                    "built" => tree.built_modules_dir(&m, &v, &k, &a),
                    "failed" => tree.failed_dir(&m, &v, &k, &a),
                    _ => tree.build_result(&m, &v, &k, &a),
                };
                mkdir(&dir);
                if op == "info" {
                    write(&dir.join(record::FILE), rest.splitn(5, ' ').nth(4).unwrap_or(""));
                }
                names.insert((m.clone(), v));
                kas.insert((m, k, a));
            }
            "src" => {
                let l = tree.source_link(&m, &v);
                mkdir(&tree.version_dir(&m, &v));
                let target = match k.as_str() {
                    "rel" => Path::new("../../../usr/src").join(format!("{m}-{v}")),
                    "dangling" => tmp.path().join("nowhere"),
                    "file" => {
                        let f = tmp.path().join("a-file");
                        write(&f, "x");
                        f
                    }
                    "loop" => l.clone(),
                    _ => tree.default_source(&m, &v),
                };
                link(&target, &l);
                names.insert((m, v));
            }
            "active" => {
                mkdir(&tree.module_dir(&m));
                let target = rest.splitn(4, ' ').nth(3).unwrap_or("");
                if !target.is_empty() {
                    link(Path::new(target), &tree.active_link(&m, &v, &k));
                }
                kas.insert((m, v, k));
            }
            "setactive" => {
                mkdir(&tree.module_dir(&m));
                let l = tree.active_link(&m, &k, &a);
                if safe(&l) && symlink(format!("{v}/{k}/{a}"), &l).is_ok() {
                    // A link as an install writes it reads back as its version.
                    assert_eq!(tree.active_version(&m, &k, &a).as_deref(), Some(v.as_str()), "{m}/kernel-{k}-{a} -> {v}/{k}/{a}, then active_version");
                }
                names.insert((m.clone(), v));
                kas.insert((m, k, a));
            }
            "file" | "dir" | "link" => {
                let rel = safe_rel(rest.split(' ').next().unwrap_or(""));
                if rel.is_empty() {
                    continue;
                }
                let p = root.join(&rel);
                if let Some(parent) = p.parent() {
                    mkdir(parent);
                }
                match op {
                    "file" => write(&p, "x"),
                    "dir" => mkdir(&p),
                    _ => link(Path::new(rest.split_once(' ').map_or("", |x| x.1)), &p),
                }
            }
            _ => {}
        }
    }

    // combos(): only real, non-hidden directories that can be versions.
    for (m, v) in tree.combos() {
        assert!(!m.starts_with('.') && !v.starts_with('.'), "registered hidden {m}/{v}");
        assert!(v != "original_module" && !v.starts_with("kernel-"), "registered {m}/{v}");
        for p in [tree.module_dir(&m), tree.version_dir(&m, &v)] {
            let md = fs::symlink_metadata(&p).expect("registered but missing");
            assert!(md.is_dir(), "registered {} is not a real directory", p.display());
        }
        names.insert((m, v));
    }
    for (m, v) in &names {
        let _ = tree.versions(m);
        for (k, a) in tree.built(m, v, None, None) {
            // built() lists kernels as dkms's glob does, never modsync's own
            // hidden .modsync/ (nor source, build, log, ...).
            assert!(looks_like_kernel(&k) && !k.starts_with('.') && !a.starts_with('.'), "built {m}/{v} for {k}/{a}");
            assert!(tree.is_built(m, v, &k, &a), "built() lists {k}/{a} of {m}/{v} but is_built is false");
            // Asking for that kernel and arch by name finds it again.
            assert_eq!(tree.built(m, v, Some(&k), Some(&a)), vec![(k.clone(), a.clone())], "built({m}, {v}, {k}, {a})");
            // Installed means built and the active version.
            let installed = tree.is_installed(m, v, &k, &a);
            assert_eq!(installed, tree.active_version(m, &k, &a).as_deref() == Some(v.as_str()), "is_installed({m}, {v}, {k}, {a})");
            if installed {
                assert_eq!(tree.installed_version(m, &k, &a).as_deref(), Some(v.as_str()));
            }
            for f in tree.built_files(m, v, &k, &a) {
                assert!(f.contains(".ko") && !f.contains('/'), "built file {f:?}");
            }
            // A record is read only when sane; its files are in module/.
            if let Some(r) = tree.read_record(m, v, &k, &a) {
                assert!(r.is_sane(), "read_record gave an insane record {r:?}");
                check_sane_record(&format!("{m}/{v}/{k}/{a}"), &r);
                for md in &r.modules {
                    if let Some(p) = tree.built_file(m, v, &k, &a, &md.name) {
                        assert!(p.starts_with(tree.built_modules_dir(m, v, &k, &a)), "built_file {} of {}", p.display(), md.name);
                    }
                }
            }
        }
        let states = COMPATS.map(|c| tree.source_state(m, v, c));
        for s in &states {
            if let SourceState::Added(p) = s {
                assert!(p.is_absolute() && p.is_dir(), "source_state Added({})", p.display());
            }
        }
        // What dkms 3.4 sees as added, dkms 3.0 does too.
        if let SourceState::Added(p) = &states[1] {
            assert_eq!(&states[0], &SourceState::Added(p.clone()), "{m}/{v}: 3.0 and 3.4 disagree");
        }
    }
    for (m, k, a) in &kas {
        if let Some(v) = tree.active_version(m, k, a) {
            assert!(!v.is_empty() && !v.contains('/') && v != "." && v != "..", "active_version({m}, {k}, {a}) = {v:?}");
        }
        if let Some(v) = tree.installed_version(m, k, a) {
            assert!(tree.is_built(m, &v, k, a), "installed_version({m}, {k}, {a}) = {v:?} is not built");
        }
        // Read-only readers with names that are not in the tree.
        let _ = tree.built(m, k, None, None);
        let _ = tree.built(m, k, Some(a), None);
        let _ = tree.read_record(m, k, k, a);
        for c in COMPATS {
            let _ = tree.source_state(m, a, c);
        }
    }
}
