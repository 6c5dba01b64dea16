//! Reads shell configuration files (dkms.conf, framework.conf) exactly as
//! dkms's `safe_source` does: each existing file is sourced by bash in a
//! subshell, and only whitelisted variables come back, echoed as
//! `NAME[i]="value"` with the value expanded unquoted (so runs of spaces,
//! tabs and newlines collapse into one space, as dkms's unquoted echo does)
//! and then read again by the parent shell (a second expansion, inside
//! double quotes). The final values are dumped NUL-separated on fd 3 and
//! parsed by a pure function. bash's stderr goes to a file, never a pipe
//! that could fill up, and is handed back to the caller.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

    /// The set indices of NAME (empty when unset).
    pub fn indices(&self, name: &str) -> Vec<usize> {
        self.vars
            .get(name)
            .map(|a| a.keys().copied().collect())
            .unwrap_or_default()
    }

    pub fn array(&self, name: &str) -> Option<&BTreeMap<usize, String>> {
        self.vars.get(name)
    }
}

/// What a read returned: the variables and what bash printed on stderr.
#[derive(Debug, Default)]
pub struct Sourced {
    pub raw: Raw,
    pub stderr: String,
}

/// The bash program. `$1` is the whitelist (space-separated), `$2` the
/// directives (`NAME=value` lines), `$3` 1 to start with the whitelisted
/// variables unset, the rest are the files in order.
const SCRIPT: &str = r#"
read -ra __wl <<< "$1"; __directives=$2; __fresh=$3; shift 3
__echo() {
  local __v __i __w
  for __v in "${__wl[@]}"; do
    declare -n __r="$__v"
    for __i in "${!__r[@]}"; do
      __w=( ${__r[$__i]%$'\r'} )
      printf '%s[%s]="%s"\n' "$__v" "$__i" "${__w[*]}"
    done
    unset -n __r
  done
  for __v in "${!DKMS_DIRECTIVE@}"; do
    [[ ${!__v} == *=* ]] && printf '%s="%s"\n' "${!__v%%=*}" "${!__v#*=}"
  done
}
[[ $__fresh == 1 ]] && unset "${__wl[@]}"
for __f in "$@"; do
  [[ -e $__f ]] || continue
  __out=$( . "$__f" >/dev/null; __echo )
  eval "$__out"
done
while IFS= read -r __d; do
  [[ $__d == *=* ]] && export "${__d%%=*}=${__d#*=}"
done <<< "$__directives"
for __v in "${__wl[@]}"; do
  declare -n __r="$__v"
  for __i in "${!__r[@]}"; do printf '%s\0%s\0%s\0' "$__v" "$__i" "${__r[$__i]}"; done
  unset -n __r
done >&3
"#;

/// Sources `files` in order (missing ones are skipped) with `vars` in the
/// environment and the whitelisted variables unset first (how dkms reads a
/// dkms.conf), returning the whitelisted variables. `directives` are
/// `NAME=value` assignments applied after the files (dkms's `--directive`).
pub fn source(
    files: &[PathBuf],
    whitelist: &[&str],
    vars: &[(&str, String)],
    directives: &[String],
) -> Result<Sourced> {
    run(files, whitelist, vars, directives, true)
}

/// Like [`source`], but the whitelisted variables start from `vars` and the
/// environment (how dkms reads framework.conf over its defaults).
pub fn source_over(files: &[PathBuf], whitelist: &[&str], vars: &[(&str, String)]) -> Result<Sourced> {
    run(files, whitelist, vars, &[], false)
}

fn run(
    files: &[PathBuf],
    whitelist: &[&str],
    vars: &[(&str, String)],
    directives: &[String],
    fresh: bool,
) -> Result<Sourced> {
    let (mut reader, writer) = std::io::pipe().context("creating a pipe for bash")?;
    let mut errfile = tempfile::tempfile().context("creating a file for bash's messages")?;
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(SCRIPT)
        .arg("modsync")
        .arg(whitelist.join(" "))
        .arg(directives.join("\n"));
    cmd.arg(if fresh { "1" } else { "0" });
    cmd.args(files);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(errfile.try_clone().context("duplicating a file handle")?);
    cmd.env_remove("BASH_ENV").env_remove("ENV");
    for (k, v) in vars {
        cmd.env(k, v);
    }
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
    let mut child = cmd.spawn().context("running bash to read the configuration")?;
    drop(writer);
    let mut dump = Vec::new();
    reader.read_to_end(&mut dump).context("reading bash's output")?;
    let status = child.wait().context("waiting for bash")?;
    let mut stderr = String::new();
    errfile.rewind().ok();
    errfile.read_to_string(&mut stderr).ok();
    if !status.success() {
        bail!("bash failed reading {}: {}", describe(files), stderr.trim());
    }
    Ok(Sourced {
        raw: parse_dump(&dump, whitelist)?,
        stderr,
    })
}

fn describe(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses the NUL-separated `name\0index\0value\0` triples. Pure.
pub fn parse_dump(bytes: &[u8], whitelist: &[&str]) -> Result<Raw> {
    let mut raw = Raw::default();
    if bytes.is_empty() {
        return Ok(raw);
    }
    let body = bytes
        .strip_suffix(b"\0")
        .context("the variable dump does not end in NUL")?;
    let fields: Vec<&[u8]> = body.split(|b| *b == 0).collect();
    if !fields.len().is_multiple_of(3) {
        bail!("the variable dump has {} fields, not a multiple of 3", fields.len());
    }
    for t in fields.chunks(3) {
        let name = std::str::from_utf8(t[0]).context("a variable name is not UTF-8")?;
        if !whitelist.contains(&name) {
            bail!("unexpected variable {name:?} in the dump");
        }
        let index: usize = std::str::from_utf8(t[1])
            .ok()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad array index for {name}"))?;
        raw.vars
            .entry(name.to_string())
            .or_default()
            .insert(index, String::from_utf8_lossy(t[2]).into_owned());
    }
    Ok(raw)
}

/// Reads `key=value` lines without a shell: Some(map) when every line is a
/// comment, blank, or a plain assignment whose value needs no expansion
/// (so bash would give the same); None when a shell is needed. Pure.
pub fn parse_plain_assignments(text: &str) -> Option<BTreeMap<String, String>> {
    fn unquote(v: &str) -> Option<String> {
        if let Some(s) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            return (!s.contains(['$', '`', '"', '\\', '*', '?', '[', '\n', '\t']) && !s.contains("  "))
                .then(|| s.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        if let Some(s) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
            return (!s.contains(['\'', '$', '`', '"', '\\', '*', '?', '[']) && !s.contains(char::is_whitespace))
                .then(|| s.to_string());
        }
        (!v.contains(|c: char| c.is_whitespace() || "$`\"'\\;&|<>()#~*?[{".contains(c))).then(|| v.to_string())
    }
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=')?;
        if k.is_empty()
            || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || k.starts_with(|c: char| c.is_ascii_digit())
        {
            return None;
        }
        out.insert(k.to_string(), unquote(v)?);
    }
    Some(out)
}

/// True when `path` holds Windows (CRLF) line endings.
pub fn has_crlf(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.windows(2).any(|w| w == b"\r\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const WL: &[&str] = &["PACKAGE_NAME", "MAKE", "PRE_BUILD", "BUILT_MODULE_NAME", "STRIP", "X"];

    #[test]
    fn dump_parsing_is_strict() {
        let raw = parse_dump(b"MAKE\x000\x00make all\x00BUILT_MODULE_NAME\x002\x00b\x00", WL).unwrap();
        assert_eq!(raw.get("MAKE", 0), Some("make all"));
        assert_eq!(raw.get("BUILT_MODULE_NAME", 2), Some("b"));
        assert_eq!(raw.indices("BUILT_MODULE_NAME"), vec![2]);
        assert!(parse_dump(b"MAKE\x000\x00", WL).is_err());
        assert!(parse_dump(b"EVIL\x000\x00x\x00", WL).is_err());
        assert!(parse_dump(b"MAKE\x00x\x00y\x00", WL).is_err());
        assert!(parse_dump(b"MAKE\x000\x00y", WL).is_err());
    }

    #[test]
    fn values_are_expanded_as_dkms_does() {
        let d = tempfile::tempdir().unwrap();
        let conf = d.path().join("dkms.conf");
        fs::write(
            &conf,
            "PACKAGE_NAME=\"foo\"\r\nMAKE[0]='make -C $kernel_source_dir   M=x'\n\
             PRE_BUILD=\"configure\n  --prefix=/usr\n  --with-x\"\nif [ \"$arch\" = x86_64 ]; then BUILT_MODULE_NAME[3]=a; fi\n\
             echo noise; echo err >&2\n",
        )
        .unwrap();
        let vars = [("kernel_source_dir", "/k".to_string()), ("arch", "x86_64".to_string())];
        let s = source(std::slice::from_ref(&conf), WL, &vars, &["X=from cli".to_string()]).unwrap();
        assert_eq!(s.raw.scalar("PACKAGE_NAME"), Some("foo"), "a CR is dropped");
        assert_eq!(
            s.raw.scalar("MAKE"),
            Some("make -C /k M=x"),
            "second expansion, spaces collapse"
        );
        assert_eq!(
            s.raw.scalar("PRE_BUILD"),
            Some("configure --prefix=/usr --with-x"),
            "newlines collapse"
        );
        assert_eq!(s.raw.get("BUILT_MODULE_NAME", 3), Some("a"));
        assert_eq!(s.raw.scalar("X"), Some("from cli"));
        assert_eq!(s.stderr.trim(), "err");
    }

    #[test]
    fn later_files_override_and_missing_files_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        fs::write(&a, "PACKAGE_NAME=foo\nSTRIP=yes\n").unwrap();
        fs::write(&b, "STRIP[0]=\"$PACKAGE_NAME\"\n").unwrap();
        let s = source(&[a, d.path().join("missing"), b], WL, &[], &[]).unwrap();
        assert_eq!(s.raw.scalar("STRIP"), Some("foo"));
    }

    #[test]
    fn a_chatty_file_does_not_hang_the_read() {
        let d = tempfile::tempdir().unwrap();
        let conf = d.path().join("dkms.conf");
        fs::write(&conf, "head -c 300000 /dev/zero | tr '\\0' x >&2\nPACKAGE_NAME=foo\n").unwrap();
        let s = source(&[conf], WL, &[], &[]).unwrap();
        assert_eq!(s.raw.scalar("PACKAGE_NAME"), Some("foo"));
        assert!(s.stderr.len() >= 300000);
    }

    #[test]
    fn plain_assignments_need_no_shell() {
        let m = parse_plain_assignments("# c\n\nsource_tree=\"/srv/src\"\nparallel_jobs=3\nx='ab'\n").unwrap();
        assert_eq!(
            (m["source_tree"].as_str(), m["parallel_jobs"].as_str(), m["x"].as_str()),
            ("/srv/src", "3", "ab")
        );
        for needs_shell in [
            "sign_file=\"/lib/modules/${kernelver}/x\"",
            "if true; then x=1; fi",
            "x= y",
            "x=a*",
            "do_status() {",
        ] {
            assert!(parse_plain_assignments(needs_shell).is_none(), "{needs_shell}");
        }
    }
}
