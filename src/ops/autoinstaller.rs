//! `modsync autoinstaller ACTION [KERNEL]`: what
//! `/usr/lib/dkms/dkms_autoinstaller` runs (a shim that execs this), with
//! dkms's behaviour, since scripts and dkms's own test suite call that path:
//! `start [KERNEL]` (default: the running kernel) skips with dkms's message
//! and exit 0 when the kernel's headers are missing, and otherwise is
//! `dkms autoinstall --kernelver KERNEL` (which honours
//! /etc/dkms/no-autoinstall) with its exit code folded to 0 or 1; the init
//! script actions `stop`, `restart`, `force-reload`, `status` and `reload`
//! do nothing; anything else prints the usage and exits 2.

use super::{autoinstall, Cx, Target};
use crate::ui::Sink;

/// The actions of dkms's init script that do nothing.
const NO_OPS: &[&str] = &["stop", "restart", "force-reload", "status", "reload"];

/// Runs one action; returns the exit code. Errors of the autoinstall are
/// printed in dkms's shape and give 1, as the shell script's `test $res = 0`.
pub fn run(cx: &Cx, action: &str, t: &Target, sink: &dyn Sink) -> i32 {
    if NO_OPS.contains(&action) {
        return 0;
    }
    if action != "start" {
        sink.out("Usage: /usr/lib/dkms/dkms_autoinstaller {start}");
        return 2;
    }
    let Some((release, arch)) = t.kernels.first() else {
        return 0;
    };
    if !cx.kernel(release, arch).has_headers() {
        sink.out(&format!(
            "Automatic installation of modules for kernel {release} was skipped since the kernel headers for this kernel do not seem to be installed."
        ));
        return 0;
    }
    match autoinstall::autoinstall(cx, t, "autoinstall", sink) {
        Ok(0) => 0,
        Ok(_) => 1,
        Err(e) => {
            sink.error(&format!("{e:#}"));
            1
        }
    }
}
