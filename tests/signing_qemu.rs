//! Real-kernel proof of module signing: builds a tiny module against real Debian kernel
//! headers, signs it with a freshly generated key (`modsync::install::sign`), and boots the
//! matching real kernel under qemu (TCG) with a busybox initramfs built here, to show:
//!
//! * with `module.sig_enforce=1` the signed module is refused because its key is unknown
//!   to the kernel ("Loading of module with unavailable key is rejected", EKEYREJECTED),
//!   not because the signature is malformed (EBADMSG), and an unsigned module is refused
//!   too ("Loading of unsigned module is rejected");
//! * a deliberately corrupted signature *is* reported as malformed (the control that
//!   makes the first point meaningful);
//! * without enforcement the signed module loads;
//! * the kernel's own X.509 parser accepts the generated certificate and its own RSA code
//!   verifies the module's signature with it (keyctl add_key + KEYCTL_PKEY_VERIFY).
//!
//! Runs only as root (otherwise each test prints SKIP). Needs: kernel headers in
//! /usr/src/linux-headers-K, the kernel image in $MODSYNC_ACCEPTANCE_CACHE (default
//! /var/cache/modsync-acceptance)/img-K/boot/vmlinuz-K, qemu-system-x86_64, a static
//! /bin/busybox, make, gcc and the openssl command. K is $MODSYNC_TEST_KERNEL, or the
//! newest headers dir ending in -amd64 that has a matching image. All boots happen once,
//! in a shared fixture; each test asserts on its part of the record.

use std::cmp::Ordering;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use modsync::install::sign::{ensure_mok, is_signed, sign_module, SigningKey};

const MODULE: &str = "modsync_hello";
const HELLO_C: &str = r#"#include <linux/init.h>
#include <linux/module.h>

static int __init modsync_hello_init(void)
{
	pr_info("modsync_hello: hello from a signed module\n");
	return 0;
}

static void __exit modsync_hello_exit(void)
{
}

module_init(modsync_hello_init);
module_exit(modsync_hello_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modsync signing test module");
"#;

/// add_key(2) the certificate, then KEYCTL_PKEY_VERIFY the signature over the digest,
/// then again with a flipped digest byte. Static, so it runs from the initramfs.
const KCHECK_C: &str = r#"#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/keyctl.h>

static long slurp(const char *path, char *buf, long max)
{
	FILE *f = fopen(path, "rb");
	long n;
	if (!f)
		return -1;
	n = (long)fread(buf, 1, max, f);
	fclose(f);
	return n;
}

int main(int argc, char **argv)
{
	static char cert[16384], dig[128], sig[2048];
	struct keyctl_pkey_params p;
	long cl, dl, sl, id, r;
	if (argc != 5)
		return 2;
	cl = slurp(argv[1], cert, sizeof cert);
	dl = slurp(argv[2], dig, sizeof dig);
	sl = slurp(argv[3], sig, sizeof sig);
	if (cl <= 0 || dl <= 0 || sl <= 0) {
		printf("KCHECK read failed\n");
		return 1;
	}
	id = syscall(SYS_add_key, "asymmetric", "modsync-test", cert, (size_t)cl, KEY_SPEC_PROCESS_KEYRING);
	if (id < 0) {
		printf("KCHECK add_key failed: %s\n", strerror(errno));
		return 1;
	}
	printf("KCHECK add_key ok\n");
	memset(&p, 0, sizeof p);
	p.key_id = (int)id;
	p.in_len = (unsigned)dl;
	p.in2_len = (unsigned)sl;
	r = syscall(SYS_keyctl, KEYCTL_PKEY_VERIFY, &p, argv[4], dig, sig);
	if (r == 0)
		printf("KCHECK verify ok\n");
	else
		printf("KCHECK verify failed: %s\n", strerror(errno));
	dig[0] ^= 1;
	r = syscall(SYS_keyctl, KEYCTL_PKEY_VERIFY, &p, argv[4], dig, sig);
	if (r == 0)
		printf("KCHECK tampered ok\n");
	else
		printf("KCHECK tampered failed: %s\n", strerror(errno));
	fflush(stdout);
	return 0;
}
"#;

/// What the fixture observed; the tests assert on it.
struct Record {
    kver: String,
    unsigned_after_build: bool,
    signed_after_sign: bool,
    openssl_verify: (bool, String),
    /// Console of the boot with module.sig_enforce=1.
    enforce: String,
    /// Console of the boot without it.
    permissive: String,
    /// Why the kernel keyring check did not run, if it did not.
    kcheck_skipped: Option<String>,
}

/// The fixture's outcome: skipped (why), ran (what it saw), or broke (why).
enum Outcome {
    Skip(String),
    Ran(Record),
    Broke(String),
}

static RECORD: OnceLock<Outcome> = OnceLock::new();

/// The shared record, or None when the tests must be skipped (the reason is printed by
/// every test, so it shows next to whichever test is looked at).
fn record() -> Option<&'static Record> {
    let r = RECORD.get_or_init(|| {
        if unsafe { libc::geteuid() } != 0 {
            return Outcome::Skip(
                "signing_qemu tests need root (they build modules and boot qemu)".into(),
            );
        }
        let Some(k) = pick_kernel() else {
            return Outcome::Skip(format!(
                "no kernel with both /usr/src/linux-headers-K and {}/img-K/boot/vmlinuz-K \
                 (set MODSYNC_TEST_KERNEL; the acceptance env.sh prepares the cache)",
                cache_dir().display()
            ));
        };
        match run_fixture(&k) {
            Ok(rec) => Outcome::Ran(rec),
            Err(e) => Outcome::Broke(e),
        }
    });
    match r {
        Outcome::Skip(why) => {
            eprintln!("SKIP: {why}");
            None
        }
        Outcome::Ran(rec) => Some(rec),
        Outcome::Broke(e) => panic!("signing_qemu fixture failed: {e}"),
    }
}

struct Kernel {
    kver: String,
    headers: PathBuf,
    vmlinuz: PathBuf,
}

fn cache_dir() -> PathBuf {
    std::env::var_os("MODSYNC_ACCEPTANCE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/modsync-acceptance"))
}

fn kernel_for(kver: &str) -> Kernel {
    Kernel {
        kver: kver.to_string(),
        headers: PathBuf::from(format!("/usr/src/linux-headers-{kver}")),
        vmlinuz: cache_dir().join(format!("img-{kver}/boot/vmlinuz-{kver}")),
    }
}

fn pick_kernel() -> Option<Kernel> {
    if let Ok(kver) = std::env::var("MODSYNC_TEST_KERNEL") {
        let k = kernel_for(&kver);
        // explicitly requested: missing pieces are failures, not skips
        assert!(
            k.headers.join("Makefile").is_file(),
            "MODSYNC_TEST_KERNEL={kver}: no headers at {}",
            k.headers.display()
        );
        assert!(
            k.vmlinuz.is_file(),
            "MODSYNC_TEST_KERNEL={kver}: no image at {}",
            k.vmlinuz.display()
        );
        return Some(k);
    }
    let mut found: Vec<Kernel> = fs::read_dir("/usr/src")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let kver = name.strip_prefix("linux-headers-")?.to_string();
            kver.ends_with("-amd64").then(|| kernel_for(&kver))
        })
        .filter(|k| k.headers.join("Makefile").is_file() && k.vmlinuz.is_file())
        .collect();
    found.sort_by(|a, b| version_cmp(&a.kver, &b.kver));
    found.pop()
}

/// Compares versions chunk by chunk, digits numerically ("6.12.1" > "6.1.0-56").
fn version_cmp(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, String)> {
        let mut out: Vec<(bool, String)> = Vec::new();
        for c in s.chars() {
            let d = c.is_ascii_digit();
            match out.last_mut() {
                Some((ld, cur)) if *ld == d => cur.push(c),
                _ => out.push((d, c.to_string())),
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let o = match (x.0, y.0) {
            (true, true) => {
                x.1.parse::<u64>()
                    .unwrap_or(0)
                    .cmp(&y.1.parse::<u64>().unwrap_or(0))
            }
            _ => x.1.cmp(&y.1),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    ca.len().cmp(&cb.len())
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let o = cmd.output().map_err(|e| format!("running {cmd:?}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    if o.status.success() {
        Ok(text)
    } else {
        Err(format!("{cmd:?} failed ({}):\n{text}", o.status))
    }
}

fn run_fixture(k: &Kernel) -> Result<Record, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let d = dir.path();
    let e = |what: &str, err: &dyn std::fmt::Display| format!("{what}: {err}");

    // 1. build the module against the real headers
    let src = d.join("src");
    fs::create_dir_all(&src).map_err(|x| e("mkdir", &x))?;
    fs::write(src.join(format!("{MODULE}.c")), HELLO_C).map_err(|x| e("write .c", &x))?;
    fs::write(src.join("Kbuild"), format!("obj-m := {MODULE}.o\n"))
        .map_err(|x| e("write Kbuild", &x))?;
    run(Command::new("make")
        .arg("-C")
        .arg(&k.headers)
        .arg(format!("M={}", src.display()))
        .arg("-j1")
        .arg("modules"))?;
    let built = src.join(format!("{MODULE}.ko"));
    let unsigned_after_build = !is_signed(&built).map_err(|x| e("is_signed", &x))?;

    // 2. sign a copy with a fresh key, using the kernel's configured hash
    let hash = kconfig_value(&k.headers.join(".config"), "CONFIG_MODULE_SIG_HASH")
        .unwrap_or_else(|| "sha256".into());
    let key = SigningKey {
        key: d.join("keys/mok.key"),
        cert: d.join("keys/mok.der"),
    };
    if !ensure_mok(&key).map_err(|x| e("ensure_mok", &format!("{x:#}")))? {
        return Err("ensure_mok did not create a key in an empty dir".into());
    }
    let signed = d.join("signed.ko");
    fs::copy(&built, &signed).map_err(|x| e("copy", &x))?;
    sign_module(&signed, &hash, &key).map_err(|x| e("sign_module", &format!("{x:#}")))?;
    let signed_after_sign = is_signed(&signed).map_err(|x| e("is_signed", &x))?;
    let signed_bytes = fs::read(&signed).map_err(|x| e("read", &x))?;
    let (payload, der) = split_signed(&signed_bytes)?;
    let openssl_verify = openssl_verify(d, &payload, &der, &key.cert)?;

    // 3. a copy whose signature is malformed (outer SEQUENCE tag broken)
    let corrupt = d.join("corrupt.ko");
    let mut bytes = signed_bytes.clone();
    let der_start = payload.len();
    if bytes[der_start] != 0x30 {
        return Err(format!(
            "signature does not start with a SEQUENCE: {:#x}",
            bytes[der_start]
        ));
    }
    bytes[der_start] = 0x31;
    fs::write(&corrupt, &bytes).map_err(|x| e("write corrupt", &x))?;

    // 4. the kernel keyring check: raw signature + digest + cert, static helper
    let mut extra: Vec<(String, Vec<u8>)> = Vec::new();
    let kcheck_skipped = match build_kcheck(d) {
        Err(why) => Some(why),
        Ok(bin) => {
            let sig = raw_rsa_signature(&der)?;
            let md = openssl::hash::MessageDigest::from_name(&hash)
                .ok_or(format!("unknown hash {hash}"))?;
            let digest = openssl::hash::hash(md, &payload).map_err(|x| e("digest", &x))?;
            extra.push((
                "kcheck".into(),
                fs::read(bin).map_err(|x| e("read kcheck", &x))?,
            ));
            extra.push((
                "cert.der".into(),
                fs::read(&key.cert).map_err(|x| e("read cert", &x))?,
            ));
            extra.push(("digest".into(), digest.to_vec()));
            extra.push(("sig".into(), sig.to_vec()));
            None
        }
    };
    let kcheck_cmd = kcheck_skipped
        .is_none()
        .then(|| format!("/m/kcheck /m/cert.der /m/digest /m/sig 'enc=pkcs1 hash={hash}'"));

    let modules = |names: &[(&str, &Path)]| -> Result<Vec<(String, Vec<u8>)>, String> {
        names
            .iter()
            .map(|(n, p)| {
                Ok((
                    format!("{n}.ko"),
                    fs::read(p).map_err(|x| e("read module", &x))?,
                ))
            })
            .collect()
    };
    // 5. boot with enforcement: every variant must be refused
    let mut files = modules(&[
        ("signed", &signed),
        ("unsigned", &built),
        ("corrupt", &corrupt),
    ])?;
    files.extend(extra.iter().cloned());
    let enforce = boot(
        k,
        d,
        &files,
        &["signed", "unsigned", "corrupt"],
        kcheck_cmd.as_deref(),
        "module.sig_enforce=1",
    )?;
    // 6. boot without: the malformed one is still refused, the signed one loads
    let files = modules(&[("signed", &signed), ("corrupt", &corrupt)])?;
    let permissive = boot(k, d, &files, &["corrupt", "signed"], None, "")?;

    Ok(Record {
        kver: k.kver.clone(),
        unsigned_after_build,
        signed_after_sign,
        openssl_verify,
        enforce,
        permissive,
        kcheck_skipped,
    })
}

fn kconfig_value(config: &Path, key: &str) -> Option<String> {
    let text = fs::read_to_string(config).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(|v| v.trim().trim_matches('"').to_string())
}

/// (payload, PKCS#7 DER) of a signed module; checks the struct and the magic.
fn split_signed(data: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    const MAGIC: &[u8] = b"~Module signature appended~\n";
    if !data.ends_with(MAGIC) || data.len() < 40 {
        return Err("no module signature magic".into());
    }
    let st = &data[data.len() - 40..data.len() - 28];
    if st[..8] != [0, 0, 2, 0, 0, 0, 0, 0] {
        return Err(format!("unexpected module_signature header {st:?}"));
    }
    let sig_len = u32::from_be_bytes([st[8], st[9], st[10], st[11]]) as usize;
    let end = data.len() - 40;
    if sig_len == 0 || sig_len > end {
        return Err(format!("bad sig_len {sig_len}"));
    }
    Ok((
        data[..end - sig_len].to_vec(),
        data[end - sig_len..end].to_vec(),
    ))
}

/// The RSA signature is the SignerInfo's last element, an OCTET STRING at the very end.
fn raw_rsa_signature(der: &[u8]) -> Result<&[u8], String> {
    for n in [256usize, 384, 512] {
        let hdr = [0x04, 0x82, (n >> 8) as u8, n as u8];
        if der.len() > n + 4 && der[der.len() - n - 4..der.len() - n] == hdr {
            return Ok(&der[der.len() - n..]);
        }
    }
    Err("no RSA signature OCTET STRING at the end of the PKCS#7 blob".into())
}

fn openssl_verify(
    d: &Path,
    payload: &[u8],
    der: &[u8],
    cert: &Path,
) -> Result<(bool, String), String> {
    let pem = d.join("cert.pem");
    run(Command::new("openssl")
        .args(["x509", "-inform", "DER", "-in"])
        .arg(cert)
        .arg("-out")
        .arg(&pem))?;
    fs::write(d.join("payload"), payload).map_err(|x| x.to_string())?;
    fs::write(d.join("sig.der"), der).map_err(|x| x.to_string())?;
    let o = Command::new("openssl")
        .args([
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-purpose",
            "any",
            "-out",
            "/dev/null",
            "-in",
        ])
        .arg(d.join("sig.der"))
        .arg("-content")
        .arg(d.join("payload"))
        .arg("-certfile")
        .arg(&pem)
        .arg("-CAfile")
        .arg(&pem)
        .output()
        .map_err(|x| format!("running openssl: {x}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    Ok((o.status.success(), text))
}

fn build_kcheck(d: &Path) -> Result<PathBuf, String> {
    let c = d.join("kcheck.c");
    let bin = d.join("kcheck");
    fs::write(&c, KCHECK_C).map_err(|x| x.to_string())?;
    run(Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&c))
    .map_err(|x| format!("cannot build a static helper (cc -static; libc6-dev?): {x}"))?;
    Ok(bin)
}

/// True if the ELF file has no PT_INTERP program header (statically linked).
fn is_static_elf(path: &Path) -> bool {
    let Ok(b) = fs::read(path) else { return false };
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 {
        return false;
    }
    let u16at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16at(0x36), u16at(0x38));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        o + 4 <= b.len() && u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) != 3
    })
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
    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, &[], (0, 0));
    }
    fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, 0o100000 | mode, data, (0, 0));
    }
    fn finish(mut self) -> Vec<u8> {
        self.ino = 0;
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.buf
    }
}

/// Boots the kernel with an initramfs holding `files` under /m, insmods each of `order`
/// (/m/NAME.ko) and reports per module, runs `extra_cmd`, powers off. Returns the console.
fn boot(
    k: &Kernel,
    d: &Path,
    files: &[(String, Vec<u8>)],
    order: &[&str],
    extra_cmd: Option<&str>,
    append: &str,
) -> Result<String, String> {
    let busybox = Path::new("/bin/busybox");
    if !is_static_elf(busybox) {
        return Err(
            "/bin/busybox is missing or not statically linked (apt-get install busybox-static)"
                .into(),
        );
    }
    let mut init = String::from(
        "#!/bin/busybox sh\nB=/bin/busybox\n$B mount -t proc proc /proc\n$B mount -t sysfs sys /sys\n\
         $B mount -t devtmpfs dev /dev 2>/dev/null\n$B dmesg -c >/dev/null\necho '@@INIT'\n",
    );
    for m in order {
        init.push_str(&format!(
            "echo '@@BEGIN {m}'\n$B insmod /m/{m}.ko 2>&1; echo \"@@RC $?\"\n$B dmesg -c\n\
             if $B grep -q '^{MODULE} ' /proc/modules; then echo '@@LOADED yes'; else echo '@@LOADED no'; fi\n\
             echo '@@END {m}'\n"
        ));
    }
    if let Some(cmd) = extra_cmd {
        init.push_str(&format!("echo '@@BEGIN kcheck'\n{cmd} 2>&1; echo \"@@RC $?\"\n$B dmesg -c\necho '@@END kcheck'\n"));
    }
    init.push_str("echo '@@DONE'\n$B poweroff -f\n");

    let mut c = Cpio::default();
    for dname in ["bin", "dev", "proc", "sys", "m"] {
        c.dir(dname);
    }
    c.entry("dev/console", 0o020600, &[], (5, 1));
    c.file(
        "bin/busybox",
        0o755,
        &fs::read(busybox).map_err(|x| x.to_string())?,
    );
    c.file("init", 0o755, init.as_bytes());
    for (name, data) in files {
        c.file(&format!("m/{name}"), 0o755, data);
    }
    let initrd = d.join("initrd.cpio");
    fs::write(&initrd, c.finish()).map_err(|x| x.to_string())?;

    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-smp",
            "1",
            "-m",
            "768",
            "-nographic",
            "-no-reboot",
            "-kernel",
        ])
        .arg(&k.vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        .arg("-append")
        .arg(format!("console=ttyS0 quiet panic=-1 {append}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|x| format!("starting qemu-system-x86_64: {x}"))?;
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
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|x| x.to_string())? {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let console = String::from_utf8_lossy(&reader.join().unwrap_or_default()).replace('\r', "");
    let stderr = String::from_utf8_lossy(&ereader.join().unwrap_or_default()).into_owned();
    if status.is_none() {
        return Err(format!(
            "qemu did not finish within 300 s ({append}); console:\n{console}"
        ));
    }
    if !console.contains("@@DONE") {
        return Err(format!("the initramfs did not run to the end ({append}); console:\n{console}\nqemu stderr:\n{stderr}"));
    }
    Ok(console)
}

/// The lines printed between "@@BEGIN name" and "@@END name".
fn section<'a>(console: &'a str, name: &str) -> &'a str {
    let begin = format!("@@BEGIN {name}\n");
    let Some(start) = console.find(&begin) else {
        panic!("no section {name} in console:\n{console}")
    };
    let rest = &console[start + begin.len()..];
    let end = rest.find(&format!("@@END {name}")).unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn module_is_signed_and_verifies_with_openssl() {
    let Some(r) = record() else { return };
    assert!(
        r.unsigned_after_build,
        "a fresh build of the module should not carry a signature"
    );
    assert!(
        r.signed_after_sign,
        "sign_module did not append the signature"
    );
    assert!(
        r.openssl_verify.0,
        "openssl cms -verify failed: {}",
        r.openssl_verify.1
    );
}

#[test]
fn sig_enforce_rejects_key_unknown_to_the_kernel_not_as_malformed() {
    let Some(r) = record() else { return };
    let s = section(&r.enforce, "signed");
    assert!(
        s.contains("Key was rejected by service"),
        "kernel {}: {s}",
        r.kver
    );
    assert!(
        s.contains("Loading of module with unavailable key is rejected"),
        "kernel {}: {s}",
        r.kver
    );
    assert!(
        !s.contains("Bad message") && !s.contains("unsigned module"),
        "{s}"
    );
    assert!(s.contains("@@LOADED no"), "{s}");
}

#[test]
fn sig_enforce_rejects_unsigned_module() {
    let Some(r) = record() else { return };
    let s = section(&r.enforce, "unsigned");
    assert!(s.contains("Key was rejected by service"), "{s}");
    assert!(s.contains("Loading of unsigned module is rejected"), "{s}");
    assert!(s.contains("@@LOADED no"), "{s}");
}

#[test]
fn malformed_signature_is_reported_as_bad_message() {
    let Some(r) = record() else { return };
    for console in [&r.enforce, &r.permissive] {
        let s = section(console, "corrupt");
        assert!(s.contains("Bad message"), "{s}");
        assert!(!s.contains("Key was rejected by service"), "{s}");
        assert!(s.contains("@@LOADED no"), "{s}");
    }
}

#[test]
fn without_sig_enforce_the_signed_module_loads() {
    let Some(r) = record() else { return };
    let s = section(&r.permissive, "signed");
    assert!(s.contains("@@RC 0"), "{s}");
    assert!(s.contains("@@LOADED yes"), "{s}");
    assert!(
        s.contains("modsync_hello: hello from a signed module"),
        "{s}"
    );
    // loads, but the kernel notes that it could not check the signature
    assert!(
        s.contains("module verification failed: signature and/or required key missing"),
        "{s}"
    );
}

#[test]
fn kernel_parses_generated_cert_and_verifies_the_signature() {
    let Some(r) = record() else { return };
    if let Some(why) = &r.kcheck_skipped {
        eprintln!("SKIP: kernel keyring check: {why}");
        return;
    }
    let s = section(&r.enforce, "kcheck");
    assert!(
        s.contains("KCHECK add_key ok"),
        "the kernel's X.509 parser refused the certificate: {s}"
    );
    assert!(
        s.contains("KCHECK verify ok"),
        "the kernel did not verify the module signature: {s}"
    );
    assert!(
        s.contains("KCHECK tampered failed"),
        "a tampered digest must not verify: {s}"
    );
}

#[test]
fn version_order() {
    assert_eq!(
        version_cmp("6.12.117+deb12-amd64", "6.1.0-56-amd64"),
        Ordering::Greater
    );
    assert_eq!(
        version_cmp("6.1.0-56-amd64", "6.1.0-54-amd64"),
        Ordering::Greater
    );
    assert_eq!(
        version_cmp("6.1.0-9-amd64", "6.1.0-10-amd64"),
        Ordering::Less
    );
}
