//! The federation's catalogue: members, their subsystems and services, and
//! their gateways — and the rules every field must meet.
//!
//! Members carry what X-Road lacks and co-operation across levels needs:
//! the level of government, the country, the sector and the parent body.
//! The checks live here, not in the HTTP layer, so the API, the CLI and the
//! demo seed refuse the same things with the same words.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::id::{MemberId, ServiceId, SubsystemId};

/// Longest name or title.
pub const NAME_MAX: usize = 200;
/// Longest description.
pub const DESCRIPTION_MAX: usize = 4000;
/// Largest OpenAPI document, in bytes.
pub const OPENAPI_MAX_BYTES: usize = 1024 * 1024;
/// Most data categories on one service.
pub const DATA_CATEGORIES_MAX: usize = 20;
/// Longest data category, e-mail address or gateway address.
pub const SHORT_TEXT_MAX: usize = 254;

/// One thing wrong with one field of an input: the API lists them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// The input field, as the caller named it (`country`, `parent`, ...).
    pub field: String,
    /// What was wrong, in words a person can act on.
    pub reason: String,
    /// The rule broken, where one is named (e.g. `unknown-purpose`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason: reason.into(),
            rule: None,
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Level of government a member belongs to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Local,
    Regional,
    National,
    Supranational,
}

/// Sector a member belongs to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Sector {
    Public,
    Private,
    CivilSociety,
}

macro_rules! text_enum {
    ($t:ty, $what:literal, [$($v:ident => $s:literal),*]) => {
        impl $t {
            pub const ALL: &'static [$t] = &[$(<$t>::$v),*];
            pub fn as_str(&self) -> &'static str {
                match self { $(<$t>::$v => $s),* }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok(<$t>::$v),)*
                    _ => Err(format!(
                        concat!("unknown ", $what, " {:?}, expected one of: {}"),
                        s,
                        [$($s),*].join(", ")
                    )),
                }
            }
        }
    };
}

text_enum!(Level, "level of government", [
    Local => "local", Regional => "regional", National => "national", Supranational => "supranational"
]);
text_enum!(Sector, "sector", [
    Public => "public", Private => "private", CivilSociety => "civil-society"
]);

/// An ISO 3166-1 alpha-2 country code, upper case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[schema(value_type = String, example = "EE")]
pub struct Country(String);

impl Country {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The country's English short name.
    pub fn name(&self) -> &'static str {
        isocountry::CountryCode::for_alpha2(&self.0)
            .map(|c| c.name())
            .unwrap_or("")
    }
}

impl FromStr for Country {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() != 2 || !s.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "{s:?} is not an ISO 3166-1 alpha-2 country code (two upper-case letters, e.g. EE)"
            ));
        }
        isocountry::CountryCode::for_alpha2(s)
            .map(|_| Country(s.to_owned()))
            .map_err(|_| format!("{s:?} is not an assigned ISO 3166-1 alpha-2 country code"))
    }
}

impl<'de> Deserialize<'de> for Country {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a required human-readable text: trimmed, not empty, at most `max`
/// characters, no control characters.
pub fn check_text(value: &str, max: usize) -> Result<String, String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err("must not be empty".into());
    }
    let len = trimmed.chars().count();
    if len > max {
        return Err(format!("is {len} characters long, the limit is {max}"));
    }
    if trimmed
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err("must not contain control characters".into());
    }
    Ok(trimmed.to_owned())
}

/// Checks an e-mail address: one `@`, a local part and a dotted domain.
pub fn check_email(value: &str) -> Result<String, String> {
    let value = check_text(value, SHORT_TEXT_MAX)?;
    let valid = match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !value.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if valid {
        Ok(value)
    } else {
        Err(format!("{value:?} is not an e-mail address"))
    }
}

/// Checks one data category: lower-case letters, digits and hyphens.
pub fn check_data_category(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "{value:?} is not a data category (1 to 64 lower-case letters, digits and hyphens)"
        ))
    }
}

/// What Accord reads from a service's OpenAPI document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenApiSummary {
    /// The `openapi` field, e.g. `3.0.3`.
    pub version: String,
    pub title: String,
    /// Number of paths the document declares.
    pub paths: usize,
}

/// Checks that `document` is an OpenAPI 3 document in JSON: an object with
/// `openapi` 3.x, `info.title`, `info.version`, and `paths` (3.0) or one of
/// `paths`, `components`, `webhooks` (3.1).
pub fn check_openapi(document: &str) -> Result<OpenApiSummary, String> {
    if document.len() > OPENAPI_MAX_BYTES {
        return Err(format!(
            "is {} bytes, the limit is {OPENAPI_MAX_BYTES}",
            document.len()
        ));
    }
    let value: serde_json::Value =
        serde_json::from_str(document).map_err(|e| format!("is not valid JSON: {e}"))?;
    let object = value
        .as_object()
        .ok_or("must be a JSON object (an OpenAPI document)")?;
    let version = object
        .get("openapi")
        .and_then(|v| v.as_str())
        .ok_or("has no \"openapi\" version string: only OpenAPI 3 documents are accepted")?;
    let three_one = version.starts_with("3.1.");
    if !(version.starts_with("3.0.") || three_one) {
        return Err(format!(
            "declares openapi {version:?}, expected 3.0.x or 3.1.x"
        ));
    }
    let info = object
        .get("info")
        .and_then(|v| v.as_object())
        .ok_or("has no \"info\" object")?;
    let title = info
        .get("title")
        .and_then(|v| v.as_str())
        .ok_or("has no \"info.title\" string")?;
    if info.get("version").and_then(|v| v.as_str()).is_none() {
        return Err("has no \"info.version\" string".into());
    }
    let paths = match object.get("paths") {
        Some(serde_json::Value::Object(paths)) => {
            if let Some(bad) = paths.keys().find(|k| !k.starts_with('/')) {
                return Err(format!("path {bad:?} does not start with \"/\""));
            }
            paths.len()
        }
        Some(_) => return Err("\"paths\" must be an object".into()),
        None if three_one
            && (object.contains_key("components") || object.contains_key("webhooks")) =>
        {
            0
        }
        None => return Err("has no \"paths\" object".into()),
    };
    Ok(OpenApiSummary {
        version: version.to_owned(),
        title: title.to_owned(),
        paths,
    })
}

/// A member of the federation, at any level of government and in any sector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Member {
    #[schema(value_type = String, example = "DEMO/GOV/70000001")]
    pub id: MemberId,
    pub name: String,
    pub level: Level,
    pub country: Country,
    pub sector: Sector,
    /// The body this member belongs to, e.g. the ministry of an agency.
    #[schema(value_type = Option<String>)]
    pub parent: Option<MemberId>,
    pub contact_name: Option<String>,
    pub contact_email: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// A subsystem of a member: the unit that calls and offers services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Subsystem {
    #[schema(value_type = String, example = "DEMO/GOV/70000001/population")]
    pub id: SubsystemId,
    pub name: String,
    pub created_at: String,
}

/// A service a subsystem offers to the federation. Its OpenAPI document is
/// kept whole and served on its own; this record says what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Service {
    #[schema(value_type = String, example = "DEMO/GOV/70000001/population/residence/v1")]
    pub id: ServiceId,
    pub title: String,
    pub description: String,
    /// Whether the service processes personal data (and so whether its
    /// calls must name a data subject that citizens can later look up).
    pub personal_data: bool,
    pub data_categories: Vec<String>,
    /// The `openapi` version of its document, e.g. `3.0.3`.
    pub openapi_version: String,
    pub created_at: String,
    pub updated_at: String,
}

/// A gateway a member runs, with the address other gateways reach it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Gateway {
    #[schema(value_type = String)]
    pub member: MemberId,
    pub name: String,
    /// `https://host:port` on which the provider side listens.
    pub address: String,
    /// The Ed25519 public key (PEM) the gateway signs its audit checkpoints with.
    #[serde(default)]
    pub audit_key_pem: Option<String>,
    pub created_at: String,
}

/// A TLS certificate the federation CA issued to a member's gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GatewayCertificate {
    /// Lower-case hexadecimal serial number.
    pub serial: String,
    #[schema(value_type = String)]
    pub member: MemberId,
    pub gateway: String,
    pub subject: String,
    pub fingerprint_sha256: String,
    pub not_before: String,
    pub not_after: String,
    pub revoked_at: Option<String>,
    pub revocation_reason: Option<String>,
    pub certificate_pem: String,
}

/// Checks a gateway address: `https://host:port`, nothing after the port.
/// Returns the host, for the certificate's subject alternative names.
pub fn check_gateway_address(address: &str) -> Result<String, String> {
    let rest = address
        .strip_prefix("https://")
        .ok_or_else(|| format!("{address:?} must start with https://"))?;
    if rest.len() > SHORT_TEXT_MAX || rest.is_empty() {
        return Err(format!("{address:?} has no host or is too long"));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{address:?} has an unclosed IPv6 bracket"))?;
        (host, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    let port =
        port.ok_or_else(|| format!("{address:?} has no port, e.g. https://gw.example:8443"))?;
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("{address:?} has an invalid port {port:?}"));
    }
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':');
    if !host_ok {
        return Err(format!("{address:?} has an invalid host {host:?}"));
    }
    Ok(host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries_are_iso_3166_alpha_2() {
        assert_eq!("EE".parse::<Country>().unwrap().name(), "Estonia");
        assert!("ee"
            .parse::<Country>()
            .unwrap_err()
            .contains("two upper-case"));
        assert!("XX"
            .parse::<Country>()
            .unwrap_err()
            .contains("not an assigned"));
        assert!("EST".parse::<Country>().is_err());
    }

    #[test]
    fn levels_and_sectors_parse_and_name_the_choices() {
        assert_eq!("regional".parse::<Level>(), Ok(Level::Regional));
        assert_eq!("civil-society".parse::<Sector>(), Ok(Sector::CivilSociety));
        let err = "federal".parse::<Level>().unwrap_err();
        assert_eq!(
            err,
            "unknown level of government \"federal\", expected one of: local, regional, national, supranational"
        );
        assert_eq!(
            serde_json::to_string(&Sector::CivilSociety).unwrap(),
            "\"civil-society\""
        );
    }

    #[test]
    fn texts_are_trimmed_bounded_and_clean() {
        assert_eq!(check_text("  Tax Board ", 20).unwrap(), "Tax Board");
        assert_eq!(check_text("   ", 20).unwrap_err(), "must not be empty");
        assert_eq!(
            check_text(&"x".repeat(201), NAME_MAX).unwrap_err(),
            "is 201 characters long, the limit is 200"
        );
        assert!(check_text("a\u{0}b", 20).is_err());
    }

    #[test]
    fn emails_and_categories() {
        assert!(check_email("registry@rahvastik.example").is_ok());
        for bad in [
            "nobody",
            "a@b",
            "@x.example",
            "a b@x.example",
            "a@x.example.",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
        assert!(check_data_category("health-statistics").is_ok());
        assert!(check_data_category("Health").is_err());
        assert!(check_data_category("").is_err());
    }

    #[test]
    fn openapi_documents_are_checked_with_reasons() {
        let good = r#"{"openapi":"3.0.3","info":{"title":"Residence","version":"1"},"paths":{"/persons/{id}":{}}}"#;
        let summary = check_openapi(good).unwrap();
        assert_eq!(summary.version, "3.0.3");
        assert_eq!(summary.paths, 1);
        let cases = [
            ("{", "is not valid JSON"),
            ("[]", "must be a JSON object"),
            (r#"{"swagger":"2.0"}"#, "only OpenAPI 3"),
            (r#"{"openapi":"2.0"}"#, "expected 3.0.x or 3.1.x"),
            (r#"{"openapi":"3.0.0"}"#, "no \"info\" object"),
            (
                r#"{"openapi":"3.0.0","info":{"version":"1"}}"#,
                "info.title",
            ),
            (
                r#"{"openapi":"3.0.0","info":{"title":"t","version":"1"}}"#,
                "no \"paths\"",
            ),
            (
                r#"{"openapi":"3.0.0","info":{"title":"t","version":"1"},"paths":{"x":{}}}"#,
                "does not start with",
            ),
        ];
        for (doc, reason) in cases {
            let err = check_openapi(doc).unwrap_err();
            assert!(err.contains(reason), "{doc}: {err}");
        }
        let webhooks_only =
            r#"{"openapi":"3.1.0","info":{"title":"t","version":"1"},"webhooks":{}}"#;
        assert!(check_openapi(webhooks_only).is_ok());
    }

    #[test]
    fn gateway_addresses() {
        assert_eq!(
            check_gateway_address("https://gw.tax.example:8443").unwrap(),
            "gw.tax.example"
        );
        assert_eq!(
            check_gateway_address("https://127.0.0.1:9000").unwrap(),
            "127.0.0.1"
        );
        assert_eq!(check_gateway_address("https://[::1]:9000").unwrap(), "::1");
        for bad in [
            "http://gw:1",
            "https://gw",
            "https://gw:0",
            "https://gw:99999",
            "https://g w:1",
            "https://gw:1/path",
        ] {
            assert!(check_gateway_address(bad).is_err(), "{bad}");
        }
    }
}
