//! Counts by name that a report keeps per connection: short sorted lists rather than maps, as
//! a map's first node alone is a few hundred bytes and a capture may hold a hundred thousand
//! connections.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// Names and their counts, sorted by name.
pub type Counts = Vec<(Cow<'static, str>, u64)>;

/// `n` more under `name`; past `max` names (a hostile capture may send any), under `other`.
/// The name is copied only when it is new.
#[allow(clippy::ptr_arg)] // a `Cow` and not a `&str`: a `'static` name is kept for free
pub fn add(counts: &mut Counts, name: &Cow<'static, str>, n: u64, max: usize, other: &'static str) {
    let find = |counts: &Counts, name: &str| counts.binary_search_by(|(k, _)| k.as_ref().cmp(name));
    match find(counts, name) {
        Ok(i) => counts[i].1 += n,
        Err(i) if counts.len() < max => {
            // Most lists hold one or two names: room for four (what a first insert makes)
            // would be wasted on each.
            counts.reserve_exact(1);
            counts.insert(i, (name.clone(), n))
        }
        Err(_) => match find(counts, other) {
            Ok(i) => counts[i].1 += n,
            Err(i) => counts.insert(i, (Cow::Borrowed(other), n)),
        },
    }
}

/// The count under `name`, 0 when it has none.
pub fn get(counts: &Counts, name: &str) -> u64 {
    counts
        .iter()
        .find_map(|(k, n)| (k == name).then_some(*n))
        .unwrap_or(0)
}

/// `{"name": count, ...}`, in name order.
pub fn to_json(counts: &Counts) -> Value {
    let map: Map<String, Value> = counts
        .iter()
        .map(|(k, n)| (k.to_string(), Value::from(*n)))
        .collect();
    Value::Object(map)
}
