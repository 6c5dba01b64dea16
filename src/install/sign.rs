//! Kernel module signing, done natively (no `sign-file` binary needed).
//!
//! The kernel accepts a module whose file ends with
//!
//! ```text
//! <module bytes> <PKCS#7 SignedData, DER> <struct module_signature, 12 bytes> "~Module signature appended~\n"
//! ```
//!
//! `struct module_signature` is `{ u8 algo, hash, id_type, signer_len, key_id_len; u8 pad[3]; __be32 sig_len }`
//! with `id_type = 2` (PKEY_ID_PKCS7) and every other byte zero; `sig_len` is the length of the DER blob.
//!
//! The SignedData is what the kernel's `scripts/sign-file` makes with OpenSSL's CMS API
//! (detached, binary, no certificates, no signed attributes, signer identified by the
//! issuer and serial number of its certificate): version 1, one digest algorithm,
//! encapsulated content type `id-data` without content, one SignerInfo whose signature is
//! computed directly over the module bytes. The `openssl` crate does not expose
//! `CMS_add1_signer`, the only CMS call that lets the caller choose the digest
//! (`CONFIG_MODULE_SIG_HASH` may be sha512 while OpenSSL's default is sha256), so the few
//! DER structures are assembled here while OpenSSL does all of the cryptography (digest,
//! RSA/ECDSA signature, X.509 parsing and generation). For RSA keys the output is
//! byte-identical to sign-file's; a unit test checks that against the real binary.
//!
//! Keys: a PEM (or DER) private key and an X.509 certificate in DER (or PEM), the layout
//! dkms uses for its MOK (`mok.key` / `mok.pub`); [`ensure_mok`] creates such a pair.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509NameBuilder, X509};

/// The trailer every signed module ends with.
pub const MAGIC: &[u8] = b"~Module signature appended~\n";
/// Size of `struct module_signature`.
const SIG_STRUCT_LEN: usize = 12;
/// `id_type` value for a PKCS#7 signature.
const PKEY_ID_PKCS7: u8 = 2;
/// Common name of the certificate [`ensure_mok`] generates.
pub const MOK_COMMON_NAME: &str = "modsync module signing key";
/// Validity of the generated certificate (100 years, as dkms's `-days 36500`).
const MOK_DAYS: u32 = 36500;

/// A private key and the certificate that goes with it (the certificate is what gets
/// enrolled as a Machine Owner Key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    /// Private key, PEM (PKCS#8 or traditional) or DER.
    pub key: PathBuf,
    /// X.509 certificate, DER or PEM.
    pub cert: PathBuf,
}

/// Creates a MOK key pair if either file is missing (RSA 2048, self-signed X.509,
/// CN "modsync module signing key", extendedKeyUsage codeSigning, 100 years; private key
/// mode 0600, cert DER). Returns true if it created them.
///
/// Like dkms, a lone key or lone certificate is replaced by a fresh pair: one half is of
/// no use without the other. Both files are written to temporary names first and then
/// renamed into place.
pub fn ensure_mok(k: &SigningKey) -> Result<bool> {
    if k.key.exists() && k.cert.exists() {
        return Ok(false);
    }
    if k.key.exists() || k.cert.exists() {
        log::warn!(
            "only one of {} and {} exists; generating a new key pair",
            k.key.display(),
            k.cert.display()
        );
    }
    for p in [&k.key, &k.cert] {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)
                .with_context(|| format!("creating directory {}", dir.display()))?;
        }
    }
    let (key_pem, cert_der) = generate_mok()
        .with_context(|| format!("generating a signing key for {}", k.key.display()))?;
    let key_tmp = tmp_name(&k.key);
    let cert_tmp = tmp_name(&k.cert);
    write_new(&key_tmp, &key_pem, 0o600)?;
    write_new(&cert_tmp, &cert_der, 0o644)?;
    fs::rename(&key_tmp, &k.key)
        .with_context(|| format!("renaming {} to {}", key_tmp.display(), k.key.display()))?;
    fs::rename(&cert_tmp, &k.cert)
        .with_context(|| format!("renaming {} to {}", cert_tmp.display(), k.cert.display()))?;
    log::info!(
        "created module signing key {} and certificate {}",
        k.key.display(),
        k.cert.display()
    );
    Ok(true)
}

/// Signs the module file in place with the given hash algorithm name from
/// CONFIG_MODULE_SIG_HASH ("sha256", "sha512", ...). Refuses a module that is already
/// signed (ends with the magic) -- return Ok(()) without change in that case.
///
/// The signed file is written next to the module and renamed over it, keeping the
/// module's permissions, so a crash never leaves a half-signed module behind.
pub fn sign_module(ko: &Path, hash: &str, k: &SigningKey) -> Result<()> {
    if is_signed(ko)? {
        log::debug!("{} is already signed, leaving it alone", ko.display());
        return Ok(());
    }
    let alg = HashAlg::from_name(hash)
        .with_context(|| format!("signing {}: unsupported hash {hash:?}", ko.display()))?;
    let pkey = read_private_key(&k.key)?;
    let cert = read_cert(&k.cert)?;
    let cert_key = cert
        .public_key()
        .with_context(|| format!("reading the public key of {}", k.cert.display()))?;
    if !cert_key.public_eq(&pkey) {
        bail!(
            "the private key {} does not belong to the certificate {}",
            k.key.display(),
            k.cert.display()
        );
    }
    let sig_alg = match pkey.id() {
        Id::RSA => SigAlg::Rsa,
        Id::EC => SigAlg::Ecdsa,
        other => bail!(
            "signing {}: key {} has type {other:?}; only RSA and EC keys can sign modules",
            ko.display(),
            k.key.display()
        ),
    };

    let meta = fs::metadata(ko).with_context(|| format!("reading {}", ko.display()))?;
    let mut input = fs::File::open(ko).with_context(|| format!("opening {}", ko.display()))?;
    let tmp = tmp_name(ko);
    let _ = fs::remove_file(&tmp);
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let result = (|| -> Result<()> {
        let mut signer = Signer::new(alg.md, &pkey)
            .with_context(|| format!("setting up a {hash} signature with {}", k.key.display()))?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = input
                .read(&mut buf)
                .with_context(|| format!("reading {}", ko.display()))?;
            if n == 0 {
                break;
            }
            signer.update(&buf[..n]).context("hashing the module")?;
            out.write_all(&buf[..n])
                .with_context(|| format!("writing {}", tmp.display()))?;
        }
        let signature = signer
            .sign_to_vec()
            .with_context(|| format!("signing {} with {}", ko.display(), k.key.display()))?;
        let der = pkcs7_signed_data(&cert, alg, sig_alg, &signature)
            .with_context(|| format!("encoding the signature of {}", ko.display()))?;
        out.write_all(&trailer(&der)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        out.set_permissions(fs::Permissions::from_mode(meta.permissions().mode()))
            .with_context(|| format!("setting permissions of {}", tmp.display()))?;
        fs::rename(&tmp, ko)
            .with_context(|| format!("renaming {} to {}", tmp.display(), ko.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// True if the file ends with the module signature magic.
pub fn is_signed(ko: &Path) -> Result<bool> {
    let mut f = fs::File::open(ko).with_context(|| format!("opening {}", ko.display()))?;
    let len = f
        .metadata()
        .with_context(|| format!("reading {}", ko.display()))?
        .len();
    if len < MAGIC.len() as u64 {
        return Ok(false);
    }
    let mut tail = [0u8; MAGIC.len()];
    f.seek(SeekFrom::End(-(MAGIC.len() as i64)))
        .and_then(|_| f.read_exact(&mut tail))
        .with_context(|| format!("reading the end of {}", ko.display()))?;
    Ok(tail[..] == *MAGIC)
}

/// `struct module_signature` plus the magic, for a signature of `der.len()` bytes,
/// preceded by the signature itself.
fn trailer(der: &[u8]) -> Result<Vec<u8>> {
    let sig_len = u32::try_from(der.len()).context("signature larger than 4 GiB")?;
    let mut t = Vec::with_capacity(der.len() + SIG_STRUCT_LEN + MAGIC.len());
    t.extend_from_slice(der);
    // algo, hash, id_type, signer_len, key_id_len, pad[3]
    t.extend_from_slice(&[0, 0, PKEY_ID_PKCS7, 0, 0, 0, 0, 0]);
    t.extend_from_slice(&sig_len.to_be_bytes());
    t.extend_from_slice(MAGIC);
    Ok(t)
}

/// A digest usable for module signatures, with the OIDs the SignedData needs.
#[derive(Clone, Copy)]
struct HashAlg {
    md: MessageDigest,
    /// The digest algorithm itself.
    oid: &'static [u64],
    /// ecdsa-with-<hash>.
    ecdsa_oid: &'static [u64],
}

impl HashAlg {
    fn from_name(name: &str) -> Result<HashAlg> {
        let (md, oid, ecdsa_oid): (_, &'static [u64], &'static [u64]) =
            match name.trim().to_ascii_lowercase().as_str() {
                "sha1" => (MessageDigest::sha1(), &[1, 3, 14, 3, 2, 26], &[1, 2, 840, 10045, 4, 1]),
                "sha224" => (
                    MessageDigest::sha224(),
                    &[2, 16, 840, 1, 101, 3, 4, 2, 4],
                    &[1, 2, 840, 10045, 4, 3, 1],
                ),
                "sha256" => (
                    MessageDigest::sha256(),
                    &[2, 16, 840, 1, 101, 3, 4, 2, 1],
                    &[1, 2, 840, 10045, 4, 3, 2],
                ),
                "sha384" => (
                    MessageDigest::sha384(),
                    &[2, 16, 840, 1, 101, 3, 4, 2, 2],
                    &[1, 2, 840, 10045, 4, 3, 3],
                ),
                "sha512" => (
                    MessageDigest::sha512(),
                    &[2, 16, 840, 1, 101, 3, 4, 2, 3],
                    &[1, 2, 840, 10045, 4, 3, 4],
                ),
                "sha3-256" => (
                    MessageDigest::sha3_256(),
                    &[2, 16, 840, 1, 101, 3, 4, 2, 8],
                    &[2, 16, 840, 1, 101, 3, 4, 3, 10],
                ),
                "sha3-384" => (
                    MessageDigest::sha3_384(),
                    &[2, 16, 840, 1, 101, 3, 4, 2, 9],
                    &[2, 16, 840, 1, 101, 3, 4, 3, 11],
                ),
                "sha3-512" => (
                    MessageDigest::sha3_512(),
                    &[2, 16, 840, 1, 101, 3, 4, 2, 10],
                    &[2, 16, 840, 1, 101, 3, 4, 3, 12],
                ),
                _ => bail!("expected one of sha1, sha224, sha256, sha384, sha512, sha3-256, sha3-384, sha3-512"),
            };
        Ok(HashAlg { md, oid, ecdsa_oid })
    }
}

#[derive(Clone, Copy)]
enum SigAlg {
    Rsa,
    Ecdsa,
}

const OID_SIGNED_DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 2];
const OID_DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 1];
const OID_RSA_ENCRYPTION: &[u64] = &[1, 2, 840, 113549, 1, 1, 1];

/// ContentInfo { signedData, [0] SignedData } for a detached signature without signed
/// attributes, the signer named by issuer and serial number, no certificates.
fn pkcs7_signed_data(cert: &X509, alg: HashAlg, sig: SigAlg, signature: &[u8]) -> Result<Vec<u8>> {
    // AlgorithmIdentifier of the digest: parameters absent, as OpenSSL writes SHA-2/SHA-3.
    let digest_alg = seq(&[&oid(alg.oid)]);
    let signature_alg = match sig {
        SigAlg::Rsa => seq(&[&oid(OID_RSA_ENCRYPTION), &tlv(0x05, &[])]),
        SigAlg::Ecdsa => seq(&[&oid(alg.ecdsa_oid)]),
    };
    let issuer = cert
        .issuer_name()
        .to_der()
        .context("encoding the certificate issuer")?;
    let serial = cert
        .serial_number()
        .to_bn()
        .context("reading the certificate serial number")?;
    let issuer_and_serial = seq(&[&issuer, &integer(&serial)]);
    let signer_info = seq(&[
        &integer_u8(1),
        &issuer_and_serial,
        &digest_alg,
        &signature_alg,
        &tlv(0x04, signature),
    ]);
    let signed_data = seq(&[
        &integer_u8(1),
        &tlv(0x31, &digest_alg),  // digestAlgorithms SET
        &seq(&[&oid(OID_DATA)]),  // encapContentInfo, content detached
        &tlv(0x31, &signer_info), // signerInfos SET
    ]);
    Ok(seq(&[&oid(OID_SIGNED_DATA), &tlv(0xa0, &signed_data)]))
}

/// One DER TLV with a definite length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let be = n.to_be_bytes();
        let skip = be.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (be.len() - skip) as u8);
        out.extend_from_slice(&be[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn integer_u8(v: u8) -> Vec<u8> {
    if v >= 0x80 {
        tlv(0x02, &[0, v])
    } else {
        tlv(0x02, &[v])
    }
}

/// A non-negative INTEGER (certificate serials are positive).
fn integer(n: &BigNum) -> Vec<u8> {
    let mut v = n.to_vec();
    if v.is_empty() || v[0] & 0x80 != 0 {
        v.insert(0, 0);
    }
    tlv(0x02, &v)
}

/// An OBJECT IDENTIFIER from its arcs.
fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut push = |mut v: u64| {
        let mut tmp = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            tmp.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        tmp.reverse();
        body.extend_from_slice(&tmp);
    };
    push(arcs[0] * 40 + arcs[1]);
    for &a in &arcs[2..] {
        push(a);
    }
    tlv(0x06, &body)
}

fn read_private_key(path: &Path) -> Result<PKey<Private>> {
    if path.to_string_lossy().starts_with("pkcs11:") {
        bail!(
            "{}: PKCS#11 keys are not supported by the built-in signer",
            path.display()
        );
    }
    let bytes =
        fs::read(path).with_context(|| format!("reading signing key {}", path.display()))?;
    PKey::private_key_from_pem(&bytes)
        .or_else(|_| PKey::private_key_from_der(&bytes))
        .with_context(|| {
            format!(
                "parsing signing key {} (expected PEM or DER)",
                path.display()
            )
        })
}

fn read_cert(path: &Path) -> Result<X509> {
    let bytes =
        fs::read(path).with_context(|| format!("reading certificate {}", path.display()))?;
    X509::from_der(&bytes)
        .or_else(|_| X509::from_pem(&bytes))
        .with_context(|| {
            format!(
                "parsing certificate {} (expected DER or PEM)",
                path.display()
            )
        })
}

/// RSA 2048 key (PKCS#8 PEM) and a self-signed certificate (DER) with the extensions
/// `openssl req -x509 -addext extendedKeyUsage=codeSigning` produces (the dkms recipe).
fn generate_mok() -> Result<(Vec<u8>, Vec<u8>)> {
    let pkey = PKey::from_rsa(Rsa::generate(2048)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, MOK_COMMON_NAME)?;
    let name = name.build();

    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(159, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(&pkey)?;
    let (not_before, not_after) = (
        Asn1Time::days_from_now(0)?,
        Asn1Time::days_from_now(MOK_DAYS)?,
    );
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    let aki = AuthorityKeyIdentifier::new()
        .keyid(true)
        .build(&b.x509v3_context(None, None))?;
    b.append_extension(aki)?;
    b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    b.append_extension(ExtendedKeyUsage::new().code_signing().build()?)?;
    b.sign(&pkey, MessageDigest::sha256())?;
    let cert = b.build();
    Ok((pkey.private_key_to_pem_pkcs8()?, cert.to_der()?))
}

/// `dir/.name.modsync-tmp`, beside the target so a rename replaces it atomically.
fn tmp_name(p: &Path) -> PathBuf {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    p.with_file_name(format!(".{name}.modsync-tmp"))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    // The umask may have narrowed the mode; the key must be exactly 0600 either way.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting permissions of {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A small file that looks a bit like a module (ELF magic, some bytes).
    fn fake_module(dir: &Path, name: &str) -> PathBuf {
        let mut data = b"\x7fELF\x02\x01\x01\0".to_vec();
        data.extend((0..3000u32).map(|i| (i * 7 % 251) as u8));
        let p = dir.join(name);
        fs::write(&p, &data).unwrap();
        p
    }

    fn key_in(dir: &Path) -> SigningKey {
        SigningKey {
            key: dir.join("mok/mok.key"),
            cert: dir.join("mok/mok.pub"),
        }
    }

    fn openssl(args: &[&str]) -> std::process::Output {
        Command::new("openssl")
            .args(args)
            .output()
            .expect("running openssl")
    }

    /// Splits a signed file into (payload, DER signature, struct bytes).
    fn split_signed(data: &[u8]) -> (Vec<u8>, Vec<u8>, [u8; 12]) {
        assert!(data.ends_with(MAGIC), "no signature magic");
        let st: [u8; 12] = data[data.len() - 40..data.len() - 28].try_into().unwrap();
        let sig_len = u32::from_be_bytes(st[8..12].try_into().unwrap()) as usize;
        let end = data.len() - 40;
        (
            data[..end - sig_len].to_vec(),
            data[end - sig_len..end].to_vec(),
            st,
        )
    }

    /// Verifies `payload` against the detached CMS `sig` with the openssl command line,
    /// trusting `cert_der` as CA. Returns (success, combined output).
    fn cli_verify(dir: &Path, payload: &[u8], sig: &[u8], cert_der: &Path) -> (bool, String) {
        let pem = dir.join("verify-cert.pem");
        let o = openssl(&[
            "x509",
            "-inform",
            "DER",
            "-in",
            cert_der.to_str().unwrap(),
            "-out",
            pem.to_str().unwrap(),
        ]);
        assert!(
            o.status.success(),
            "x509 conversion: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let (p, s) = (dir.join("payload"), dir.join("sig.der"));
        fs::write(&p, payload).unwrap();
        fs::write(&s, sig).unwrap();
        let o = openssl(&[
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            s.to_str().unwrap(),
            "-content",
            p.to_str().unwrap(),
            "-certfile",
            pem.to_str().unwrap(),
            "-CAfile",
            pem.to_str().unwrap(),
            "-purpose",
            "any",
            "-out",
            "/dev/null",
        ]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.success(), text)
    }

    fn find_sign_file() -> Option<PathBuf> {
        let mut found = Vec::new();
        for base in ["/usr/lib", "/usr/src"] {
            if let Ok(rd) = fs::read_dir(base) {
                for e in rd.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.starts_with("linux-kbuild-") || n.starts_with("linux-headers-") {
                        let p = e.path().join("scripts/sign-file");
                        if p.is_file() {
                            found.push(p);
                        }
                    }
                }
            }
        }
        found.sort();
        found.pop()
    }

    #[test]
    fn ensure_mok_creates_private_key_0600_and_der_cert_once() {
        let d = tempfile::tempdir().unwrap();
        let k = key_in(d.path());
        assert!(ensure_mok(&k).unwrap(), "first call must create the pair");
        let mode = fs::metadata(&k.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "private key mode {mode:o}");
        let key_bytes = fs::read(&k.key).unwrap();
        assert!(key_bytes.starts_with(b"-----BEGIN PRIVATE KEY-----"));
        let cert_bytes = fs::read(&k.cert).unwrap();
        let cert = X509::from_der(&cert_bytes).expect("certificate is DER");
        let cn = cert
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .unwrap();
        assert_eq!(cn.data().as_slice(), MOK_COMMON_NAME.as_bytes());
        let rsa = read_private_key(&k.key).unwrap().rsa().expect("RSA key");
        assert_eq!(rsa.size() * 8, 2048);
        // second call: nothing changes
        assert!(!ensure_mok(&k).unwrap());
        assert_eq!(fs::read(&k.key).unwrap(), key_bytes);
        assert_eq!(fs::read(&k.cert).unwrap(), cert_bytes);
        // no temporaries left behind
        let left: Vec<_> = fs::read_dir(d.path().join("mok"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
    }

    #[test]
    fn generated_cert_has_code_signing_and_100_years() {
        let d = tempfile::tempdir().unwrap();
        let k = key_in(d.path());
        ensure_mok(&k).unwrap();
        let o = openssl(&[
            "x509",
            "-inform",
            "DER",
            "-in",
            k.cert.to_str().unwrap(),
            "-noout",
            "-text",
            "-enddate",
        ]);
        assert!(o.status.success());
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("Code Signing"), "{text}");
        assert!(text.contains("CN = modsync module signing key"), "{text}");
        let end = text
            .lines()
            .find_map(|l| l.strip_prefix("notAfter="))
            .unwrap();
        let year: i32 = end.split_whitespace().nth(3).unwrap().parse().unwrap();
        let now = Asn1Time::days_from_now(0).unwrap().to_string();
        let this_year: i32 = now.split_whitespace().nth(3).unwrap().parse().unwrap();
        assert!(year >= this_year + 99, "notAfter {end}");
    }

    #[test]
    fn lone_key_is_replaced_by_a_new_pair() {
        let d = tempfile::tempdir().unwrap();
        let k = key_in(d.path());
        fs::create_dir_all(k.key.parent().unwrap()).unwrap();
        fs::write(&k.key, b"stale").unwrap();
        assert!(ensure_mok(&k).unwrap());
        assert!(read_private_key(&k.key).is_ok());
        assert!(read_cert(&k.cert).is_ok());
    }

    #[test]
    fn signed_module_verifies_with_openssl_cli() {
        let d = tempfile::tempdir().unwrap();
        let k = key_in(d.path());
        ensure_mok(&k).unwrap();
        let ko = fake_module(d.path(), "hello.ko");
        let original = fs::read(&ko).unwrap();
        fs::set_permissions(&ko, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!is_signed(&ko).unwrap());
        sign_module(&ko, "sha256", &k).unwrap();
        assert!(is_signed(&ko).unwrap());
        assert_eq!(
            fs::metadata(&ko).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let signed = fs::read(&ko).unwrap();
        let (payload, sig, st) = split_signed(&signed);
        assert_eq!(payload, original, "payload must be the untouched module");
        assert_eq!(st[..8], [0, 0, 2, 0, 0, 0, 0, 0], "module_signature header");
        let (ok, out) = cli_verify(d.path(), &payload, &sig, &k.cert);
        assert!(ok, "openssl cms -verify failed: {out}");
        assert!(out.contains("Verification successful"), "{out}");
    }

    #[test]
    fn tampered_payload_fails_verification() {
        let d = tempfile::tempdir().unwrap();
        let k = key_in(d.path());
        ensure_mok(&k).unwrap();
        let ko = fake_module(d.path(), "t.ko");
        sign_module(&ko, "sha256", &k).unwrap();
        let (mut payload, sig, _) = split_signed(&fs::read(&ko).unwrap());
        payload[100] ^= 1;
        let (ok, out) = cli_verify(d.path(), &payload, &sig, &k.cert);
        assert!(!ok, "a modified module must not verify: {out}");
        assert!(
            out.contains("bad signature") && out.contains("content verify error"),
            "{out}"
        );
    }

    #[test]
    fn signature_from_another_key_fails_verification() {
        let d = tempfile::tempdir().unwrap();
        let k = key_in(d.path());
        let other = SigningKey {
            key: d.path().join("o/k"),
            cert: d.path().join("o/c"),
        };
        ensure_mok(&k).unwrap();
        ensure_mok(&other).unwrap();
        let ko = fake_module(d.path(), "o.ko");
        sign_module(&ko, "sha256", &other).unwrap();
        let (payload, sig, _) = split_signed(&fs::read(&ko).unwrap());
        let (ok, _) = cli_verify(d.path(), &payload, &sig, &k.cert);
        assert!(
            !ok,
            "a signature by another key must not verify against this cert"
        );
    }

    #[test]
    fn signing_twice_is_a_no_op() {
        let d = tempfile::tempdir().unwrap();
        let k = key_in(d.path());
        ensure_mok(&k).unwrap();
        let ko = fake_module(d.path(), "twice.ko");
        sign_module(&ko, "sha512", &k).unwrap();
        let once = fs::read(&ko).unwrap();
        sign_module(&ko, "sha512", &k).unwrap();
        assert_eq!(fs::read(&ko).unwrap(), once);
        assert_eq!(once.windows(MAGIC.len()).filter(|w| *w == MAGIC).count(), 1);
    }

    #[test]
    fn every_supported_hash_verifies() {
        let d = tempfile::tempdir().unwrap();
        let k = key_in(d.path());
        ensure_mok(&k).unwrap();
        for h in [
            "sha1", "sha224", "sha256", "sha384", "sha512", "sha3-256", "sha3-512",
        ] {
            let ko = fake_module(d.path(), &format!("{h}.ko"));
            sign_module(&ko, h, &k).unwrap();
            let (payload, sig, _) = split_signed(&fs::read(&ko).unwrap());
            let (ok, out) = cli_verify(d.path(), &payload, &sig, &k.cert);
            assert!(ok, "{h}: {out}");
            let o = openssl(&[
                "asn1parse",
                "-inform",
                "DER",
                "-in",
                d.path().join("sig.der").to_str().unwrap(),
            ]);
            let dump = String::from_utf8_lossy(&o.stdout).to_string();
            assert!(dump.contains(&format!(":{h}")), "{h}: {dump}");
        }
    }

    #[test]
    fn rsa_signature_is_byte_identical_to_kernel_sign_file() {
        let Some(sign_file) = find_sign_file() else {
            eprintln!("SKIP: no scripts/sign-file under /usr/lib/linux-kbuild-* or /usr/src/linux-headers-*");
            return;
        };
        let d = tempfile::tempdir().unwrap();
        let k = key_in(d.path());
        ensure_mok(&k).unwrap();
        for h in ["sha1", "sha256", "sha384", "sha512"] {
            let ours = fake_module(d.path(), &format!("ours-{h}.ko"));
            let theirs = fake_module(d.path(), &format!("theirs-{h}.ko"));
            sign_module(&ours, h, &k).unwrap();
            let o = Command::new(&sign_file)
                .args([
                    h,
                    k.key.to_str().unwrap(),
                    k.cert.to_str().unwrap(),
                    theirs.to_str().unwrap(),
                ])
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "sign-file {h}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert_eq!(
                fs::read(&ours).unwrap(),
                fs::read(&theirs).unwrap(),
                "{h}: differs from {}",
                sign_file.display()
            );
        }
    }

    #[test]
    fn ec_key_signature_verifies() {
        let d = tempfile::tempdir().unwrap();
        let k = SigningKey {
            key: d.path().join("ec.key"),
            cert: d.path().join("ec.der"),
        };
        let o = openssl(&[
            "req",
            "-new",
            "-x509",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=ec test",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-keyout",
            k.key.to_str().unwrap(),
            "-outform",
            "DER",
            "-out",
            k.cert.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let ko = fake_module(d.path(), "ec.ko");
        sign_module(&ko, "sha384", &k).unwrap();
        let (payload, sig, _) = split_signed(&fs::read(&ko).unwrap());
        let (ok, out) = cli_verify(d.path(), &payload, &sig, &k.cert);
        assert!(ok, "{out}");
        let o = openssl(&[
            "asn1parse",
            "-inform",
            "DER",
            "-in",
            d.path().join("sig.der").to_str().unwrap(),
        ]);
        assert!(String::from_utf8_lossy(&o.stdout).contains("ecdsa-with-SHA384"));
    }

    #[test]
    fn mismatched_key_and_cert_is_an_error_naming_both() {
        let d = tempfile::tempdir().unwrap();
        let a = SigningKey {
            key: d.path().join("a/k"),
            cert: d.path().join("a/c"),
        };
        let b = SigningKey {
            key: d.path().join("b/k"),
            cert: d.path().join("b/c"),
        };
        ensure_mok(&a).unwrap();
        ensure_mok(&b).unwrap();
        let ko = fake_module(d.path(), "m.ko");
        let before = fs::read(&ko).unwrap();
        let mixed = SigningKey {
            key: a.key.clone(),
            cert: b.cert.clone(),
        };
        let err = format!("{:#}", sign_module(&ko, "sha256", &mixed).unwrap_err());
        assert!(
            err.contains(&a.key.display().to_string())
                && err.contains(&b.cert.display().to_string()),
            "{err}"
        );
        assert_eq!(
            fs::read(&ko).unwrap(),
            before,
            "module must be untouched on error"
        );
    }

    #[test]
    fn errors_name_the_path() {
        let d = tempfile::tempdir().unwrap();
        let k = key_in(d.path());
        ensure_mok(&k).unwrap();
        let missing = d.path().join("nope.ko");
        let err = format!("{:#}", sign_module(&missing, "sha256", &k).unwrap_err());
        assert!(err.contains("nope.ko"), "{err}");
        let ko = fake_module(d.path(), "h.ko");
        let err = format!("{:#}", sign_module(&ko, "md5", &k).unwrap_err());
        assert!(err.contains("h.ko") && err.contains("md5"), "{err}");
        assert!(!is_signed(&ko).unwrap());
        let bad = SigningKey {
            key: d.path().join("missing.key"),
            cert: k.cert.clone(),
        };
        let err = format!("{:#}", sign_module(&ko, "sha256", &bad).unwrap_err());
        assert!(err.contains("missing.key"), "{err}");
        assert!(format!("{:#}", is_signed(&missing).unwrap_err()).contains("nope.ko"));
    }

    #[test]
    fn is_signed_handles_short_and_unsigned_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("short");
        fs::write(&p, b"abc").unwrap();
        assert!(!is_signed(&p).unwrap());
        fs::write(&p, MAGIC).unwrap();
        assert!(is_signed(&p).unwrap());
        let mut almost = MAGIC.to_vec();
        almost[0] = b'!';
        fs::write(&p, almost).unwrap();
        assert!(!is_signed(&p).unwrap());
    }

    #[test]
    fn der_helpers_encode_known_values() {
        assert_eq!(
            oid(&[2, 16, 840, 1, 101, 3, 4, 2, 1]),
            [0x06, 9, 0x60, 0x86, 0x48, 1, 0x65, 3, 4, 2, 1]
        );
        assert_eq!(
            oid(&[1, 2, 840, 113549, 1, 7, 2]),
            [0x06, 9, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 7, 2]
        );
        assert_eq!(tlv(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(tlv(0x04, &[0; 300])[..4], [0x04, 0x82, 1, 44]);
        assert_eq!(
            integer(&BigNum::from_u32(0x80).unwrap()),
            [0x02, 2, 0, 0x80]
        );
        assert_eq!(integer(&BigNum::from_u32(0x7f).unwrap()), [0x02, 1, 0x7f]);
        let t = trailer(&[9; 0x1234]).unwrap();
        assert_eq!(
            t[0x1234..0x1234 + 12],
            [0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34]
        );
        assert!(t.ends_with(MAGIC));
    }
}
