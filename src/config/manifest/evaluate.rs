//! A manifest evaluated for one kernel: the same [`Evaluated`] value a
//! dkms.conf gives (so plan, build, install and status do not know which
//! file a module ships), with dkms's rules where the manifest has the same
//! notion (BUILD_EXCLUSIVE, the distribution's install location, duplicate
//! modules as strict errors) and the checks of every name that becomes a
//! path. Problems are named by their manifest keys. Pure.

use super::{template, Exclusive, Manifest};
use crate::config::command::Command;
use crate::config::directives::{Context, Evaluated, ModuleConf, ModuleSpec};
use crate::config::exclusive::{regex_match, Exclusive as Rule};
use crate::sys::names::{self, Kind};

/// A plain file name for a module (no path, no `.ko`).
fn module_name_problem(what: &str, name: &str) -> Option<String> {
    if name.ends_with(".ko") || name.ends_with(".o") {
        return Some(format!("{what} {name:?} ends in .o or .ko; drop the suffix"));
    }
    names::problem(Kind::Module, name).map(|p| format!("{what}: {p}"))
}

fn regex_problem(what: &str, re: &Option<String>) -> Option<String> {
    let re = re.as_deref()?;
    regex::Regex::new(re)
        .err()
        .map(|e| format!("{what} {re:?} is not a regular expression: {e}"))
}

fn exclusive_problems(what: &str, x: &Exclusive, errors: &mut Vec<String>) {
    errors.extend(regex_problem(&format!("{what}.kernel"), &x.kernel));
    errors.extend(regex_problem(&format!("{what}.arch"), &x.arch));
    for c in &x.config {
        let option = c.strip_prefix('!').unwrap_or(c);
        let ok = option.starts_with("CONFIG_")
            && option.len() > 7
            && option.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        if !ok {
            errors.push(format!(
                "{what}.config: {c:?} is not a kernel option (write \"CONFIG_X\", or \"!CONFIG_X\" for unset)"
            ));
        }
    }
}

/// A relative path of plain names, e.g. `fixes/a.patch` or `./driver/`
/// (`.` and empty components aside).
fn relative_path_problem(what: &str, p: &str) -> Option<String> {
    let bad = p.starts_with('/')
        || p.split('/')
            .filter(|part| !part.is_empty() && *part != ".")
            .any(|part| names::problem(Kind::Module, part).is_some());
    bad.then(|| {
        format!("{what} {p:?} must be a relative path of plain names (letters, digits and . _ + - ~ : @; no '..')")
    })
}

fn command_problems(what: &str, argv: &Option<Vec<String>>, script: bool, errors: &mut Vec<String>) {
    let Some(argv) = argv else { return };
    match argv.first() {
        None => errors.push(format!("{what} is an empty list; give the program and its arguments")),
        Some(p) if script && (p.starts_with('/') || p.is_empty()) => errors.push(format!(
            "{what}: the script {p:?} must be a path relative to the module's directory"
        )),
        Some(_) => {}
    }
    for w in argv {
        if let Err(e) = template::check(w) {
            errors.push(format!("{what}: {e}"));
        }
    }
}

/// The problems that make a manifest unusable for every kernel.
pub fn problems(m: &Manifest) -> Vec<String> {
    let mut errors = Vec::new();
    errors.extend(names::problem(Kind::Module, &m.name).map(|p| format!("name: {p}")));
    errors.extend(names::problem(Kind::Version, &m.version).map(|p| format!("version: {p}")));
    if m.modules.is_empty() {
        errors.push("no [[module]]: name at least one kernel module the package builds".into());
    }
    for (i, md) in m.modules.iter().enumerate() {
        let at = format!("module[{i}]");
        errors.extend(module_name_problem(&format!("{at}.name"), &md.name));
        if let Some(d) = &md.dest_name {
            errors.extend(module_name_problem(&format!("{at}.dest_name"), d));
        }
        if !md.built_location.is_empty() {
            errors.extend(relative_path_problem(
                &format!("{at}.built_location"),
                &md.built_location,
            ));
        }
        let d = &md.dest_location;
        if !["/kernel", "/updates", "/extra"].iter().any(|p| d.starts_with(p)) {
            errors.push(format!(
                "{at}.dest_location {d:?} does not begin with /kernel, /updates or /extra"
            ));
        } else if d.split('/').any(|p| p == ".." || p == ".") || d.contains(char::is_whitespace) {
            errors.push(format!("{at}.dest_location {d:?} must not contain '..', '.' or spaces"));
        }
        exclusive_problems(&format!("{at}.exclusive"), &md.exclusive, &mut errors);
    }
    exclusive_problems("exclusive", &m.exclusive, &mut errors);
    for d in &m.build_depends {
        errors.extend(names::problem(Kind::Module, d).map(|p| format!("build_depends: {p}")));
    }
    for (i, p) in m.patches.iter().enumerate() {
        if p.file.trim_matches(['.', '/']).is_empty() {
            errors.push(format!("patch[{i}].file is empty; name a file in patches/"));
        }
        errors.extend(relative_path_problem(&format!("patch[{i}].file"), &p.file));
        errors.extend(regex_problem(&format!("patch[{i}].kernel"), &p.kernel));
    }
    command_problems("make", &m.make, false, &mut errors);
    for (what, argv) in scripts(m) {
        command_problems(what, argv, true, &mut errors);
    }
    errors
}

fn scripts(m: &Manifest) -> [(&'static str, &Option<Vec<String>>); 6] {
    [
        ("pre_build", &m.pre_build),
        ("post_build", &m.post_build),
        ("post_add", &m.post_add),
        ("pre_install", &m.pre_install),
        ("post_install", &m.post_install),
        ("post_remove", &m.post_remove),
    ]
}

fn rule<'a>(x: &'a Exclusive, config: &'a str) -> Rule<'a> {
    Rule {
        kernel: x.kernel.as_deref().unwrap_or(""),
        min: x.kernel_min.as_deref().unwrap_or(""),
        max: x.kernel_max.as_deref().unwrap_or(""),
        arch: x.arch.as_deref().unwrap_or(""),
        config,
        max_is_obsolete_by: false,
    }
}

/// The manifest for the kernel of `c`; `jobs` is `{jobs}` (dkms's
/// `parallel_jobs`, empty for unlimited).
pub fn evaluate(m: &Manifest, c: &Context, jobs: &str) -> Evaluated {
    let errors = problems(m);
    let (module, version) = if c.module.is_empty() {
        (m.name.as_str(), m.version.as_str())
    } else {
        (c.module, c.module_version)
    };
    let build_dir = format!("{}/{module}/{version}/build", c.dkms_tree);
    let value = |name: &str| -> String {
        match name {
            "kernelver" => c.kernelver,
            "arch" => c.arch,
            "kernel_source_dir" => c.kernel_source_dir,
            "build_dir" => &build_dir,
            "jobs" => jobs,
            "module" => module,
            _ => version,
        }
        .to_string()
    };
    // placeholders were checked by `problems`; a bad word stays as written
    let argv = |words: &Vec<String>| -> Command {
        Command::Argv(
            words
                .iter()
                .map(|w| template::expand(w, &value).unwrap_or_else(|_| w.clone()))
                .collect(),
        )
    };

    let global_config = m.exclusive.config.join(" ");
    let global = rule(&m.exclusive, &global_config);
    let mut any_exclusive = global.is_set();
    let mut modules = Vec::new();
    for (i, md) in m.modules.iter().enumerate() {
        let own_config = md.exclusive.config.join(" ");
        let own = rule(&md.exclusive, &own_config);
        any_exclusive |= own.is_set();
        let mut built_location = md.built_location.clone();
        if !built_location.is_empty() && !built_location.ends_with('/') {
            built_location.push('/');
        }
        modules.push(ModuleSpec {
            index: i,
            built_name: md.name.clone(),
            built_location,
            dest_name: md.dest_name.clone().unwrap_or_else(|| md.name.clone()),
            dest_location: c.dest_override.unwrap_or(&md.dest_location).to_string(),
            declared_location: md.dest_location.clone(),
            strip: md.strip,
            excluded_by: global.refusal(c).or_else(|| own.refusal(c)),
        });
    }
    let mut strict_errors = Vec::new();
    for (i, s) in modules.iter().enumerate() {
        let built = format!("{}{}", s.built_location, s.built_name);
        if modules[..i]
            .iter()
            .any(|o| format!("{}{}", o.built_location, o.built_name) == built)
        {
            strict_errors.push(format!(
                "module[{i}]: {built:?} appears twice; give each module its own name"
            ));
        }
        if modules[..i].iter().any(|o| o.dest_name == s.dest_name) {
            strict_errors.push(format!(
                "module[{i}]: the installed name {:?} appears twice; set dest_name",
                s.dest_name
            ));
        }
    }
    let build_exclude = any_exclusive && !modules.is_empty() && !modules.iter().any(ModuleSpec::buildable);

    let mut make_command = match &m.make {
        Some(words) if !words.is_empty() => argv(words),
        _ => Command::Argv(vec![
            "make".into(),
            "-C".into(),
            c.kernel_source_dir.to_string(),
            format!("M={build_dir}"),
        ]),
    };
    if let (true, Command::Argv(words)) = (c.clang, &mut make_command) {
        words.push("LLVM=1".into());
    }
    let patches = m
        .patches
        .iter()
        .filter(|p| p.kernel.as_deref().is_none_or(|re| regex_match(re, c.kernelver)))
        .map(|p| p.file.clone())
        .collect();
    let script = |s: &Option<Vec<String>>| s.as_ref().filter(|w| !w.is_empty()).map(argv);
    Evaluated {
        conf: ModuleConf {
            package_name: m.name.clone(),
            package_version: m.version.clone(),
            modules,
            make_command,
            patches,
            pre_build: script(&m.pre_build),
            post_build: script(&m.post_build),
            post_add: script(&m.post_add),
            pre_install: script(&m.pre_install),
            post_install: script(&m.post_install),
            post_remove: script(&m.post_remove),
            autoinstall: m.autoinstall,
            build_depends: m.build_depends.clone(),
            build_depends_rebuild: m.build_depends_rebuild,
            obsolete_by: None,
            build_exclude,
            has_exclusive: any_exclusive,
        },
        errors,
        strict_errors,
        warnings: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::manifest::parse;
    use crate::kernel::kconfig::KConfig;

    fn ctx() -> Context<'static> {
        crate::config::directives::test_context()
    }

    fn eval(text: &str) -> Evaluated {
        evaluate(&parse(text).unwrap(), &ctx(), "2")
    }

    const BASE: &str = "name = \"foo\"\nversion = \"1.0\"\n";

    #[test]
    fn commands_become_argument_lists_with_placeholders_filled() {
        let e = eval(&format!(
            "{BASE}make = [\"make\", \"-j{{jobs}}\", \"KVER={{kernelver}}\", \"-C\", \"{{build_dir}}\"]\n\
             pre_build = [\"configure\", \"--kdir={{kernel_source_dir}}\", \"--arch={{arch}}\"]\n\
             [[module]]\nname = \"foo\"\n"
        ));
        assert!(e.usable_strictly(), "{:?}", e.errors);
        assert_eq!(
            e.conf.make_command,
            Command::Argv(
                [
                    "make",
                    "-j2",
                    "KVER=6.1.0-56-amd64",
                    "-C",
                    "/var/lib/dkms/foo/1.0/build"
                ]
                .map(String::from)
                .to_vec()
            )
        );
        assert_eq!(
            e.conf.pre_build,
            Some(Command::Argv(
                ["configure", "--kdir=/lib/modules/6.1.0-56-amd64/build", "--arch=x86_64"]
                    .map(String::from)
                    .to_vec()
            ))
        );
        let m = &e.conf.modules[0];
        assert_eq!(
            (m.built_name.as_str(), m.dest_name.as_str(), m.dest_location.as_str()),
            ("foo", "foo", "/updates/dkms")
        );
        assert_eq!(m.declared_location, "/updates");
        assert!(m.strip && m.buildable() && !e.conf.autoinstall && !e.conf.has_exclusive);
    }

    #[test]
    fn the_default_make_is_dkms_default_as_an_argv() {
        let e = eval(&format!("{BASE}[[module]]\nname = \"foo\"\n"));
        assert_eq!(
            e.conf.make_command.to_string(),
            "make -C /lib/modules/6.1.0-56-amd64/build M=/var/lib/dkms/foo/1.0/build"
        );
        let mut c = ctx();
        c.clang = true;
        let m = parse(&format!("{BASE}[[module]]\nname = \"foo\"\n")).unwrap();
        assert!(evaluate(&m, &c, "").conf.make_command.to_string().ends_with(" LLVM=1"));
    }

    #[test]
    fn bad_names_and_paths_are_refused_by_key() {
        for (body, key) in [
            (
                "name = \"../evil\"\nversion = \"1\"\n[[module]]\nname = \"a\"\n",
                "name:",
            ),
            (
                "name = \"a\"\nversion = \"1/2\"\n[[module]]\nname = \"a\"\n",
                "version:",
            ),
            (&format!("{BASE}[[module]]\nname = \"../x\"\n"), "module[0].name"),
            (&format!("{BASE}[[module]]\nname = \"a.ko\"\n"), "module[0].name"),
            (
                &format!("{BASE}[[module]]\nname = \"a\"\ndest_name = \"$(reboot)\"\n"),
                "module[0].dest_name",
            ),
            (
                &format!("{BASE}[[module]]\nname = \"a\"\nbuilt_location = \"../..\"\n"),
                "module[0].built_location",
            ),
            (
                &format!("{BASE}[[module]]\nname = \"a\"\nbuilt_location = \"/abs\"\n"),
                "module[0].built_location",
            ),
            (
                &format!("{BASE}[[module]]\nname = \"a\"\ndest_location = \"/updates/../../etc\"\n"),
                "module[0].dest_location",
            ),
            (
                &format!("{BASE}[[module]]\nname = \"a\"\ndest_location = \"/etc\"\n"),
                "module[0].dest_location",
            ),
            (
                &format!("{BASE}build_depends = [\"a b\"]\n[[module]]\nname = \"a\"\n"),
                "build_depends",
            ),
            (
                &format!("{BASE}[[patch]]\nfile = \"../x.patch\"\n[[module]]\nname = \"a\"\n"),
                "patch[0].file",
            ),
            (
                &format!("{BASE}[[patch]]\nfile = \"$(touch x).patch\"\n[[module]]\nname = \"a\"\n"),
                "patch[0].file",
            ),
            (
                &format!("{BASE}[[patch]]\nfile = \"a.patch\"\nkernel = \"(\"\n[[module]]\nname = \"a\"\n"),
                "patch[0].kernel",
            ),
            (
                &format!("{BASE}[exclusive]\nconfig = [\"USB\"]\n[[module]]\nname = \"a\"\n"),
                "exclusive.config",
            ),
            (&format!("{BASE}make = []\n[[module]]\nname = \"a\"\n"), "make"),
            (
                &format!("{BASE}make = [\"make\", \"{{kver}}\"]\n[[module]]\nname = \"a\"\n"),
                "make",
            ),
            (
                &format!("{BASE}post_add = [\"/bin/sh\", \"-c\", \"x\"]\n[[module]]\nname = \"a\"\n"),
                "post_add",
            ),
            (BASE, "no [[module]]"),
        ] {
            let e = eval(body);
            assert!(!e.usable(), "{body} accepted");
            assert!(e.errors.iter().any(|x| x.starts_with(key)), "{key}: {:?}", e.errors);
        }
    }

    #[test]
    fn relative_paths_may_use_dot_components() {
        let e = eval(&format!(
            "{BASE}[[patch]]\nfile = \"./fixes/a.patch\"\n[[module]]\nname = \"a\"\nbuilt_location = \"./driver/\"\n"
        ));
        assert!(e.usable(), "{:?}", e.errors);
        assert_eq!(e.conf.modules[0].built_location, "./driver/");
        let e = eval(&format!("{BASE}[[patch]]\nfile = \"./\"\n[[module]]\nname = \"a\"\n"));
        assert!(
            e.errors.iter().any(|x| x.contains("patch[0].file is empty")),
            "{:?}",
            e.errors
        );
    }

    #[test]
    fn exclusive_rules_and_patches_apply_per_kernel() {
        let cfg = KConfig::parse("CONFIG_USB=m\n");
        let mut c = ctx();
        c.kconfig = Some(&cfg);
        let text = format!(
            "{BASE}[exclusive]\nconfig = [\"CONFIG_USB\", \"!CONFIG_NONE\"]\n\
             [[patch]]\nfile = \"all.patch\"\n[[patch]]\nfile = \"old.patch\"\nkernel = '^5\\.'\n\
             [[module]]\nname = \"a\"\n[[module]]\nname = \"b\"\nexclusive = {{ arch = \"aarch64\" }}\n"
        );
        let e = evaluate(&parse(&text).unwrap(), &c, "");
        assert!(e.usable_strictly(), "{:?}", e.errors);
        assert_eq!(e.conf.patches, vec!["all.patch"]);
        assert!(e.conf.modules[0].buildable() && !e.conf.modules[1].buildable());
        assert!(e.conf.has_exclusive && !e.conf.build_exclude);
        assert!(e.conf.exclusion().unwrap().contains("aarch64"));
        let e = eval(&format!(
            "{BASE}[exclusive]\nkernel_max = \"5.15\"\n[[module]]\nname = \"a\"\n"
        ));
        assert!(e.conf.build_exclude, "6.1 is newer than 5.15");
    }

    #[test]
    fn duplicates_are_strict_errors_as_in_dkms() {
        let e = eval(&format!(
            "{BASE}[[module]]\nname = \"a\"\n[[module]]\nname = \"a\"\ndest_location = \"/extra\"\n"
        ));
        assert!(e.usable() && !e.usable_strictly());
        assert_eq!(e.strict_errors.len(), 2, "{:?}", e.strict_errors);
    }
}
