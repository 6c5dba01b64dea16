//! Invariant checks of modsync's pure parsers, one entry point per fuzz target.
//!
//! Shared by the cargo-fuzz targets (`fuzz_targets/*.rs`, one line each) and by
//! the main crate's `tests/fuzz_regressions.rs`, which includes this file with
//! `#[path]` and replays `seeds/` and past findings in plain `cargo test`.
//! So: only `modsync`, `serde_json`, `tempfile` and `toml` (dependencies of the
//! main crate) may be used here, and no `crate::` paths.
//!
//! Every entry point takes the raw fuzz input and panics when an invariant is
//! broken; inputs a parser rejects are fine (an error is not a bug).

#![allow(dead_code)]

use modsync::build::exclusive::allowed_modules;
use modsync::build::make_command;
use modsync::config::directives::{from_raw, is_plain_name, ModuleConf};
use modsync::config::dkms_conf::{parse_dump, Raw, WHITELIST};
use modsync::config::settings::{parse_file_settings, parse_simple_shell_assignments};
use modsync::hook::apt::{decide, maint_action, Action};
use modsync::hook::dnf::from_json;
use modsync::hook::targets::{touched_by_paths, Touched};
use modsync::kernel::kconfig::KConfig;
use modsync::kernel::version;
use modsync::state::{parse_active_target, BuiltInfo, SourceState, Tree};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

// ---------------------------------------------------------------- helpers

/// Path components of `p` (empty ones dropped).
fn components(p: &str) -> impl Iterator<Item = &str> {
    p.split('/').filter(|c| !c.is_empty())
}

fn has_dotdot(p: &str) -> bool {
    components(p).any(|c| c == "..")
}

/// A kernel release as the hooks may hand it to the engine (it becomes
/// `/lib/modules/K`, `m/v/K/A`, `kernel-K-A`): one safe path component.
fn assert_release(what: &str, k: &str) {
    assert!(!k.is_empty(), "{what}: empty kernel release");
    assert!(!k.contains('/'), "{what}: kernel release {k:?} contains '/'");
    assert!(k != "." && k != "..", "{what}: kernel release {k:?}");
    assert!(
        !k.chars().any(|c| c.is_whitespace() || c.is_control()),
        "{what}: kernel release {k:?} has whitespace or control characters"
    );
}

/// A module name or version taken from a path: one safe path component.
fn assert_word(what: &str, w: &str) {
    assert!(!w.is_empty(), "{what}: empty");
    assert!(!w.contains('/'), "{what}: {w:?} contains '/'");
    assert!(w != "." && w != "..", "{what}: {w:?}");
    assert!(!w.chars().any(|c| c.is_whitespace() || c.is_control()), "{what}: {w:?} has whitespace or control characters");
}

// ------------------------------------------------------ 1. dkms_conf_dump

/// Kernels the accepted configurations are evaluated against.
pub const RELEASES: &[&str] = &["6.1.0-56-amd64", "5.10.0-30-amd64", "6.8.9-300.fc40.x86_64", "4.9", "3.5-rc2"];

const KCONFIG: &str = "CONFIG_ACPI=y\nCONFIG_USB=m\nCONFIG_I2C=y\nCONFIG_LOCALVERSION=\"-amd64\"\n# CONFIG_DRM is not set\n";

/// The NUL-separated `name\0index\0value\0` dump of an evaluated dkms.conf:
/// `parse_dump`, then `from_raw`, then the make command and BUILD_EXCLUSIVE
/// for a few kernels. Returns the configuration when it was accepted.
pub fn dkms_conf_dump(data: &[u8]) -> Option<ModuleConf> {
    let raw = parse_dump(data).ok()?;
    check_raw(&raw);
    let conf = from_raw(&raw).ok()?;
    check_conf(&raw, &conf);
    let kconfig = KConfig::parse(KCONFIG);
    for release in RELEASES {
        for jobs in [Some(2), None] {
            check_make_command(&conf, release, "/var/lib/dkms/foo/1.0/build", "/lib/modules/x/build", jobs);
        }
        check_allowed(&conf, release, "x86_64", None);
        check_allowed(&conf, release, "aarch64", Some(&kconfig));
        for e in conf.exclusive.values() {
            for bound in [&e.kernel_min, &e.kernel_max].into_iter().flatten() {
                let (ab, ba) = (version::compare(release, bound), version::compare(bound, release));
                assert_eq!(ab, ba.reverse(), "version::compare({release:?}, {bound:?}) is not antisymmetric");
            }
        }
    }
    Some(conf)
}

fn check_raw(raw: &Raw) {
    for (name, arr) in &raw.vars {
        assert!(WHITELIST.contains(&name.as_str()), "parse_dump accepted variable {name:?}");
        for v in arr.values() {
            assert!(!v.contains('\0'), "{name}: value with NUL");
        }
    }
    // Dumping the arrays again gives the same arrays (when no value still
    // ends in CR, which a second parse would strip once more).
    if !raw.vars.values().flat_map(|a| a.values()).any(|v| v.ends_with('\r')) {
        let mut dump = Vec::new();
        for (name, arr) in &raw.vars {
            for (i, v) in arr {
                dump.extend_from_slice(format!("{name}\0{i}\0{v}\0").as_bytes());
            }
        }
        let again = parse_dump(&dump).expect("a re-dumped Raw does not parse");
        assert_eq!(again.vars, raw.vars, "parse_dump does not round-trip");
    }
}

fn check_conf(raw: &Raw, conf: &ModuleConf) {
    assert!(is_plain_name(&conf.package_name), "PACKAGE_NAME {:?} accepted", conf.package_name);
    assert!(is_plain_name(&conf.package_version), "PACKAGE_VERSION {:?} accepted", conf.package_version);
    assert_eq!(raw.scalar("PACKAGE_NAME"), Some(conf.package_name.as_str()));
    assert_eq!(raw.scalar("PACKAGE_VERSION"), Some(conf.package_version.as_str()));
    let mut dest_names = BTreeSet::new();
    for (i, m) in conf.modules.iter().enumerate() {
        assert_eq!(m.index, i, "module records out of order");
        for (what, n) in [("built_name", &m.built_name), ("dest_name", &m.dest_name)] {
            assert!(is_plain_name(n), "module #{i} {what} {n:?} is not a plain name");
            assert!(!n.ends_with(".ko") && !n.ends_with(".o"), "module #{i} {what} {n:?} ends in .o/.ko");
        }
        assert!(dest_names.insert(&m.dest_name), "DEST_MODULE_NAME {:?} used twice", m.dest_name);
        // built_location is joined to the build directory: it must stay inside.
        assert!(!m.built_location.starts_with('/'), "module #{i} built_location {:?} is absolute", m.built_location);
        assert!(!has_dotdot(&m.built_location), "module #{i} built_location {:?} has '..'", m.built_location);
        // dest_location is joined to /lib/modules/K.
        let loc = m.dest_location.trim_end_matches('/');
        assert!(
            ["/kernel", "/updates", "/extra"].iter().any(|p| loc == *p || loc.starts_with(&format!("{p}/"))),
            "module #{i} dest_location {:?} is outside /kernel, /updates, /extra",
            m.dest_location
        );
        assert!(!components(loc).any(|c| c == ".." || c == "."), "module #{i} dest_location {:?} has '..' or '.'", m.dest_location);
    }
    for p in &conf.patches {
        assert!(!p.file.is_empty() && !p.file.starts_with('/') && !has_dotdot(&p.file), "PATCH {:?} accepted", p.file);
    }
    for (what, s) in [
        ("PRE_BUILD", &conf.pre_build),
        ("POST_BUILD", &conf.post_build),
        ("POST_ADD", &conf.post_add),
        ("PRE_INSTALL", &conf.pre_install),
        ("POST_INSTALL", &conf.post_install),
        ("POST_REMOVE", &conf.post_remove),
    ] {
        if let Some(s) = s {
            let first = s.split_whitespace().next().unwrap_or("");
            assert!(!first.starts_with('/') && !has_dotdot(first), "{what} script {first:?} accepted");
        }
    }
    assert!(conf.make.values().all(|m| !m.is_empty()), "empty MAKE kept");
    assert!(conf.build_depends.iter().all(|d| !d.is_empty() && !d.contains(char::is_whitespace)), "BUILD_DEPENDS words");
}

/// `make_command` is the chosen MAKE[i] (or kbuild's default) with a leading
/// `make` replaced as dkms does (`${make_command/#make/make -jN KERNELRELEASE=K}`).
fn check_make_command(conf: &ModuleConf, release: &str, build_dir: &str, source_dir: &str, jobs: Option<usize>) {
    let out = make_command(conf, release, Path::new(build_dir), Path::new(source_dir), jobs);
    let rewrite = |c: &str| match c.strip_prefix("make") {
        Some(rest) => match jobs {
            Some(n) => format!("make -j{n} KERNELRELEASE={release}{rest}"),
            None => format!("make KERNELRELEASE={release}{rest}"),
        },
        None => c.to_string(),
    };
    let default = format!("make -C {source_dir} M={build_dir}");
    let mut candidates: Vec<&str> = conf.make.values().map(String::as_str).collect();
    candidates.push(&default);
    assert!(
        candidates.iter().any(|c| rewrite(c) == out),
        "make_command for {release} gave {out:?}, which is none of MAKE[] {:?} nor the default",
        conf.make
    );
    // Without MAKE_MATCH, MAKE[0] (or the default) is the command.
    if conf.make_match.values().all(|s| s.is_empty()) {
        assert_eq!(out, rewrite(conf.make.get(&0).map_or(default.as_str(), String::as_str)));
    }
    assert!(!out.is_empty());
}

fn check_allowed(conf: &ModuleConf, release: &str, arch: &str, kconfig: Option<&KConfig>) {
    let allowed = allowed_modules(conf, release, arch, kconfig);
    if conf.exclusive.is_empty() {
        assert_eq!(allowed, Some((0..conf.modules.len()).collect()), "no BUILD_EXCLUSIVE but not every module allowed");
    }
    if let Some(idx) = allowed {
        assert!(idx.windows(2).all(|w| w[0] < w[1]), "allowed indices {idx:?} not strictly increasing");
        assert!(idx.iter().all(|&i| i < conf.modules.len()), "allowed index out of range: {idx:?} for {} modules", conf.modules.len());
        assert!(conf.modules.is_empty() || !idx.is_empty(), "Some(empty) while there are modules");
    }
}

// ------------------------------------------------------- 2. settings_toml

/// config.toml (serde) and framework.conf's simple `key=value` reader.
pub fn settings_toml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(s) = parse_file_settings(&text) {
        // Whatever our strict schema accepts is TOML.
        assert!(text.parse::<toml::Table>().is_ok(), "parse_file_settings accepted non-TOML: {s:?}");
    }
    let all = parse_simple_shell_assignments(&text);
    if let Some(map) = &all {
        for (k, v) in map {
            assert!(!k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "key {k:?}");
            assert!(!v.contains('\n'), "value of {k} spans lines: {v:?}");
        }
    }
    // Line by line: the text is simple iff every line is, and later lines win.
    let mut merged = BTreeMap::new();
    let mut simple = true;
    for line in text.lines() {
        match parse_simple_shell_assignments(line) {
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
            None => simple = false,
        }
    }
    assert_eq!(all, simple.then_some(merged), "parse_simple_shell_assignments is not line-wise");
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
    if let Some(a) = &act {
        assert!(!a.contains(char::is_whitespace) && !a.starts_with('\'') && !a.ends_with('\''), "maint action {a:?}");
    }
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

fn check_touched_sets(what: &str, t: &Touched) {
    for k in t.kernels.iter().chain(&t.headers) {
        assert_release(what, k);
        assert!(!k.starts_with("extramodules-"), "{what}: release {k:?}");
    }
    for (n, v) in &t.modules {
        assert_word(&format!("{what}: module name"), n);
        assert_word(&format!("{what}: module version"), v);
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
        assert_release("dnf removed_kernels", k);
    }
    assert!(t.installed.modules.is_empty() && t.removed.modules.is_empty() && t.removed.kernels.is_empty(), "{t:?}");
    assert!(t.removed_kernels.is_disjoint(&t.installed.kernels), "a reinstalled kernel is dropped: {t:?}");
    assert!(t.removed.headers.is_disjoint(&t.installed.headers), "reinstalled headers are dropped: {t:?}");
}

// ----------------------------------------------------------- 4. state_tree

/// `kernel-K-A` link targets, `.modsync.json`, and a real dkms tree built in
/// a temporary directory from the input read as a small script (see
/// [`build_tree`]).
pub fn state_tree(data: &[u8]) {
    // parse_active_target: the input as TARGET\0MODULE_DIR\0K\0A.
    let f: Vec<String> = data.splitn(4, |b| *b == 0).map(|s| String::from_utf8_lossy(s).into_owned()).collect();
    let get = |i: usize, d: &str| f.get(i).cloned().unwrap_or_else(|| d.to_string());
    let (target, mdir, k, a) = (get(0, ""), get(1, "/var/lib/dkms/foo"), get(2, "6.1.0-56-amd64"), get(3, "x86_64"));
    check_active_target(&target, &mdir, &k, &a);

    let text = String::from_utf8_lossy(data);
    if let Ok(info) = serde_json::from_str::<BuiltInfo>(&text) {
        let again: BuiltInfo = serde_json::from_str(&serde_json::to_string(&info).unwrap()).unwrap();
        assert_eq!(again, info, "BuiltInfo does not round-trip");
    }

    build_tree(&text);
}

fn check_active_target(target: &str, module_dir: &str, k: &str, a: &str) {
    if let Some(v) = parse_active_target(target, module_dir, k, a) {
        assert!(!v.is_empty() && !v.contains('/') && v != ".." && v != ".", "parse_active_target({target:?}, {module_dir:?}, {k:?}, {a:?}) = {v:?}");
        assert!(target.ends_with(&format!("{v}/{k}/{a}")), "parse_active_target({target:?}, ..) = {v:?} for {k}/{a}");
    }
}

const NOT_KERNELS: &[&str] = &["source", "build", "tarball", "failed", "log", "driver_disk", "rpm", "deb"];

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
/// mod M | ver M V | usrsrc M V | built M V K A | kdir M V K A | failed M V K A
/// src M V ok|rel|dangling|file|loop      the m/v/source link
/// active M K A TARGET...                 m/kernel-K-A -> TARGET (verbatim)
/// setactive M V K A                      Tree::set_active
/// info M V K A JSON...                   m/v/K/A/.modsync.json
/// file REL | dir REL | link REL TARGET... anything, anywhere in the dkms tree
/// ```
pub fn build_tree(script: &str) {
    use std::fs;
    use std::os::unix::fs::symlink;
    // tmpfs when there is one: the tree is made and removed for every input.
    let base = std::env::var_os("MODSYNC_FUZZ_TMPDIR").map(std::path::PathBuf::from).unwrap_or_else(|| {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() }
    });
    let Ok(tmp) = tempfile::Builder::new().prefix("modsync-fuzz-").tempdir_in(&base) else { return };
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
            "mod" => mkdir(&root.join(&m)),
            "ver" => {
                mkdir(&tree.version_dir(&m, &v));
                names.insert((m, v));
            }
            "usrsrc" => mkdir(&tree.default_source(&m, &v)),
            "built" | "kdir" | "failed" | "info" => {
                let dir = match op {
                    "built" => tree.built_modules_dir(&m, &v, &k, &a),
                    "failed" => tree.failed_dir(&m, &v, &k, &a),
                    _ => tree.kernel_dir(&m, &v, &k, &a),
                };
                mkdir(&dir);
                if op == "info" {
                    write(&tree.info_path(&m, &v, &k, &a), rest.splitn(5, ' ').nth(4).unwrap_or(""));
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
                if safe(&tree.active_link(&m, &k, &a)) && tree.set_active(&m, &v, &k, &a).is_ok() {
                    // A link written by set_active reads back as its version.
                    assert_eq!(tree.active_version(&m, &k, &a).as_deref(), Some(v.as_str()), "set_active({m}, {v}, {k}, {a}) then active_version");
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

    let registered = tree.registered();
    for (m, v) in &registered {
        assert!(!m.starts_with('.') && !v.starts_with('.'), "registered hidden {m}/{v}");
        assert!(v != "original_module" && !v.starts_with("kernel-"), "registered {m}/{v}");
        for p in [tree.module_dir(m), tree.version_dir(m, v)] {
            let md = fs::symlink_metadata(&p).expect("registered but missing");
            assert!(md.is_dir(), "registered {} is not a real directory", p.display());
        }
        names.insert((m.clone(), v.clone()));
    }
    for (m, v) in &names {
        let _ = tree.versions(m);
        for (k, a) in tree.built(m, v) {
            assert!(!NOT_KERNELS.contains(&k.as_str()) && !k.starts_with('.') && !a.starts_with('.'), "built {m}/{v} for {k}/{a}");
            assert!(tree.is_built(m, v, &k, &a), "built() lists {k}/{a} of {m}/{v} but is_built is false");
            let installed = tree.is_installed(m, v, &k, &a);
            assert_eq!(installed, tree.active_version(m, &k, &a).as_deref() == Some(v.as_str()));
            let _ = tree.read_info(m, v, &k, &a);
        }
        for (k, a) in tree.failed(m, v) {
            assert!(tree.failed_dir(m, v, &k, &a).symlink_metadata().is_ok(), "failed() lists a missing {k}/{a}");
        }
        if let SourceState::Added(p) = tree.source_state(m, v) {
            assert!(p.is_absolute() && p.is_dir(), "source_state Added({})", p.display());
        }
    }
    for (m, k, a) in &kas {
        if let Some(v) = tree.active_version(m, k, a) {
            assert!(!v.is_empty() && !v.contains('/') && v != "." && v != "..", "active_version({m}, {k}, {a}) = {v:?}");
        }
        // Read-only readers with names that are not in the tree.
        let _ = tree.built(m, k);
        let _ = tree.failed(m, k);
        let _ = tree.source_state(m, a);
    }
}
