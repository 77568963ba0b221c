//! Serde for the byte values the embedded store writes to its log and snapshot: base64 text.
//!
//! Earlier versions wrote values as JSON arrays of numbers (about 3.6 times the bytes); those
//! files are still read.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserializer, Serializer};
use std::fmt;

pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&STANDARD.encode(bytes))
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    deserializer.deserialize_any(BytesVisitor)
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("base64 text or an array of bytes")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
        STANDARD.decode(v).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Op;

    #[test]
    fn values_are_base64_and_old_arrays_still_read() {
        let op = Op::put("/k", vec![0u8, 1, 255]);
        let json = serde_json::to_string(&op).unwrap();
        assert!(json.contains("\"AAH/\""), "{json}");
        assert_eq!(serde_json::from_str::<Op>(&json).unwrap(), op);
        let old = r#"{"Put":{"key":"/k","value":[0,1,255],"lease":null}}"#;
        assert_eq!(serde_json::from_str::<Op>(old).unwrap(), op);
    }
}
