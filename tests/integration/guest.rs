//! Booting the real Debian kernel image under qemu with a busybox initramfs
//! built here, for the tests that load modules in the real kernel
//! ([`qemu`](crate::qemu), [`fleet`](crate::fleet)).
//!
//! What it proves by itself: nothing; it runs a guest. [`boot`] packs the
//! module files into `/m` of an initramfs whose `/init` insmods each one
//! ([`Load`]), reports the return code, the kernel's messages and whether
//! `/proc/modules` lists it, runs a tail script, and powers off; [`section`]
//! reads one step's report from the console. TCG only: nested KVM proved
//! unreliable with these kernels.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const BUSYBOX: &str = "/bin/busybox";
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// The module file for the guest: decompressed (busybox insmod reads plain
/// modules only), as `name.ko`.
pub fn plain_module(path: &Path) -> Vec<u8> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        Some(("xz", vec!["-dc"]))
    } else if name.ends_with(".zst") {
        Some(("zstd", vec!["-qdc"]))
    } else if name.ends_with(".gz") {
        Some(("gzip", vec!["-dc"]))
    } else {
        None
    };
    match tool {
        None => fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())),
        Some((t, args)) => {
            let o = Command::new(t).args(args).arg(path).output().unwrap();
            assert!(o.status.success(), "{t} -d {}", path.display());
            o.stdout
        }
    }
}

/// A newc cpio archive (uncompressed; the kernel unpacks it as the initramfs).
#[derive(Default)]
struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        self.ino += 1;
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let fields = [
            self.ino,
            mode,
            0,
            0,
            nlink,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }
    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.buf
    }
}

/// One step of the guest's /init: insmod `/m/<file>.ko` and report whether
/// `/proc/modules` then lists `name`.
pub struct Load {
    label: String,
    file: String,
    name: String,
    /// rmmod it again after the report, so another copy can load next.
    unload: bool,
}

pub fn load(label: &str, file: &str, name: &str) -> Load {
    Load {
        label: label.into(),
        file: file.into(),
        name: name.replace('-', "_"),
        unload: false,
    }
}

/// Like [`load`], then `rmmod` (reported as `@@UNLOADED yes|no`).
pub fn load_then_unload(label: &str, file: &str, name: &str) -> Load {
    Load {
        unload: true,
        ..load(label, file, name)
    }
}

/// Boots `vmlinuz` with an initramfs holding `files` under /m, runs `loads`
/// and then `tail` (shell, `$B` is busybox; sections of its own), powers
/// off. `name` names the initramfs file in `work`. Returns the init script
/// and the console.
pub fn boot(
    vmlinuz: &Path,
    work: &Path,
    name: &str,
    files: &[(String, Vec<u8>)],
    loads: &[Load],
    tail: &str,
    append: &str,
) -> Result<(String, String), String> {
    let mut init = String::from(
        "#!/bin/busybox sh\nB=/bin/busybox\n$B mount -t proc proc /proc\n$B mount -t sysfs sys /sys\n\
         $B mount -t devtmpfs dev /dev 2>/dev/null\n$B dmesg -c >/dev/null\necho '@@INIT'\n",
    );
    for l in loads {
        init.push_str(&format!(
            "echo '@@BEGIN {label}'\n$B insmod /m/{file}.ko 2>&1; echo \"@@RC $?\"\n$B dmesg -c\n\
             if $B grep -q '^{name} ' /proc/modules; then echo '@@LOADED yes'; else echo '@@LOADED no'; fi\n",
            label = l.label,
            file = l.file,
            name = l.name
        ));
        if l.unload {
            init.push_str(&format!(
                "$B rmmod {name} 2>&1\n\
                 if $B grep -q '^{name} ' /proc/modules; then echo '@@UNLOADED no'; else echo '@@UNLOADED yes'; fi\n",
                name = l.name
            ));
        }
        init.push_str(&format!("echo '@@END {}'\n", l.label));
    }
    init.push_str(tail);
    init.push_str("echo '@@DONE'\n$B poweroff -f\n");

    let mut c = Cpio::default();
    for d in ["bin", "dev", "proc", "sys", "m"] {
        c.entry(d, 0o040755, &[], (0, 0));
    }
    c.entry("dev/console", 0o020600, &[], (5, 1));
    c.entry(
        "bin/busybox",
        0o100755,
        &fs::read(BUSYBOX).map_err(|e| e.to_string())?,
        (0, 0),
    );
    c.entry("init", 0o100755, init.as_bytes(), (0, 0));
    for (name, data) in files {
        c.entry(&format!("m/{name}"), 0o100755, data, (0, 0));
    }
    let initrd = work.join(format!("initrd-{name}.cpio"));
    fs::write(&initrd, c.finish()).map_err(|e| e.to_string())?;

    // TCG: KVM is not used even where /dev/kvm opens, since nested KVM
    // often cannot run this kernel (qemu aborts setting MSRs, or hangs)
    let accel = ["-accel", "tcg", "-cpu", "max"];
    let mut child = Command::new("qemu-system-x86_64")
        .args(accel)
        .args(["-smp", "1", "-m", "768", "-nographic", "-no-reboot", "-kernel"])
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        .arg("-append")
        .arg(format!("console=ttyS0 quiet panic=-1 {append}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting qemu-system-x86_64: {e}"))?;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let ereader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let finished = loop {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            break true;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let console = String::from_utf8_lossy(&reader.join().unwrap_or_default()).replace('\r', "");
    let stderr = String::from_utf8_lossy(&ereader.join().unwrap_or_default()).into_owned();
    let accel = "tcg";
    if !finished {
        return Err(format!(
            "qemu ({accel}) did not finish within {BOOT_TIMEOUT:?} ({append}); console:\n{console}"
        ));
    }
    if !console.contains("@@DONE") {
        return Err(format!(
            "the initramfs did not run to the end ({accel}, {append}); init:\n{init}\nconsole:\n{console}\nqemu stderr:\n{stderr}"
        ));
    }
    Ok((init, console))
}

/// The lines printed between "@@BEGIN name" and "@@END name".
pub fn section<'a>(boot: &'a (String, String), name: &str) -> &'a str {
    let (init, console) = boot;
    let begin = format!("@@BEGIN {name}\n");
    let Some(start) = console.find(&begin) else {
        panic!("no section {name} in the console; init:\n{init}\nconsole:\n{console}")
    };
    let rest = &console[start + begin.len()..];
    let end = rest.find(&format!("@@END {name}")).unwrap_or(rest.len());
    &rest[..end]
}
