//! Time in a cache that several hosts share: their clocks may disagree, so
//! every time the cache compares comes from the file server. An entry is
//! marked used with `utimensat(..., NULL)` (NFS sends "set to the server's
//! time"), and "now" is the modification time of a probe file just created
//! in the cache directory. Leftovers (temporaries, trash, leases, probes)
//! count as abandoned after [`STALE`] of server time without change.

use super::names;
use anyhow::{Context, Result};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// How long a temporary, trash directory, lease or probe may sit unchanged
/// before anyone may remove it: far longer than a copy takes.
pub const STALE: Duration = Duration::from_secs(3600);

/// The file server's current time, read in `dir`.
pub fn server_now(dir: &Path) -> Result<SystemTime> {
    let probe = dir.join(names::clock());
    let file = std::fs::File::create(&probe).with_context(|| format!("creating {}", probe.display()));
    let now = file.and_then(|f| {
        f.metadata()
            .and_then(|m| m.modified())
            .with_context(|| format!("reading the time of {}", probe.display()))
    });
    let _ = std::fs::remove_file(&probe);
    now
}

/// Sets `path`'s times to the file server's "now" (following no link).
pub fn touch(path: &Path) -> std::io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call; a null
    // `times` means "now" and is documented as allowed.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), std::ptr::null(), libc::AT_SYMLINK_NOFOLLOW) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// How long ago (by `now`) `path` last changed; a time in the future counts as just now.
pub fn age(path: &Path, now: SystemTime) -> Option<Duration> {
    let t = std::fs::symlink_metadata(path).and_then(|m| m.modified()).ok()?;
    Some(now.duration_since(t).unwrap_or_default())
}

/// True when `path` is older than [`STALE`] by `now` (false when it is gone).
pub fn stale(path: &Path, now: SystemTime) -> bool {
    age(path, now).is_some_and(|a| a > STALE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::FileTimes;

    #[test]
    fn the_probe_leaves_nothing_and_touch_makes_old_things_new() {
        let d = tempfile::tempdir().unwrap();
        let now = server_now(d.path()).unwrap();
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "the probe stayed");
        let old = d.path().join("old");
        std::fs::create_dir(&old).unwrap();
        let two_hours_ago = now - Duration::from_secs(7200);
        std::fs::File::open(&old)
            .unwrap()
            .set_times(FileTimes::new().set_modified(two_hours_ago))
            .unwrap();
        assert!(stale(&old, now));
        touch(&old).unwrap();
        assert!(!stale(&old, server_now(d.path()).unwrap()));
        assert!(!stale(&d.path().join("missing"), now));
        assert!(touch(&d.path().join("missing")).is_err());
    }
}
