//! The federation keys and gateway certificates, through the public API.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use accord_ca::{
    certificate_fingerprint_sha256, name_string, CaError, FederationKeys,
    GatewayCertificateRequest, IssuedCertificate, KeySource, SigningKeyFile, CA_CERT_FILE,
    CA_KEY_FILE, SIGNING_KEY_FILE, SIGNING_PUBLIC_KEY_FILE,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::Verifier as _;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::num_bigint::BigUint;
use x509_parser::pem::parse_x509_pem;
use x509_parser::prelude::FromDer;

const ALL_FILES: [&str; 4] = [
    CA_CERT_FILE,
    CA_KEY_FILE,
    SIGNING_KEY_FILE,
    SIGNING_PUBLIC_KEY_FILE,
];

fn new_keys() -> (tempfile::TempDir, PathBuf, FederationKeys) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let keys = FederationKeys::create(&dir, "DEMO", "Demo Federation").unwrap();
    (tmp, dir, keys)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn pem_der(pem: &str) -> Vec<u8> {
    parse_x509_pem(pem.as_bytes()).unwrap().1.contents
}

fn read_all(dir: &Path) -> Vec<Vec<u8>> {
    ALL_FILES
        .iter()
        .map(|f| fs::read(dir.join(f)).unwrap())
        .collect()
}

fn request(key: KeySource) -> GatewayCertificateRequest {
    GatewayCertificateRequest {
        member_id: "DEMO/GOV/70000001".into(),
        gateway_name: "gw1".into(),
        hosts: vec!["gw1.demo.example".into(), "192.0.2.10".into()],
        key,
        validity_days: 365,
        serial: 0x1234,
    }
}

fn csr_pem(alg: &'static rcgen::SignatureAlgorithm, subject_cn: &str) -> (String, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, subject_cn);
    let csr = params.serialize_request(&key).unwrap();
    (csr.pem().unwrap(), key.public_key_raw().to_vec())
}

fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn replace_once(haystack: &mut [u8], needle: &[u8], replacement: &[u8]) {
    assert_eq!(needle.len(), replacement.len());
    let at = haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present");
    haystack[at..at + needle.len()].copy_from_slice(replacement);
}

/// Checks everything a gateway certificate must be; returns its subject public key bytes.
fn check_issued(
    keys: &FederationKeys,
    req: &GatewayCertificateRequest,
    issued: &IssuedCertificate,
) -> Vec<u8> {
    let ca_der = pem_der(keys.ca_certificate_pem());
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    let der = pem_der(&issued.certificate_pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();

    // Signed by the CA, and named as issued by it.
    cert.verify_signature(Some(ca.public_key()))
        .expect("issued certificate verifies with the CA key");
    assert_eq!(cert.issuer().as_raw(), ca.subject().as_raw());
    assert_eq!(name_string(cert.issuer()), "CN=Demo Federation CA, O=DEMO");
    // And not by itself.
    assert!(cert.verify_signature(None).is_err());

    // Subject.
    assert_eq!(issued.subject, "CN=gw1, O=DEMO/GOV/70000001");
    assert_eq!(name_string(cert.subject()), issued.subject);

    // Serial.
    assert_eq!(cert.tbs_certificate.serial, BigUint::from(req.serial));
    assert_eq!(issued.serial_hex, format!("{:016x}", req.serial));
    assert_eq!(
        u64::from_str_radix(&issued.serial_hex, 16).unwrap(),
        req.serial
    );

    // Validity: from a minute ago, for the requested days, as reported.
    let now = OffsetDateTime::now_utc();
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    assert_eq!(not_before, issued.not_before);
    assert_eq!(not_after, issued.not_after);
    let backdate = now - not_before;
    assert!(
        backdate >= Duration::seconds(59) && backdate <= Duration::seconds(90),
        "{backdate}"
    );
    assert_eq!(
        not_after - not_before,
        Duration::days(i64::from(req.validity_days)) + Duration::minutes(1)
    );

    // Not a CA; mutual TLS usages.
    let bc = cert.basic_constraints().unwrap().expect("basicConstraints");
    assert!(bc.critical);
    assert!(!bc.value.ca);
    let eku = cert
        .extended_key_usage()
        .unwrap()
        .expect("extendedKeyUsage")
        .value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(!eku.any && !eku.code_signing && eku.other.is_empty());
    let ku = cert.key_usage().unwrap().expect("keyUsage");
    assert!(ku.critical);
    assert!(ku.value.digital_signature());
    assert!(!ku.value.key_cert_sign() && !ku.value.crl_sign());
    // ECDSA/Ed25519 keys: keyEncipherment is not allowed (RFC 5480, RFC 8410).
    assert!(!ku.value.key_encipherment());

    // Alternative names: the gateway URI first, then the hosts.
    let san = cert
        .subject_alternative_name()
        .unwrap()
        .expect("subjectAltName")
        .value;
    assert_eq!(
        san.general_names,
        vec![
            GeneralName::URI("urn:accord:gateway:DEMO/GOV/70000001/gw1"),
            GeneralName::DNSName("gw1.demo.example"),
            GeneralName::IPAddress(&[192, 0, 2, 10]),
        ]
    );

    // The authority key identifier is the CA's subject key identifier.
    let ski = ca
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .expect("CA has a subject key identifier");
    let aki = cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .expect("certificate has an authority key identifier");
    assert_eq!(aki, ski);

    // Fingerprint.
    assert_eq!(issued.fingerprint_sha256, hex::encode(Sha256::digest(&der)));
    assert_eq!(
        certificate_fingerprint_sha256(&issued.certificate_pem).unwrap(),
        issued.fingerprint_sha256
    );

    cert.public_key().subject_public_key.data.to_vec()
}

#[test]
fn create_then_load_round_trips() {
    let (_tmp, dir, created) = new_keys();
    let loaded = FederationKeys::load(&dir).unwrap();

    assert_eq!(loaded.ca_certificate_pem(), created.ca_certificate_pem());
    assert_eq!(
        loaded.ca_certificate_pem(),
        fs::read_to_string(dir.join(CA_CERT_FILE)).unwrap()
    );
    assert_eq!(
        loaded.ca_fingerprint_sha256(),
        created.ca_fingerprint_sha256()
    );
    assert_eq!(loaded.verifying_key(), created.verifying_key());
    assert_eq!(
        loaded.signing_public_key_pem(),
        fs::read_to_string(dir.join(SIGNING_PUBLIC_KEY_FILE)).unwrap()
    );
    assert_eq!(
        accord_ca::parse_public_key_pem(&loaded.signing_public_key_pem()).unwrap(),
        loaded.verifying_key()
    );
    assert_eq!(loaded.ca_subject(), "CN=Demo Federation CA, O=DEMO");
    assert_eq!(loaded.dir(), dir);

    // Signatures made by one verify with the other's key.
    let signature = created.sign(b"federation configuration v1");
    loaded
        .verifying_key()
        .verify(b"federation configuration v1", &signature)
        .unwrap();
    assert!(loaded
        .verifying_key()
        .verify(b"federation configuration v2", &signature)
        .is_err());

    // The fingerprint is SHA-256 over the DER, lower-case hex.
    let der = pem_der(loaded.ca_certificate_pem());
    assert_eq!(loaded.ca_certificate_der(), der);
    let fingerprint = loaded.ca_fingerprint_sha256();
    assert_eq!(fingerprint, hex::encode(Sha256::digest(&der)));
    assert_eq!(fingerprint.len(), 64);
    assert_eq!(fingerprint, fingerprint.to_lowercase());
    assert_eq!(
        certificate_fingerprint_sha256(loaded.ca_certificate_pem()).unwrap(),
        fingerprint
    );

    // A certificate issued by the loaded keys verifies against the created CA.
    let req = request(KeySource::Generate);
    let issued = loaded.issue_gateway_certificate(&req).unwrap();
    check_issued(&created, &req, &issued);
}

#[test]
fn the_ca_certificate_has_the_ca_profile() {
    let (_tmp, _dir, keys) = new_keys();
    let der = pem_der(keys.ca_certificate_pem());
    let (_, ca) = X509Certificate::from_der(&der).unwrap();

    ca.verify_signature(None).expect("self-signed");
    assert_eq!(ca.subject().as_raw(), ca.issuer().as_raw());
    assert_eq!(name_string(ca.subject()), "CN=Demo Federation CA, O=DEMO");
    assert_eq!(
        ca.signature_algorithm.algorithm,
        x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256
    );
    assert_eq!(
        ca.public_key()
            .algorithm
            .parameters
            .as_ref()
            .unwrap()
            .as_oid()
            .unwrap(),
        x509_parser::oid_registry::OID_EC_P256
    );

    let bc = ca.basic_constraints().unwrap().expect("basicConstraints");
    assert!(bc.critical && bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, Some(0));
    let ku = ca.key_usage().unwrap().expect("keyUsage").value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    assert!(!ku.digital_signature() && !ku.key_encipherment());

    let not_before = ca.validity().not_before.to_datetime();
    let not_after = ca.validity().not_after.to_datetime();
    let now = OffsetDateTime::now_utc();
    assert!(not_before <= now && now - not_before < Duration::minutes(2));
    assert_eq!(not_after.year() - not_before.year(), 10);
    assert_eq!(keys.ca_not_after(), not_after);

    // A random, positive serial of 16 bytes.
    assert_eq!(ca.raw_serial().len(), 16);
}

#[test]
fn key_files_are_owner_only_and_public_files_are_not_writable_by_others() {
    let (_tmp, dir, _keys) = new_keys();
    assert_eq!(mode(&dir.join(CA_KEY_FILE)), 0o600);
    assert_eq!(mode(&dir.join(SIGNING_KEY_FILE)), 0o600);
    assert_eq!(mode(&dir), 0o700, "a created keys directory is 0700");
    for public in [CA_CERT_FILE, SIGNING_PUBLIC_KEY_FILE] {
        assert_eq!(mode(&dir.join(public)) & 0o022, 0, "{public}");
    }
    let ca_key = fs::read_to_string(dir.join(CA_KEY_FILE)).unwrap();
    assert!(ca_key.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
    let signing_key = fs::read_to_string(dir.join(SIGNING_KEY_FILE)).unwrap();
    assert!(
        signing_key.starts_with("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8"
    );
    let public = fs::read_to_string(dir.join(SIGNING_PUBLIC_KEY_FILE)).unwrap();
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "SPKI");
}

#[test]
fn create_in_an_existing_directory_keeps_its_mode() {
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o750)).unwrap();
    FederationKeys::create(tmp.path(), "DEMO", "Demo").unwrap();
    assert_eq!(mode(tmp.path()), 0o750);
    assert_eq!(mode(&tmp.path().join(CA_KEY_FILE)), 0o600);
}

#[test]
fn creating_twice_fails_and_changes_nothing() {
    let (_tmp, dir, _keys) = new_keys();
    let before = read_all(&dir);
    let err = FederationKeys::create(&dir, "DEMO", "Demo Federation").unwrap_err();
    assert!(
        matches!(
            err,
            CaError::KeysExist {
                file: CA_KEY_FILE,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "federation keys already exist in {}: refusing to overwrite ca.key",
            dir.display()
        )
    );
    assert_eq!(read_all(&dir), before);
    assert_eq!(mode(&dir.join(CA_KEY_FILE)), 0o600);
}

#[test]
fn create_refuses_if_any_one_file_exists_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::write(dir.join(SIGNING_PUBLIC_KEY_FILE), "left over").unwrap();
    let err = FederationKeys::create(dir, "DEMO", "Demo").unwrap_err();
    assert!(
        err.to_string()
            .ends_with("refusing to overwrite federation-signing.pub"),
        "{err}"
    );
    for file in [CA_CERT_FILE, CA_KEY_FILE, SIGNING_KEY_FILE] {
        assert!(!dir.join(file).exists(), "{file} was written");
    }
    assert_eq!(
        fs::read_to_string(dir.join(SIGNING_PUBLIC_KEY_FILE)).unwrap(),
        "left over"
    );
}

#[test]
fn create_refuses_empty_names() {
    let tmp = tempfile::tempdir().unwrap();
    let err = FederationKeys::create(tmp.path(), "", "Demo").unwrap_err();
    assert!(err.to_string().starts_with("invalid instance:"), "{err}");
    let err = FederationKeys::create(tmp.path(), "DEMO", "  ").unwrap_err();
    assert!(
        err.to_string().starts_with("invalid federation name:"),
        "{err}"
    );
    assert!(!tmp.path().join(CA_KEY_FILE).exists());
}

#[test]
fn load_refuses_key_files_others_can_read() {
    for file in [CA_KEY_FILE, SIGNING_KEY_FILE] {
        let (_tmp, dir, _keys) = new_keys();
        let path = dir.join(file);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = FederationKeys::load(&dir).unwrap_err();
        assert!(
            matches!(&err, CaError::InsecurePermissions { path: p, mode: 0o644 } if *p == path),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("0644"), "{message}");

        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        FederationKeys::load(&dir).unwrap();
    }
}

#[test]
fn load_names_the_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let err = FederationKeys::load(tmp.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "federation keys not found in {}: ca.key is missing",
            tmp.path().display()
        )
    );

    let (_tmp, dir, _keys) = new_keys();
    fs::remove_file(dir.join(SIGNING_PUBLIC_KEY_FILE)).unwrap();
    let err = FederationKeys::load(&dir).unwrap_err();
    assert!(
        matches!(
            err,
            CaError::KeysMissing {
                file: SIGNING_PUBLIC_KEY_FILE,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn load_refuses_files_that_do_not_belong_together() {
    let (_tmp_a, dir_a, _a) = new_keys();
    let (_tmp_b, dir_b, _b) = new_keys();

    // Another federation's CA certificate.
    fs::remove_file(dir_a.join(CA_CERT_FILE)).unwrap();
    fs::copy(dir_b.join(CA_CERT_FILE), dir_a.join(CA_CERT_FILE)).unwrap();
    let err = FederationKeys::load(&dir_a).unwrap_err();
    assert!(matches!(err, CaError::Mismatch { .. }), "{err:?}");
    assert!(
        err.to_string().contains("ca.key does not belong with"),
        "{err}"
    );

    // Another federation's signing public key.
    let (_tmp_c, dir_c, _c) = new_keys();
    fs::remove_file(dir_c.join(SIGNING_PUBLIC_KEY_FILE)).unwrap();
    fs::copy(
        dir_b.join(SIGNING_PUBLIC_KEY_FILE),
        dir_c.join(SIGNING_PUBLIC_KEY_FILE),
    )
    .unwrap();
    let err = FederationKeys::load(&dir_c).unwrap_err();
    assert!(matches!(err, CaError::Mismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("federation-signing.pub"), "{err}");

    // A CA key file holding garbage.
    let (_tmp_d, dir_d, _d) = new_keys();
    fs::write(dir_d.join(CA_KEY_FILE), "garbage").unwrap();
    let err = FederationKeys::load(&dir_d).unwrap_err();
    assert!(matches!(err, CaError::InvalidFile { .. }), "{err:?}");
    assert!(err.to_string().contains("ca.key is not a valid"), "{err}");
}

#[test]
fn federation_keys_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<FederationKeys>();
}

#[test]
fn debug_output_holds_no_private_key() {
    let (_tmp, dir, keys) = new_keys();
    let debug = format!("{keys:?} {keys:#?}");
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
    assert!(debug.contains(&keys.ca_fingerprint_sha256()), "{debug}");

    // Neither the raw signing key nor the CA key's base64 appears.
    let signing = SigningKeyFile::load(&dir.join(SIGNING_KEY_FILE)).unwrap();
    assert!(!debug.contains(&hex::encode(signing.to_bytes())));
    let ca_key = fs::read_to_string(dir.join(CA_KEY_FILE)).unwrap();
    let ca_key_der = pem_der(&ca_key);
    assert!(!debug.contains(&STANDARD.encode(&ca_key_der)[..40]));
    assert!(!debug.contains(&hex::encode(&ca_key_der)[..40]));

    let issued = keys
        .issue_gateway_certificate(&request(KeySource::Generate))
        .unwrap();
    let private = issued.private_key_pem.clone().expect("generated key");
    let debug = format!("{issued:?} {issued:#?}");
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    assert!(!debug.contains(&private[40..80]), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
}

#[test]
fn generated_key_certificate_verifies_against_the_ca() {
    let (_tmp, _dir, keys) = new_keys();
    let req = request(KeySource::Generate);
    let issued = keys.issue_gateway_certificate(&req).unwrap();
    let cert_key = check_issued(&keys, &req, &issued);

    // The returned private key is the certified one.
    let private = issued.private_key_pem.as_deref().expect("generated key");
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
    let key = rcgen::KeyPair::from_pem(private).unwrap();
    assert_eq!(key.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
    assert_eq!(key.public_key_raw(), cert_key);

    // A second issuance generates a different key.
    let again = keys.issue_gateway_certificate(&req).unwrap();
    assert_ne!(again.private_key_pem, issued.private_key_pem);
}

#[test]
fn csr_certificates_verify_against_the_ca_and_carry_the_csr_key() {
    let (_tmp, _dir, keys) = new_keys();
    for alg in [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ED25519,
    ] {
        let (pem, public) = csr_pem(alg, "not the gateway");
        let req = request(KeySource::Csr(pem));
        let issued = keys.issue_gateway_certificate(&req).unwrap();
        assert_eq!(issued.private_key_pem, None);
        // The registry decides the subject and names; the CSR's are ignored.
        let cert_key = check_issued(&keys, &req, &issued);
        assert_eq!(cert_key, public, "{alg:?}");
    }
}

#[test]
fn csr_with_crlf_and_indentation_is_accepted() {
    let (_tmp, _dir, keys) = new_keys();
    let (pem, _) = csr_pem(&rcgen::PKCS_ECDSA_P256_SHA256, "gw1");
    let messy: String = pem.lines().map(|l| format!("    {l}\r\n")).collect();
    keys.issue_gateway_certificate(&request(KeySource::Csr(messy)))
        .unwrap();
}

#[test]
fn csr_with_a_broken_signature_is_refused() {
    let (_tmp, _dir, keys) = new_keys();
    let (pem, _) = csr_pem(&rcgen::PKCS_ED25519, "gw1");
    let mut der = pem_der(&pem);
    // The Ed25519 signature is the last 64 bytes.
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let err = keys
        .issue_gateway_certificate(&request(KeySource::Csr(to_pem(
            "CERTIFICATE REQUEST",
            &der,
        ))))
        .unwrap_err();
    assert!(matches!(err, CaError::CsrSignature), "{err:?}");
    assert_eq!(
        err.to_string(),
        "certificate signing request signature does not verify"
    );

    // Changing the signed content breaks it just as well.
    let (pem, _) = csr_pem(&rcgen::PKCS_ECDSA_P256_SHA256, "gw1");
    let mut der = pem_der(&pem);
    replace_once(&mut der, b"gw1", b"gw2");
    let err = keys
        .issue_gateway_certificate(&request(KeySource::Csr(to_pem(
            "CERTIFICATE REQUEST",
            &der,
        ))))
        .unwrap_err();
    assert!(matches!(err, CaError::CsrSignature), "{err:?}");
}

#[test]
fn malformed_csrs_are_refused_with_a_precise_error() {
    let (_tmp, _dir, keys) = new_keys();
    let issue = |pem: &str| {
        keys.issue_gateway_certificate(&request(KeySource::Csr(pem.to_string())))
            .unwrap_err()
    };

    let err = issue("garbage");
    assert!(matches!(err, CaError::CsrPem(_)), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("certificate signing request is not valid PEM: "),
        "{err}"
    );

    // A certificate is not a request.
    let err = issue(keys.ca_certificate_pem());
    assert_eq!(
        err.to_string(),
        "certificate signing request is not valid PEM: \
         expected a \"CERTIFICATE REQUEST\" block, found \"CERTIFICATE\""
    );

    // Valid base64, not a request.
    let err = issue(&to_pem("CERTIFICATE REQUEST", b"\x30\x03\x02\x01\x01"));
    assert!(matches!(err, CaError::CsrStructure(_)), "{err:?}");

    // Two requests in one.
    let (pem, _) = csr_pem(&rcgen::PKCS_ECDSA_P256_SHA256, "gw1");
    let err = issue(&format!("{pem}{pem}"));
    assert!(err.to_string().contains("more data after it"), "{err}");

    // A curve the federation does not accept: prime256v1 (…3.1.7) becomes prime192v1 (…3.1.1).
    let mut der = pem_der(&pem);
    replace_once(
        &mut der,
        &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
        &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x01],
    );
    let err = issue(&to_pem("CERTIFICATE REQUEST", &der));
    assert!(matches!(err, CaError::CsrKeyAlgorithm(_)), "{err:?}");
    assert!(
        err.to_string().starts_with(
            "unsupported key algorithm in certificate signing request: \
             elliptic curve 1.2.840.10045.3.1.1; expected ECDSA P-256"
        ),
        "{err}"
    );

    // A signature algorithm the federation does not accept: ecdsa-with-SHA256 becomes -SHA512.
    let mut der = pem_der(&pem);
    replace_once(
        &mut der,
        &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02],
        &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
    );
    let err = issue(&to_pem("CERTIFICATE REQUEST", &der));
    assert!(matches!(err, CaError::CsrSignatureAlgorithm(_)), "{err:?}");
    assert!(err.to_string().contains("ecdsa-with-SHA512"), "{err}");
}

#[test]
fn out_of_range_validity_and_zero_serial_are_refused() {
    let (_tmp, _dir, keys) = new_keys();
    for days in [0, 4000] {
        let mut req = request(KeySource::Generate);
        req.validity_days = days;
        let err = keys.issue_gateway_certificate(&req).unwrap_err();
        assert!(matches!(err, CaError::InvalidValidity { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("certificate validity must be between 1 and 3650 days, found {days}")
        );
    }
    let mut req = request(KeySource::Generate);
    req.serial = 0;
    let err = keys.issue_gateway_certificate(&req).unwrap_err();
    assert!(matches!(err, CaError::ZeroSerial), "{err:?}");
}

#[test]
fn large_serials_keep_all_their_digits() {
    let (_tmp, _dir, keys) = new_keys();
    for serial in [1, u64::MAX, 0x8000_0000_0000_0000] {
        let mut req = request(KeySource::Generate);
        req.serial = serial;
        let issued = keys.issue_gateway_certificate(&req).unwrap();
        assert_eq!(issued.serial_hex.len(), 16);
        let der = pem_der(&issued.certificate_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cert.tbs_certificate.serial, BigUint::from(serial));
    }
}

/// Replaces `ca.crt` with a certificate for the same key that ends at `not_after`.
fn reissue_ca(dir: &Path, not_after: OffsetDateTime) {
    let ca_key =
        rcgen::KeyPair::from_pem(&fs::read_to_string(dir.join(CA_KEY_FILE)).unwrap()).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "DEMO");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Short CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params.not_before = not_after - Duration::days(400);
    params.not_after = not_after;
    let cert = params.self_signed(&ca_key).unwrap();
    fs::remove_file(dir.join(CA_CERT_FILE)).unwrap();
    fs::write(dir.join(CA_CERT_FILE), cert.pem()).unwrap();
}

#[test]
fn certificates_never_outlive_the_ca() {
    let (_tmp, dir, _keys) = new_keys();
    let ca_end = OffsetDateTime::from_unix_timestamp(
        (OffsetDateTime::now_utc() + Duration::days(30)).unix_timestamp(),
    )
    .unwrap();
    reissue_ca(&dir, ca_end);
    let keys = FederationKeys::load(&dir).unwrap();
    assert_eq!(keys.ca_not_after(), ca_end);

    let mut req = request(KeySource::Generate);
    req.validity_days = 3650;
    let issued = keys.issue_gateway_certificate(&req).unwrap();
    assert_eq!(issued.not_after, ca_end);
    let der = pem_der(&issued.certificate_pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(cert.validity().not_after.to_datetime(), ca_end);
    assert_eq!(name_string(cert.issuer()), "CN=Short CA, O=DEMO");
}

#[test]
fn an_expired_ca_issues_nothing() {
    let (_tmp, dir, _keys) = new_keys();
    reissue_ca(&dir, OffsetDateTime::now_utc() - Duration::days(1));
    let keys = FederationKeys::load(&dir).unwrap();
    let err = keys
        .issue_gateway_certificate(&request(KeySource::Generate))
        .unwrap_err();
    assert!(matches!(err, CaError::CaExpired { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("the federation CA expired on "),
        "{err}"
    );
}

#[test]
fn fingerprint_helper_refuses_what_is_not_a_certificate() {
    let err = certificate_fingerprint_sha256("nothing").unwrap_err();
    assert!(matches!(err, CaError::CertificatePem(_)), "{err:?}");
    let (csr, _) = csr_pem(&rcgen::PKCS_ED25519, "gw1");
    let err = certificate_fingerprint_sha256(&csr).unwrap_err();
    assert_eq!(
        err.to_string(),
        "certificate is not valid PEM: expected a \"CERTIFICATE\" block, found \"CERTIFICATE REQUEST\""
    );
    let err = certificate_fingerprint_sha256(&to_pem("CERTIFICATE", b"\x30\x00")).unwrap_err();
    assert!(matches!(err, CaError::Certificate(_)), "{err:?}");
}
