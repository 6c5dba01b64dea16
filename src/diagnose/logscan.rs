//! What a make.log says, read without judging it: its steps (description,
//! command, output, exit code; see [`crate::build::makelog`]), compiler
//! error lines with their file, programs the shell or make could not find,
//! and the compiler version in a `--version` or CONFIG_CC_VERSION_TEXT
//! line, makefiles' own `$(error ...)` lines, and the script or package a
//! step names. Pure functions over text.

/// One step of a make.log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section<'a> {
    pub description: &'a str,
    pub command: &'a str,
    pub output: Vec<&'a str>,
    /// None when the step did not end (the log was cut).
    pub exit: Option<i32>,
}

/// The steps of a make.log, in order.
pub fn sections(log: &str) -> Vec<Section<'_>> {
    let lines: Vec<&str> = log.lines().collect();
    let mut out: Vec<Section> = Vec::new();
    let mut open = false;
    for (i, l) in lines.iter().enumerate() {
        if let Some(command) = l.strip_prefix("# command: ") {
            let description = i.checked_sub(1).map(|p| lines[p]).unwrap_or_default();
            out.push(Section {
                description,
                command,
                output: Vec::new(),
                exit: None,
            });
            open = true;
        } else if let (true, Some(s)) = (open, out.last_mut()) {
            if let Some(code) = l.strip_prefix("# exit code: ") {
                s.exit = code.trim().parse().ok();
                open = false;
                // the empty line the log puts before "# exit code"
                if s.output.last().is_some_and(|x| x.is_empty()) {
                    s.output.pop();
                }
            } else {
                s.output.push(l);
            }
        }
    }
    out
}

/// A compiler diagnostic line: `FILE:LINE[:COL]: error: TEXT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorLine<'a> {
    pub file: &'a str,
    pub line: u32,
    pub text: &'a str,
    pub whole: &'a str,
}

/// The line as a compiler error, if it is one (`error:` or `fatal error:`).
pub fn error_line(l: &str) -> Option<ErrorLine<'_>> {
    let (head, text) = l.split_once(": fatal error: ").or_else(|| l.split_once(": error: "))?;
    let mut parts = head.splitn(3, ':');
    let file = parts.next()?;
    let line = parts.next()?.parse().ok()?;
    if let Some(col) = parts.next() {
        col.parse::<u32>().ok()?;
    }
    (!file.is_empty() && !file.contains(' ')).then_some(ErrorLine {
        file,
        line,
        text,
        whole: l.trim_end(),
    })
}

/// A makefile's own `$(error ...)`: `FILE:LINE: *** MESSAGE.  Stop.` (make's
/// complaints without a FILE:LINE, `make[2]: *** DIR: No such file...`,
/// are not).
pub fn make_error(l: &str) -> Option<ErrorLine<'_>> {
    let l = l.trim_end();
    let (head, text) = l.split_once(": *** ")?;
    let text = text.strip_suffix(".  Stop.")?;
    let (file, line) = head.rsplit_once(':')?;
    let line = line.parse().ok()?;
    (!file.is_empty() && !file.contains(' ')).then_some(ErrorLine {
        file,
        line,
        text,
        whole: l,
    })
}

/// A program the shell or make could not run, from lines such as
/// `/bin/sh: 1: gcc: not found`, `make[2]: x86_64-linux-gnu-gcc-12: No such
/// file or directory` or `bash: line 1: make: command not found`.
pub fn missing_program(l: &str) -> Option<&str> {
    let l = l.trim_end();
    let head = [
        ": not found",
        ": command not found",
        ": Command not found",
        ": No such file or directory",
    ]
    .iter()
    .find_map(|s| l.strip_suffix(s))?;
    let prog = head.rsplit(": ").next()?.trim();
    let name = prog.rsplit('/').next()?;
    (!name.is_empty() && !name.contains(' ') && head.contains(": ")).then_some(name)
}

/// The compiler version in a `gcc --version` line or a kernel's
/// CONFIG_CC_VERSION_TEXT: the compiler kind and its version
/// (`("gcc", "12.2.0")`).
pub fn compiler_version(text: &str) -> Option<(&'static str, &str)> {
    let kind = if text.contains("clang") { "clang" } else { "gcc" };
    text.split_whitespace()
        .map(|t| t.trim_matches(|c: char| c == ',' || c == '"' || c == '(' || c == ')'))
        .find(|t| {
            t.split('.').count() >= 2
                && t.split('.')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|v| (kind, v))
}

/// The program a CONFIG_CC_VERSION_TEXT names (`x86_64-linux-gnu-gcc-12`).
pub fn compiler_program(text: &str) -> Option<&str> {
    text.trim_matches('"').split_whitespace().next()
}

/// The script a build step ran: `configure` of `cd DIR/ && DIR/./configure --opts`.
pub fn script_name(command: &str) -> &str {
    let run = command.rsplit("&& ").next().unwrap_or(command);
    let first = run.split_whitespace().next().unwrap_or(run);
    first.rsplit('/').next().unwrap_or(first)
}

/// The first package an `apt-get install X` / `dnf install X` line names.
pub fn install_suggestion(lines: &[&str]) -> Option<String> {
    lines.iter().find_map(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        let at = words.iter().position(|w| *w == "install")?;
        let before = words[..at].last()?;
        ["apt-get", "apt", "yum", "dnf", "zypper"]
            .contains(before)
            .then(|| words.get(at + 1).map(|p| p.to_string()))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "DKMS (dkms-3.0.10) make.log for ipt-netflow/2.6 for kernel 6.1.0-56-amd64 (x86_64)\n\
Sat Dec  5 08:00:00 UTC 2026 (modsync 0.1.0)\n\
\n\
Running the pre_build script\n\
# command: ./configure --from-dkms-conf=/lib/modules/6.1.0-56-amd64/build\n\
Module version: 2.6\n\
! Iptables headers not found.\n\
\n\
# exit code: 1\n\
# elapsed time: 00:00:01\n\
----------------------------------------------------------------\n\
\n\
Building module(s)\n\
# command: make -j2 KERNELRELEASE=6.1.0-56-amd64 ipt_NETFLOW.ko\n\
make: *** No rule to make target 'ipt_NETFLOW.ko'.  Stop.\n\
\n\
# exit code: 2\n\
# elapsed time: 00:00:00\n\
----------------------------------------------------------------\n";

    #[test]
    fn reads_the_steps_of_a_make_log() {
        let s = sections(LOG);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].description, "Running the pre_build script");
        assert_eq!(
            s[0].output,
            vec!["Module version: 2.6", "! Iptables headers not found."]
        );
        assert_eq!((s[0].exit, s[1].exit), (Some(1), Some(2)));
        assert!(s[1].command.starts_with("make -j2"));
        let cut = &LOG[..LOG.find("# exit code: 2").unwrap()];
        assert_eq!(sections(cut)[1].exit, None);
    }

    #[test]
    fn finds_makefile_errors() {
        let e =
            make_error("/var/lib/dkms/g/1.0/build/Makefile:3: *** g 1.0 does not support kernel 6.12.  Stop.").unwrap();
        assert_eq!(e.file, "/var/lib/dkms/g/1.0/build/Makefile");
        assert_eq!((e.line, e.text), (3, "g 1.0 does not support kernel 6.12"));
        assert!(make_error("make[2]: *** /lib/modules/K/build: No such file or directory.  Stop.").is_none());
        assert!(make_error("make: *** [Makefile:10: all] Error 2").is_none());
    }

    #[test]
    fn finds_error_lines_and_missing_programs() {
        let e = error_line("/var/lib/dkms/o/3.5.1/build/driver/razerkbd_driver.c:1310:25: error: too many arguments to function 'class_create'").unwrap();
        assert_eq!(
            (e.file, e.line),
            ("/var/lib/dkms/o/3.5.1/build/driver/razerkbd_driver.c", 1310)
        );
        assert_eq!(e.text, "too many arguments to function 'class_create'");
        let e = error_line("v4l2loopback.c:12:10: fatal error: linux/foo.h: No such file or directory").unwrap();
        assert_eq!(e.text, "linux/foo.h: No such file or directory");
        assert!(error_line("make[2]: *** [scripts/Makefile.build:250: x.o] Error 1").is_none());
        assert!(error_line("cc1: error: unrecognized command-line option '-mfoo'").is_none());
        assert_eq!(
            missing_program("/bin/sh: 1: x86_64-linux-gnu-gcc-12: not found"),
            Some("x86_64-linux-gnu-gcc-12")
        );
        assert_eq!(missing_program("make[2]: gcc: No such file or directory"), Some("gcc"));
        assert_eq!(missing_program("bash: line 1: make: command not found"), Some("make"));
        assert_eq!(
            missing_program("x.c:1:10: fatal error: xtables.h: No such file or directory"),
            Some("xtables.h")
        );
        assert_eq!(missing_program("nothing here"), None);
    }

    #[test]
    fn reads_compiler_versions() {
        assert_eq!(
            compiler_version("gcc (Debian 12.2.0-14+deb12u1) 12.2.0"),
            Some(("gcc", "12.2.0"))
        );
        assert_eq!(
            compiler_version("\"x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0\""),
            Some(("gcc", "12.2.0"))
        );
        assert_eq!(compiler_version("gcc (GCC) 14.1.1 20240522"), Some(("gcc", "14.1.1")));
        assert_eq!(compiler_version("clang version 17.0.6"), Some(("clang", "17.0.6")));
        assert_eq!(
            compiler_program("\"x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14) 12.2.0\""),
            Some("x86_64-linux-gnu-gcc-12")
        );
    }
}
