//! Identifiers of members, subsystems and services, in X-Road's form.
//!
//! Accord keeps X-Road's identifiers so that an existing X-Road REST client
//! can call an Accord gateway unchanged:
//!
//! - member: `INSTANCE/CLASS/CODE`
//! - subsystem: `INSTANCE/CLASS/CODE/SUBSYSTEM`
//! - service: `INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/VERSION]`
//!
//! Every part is restricted to the characters the X-Road Message Protocol for
//! REST (section 4.8) allows: letters, digits and `'()+,-.=?`. A part can
//! therefore never contain `/`, so the plain text form (`Display`/`FromStr`)
//! is unambiguous. On the wire (URL paths and `X-Road-Client` headers) each
//! part is percent-encoded separately ([`MemberId::to_encoded`],
//! [`MemberId::parse_encoded`]), as the protocol's section 4.2 asks.

use std::fmt;
use std::str::FromStr;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest part Accord accepts (X-Road's own database columns are 255 wide;
/// codes this long are never legitimate, so we stay well below).
pub const MAX_PART_LEN: usize = 64;

/// Characters of an identifier part that are percent-encoded in a URL path
/// segment: everything but letters, digits and the sub-delimiters RFC 3986
/// allows unencoded in a path (`+` and `?` are encoded: `?` would start the
/// query, and some servers read `+` as a space).
const PART_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b',')
    .remove(b'-')
    .remove(b'.')
    .remove(b'=');

/// Which part of an identifier a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Instance,
    MemberClass,
    MemberCode,
    Subsystem,
    Service,
    Version,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Instance => "instance",
            Part::MemberClass => "member class",
            Part::MemberCode => "member code",
            Part::Subsystem => "subsystem code",
            Part::Service => "service code",
            Part::Version => "service version",
        })
    }
}

/// Why an identifier was refused: which kind, which part, what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} identifier must have the form {form}, found {found} part(s) in {input:?}")]
    WrongShape {
        kind: &'static str,
        form: &'static str,
        found: usize,
        input: String,
    },
    #[error("{part} is empty")]
    Empty { part: Part },
    #[error("{part} is {len} characters long, the limit is {MAX_PART_LEN}")]
    TooLong { part: Part, len: usize },
    #[error("{part} contains {ch:?}, only letters, digits and '()+,-.=? are allowed")]
    BadCharacter { part: Part, ch: char },
    #[error("{part} is not valid percent-encoded UTF-8")]
    BadEncoding { part: Part },
    #[error("{part} may not be \".\" or \"..\": URLs treat them as dot segments")]
    DotSegment { part: Part },
}

impl IdError {
    /// The part the problem is in, if it is in one part.
    pub fn part(&self) -> Option<Part> {
        match self {
            IdError::WrongShape { .. } => None,
            IdError::Empty { part }
            | IdError::TooLong { part, .. }
            | IdError::BadCharacter { part, .. }
            | IdError::BadEncoding { part }
            | IdError::DotSegment { part } => Some(*part),
        }
    }
}

fn allowed(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || "'()+,-.=?".contains(ch)
}

/// Checks one part against the X-Road character rules.
pub fn validate_part(part: Part, value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { part });
    }
    let len = value.chars().count();
    if len > MAX_PART_LEN {
        return Err(IdError::TooLong { part, len });
    }
    if let Some(ch) = value.chars().find(|c| !allowed(*c)) {
        return Err(IdError::BadCharacter { part, ch });
    }
    if value == "." || value == ".." {
        return Err(IdError::DotSegment { part });
    }
    Ok(())
}

fn encode_part(value: &str) -> impl fmt::Display + '_ {
    utf8_percent_encode(value, PART_ENCODE_SET)
}

fn decode_part(part: Part, raw: &str) -> Result<String, IdError> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| IdError::BadEncoding { part })
}

/// A validated part; the private field keeps every constructed id valid.
macro_rules! id_accessors {
    ($($name:ident),*) => {
        $(pub fn $name(&self) -> &str { &self.$name })*
    };
}

/// A member of a federation: `INSTANCE/CLASS/CODE`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId {
    instance: String,
    class: String,
    code: String,
}

/// A subsystem of a member, the only kind of client: `INSTANCE/CLASS/CODE/SUBSYSTEM`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubsystemId {
    member: MemberId,
    subsystem: String,
}

/// A service of a subsystem: `INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/VERSION]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId {
    subsystem: SubsystemId,
    service: String,
    version: Option<String>,
}

impl MemberId {
    pub fn new(instance: &str, class: &str, code: &str) -> Result<Self, IdError> {
        validate_part(Part::Instance, instance)?;
        validate_part(Part::MemberClass, class)?;
        validate_part(Part::MemberCode, code)?;
        Ok(MemberId {
            instance: instance.to_owned(),
            class: class.to_owned(),
            code: code.to_owned(),
        })
    }

    id_accessors!(instance, class, code);

    /// The subsystem `code` of this member.
    pub fn subsystem(&self, code: &str) -> Result<SubsystemId, IdError> {
        SubsystemId::new(self.clone(), code)
    }

    /// Parses the percent-encoded wire form, each part decoded separately.
    pub fn parse_encoded(input: &str) -> Result<Self, IdError> {
        let raw = split_exact(input, 3, "member", "INSTANCE/CLASS/CODE")?;
        MemberId::new(
            &decode_part(Part::Instance, raw[0])?,
            &decode_part(Part::MemberClass, raw[1])?,
            &decode_part(Part::MemberCode, raw[2])?,
        )
    }

    /// The percent-encoded wire form.
    pub fn to_encoded(&self) -> String {
        format!(
            "{}/{}/{}",
            encode_part(&self.instance),
            encode_part(&self.class),
            encode_part(&self.code)
        )
    }
}

impl SubsystemId {
    pub fn new(member: MemberId, subsystem: &str) -> Result<Self, IdError> {
        validate_part(Part::Subsystem, subsystem)?;
        Ok(SubsystemId {
            member,
            subsystem: subsystem.to_owned(),
        })
    }

    pub fn member(&self) -> &MemberId {
        &self.member
    }

    pub fn code(&self) -> &str {
        &self.subsystem
    }

    /// The service `code` (optionally `version`) of this subsystem.
    pub fn service(&self, code: &str, version: Option<&str>) -> Result<ServiceId, IdError> {
        ServiceId::new(self.clone(), code, version)
    }

    pub fn parse_encoded(input: &str) -> Result<Self, IdError> {
        let raw = split_exact(input, 4, "subsystem", "INSTANCE/CLASS/CODE/SUBSYSTEM")?;
        let member = MemberId::new(
            &decode_part(Part::Instance, raw[0])?,
            &decode_part(Part::MemberClass, raw[1])?,
            &decode_part(Part::MemberCode, raw[2])?,
        )?;
        SubsystemId::new(member, &decode_part(Part::Subsystem, raw[3])?)
    }

    pub fn to_encoded(&self) -> String {
        format!(
            "{}/{}",
            self.member.to_encoded(),
            encode_part(&self.subsystem)
        )
    }
}

impl ServiceId {
    pub fn new(
        subsystem: SubsystemId,
        service: &str,
        version: Option<&str>,
    ) -> Result<Self, IdError> {
        validate_part(Part::Service, service)?;
        if let Some(version) = version {
            validate_part(Part::Version, version)?;
        }
        Ok(ServiceId {
            subsystem,
            service: service.to_owned(),
            version: version.map(str::to_owned),
        })
    }

    pub fn subsystem(&self) -> &SubsystemId {
        &self.subsystem
    }

    pub fn member(&self) -> &MemberId {
        &self.subsystem.member
    }

    pub fn code(&self) -> &str {
        &self.service
    }

    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    pub fn parse_encoded(input: &str) -> Result<Self, IdError> {
        let parts: Vec<&str> = input.split('/').collect();
        if !(parts.len() == 5 || parts.len() == 6) {
            return Err(service_shape_error(input, parts.len()));
        }
        let member = MemberId::new(
            &decode_part(Part::Instance, parts[0])?,
            &decode_part(Part::MemberClass, parts[1])?,
            &decode_part(Part::MemberCode, parts[2])?,
        )?;
        let subsystem = SubsystemId::new(member, &decode_part(Part::Subsystem, parts[3])?)?;
        let service = decode_part(Part::Service, parts[4])?;
        let version = match parts.get(5) {
            Some(raw) => Some(decode_part(Part::Version, raw)?),
            None => None,
        };
        ServiceId::new(subsystem, &service, version.as_deref())
    }

    pub fn to_encoded(&self) -> String {
        let mut out = format!(
            "{}/{}",
            self.subsystem.to_encoded(),
            encode_part(&self.service)
        );
        if let Some(version) = &self.version {
            out.push('/');
            out.push_str(&encode_part(version).to_string());
        }
        out
    }
}

fn service_shape_error(input: &str, found: usize) -> IdError {
    IdError::WrongShape {
        kind: "service",
        form: "INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/VERSION]",
        found,
        input: input.to_owned(),
    }
}

fn split_exact<'a>(
    input: &'a str,
    n: usize,
    kind: &'static str,
    form: &'static str,
) -> Result<Vec<&'a str>, IdError> {
    let parts: Vec<&str> = input.split('/').collect();
    if parts.len() != n {
        return Err(IdError::WrongShape {
            kind,
            form,
            found: parts.len(),
            input: input.to_owned(),
        });
    }
    Ok(parts)
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.instance, self.class, self.code)
    }
}

impl fmt::Display for SubsystemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.member, self.subsystem)
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.subsystem, self.service)?;
        if let Some(version) = &self.version {
            write!(f, "/{version}")?;
        }
        Ok(())
    }
}

impl FromStr for MemberId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let p = split_exact(s, 3, "member", "INSTANCE/CLASS/CODE")?;
        MemberId::new(p[0], p[1], p[2])
    }
}

impl FromStr for SubsystemId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let p = split_exact(s, 4, "subsystem", "INSTANCE/CLASS/CODE/SUBSYSTEM")?;
        SubsystemId::new(MemberId::new(p[0], p[1], p[2])?, p[3])
    }
}

impl FromStr for ServiceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let p: Vec<&str> = s.split('/').collect();
        if !(p.len() == 5 || p.len() == 6) {
            return Err(service_shape_error(s, p.len()));
        }
        let subsystem = SubsystemId::new(MemberId::new(p[0], p[1], p[2])?, p[3])?;
        ServiceId::new(subsystem, p[4], p.get(5).copied())
    }
}

macro_rules! serde_as_string {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
serde_as_string!(MemberId, SubsystemId, ServiceId);

macro_rules! schema_as_string {
    ($($t:ty => $example:literal),*) => {$(
        impl utoipa::PartialSchema for $t {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .examples([serde_json::json!($example)])
                    .into()
            }
        }
        impl utoipa::ToSchema for $t {}
    )*};
}
schema_as_string!(
    MemberId => "DEMO/GOV/70000002",
    SubsystemId => "DEMO/GOV/70000002/population-register",
    ServiceId => "DEMO/GOV/70000002/population-register/residence/v1"
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn part() -> impl Strategy<Value = String> {
        "[A-Za-z0-9'()+,\\-.=?]{1,64}"
            .prop_filter("dot segments are refused", |p| p != "." && p != "..")
    }

    fn member() -> impl Strategy<Value = MemberId> {
        (part(), part(), part()).prop_map(|(i, c, m)| MemberId::new(&i, &c, &m).unwrap())
    }

    fn service() -> impl Strategy<Value = ServiceId> {
        (member(), part(), part(), proptest::option::of(part()))
            .prop_map(|(m, s, c, v)| m.subsystem(&s).unwrap().service(&c, v.as_deref()).unwrap())
    }

    proptest! {
        #[test]
        fn member_round_trips_in_text_and_wire_form(id in member()) {
            prop_assert_eq!(id.to_string().parse::<MemberId>().unwrap(), id.clone());
            prop_assert_eq!(MemberId::parse_encoded(&id.to_encoded()).unwrap(), id);
        }

        #[test]
        fn service_round_trips_in_text_and_wire_form(id in service()) {
            prop_assert_eq!(id.to_string().parse::<ServiceId>().unwrap(), id.clone());
            prop_assert_eq!(ServiceId::parse_encoded(&id.to_encoded()).unwrap(), id.clone());
            let sub = id.subsystem().clone();
            prop_assert_eq!(sub.to_string().parse::<SubsystemId>().unwrap(), sub.clone());
            prop_assert_eq!(SubsystemId::parse_encoded(&sub.to_encoded()).unwrap(), sub);
        }

        #[test]
        fn wire_form_never_holds_a_query_or_a_plus(id in service()) {
            let wire = id.to_encoded();
            prop_assert!(!wire.contains('?') && !wire.contains('+'));
        }

        #[test]
        fn a_forbidden_character_is_refused_and_named(
            good in part(),
            bad in "[^A-Za-z0-9'()+,\\-.=?/]",
            at in 0usize..64,
        ) {
            let ch = bad.chars().next().unwrap();
            let cut = good.char_indices().nth(at).map_or(good.len(), |(i, _)| i);
            let code = format!("{}{}{}", &good[..cut], ch, &good[cut..]);
            let text = format!("DEMO/GOV/{code}");
            let err = text.parse::<MemberId>().unwrap_err();
            prop_assert!(
                matches!(err, IdError::BadCharacter { part: Part::MemberCode, ch: found } if found == ch)
                    || matches!(err, IdError::TooLong { part: Part::MemberCode, .. }),
                "{err:?}"
            );
        }

        #[test]
        fn a_wrong_number_of_parts_is_refused(parts in proptest::collection::vec(part(), 0..9)) {
            let text = parts.join("/");
            prop_assert_eq!(text.parse::<MemberId>().is_ok(), parts.len() == 3);
            prop_assert_eq!(text.parse::<SubsystemId>().is_ok(), parts.len() == 4);
            prop_assert_eq!(
                text.parse::<ServiceId>().is_ok(),
                parts.len() == 5 || parts.len() == 6
            );
        }

        #[test]
        fn an_overlong_part_is_refused(len in 65usize..200) {
            let text = format!("DEMO/GOV/1/{}", "a".repeat(len));
            prop_assert_eq!(
                text.parse::<SubsystemId>().unwrap_err(),
                IdError::TooLong { part: Part::Subsystem, len }
            );
        }
    }

    #[test]
    fn every_malformed_form_names_its_part() {
        let cases: &[(&str, IdError)] = &[
            (
                "/GOV/1",
                IdError::Empty {
                    part: Part::Instance,
                },
            ),
            (
                "DEMO//1",
                IdError::Empty {
                    part: Part::MemberClass,
                },
            ),
            (
                "DEMO/GOV/",
                IdError::Empty {
                    part: Part::MemberCode,
                },
            ),
            (
                "DEMO/GOV/7 1",
                IdError::BadCharacter {
                    part: Part::MemberCode,
                    ch: ' ',
                },
            ),
            (
                "DEMO/GÖV/1",
                IdError::BadCharacter {
                    part: Part::MemberClass,
                    ch: 'Ö',
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(&input.parse::<MemberId>().unwrap_err(), expected, "{input}");
        }
        let err = "DEMO/GOV/1/sub/".parse::<ServiceId>().unwrap_err();
        assert_eq!(
            err,
            IdError::Empty {
                part: Part::Service
            }
        );
        let err = "DEMO/GOV/1/sub/svc/".parse::<ServiceId>().unwrap_err();
        assert_eq!(
            err,
            IdError::Empty {
                part: Part::Version
            }
        );
        assert_eq!(
            "DEMO/GOV/..".parse::<MemberId>().unwrap_err(),
            IdError::DotSegment {
                part: Part::MemberCode
            }
        );
        let err = "DEMO/GOV".parse::<MemberId>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "member identifier must have the form INSTANCE/CLASS/CODE, found 2 part(s) in \"DEMO/GOV\""
        );
    }

    #[test]
    fn wire_form_encodes_parts_separately() {
        let id: ServiceId = "DEMO/GOV/1/sub/what?/v+1".parse().unwrap();
        assert_eq!(id.to_encoded(), "DEMO/GOV/1/sub/what%3F/v%2B1");
        // An encoded slash decodes into a part, where it is refused.
        assert_eq!(
            MemberId::parse_encoded("DEMO/GOV/a%2Fb").unwrap_err(),
            IdError::BadCharacter {
                part: Part::MemberCode,
                ch: '/'
            }
        );
        assert_eq!(
            MemberId::parse_encoded("DEMO/GOV/%FF").unwrap_err(),
            IdError::BadEncoding {
                part: Part::MemberCode
            }
        );
    }

    #[test]
    fn serde_uses_the_text_form() {
        let id: SubsystemId = "DEMO/MUN/75000001/benefits".parse().unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"DEMO/MUN/75000001/benefits\"");
        assert_eq!(serde_json::from_str::<SubsystemId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<SubsystemId>("\"DEMO/MUN\"").is_err());
    }
}
