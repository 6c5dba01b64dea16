//! Runs one build step (patch, PRE_BUILD, make, POST_BUILD) through bash,
//! with its output appended to make.log in dkms's format. A job whose build
//! directory is not dkms's `$dkms_tree/m/v/build` runs in a private mount
//! namespace where that path is bind-mounted from the job's directory, so
//! dkms.conf files that hard-code it still work while jobs run in parallel.

use anyhow::{Context, Result};
use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Where a job builds, and how its directory is seen by the commands.
#[derive(Debug, Clone)]
pub struct Workdir {
    /// The job's real directory.
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

pub struct Step<'a> {
    pub description: &'a str,
    pub command: &'a str,
    pub workdir: &'a Workdir,
    /// Run in this subdirectory of the work dir ("" for its root).
    pub subdir: &'a str,
    pub env: &'a [(String, String)],
    pub jobserver: Option<&'a jobserver::Client>,
}

fn cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).with_context(|| format!("path {} contains NUL", p.display()))
}

fn elapsed(t: Instant) -> String {
    let s = t.elapsed().as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// Runs the step, appending to `log`. Returns the command's exit code.
pub fn run_logged(step: &Step, log: &mut File) -> Result<i32> {
    writeln!(log, "\n{}\n# command: {}", step.description, step.command).context("writing make.log")?;
    log.flush().ok();
    let start = Instant::now();
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(step.command);
    for v in ["CC", "CXX", "CFLAGS", "CXXFLAGS", "LDFLAGS", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"] {
        cmd.env_remove(v);
    }
    cmd.envs(step.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().context("duplicating make.log handle")?)
        .stderr(log.try_clone().context("duplicating make.log handle")?);
    if let Some(js) = step.jobserver {
        js.configure_make(&mut cmd);
    }
    let cwd_seen = cstr(&step.workdir.seen.join(step.subdir))?;
    if step.workdir.isolated() {
        let src = cstr(&step.workdir.real)?;
        let dst = cstr(&step.workdir.seen)?;
        let root = CString::new("/").unwrap();
        // SAFETY: only async-signal-safe syscalls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::unshare(libc::CLONE_NEWNS) != 0
                    || libc::mount(std::ptr::null(), root.as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0
                    || libc::mount(src.as_ptr(), dst.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) != 0
                    || libc::chdir(cwd_seen.as_ptr()) != 0
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
                if libc::chdir(cwd_seen.as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let status = cmd.status().with_context(|| format!("running `{}`", step.command))?;
    let code = status.code().unwrap_or(128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0));
    writeln!(log, "\n# exit code: {code}\n# elapsed time: {}\n{}", elapsed(start), "-".repeat(64)).context("writing make.log")?;
    Ok(code)
}

/// Whether jobs can get private mount namespaces: root with CAP_SYS_ADMIN,
/// not forbidden by a container, and a root that can be made private (in a
/// chroot `/` is often not a mount point, and a bind mount there would leak
/// into the host). Probed once by a child doing the same calls as a step.
pub fn can_isolate() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return false;
    }
    let root = CString::new("/").unwrap();
    let mut cmd = Command::new("true");
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(std::ptr::null(), root.as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let ok = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().map(|s| s.success()).unwrap_or(false);
    if !ok {
        log::info!("no private mount namespaces here (not root, a container, or a chroot): jobs of one module version build one at a time");
    }
    ok
}

/// The last `n` lines of a file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_command_output_and_exit_code() {
        let d = tempfile::tempdir().unwrap();
        let wd = Workdir { real: d.path().to_path_buf(), seen: d.path().to_path_buf() };
        let logp = d.path().join("make.log");
        let mut log = File::create(&logp).unwrap();
        let env = vec![("kernelver".to_string(), "9.9".to_string())];
        let step = Step { description: "Building", command: "echo k=$kernelver; pwd; exit 3", workdir: &wd, subdir: "", env: &env, jobserver: None };
        assert_eq!(run_logged(&step, &mut log).unwrap(), 3);
        let text = std::fs::read_to_string(&logp).unwrap();
        assert!(text.contains("# command: echo k=$kernelver"), "{text}");
        assert!(text.contains("k=9.9"), "{text}");
        assert!(text.contains(&d.path().display().to_string()), "{text}");
        assert!(text.contains("# exit code: 3"), "{text}");
        assert_eq!(tail(&logp, 1), "-".repeat(64));
    }

    #[test]
    fn isolated_step_sees_its_own_dir_at_the_shared_path() {
        if !can_isolate() {
            eprintln!("skipping: mount namespaces need root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let seen = d.path().join("build");
        let real = d.path().join("job1");
        std::fs::create_dir_all(&seen).unwrap();
        std::fs::create_dir_all(&real).unwrap();
        std::fs::write(real.join("mine"), "job1").unwrap();
        let wd = Workdir { real: real.clone(), seen: seen.clone() };
        let mut log = File::create(d.path().join("log")).unwrap();
        let step = Step { description: "t", command: "cat mine > out", workdir: &wd, subdir: "", env: &[], jobserver: None };
        assert_eq!(run_logged(&step, &mut log).unwrap(), 0);
        assert_eq!(std::fs::read_to_string(real.join("out")).unwrap(), "job1");
        assert!(!seen.join("out").exists(), "write leaked to the shared path");
    }
}
