//! The Machine Owner Key modsync signs modules with: an RSA 2048 private key
//! (PEM, mode 0600) and a self-signed X.509 certificate (DER, the file that
//! is enrolled with `mokutil --import`), made with OpenSSL as dkms's
//! `openssl req -x509 -addext extendedKeyUsage=codeSigning` recipe makes
//! them. Directories are never created: a key path in a directory that does
//! not exist fails, as it does for dkms.

use anyhow::{Context, Result};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::extension::{AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, SubjectKeyIdentifier};
use openssl::x509::{X509Builder, X509NameBuilder};
use std::path::Path;

/// Common name of the certificate modsync generates.
pub const COMMON_NAME: &str = "modsync module signing key";
/// Validity of the generated certificate (100 years, as dkms's `-days 36500`).
const DAYS: u32 = 36500;

/// A fresh key (PKCS#8 PEM) and its self-signed certificate (DER).
pub fn generate() -> Result<(Vec<u8>, Vec<u8>)> {
    let pkey = PKey::from_rsa(Rsa::generate(2048)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, COMMON_NAME)?;
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
    let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(DAYS)?);
    b.set_not_before(&from)?;
    b.set_not_after(&until)?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    let aki = AuthorityKeyIdentifier::new()
        .keyid(true)
        .build(&b.x509v3_context(None, None))?;
    b.append_extension(aki)?;
    b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    b.append_extension(ExtendedKeyUsage::new().code_signing().build()?)?;
    b.sign(&pkey, MessageDigest::sha256())?;
    Ok((pkey.private_key_to_pem_pkcs8()?, b.build().to_der()?))
}

/// Writes a new pair over `key` and `cert` (the key first, so a certificate
/// path that cannot be written leaves the key, as openssl does).
pub fn create(key: &Path, cert: &Path) -> Result<()> {
    let (k, c) = generate().context("generating a module signing key")?;
    crate::sys::fs::write_atomic(key, &k, 0o600)?;
    crate::sys::fs::write_atomic(cert, &c, 0o644)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pair_belongs_together_and_is_a_code_signing_certificate() {
        let d = tempfile::tempdir().unwrap();
        let (key, cert) = (d.path().join("mok.key"), d.path().join("mok.pub"));
        create(&key, &cert).unwrap();
        let pkey = PKey::private_key_from_pem(&std::fs::read(&key).unwrap()).unwrap();
        let x = openssl::x509::X509::from_der(&std::fs::read(&cert).unwrap()).unwrap();
        assert!(x.public_key().unwrap().public_eq(&pkey));
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions()) & 0o777,
            0o600
        );
        let text = String::from_utf8(x.to_text().unwrap()).unwrap();
        assert!(text.contains("Code Signing") && text.contains(COMMON_NAME), "{text}");
        // a certificate in a directory that does not exist: the key is still written
        let key2 = d.path().join("k2");
        assert!(create(&key2, &d.path().join("no/such/c")).is_err());
        assert!(key2.exists() && !d.path().join("no").exists());
    }
}
