//! A dkms.conf evaluated for one (module, kernel): the raw arrays from bash
//! turned into the value the rest of the engine is handed ([`ModuleConf`]),
//! with dkms's rules (module count from the highest index, defaults, the
//! distribution's install location, MAKE/MAKE_MATCH and PATCH/PATCH_MATCH
//! chosen for the kernel, BUILD_EXCLUSIVE per module) and dkms's checks,
//! plus checks of our own: every name that becomes a path is a plain name.
//! Pure: the kernel facts it needs are passed in.

use super::command::Command;
use super::exclusive::{regex_match, Exclusive};
use super::records;
pub use super::records::ModuleSpec;
use super::shell::Raw;
use crate::kernel::kconfig::KConfig;
use crate::sys::names::{self, Kind};

/// Everything the engine needs from a dkms.conf, for one kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleConf {
    pub package_name: String,
    pub package_version: String,
    pub modules: Vec<ModuleSpec>,
    /// The build command chosen for this kernel, before dkms's `make`
    /// prefix rewrite (see [`crate::build`]).
    pub make_command: Command,
    /// Patches (relative to `patches/`) that apply to this kernel, in order.
    pub patches: Vec<String>,
    pub pre_build: Option<Command>,
    pub post_build: Option<Command>,
    pub post_add: Option<Command>,
    pub pre_install: Option<Command>,
    pub post_install: Option<Command>,
    pub post_remove: Option<Command>,
    pub autoinstall: bool,
    pub build_depends: Vec<String>,
    pub build_depends_rebuild: bool,
    pub obsolete_by: Option<String>,
    /// No module may be built for this kernel (dkms's exit 77).
    pub build_exclude: bool,
    /// BUILD_EXCLUSIVE directives are set (for the package or a module).
    pub has_exclusive: bool,
}

impl ModuleConf {
    /// The modules built for this kernel.
    pub fn buildable(&self) -> impl Iterator<Item = &ModuleSpec> {
        self.modules.iter().filter(|m| m.buildable())
    }

    /// The BUILD_EXCLUSIVE rule that keeps the first excluded module out of
    /// this kernel (all of them, when [`ModuleConf::build_exclude`] is set).
    pub fn exclusion(&self) -> Option<&str> {
        self.modules.iter().find_map(|m| m.excluded_by.as_deref())
    }
}

/// The result of reading: the value plus what dkms would print, split the
/// way dkms splits its checks (`read_conf` for every verb, the strict ones
/// only for add, build and install).
#[derive(Debug, Clone)]
pub struct Evaluated {
    pub conf: ModuleConf,
    /// Problems that make the file unusable for any verb.
    pub errors: Vec<String>,
    /// Problems that refuse add, build and install.
    pub strict_errors: Vec<String>,
    /// Printed by add, build and install (zero modules, deprecated directives).
    pub warnings: Vec<String>,
}

impl Evaluated {
    pub fn usable(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn usable_strictly(&self) -> bool {
        self.errors.is_empty() && self.strict_errors.is_empty()
    }
}

/// More module records than any dkms.conf declares; a larger index is refused.
pub const MAX_RECORDS: usize = 1024;

/// The facts about the kernel and the tree that the rules need.
#[derive(Debug, Clone, Default)]
pub struct Context<'a> {
    pub kernelver: &'a str,
    pub arch: &'a str,
    pub kernel_source_dir: &'a str,
    pub dkms_tree: &'a str,
    /// The module and version the file is read for (the default make
    /// command builds in `$dkms_tree/module/module_version/build`).
    pub module: &'a str,
    pub module_version: &'a str,
    /// The distribution's install location that replaces DEST_MODULE_LOCATION.
    pub dest_override: Option<&'a str>,
    /// The kernel configuration, when its file exists.
    pub kconfig: Option<&'a KConfig>,
    /// The kernel was built with clang (`LLVM=1` is added to make).
    pub clang: bool,
    /// dkms 3.3+'s per-module BUILD_EXCLUSIVE; dkms 3.0 reads index 0 only.
    pub per_module_exclusive: bool,
    /// dkms 3.4 counts module records to the highest index of the record
    /// arrays; dkms 3.0 by the longest array's element count.
    pub records_by_index: bool,
}

fn get<'a>(raw: &'a Raw, name: &str, i: usize) -> &'a str {
    raw.get(name, i).unwrap_or("")
}

fn yes_no(raw: &Raw, name: &str, errors: &mut Vec<String>) -> bool {
    let v = get(raw, name, 0);
    match v.to_ascii_lowercase().as_str() {
        "" | "no" => false,
        "yes" => true,
        _ => {
            errors.push(format!("{name}={v:?} is not supported; use \"yes\" or \"no\""));
            false
        }
    }
}

/// `${#NAME[@]}`: how many elements are set (dkms loops to this, not to the
/// highest index).
fn count(raw: &Raw, name: &str) -> usize {
    raw.array(name).map_or(0, |a| a.len())
}

fn opt(raw: &Raw, name: &str) -> Option<String> {
    raw.scalar(name).map(str::to_string)
}

fn script(raw: &Raw, name: &str) -> Option<Command> {
    opt(raw, name).map(Command::Shell)
}

/// Builds the value from the evaluated arrays.
pub fn evaluate(raw: &Raw, c: &Context) -> Evaluated {
    let mut errors = Vec::new();
    let mut strict_errors = Vec::new();
    let mut warnings = Vec::new();
    let package_name = get(raw, "PACKAGE_NAME", 0).to_string();
    let package_version = get(raw, "PACKAGE_VERSION", 0).to_string();
    if package_name.is_empty() {
        errors.push("no PACKAGE_NAME directive; add PACKAGE_NAME=\"<module name>\"".into());
    } else if let Some(p) = names::problem(Kind::Module, &package_name) {
        errors.push(format!("PACKAGE_NAME: {p}"));
    }
    if package_version.is_empty() {
        errors.push("no PACKAGE_VERSION directive; add PACKAGE_VERSION=\"<version>\"".into());
    } else if let Some(p) = names::problem(Kind::Version, &package_version) {
        errors.push(format!("PACKAGE_VERSION: {p}"));
    }

    let record = [
        "BUILT_MODULE_NAME",
        "BUILT_MODULE_LOCATION",
        "DEST_MODULE_NAME",
        "DEST_MODULE_LOCATION",
    ];
    // dkms 3.4: up to the highest index; dkms 3.0: as many records as the
    // longest array has elements (a sparse index beyond that is not read).
    // An index no real file uses is refused (dkms would loop for ever).
    let too_big: Vec<String> = record
        .iter()
        .flat_map(|n| raw.indices(n).into_iter().map(move |i| (n, i)))
        .filter(|(_, i)| *i >= MAX_RECORDS)
        .map(|(n, i)| format!("{n}[{i}]"))
        .collect();
    if !too_big.is_empty() {
        errors.push(format!(
            "{}: index too large (at most {MAX_RECORDS} modules); number the modules 0, 1, 2...",
            too_big.join(", ")
        ));
    }
    let num = if c.records_by_index {
        record
            .iter()
            .flat_map(|n| raw.indices(n))
            .filter(|i| *i < MAX_RECORDS)
            .max()
            .map_or(0, |m| m + 1)
    } else {
        record
            .iter()
            .map(|n| raw.indices(n).len())
            .max()
            .unwrap_or(0)
            .min(MAX_RECORDS)
    };
    // OBSOLETE_BY stands in for a package-wide BUILD_EXCLUSIVE_KERNEL_MAX when no module sets one.
    let obsolete_by = opt(raw, "OBSOLETE_BY");
    let per_module_max = (0..num).any(|i| !get(raw, "BUILD_EXCLUSIVE_KERNEL_MAX", i).is_empty());
    let max_override = match (&obsolete_by, per_module_max) {
        (Some(o), false) => o.as_str(),
        _ => "",
    };
    let global = Exclusive::read(raw, 0, max_override);
    let mut any_exclusive = global.is_set();

    let (modules, own_exclusive) = records::read(raw, c, num, &package_name, &global, &mut errors);
    any_exclusive |= own_exclusive;
    let build_exclude = num > 0 && any_exclusive && !modules.iter().any(ModuleSpec::buildable);

    // MAKE[0] unless MAKE_MATCH[0] is set; the last matching MAKE_MATCH wins.
    let mut make_command = if get(raw, "MAKE_MATCH", 0).is_empty() {
        get(raw, "MAKE", 0).to_string()
    } else {
        String::new()
    };
    for i in 0..count(raw, "MAKE") {
        let (m, re) = (get(raw, "MAKE", i), get(raw, "MAKE_MATCH", i));
        if !m.is_empty() && !re.is_empty() && regex_match(re, c.kernelver) {
            make_command = m.to_string();
        }
    }
    if make_command.is_empty() {
        make_command = format!(
            "make -C {} M={}/{}/{}/build",
            c.kernel_source_dir, c.dkms_tree, c.module, c.module_version
        );
    }
    if c.clang {
        make_command.push_str(" LLVM=1");
    }
    let patches = (0..count(raw, "PATCH"))
        .filter(|&i| {
            let (p, re) = (get(raw, "PATCH", i), get(raw, "PATCH_MATCH", i));
            !p.is_empty() && (re.is_empty() || regex_match(re, c.kernelver))
        })
        .map(|i| get(raw, "PATCH", i).to_string())
        .collect();

    let autoinstall = yes_no(raw, "AUTOINSTALL", &mut errors);
    let build_depends_rebuild = yes_no(raw, "BUILD_DEPENDS_REBUILD", &mut errors);
    yes_no(raw, "NO_WEAK_MODULES", &mut errors);
    let mut build_depends = Vec::new();
    for d in raw
        .array("BUILD_DEPENDS")
        .into_iter()
        .flat_map(|a| a.values())
        .flat_map(|v| v.split_whitespace())
    {
        match names::problem(Kind::Module, d) {
            None => build_depends.push(d.to_string()),
            Some(p) => errors.push(format!("BUILD_DEPENDS: {p}")),
        }
    }

    // the checks dkms makes only for add, build and install
    if num == 0 {
        warnings.push("zero modules specified".into());
    }
    for (i, m) in modules.iter().enumerate() {
        let built = format!("{}{}", m.built_location, m.built_name);
        if modules[..i]
            .iter()
            .any(|o| format!("{}{}", o.built_location, o.built_name) == built)
        {
            strict_errors.push(format!(
                "module {built:?} appears twice (BUILT_MODULE_NAME[{i}]); give each module its own name"
            ));
        }
    }
    for (i, m) in modules.iter().enumerate() {
        if modules[..i].iter().any(|o| o.dest_name == m.dest_name) {
            strict_errors.push(format!(
                "module {:?} appears twice (DEST_MODULE_NAME[{i}]); give each module its own name",
                m.dest_name
            ));
        }
    }
    if raw.array("CLEAN").is_some() && !matches!(get(raw, "CLEAN", 0), "true" | "/bin/true" | "/usr/bin/true") {
        warnings.push("CLEAN is deprecated and not run: every build starts from a fresh copy of the source".into());
    }
    for d in [
        "REMAKE_INITRD",
        "MODULES_CONF",
        "MODULES_CONF_OBSOLETES",
        "MODULES_CONF_ALIAS_TYPE",
        "MODULES_CONF_OBSOLETE_ONLY",
    ] {
        if raw.array(d).is_some() {
            warnings.push(format!("{d} is deprecated and has no effect"));
        }
    }
    if obsolete_by.is_some() {
        warnings.push("OBSOLETE_BY is deprecated; use BUILD_EXCLUSIVE_KERNEL_MAX instead".into());
    }

    Evaluated {
        conf: ModuleConf {
            package_name,
            package_version,
            modules,
            make_command: Command::Shell(make_command),
            patches,
            pre_build: script(raw, "PRE_BUILD"),
            post_build: script(raw, "POST_BUILD"),
            post_add: script(raw, "POST_ADD"),
            pre_install: script(raw, "PRE_INSTALL"),
            post_install: script(raw, "POST_INSTALL"),
            post_remove: script(raw, "POST_REMOVE"),
            autoinstall,
            build_depends,
            build_depends_rebuild,
            obsolete_by,
            build_exclude,
            has_exclusive: any_exclusive,
        },
        errors,
        strict_errors,
        warnings,
    }
}

/// The context the unit tests evaluate with: module foo/1.0 for
/// 6.1.0-56-amd64 on Debian (dkms 3.x rules).
#[cfg(test)]
pub(crate) fn test_context() -> Context<'static> {
    Context {
        kernelver: "6.1.0-56-amd64",
        arch: "x86_64",
        kernel_source_dir: "/lib/modules/6.1.0-56-amd64/build",
        dkms_tree: "/var/lib/dkms",
        module: "foo",
        module_version: "1.0",
        dest_override: Some("/updates/dkms"),
        per_module_exclusive: true,
        records_by_index: true,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, usize, &str)]) -> Raw {
        let mut r = Raw::default();
        for (n, i, v) in pairs {
            r.vars.entry(n.to_string()).or_default().insert(*i, v.to_string());
        }
        r
    }

    fn ctx() -> Context<'static> {
        test_context()
    }

    fn base() -> Vec<(&'static str, usize, &'static str)> {
        vec![
            ("PACKAGE_NAME", 0, "foo"),
            ("PACKAGE_VERSION", 0, "1.0"),
            ("DEST_MODULE_LOCATION", 0, "/kernel/extra"),
        ]
    }

    fn with(extra: &[(&'static str, usize, &'static str)]) -> Evaluated {
        let mut p = base();
        p.extend_from_slice(extra);
        evaluate(&raw(&p), &ctx())
    }

    #[test]
    fn a_huge_record_index_is_refused_not_looped_over() {
        // found by fuzzing: index usize::MAX overflowed, a large one looped for ever
        for by_index in [true, false] {
            for big in [usize::MAX, usize::MAX / 2, MAX_RECORDS] {
                let mut p = base();
                p.push(("BUILT_MODULE_NAME", big, "bar"));
                let c = Context {
                    records_by_index: by_index,
                    ..ctx()
                };
                let e = evaluate(&raw(&p), &c);
                assert!(e.errors.iter().any(|x| x.contains("index too large")), "{:?}", e.errors);
                assert_eq!(e.conf.modules.len(), 1, "{big}");
            }
        }
    }

    #[test]
    fn dkms_3_0_counts_records_by_elements() {
        // two elements, the second at index 7: dkms 3.0 reads indices 0 and 1
        let mut p = base();
        p.extend([("BUILT_MODULE_NAME", 0, "a"), ("BUILT_MODULE_NAME", 7, "b")]);
        let c = Context {
            records_by_index: false,
            ..ctx()
        };
        let e = evaluate(&raw(&p), &c);
        assert_eq!(e.conf.modules.len(), 2);
        assert_eq!(e.conf.modules[0].built_name, "a");
        assert_eq!(
            evaluate(&raw(&p), &ctx()).conf.modules.len(),
            8,
            "dkms 3.4: to the highest index"
        );
    }

    #[test]
    fn a_single_module_takes_the_package_name_and_the_distribution_location() {
        let e = with(&[]);
        assert!(e.usable_strictly(), "{:?}", e.errors);
        let m = &e.conf.modules[0];
        assert_eq!((m.built_name.as_str(), m.dest_name.as_str()), ("foo", "foo"));
        assert_eq!(
            (m.dest_location.as_str(), m.declared_location.as_str()),
            ("/updates/dkms", "/kernel/extra")
        );
        assert!(m.strip && m.buildable() && !e.conf.build_exclude && !e.conf.autoinstall);
        assert_eq!(
            e.conf.make_command,
            Command::Shell("make -C /lib/modules/6.1.0-56-amd64/build M=/var/lib/dkms/foo/1.0/build".into())
        );
    }

    #[test]
    fn dkms_invalid_values_fixture() {
        let e = evaluate(
            &raw(&[
                ("PACKAGE_NAME", 0, "dkms_conf_test"),
                ("PACKAGE_VERSION", 0, "1.0"),
                ("DEST_MODULE_NAME", 0, "bar.ko"),
                ("DEST_MODULE_LOCATION", 0, "/wrong/path"),
                ("BUILT_MODULE_NAME", 1, "bar.o"),
                ("DEST_MODULE_NAME", 1, "foo"),
                ("AUTOINSTALL", 0, "maybe"),
            ]),
            &ctx(),
        );
        assert_eq!(e.errors.len(), 6, "{:#?}", e.errors);
        assert!(e.errors[0].contains("record #0") && e.errors[5].contains("AUTOINSTALL"));
    }

    #[test]
    fn sparse_arrays_count_to_the_highest_index() {
        let e = evaluate(
            &raw(&[
                ("PACKAGE_NAME", 0, "c"),
                ("PACKAGE_VERSION", 0, "1.0"),
                ("BUILT_MODULE_NAME", 1, "a1"),
                ("DEST_MODULE_LOCATION", 1, "/kernel/extra"),
                ("BUILT_MODULE_NAME", 3, "a3"),
                ("DEST_MODULE_LOCATION", 3, "/kernel/extra"),
                ("DEST_MODULE_LOCATION", 4, "/oops"),
            ]),
            &ctx(),
        );
        assert_eq!(e.conf.modules.len(), 5);
        assert_eq!(e.errors.len(), 6, "{:#?}", e.errors);
    }

    #[test]
    fn zero_modules_and_duplicates_are_strict_checks() {
        let e = evaluate(&raw(&[("PACKAGE_NAME", 0, "c"), ("PACKAGE_VERSION", 0, "1")]), &ctx());
        assert!(e.usable_strictly() && e.conf.modules.is_empty() && !e.conf.build_exclude);
        assert_eq!(e.warnings, vec!["zero modules specified"]);
        let e = with(&[
            ("BUILT_MODULE_NAME", 0, "a"),
            ("BUILT_MODULE_NAME", 1, "a"),
            ("DEST_MODULE_LOCATION", 1, "/updates"),
        ]);
        assert!(e.usable() && !e.usable_strictly());
        assert_eq!(e.strict_errors.len(), 2, "{:?}", e.strict_errors);
    }

    #[test]
    fn names_that_become_paths_are_checked() {
        for (n, v) in [
            ("BUILT_MODULE_NAME", "../evil"),
            ("DEST_MODULE_NAME", "../../etc/x"),
            ("BUILT_MODULE_LOCATION", "../../x"),
            ("BUILT_MODULE_LOCATION", "/abs"),
            ("DEST_MODULE_LOCATION", "/updates/../../etc"),
            ("BUILD_DEPENDS", "../x"),
            ("PACKAGE_NAME", "a/b"),
        ] {
            let mut p = base();
            p.retain(|(k, _, _)| *k != n);
            p.push((n, 0, v));
            assert!(!evaluate(&raw(&p), &ctx()).usable(), "{n}={v} accepted");
        }
    }

    #[test]
    fn make_match_and_patch_match_pick_for_the_kernel() {
        let e = with(&[
            ("MAKE", 0, "make zero"),
            ("MAKE", 1, "make one"),
            ("MAKE_MATCH", 1, "^6\\."),
            ("MAKE", 2, "make two"),
            ("MAKE_MATCH", 2, "^5\\."),
        ]);
        assert_eq!(e.conf.make_command, Command::Shell("make one".into()));
        let e = with(&[("MAKE", 0, "make x"), ("MAKE_MATCH", 0, "^9")]);
        assert!(e.conf.make_command.to_string().starts_with("make -C "));
        let e = with(&[
            ("PATCH", 0, "a.patch"),
            ("PATCH", 1, "b.patch"),
            ("PATCH_MATCH", 1, "^5\\."),
            ("PATCH", 2, "c.patch"),
        ]);
        assert_eq!(e.conf.patches, vec!["a.patch", "c.patch"]);
        let mut c = ctx();
        c.clang = true;
        assert!(evaluate(&raw(&base()), &c)
            .conf
            .make_command
            .to_string()
            .ends_with(" LLVM=1"));
    }

    #[test]
    fn strip_inherits_index_zero() {
        let e = with(&[
            ("STRIP", 0, "no"),
            ("BUILT_MODULE_NAME", 0, "a"),
            ("BUILT_MODULE_NAME", 1, "b"),
            ("DEST_MODULE_LOCATION", 1, "/updates"),
        ]);
        assert!(!e.conf.modules[0].strip && !e.conf.modules[1].strip);
        let e = with(&[
            ("STRIP", 1, "no"),
            ("BUILT_MODULE_NAME", 0, "a"),
            ("BUILT_MODULE_NAME", 1, "b"),
            ("DEST_MODULE_LOCATION", 1, "/updates"),
        ]);
        assert!(e.conf.modules[0].strip && !e.conf.modules[1].strip);
    }

    #[test]
    fn build_exclusive_index_zero_applies_to_every_module() {
        let two = [
            ("BUILT_MODULE_NAME", 0, "a"),
            ("BUILT_MODULE_NAME", 1, "b"),
            ("DEST_MODULE_LOCATION", 1, "/updates"),
        ];
        let mut p = two.to_vec();
        p.push(("BUILD_EXCLUSIVE_KERNEL", 0, "^99\\..*"));
        p.push(("BUILD_EXCLUSIVE_KERNEL", 1, ".*"));
        p.push(("BUILD_EXCLUSIVE_ARCH", 1, "none"));
        assert!(with(&p).conf.build_exclude);
        let mut p = two.to_vec();
        p.push(("BUILD_EXCLUSIVE_KERNEL_MAX", 0, "3.99"));
        assert!(with(&p).conf.build_exclude);
        let mut p = two.to_vec();
        p.push(("BUILD_EXCLUSIVE_ARCH", 1, "none"));
        let e = with(&p);
        assert!(
            !e.conf.build_exclude
                && e.conf.modules[0].buildable()
                && !e.conf.modules[1].buildable()
                && e.conf.has_exclusive
        );
        let mut c = ctx();
        c.per_module_exclusive = false;
        let mut all = base();
        all.extend_from_slice(&p);
        assert!(
            evaluate(&raw(&all), &c).conf.modules[1].buildable(),
            "dkms 3.0 ignores per-module values"
        );
    }

    #[test]
    fn exclusive_config_min_max_and_obsolete_by() {
        let cfg = KConfig::parse("CONFIG_MODULES=y\n");
        let mut c = ctx();
        c.kconfig = Some(&cfg);
        let mut p = base();
        p.push(("BUILD_EXCLUSIVE_CONFIG", 0, "CONFIG_MODULES !CONFIG_NONEXISTENT"));
        assert!(!evaluate(&raw(&p), &c).conf.build_exclude);
        p.push(("BUILD_EXCLUSIVE_KERNEL_MIN", 0, "6.2"));
        assert!(evaluate(&raw(&p), &c).conf.build_exclude);
        let e = with(&[("OBSOLETE_BY", 0, "99.0")]);
        assert!(!e.conf.build_exclude && e.warnings.iter().any(|w| w.contains("OBSOLETE_BY")));
        assert!(with(&[("OBSOLETE_BY", 0, "5.0")]).conf.build_exclude);
    }

    #[test]
    fn yes_no_values_and_depends() {
        for (v, ok) in [
            ("yes", Some(true)),
            ("YES", Some(true)),
            ("no", Some(false)),
            ("", Some(false)),
            ("Y", None),
        ] {
            let e = with(&[("AUTOINSTALL", 0, v)]);
            assert_eq!(e.usable().then_some(e.conf.autoinstall), ok, "{v}");
        }
        let e = with(&[
            ("BUILD_DEPENDS", 0, "a b"),
            ("BUILD_DEPENDS", 1, "c"),
            ("BUILD_DEPENDS_REBUILD", 0, "yes"),
        ]);
        assert_eq!(e.conf.build_depends, vec!["a", "b", "c"]);
        assert!(e.conf.build_depends_rebuild);
    }
}
