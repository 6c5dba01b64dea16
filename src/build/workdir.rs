//! Where a build runs, and running its steps there. Many dkms.conf files
//! hard-code `M=$dkms_tree/m/v/build`, so the steps of a build must see its
//! directory at that path. When two builds of one module version run at
//! once, each has a private directory, and its steps run in a private mount
//! namespace in which that directory is bind-mounted at the shared path.
//! A step is a bash command line (dkms.conf) or an argument list
//! (modsync.toml), which is executed without a shell.

use super::makelog;
use crate::config::command::Command as ConfCommand;
use anyhow::{Context, Result};
use std::ffi::CString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Where a build's files are, and how its commands see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workdir {
    /// The real directory.
    pub real: PathBuf,
    /// The path the commands see (`$dkms_tree/m/v/build`); when it differs
    /// from `real`, commands run in a mount namespace binding `real` there.
    pub seen: PathBuf,
}

impl Workdir {
    pub fn isolated(&self) -> bool {
        self.real != self.seen
    }
}

/// One logged step of a build.
pub struct Step<'a> {
    pub description: &'a str,
    /// A line run by bash, or an argument list executed as it is.
    pub command: &'a ConfCommand,
    /// Where the command runs (the work directory when None).
    pub cwd: Option<&'a Path>,
    pub env: &'a [(String, String)],
    pub jobserver: Option<&'a jobserver::Client>,
}

fn cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).with_context(|| format!("the path {} contains NUL", p.display()))
}

/// Runs the step in the work directory, its output appended to `log` in a
/// make.log section; returns the command's exit code.
pub fn run(wd: &Workdir, step: &Step, log: &mut File) -> Result<i32> {
    let shown = step.command.to_string();
    makelog::append(log, &makelog::section_start(step.description, &shown))?;
    let start = Instant::now();
    let mut cmd = match step.command {
        ConfCommand::Shell(line) => {
            let mut c = Command::new("bash");
            c.arg("-c").arg(line);
            c
        }
        ConfCommand::Argv(words) => {
            let Some((program, args)) = words.split_first() else {
                anyhow::bail!("{}: the command is an empty list", step.description);
            };
            let mut c = Command::new(program);
            c.args(args);
            c
        }
    };
    for v in ["CC", "CXX", "CFLAGS", "CXXFLAGS", "LDFLAGS"] {
        cmd.env_remove(v);
    }
    cmd.envs(step.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().context("duplicating the make.log handle")?)
        .stderr(log.try_clone().context("duplicating the make.log handle")?);
    if let Some(js) = step.jobserver {
        for v in ["MAKEFLAGS", "MFLAGS", "MAKELEVEL"] {
            cmd.env_remove(v);
        }
        js.configure_make(&mut cmd);
    }
    let cwd = cstr(step.cwd.unwrap_or(&wd.seen))?;
    if wd.isolated() {
        let src = cstr(&wd.real)?;
        let dst = cstr(&wd.seen)?;
        let root = CString::new("/").expect("no NUL");
        // SAFETY: only async-signal-safe syscalls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if !private_namespace(&root)
                    || libc::mount(
                        src.as_ptr(),
                        dst.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    ) != 0
                    || libc::chdir(cwd.as_ptr()) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    } else {
        // SAFETY: chdir is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc::chdir(cwd.as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let code = match cmd.status() {
        Ok(status) => crate::sys::cmd::code_of(status),
        // an argument list's program that cannot run: what a shell would report, in the log
        Err(e)
            if matches!(step.command, ConfCommand::Argv(_))
                && matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
        {
            makelog::append(log, &format!("{shown}: {e}\n"))?;
            if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            }
        }
        Err(e) => return Err(e).with_context(|| format!("running `{shown}`")),
    };
    makelog::append(log, &makelog::section_end(code, start.elapsed()))?;
    Ok(code)
}

/// In a forked child: a mount namespace of its own whose mounts, from
/// `root` (`/`) down, no longer propagate to the host. Only async-signal-safe
/// calls; false when either fails (errno says why).
///
/// # Safety
/// Called between fork and exec, or by a process whose mounts are its own
/// business (`modsync check`).
pub(crate) unsafe fn private_namespace(root: &CString) -> bool {
    // SAFETY: the caller is the forked child; both calls are syscalls.
    unsafe {
        libc::unshare(libc::CLONE_NEWNS) == 0
            && libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) == 0
    }
}

/// Whether builds can get private mount namespaces: root with the right to
/// unshare, and a root directory that can be made private (in a chroot `/`
/// is often not a mount point, and a bind mount there would reach the host).
/// Probed once by a child doing the same calls as a step.
pub fn can_isolate() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return false;
    }
    let root = CString::new("/").expect("no NUL");
    let mut cmd = Command::new("true");
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if !private_namespace(&root) {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let ok = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        log::info!("no private mount namespaces here: builds of one module version run one at a time");
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_output_and_exit_code() {
        let d = tempfile::tempdir().unwrap();
        let wd = Workdir {
            real: d.path().to_path_buf(),
            seen: d.path().to_path_buf(),
        };
        let logp = d.path().join("make.log");
        let mut log = makelog::create(&logp, "head\n").unwrap();
        let env = vec![("kernelver".to_string(), "9.9".to_string())];
        let command = ConfCommand::Shell("echo k=$kernelver; pwd; exit 3".into());
        let step = Step {
            description: "Building module(s)",
            command: &command,
            cwd: None,
            env: &env,
            jobserver: None,
        };
        assert_eq!(run(&wd, &step, &mut log).unwrap(), 3);
        let text = std::fs::read_to_string(&logp).unwrap();
        assert!(
            text.starts_with("head\n\nBuilding module(s)\n# command: echo k=$kernelver"),
            "{text}"
        );
        assert!(
            text.contains("k=9.9\n") && text.contains(&d.path().display().to_string()),
            "{text}"
        );
        assert!(
            text.ends_with(&format!(
                "\n# exit code: 3\n# elapsed time: 00:00:00\n{}\n",
                makelog::RULE
            )),
            "{text}"
        );
    }

    #[test]
    fn an_argument_list_runs_without_a_shell() {
        let d = tempfile::tempdir().unwrap();
        let wd = Workdir {
            real: d.path().to_path_buf(),
            seen: d.path().to_path_buf(),
        };
        let logp = d.path().join("make.log");
        let mut log = makelog::create(&logp, "").unwrap();
        let command = ConfCommand::Argv(vec!["echo".into(), "$(touch MARKER);".into(), "a b".into()]);
        let step = Step {
            description: "Building module(s)",
            command: &command,
            cwd: None,
            env: &[],
            jobserver: None,
        };
        assert_eq!(run(&wd, &step, &mut log).unwrap(), 0);
        let text = std::fs::read_to_string(&logp).unwrap();
        assert!(
            text.contains("# command: echo '$(touch MARKER);' 'a b'\n$(touch MARKER); a b\n"),
            "{text}"
        );
        assert!(!d.path().join("MARKER").exists());
        let missing = ConfCommand::Argv(vec!["./no-such-program".into()]);
        let step = Step {
            command: &missing,
            ..step
        };
        assert_eq!(run(&wd, &step, &mut log).unwrap(), 127, "as a shell reports it");
    }

    #[test]
    fn an_isolated_step_sees_its_own_directory_at_the_shared_path() {
        if !can_isolate() {
            // SAFETY: geteuid has no preconditions.
            let root = unsafe { libc::geteuid() } == 0;
            assert!(
                !root && std::env::var_os("MODSYNC_E2E_REQUIRE").is_none(),
                "mount namespaces are needed for this test"
            );
            eprintln!("SKIPPED: mount namespaces need root (MODSYNC_E2E_REQUIRE=1 makes this a failure)");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let seen = d.path().join("build");
        let real = d.path().join("job1");
        std::fs::create_dir_all(&seen).unwrap();
        std::fs::create_dir_all(&real).unwrap();
        std::fs::write(real.join("mine"), "job1").unwrap();
        let wd = Workdir {
            real: real.clone(),
            seen: seen.clone(),
        };
        let mut log = makelog::create(&d.path().join("log"), "").unwrap();
        let command = ConfCommand::Shell("cat mine > out".into());
        let step = Step {
            description: "t",
            command: &command,
            cwd: None,
            env: &[],
            jobserver: None,
        };
        assert_eq!(run(&wd, &step, &mut log).unwrap(), 0);
        assert_eq!(std::fs::read_to_string(real.join("out")).unwrap(), "job1");
        assert!(!seen.join("out").exists(), "a write leaked to the shared path");
    }
}
