//! Evaluation of dkms.conf exactly as dkms 3.x does it: each file (the
//! module's dkms.conf, then the /etc/dkms overrides) is sourced by bash in a
//! subshell that sees dkms's variables; the whitelisted directives are echoed
//! as `NAME[i]="value"` and read back by the parent shell (so values are
//! expanded a second time, as in dkms). The final values are dumped
//! NUL-separated and parsed here by a pure function.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The variables dkms copies back from a sourced dkms.conf.
pub const WHITELIST: &[&str] = &[
    "PACKAGE_NAME", "PACKAGE_VERSION", "POST_ADD", "POST_BUILD", "POST_INSTALL", "POST_REMOVE",
    "PRE_BUILD", "PRE_INSTALL", "BUILD_DEPENDS", "BUILD_EXCLUSIVE_ARCH", "BUILD_EXCLUSIVE_CONFIG",
    "BUILD_EXCLUSIVE_KERNEL", "BUILD_EXCLUSIVE_KERNEL_MIN", "BUILD_EXCLUSIVE_KERNEL_MAX",
    "build_exclude", "MAKE", "MAKE_MATCH", "PATCH", "PATCH_MATCH", "patch_array",
    "BUILT_MODULE_NAME", "built_module_name", "BUILT_MODULE_LOCATION", "built_module_location",
    "DEST_MODULE_NAME", "dest_module_name", "DEST_MODULE_LOCATION", "dest_module_location",
    "STRIP", "strip", "AUTOINSTALL", "NO_WEAK_MODULES", "BUILD_DEPENDS_REBUILD", "OBSOLETE_BY",
    "CLEAN", "REMAKE_INITRD", "MODULES_CONF", "MODULES_CONF_OBSOLETES",
    "MODULES_CONF_ALIAS_TYPE", "MODULES_CONF_OBSOLETE_ONLY",
];

/// Every whitelisted variable as a (sparse) bash array: name -> index -> value.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Raw {
    pub vars: BTreeMap<String, BTreeMap<usize, String>>,
}

impl Raw {
    /// `${NAME[i]}`, or None when unset.
    pub fn get(&self, name: &str, index: usize) -> Option<&str> {
        self.vars.get(name).and_then(|a| a.get(&index)).map(String::as_str)
    }

    /// `${NAME[0]}` (what `$NAME` means in bash), None when unset or empty.
    pub fn scalar(&self, name: &str) -> Option<&str> {
        self.get(name, 0).filter(|s| !s.is_empty())
    }

    pub fn array(&self, name: &str) -> Option<&BTreeMap<usize, String>> {
        self.vars.get(name)
    }
}

/// The shell variables dkms makes visible to dkms.conf.
#[derive(Debug, Clone, Default)]
pub struct EvalVars {
    pub kernelver: String,
    pub arch: String,
    pub kernel_source_dir: String,
    pub kernel_config: String,
    pub dkms_tree: String,
    pub source_tree: String,
    pub install_tree: String,
    pub module: String,
    pub module_version: String,
    pub parallel_jobs: String,
    pub running_distribution: String,
}

impl EvalVars {
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("kernelver", &self.kernelver),
            ("arch", &self.arch),
            ("kernel_source_dir", &self.kernel_source_dir),
            ("kernel_config", &self.kernel_config),
            ("dkms_tree", &self.dkms_tree),
            ("source_tree", &self.source_tree),
            ("install_tree", &self.install_tree),
            ("module", &self.module),
            ("module_version", &self.module_version),
            ("parallel_jobs", &self.parallel_jobs),
            ("running_distribution", &self.running_distribution),
            ("tmp_location", "/tmp"),
        ]
    }
}

/// The bash program: source each existing file in a subshell, echo the
/// whitelist as dkms does, re-read it in the parent (second expansion), and
/// dump the result NUL-separated on fd 3.
const SCRIPT: &str = r#"
__wl=(__WHITELIST__)
__echo() {
  local __v __i
  for __v in "${__wl[@]}"; do
    declare -n __r="$__v"
    for __i in "${!__r[@]}"; do printf '%s[%s]="%s"\n' "$__v" "$__i" "${__r[$__i]%$'\r'}"; done
    unset -n __r
  done
}
unset "${__wl[@]}"
for __f in "$@"; do
  [ -f "$__f" ] || continue
  __out=$( . "$__f" >/dev/null; __echo )
  eval "$__out"
done
for __v in "${__wl[@]}"; do
  declare -n __r="$__v"
  for __i in "${!__r[@]}"; do printf '%s\0%s\0%s\0' "$__v" "$__i" "${__r[$__i]}"; done
  unset -n __r
done >&3
"#;

/// Evaluates `files` in order (missing ones are skipped) with `vars` set.
/// `cwd` is where bash runs (the module's source directory).
pub fn evaluate(files: &[PathBuf], cwd: &Path, vars: &EvalVars) -> Result<Raw> {
    let script = SCRIPT.replace("__WHITELIST__", &WHITELIST.join(" "));
    let (mut reader, writer) = std::io::pipe().context("creating a pipe for bash")?;
    let files: Vec<PathBuf> = files.iter().map(|f| std::path::absolute(f).unwrap_or_else(|_| f.clone())).collect();
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(&script).arg("modsync-dkms.conf").args(&files);
    cmd.current_dir(cwd).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    for (k, v) in vars.pairs() {
        cmd.env(k, v);
    }
    cmd.env_remove("BASH_ENV").env_remove("ENV");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&writer);
    // SAFETY: dup2 is async-signal-safe; it only makes the pipe's write end fd 3.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().context("running bash to read dkms.conf")?;
    drop(writer);
    let mut dump = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut dump).context("reading bash's output")?;
    let out = child.wait_with_output().context("waiting for bash")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.trim().is_empty() {
        log::warn!("while reading {}: {}", files.first().map(|p| p.display().to_string()).unwrap_or_default(), stderr.trim());
    }
    if !out.status.success() {
        bail!("bash failed reading {:?}: {}", files, stderr.trim());
    }
    parse_dump(&dump)
}

/// Checks a file's shell syntax with `bash -n`; the error quotes bash.
pub fn check_syntax(file: &Path) -> Result<()> {
    let out = Command::new("bash")
        .arg("-n")
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running bash -n {}", file.display()))?;
    if !out.status.success() {
        let crlf = std::fs::read(file).map(|b| b.windows(2).any(|w| w == b"\r\n")).unwrap_or(false);
        bail!(
            "{} is not valid shell: {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim(),
            if crlf { "\nThe file has Windows (CRLF) line endings; convert it with `dos2unix` (or `sed -i 's/\\r$//'`)." } else { "" }
        );
    }
    Ok(())
}

/// Parses the NUL-separated `name\0index\0value\0` triples. Pure.
pub fn parse_dump(bytes: &[u8]) -> Result<Raw> {
    let mut raw = Raw::default();
    if bytes.is_empty() {
        return Ok(raw);
    }
    let body = bytes.strip_suffix(b"\0").context("dkms.conf dump does not end in NUL")?;
    let fields: Vec<&[u8]> = body.split(|b| *b == 0).collect();
    if !fields.len().is_multiple_of(3) {
        bail!("dkms.conf dump has {} fields, not a multiple of 3", fields.len());
    }
    for t in fields.chunks(3) {
        let name = std::str::from_utf8(t[0]).context("variable name is not UTF-8")?;
        if !WHITELIST.contains(&name) {
            bail!("unexpected variable {name:?} in dkms.conf dump");
        }
        let index: usize = std::str::from_utf8(t[1])
            .ok()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad array index for {name}"))?;
        let mut value = String::from_utf8_lossy(t[2]).into_owned();
        if value.ends_with('\r') {
            value.pop();
        }
        raw.vars.entry(name.to_string()).or_default().insert(index, value);
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn vars() -> EvalVars {
        EvalVars {
            kernelver: "6.1.0-56-amd64".into(),
            arch: "x86_64".into(),
            kernel_source_dir: "/lib/modules/6.1.0-56-amd64/build".into(),
            dkms_tree: "/var/lib/dkms".into(),
            module: "foo".into(),
            module_version: "1.0".into(),
            ..Default::default()
        }
    }

    #[test]
    fn parse_dump_reads_sparse_arrays() {
        let raw = parse_dump(b"MAKE\x000\x00make all\x00BUILT_MODULE_NAME\x002\x00b\x00").unwrap();
        assert_eq!(raw.get("MAKE", 0), Some("make all"));
        assert_eq!(raw.get("BUILT_MODULE_NAME", 2), Some("b"));
        assert_eq!(raw.get("BUILT_MODULE_NAME", 0), None);
    }

    #[test]
    fn parse_dump_rejects_garbage() {
        assert!(parse_dump(b"MAKE\x000\x00").is_err());
        assert!(parse_dump(b"EVIL\x000\x00x\x00").is_err());
        assert!(parse_dump(b"MAKE\x00x\x00y\x00").is_err());
        assert!(parse_dump(b"MAKE\x000\x00y").is_err());
    }

    #[test]
    fn parse_dump_strips_cr() {
        let raw = parse_dump(b"PACKAGE_NAME\x000\x00foo\r\x00").unwrap();
        assert_eq!(raw.scalar("PACKAGE_NAME"), Some("foo"));
    }

    #[test]
    fn evaluates_shell_like_dkms() {
        let d = tempfile::tempdir().unwrap();
        let conf = d.path().join("dkms.conf");
        fs::write(
            &conf,
            r#"PACKAGE_NAME="foo"
PACKAGE_VERSION=1.0
HELPER=x
if [ "$arch" = x86_64 ]; then BUILT_MODULE_NAME[0]=foo_$HELPER; fi
BUILT_MODULE_NAME[1]="$(echo bar)"
MAKE[0]='make -C $kernel_source_dir M=$dkms_tree/$module/$module_version/build'
DEST_MODULE_LOCATION=("/updates" "/extra")
pushd "$(dirname "$BASH_SOURCE")" >/dev/null; HERE=$(pwd); popd >/dev/null
POST_BUILD="post.sh $HERE"
echo noise
"#,
        )
        .unwrap();
        let raw = evaluate(std::slice::from_ref(&conf), d.path(), &vars()).unwrap();
        assert_eq!(raw.scalar("PACKAGE_NAME"), Some("foo"));
        assert_eq!(raw.get("BUILT_MODULE_NAME", 0), Some("foo_x"));
        assert_eq!(raw.get("BUILT_MODULE_NAME", 1), Some("bar"));
        // single quotes survive the first round and are expanded in the second, as in dkms
        assert_eq!(
            raw.get("MAKE", 0),
            Some("make -C /lib/modules/6.1.0-56-amd64/build M=/var/lib/dkms/foo/1.0/build")
        );
        assert_eq!(raw.get("DEST_MODULE_LOCATION", 1), Some("/extra"));
        assert_eq!(raw.scalar("POST_BUILD"), Some(format!("post.sh {}", d.path().display()).as_str()));
        assert!(raw.array("HELPER").is_none());
    }

    #[test]
    fn overrides_apply_in_order_and_missing_files_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.conf");
        let b = d.path().join("b.conf");
        fs::write(&a, "PACKAGE_NAME=foo\nAUTOINSTALL=yes\n").unwrap();
        fs::write(&b, "AUTOINSTALL=no\nSTRIP[0]=\"$PACKAGE_NAME\"\n").unwrap();
        let raw = evaluate(&[a, d.path().join("missing.conf"), b], d.path(), &vars()).unwrap();
        assert_eq!(raw.scalar("AUTOINSTALL"), Some("no"));
        assert_eq!(raw.scalar("STRIP"), Some("foo"));
    }

    #[test]
    fn crlf_files_with_control_flow_get_a_hint() {
        let d = tempfile::tempdir().unwrap();
        let conf = d.path().join("dkms.conf");
        fs::write(&conf, "if true; then\r\nPACKAGE_NAME=foo\r\nfi\r\n").unwrap();
        let err = check_syntax(&conf).unwrap_err().to_string();
        assert!(err.contains("dos2unix"), "{err}");
    }

    #[test]
    fn syntax_errors_are_reported() {
        let d = tempfile::tempdir().unwrap();
        let conf = d.path().join("dkms.conf");
        fs::write(&conf, "if [ x ]; then\nPACKAGE_NAME=foo\n").unwrap();
        let err = check_syntax(&conf).unwrap_err().to_string();
        assert!(err.contains("not valid shell"), "{err}");
    }
}
