//! Serde forms for fixed-size byte values: hashes as lower-case hex (as in
//! the rest of Accord's JSON), signatures as standard base64 (as agreement
//! signatures are). Decoding checks the length, so a value of the wrong size
//! is refused when it is read, not later when it is used. [`hex32`] is
//! public for the other wire forms that carry hashes (the gateway's
//! receipts).

pub mod hex32 {
    use serde::de::Visitor;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 64];
        hex::encode_to_slice(bytes, &mut buf).map_err(serde::ser::Error::custom)?;
        s.serialize_str(std::str::from_utf8(&buf).map_err(serde::ser::Error::custom)?)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        d.deserialize_str(Hex32)
    }

    /// Decodes in place: no string is allocated for the hex text.
    struct Hex32;

    impl Visitor<'_> for Hex32 {
        type Value = [u8; 32];

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("64 hex digits (a SHA-256 hash)")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<[u8; 32], E> {
            let mut out = [0u8; 32];
            hex::decode_to_slice(text.as_bytes(), &mut out).map_err(|_| {
                E::custom(format!(
                    "expected 64 hex digits (a SHA-256 hash), found {text:?}"
                ))
            })?;
            Ok(out)
        }
    }
}

pub(crate) mod signature_b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use ed25519_dalek::Signature;
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(sig: &Signature, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(sig.to_bytes()))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Signature, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| D::Error::custom("expected a base64 Ed25519 signature"))?;
        Signature::from_slice(&bytes).map_err(|_| {
            D::Error::custom(format!(
                "an Ed25519 signature has 64 bytes, this one has {}",
                bytes.len()
            ))
        })
    }
}
