//! Gateway TLS certificates: the request, the checks on it, the result.
//!
//! Gateways talk to each other over mutual TLS, so every gateway
//! certificate is both a server and a client certificate. The registry, not
//! the member, decides what a certificate says: subject, alternative names,
//! usages and validity come from [`GatewayCertificateRequest`]; of a
//! member's certificate signing request only the public key is used, once
//! its self-signature has shown that the member holds the private key.

use std::fmt;
use std::net::IpAddr;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rcgen::{SanType, SubjectPublicKeyInfo};
use time::OffsetDateTime;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::error::{PEMError, X509Error};
use x509_parser::objects::{oid2abbrev, oid2sn, oid_registry};
use x509_parser::oid_registry::{
    Oid, OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA,
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::CaError;

/// Longest validity a gateway certificate can be given, in days (about ten years).
pub const MAX_VALIDITY_DAYS: u32 = 3650;

/// Smallest RSA modulus accepted in a certificate signing request, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Prefix of the URI alternative name that identifies a gateway.
pub const GATEWAY_URI_PREFIX: &str = "urn:accord:gateway:";

/// What the registry asks the CA to certify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayCertificateRequest {
    /// The member owning the gateway, e.g. `DEMO/GOV/70000001`: subject O,
    /// and the first part of the URI alternative name.
    pub member_id: String,
    /// The gateway's name within the member, e.g. `gw1`: subject CN.
    pub gateway_name: String,
    /// DNS names or IP literals (IPv6 with or without brackets) the gateway
    /// is reached at; each becomes an alternative name. May be empty.
    pub hosts: Vec<String>,
    /// Where the certified public key comes from.
    pub key: KeySource,
    /// Days the certificate is valid, 1..=3650.
    pub validity_days: u32,
    /// The certificate serial, chosen by the registry; must be > 0.
    pub serial: u64,
}

/// Where the public key of a gateway certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A PKCS#10 certificate signing request in PEM, made by the member.
    /// Accepted keys: ECDSA P-256 or P-384, Ed25519, RSA of at least 2048 bits.
    Csr(String),
    /// The CA generates an ECDSA P-256 key pair and returns its private key
    /// once, in [`IssuedCertificate::private_key_pem`]; it is not kept.
    Generate,
}

/// A certificate the CA issued.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// The serial as exactly 16 lower-case hex digits, zero-padded (the full
    /// width of the `u64` serial; `1` is `"0000000000000001"`). Fixed width,
    /// so text order is numeric order and no leading zero is ever lost;
    /// `u64::from_str_radix(&serial_hex, 16)` gives the serial back.
    pub serial_hex: String,
    /// The certificate, PEM (`-----BEGIN CERTIFICATE-----`).
    pub certificate_pem: String,
    /// The generated private key (PKCS#8 PEM) for [`KeySource::Generate`],
    /// `None` for [`KeySource::Csr`]. Shown once to the caller; `Debug` redacts it.
    pub private_key_pem: Option<String>,
    /// The subject in RFC 4514 form, e.g. `CN=gw1, O=DEMO/GOV/70000001`.
    pub subject: String,
    /// Start of validity (one minute before issuance, whole seconds).
    pub not_before: OffsetDateTime,
    /// End of validity (whole seconds; never later than the CA's own end).
    pub not_after: OffsetDateTime,
    /// Lower-case hex SHA-256 of the certificate's DER.
    pub fingerprint_sha256: String,
}

impl fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCertificate")
            .field("serial_hex", &self.serial_hex)
            .field("subject", &self.subject)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("fingerprint_sha256", &self.fingerprint_sha256)
            .field("certificate_pem", &self.certificate_pem)
            .field(
                "private_key_pem",
                &self.private_key_pem.as_ref().map(|_| Redacted),
            )
            .finish()
    }
}

/// Stands in for a secret in `Debug` output.
pub(crate) struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The kind of a key found in a certificate signing request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa,
}

/// A public key taken from a certificate signing request whose signature verified.
#[derive(Debug)]
pub(crate) struct CheckedCsrKey {
    pub(crate) kind: KeyKind,
    pub(crate) key: SubjectPublicKeyInfo,
}

/// Decodes the PEM, parses the PKCS#10 request, checks its key and signature algorithms
/// and verifies its self-signature.
pub(crate) fn check_csr(pem: &str) -> Result<CheckedCsrKey, CaError> {
    // Indentation from a JSON string or a YAML block is not part of PEM.
    let normalized: String = pem.lines().map(|l| format!("{}\n", l.trim())).collect();
    let (rest, block) = x509_parser::pem::parse_x509_pem(normalized.as_bytes())
        .map_err(|e| CaError::CsrPem(describe_pem_error(e, "CERTIFICATE REQUEST")))?;
    if block.label != "CERTIFICATE REQUEST" && block.label != "NEW CERTIFICATE REQUEST" {
        return Err(CaError::CsrPem(format!(
            "expected a \"CERTIFICATE REQUEST\" block, found {:?}",
            block.label
        )));
    }
    if !rest.iter().all(u8::is_ascii_whitespace) {
        return Err(CaError::CsrPem(
            "expected a single \"CERTIFICATE REQUEST\" block, found more data after it".into(),
        ));
    }

    let (rest, csr) = X509CertificationRequest::from_der(&block.contents)
        .map_err(|e| CaError::CsrStructure(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CaError::CsrStructure(format!(
            "{} unexpected bytes after the request",
            rest.len()
        )));
    }

    let spki = &csr.certification_request_info.subject_pki;
    let kind = key_kind(spki)?;

    let sig_alg = &csr.signature_algorithm.algorithm;
    let accepted = [
        OID_PKCS1_SHA256WITHRSA,
        OID_PKCS1_SHA384WITHRSA,
        OID_PKCS1_SHA512WITHRSA,
        OID_SIG_ECDSA_WITH_SHA256,
        OID_SIG_ECDSA_WITH_SHA384,
        OID_SIG_ED25519,
    ];
    if !accepted.contains(sig_alg) {
        return Err(CaError::CsrSignatureAlgorithm(format!(
            "{}; expected SHA-256/384/512 with RSA, ECDSA with SHA-256/384, or Ed25519",
            oid_name(sig_alg)
        )));
    }
    csr.verify_signature().map_err(|e| match e {
        X509Error::SignatureVerificationError => CaError::CsrSignature,
        X509Error::SignatureUnsupportedAlgorithm => CaError::CsrSignatureAlgorithm(format!(
            "{} does not go with a {} key",
            oid_name(sig_alg),
            kind_name(kind)
        )),
        other => CaError::CsrStructure(other.to_string()),
    })?;

    let key = SubjectPublicKeyInfo::from_der(spki.raw)
        .map_err(|e| CaError::CsrKeyAlgorithm(format!("{} ({e})", kind_name(kind))))?;
    Ok(CheckedCsrKey { kind, key })
}

fn key_kind(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Result<KeyKind, CaError> {
    const EXPECTED: &str = "expected ECDSA P-256 or P-384, Ed25519, or RSA of at least 2048 bits";
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        match curve {
            Some(c) if c == OID_EC_P256 => Ok(KeyKind::EcdsaP256),
            Some(c) if c == OID_NIST_EC_P384 => Ok(KeyKind::EcdsaP384),
            Some(c) => Err(CaError::CsrKeyAlgorithm(format!(
                "elliptic curve {}; {EXPECTED}",
                oid_name(&c)
            ))),
            None => Err(CaError::CsrKeyAlgorithm(format!(
                "elliptic curve key without a named curve; {EXPECTED}"
            ))),
        }
    } else if *alg == OID_SIG_ED25519 {
        Ok(KeyKind::Ed25519)
    } else if *alg == OID_PKCS1_RSAENCRYPTION {
        match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) if rsa.key_size() >= MIN_RSA_BITS => Ok(KeyKind::Rsa),
            Ok(PublicKey::RSA(rsa)) => Err(CaError::CsrKeyAlgorithm(format!(
                "RSA key of {} bits; {EXPECTED}",
                rsa.key_size()
            ))),
            Ok(_) | Err(_) => Err(CaError::CsrStructure(
                "the RSA public key does not parse".into(),
            )),
        }
    } else {
        Err(CaError::CsrKeyAlgorithm(format!(
            "{}; {EXPECTED}",
            oid_name(alg)
        )))
    }
}

fn kind_name(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::EcdsaP256 => "ECDSA P-256",
        KeyKind::EcdsaP384 => "ECDSA P-384",
        KeyKind::Ed25519 => "Ed25519",
        KeyKind::Rsa => "RSA",
    }
}

/// `shortName (dotted.oid)`, or just the dotted form for unknown OIDs.
fn oid_name(oid: &Oid<'_>) -> String {
    match oid2sn(oid, oid_registry()) {
        Ok(name) => format!("{name} ({oid})"),
        Err(_) => oid.to_id_string(),
    }
}

/// Words a PEM decoding failure as expected/found.
pub(crate) fn describe_pem_error(e: x509_parser::nom::Err<PEMError>, label: &str) -> String {
    use x509_parser::nom::Err;
    let inner = match e {
        Err::Error(e) | Err::Failure(e) => e,
        Err::Incomplete(_) => PEMError::IncompletePEM,
    };
    match inner {
        PEMError::MissingHeader => {
            format!("expected a \"-----BEGIN {label}-----\" line, found none")
        }
        PEMError::InvalidHeader => {
            format!("expected a \"-----BEGIN {label}-----\" line, found a malformed BEGIN line")
        }
        PEMError::IncompletePEM => "the block has no \"-----END ...-----\" line".into(),
        PEMError::Base64DecodeError => "the block's content is not valid base64".into(),
        PEMError::IOError(e) => e.to_string(),
    }
}

/// Checks the request's fields; returns the subject alternative names.
pub(crate) fn check_request(request: &GatewayCertificateRequest) -> Result<Vec<SanType>, CaError> {
    if request.validity_days == 0 || request.validity_days > MAX_VALIDITY_DAYS {
        return Err(CaError::InvalidValidity {
            days: request.validity_days,
        });
    }
    if request.serial == 0 {
        return Err(CaError::ZeroSerial);
    }
    check_name("member id", &request.member_id)?;
    check_name("gateway name", &request.gateway_name)?;

    let mut sans = vec![SanType::URI(
        gateway_uri(&request.member_id, &request.gateway_name)
            .try_into()
            .map_err(|e| CaError::crypto("encode the gateway URI", e))?,
    )];
    for host in &request.hosts {
        let san = host_san(host)?;
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok(sans)
}

/// Refuses names that are empty or contain control characters.
pub(crate) fn check_name(what: &'static str, value: &str) -> Result<(), CaError> {
    if value.trim().is_empty() {
        return Err(CaError::InvalidName {
            what,
            reason: format!("expected a non-empty name, found {value:?}"),
        });
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(CaError::InvalidName {
            what,
            reason: format!("{value:?} contains the control character {c:?}"),
        });
    }
    Ok(())
}

/// Characters left as they are in the URI: RFC 3986 unreserved and
/// sub-delimiters, `:` and `@` (all allowed in an RFC 8141 URN's NSS).
const URN_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// As [`URN_ENCODE_SET`], but `/` too stays: it separates the member id's parts.
const URN_MEMBER_ENCODE_SET: &AsciiSet = &URN_ENCODE_SET.remove(b'/');

/// `urn:accord:gateway:<member id>/<gateway name>`, percent-encoded.
///
/// The member id keeps its `/` separators; anything else outside the URN
/// character set (including `/`, `?`, `#`, `%` in the gateway name, spaces,
/// non-ASCII) is percent-encoded as UTF-8, so the URI is always ASCII and
/// the gateway name is always the text after the last `/`.
pub fn gateway_uri(member_id: &str, gateway_name: &str) -> String {
    format!(
        "{GATEWAY_URI_PREFIX}{}/{}",
        utf8_percent_encode(member_id, URN_MEMBER_ENCODE_SET),
        utf8_percent_encode(gateway_name, URN_ENCODE_SET)
    )
}

/// Turns a host into an IP or DNS alternative name.
fn host_san(host: &str) -> Result<SanType, CaError> {
    let invalid = |reason: String| CaError::InvalidHost {
        host: host.to_string(),
        reason,
    };
    let trimmed = host.trim();
    if let Some(inner) = trimmed.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match inner.parse::<IpAddr>() {
            Ok(ip @ IpAddr::V6(_)) => Ok(SanType::IpAddress(ip)),
            _ => Err(invalid(format!(
                "expected an IPv6 address between brackets, found {inner:?}"
            ))),
        };
    }
    if let Ok(ip) = trimmed.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let name = trimmed
        .strip_suffix('.')
        .unwrap_or(trimmed)
        .to_ascii_lowercase();
    check_dns_name(&name).map_err(invalid)?;
    let ia5 = name
        .try_into()
        .map_err(|e| invalid(format!("cannot be encoded: {e}")))?;
    Ok(SanType::DnsName(ia5))
}

/// Checks a (lower-cased, dot-stripped) DNS name: 1..=253 characters,
/// labels of 1..=63 letters, digits and inner hyphens.
fn check_dns_name(name: &str) -> Result<(), String> {
    const EXPECTED: &str = "expected a DNS name (letters, digits, '-' and '.') or an IP address";
    if name.is_empty() {
        return Err(format!("{EXPECTED}, found an empty string"));
    }
    if name.len() > 253 {
        return Err(format!(
            "a DNS name has at most 253 characters, found {}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(format!("{EXPECTED}, found the character {c:?}"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!("{EXPECTED}, found an empty label"));
        }
        if label.len() > 63 {
            return Err(format!(
                "a DNS label has at most 63 characters, found {} in {label:?}",
                label.len()
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "a DNS label cannot start or end with '-', found {label:?}"
            ));
        }
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(format!(
            "{EXPECTED}, found something that looks like an incomplete IP address"
        ));
    }
    Ok(())
}

/// RFC 4514 string of a subject given in RDN order, most significant first
/// (as in the DER), e.g. `[("O", "x"), ("CN", "y")]` gives `CN=y, O=x`.
pub(crate) fn subject_string(rdns: &[(&str, &str)]) -> String {
    rdns.iter()
        .rev()
        .map(|(ty, value)| format!("{ty}={}", escape_rfc4514(value)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// RFC 4514 string of a parsed X.509 name (`CN=..., O=...`), for display.
///
/// Attribute types without a short name are shown as dotted OIDs, values
/// that are not strings as `#` and the hex of their content.
pub fn name_string(name: &x509_parser::x509::X509Name<'_>) -> String {
    let mut parts: Vec<String> = name
        .iter_attributes()
        .map(|attr| {
            let ty = match oid2abbrev(attr.attr_type(), oid_registry()) {
                Ok(abbrev) => abbrev.to_string(),
                Err(_) => attr.attr_type().to_id_string(),
            };
            match attr.as_str() {
                Ok(s) => format!("{ty}={}", escape_rfc4514(s)),
                Err(_) => format!("{ty}=#{}", hex::encode(attr.attr_value().data)),
            }
        })
        .collect();
    parts.reverse();
    parts.join(", ")
}

/// Escapes an attribute value as RFC 4514 section 2.4 asks.
fn escape_rfc4514(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> GatewayCertificateRequest {
        GatewayCertificateRequest {
            member_id: "DEMO/GOV/70000001".into(),
            gateway_name: "gw1".into(),
            hosts: vec![],
            key: KeySource::Generate,
            validity_days: 365,
            serial: 1,
        }
    }

    #[test]
    fn gateway_uri_keeps_member_slashes_and_encodes_the_rest() {
        assert_eq!(
            gateway_uri("DEMO/GOV/70000001", "gw1"),
            "urn:accord:gateway:DEMO/GOV/70000001/gw1"
        );
        // X-Road allows ' ( ) + , - . = ? in identifier parts; only ? needs encoding.
        assert_eq!(
            gateway_uri("EE/COM/(a)+b,c=d?", "g w/1%"),
            "urn:accord:gateway:EE/COM/(a)+b,c=d%3F/g%20w%2F1%25"
        );
        assert_eq!(
            gateway_uri("FI/GOV/1", "ä"),
            "urn:accord:gateway:FI/GOV/1/%C3%A4"
        );
    }

    #[test]
    fn hosts_become_dns_or_ip_names() {
        let mut r = request();
        r.hosts = vec![
            "GW1.Example.org.".into(),
            "10.0.0.1".into(),
            "::1".into(),
            "[2001:db8::1]".into(),
            "gw1.example.org".into(),
        ];
        let sans = check_request(&r).unwrap();
        assert_eq!(
            sans,
            vec![
                SanType::URI(
                    "urn:accord:gateway:DEMO/GOV/70000001/gw1"
                        .try_into()
                        .unwrap()
                ),
                SanType::DnsName("gw1.example.org".try_into().unwrap()),
                SanType::IpAddress("10.0.0.1".parse().unwrap()),
                SanType::IpAddress("::1".parse().unwrap()),
                SanType::IpAddress("2001:db8::1".parse().unwrap()),
            ]
        );
    }

    #[test]
    fn bad_hosts_are_refused_with_the_host_named() {
        for host in [
            "",
            "gw 1",
            "gw1..example",
            "-gw.example",
            "gw_1.example",
            "*.example.org",
            "10.0.0",
            "[10.0.0.1]",
            "gw1.example:8443",
            "ä.example",
        ] {
            let mut r = request();
            r.hosts = vec![host.into()];
            let err = check_request(&r).unwrap_err();
            assert!(
                matches!(err, CaError::InvalidHost { .. }),
                "{host}: {err:?}"
            );
            assert!(err.to_string().contains(&format!("{host:?}")), "{err}");
        }
        let mut r = request();
        r.hosts = vec![format!("{}.example", "a".repeat(64))];
        assert!(check_request(&r).unwrap_err().to_string().contains("63"));
    }

    #[test]
    fn validity_serial_and_names_are_checked() {
        for days in [0, 3651, 4000] {
            let mut r = request();
            r.validity_days = days;
            let err = check_request(&r).unwrap_err();
            assert!(matches!(err, CaError::InvalidValidity { days: d } if d == days));
            assert!(err.to_string().contains(&days.to_string()), "{err}");
        }
        for days in [1, 3650] {
            let mut r = request();
            r.validity_days = days;
            check_request(&r).unwrap();
        }
        let mut r = request();
        r.serial = 0;
        assert!(matches!(check_request(&r), Err(CaError::ZeroSerial)));

        let mut r = request();
        r.gateway_name = " ".into();
        let err = check_request(&r).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid gateway name: expected a non-empty name, found \" \""
        );
        let mut r = request();
        r.member_id = "DEMO/GOV/1\n".into();
        assert!(check_request(&r)
            .unwrap_err()
            .to_string()
            .starts_with("invalid member id:"));
    }

    #[test]
    fn subject_strings_follow_rfc4514() {
        assert_eq!(
            subject_string(&[("O", "DEMO/GOV/70000001"), ("CN", "gw1")]),
            "CN=gw1, O=DEMO/GOV/70000001"
        );
        assert_eq!(
            subject_string(&[("O", "EE/COM/a+b,c"), ("CN", " #x ")]),
            "CN=\\ #x\\ , O=EE/COM/a\\+b\\,c"
        );
    }

    #[test]
    fn csr_pem_errors_say_what_was_expected() {
        let err = check_csr("garbage").unwrap_err();
        assert!(matches!(err, CaError::CsrPem(_)), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("certificate signing request is not valid PEM: "),
            "{err}"
        );

        let key = rcgen::KeyPair::generate().unwrap();
        let err = check_csr(&key.serialize_pem()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "certificate signing request is not valid PEM: \
             expected a \"CERTIFICATE REQUEST\" block, found \"PRIVATE KEY\""
        );

        let err = check_csr(
            "-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("base64"), "{err}");

        let err = check_csr(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        )
        .unwrap_err();
        assert!(matches!(err, CaError::CsrStructure(_)), "{err:?}");
    }
}
