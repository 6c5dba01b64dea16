//! dkms.conf's scripts (POST_ADD, PRE_BUILD, POST_BUILD, PRE_INSTALL,
//! POST_INSTALL, POST_REMOVE), found and run as dkms runs them: the value
//! is `script args`, relative to the module's `build` directory (the build
//! scripts, logged in make.log by the build) or `source` directory (the
//! others, output on the terminal); with dkms 3.4 an executable
//! `/etc/dkms/<module>/<script>` is taken first. A script that is not
//! executable is skipped with a warning. A modsync.toml script is an
//! argument list whose program is relative to the same directory; it never
//! reaches a shell.

use crate::config::command::Command as ConfCommand;
use crate::ui::Sink;
use anyhow::{Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A script to run.
pub struct Script<'a> {
    /// dkms's name for it: `post_add`, `pre_build`, ...
    pub what: &'a str,
    /// The directive's value: `script.sh args`, or a manifest's argument list.
    pub value: &'a ConfCommand,
    /// The directory it is relative to.
    pub dir: PathBuf,
    /// `/etc/dkms/<module>` when overrides are read (dkms 3.4).
    pub overrides: Option<PathBuf>,
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Script<'_> {
    /// The script's path as written (relative to its directory).
    fn program(&self) -> &str {
        match self.value {
            ConfCommand::Shell(line) => line.split(' ').next().unwrap_or(""),
            ConfCommand::Argv(words) => words.first().map_or("", String::as_str),
        }
    }

    /// The command run from `dir`: a dkms.conf line prefixed with the
    /// directory, an argument list with its program there.
    fn in_dir(&self, dir: &Path) -> ConfCommand {
        match self.value {
            ConfCommand::Shell(line) => ConfCommand::Shell(format!("{}/{line}", dir.display())),
            ConfCommand::Argv(words) => ConfCommand::Argv(
                std::iter::once(format!("{}/{}", dir.display(), self.program()))
                    .chain(words.iter().skip(1).cloned())
                    .collect(),
            ),
        }
    }

    /// The directory to run in and the command, or None when the script
    /// is not executable.
    pub fn resolve(&self) -> Option<(PathBuf, ConfCommand)> {
        self.resolve_in(&self.dir)
    }

    /// [`Script::resolve`], with the script looked for in `real`: where
    /// `dir` really is now (a build that runs in its own mount namespace
    /// sees its private directory at `dir`, this process does not).
    fn resolve_in(&self, real: &Path) -> Option<(PathBuf, ConfCommand)> {
        let first = self.program();
        if let Some(o) = &self.overrides {
            if executable(&o.join(first)) {
                return Some((o.clone(), self.in_dir(o)));
            }
        }
        executable(&real.join(first)).then(|| (self.dir.clone(), self.in_dir(&self.dir)))
    }

    fn not_executable(&self, sink: &dyn Sink) {
        sink.out("");
        sink.warn(&format!(
            "the {} script {} is not executable; it was not run",
            self.what,
            self.dir.join(self.program()).display()
        ));
    }
}

/// Runs a source-directory script with its output on `sink` (captured when
/// the sink buffers); returns its exit code, or None when it was skipped.
pub fn run(s: &Script, env: &[(String, String)], sink: &dyn Sink) -> Result<Option<i32>> {
    let Some((dir, command)) = s.resolve() else {
        s.not_executable(sink);
        return Ok(None);
    };
    sink.out(&format!("Running the {} script:", s.what));
    let line = command.to_string();
    let words: Vec<&str> = match &command {
        ConfCommand::Shell(l) => l.split_whitespace().collect(),
        ConfCommand::Argv(w) => w.iter().map(String::as_str).collect(),
    };
    let mut cmd = Command::new(words[0]);
    cmd.args(&words[1..])
        .current_dir(&dir)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null());
    let code = if sink.captures() {
        let (mut r, w) = std::io::pipe().context("creating a pipe")?;
        cmd.stdout(w.try_clone().context("duplicating a pipe")?).stderr(w);
        let mut child = cmd.spawn().with_context(|| format!("running {line}"))?;
        drop(cmd);
        let mut text = String::new();
        r.read_to_string(&mut text).ok();
        for l in text.lines() {
            sink.out(l);
        }
        child.wait().with_context(|| format!("waiting for {line}"))?
    } else {
        cmd.status().with_context(|| format!("running {line}"))?
    };
    Ok(Some(crate::sys::cmd::code_of(code)))
}

/// A build script as make.log records it, `cd DIR/ && DIR/script args`
/// for bash (a manifest's: its argument list and the directory to run it
/// in); None when it is not executable (the warning goes to `sink`).
/// `real` is where the build directory `s.dir` really is (see
/// [`Script::resolve_in`]).
pub fn build_command(s: &Script, real: &Path, sink: &dyn Sink) -> Option<(ConfCommand, Option<PathBuf>)> {
    match s.resolve_in(real) {
        Some((dir, ConfCommand::Shell(line))) => {
            Some((ConfCommand::Shell(format!("cd {}/ && {line}", dir.display())), None))
        }
        Some((dir, argv)) => Some((argv, Some(dir))),
        None => {
            s.not_executable(sink);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::Buffered;

    fn script(dir: &Path, body: &str) {
        let p = dir.join("script.sh");
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }

    #[test]
    fn source_scripts_run_in_their_directory_with_arguments() {
        let d = tempfile::tempdir().unwrap();
        script(d.path(), "#!/bin/sh\necho \"$0 $* in $(pwd)\"\necho err >&2\nexit 4\n");
        let value = ConfCommand::Shell("script.sh post_add".into());
        let s = Script {
            what: "post_add",
            value: &value,
            dir: d.path().to_path_buf(),
            overrides: None,
        };
        let b = Buffered::default();
        assert_eq!(run(&s, &[], &b).unwrap(), Some(4));
        let t = b.text();
        assert!(t.starts_with("Running the post_add script:\n"), "{t}");
        assert!(
            t.contains(&format!(
                "{}/script.sh post_add in {}",
                d.path().display(),
                d.path().display()
            )) && t.contains("err"),
            "{t}"
        );
    }

    #[test]
    fn an_argument_list_script_gets_its_words_unsplit() {
        let d = tempfile::tempdir().unwrap();
        script(d.path(), "#!/bin/sh\nfor a in \"$@\"; do echo \"[$a]\"; done\n");
        let value = ConfCommand::Argv(vec!["script.sh".into(), "a b".into(), "$(touch X)".into()]);
        let s = Script {
            what: "post_install",
            value: &value,
            dir: d.path().to_path_buf(),
            overrides: None,
        };
        let b = Buffered::default();
        assert_eq!(run(&s, &[], &b).unwrap(), Some(0));
        assert!(b.text().contains("[a b]\n[$(touch X)]\n"), "{}", b.text());
        assert!(!d.path().join("X").exists());
    }

    #[test]
    fn overrides_win_and_missing_scripts_warn() {
        let d = tempfile::tempdir().unwrap();
        let (src, etc) = (d.path().join("src"), d.path().join("etc"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(&etc).unwrap();
        script(&src, "#!/bin/sh\necho source\n");
        script(&etc, "#!/bin/sh\necho override $*\n");
        let value = ConfCommand::Shell("script.sh pre_install".into());
        let s = Script {
            what: "pre_install",
            value: &value,
            dir: src.clone(),
            overrides: Some(etc.clone()),
        };
        let b = Buffered::default();
        run(&s, &[], &b).unwrap();
        assert!(b.text().contains("override pre_install"));
        let value = ConfCommand::Shell("script.sh pre_build".into());
        let s = Script {
            what: "pre_build",
            value: &value,
            dir: src.clone(),
            overrides: None,
        };
        assert_eq!(
            build_command(&s, &src, &b).unwrap(),
            (
                ConfCommand::Shell(format!(
                    "cd {}/ && {}/script.sh pre_build",
                    src.display(),
                    src.display()
                )),
                None
            )
        );
        let value = ConfCommand::Argv(vec!["script.sh".into(), "a b".into(), ";x".into()]);
        let s = Script {
            what: "pre_build",
            value: &value,
            dir: src.clone(),
            overrides: None,
        };
        assert_eq!(
            build_command(&s, &src, &b).unwrap(),
            (
                ConfCommand::Argv(vec![format!("{}/script.sh", src.display()), "a b".into(), ";x".into()]),
                Some(src.clone())
            )
        );
        // a build in its own mount namespace: the script is found in its
        // private directory, the command names the directory the build sees
        let seen = d.path().join("build");
        let value = ConfCommand::Shell("script.sh pre_build".into());
        let s = Script {
            what: "pre_build",
            value: &value,
            dir: seen.clone(),
            overrides: None,
        };
        assert_eq!(
            build_command(&s, &src, &b).unwrap(),
            (
                ConfCommand::Shell(format!(
                    "cd {}/ && {}/script.sh pre_build",
                    seen.display(),
                    seen.display()
                )),
                None
            )
        );
        let value = ConfCommand::Shell("missing.sh".into());
        let s = Script {
            what: "post_build",
            value: &value,
            dir: src.clone(),
            overrides: None,
        };
        let b = Buffered::default();
        assert!(build_command(&s, &src, &b).is_none());
        assert!(b.text().contains("not executable"));
    }
}
