//! The make side of a build, pure where it can be: the make command as dkms
//! rewrites it, the KCFLAGS that skip debug information strip would
//! discard, and the compiler variables dkms exports for a kernel.

use crate::config::command::Command as ConfCommand;
use crate::config::directives::ModuleConf;
use crate::config::settings::Jobs;
use crate::kernel::Kernel;
use std::process::Command;

/// The make command as dkms runs it: a leading `make` becomes
/// `make -jN KERNELRELEASE=K` (`-j` alone for unlimited); with a shared
/// jobserver the `-jN` is left out so that make takes its tokens. A
/// manifest's argument list whose program is `make` gets the same
/// arguments after it. Pure.
pub fn make_command(conf_command: &ConfCommand, release: &str, jobs: Jobs) -> ConfCommand {
    let added: Vec<String> = match jobs {
        Jobs::Explicit(0) => vec!["-j".into(), format!("KERNELRELEASE={release}")],
        Jobs::Explicit(n) => vec![format!("-j{n}"), format!("KERNELRELEASE={release}")],
        Jobs::Budget(_) => vec![format!("KERNELRELEASE={release}")],
    };
    match conf_command {
        ConfCommand::Shell(line) => ConfCommand::Shell(match line.strip_prefix("make") {
            Some(rest) => format!("make {}{rest}", added.join(" ")),
            None => line.clone(),
        }),
        ConfCommand::Argv(words) if words.first().is_some_and(|p| p == "make") => ConfCommand::Argv(
            words[..1]
                .iter()
                .cloned()
                .chain(added)
                .chain(words[1..].iter().cloned())
                .collect(),
        ),
        ConfCommand::Argv(words) => ConfCommand::Argv(words.clone()),
    }
}

/// KCFLAGS with `-g0` appended when every module of the build is stripped
/// (`strip -g` would discard the debug information anyway), unless the user
/// keeps it or the kernel makes BTF from it (its headers hold a vmlinux). Pure.
pub fn kcflags(conf: &ModuleConf, keep_debug: bool, kernel_makes_btf: bool, inherited: Option<&str>) -> Option<String> {
    let mut built = conf.buildable().peekable();
    let all_stripped = built.peek().is_some() && built.all(|m| m.strip);
    if keep_debug || kernel_makes_btf || !all_stripped {
        return None;
    }
    Some(match inherited.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => format!("{s} -g0"),
        None => "-g0".to_string(),
    })
}

/// The compiler variables dkms exports for a kernel: CC from the headers'
/// `.kernelvariables`, else the compiler named in CONFIG_CC_VERSION_TEXT
/// when it is installed; clang and ld.lld for kernels built with them.
pub fn compiler_env(kernel: &Kernel) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let kv = kernel.headers_dir.join(".kernelvariables");
    if kv.is_file() {
        let script = format!("show-%:\n\t@echo $($*)\ninclude {}\n", kv.display());
        let out = Command::new("make")
            .args(["-s", "-f", "-", "show-CC"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().map(|mut i| i.write_all(script.as_bytes()));
                c.wait_with_output()
            });
        if let Ok(o) = out {
            env.push(("CC".into(), String::from_utf8_lossy(&o.stdout).trim().to_string()));
        }
    }
    if let Some(cfg) = kernel.config() {
        if let Some(cc) = cfg
            .get("CONFIG_CC_VERSION_TEXT")
            .and_then(|t| t.trim_matches('"').split(' ').next())
            .filter(|c| !c.is_empty())
        {
            if crate::sys::cmd::on_path(cc) {
                env.push(("CC".into(), cc.to_string()));
                env.push(("KERNEL_CC".into(), cc.to_string()));
            }
        }
        if cfg.enabled("CONFIG_CC_IS_CLANG") && crate::sys::cmd::on_path("clang") {
            env.push(("CC".into(), "clang".into()));
            env.push(("KERNEL_CC".into(), "clang".into()));
        }
        if cfg.enabled("CONFIG_LD_IS_LLD") && crate::sys::cmd::on_path("ld.lld") {
            env.push(("LD".into(), "ld.lld".into()));
            env.push(("KERNEL_LD".into(), "ld.lld".into()));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::directives::{evaluate, Context as C};
    use crate::config::shell::Raw;

    fn conf(pairs: &[(&str, usize, &str)]) -> ModuleConf {
        let mut r = Raw::default();
        for (n, i, v) in [
            ("PACKAGE_NAME", 0, "foo"),
            ("PACKAGE_VERSION", 0, "1"),
            ("DEST_MODULE_LOCATION", 0, "/updates"),
        ]
        .iter()
        .chain(pairs)
        {
            r.vars.entry(n.to_string()).or_default().insert(*i, v.to_string());
        }
        evaluate(
            &r,
            &C {
                kernelver: "6.1",
                arch: "x86_64",
                per_module_exclusive: true,
                ..Default::default()
            },
        )
        .conf
    }

    fn shell(line: &str, jobs: Jobs) -> String {
        match make_command(&ConfCommand::Shell(line.into()), "6.1", jobs) {
            ConfCommand::Shell(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn make_is_rewritten_as_dkms_does() {
        assert_eq!(
            shell("make -C /k M=/b", Jobs::Explicit(1)),
            "make -j1 KERNELRELEASE=6.1 -C /k M=/b"
        );
        assert_eq!(
            shell("make -C /k M=/b", Jobs::Explicit(0)),
            "make -j KERNELRELEASE=6.1 -C /k M=/b"
        );
        assert_eq!(shell("make all", Jobs::Budget(4)), "make KERNELRELEASE=6.1 all");
        assert_eq!(shell("./build.sh", Jobs::Explicit(2)), "./build.sh");
        assert_eq!(
            shell("makefoo", Jobs::Explicit(2)),
            "make -j2 KERNELRELEASE=6.1foo",
            "a prefix, as in dkms"
        );
    }

    #[test]
    fn an_argv_make_gets_the_same_arguments() {
        let argv = |w: &[&str]| ConfCommand::Argv(w.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            make_command(&argv(&["make", "-C", "/k"]), "6.1", Jobs::Explicit(2)),
            argv(&["make", "-j2", "KERNELRELEASE=6.1", "-C", "/k"])
        );
        assert_eq!(
            make_command(&argv(&["make"]), "6.1", Jobs::Budget(2)),
            argv(&["make", "KERNELRELEASE=6.1"])
        );
        assert_eq!(
            make_command(&argv(&["makefoo", "x"]), "6.1", Jobs::Explicit(2)),
            argv(&["makefoo", "x"]),
            "only the program make"
        );
    }

    #[test]
    fn debug_info_is_skipped_only_when_everything_is_stripped() {
        let c = conf(&[
            ("BUILT_MODULE_NAME", 0, "a"),
            ("BUILT_MODULE_NAME", 1, "b"),
            ("DEST_MODULE_LOCATION", 1, "/updates"),
        ]);
        assert_eq!(kcflags(&c, false, false, None).as_deref(), Some("-g0"));
        assert_eq!(kcflags(&c, false, false, Some("-DX ")).as_deref(), Some("-DX -g0"));
        assert_eq!(kcflags(&c, true, false, None), None, "the user keeps debug info");
        assert_eq!(kcflags(&c, false, true, None), None, "the kernel makes BTF from it");
        let c = conf(&[
            ("BUILT_MODULE_NAME", 0, "a"),
            ("BUILT_MODULE_NAME", 1, "b"),
            ("DEST_MODULE_LOCATION", 1, "/updates"),
            ("STRIP", 1, "no"),
        ]);
        assert_eq!(kcflags(&c, false, false, None), None, "b keeps its debug info");
        assert_eq!(
            kcflags(
                &conf(&[("BUILT_MODULE_NAME", 0, "a"), ("BUILD_EXCLUSIVE_ARCH", 0, "none")]),
                false,
                false,
                None
            ),
            None
        );
    }
}
