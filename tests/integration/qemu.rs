//! The modules modsync builds load in the real kernel, and the ones it signs
//! carry a signature the real kernel checks against modsync's own MOK.
//!
//! hello (the bundled fixture) and v4l2loopback (a real Debian dkms source,
//! which needs the kernel's own mc and videodev) are built, signed and
//! installed by modsync (`generate_mok`, then `add` and `install`) into an
//! isolated tree for the newer test kernel; then the real Debian kernel
//! image boots twice under qemu (TCG: nested KVM proved unreliable)
//! with a busybox initramfs built here whose /init insmods the modules and
//! reports what the kernel said. The two boots show:
//!
//! * without enforcement the modsync-signed modules load and work (hello
//!   says hello and reports its version, v4l2loopback makes its device);
//! * with `module.sig_enforce=1` the kernel's own mc and videodev still
//!   load, while the modsync-signed modules are refused because their key is
//!   unknown to the kernel (EKEYREJECTED, "unavailable key"), not because
//!   the signature is malformed; the same module without its signature is
//!   refused as unsigned, and one with a broken signature as malformed
//!   (EBADMSG, also without enforcement): the controls that make the first
//!   point meaningful;
//! * the kernel's own X.509 parser accepts modsync's certificate and its own
//!   RSA code verifies the installed module's signature with it (add_key +
//!   KEYCTL_PKEY_VERIFY), and rejects a tampered digest: once the MOK is
//!   enrolled, the module verifies.
//!
//! On the host: the installed modules name modsync's key as signer with the
//! kernel's CONFIG_MODULE_SIG_HASH, `openssl cms -verify` accepts the
//! signature with the certificate `generate_mok` made, and installing did
//! not replace that key. Both boots happen once, in a shared fixture; each
//! test asserts on its part of the record.

use crate::guest::{boot, load, plain_module, section, BUSYBOX};
use crate::support::{dkms_source, image_dir, modinfo, require, require_root, run, run_ok, version_of, World};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

/// add_key(2) the certificate, then KEYCTL_PKEY_VERIFY the signature over
/// the digest, then again with a flipped digest byte. Static, so it runs
/// from the initramfs.
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
    hash: String,
    /// modinfo signer / sig_hashalgo of the installed hello and v4l2loopback.
    signers: Vec<(String, String, String)>,
    /// The certificate generate_mok made, and the one there after installing.
    cert_before: Vec<u8>,
    cert_after: Vec<u8>,
    generate_mok_out: String,
    openssl_verify: (bool, String),
    /// The init script and console of the boot without enforcement.
    permissive: (String, String),
    /// The same with module.sig_enforce=1.
    enforce: (String, String),
}

static RECORD: OnceLock<Result<Record, String>> = OnceLock::new();

fn record(test: &str) -> &'static Record {
    require_root(test);
    match RECORD.get_or_init(fixture) {
        Ok(r) => r,
        Err(e) => panic!("{test}: the qemu fixture failed: {e}"),
    }
}

/// The files modprobe would insmod for `module` in the world's tree, in order.
fn depends(w: &World, k: &str, module: &str) -> Vec<PathBuf> {
    let deps = run_ok(
        Command::new("modprobe")
            .arg("-d")
            .arg(w.root())
            .args(["-S", k, "--show-depends", module]),
    );
    let files: Vec<PathBuf> = deps
        .lines()
        .filter_map(|l| l.strip_prefix("insmod ").and_then(|r| r.split_whitespace().next()))
        .map(PathBuf::from)
        .collect();
    assert!(!files.is_empty(), "modprobe found no module file for {module}:\n{deps}");
    files
}

fn stem(p: &Path) -> String {
    let n = p.file_name().unwrap().to_string_lossy();
    n.split(".ko").next().unwrap().to_string()
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
    Ok((data[..end - sig_len].to_vec(), data[end - sig_len..end].to_vec()))
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

fn openssl_verify(d: &Path, payload: &[u8], der: &[u8], cert: &Path) -> (bool, String) {
    let pem = d.join("cert.pem");
    run_ok(
        Command::new("openssl")
            .args(["x509", "-inform", "DER", "-in"])
            .arg(cert)
            .arg("-out")
            .arg(&pem),
    );
    fs::write(d.join("payload"), payload).unwrap();
    fs::write(d.join("sig.der"), der).unwrap();
    let o = run(Command::new("openssl")
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
        .arg(&pem));
    (o.code == 0, o.text())
}

fn kconfig_value(config: &Path, key: &str) -> Option<String> {
    let text = fs::read_to_string(config).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(|v| v.trim().trim_matches('"').to_string())
}

fn fixture() -> Result<Record, String> {
    let t0 = Instant::now();
    let k = crate::support::test_kernels().pop().unwrap();
    let vmlinuz = image_dir(&k).join(format!("boot/vmlinuz-{k}"));
    let test = "qemu fixture";
    require(
        test,
        vmlinuz.is_file(),
        &format!("no kernel image {}", vmlinuz.display()),
    );
    require(
        test,
        Path::new(BUSYBOX).is_file(),
        &format!("no {BUSYBOX} (busybox-static)"),
    );
    let hash = kconfig_value(
        Path::new(&format!("/usr/src/linux-headers-{k}/.config")),
        "CONFIG_MODULE_SIG_HASH",
    )
    .ok_or(format!("kernel {k} has no CONFIG_MODULE_SIG_HASH"))?;

    let w = World::new(std::slice::from_ref(&k));
    let (key, cert) = (w.p("mok.key"), w.p("mok.pub"));
    let generate_mok_out = w.ok(&["generate_mok"]).text();
    if !key.is_file() || !cert.is_file() {
        return Err(format!(
            "generate_mok did not create {} and {}:\n{generate_mok_out}",
            key.display(),
            cert.display()
        ));
    }
    let cert_before = fs::read(&cert).unwrap();

    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hello-1.0");
    let v4l = dkms_source("v4l2loopback");
    let v4l_mv = format!("v4l2loopback/{}", version_of(&v4l, "v4l2loopback"));
    w.ok(&["add", hello.to_str().unwrap()]);
    w.ok(&["add", v4l.to_str().unwrap()]);
    w.ok(&["install", "hello/1.0", "-k", &k]);
    w.ok(&["install", &v4l_mv, "-k", &k]);
    eprintln!(
        "[{:>3}s] built, signed and installed hello and {v4l_mv} for {k}",
        t0.elapsed().as_secs()
    );
    let cert_after = fs::read(&cert).unwrap();

    let mut signers = Vec::new();
    for m in ["hello", "v4l2loopback"] {
        let f = w
            .installed_ko(&k, m)
            .ok_or(format!("{m} is not installed under updates/dkms for {k}"))?;
        signers.push((m.to_string(), modinfo("signer", &f), modinfo("sig_hashalgo", &f)));
    }

    let work = tempfile::tempdir().unwrap();
    let d = work.path();
    let hello_ko = plain_module(&w.installed_ko(&k, "hello").unwrap());
    let (payload, der) = split_signed(&hello_ko)?;
    let openssl_verify = openssl_verify(d, &payload, &der, &cert);
    // the broken signature: its outer SEQUENCE tag
    let mut corrupt = hello_ko.clone();
    if corrupt[payload.len()] != 0x30 {
        return Err(format!(
            "the signature does not start with a SEQUENCE: {:#x}",
            corrupt[payload.len()]
        ));
    }
    corrupt[payload.len()] = 0x31;

    // the kernel keyring check: the certificate, the digest and the raw signature
    fs::write(d.join("kcheck.c"), KCHECK_C).unwrap();
    let cc = run(Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(d.join("kcheck"))
        .arg(d.join("kcheck.c")));
    require(
        test,
        cc.code == 0,
        &format!("cannot build a static helper (cc -static; libc6-dev):\n{}", cc.show()),
    );
    let md = openssl::hash::MessageDigest::from_name(&hash).ok_or(format!("unknown hash {hash}"))?;
    let digest = openssl::hash::hash(md, &payload).map_err(|e| e.to_string())?;

    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("hello.ko".into(), hello_ko.clone()),
        ("unsigned.ko".into(), payload.clone()),
        ("corrupt.ko".into(), corrupt),
        ("kcheck".into(), fs::read(d.join("kcheck")).unwrap()),
        ("cert.der".into(), cert_after.clone()),
        ("digest".into(), digest.to_vec()),
        ("sig".into(), raw_rsa_signature(&der)?.to_vec()),
    ];
    let v4l_deps = depends(&w, &k, "v4l2loopback");
    for f in &v4l_deps {
        files.push((format!("{}.ko", stem(f)), plain_module(f)));
    }

    let mut permissive = vec![load("corrupt", "corrupt", "hello"), load("hello", "hello", "hello")];
    let mut enforce = vec![
        load("corrupt", "corrupt", "hello"),
        load("unsigned", "unsigned", "hello"),
        load("hello", "hello", "hello"),
    ];
    for f in &v4l_deps {
        let s = stem(f);
        permissive.push(load(&s, &s, &s));
        enforce.push(load(&s, &s, &s));
    }
    let sysfs = "echo '@@BEGIN sysfs'\necho \"hello-version $($B cat /sys/module/hello/version 2>&1)\"\n\
         for d in /sys/class/video4linux/*; do echo \"v4l-device $($B cat $d/name 2>&1)\"; done\necho '@@END sysfs'\n";
    let kcheck = format!(
        "{sysfs}echo '@@BEGIN kcheck'\n/m/kcheck /m/cert.der /m/digest /m/sig 'enc=pkcs1 hash={hash}' 2>&1; \
         echo \"@@RC $?\"\n$B dmesg -c\necho '@@END kcheck'\n"
    );

    // both boots at once (one vCPU each)
    let (plain, enforced) = std::thread::scope(|s| {
        let a = s.spawn(|| boot(&vmlinuz, d, "plain", &files, &permissive, sysfs, ""));
        let b = s.spawn(|| {
            boot(
                &vmlinuz,
                d,
                "enforce",
                &files,
                &enforce,
                &kcheck,
                "module.sig_enforce=1",
            )
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    eprintln!("[{:>3}s] both boots done", t0.elapsed().as_secs());
    Ok(Record {
        kver: k,
        hash,
        signers,
        cert_before,
        cert_after,
        generate_mok_out,
        openssl_verify,
        permissive: plain?,
        enforce: enforced?,
    })
}

#[test]
fn installed_modules_are_signed_with_the_generated_mok() {
    let r = record("installed_modules_are_signed_with_the_generated_mok");
    assert!(
        !r.cert_before.is_empty() && r.cert_before == r.cert_after,
        "installing replaced the certificate generate_mok made:\n{}",
        r.generate_mok_out
    );
    let x = openssl::x509::X509::from_der(&r.cert_after).expect("the MOK certificate is not DER X.509");
    let cn = x
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok())
        .unwrap_or_default();
    for (m, signer, algo) in &r.signers {
        assert_eq!(signer, &cn, "{m} for {}: signer is not the MOK's common name", r.kver);
        assert_eq!(
            algo, &r.hash,
            "{m} for {}: not signed with CONFIG_MODULE_SIG_HASH",
            r.kver
        );
    }
    assert!(
        r.openssl_verify.0,
        "openssl cms -verify refused hello's signature: {}",
        r.openssl_verify.1
    );
}

#[test]
fn built_modules_load_in_the_real_kernel() {
    let r = record("built_modules_load_in_the_real_kernel");
    let b = &r.permissive;
    let h = section(b, "hello");
    assert!(
        h.contains("@@RC 0") && h.contains("@@LOADED yes"),
        "kernel {}: {h}",
        r.kver
    );
    assert!(h.contains("hello: modsync example module loaded"), "{h}");
    // loads, but the kernel notes that it could not check the signature
    assert!(
        h.contains("module verification failed: signature and/or required key missing"),
        "{h}"
    );
    for m in ["mc", "videodev", "v4l2loopback"] {
        let s = section(b, m);
        assert!(s.contains("@@RC 0") && s.contains("@@LOADED yes"), "{m}: {s}");
    }
    let s = section(b, "sysfs");
    assert!(s.contains("hello-version 1.0"), "{s}");
    assert!(s.contains("v4l-device Dummy video device"), "{s}");
}

#[test]
fn sig_enforce_refuses_the_unenrolled_mok_as_unknown_not_malformed() {
    let r = record("sig_enforce_refuses_the_unenrolled_mok_as_unknown_not_malformed");
    let b = &r.enforce;
    for m in ["mc", "videodev"] {
        let s = section(b, m);
        assert!(
            s.contains("@@RC 0") && s.contains("@@LOADED yes"),
            "the kernel's own {m} must load under enforcement: {s}"
        );
    }
    for m in ["hello", "v4l2loopback"] {
        let s = section(b, m);
        assert!(s.contains("Key was rejected by service"), "kernel {}: {m}: {s}", r.kver);
        assert!(
            s.contains("Loading of module with unavailable key is rejected"),
            "{m}: {s}"
        );
        assert!(!s.contains("Bad message") && !s.contains("unsigned module"), "{m}: {s}");
        assert!(s.contains("@@LOADED no"), "{m}: {s}");
    }
}

#[test]
fn sig_enforce_refuses_the_module_without_its_signature() {
    let r = record("sig_enforce_refuses_the_module_without_its_signature");
    let s = section(&r.enforce, "unsigned");
    assert!(s.contains("Key was rejected by service"), "{s}");
    assert!(s.contains("Loading of unsigned module is rejected"), "{s}");
    assert!(s.contains("@@LOADED no"), "{s}");
}

#[test]
fn a_broken_signature_is_reported_as_malformed() {
    let r = record("a_broken_signature_is_reported_as_malformed");
    for b in [&r.enforce, &r.permissive] {
        let s = section(b, "corrupt");
        assert!(s.contains("Bad message"), "{s}");
        assert!(!s.contains("Key was rejected by service"), "{s}");
        assert!(s.contains("@@LOADED no"), "{s}");
    }
}

#[test]
fn the_kernel_accepts_the_mok_and_verifies_the_signature_with_it() {
    let r = record("the_kernel_accepts_the_mok_and_verifies_the_signature_with_it");
    let s = section(&r.enforce, "kcheck");
    assert!(
        s.contains("KCHECK add_key ok"),
        "the kernel's X.509 parser refused modsync's certificate: {s}"
    );
    assert!(
        s.contains("KCHECK verify ok"),
        "the kernel did not verify the module's signature: {s}"
    );
    assert!(
        s.contains("KCHECK tampered failed"),
        "a tampered digest must not verify: {s}"
    );
}
