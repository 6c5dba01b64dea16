//! The manual pages modsync(8) and dkms(8) and the shell completions of
//! both names, generated from the clap definitions in [`super`] (so they
//! never drift from the command line), with hand-written sections where
//! clap has no words: the settings, the files, the exit status. Pure: each
//! function returns the text; `modsync generate-docs` writes it out.

use super::Cli;
use crate::error::code;
use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::roff::{bold, italic, roman, Inline, Roff};
use clap_mangen::Man;

/// The two names of the program: its own, and the dkms alias.
pub const NAMES: [&str; 2] = ["modsync", "dkms"];

/// The shells completions are made for.
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// config.toml's keys: (key, an example value in TOML, what it does). The
/// unit test parses every example, so only real keys are documented.
const SETTINGS: &[(&str, &str, &str)] = &[
    ("strict", "false", "true: the package-manager hooks fail (exit 11) when a module fails to build; by default the failure is reported and the kernel package is still configured."),
    ("parallel_jobs", "2", "The CPU budget of one command, shared by all its builds through one make jobserver (default: the number of CPUs)."),
    ("cache", "true", "Reuse finished builds whose inputs repeat (source, dkms.conf, kernel, compiler)."),
    ("cache_dir", "\"/var/cache/modsync\"", "Where the build cache lives."),
    ("cache_max_mb", "2048", "The cache is pruned to this size."),
    ("sign", "true", "Sign modules where the kernel has CONFIG_MODULE_SIG."),
    ("mok_signing_key", "\"/var/lib/dkms/mok.key\"", "The signing key."),
    ("mok_certificate", "\"/var/lib/dkms/mok.pub\"", "The certificate (MOK) of the signing key."),
    ("update_initramfs", "true", "Regenerate an initramfs that holds a module that changed."),
    ("debug_info", "false", "true: compile with debug information even when strip -g discards it."),
    ("dkms_compat", "\"3.0\"", "Behave as dkms 3.0 or 3.4 where they differ (default: the dkms of the distribution)."),
    ("dkms_tree", "\"/var/lib/dkms\"", "The state tree."),
    ("source_tree", "\"/usr/src\"", "Where module sources are registered from."),
    ("install_tree", "\"/lib/modules\"", "Where kernels keep their modules."),
    ("history_log", "\"/var/log/modsync/history.log\"", "Where hooks record each module's result for modsync log (\"\" keeps no history)."),
];

/// dkms's framework.conf keys that modsync reads.
const FRAMEWORK_KEYS: &str = "source_tree, dkms_tree, install_tree, tmp_location, verbose, symlink_modules, \
     autoinstall_all_kernels, modprobe_on_install, parallel_jobs, compress_gzip_opts, compress_xz_opts, \
     compress_zstd_opts, build_environment, post_transaction, sign_file, mok_signing_key, mok_certificate";

const FILES: &[(&str, &str)] = &[
    ("/var/log/modsync/history.log", "One JSON line per (module, kernel) result of every hook run, read by modsync log (with its rotations; /etc/logrotate.d/modsync)."),
    ("/var/lib/dkms", "The state tree, in dkms's layout: <module>/<version>/source, <module>/<version>/<kernel>/<arch>/{module,log}, <module>/kernel-<kernel>-<arch> for the installed version, <module>/original_module. modsync's own lock, journal and boot notes are in /var/lib/dkms/.modsync."),
    ("/usr/src/<module>-<version>", "Module sources with their dkms.conf, as packages ship them."),
    ("/lib/modules/<kernel>", "Where modules are installed (updates/dkms on Debian, Ubuntu and Arch, extra on Fedora and RHEL, updates on SUSE); build is the kernel's headers."),
    ("/etc/modsync/config.toml", "modsync's settings (see SETTINGS)."),
    ("/etc/dkms/framework.conf, /etc/dkms/framework.conf.d/*.conf", "dkms's settings, read as dkms reads them."),
    ("/etc/dkms/<module>.conf, /etc/dkms/<module>/patches/", "Local overrides of a module's dkms.conf and extra patches."),
    ("/etc/dkms/no-autoinstall", "When it exists, nothing is built automatically (autoinstall, hooks, boot)."),
    ("/etc/kernel/{preinst,postinst,header_postinst,prerm,postrm}.d/50-modsync", "apt/dpkg kernel hooks (also under /usr/share/kernel)."),
    ("/usr/lib/kernel/install.d/40-modsync.install", "The systemd kernel-install plugin."),
    ("/usr/share/libalpm/hooks/70-modsync-install.hook, 71-modsync-remove.hook", "pacman hooks."),
    ("<python3 site-packages>/dnf-plugins/modsync.py, /etc/dnf/libdnf5-plugins/actions.d/modsync.actions", "dnf 4 and dnf 5 hooks."),
    ("/usr/lib/dkms/common.postinst", "Called by the postinst of dh_dkms-built packages."),
    ("/usr/lib/dkms/dkms_autoinstaller", "dkms's autoinstaller path: start [KERNEL] runs modsync autoinstaller."),
    ("modsync.service", "Runs modsync boot early at boot: builds what is missing for the running kernel and loads it."),
];

/// The exit codes, in dkms's meaning.
fn exit_codes() -> Vec<(i32, &'static str)> {
    vec![
        (0, "Success (also: nothing to do, or a kernel without headers at boot)."),
        (
            code::GENERIC,
            "Not root, no write access, missing module or version, wrong kernel count.",
        ),
        (
            code::USAGE,
            "Bad usage: -k with --all, the module source directory is missing on add.",
        ),
        (
            code::NOT_IN_TREE,
            "The module version is not in the tree, or is already added.",
        ),
        (
            code::BROKEN,
            "Several actions, no os-release, dkms.conf missing, a broken module.",
        ),
        (
            code::REFUSED,
            "--all not accepted, a bad patch path, already installed.",
        ),
        (
            code::INSTALL_FAILED,
            "A patch failed, no such kernel to install into, depmod failed.",
        ),
        (code::MODULE_MISSING, "A built module is missing after make."),
        (code::BAD_CONF, "dkms.conf is not valid."),
        (code::NO_DKMS_CONF, "The source tree has no dkms.conf."),
        (code::MAKE_FAILED, "make failed (the make.log path is printed)."),
        (
            code::AUTOINSTALL_FAILED,
            "autoinstall could not install every module (hooks only with strict = true).",
        ),
        (code::BUILD_DEPENDS, "A BUILD_DEPENDS module is not installed."),
        (
            code::KERNEL_HOOK_FAILED,
            "kernel_preinst or kernel_prerm failed for some module.",
        ),
        (code::BAD_KERNEL, "An empty or unusable kernel release or architecture."),
        (
            code::HEADERS_MISSING,
            "The kernel headers are missing (dkms 3.1 and later; 3.0 uses 1).",
        ),
        (code::EXCLUDED, "Not built: BUILD_EXCLUSIVE excludes this kernel."),
        (code::PRE_INSTALL, "The PRE_INSTALL script failed."),
    ]
}

/// The clap command under `name` (the same definitions for both names).
fn command(name: &'static str) -> clap::Command {
    let mut cmd = Cli::command()
        .name(name)
        .bin_name(name)
        .override_usage(format!("{name} [OPTIONS] ACTION [MODULE/VERSION|DIR|DKMS.CONF]..."));
    cmd.build();
    cmd
}

fn section(r: &mut Roff, title: &str) {
    r.control("SH", [title]);
}

fn item(r: &mut Roff, term: Vec<Inline>, text: &str) {
    r.control("TP", []);
    r.text(term);
    r.text([roman(text)]);
}

/// ACTIONS: each visible subcommand, its positional arguments and its own options.
fn actions(r: &mut Roff, cmd: &clap::Command) {
    section(r, "ACTIONS");
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let mut term = vec![bold(sub.get_name())];
        let own: Vec<&clap::Arg> = sub
            .get_arguments()
            .filter(|a| !a.is_global_set() && !a.is_hide_set() && a.get_id() != "help")
            .collect();
        for a in own.iter().filter(|a| a.is_positional()) {
            let names = a
                .get_value_names()
                .map(|v| v.join(" "))
                .unwrap_or_else(|| a.get_id().to_string());
            let many = a.get_num_args().is_some_and(|n| n.max_values() > 1);
            let (open, close) = if a.is_required_set() { (" ", "") } else { (" [", "]") };
            term.push(roman(open));
            term.push(italic(names));
            term.push(roman(format!("{close}{}", if many { "..." } else { "" })));
        }
        let about = sub
            .get_long_about()
            .or_else(|| sub.get_about())
            .map(|s| s.to_string())
            .unwrap_or_default();
        item(r, term, &about);
        let flags: Vec<_> = own
            .iter()
            .filter(|a| !a.is_positional() && a.get_long().is_some())
            .collect();
        if !flags.is_empty() {
            r.control("RS", []);
            for a in flags {
                let help = a.get_help().map(|s| s.to_string()).unwrap_or_default();
                item(r, vec![bold(format!("--{}", a.get_long().unwrap_or_default()))], &help);
            }
            r.control("RE", []);
        }
    }
}

fn settings(r: &mut Roff) {
    section(r, "SETTINGS");
    r.text([
        roman("Every key of "),
        bold("/etc/modsync/config.toml"),
        roman(" is optional; an unknown key is an error. config.toml wins over dkms's framework.conf, the command line over both."),
    ]);
    for (key, example, text) in SETTINGS {
        item(r, vec![bold(*key), roman(format!(" = {example}"))], text);
    }
    r.control("PP", []);
    r.text([
        bold("/etc/dkms/framework.conf"),
        roman(" and "),
        bold("/etc/dkms/framework.conf.d/*.conf"),
        roman(format!(
            " are read as dkms reads them, for these keys: {FRAMEWORK_KEYS}."
        )),
    ]);
}

fn files(r: &mut Roff) {
    section(r, "FILES");
    for (path, text) in FILES {
        item(r, vec![bold(*path)], text);
    }
}

fn exit_status(r: &mut Roff) {
    section(r, "EXIT STATUS");
    r.text([roman(
        "dkms's exit codes. The package-manager hooks exit 0 when a module fails to build, unless strict = true.",
    )]);
    for (c, text) in exit_codes() {
        item(r, vec![bold(c.to_string())], text);
    }
}

/// Appends a rendered chunk; every chunk starts with roff's apostrophe
/// preamble, which the page needs once.
fn append(out: &mut Vec<u8>, chunk: Vec<u8>) {
    let preamble = Roff::new().render();
    match chunk.strip_prefix(preamble.as_bytes()) {
        Some(rest) if !out.is_empty() => out.extend_from_slice(rest),
        _ => out.extend_from_slice(&chunk),
    }
}

fn rendered(f: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> Vec<u8> {
    let mut v = Vec::new();
    f(&mut v).expect("writing to memory");
    v
}

/// The man page of `name` ("modsync" or "dkms"), roff source.
pub fn man_page(name: &'static str) -> Vec<u8> {
    let cmd = command(name);
    let man = Man::new(cmd.clone())
        .title(name.to_uppercase())
        .section("8")
        .source(format!("modsync {}", env!("CARGO_PKG_VERSION")))
        .manual("System Administration");
    let mut out = Vec::new();
    append(&mut out, rendered(|w| man.render_title(w)));
    let mut head = Roff::new();
    head.control("SH", ["NAME"]);
    head.text([roman(format!(
        "{name} - rebuilds out-of-tree kernel modules for every kernel (modsync, a drop-in replacement for DKMS)"
    ))]);
    append(&mut out, head.render().into_bytes());
    append(&mut out, rendered(|w| man.render_synopsis_section(w)));
    let mut d = Roff::new();
    section(&mut d, "DESCRIPTION");
    d.text([roman(
        "modsync keeps out-of-tree kernel modules working across kernel updates: when a kernel or its headers are installed, \
         the package manager's hook hands the kernel to modsync, which builds and installs every registered module for it; \
         when a kernel is removed, its modules go too. It reads dkms.conf files as dkms does and keeps dkms's /var/lib/dkms tree.",
    )]);
    d.control("PP", []);
    d.text([
        bold("dkms"),
        roman(" and "),
        bold("modsync"),
        roman(
            " are the same program: /usr/sbin/dkms is a link to modsync. Every dkms action and option works the same under \
             both names; only --version prints dkms's version string when called as dkms. The actions marked \
             (modsync's own) are modsync's additions.",
        ),
    ]);
    append(&mut out, d.render().into_bytes());
    append(&mut out, rendered(|w| man.render_options_section(w)));
    let mut tail = Roff::new();
    actions(&mut tail, &cmd);
    settings(&mut tail);
    files(&mut tail);
    exit_status(&mut tail);
    section(&mut tail, "SEE ALSO");
    let other = if name == "dkms" { "modsync" } else { "dkms" };
    tail.text([roman(format!(
        "{other}(8), modprobe(8), depmod(8), kernel-install(8), systemd.unit(5)"
    ))]);
    append(&mut out, tail.render().into_bytes());
    out
}

/// The completion script of `shell` for the program called `name`.
pub fn completion(shell: Shell, name: &'static str) -> Vec<u8> {
    let mut cmd = command(name);
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::settings::parse_file_settings;

    #[test]
    fn every_documented_setting_is_a_real_key() {
        for (key, example, _) in SETTINGS {
            let text = format!("{key} = {example}\n");
            assert!(parse_file_settings(&text).is_ok(), "config.toml refuses {text}");
        }
    }

    #[test]
    fn man_pages_have_every_section_and_every_action() {
        for name in NAMES {
            let page = String::from_utf8(man_page(name)).unwrap();
            assert!(page.contains(&format!("\n.TH {} 8 ", name.to_uppercase())), "{page}");
            assert_eq!(page.matches(".ds Aq").count(), 2, "one apostrophe preamble");
            for s in [
                "NAME",
                "SYNOPSIS",
                "DESCRIPTION",
                "OPTIONS",
                "ACTIONS",
                "SETTINGS",
                "FILES",
                "\"EXIT STATUS\"",
            ] {
                assert!(page.contains(&format!("\n.SH {s}\n")), "{name}(8) lacks {s}");
            }
            for action in ["add", "kernel_postinst", "boot", "autoinstaller", "secureboot"] {
                assert!(page.contains(&format!("\\fB{action}\\fR")), "{name}(8) lacks {action}");
            }
            assert!(!page.contains("generate\\-docs"), "the hidden command is documented");
            assert!(page.contains("\\fB21\\fR") && page.contains("cache_max_mb"));
        }
    }

    #[test]
    fn completions_name_the_program_and_its_actions() {
        for name in NAMES {
            let bash = String::from_utf8(completion(Shell::Bash, name)).unwrap();
            assert!(bash.contains(&format!("complete -F _{name}")), "{bash}");
            assert!(bash.contains("kernel_postinst") && bash.contains("--kernelver"));
            let zsh = String::from_utf8(completion(Shell::Zsh, name)).unwrap();
            assert!(zsh.starts_with(&format!("#compdef {name}")));
            let fish = String::from_utf8(completion(Shell::Fish, name)).unwrap();
            assert!(fish.contains(&format!("complete -c {name}")));
        }
    }
}
