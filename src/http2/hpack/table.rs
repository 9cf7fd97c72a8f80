//! The static table (RFC 7541 Appendix A) and the dynamic table (§2.3.2, §4).

use super::integer;
use bytes::Bytes;
use std::collections::VecDeque;

/// Per-entry overhead the size of a dynamic table entry includes (§4.1).
pub const ENTRY_OVERHEAD: usize = 32;

/// Number of static table entries; dynamic indices start right after.
pub const STATIC_LEN: u32 = 61;

#[rustfmt::skip]
static STATIC_TABLE: [(&str, &str); STATIC_LEN as usize] = [
    /*  1 */ (":authority", ""),
    /*  2 */ (":method", "GET"),
    /*  3 */ (":method", "POST"),
    /*  4 */ (":path", "/"),
    /*  5 */ (":path", "/index.html"),
    /*  6 */ (":scheme", "http"),
    /*  7 */ (":scheme", "https"),
    /*  8 */ (":status", "200"),
    /*  9 */ (":status", "204"),
    /* 10 */ (":status", "206"),
    /* 11 */ (":status", "304"),
    /* 12 */ (":status", "400"),
    /* 13 */ (":status", "404"),
    /* 14 */ (":status", "500"),
    /* 15 */ ("accept-charset", ""),
    /* 16 */ ("accept-encoding", "gzip, deflate"),
    /* 17 */ ("accept-language", ""),
    /* 18 */ ("accept-ranges", ""),
    /* 19 */ ("accept", ""),
    /* 20 */ ("access-control-allow-origin", ""),
    /* 21 */ ("age", ""),
    /* 22 */ ("allow", ""),
    /* 23 */ ("authorization", ""),
    /* 24 */ ("cache-control", ""),
    /* 25 */ ("content-disposition", ""),
    /* 26 */ ("content-encoding", ""),
    /* 27 */ ("content-language", ""),
    /* 28 */ ("content-length", ""),
    /* 29 */ ("content-location", ""),
    /* 30 */ ("content-range", ""),
    /* 31 */ ("content-type", ""),
    /* 32 */ ("cookie", ""),
    /* 33 */ ("date", ""),
    /* 34 */ ("etag", ""),
    /* 35 */ ("expect", ""),
    /* 36 */ ("expires", ""),
    /* 37 */ ("from", ""),
    /* 38 */ ("host", ""),
    /* 39 */ ("if-match", ""),
    /* 40 */ ("if-modified-since", ""),
    /* 41 */ ("if-none-match", ""),
    /* 42 */ ("if-range", ""),
    /* 43 */ ("if-unmodified-since", ""),
    /* 44 */ ("last-modified", ""),
    /* 45 */ ("link", ""),
    /* 46 */ ("location", ""),
    /* 47 */ ("max-forwards", ""),
    /* 48 */ ("proxy-authenticate", ""),
    /* 49 */ ("proxy-authorization", ""),
    /* 50 */ ("range", ""),
    /* 51 */ ("referer", ""),
    /* 52 */ ("refresh", ""),
    /* 53 */ ("retry-after", ""),
    /* 54 */ ("server", ""),
    /* 55 */ ("set-cookie", ""),
    /* 56 */ ("strict-transport-security", ""),
    /* 57 */ ("transfer-encoding", ""),
    /* 58 */ ("user-agent", ""),
    /* 59 */ ("vary", ""),
    /* 60 */ ("via", ""),
    /* 61 */ ("www-authenticate", ""),
];

/// The static entry at a 1-based HPACK `index`, as (name, value).
pub fn static_entry(index: u32) -> Option<(&'static [u8], &'static [u8])> {
    let slot = usize::try_from(index.checked_sub(1)?).ok()?;
    STATIC_TABLE
        .get(slot)
        .map(|&(name, value)| (name.as_bytes(), value.as_bytes()))
}

/// How much of a field the static table can represent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaticMatch {
    /// Name and value match the entry at this index.
    Field(u32),
    /// Only the name matches; this is its lowest index.
    Name(u32),
}

/// Looks a field up in the static table, preferring a full match.
pub fn find_static(name: &[u8], value: &[u8]) -> Option<StaticMatch> {
    let mut name_match = None;
    for (index, &(n, v)) in (1..).zip(STATIC_TABLE.iter()) {
        if n.as_bytes() == name {
            if v.as_bytes() == value {
                return Some(StaticMatch::Field(index));
            }
            name_match.get_or_insert(StaticMatch::Name(index));
        }
    }
    name_match
}

/// One dynamic table entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    name: Bytes,
    value: Bytes,
    name_known: bool,
}

impl Entry {
    pub(super) fn new(name: Bytes, value: Bytes) -> Self {
        Entry {
            name,
            value,
            name_known: true,
        }
    }

    /// An entry whose name was copied from a table entry that predates the
    /// capture (only possible with `Decoder::with_unknown_past`).
    pub(super) fn with_unknown_name(value: Bytes) -> Self {
        Entry {
            name: Bytes::new(),
            value,
            name_known: false,
        }
    }

    /// `None` when the name was taken from an entry older than the capture.
    pub fn name(&self) -> Option<&[u8]> {
        self.name_known.then_some(&self.name[..])
    }

    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The name, shared rather than copied.
    pub(super) fn name_bytes(&self) -> Option<Bytes> {
        self.name_known.then(|| self.name.clone())
    }

    /// The value, shared rather than copied.
    pub(super) fn value_bytes(&self) -> Bytes {
        self.value.clone()
    }

    /// The §4.1 size. An unknown name counts as empty, which makes this a
    /// lower bound for such entries.
    pub fn size(&self) -> usize {
        self.name.len() + self.value.len() + ENTRY_OVERHEAD
    }
}

/// The dynamic table: newest entry first, evicting from the back (§2.3.2).
#[derive(Debug, Clone)]
pub struct DynamicTable {
    entries: VecDeque<Entry>,
    size: usize,
    max_size: usize,
}

impl DynamicTable {
    pub fn new(max_size: usize) -> Self {
        DynamicTable {
            entries: VecDeque::new(),
            size: 0,
            max_size,
        }
    }

    /// Gives back the room kept for more entries.
    pub fn shrink(&mut self) {
        self.entries.shrink_to_fit();
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sum of the entry sizes (§4.1).
    pub fn size(&self) -> usize {
        self.size
    }

    /// The current maximum size, as last set by a size update (§4.2).
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// The entry at a 0-based position, 0 being the newest, i.e. HPACK index
    /// `STATIC_LEN + 1 + position`.
    pub fn get(&self, position: usize) -> Option<&Entry> {
        self.entries.get(position)
    }

    /// Entries from newest to oldest.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.entries.iter()
    }

    /// Changes the maximum size, evicting the oldest entries until the table
    /// fits (§4.3).
    pub fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size;
        self.evict_to(max_size);
    }

    /// Adds an entry, evicting as needed first (§4.4). An entry larger than
    /// the maximum size empties the table and is not added; returns whether
    /// it was added.
    pub fn insert(&mut self, entry: Entry) -> bool {
        let entry_size = entry.size();
        if entry_size > self.max_size {
            self.entries.clear();
            self.size = 0;
            return false;
        }
        self.evict_to(self.max_size - entry_size);
        self.size += entry_size;
        self.entries.push_front(entry);
        true
    }

    fn evict_to(&mut self, target: usize) {
        while self.size > target {
            match self.entries.pop_back() {
                Some(old) => self.size -= old.size(),
                None => {
                    // Unreachable while `size` tracks the entries; resetting
                    // keeps a bookkeeping slip from looping forever.
                    self.size = 0;
                }
            }
        }
    }
}

/// A dynamic table as a quiet connection keeps it: each entry's lengths and strings end to end
/// in one allocation, where a live table holds two `Bytes` an entry (72 bytes before the
/// strings, and a shared header for each string the connection's header lists also hold).
#[derive(Debug)]
pub struct PackedTable {
    /// Per entry, newest first: the name's length plus one (0 for a name from before the
    /// capture) and the value's, as HPACK integers with 8-bit prefixes, then name and value.
    entries: Box<[u8]>,
    size: usize,
    max_size: usize,
}

impl DynamicTable {
    /// The table packed; its entries move out, leaving this one empty.
    pub fn pack(&mut self) -> PackedTable {
        let strings: usize = self.entries.iter().map(|e| e.size() - ENTRY_OVERHEAD).sum();
        // Lengths under 255 take a byte each, the common case: the room is then exact, and
        // boxing it makes no second allocation.
        let mut out = Vec::with_capacity(strings + 2 * self.entries.len());
        for e in self.entries.drain(..) {
            // Below u32::MAX: an entry is no larger than the table, whose size is a u32.
            let name_len = if e.name_known { e.name.len() + 1 } else { 0 };
            integer::encode(name_len, 8, 0, &mut out);
            integer::encode(e.value.len(), 8, 0, &mut out);
            out.extend_from_slice(&e.name);
            out.extend_from_slice(&e.value);
        }
        PackedTable {
            entries: out.into_boxed_slice(),
            size: std::mem::take(&mut self.size),
            max_size: self.max_size,
        }
    }
}

impl PackedTable {
    /// The table again, as it was when packed; what is left here is empty.
    pub fn unpack(&mut self) -> DynamicTable {
        let packed = std::mem::take(&mut self.entries);
        let mut entries = VecDeque::new();
        let mut rest = &packed[..];
        while !rest.is_empty() {
            let Some((name_len, value_len, strings)) = lengths(rest) else {
                // Not reached: `pack` wrote what is read here.
                break;
            };
            let name_known = name_len > 0;
            let (name, strings) = strings.split_at(name_len.saturating_sub(1));
            let (value, after) = strings.split_at(value_len);
            entries.push_back(Entry {
                name: Bytes::copy_from_slice(name),
                value: Bytes::copy_from_slice(value),
                name_known,
            });
            rest = after;
        }
        DynamicTable {
            entries,
            size: std::mem::take(&mut self.size),
            max_size: self.max_size,
        }
    }
}

/// An entry's two lengths at the start of `packed`, and what follows them, once it holds them
/// and their strings.
fn lengths(packed: &[u8]) -> Option<(usize, usize, &[u8])> {
    let (name_len, a) = integer::decode(packed, 8).ok()?;
    let (value_len, b) = integer::decode(packed.get(a..)?, 8).ok()?;
    let (name_len, value_len) = (name_len as usize, value_len as usize);
    let strings = packed.get(a + b..)?;
    (strings.len() >= name_len.saturating_sub(1) + value_len)
        .then_some((name_len, value_len, strings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_lookup() {
        assert_eq!(static_entry(0), None);
        assert_eq!(static_entry(1), Some((&b":authority"[..], &b""[..])));
        assert_eq!(static_entry(2), Some((&b":method"[..], &b"GET"[..])));
        assert_eq!(
            static_entry(16),
            Some((&b"accept-encoding"[..], &b"gzip, deflate"[..]))
        );
        assert_eq!(static_entry(61), Some((&b"www-authenticate"[..], &b""[..])));
        assert_eq!(static_entry(62), None);
        assert_eq!(static_entry(u32::MAX), None);
    }

    #[test]
    fn find_static_prefers_full_match_then_lowest_name_index() {
        assert_eq!(
            find_static(b":method", b"POST"),
            Some(StaticMatch::Field(3))
        );
        assert_eq!(find_static(b":method", b"PUT"), Some(StaticMatch::Name(2)));
        assert_eq!(find_static(b":status", b"200"), Some(StaticMatch::Field(8)));
        assert_eq!(find_static(b":status", b"418"), Some(StaticMatch::Name(8)));
        assert_eq!(find_static(b"cookie", b""), Some(StaticMatch::Field(32)));
        assert_eq!(find_static(b"x-custom", b"1"), None);
    }

    fn entry(name: &str, value: &str) -> Entry {
        Entry::new(
            Bytes::copy_from_slice(name.as_bytes()),
            Bytes::copy_from_slice(value.as_bytes()),
        )
    }

    #[test]
    fn insert_evicts_oldest_first() {
        // Each entry is 1 + 1 + 32 = 34 bytes; three fit in 102.
        let mut t = DynamicTable::new(102);
        for name in ["a", "b", "c", "d"] {
            assert!(t.insert(entry(name, "x")));
        }
        let names: Vec<_> = t.iter().map(|e| e.name().unwrap().to_vec()).collect();
        assert_eq!(names, [b"d".to_vec(), b"c".to_vec(), b"b".to_vec()]);
        assert_eq!(t.size(), 102);
    }

    #[test]
    fn oversized_entry_empties_the_table() {
        let mut t = DynamicTable::new(40);
        assert!(t.insert(entry("a", "x")));
        assert!(!t.insert(entry("name", "too big")));
        assert!(t.is_empty());
        assert_eq!(t.size(), 0);
    }

    #[test]
    fn entry_exactly_max_size_fits() {
        let mut t = DynamicTable::new(34);
        assert!(t.insert(entry("a", "x")));
        assert!(t.insert(entry("b", "y")));
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(0).unwrap().name(), Some(&b"b"[..]));
    }

    #[test]
    fn shrinking_evicts_and_zero_clears() {
        let mut t = DynamicTable::new(4096);
        for name in ["a", "b", "c"] {
            t.insert(entry(name, "x"));
        }
        t.set_max_size(70);
        assert_eq!(t.len(), 2);
        assert_eq!(t.size(), 68);
        t.set_max_size(0);
        assert!(t.is_empty());
        assert_eq!(t.size(), 0);
    }

    #[test]
    fn a_packed_table_unpacks_to_the_same_entries() {
        let mut t = DynamicTable::new(4096);
        t.insert(entry(":authority", "example.com:50051"));
        t.insert(Entry::with_unknown_name(Bytes::from_static(b"from before")));
        t.insert(entry("x-long", &"v".repeat(300)));
        t.insert(entry("", ""));
        let before = t.clone();
        let mut packed = t.pack();
        assert!(t.is_empty());
        let again = packed.unpack();
        assert_eq!(
            again.iter().collect::<Vec<_>>(),
            before.iter().collect::<Vec<_>>()
        );
        assert_eq!((again.size(), again.max_size()), (before.size(), 4096));
        assert_eq!(DynamicTable::new(100).pack().unpack().len(), 0);
    }

    #[test]
    fn unknown_name_entry() {
        let e = Entry::with_unknown_name(Bytes::from_static(b"v"));
        assert_eq!(e.name(), None);
        assert_eq!(e.value(), b"v");
        assert_eq!(e.size(), 33);
    }
}
