//! The federation's CA and signing key, as one value loaded from the keys directory.

use std::fmt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rand::rngs::OsRng;
use rand::RngCore as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::FromDer;

use crate::files::{self, OpenError, PRIVATE_MODE, PUBLIC_MODE};
use crate::gateway::{self, KeyKind, Redacted};
use crate::signing::{self, parse_public_key_pem, public_key_pem};
use crate::{
    CaError, GatewayCertificateRequest, IssuedCertificate, KeySource, CA_CERT_FILE, CA_KEY_FILE,
    SIGNING_KEY_FILE, SIGNING_PUBLIC_KEY_FILE,
};

/// Validity of the federation CA, in years.
pub const CA_VALIDITY_YEARS: i32 = 10;

/// How far before "now" issued certificates start, to tolerate clock skew.
const BACKDATE: Duration = Duration::minutes(1);

/// The federation's certificate authority and Ed25519 signing key.
///
/// Holds private keys in memory only; `Debug` shows the public parts and
/// redacts the rest. `Send + Sync`, so a registry can share it in an `Arc`.
pub struct FederationKeys {
    dir: PathBuf,
    ca_cert_pem: String,
    ca_cert_der: Vec<u8>,
    ca_subject: String,
    ca_not_after: OffsetDateTime,
    /// The CA as rcgen needs it to sign: rebuilt from `ca_cert_pem` (same
    /// subject and key identifier); its own encoding is never published.
    ca_issuer: rcgen::Certificate,
    ca_key: KeyPair,
    signing_key: SigningKey,
}

impl fmt::Debug for FederationKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FederationKeys")
            .field("dir", &self.dir)
            .field("ca_subject", &self.ca_subject)
            .field("ca_not_after", &self.ca_not_after)
            .field("ca_fingerprint_sha256", &self.ca_fingerprint_sha256())
            .field("ca_key", &Redacted)
            .field(
                "signing_public_key",
                &hex::encode(self.verifying_key().as_bytes()),
            )
            .field("signing_key", &Redacted)
            .finish()
    }
}

impl FederationKeys {
    /// Creates the federation's keys in `dir`: a self-signed ECDSA P-256 CA
    /// (`CN=<federation_name> CA, O=<instance>`, ten years) and an Ed25519
    /// signing key, written as the four files named by the crate's constants.
    ///
    /// `dir` is created with mode 0700 if missing. If any of the four files
    /// exists nothing is written and [`CaError::KeysExist`] names it; if a
    /// write fails, the files written so far are removed again.
    pub fn create(dir: &Path, instance: &str, federation_name: &str) -> Result<Self, CaError> {
        gateway::check_name("instance", instance)?;
        gateway::check_name("federation name", federation_name)?;

        files::ensure_dir(dir)?;
        let names = [
            CA_KEY_FILE,
            SIGNING_KEY_FILE,
            CA_CERT_FILE,
            SIGNING_PUBLIC_KEY_FILE,
        ];
        for file in names {
            if files::exists(&dir.join(file))? {
                return Err(CaError::KeysExist {
                    dir: dir.to_path_buf(),
                    file,
                });
            }
        }

        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CaError::crypto("generate the CA key", e))?;
        let ca_cert_pem = ca_params(instance, federation_name)
            .self_signed(&ca_key)
            .map_err(|e| CaError::crypto("sign the CA certificate", e))?
            .pem();
        let signing_key = SigningKey::generate(&mut OsRng);

        let mut written: Vec<PathBuf> = Vec::new();
        let result = (|| {
            let path = dir.join(CA_KEY_FILE);
            files::write_new(&path, ca_key.serialize_pem().as_bytes(), PRIVATE_MODE)?;
            written.push(path);
            let path = dir.join(SIGNING_KEY_FILE);
            signing::write_signing_key(&path, &signing_key)?;
            written.push(path);
            let path = dir.join(CA_CERT_FILE);
            files::write_new(&path, ca_cert_pem.as_bytes(), PUBLIC_MODE)?;
            written.push(path);
            let path = dir.join(SIGNING_PUBLIC_KEY_FILE);
            let public = public_key_pem(&signing_key.verifying_key());
            files::write_new(&path, public.as_bytes(), PUBLIC_MODE)?;
            written.push(path);
            Ok(())
        })();
        if let Err(e) = result {
            for path in &written {
                // Best effort: these files were created by this call a moment ago.
                let _ = std::fs::remove_file(path);
            }
            return Err(match e {
                // Lost a race with another `create`: word it as the up-front check does.
                CaError::FileExists { path } => CaError::KeysExist {
                    dir: dir.to_path_buf(),
                    file: names
                        .into_iter()
                        .find(|n| path.file_name() == Some(n.as_ref()))
                        .unwrap_or(CA_KEY_FILE),
                },
                other => other,
            });
        }

        Self::from_parts(dir, ca_cert_pem, ca_key, signing_key)
    }

    /// Loads the keys from `dir`.
    ///
    /// Refuses a private key file that group or others can access (the error
    /// names the file and its mode), and files that do not belong together
    /// (a CA key that is not the certificate's, a public key file that is not
    /// the signing key's).
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let missing = |file: &'static str| {
            move |e: OpenError| match e {
                OpenError::NotFound => CaError::KeysMissing {
                    dir: dir.to_path_buf(),
                    file,
                },
                OpenError::Other(e) => e,
            }
        };

        let ca_key_path = dir.join(CA_KEY_FILE);
        let ca_key_pem = files::read_private(&ca_key_path).map_err(missing(CA_KEY_FILE))?;
        let ca_key = KeyPair::from_pem(ca_key_pem.trim()).map_err(|e| CaError::InvalidFile {
            path: ca_key_path.clone(),
            expected: "ECDSA P-256 private key (PKCS#8 PEM, \"PRIVATE KEY\")",
            reason: e.to_string(),
        })?;
        if ca_key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(CaError::InvalidFile {
                path: ca_key_path,
                expected: "ECDSA P-256 private key (PKCS#8 PEM, \"PRIVATE KEY\")",
                reason: format!("found a {:?} key", ca_key.algorithm()),
            });
        }

        let signing_key_path = dir.join(SIGNING_KEY_FILE);
        let signing_key =
            signing::read_signing_key(&signing_key_path).map_err(missing(SIGNING_KEY_FILE))?;

        let public_path = dir.join(SIGNING_PUBLIC_KEY_FILE);
        let public_pem =
            files::read_public(&public_path).map_err(missing(SIGNING_PUBLIC_KEY_FILE))?;
        let public = parse_public_key_pem(&public_pem).map_err(|e| CaError::InvalidFile {
            path: public_path.clone(),
            expected: "Ed25519 public key (SPKI PEM, \"PUBLIC KEY\")",
            reason: e.to_string(),
        })?;
        if public != signing_key.verifying_key() {
            return Err(CaError::Mismatch {
                path: public_path,
                other: signing_key_path,
                reason: "the public key is not the signing key's",
            });
        }

        let ca_cert_path = dir.join(CA_CERT_FILE);
        let ca_cert_pem = files::read_public(&ca_cert_path).map_err(missing(CA_CERT_FILE))?;
        Self::from_parts(dir, ca_cert_pem, ca_key, signing_key)
    }

    /// Checks the CA certificate against its key and prepares it for signing.
    fn from_parts(
        dir: &Path,
        ca_cert_pem: String,
        ca_key: KeyPair,
        signing_key: SigningKey,
    ) -> Result<Self, CaError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let invalid = |reason: String| CaError::InvalidFile {
            path: cert_path.clone(),
            expected: "CA certificate (PEM, \"CERTIFICATE\")",
            reason,
        };
        let ca_cert_der = certificate_der(&ca_cert_pem).map_err(|e| invalid(e.to_string()))?;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&ca_cert_der)
            .map_err(|e| invalid(e.to_string()))?;
        if !cert.is_ca() {
            return Err(invalid(
                "the certificate is not a CA (basicConstraints cA is not set)".into(),
            ));
        }
        if cert.public_key().subject_public_key.data.as_ref() != ca_key.public_key_raw() {
            return Err(CaError::Mismatch {
                path: dir.join(CA_KEY_FILE),
                other: cert_path,
                reason: "the key is not the certificate's",
            });
        }
        let ca_subject = gateway::name_string(cert.subject());
        let ca_not_after = cert.validity().not_after.to_datetime();

        let ca_issuer = CertificateParams::from_ca_cert_pem(&ca_cert_pem)
            .and_then(|params| params.self_signed(&ca_key))
            .map_err(|e| invalid(format!("cannot be used for signing: {e}")))?;

        Ok(FederationKeys {
            dir: dir.to_path_buf(),
            ca_cert_pem,
            ca_cert_der,
            ca_subject,
            ca_not_after,
            ca_issuer,
            ca_key,
            signing_key,
        })
    }

    /// The directory the keys were created in or loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate, PEM, exactly as in `ca.crt`.
    pub fn ca_certificate_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// The CA certificate, DER.
    pub fn ca_certificate_der(&self) -> &[u8] {
        &self.ca_cert_der
    }

    /// The CA's subject in RFC 4514 form, e.g. `CN=Demo CA, O=DEMO`.
    pub fn ca_subject(&self) -> &str {
        &self.ca_subject
    }

    /// When the CA certificate expires.
    pub fn ca_not_after(&self) -> OffsetDateTime {
        self.ca_not_after
    }

    /// Lower-case hex SHA-256 of the CA certificate's DER.
    pub fn ca_fingerprint_sha256(&self) -> String {
        hex::encode(Sha256::digest(&self.ca_cert_der))
    }

    /// The federation signing key's public half as SPKI PEM (the gateways' trust anchor).
    pub fn signing_public_key_pem(&self) -> String {
        public_key_pem(&self.verifying_key())
    }

    /// The federation signing key's public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing_key.verifying_key()
    }

    /// Signs `message` (e.g. a federation configuration) with the federation signing key.
    pub fn sign(&self, message: &[u8]) -> Signature {
        self.signing_key.sign(message)
    }

    /// Issues a gateway TLS certificate (serverAuth and clientAuth), signed by the CA.
    ///
    /// The certificate has subject `O=<member_id>, CN=<gateway_name>`, the
    /// alternative names `urn:accord:gateway:<member_id>/<gateway_name>`
    /// plus one per host, basicConstraints `cA=false`, key usage
    /// digitalSignature (and keyEncipherment for RSA keys only: RFC 5480 and
    /// RFC 8410 forbid it for EC and Ed25519 keys), and the authority key
    /// identifier of the CA. It is valid from one minute ago for
    /// `validity_days`, but never past the CA's own expiry.
    ///
    /// For [`KeySource::Csr`] only the request's public key is used, after its
    /// signature has been verified; the subject and extensions it asks for are
    /// ignored. For [`KeySource::Generate`] an ECDSA P-256 key is generated and
    /// returned in [`IssuedCertificate::private_key_pem`]; it is not kept.
    pub fn issue_gateway_certificate(
        &self,
        request: &GatewayCertificateRequest,
    ) -> Result<IssuedCertificate, CaError> {
        let sans = gateway::check_request(request)?;

        let now = OffsetDateTime::now_utc();
        let now = now - Duration::nanoseconds(i64::from(now.nanosecond()));
        let not_before = now - BACKDATE;
        if self.ca_not_after <= now {
            return Err(CaError::CaExpired {
                not_after: self.ca_not_after,
            });
        }
        let not_after =
            (now + Duration::days(i64::from(request.validity_days))).min(self.ca_not_after);

        let mut params = CertificateParams::default();
        params.serial_number = Some(SerialNumber::from(request.serial));
        params.not_before = not_before;
        params.not_after = not_after;
        params.distinguished_name = distinguished_name(&[
            (DnType::OrganizationName, &request.member_id),
            (DnType::CommonName, &request.gateway_name),
        ]);
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;

        let (cert, private_key_pem) = match &request.key {
            KeySource::Csr(pem) => {
                let checked = gateway::check_csr(pem)?;
                params.key_usages = key_usages(checked.kind);
                let cert = params
                    .signed_by(&checked.key, &self.ca_issuer, &self.ca_key)
                    .map_err(|e| CaError::crypto("sign the gateway certificate", e))?;
                (cert, None)
            }
            KeySource::Generate => {
                let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
                    .map_err(|e| CaError::crypto("generate the gateway key", e))?;
                params.key_usages = key_usages(KeyKind::EcdsaP256);
                let cert = params
                    .signed_by(&key, &self.ca_issuer, &self.ca_key)
                    .map_err(|e| CaError::crypto("sign the gateway certificate", e))?;
                (cert, Some(key.serialize_pem()))
            }
        };

        Ok(IssuedCertificate {
            serial_hex: format!("{:016x}", request.serial),
            certificate_pem: cert.pem(),
            private_key_pem,
            subject: gateway::subject_string(&[
                ("O", &request.member_id),
                ("CN", &request.gateway_name),
            ]),
            not_before,
            not_after,
            fingerprint_sha256: hex::encode(Sha256::digest(cert.der())),
        })
    }
}

/// Key usages of a gateway certificate for a key of `kind`.
fn key_usages(kind: KeyKind) -> Vec<KeyUsagePurpose> {
    match kind {
        KeyKind::Rsa => vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ],
        KeyKind::EcdsaP256 | KeyKind::EcdsaP384 | KeyKind::Ed25519 => {
            vec![KeyUsagePurpose::DigitalSignature]
        }
    }
}

fn distinguished_name(rdns: &[(DnType, &str)]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (ty, value) in rdns {
        dn.push(ty.clone(), *value);
    }
    dn
}

/// Parameters of the CA certificate.
fn ca_params(instance: &str, federation_name: &str) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let now = now - Duration::nanoseconds(i64::from(now.nanosecond()));
    let not_before = now - BACKDATE;
    let not_after = not_before
        .replace_year(not_before.year() + CA_VALIDITY_YEARS)
        // 29 February of a year whose tenth successor is not a leap year.
        .unwrap_or(not_before + Duration::days(3653));

    let mut params = CertificateParams::default();
    params.serial_number = Some(SerialNumber::from(random_serial()));
    params.not_before = not_before;
    params.not_after = not_after;
    params.distinguished_name = distinguished_name(&[
        (DnType::OrganizationName, instance),
        (DnType::CommonName, &format!("{federation_name} CA")),
    ]);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// 16 random bytes, positive and without a leading zero byte (RFC 5280: at most 20 octets).
fn random_serial() -> Vec<u8> {
    let mut serial = vec![0u8; 16];
    OsRng.fill_bytes(&mut serial);
    serial[0] = (serial[0] & 0x7f) | 0x40;
    serial
}

/// Decodes a PEM `CERTIFICATE` block to DER.
pub(crate) fn certificate_der(pem: &str) -> Result<Vec<u8>, CaError> {
    let normalized: String = pem.lines().map(|l| format!("{}\n", l.trim())).collect();
    let (_, block) = x509_parser::pem::parse_x509_pem(normalized.as_bytes())
        .map_err(|e| CaError::CertificatePem(gateway::describe_pem_error(e, "CERTIFICATE")))?;
    if block.label != "CERTIFICATE" {
        return Err(CaError::CertificatePem(format!(
            "expected a \"CERTIFICATE\" block, found {:?}",
            block.label
        )));
    }
    Ok(block.contents)
}

/// Lower-case hex SHA-256 of the DER of a PEM certificate (the first block if several).
pub fn certificate_fingerprint_sha256(pem: &str) -> Result<String, CaError> {
    let der = certificate_der(pem)?;
    let (rest, _) = x509_parser::certificate::X509Certificate::from_der(&der)
        .map_err(|e| CaError::Certificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CaError::Certificate(format!(
            "{} unexpected bytes after the certificate",
            rest.len()
        )));
    }
    Ok(hex::encode(Sha256::digest(&der)))
}
