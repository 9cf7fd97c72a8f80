//! Decoded small messages, remembered by type and bytes. Much gRPC traffic repeats the same
//! small message over and over (health checks and their answers, empty requests, pings), and
//! decoding one with its schema and writing its JSON costs ten times as much as finding it here.

use std::hash::BuildHasher;
use std::sync::Arc;

use prost_reflect::MessageDescriptor;

use super::message::Json;

/// Bodies longer than this are decoded every time: long ones seldom repeat, and hashing and
/// comparing them would cost more than a miss saves.
pub const MAX_BYTES: usize = 128;
/// Nor is a JSON text longer than this kept (a short body can hold a large default-valued
/// tree only through many fields, but it is cheap to bound).
const MAX_JSON: usize = 1024;
/// Slots, each holding one message: about 75 KiB at most.
const SLOTS: usize = 64;

/// A decode's result for [`Memo`]: the type's full name and the message's JSON (`None` when
/// the output shows no JSON, as for `-T fields -e type`).
#[derive(Debug, Clone)]
pub struct Remembered {
    pub type_name: Arc<str>,
    pub json: Option<Json>,
}

#[derive(Debug, Clone)]
struct Entry {
    desc: MessageDescriptor,
    bytes: Vec<u8>,
    found: Remembered,
}

/// A direct-mapped table: a new message takes the slot of its hash, whatever was there.
#[derive(Debug, Clone, Default)]
pub struct Memo {
    /// Empty until the first message is kept (a summary never decodes one).
    slots: Vec<Option<Entry>>,
}

impl Memo {
    fn slot(desc: &MessageDescriptor, bytes: &[u8]) -> usize {
        // The name's address tells the types of one pool apart without reading the name; the
        // descriptors are compared in full on a hit.
        let name = desc.full_name().as_ptr() as usize;
        let h = foldhash::fast::FixedState::with_seed(0).hash_one((name, bytes));
        (h as usize) % SLOTS
    }

    /// What `bytes` decoded to as a `desc` before, if it is still here.
    pub fn get(&self, desc: &MessageDescriptor, bytes: &[u8]) -> Option<Remembered> {
        if bytes.len() > MAX_BYTES || self.slots.is_empty() {
            return None;
        }
        let e = self.slots[Self::slot(desc, bytes)].as_ref()?;
        (e.bytes == bytes && e.desc == *desc).then(|| e.found.clone())
    }

    /// Keeps what `bytes` decoded to as a `desc`, if both are short enough.
    pub fn put(&mut self, desc: &MessageDescriptor, bytes: &[u8], found: &Remembered) {
        if bytes.len() > MAX_BYTES
            || found
                .json
                .as_ref()
                .is_some_and(|j| j.as_str().len() > MAX_JSON)
        {
            return;
        }
        if self.slots.is_empty() {
            self.slots.resize(SLOTS, None);
        }
        let slot = &mut self.slots[Self::slot(desc, bytes)];
        match slot {
            // The slot's buffer is reused: no allocation once the table is warm.
            Some(e) => {
                e.desc = desc.clone();
                e.bytes.clear();
                e.bytes.extend_from_slice(bytes);
                e.found = found.clone();
            }
            None => {
                *slot = Some(Entry {
                    desc: desc.clone(),
                    bytes: bytes.to_vec(),
                    found: found.clone(),
                })
            }
        }
    }

    /// Forgets every message: the schemas changed, and a type may now decode differently.
    pub fn clear(&mut self) {
        self.slots.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::schema::Schemas;

    fn remembered(name: &str, json: &str) -> Remembered {
        Remembered {
            type_name: name.into(),
            json: Some(
                Json::of(&serde_json::from_str::<serde_json::Value>(json).unwrap()).unwrap(),
            ),
        }
    }

    /// A message is found by its type and bytes both: the same bytes as another type, or other
    /// bytes of the same type, are not the message kept.
    #[test]
    fn found_by_type_and_bytes() {
        let schemas = Schemas::bundled();
        let request = schemas
            .message("grpc.health.v1.HealthCheckRequest")
            .unwrap();
        let response = schemas
            .message("grpc.health.v1.HealthCheckResponse")
            .unwrap();
        let mut memo = Memo::default();
        assert!(memo.get(&response, &[8, 1]).is_none());
        let serving = remembered(response.full_name(), r#"{"status":"SERVING"}"#);
        memo.put(&response, &[8, 1], &serving);
        let got = memo.get(&response, &[8, 1]).unwrap();
        assert_eq!(got.json.unwrap().as_str(), r#"{"status":"SERVING"}"#);
        assert_eq!(&*got.type_name, "grpc.health.v1.HealthCheckResponse");
        assert!(memo.get(&response, &[8, 2]).is_none());
        assert!(memo.get(&request, &[8, 1]).is_none());
        memo.clear();
        assert!(memo.get(&response, &[8, 1]).is_none());
    }

    /// Long bodies and long JSON texts are not kept.
    #[test]
    fn long_ones_are_not_kept() {
        let schemas = Schemas::bundled();
        let desc = schemas
            .message("grpc.health.v1.HealthCheckRequest")
            .unwrap();
        let mut memo = Memo::default();
        let long = vec![0u8; MAX_BYTES + 1];
        memo.put(&desc, &long, &remembered("t", "{}"));
        assert!(memo.get(&desc, &long).is_none());
        let big_json = format!(r#"{{"service":"{}"}}"#, "x".repeat(MAX_JSON));
        memo.put(&desc, b"\n\x01x", &remembered("t", &big_json));
        assert!(memo.get(&desc, b"\n\x01x").is_none());
        memo.put(&desc, b"\n\x01x", &remembered("t", r#"{"service":"x"}"#));
        assert!(memo.get(&desc, b"\n\x01x").is_some());
    }
}
