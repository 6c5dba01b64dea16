//! A real bootable Debian 12 BIOS disk with GRUB, for the tests that need
//! the real boot loader: what `update-grub` writes and what GRUB then boots.
//!
//! What it proves by itself ([`grub_boots_the_default_then_a_chosen_kernel`]):
//! a fresh [`Disk`] boots the newest test kernel through GRUB under qemu; a
//! `GRUB_DEFAULT` naming the older kernel's entry in the "Advanced options"
//! submenu, written to `/etc/default/grub.d` in the disk's own system and
//! followed by its own `update-grub`, makes the next boot the older kernel;
//! a hook in `/usr/local/sbin/boot-report.d` runs at boot.
//!
//! The disk: a 4 GiB sparse raw image with an msdos partition table and one
//! ext4 root partition from sector 2048; the debootstrap minbase of
//! `tests/setup.sh` extracted into it, then, in its chroot, grub-pc and both
//! test kernels' linux-image packages installed by apt from a local
//! repository (no network), `grub-install --target=i386-pc` onto the whole
//! disk and `update-grub`. GRUB and the kernel talk on the serial port,
//! `GRUB_TIMEOUT=0`, and the kernel runs `init=/usr/local/sbin/boot-report`
//! instead of a full boot: it prints `@@BOOTED <uname -r>`, runs the hooks
//! in `/usr/local/sbin/boot-report.d/` (each framed by `@@HOOK path` and
//! `@@HOOK-EXIT rc`), prints `@@POWEROFF` and powers off (sysrq `o`). The
//! root file system is mounted read-only there and nothing writes to it.
//! The image is built once per test process (the template) and each [`Disk`]
//! is a sparse copy of it.
//!
//! The image's system is entered like a rescue chroot: in a private mount
//! (and PID) namespace, a loop device for the whole disk and one for the root
//! partition (at its offset: the kernels these tests run on may lack msdos
//! partition support, so no `--partscan`), the partition mounted as `/`, a
//! private `/dev` (the two devices, the root's `/dev/disk/by-uuid` link;
//! the partition's node is named `/dev/modsync-root`, since GRUB's 10_linux
//! skips a root on `/dev/loopN`), fresh `/proc`, `/sys` and `/run`. So
//! `grub-probe`, `grub-install` and `update-grub` work there as on the real
//! machine, GRUB's view of the root device aside (a whole disk, not a
//! partition: it finds it by UUID either way). Both loop devices are
//! detached on their last close (lazy `losetup -d` right away), so they go
//! with the namespace whatever happens; each session and the [`Disk`]'s
//! `Drop` also detach whatever is still attached to the image. Nothing is
//! mounted on the host.
//!
//! Booting: qemu with TCG (nested KVM proved unreliable, see
//! [`crate::guest`]), the image as a virtio disk with `snapshot=on` (a boot
//! never changes it), the serial console into `console-N.log` beside the
//! image. The image lives in a temp dir under /var/cache/modsync-test/tmp
//! (`MODSYNC_TEST_KEEP=1` keeps it and the template).
//!
//! Needs root, qemu, losetup, sfdisk/partx, mkfs.ext4, and from
//! `tests/setup.sh`: the minbase tarball and the local repository
//! /var/cache/modsync-test/grub-disk (grub-pc with its dependencies and the
//! test kernels' images, indexed).

use crate::overlay_root::{host, indent, q, require_tools, tail, Outcome};
use crate::support::{require, require_root, test_kernels, CACHE};
use std::cell::Cell;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const TEST: &str = "grub_disk::grub_boots_the_default_then_a_chosen_kernel";
/// The debootstrap minbase of `tests/setup.sh` (and apt.rs).
const BASE_TARBALL: &str = "bookworm-minbase-2.tar";
/// The local apt repository of `tests/setup.sh`: grub-pc and its
/// dependencies, the test kernels' images, and a `Packages` index.
const REPO: &str = "grub-disk";
const IMAGE_SIZE: u64 = 4 << 30;
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
const PATH_IN_IMAGE: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The kernel command line beside root= (GRUB_CMDLINE_LINUX).
const CMDLINE: &str = "console=ttyS0,115200 init=/usr/local/sbin/boot-report panic=-1";

/// Enters the image's installed system; runs in `unshare --mount --pid`.
/// Arguments: IMAGE MOUNTPOINT FRESH PREPARE REPO SCRIPT. FRESH=1 makes the
/// file system first; PREPARE runs on the host side with the root mounted
/// at $r (before /dev, /proc... are set up); REPO, when not empty, is bound
/// read-only at /srv/modsync-test-debs; SCRIPT runs in the chroot with bash
/// (-e -o pipefail), with $DISK_DEVICE (the whole disk) and $DISK_ROOT_UUID.
const ENTER: &str = r#"set -euo pipefail
img=$1 r=$2 fresh=$3 prepare=$4 repo=$5 script=$6
# the whole disk, held open by fd 9 while detached at once: the kernel
# frees it on its last close, however this session ends
d=$(losetup --find --show "$img")
exec 9<"$d"
losetup -d "$d"
# the root partition at its offset (read from the table, not by --partscan)
read -r start sectors < <(partx -g -o START,SECTORS -n 1 "$img")
p=$(losetup --find --show --offset $((start * 512)) --sizelimit $((sectors * 512)) "$img")
if [ "$fresh" = 1 ]; then
  mkfs.ext4 -q -L modsync-root "$p" || { losetup -d "$p"; exit 1; }
fi
mount "$p" "$r" || { losetup -d "$p"; exit 1; }
losetup -d "$p"
eval "$prepare"
uuid=$(blkid -s UUID -o value "$p")
mount -t tmpfs -o mode=755 dev "$r/dev"
mkdir -p "$r/dev/pts" "$r/dev/shm" "$r/dev/disk/by-uuid"
for n in null zero full random urandom tty; do cp -a "/dev/$n" "$r/dev/"; done
cp -a "$d" "$r/dev/"
# GRUB's 10_linux skips a root on /dev/loopN: the root's node has its own
# name, and grub-probe resolves the mounted /dev/loopN through the link
cp -a "$p" "$r/dev/modsync-root"
ln -s modsync-root "$r/dev/${p#/dev/}"
ln -s ../../modsync-root "$r/dev/disk/by-uuid/$uuid"
ln -s /proc/self/fd "$r/dev/fd"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$r/dev/pts"
ln -s pts/ptmx "$r/dev/ptmx"
mount -t proc proc "$r/proc"
mount -t sysfs sysfs "$r/sys"
mount -t tmpfs tmpfs "$r/run"
if [ -n "$repo" ]; then
  mkdir -p "$r/srv/modsync-test-debs"
  mount --bind -o ro "$repo" "$r/srv/modsync-test-debs"
fi
rc=0
chroot "$r" /usr/bin/env -i PATH="$PATH_IN_IMAGE" HOME=/root LC_ALL=C.UTF-8 TERM=dumb \
  DEBIAN_FRONTEND=noninteractive DISK_DEVICE="$d" DISK_ROOT_UUID="$uuid" \
  /bin/bash -o pipefail -ec "$script" 9<&- || rc=$?
exec 9<&-
umount -R "$r" || echo "grub_disk: umount -R failed; the namespace's end unmounts" >&2
exit $rc
"#;

/// The init of the disk's system (see the module docs).
const BOOT_REPORT: &str = r#"#!/bin/sh
# init= of the modsync test disk (tests/integration/grub_disk.rs): reports
# which kernel booted, runs the hooks in /usr/local/sbin/boot-report.d,
# powers off. The root file system is read-only: nothing is written to it.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mountpoint -q /run || mount -t tmpfs tmpfs /run
echo "@@BOOTED $(uname -r)"
echo "@@CMDLINE $(cat /proc/cmdline)"
for hook in /usr/local/sbin/boot-report.d/*; do
  [ -f "$hook" ] && [ -x "$hook" ] || continue
  echo "@@HOOK $hook"
  "$hook" </dev/null 2>&1
  echo "@@HOOK-EXIT $?"
done
echo "@@POWEROFF"
echo o >/proc/sysrq-trigger
sleep 60
# still here: init's exit panics the kernel; panic=-1 reboots, which ends qemu (-no-reboot)
exit 1
"#;

/// One boot of a [`Disk`].
pub struct Booted {
    /// `uname -r` of the kernel GRUB booted.
    pub release: String,
    /// Everything on the serial console (GRUB, the kernel, the init), `\r` removed.
    pub console: String,
    pub elapsed: Duration,
}

/// A bootable GRUB disk image of its own (see the module docs).
pub struct Disk {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    image: PathBuf,
    boots: Cell<u32>,
}

impl Disk {
    /// A fresh disk: a sparse copy of the process's template image, which
    /// the first call builds. `test` names the test in failures and the
    /// temp dir.
    pub fn new(test: &str) -> Disk {
        let template = template(test);
        let parent = Path::new(CACHE).join("tmp");
        fs::create_dir_all(&parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        let prefix = format!("grub-disk.{}.", test.rsplit("::").next().unwrap_or(test));
        let dir = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(&parent)
            .unwrap_or_else(|e| panic!("a temp dir in {}: {e}", parent.display()));
        let path = dir.path().to_path_buf();
        let image = path.join("disk.img");
        fs::create_dir(path.join("root")).unwrap();
        let t0 = Instant::now();
        let out = host(Command::new("cp").arg("--sparse=always").arg(template).arg(&image));
        assert!(out.ok, "{test}: copying the template image:\n{}", out.output);
        eprintln!(
            "[grub_disk] {}: copied the template in {:.1}s",
            path.display(),
            t0.elapsed().as_secs_f64()
        );
        Disk {
            dir: Some(dir),
            path,
            image,
            boots: Cell::new(0),
        }
    }

    /// Runs a bash script (`-e -o pipefail`, stderr into stdout) as root in
    /// the disk's installed system (see the module docs).
    pub fn sh(&self, script: &str) -> Outcome {
        session(&self.image, &self.path.join("root"), false, "", &[], None, script)
    }

    /// Like [`sh`](Self::sh); panics with the output unless it succeeds.
    pub fn must(&self, what: &str, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.ok,
            "in the disk's system, failed: {what}\n{}",
            indent(&tail(&out.output, 80))
        );
        out.output
    }

    /// Copies a host file or directory to `path` in the disk's system
    /// (`cp -a`, owned by root; parents are created).
    pub fn put(&self, host_path: &Path, path: &str) {
        let to = format!("/{}", path.trim_start_matches('/'));
        let out = session(
            &self.image,
            &self.path.join("root"),
            false,
            r#"mkdir -p "$(dirname "$r$PUT_TO")"; cp -a --no-preserve=ownership "$PUT_FROM" "$r$PUT_TO""#,
            &[("PUT_FROM", &host_path.to_string_lossy()), ("PUT_TO", &to)],
            None,
            "true",
        );
        assert!(
            out.ok,
            "copying {} to {to} in the disk:\n{}",
            host_path.display(),
            indent(&tail(&out.output, 40))
        );
    }

    /// Boots the disk ([`boot`](Self::boot)) and asserts that it came up
    /// on kernel `release` (`what` says why it should), quoting the
    /// console's tail otherwise.
    pub fn boots(&self, release: &str, what: &str) -> Booted {
        let b = self.boot().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            b.release,
            release,
            "{what}; console:\n{}",
            indent(&tail(&b.console, 40))
        );
        b
    }

    /// Boots the disk under qemu (TCG, BIOS, GRUB from the disk's MBR) and
    /// returns what the serial console showed and the release the init
    /// reported; an error when the boot did not get there or did not power
    /// off within the timeout. The image is not changed (`snapshot=on`).
    pub fn boot(&self) -> Result<Booted, String> {
        let n = self.boots.get() + 1;
        self.boots.set(n);
        let console = self.path.join(format!("console-{n}.log"));
        let qemu_log = self.path.join(format!("qemu-{n}.log"));
        let image = self.image.to_string_lossy();
        assert!(!image.contains(','), "qemu's -drive cannot take {image}");
        let log = fs::File::create(&qemu_log).map_err(|e| format!("create {}: {e}", qemu_log.display()))?;
        let t0 = Instant::now();
        let mut child = Command::new("qemu-system-x86_64")
            // TCG: nested KVM often cannot run these kernels (see guest.rs)
            .args(["-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", "1024"])
            .args(["-display", "none", "-monitor", "none", "-no-reboot"])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-drive")
            .arg(format!("file={image},format=raw,if=virtio,snapshot=on"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting qemu-system-x86_64: {e}"))?;
        let deadline = t0 + BOOT_TIMEOUT;
        let status = loop {
            if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
                break Some(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let elapsed = t0.elapsed();
        let text = fs::read(&console)
            .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
            .unwrap_or_default();
        let qemu_said = fs::read_to_string(&qemu_log).unwrap_or_default();
        let why = match status {
            None => Some(format!("qemu did not power off within {BOOT_TIMEOUT:?}")),
            Some(st) if !st.success() => Some(format!("qemu exited with {st}: {qemu_said}")),
            Some(_) if !text.contains("@@POWEROFF") => Some("the init did not run to its end".to_string()),
            Some(_) => None,
        };
        match (why, booted_release(&text)) {
            (None, Some(release)) => {
                eprintln!(
                    "[grub_disk] boot {n} of {}: {release} in {:.1}s",
                    self.path.display(),
                    elapsed.as_secs_f64()
                );
                Ok(Booted {
                    release,
                    console: text,
                    elapsed,
                })
            }
            (why, _) => Err(format!(
                "boot {n} of {}: {} (after {:.0}s); console:\n{}",
                self.image.display(),
                why.unwrap_or_else(|| "no @@BOOTED line".into()),
                elapsed.as_secs_f64(),
                indent(&tail(&text, 60))
            )),
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        release_loops(&self.image);
        if env::var("MODSYNC_TEST_KEEP").is_ok_and(|v| v == "1") {
            if let Some(d) = self.dir.take() {
                eprintln!("kept the GRUB disk in {}", d.keep().display());
            }
        }
    }
}

/// The release in the init's `@@BOOTED` line.
pub fn booted_release(console: &str) -> Option<String> {
    console
        .lines()
        .find_map(|l| l.trim().strip_prefix("@@BOOTED "))
        .map(|k| k.trim().to_string())
}

/// The `GRUB_DEFAULT` value that picks kernel `k`'s normal entry in the
/// "Advanced options" submenu of a Debian grub.cfg: `SUBMENU-ID>ENTRY-ID`
/// (`gnulinux-advanced-UUID>gnulinux-K-advanced-UUID`).
pub fn grub_default_for(grub_cfg: &str, k: &str) -> Result<String, String> {
    let id = |line: &str| {
        let rest = &line[line.find("$menuentry_id_option '")? + "$menuentry_id_option '".len()..];
        Some(rest[..rest.find('\'')?].to_string())
    };
    let want = format!("gnulinux-{k}-advanced-");
    let mut submenu = None;
    for line in grub_cfg.lines().map(str::trim_start) {
        if line.starts_with("submenu ") {
            submenu = id(line);
        } else if line.starts_with("menuentry ") {
            if let (Some(sub), Some(entry)) = (&submenu, id(line).filter(|e| e.starts_with(&want))) {
                return Ok(format!("{sub}>{entry}"));
            }
        }
    }
    Err(format!("no entry {want}* in a submenu of grub.cfg:\n{grub_cfg}"))
}

// ---------------------------------------------------------------------------
// the template image, and entering an image

static TEMPLATE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
static TEMPLATE_DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_template() {
    if let Some(dir) = TEMPLATE_DIR.get() {
        let _ = fs::remove_dir_all(dir);
    }
}

/// The process's template image, built on first use.
fn template(test: &str) -> &'static Path {
    match TEMPLATE.get_or_init(|| build_template(test)) {
        Ok(p) => p,
        Err(e) => panic!("{test}: building the GRUB disk image failed:\n{e}"),
    }
}

fn build_template(test: &str) -> Result<PathBuf, String> {
    require_root(test);
    require_tools(
        test,
        &[
            "unshare",
            "losetup",
            "partx",
            "sfdisk",
            "mkfs.ext4",
            "blkid",
            "tar",
            "chroot",
            "qemu-system-x86_64",
        ],
    );
    let ks = test_kernels();
    let tarball = Path::new(CACHE).join(BASE_TARBALL);
    let repo = Path::new(CACHE).join(REPO);
    require(
        test,
        tarball.is_file(),
        &format!("no debootstrap minbase tarball {}", tarball.display()),
    );
    let index = fs::read_to_string(repo.join("Packages")).unwrap_or_default();
    for p in ["grub-pc"]
        .into_iter()
        .map(String::from)
        .chain(ks.iter().map(|k| format!("linux-image-{k}")))
    {
        require(
            test,
            index.lines().any(|l| l == format!("Package: {p}")),
            &format!("{p} is not in the local repository {}", repo.display()),
        );
    }

    let dir = Path::new(CACHE)
        .join("tmp")
        .join(format!("grub-disk-template.{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("root")).map_err(|e| format!("create {}: {e}", dir.display()))?;
    if env::var("MODSYNC_TEST_KEEP").is_ok_and(|v| v == "1") {
        eprintln!("[grub_disk] keeping the template image in {}", dir.display());
    } else {
        TEMPLATE_DIR.set(dir.clone()).expect("one template per process");
        // SAFETY: registers a plain function that only removes a directory.
        unsafe { libc::atexit(remove_template) };
    }
    let image = dir.join("disk.img");
    let t0 = Instant::now();
    fs::File::create(&image)
        .and_then(|f| f.set_len(IMAGE_SIZE))
        .map_err(|e| format!("create {}: {e}", image.display()))?;
    let mut sfdisk = Command::new("sfdisk");
    sfdisk
        .args(["-q", "--no-reread", "--no-tell-kernel"])
        .arg(&image)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = sfdisk.spawn().map_err(|e| format!("run sfdisk: {e}"))?;
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        b"label: dos\nstart=2048, type=83, bootable\n",
    )
    .map_err(|e| e.to_string())?;
    let o = child.wait_with_output().map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!(
            "sfdisk {}: {}",
            image.display(),
            String::from_utf8_lossy(&o.stderr)
        ));
    }

    let kernels: Vec<String> = ks.iter().map(|k| format!("linux-image-{k}")).collect();
    let checks: String = ks
        .iter()
        .map(|k| {
            format!(
                "test -f /boot/vmlinuz-{k} && test -f /boot/initrd.img-{k} && grep -q \"gnulinux-{k}-advanced-$DISK_ROOT_UUID\" /boot/grub/grub.cfg\n"
            )
        })
        .collect();
    let script = format!(
        r#"cat >/etc/fstab <<EOF
UUID=$DISK_ROOT_UUID / ext4 errors=remount-ro 0 1
EOF
# apt from the local repository only
echo 'deb [trusted=yes] file:/srv/modsync-test-debs ./' >/etc/apt/modsync-test-disk.list
A="-o Dir::Etc::SourceList=/etc/apt/modsync-test-disk.list -o Dir::Etc::SourceParts=/nonexistent -o Acquire::Languages=none -o Dpkg::Use-Pty=0"
apt-get $A update -q
echo 'grub-pc grub-pc/install_devices_empty boolean true' | debconf-set-selections
apt-get $A install -y -q --no-install-recommends grub-pc {kernels}
cat >>/etc/default/grub <<'EOF'

# the modsync test disk (tests/integration/grub_disk.rs): no menu delay,
# GRUB and the kernel on the serial port, an init that reports and powers off
GRUB_TIMEOUT=0
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_CMDLINE_LINUX="{CMDLINE}"
GRUB_CMDLINE_LINUX_DEFAULT=""
EOF
mkdir -p /usr/local/sbin/boot-report.d
cat >/usr/local/sbin/boot-report <<'EOF'
{BOOT_REPORT}EOF
chmod 755 /usr/local/sbin/boot-report
# GRUB sees the root as a whole disk of its own (see the module docs): the
# msdos module must be in core.img for the search by UUID to find it at boot
grub-install --target=i386-pc --modules="part_msdos ext2" "$DISK_DEVICE"
update-grub
{checks}"#,
        kernels = kernels.join(" "),
    );
    let out = session(
        &image,
        &dir.join("root"),
        true,
        r#"tar -C "$r" -xf "$TARBALL""#,
        &[("TARBALL", &tarball.to_string_lossy())],
        Some(&repo),
        &script,
    );
    if !out.ok {
        return Err(format!(
            "building {} failed:\n{}",
            image.display(),
            indent(&tail(&out.output, 80))
        ));
    }
    eprintln!(
        "[grub_disk] built the template image {} in {:.1}s",
        image.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(image)
}

/// One session in an image's system (see [`ENTER`]); afterwards nothing
/// is attached to the image any more.
fn session(
    image: &Path,
    mountpoint: &Path,
    fresh: bool,
    prepare: &str,
    env: &[(&str, &str)],
    repo: Option<&Path>,
    script: &str,
) -> Outcome {
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--pid", "--fork", "--kill-child"])
        .args(["--", "/bin/bash", "-c", ENTER, "grub-disk-enter"])
        .arg(image)
        .arg(mountpoint)
        .arg(if fresh { "1" } else { "0" })
        .arg(prepare)
        .arg(repo.map(|r| r.as_os_str()).unwrap_or_default())
        .arg(format!("exec 2>&1\n{script}"))
        .env("PATH_IN_IMAGE", PATH_IN_IMAGE)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run unshare");
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    if let Some(left) = release_loops(image) {
        output.push_str(&format!(
            "\ngrub_disk: loop devices still attached after the session: {left}"
        ));
        return Outcome { ok: false, output };
    }
    Outcome {
        ok: out.status.success(),
        output,
    }
}

/// Waits for the loop devices of `image` to go (they detach on their last
/// close, which can lag the end of the namespace a little), then detaches
/// those that stay. Returns the ones that had to be detached here.
fn release_loops(image: &Path) -> Option<String> {
    let attached = || {
        let o = host(Command::new("losetup").args(["-n", "-O", "NAME", "-j"]).arg(image));
        // the device names only (an error message is not one)
        o.output
            .split_whitespace()
            .filter(|w| w.starts_with("/dev/loop"))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = attached();
        if left.is_empty() {
            return None;
        }
        if Instant::now() > deadline {
            for dev in &left {
                let _ = host(Command::new("losetup").arg("-d").arg(dev));
            }
            return Some(left.join(" "));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn grub_boots_the_default_then_a_chosen_kernel() {
    require_root(TEST);
    let ks = test_kernels();
    let (old, new) = (ks[0].as_str(), ks[ks.len() - 1].as_str());
    let t0 = Instant::now();
    let disk = Disk::new(TEST);
    eprintln!("[grub_disk] disk ready in {:.1}s", t0.elapsed().as_secs_f64());

    let first = disk.boots(new, "a fresh disk boots the newest kernel");

    let cfg = disk.must("read grub.cfg", "cat /boot/grub/grub.cfg");
    let default = grub_default_for(&cfg, old).unwrap_or_else(|e| panic!("{e}"));
    disk.must(
        "choose the older kernel",
        &format!(
            "printf 'GRUB_DEFAULT=\"%s\"\\n' {} >/etc/default/grub.d/zz-test.cfg\nupdate-grub",
            q(&default)
        ),
    );
    // a hook of the init, put in from the host
    let hook_dir = tempfile::tempdir().unwrap();
    let hook = hook_dir.path().join("say-hello");
    fs::write(&hook, "#!/bin/sh\necho \"hello from the hook on $(uname -r)\"\n").unwrap();
    fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    disk.put(&hook, "/usr/local/sbin/boot-report.d/say-hello");

    let second = disk.boots(old, &format!("GRUB_DEFAULT={default} boots the older kernel"));
    assert!(
        second
            .console
            .contains(&format!("hello from the hook on {old}\n@@HOOK-EXIT 0")),
        "the boot-report hook ran; console:\n{}",
        indent(&tail(&second.console, 40))
    );
    eprintln!(
        "[grub_disk] total {:.1}s (boots {:.1}s and {:.1}s)",
        t0.elapsed().as_secs_f64(),
        first.elapsed.as_secs_f64(),
        second.elapsed.as_secs_f64()
    );
}

#[test]
fn the_grub_default_of_a_kernel_is_its_advanced_entry_in_the_submenu() {
    let cfg = "\
menuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple-U' {
}
submenu 'Advanced options for Debian GNU/Linux' $menuentry_id_option 'gnulinux-advanced-U' {
\tmenuentry 'Debian GNU/Linux, with Linux 6.1.0-56-amd64' --class os $menuentry_id_option 'gnulinux-6.1.0-56-amd64-advanced-U' {
\t}
\tmenuentry 'Debian GNU/Linux, with Linux 6.1.0-54-amd64 (recovery mode)' $menuentry_id_option 'gnulinux-6.1.0-54-amd64-recovery-U' {
\t}
\tmenuentry 'Debian GNU/Linux, with Linux 6.1.0-54-amd64' --class os $menuentry_id_option 'gnulinux-6.1.0-54-amd64-advanced-U' {
\t}
}
";
    assert_eq!(
        grub_default_for(cfg, "6.1.0-54-amd64").unwrap(),
        "gnulinux-advanced-U>gnulinux-6.1.0-54-amd64-advanced-U"
    );
    assert!(grub_default_for(cfg, "6.1.0-5-amd64").is_err());
    assert_eq!(
        booted_release("x\n@@BOOTED 6.1.0-54-amd64\n@@POWEROFF\n").as_deref(),
        Some("6.1.0-54-amd64")
    );
}
