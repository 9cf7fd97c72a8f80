//! HPACK header decompression (RFC 7541) for reading captured HTTP/2 traffic.
//!
//! Header blocks come straight from capture files, so they are treated as
//! hostile: every length is checked against the bytes actually present before
//! anything is allocated, integers are capped at 32 bits (and at 5
//! continuation octets), dynamic table sizes are capped at
//! [`MAX_SUPPORTED_TABLE_SIZE`], and the decoded size of a block is budgeted
//! so that a few bytes of indexed references cannot expand into megabytes of
//! output.
//!
//! A capture may begin after a connection has already filled its dynamic
//! tables. [`Decoder::with_unknown_past`] decodes such connections: references
//! to entries from before the capture come out as fields whose name and/or
//! value is flagged unknown (see [`HeaderField`]) instead of failing the block.

mod encode;
pub mod huffman;
mod integer;
mod recent;
pub mod table;

#[cfg(test)]
mod tests;

pub use bytes::Bytes;
pub use encode::encode_plain;
pub use huffman::HuffmanError;

use recent::{RecentLists, RecentStrings};
use table::{DynamicTable, Entry, PackedTable, ENTRY_OVERHEAD, STATIC_LEN};

/// Dynamic table size at connection start (RFC 9113 §6.5.2 default of
/// `SETTINGS_HEADER_TABLE_SIZE`).
pub const DEFAULT_TABLE_SIZE: u32 = 4096;

/// Default cap on the decoded size of one header block, counted like
/// `SETTINGS_MAX_HEADER_LIST_SIZE`: name + value + 32 per field.
pub const DEFAULT_MAX_HEADER_LIST_SIZE: usize = 256 * 1024;

/// Largest dynamic table this decoder agrees to keep, whatever the peers
/// negotiated. The table is attacker-filled memory held for the whole
/// connection, once per direction; real stacks use 4 KiB to 64 KiB.
pub const MAX_SUPPORTED_TABLE_SIZE: u32 = 1 << 20;

/// Why a header block could not be decoded.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum HpackError {
    /// The block ends inside a representation.
    #[error("header block ends inside a field representation")]
    Truncated,
    /// An integer does not fit in 32 bits or is padded beyond any need.
    #[error("integer too large")]
    IntegerOverflow,
    /// A string literal is longer than the rest of the block.
    #[error("string literal of {len} bytes but only {remaining} bytes left in the block")]
    StringTooLong { len: u32, remaining: usize },
    /// Index 0, or an index past the end of the dynamic table.
    #[error("invalid table index {0}")]
    InvalidIndex(u32),
    #[error("bad Huffman string: {0}")]
    Huffman(#[from] HuffmanError),
    /// A dynamic table size update above `SETTINGS_HEADER_TABLE_SIZE` (§4.2).
    #[error("dynamic table size update to {requested} exceeds the limit of {limit}")]
    SizeUpdateTooLarge { requested: u32, limit: u32 },
    /// A size update above [`MAX_SUPPORTED_TABLE_SIZE`], refused to bound memory.
    #[error(
        "dynamic table size update to {requested} exceeds the supported maximum of {supported}"
    )]
    TableSizeUnsupported { requested: u32, supported: u32 },
    /// A size update after the first field of a block (§4.2).
    #[error("dynamic table size update after a header field")]
    SizeUpdateNotAtStart,
    /// The decoded block exceeds the header list budget.
    #[error("decoded header list exceeds {limit} bytes")]
    HeaderListTooLarge { limit: usize },
}

/// How a field was represented on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    /// Indexed field (§6.1).
    Indexed { index: u32 },
    /// Literal added to the dynamic table (§6.2.1). `name_index` is `None` for
    /// a literal name; `huffman_*` tell which literals were Huffman-coded.
    IncrementalIndexing {
        name_index: Option<u32>,
        huffman_name: bool,
        huffman_value: bool,
    },
    /// Literal not added to the dynamic table (§6.2.2).
    WithoutIndexing {
        name_index: Option<u32>,
        huffman_name: bool,
        huffman_value: bool,
    },
    /// Literal that intermediaries must never index (§6.2.3).
    NeverIndexed {
        name_index: Option<u32>,
        huffman_name: bool,
        huffman_value: bool,
    },
    /// Indexed field (§6.1) whose entry was inserted before the capture began
    /// (only with [`Decoder::with_unknown_past`]).
    Unknown { index: u32 },
}

/// One decoded header field.
///
/// With [`Decoder::with_unknown_past`], part of a field may come from a
/// dynamic table entry inserted before the capture started. Such a part is
/// left empty and flagged: an indexed reference to such an entry has both
/// flags set and [`Representation::Unknown`]; a literal whose name index points
/// at one has `name_unknown` set and a real value. A literal with incremental
/// indexing and an unknown name stores an entry with an unknown name, so later
/// references to it are flagged too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    pub name: Bytes,
    pub value: Bytes,
    pub repr: Representation,
    pub name_unknown: bool,
    pub value_unknown: bool,
}

/// A decoded header block. Shared: the frame event that completed it and the call it belongs
/// to hold the same list, and handing it to both must not copy every field.
pub type HeaderList = std::sync::Arc<[HeaderField]>;

impl HeaderField {
    /// Whether both name and value were recovered.
    pub fn is_complete(&self) -> bool {
        !self.name_unknown && !self.value_unknown
    }
}

/// Decoding state for one direction of one connection.
#[derive(Debug, Clone)]
pub struct Decoder {
    table: DynamicTable,
    table_size_limit: u32,
    max_header_list_size: usize,
    /// Entries from before the capture may still sit behind the known ones.
    past_unknown: bool,
    /// The table's maximum size is known rather than assumed; without it,
    /// eviction arithmetic proves nothing about what the peer still holds.
    max_size_known: bool,
    size_updates: Vec<u32>,
    /// Changes whenever something decoding depends on changes; see [`RecentLists`].
    version: u64,
    recent: RecentLists,
}

/// What a [`Decoder`] keeps while its connection is quiet: its table and what decoding depends
/// on, without the recent lists (a cache) or room kept for the next block.
#[derive(Debug)]
pub struct QuietDecoder {
    table: PackedTable,
    table_size_limit: u32,
    max_header_list_size: usize,
    past_unknown: bool,
    max_size_known: bool,
    /// Those of the last block, still read after it (empty but right after a size update).
    size_updates: Box<[u32]>,
    version: u64,
}

impl QuietDecoder {
    /// The decoder again, as it was when frozen; its table moves out, leaving this one empty.
    pub fn thaw(&mut self) -> Decoder {
        let QuietDecoder {
            table,
            table_size_limit,
            max_header_list_size,
            past_unknown,
            max_size_known,
            size_updates,
            version,
        } = self;
        Decoder {
            table: table.unpack(),
            table_size_limit: *table_size_limit,
            max_header_list_size: *max_header_list_size,
            past_unknown: *past_unknown,
            max_size_known: *max_size_known,
            size_updates: std::mem::take(size_updates).into_vec(),
            version: *version,
            recent: RecentLists::default(),
        }
    }
}

thread_local! {
    static RECENT_STRINGS: std::cell::RefCell<RecentStrings> = std::cell::RefCell::new(RecentStrings::default());

    /// Where Huffman strings are decoded before they are copied out at their exact size: one
    /// allocation per string instead of a growing vector and the `Bytes` that adopts it. One
    /// per thread rather than per decoder: a capture may hold many connections at once.
    static HUFFMAN_SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };

    /// Where [`Decoder::decode_shared`] decodes a block before its fields move into a list: one
    /// allocation per list, of the exact size, instead of a vector and then the list.
    static FIELD_SCRATCH: std::cell::RefCell<Vec<HeaderField>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Empties this thread's recent Huffman strings, so that what follows decodes them afresh: for
/// benchmarks that decode the same blocks again and again.
pub fn forget_recent_strings() {
    RECENT_STRINGS.with_borrow_mut(|r| *r = RecentStrings::default());
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

enum Lookup<'a> {
    Static(&'static [u8], &'static [u8]),
    Dynamic(&'a Entry),
    /// Past the known entries, in the part of the table that predates the capture.
    BeforeCapture,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum LiteralKind {
    Incremental,
    WithoutIndexing,
    NeverIndexed,
}

impl Decoder {
    /// Gives back what a quiet connection need not hold: the table's room for more entries,
    /// and the recent lists (a cache: the blocks that come next decode the same without it).
    pub fn compact(&mut self) {
        self.table.shrink();
        if self.size_updates.is_empty() {
            self.size_updates = Vec::new();
        }
        self.recent = RecentLists::default();
    }

    /// Whether [`freeze`](Self::freeze) and the thaw after it cost little enough to be done at
    /// every quiet second: a table within the default size (at most 128 entries, 4 kB). A peer
    /// may allow a table of 1 MiB, and a crafted capture could have each packet thaw one,
    /// 32,000 entries made again for a packet of 60 bytes.
    pub fn freezes_cheaply(&self) -> bool {
        self.table.size() <= DEFAULT_TABLE_SIZE as usize
    }

    /// The decoder of a quiet connection, as [`QuietDecoder`]; its table moves out, leaving this
    /// one empty.
    pub fn freeze(&mut self) -> QuietDecoder {
        let Decoder {
            table,
            table_size_limit,
            max_header_list_size,
            past_unknown,
            max_size_known,
            size_updates,
            version,
            // A cache: what comes next decodes the same without it.
            recent: _,
        } = self;
        QuietDecoder {
            table: table.pack(),
            table_size_limit: *table_size_limit,
            max_header_list_size: *max_header_list_size,
            past_unknown: *past_unknown,
            max_size_known: *max_size_known,
            size_updates: std::mem::take(size_updates).into_boxed_slice(),
            version: *version,
        }
    }

    /// Connection start: table size 4096, nothing unknown.
    pub fn new() -> Self {
        Decoder {
            table: DynamicTable::new(DEFAULT_TABLE_SIZE as usize),
            table_size_limit: DEFAULT_TABLE_SIZE,
            max_header_list_size: DEFAULT_MAX_HEADER_LIST_SIZE,
            past_unknown: false,
            max_size_known: true,
            size_updates: Vec::new(),
            version: 0,
            recent: RecentLists::default(),
        }
    }

    /// For captures that start mid-connection: entries inserted before the
    /// capture started are unknown, and a dynamic-table reference past the
    /// known entries decodes as an unknown field instead of an error.
    ///
    /// The SETTINGS exchange was probably missed as well, so size updates are
    /// accepted up to [`MAX_SUPPORTED_TABLE_SIZE`] until
    /// [`set_max_table_size_limit`](Self::set_max_table_size_limit) says
    /// otherwise. Until a size update reveals the real maximum, the table is
    /// assumed to hold 4096 bytes. A wrong guess only turns more fields
    /// unknown, never wrong ones: entries from before the capture are always
    /// the oldest, so whatever either side has evicted sits past the entries
    /// both still share. Once the known entries provably fill the table, the
    /// past is known again and bad indices are errors as usual.
    pub fn with_unknown_past() -> Self {
        Decoder {
            table_size_limit: MAX_SUPPORTED_TABLE_SIZE,
            past_unknown: true,
            max_size_known: false,
            ..Self::new()
        }
    }

    /// The receiver's `SETTINGS_HEADER_TABLE_SIZE`: the upper bound a size
    /// update may set (§4.2). Takes effect when acknowledged; the caller
    /// decides when. The table shrinks if needed, as the encoder's must.
    pub fn set_max_table_size_limit(&mut self, n: u32) {
        self.changed();
        self.table_size_limit = n;
        let n = n as usize;
        if self.table.max_size() > n {
            self.table.set_max_size(n);
            self.note_table_change();
        }
    }

    /// Cap on the decoded size of one block, counting name + value + 32 per
    /// field (default [`DEFAULT_MAX_HEADER_LIST_SIZE`]).
    pub fn set_max_header_list_size(&mut self, n: usize) {
        self.changed();
        self.max_header_list_size = n;
    }

    /// Decodes one complete header block (a HEADERS or `PUSH_PROMISE` fragment
    /// with those of its CONTINUATION frames joined) and appends the fields
    /// to `out`.
    ///
    /// # Errors
    ///
    /// Any [`HpackError`]. The fields before the bad one have been appended
    /// to `out`, and the table may hold the effects of part of the block:
    /// the decoder can no longer follow this direction and the caller should
    /// treat it as desynchronised.
    pub fn decode(&mut self, block: &[u8], out: &mut Vec<HeaderField>) -> Result<(), HpackError> {
        self.size_updates.clear();
        let mut input = Input { rest: block };
        let mut budget = Budget {
            used: 0,
            limit: self.max_header_list_size,
        };
        let mut field_seen = false;
        while let Some(first) = input.peek() {
            let field = if first & 0x80 != 0 {
                let index = input.integer(7)?;
                self.indexed(index, &mut budget)?
            } else if first & 0x40 != 0 {
                self.literal(&mut input, 6, LiteralKind::Incremental, &mut budget)?
            } else if first & 0x20 != 0 {
                if field_seen {
                    return Err(HpackError::SizeUpdateNotAtStart);
                }
                let size = input.integer(5)?;
                self.size_update(size)?;
                continue;
            } else if first & 0x10 != 0 {
                self.literal(&mut input, 4, LiteralKind::NeverIndexed, &mut budget)?
            } else {
                self.literal(&mut input, 4, LiteralKind::WithoutIndexing, &mut budget)?
            };
            field_seen = true;
            out.push(field);
        }
        Ok(())
    }

    /// Decodes one complete header block as [`decode`](Self::decode) does, into a shared list.
    /// A block that decodes to the same fields as one of the direction's last two lists shares
    /// that list, and the very block that produced it, seen again with the table unchanged, is
    /// not decoded again.
    ///
    /// # Errors
    ///
    /// As [`decode`](Self::decode); the fields before the bad one are lost.
    pub fn decode_shared(&mut self, block: &[u8]) -> Result<HeaderList, HpackError> {
        if let Some(list) = self.recent.repeat(self.version, block) {
            self.size_updates.clear();
            return Ok(list);
        }
        FIELD_SCRATCH.with_borrow_mut(|out| {
            out.clear();
            let version = self.version;
            let result = self.decode(block, out).map(|()| {
                let unchanged = (self.version == version).then_some((version, block));
                self.recent.share(out, unchanged)
            });
            // Left empty for the next block, also after a failed decode.
            out.clear();
            if out.capacity() > 1024 {
                *out = Vec::new();
            }
            result
        })
    }

    /// Dynamic table size updates found at the start of the last block
    /// passed to [`decode`](Self::decode), in order.
    pub fn last_size_updates(&self) -> &[u32] {
        &self.size_updates
    }

    /// Current dynamic table size in bytes (§4.1). With an unknown past this
    /// counts only the known entries, and unknown names as empty.
    pub fn table_size(&self) -> usize {
        self.table.size()
    }

    /// Number of entries in the dynamic table (known entries only).
    pub fn table_len(&self) -> usize {
        self.table.len()
    }

    /// Current maximum dynamic table size, as set by the last size update.
    pub fn max_table_size(&self) -> usize {
        self.table.max_size()
    }

    /// The `SETTINGS_HEADER_TABLE_SIZE` currently enforced on size updates.
    pub fn max_table_size_limit(&self) -> u32 {
        self.table_size_limit
    }

    /// Whether entries from before the capture may still be in the table.
    pub fn past_unknown(&self) -> bool {
        self.past_unknown
    }

    /// The dynamic table itself, newest entry first.
    pub fn dynamic_table(&self) -> &DynamicTable {
        &self.table
    }

    fn lookup(&self, index: u32) -> Result<Lookup<'_>, HpackError> {
        if index == 0 {
            return Err(HpackError::InvalidIndex(0));
        }
        if let Some((name, value)) = table::static_entry(index) {
            return Ok(Lookup::Static(name, value));
        }
        let Some(position) = index.checked_sub(STATIC_LEN + 1) else {
            return Err(HpackError::InvalidIndex(index));
        };
        match self.table.get(position as usize) {
            Some(entry) => Ok(Lookup::Dynamic(entry)),
            None if self.past_unknown => Ok(Lookup::BeforeCapture),
            None => Err(HpackError::InvalidIndex(index)),
        }
    }

    fn indexed(&self, index: u32, budget: &mut Budget) -> Result<HeaderField, HpackError> {
        let repr = Representation::Indexed { index };
        // Charge before copying: this is where a small block expands.
        let field = match self.lookup(index)? {
            Lookup::Static(name, value) => {
                budget.charge(name.len() + value.len() + ENTRY_OVERHEAD)?;
                HeaderField {
                    name: Bytes::from_static(name),
                    value: Bytes::from_static(value),
                    repr,
                    name_unknown: false,
                    value_unknown: false,
                }
            }
            Lookup::Dynamic(entry) => {
                budget.charge(entry.size())?;
                HeaderField {
                    name: entry.name_bytes().unwrap_or_default(),
                    value: entry.value_bytes(),
                    repr,
                    name_unknown: entry.name().is_none(),
                    value_unknown: false,
                }
            }
            Lookup::BeforeCapture => {
                budget.charge(ENTRY_OVERHEAD)?;
                HeaderField {
                    name: Bytes::new(),
                    value: Bytes::new(),
                    repr: Representation::Unknown { index },
                    name_unknown: true,
                    value_unknown: true,
                }
            }
        };
        Ok(field)
    }

    /// Reads a string literal (§5.2); returns it decoded and whether it was Huffman-coded.
    fn decoded_string(input: &mut Input<'_>) -> Result<(Bytes, bool), HpackError> {
        let (raw, huffman) = input.string()?;
        if !huffman {
            return Ok((Bytes::copy_from_slice(raw), false));
        }
        if let Some(known) = RECENT_STRINGS.with_borrow(|r| r.get(raw)) {
            return Ok((known, true));
        }
        let decoded = HUFFMAN_SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            huffman::decode(raw, scratch)?;
            let decoded = Bytes::copy_from_slice(scratch);
            // A huge value once should not stay with the thread.
            if scratch.capacity() > 64 << 10 {
                *scratch = Vec::new();
            }
            Ok::<_, HpackError>(decoded)
        })?;
        RECENT_STRINGS.with_borrow_mut(|r| r.put(raw, &decoded));
        Ok((decoded, true))
    }

    fn literal(
        &mut self,
        input: &mut Input<'_>,
        prefix_bits: u8,
        kind: LiteralKind,
        budget: &mut Budget,
    ) -> Result<HeaderField, HpackError> {
        let index = input.integer(prefix_bits)?;
        let (name, name_index, huffman_name, name_unknown) = if index == 0 {
            let (name, huffman) = Self::decoded_string(input)?;
            budget.charge(name.len() + ENTRY_OVERHEAD)?;
            (name, None, huffman, false)
        } else {
            let known_name = match self.lookup(index)? {
                Lookup::Static(name, _) => Some(Bytes::from_static(name)),
                Lookup::Dynamic(entry) => entry.name_bytes(),
                Lookup::BeforeCapture => None,
            };
            budget.charge(known_name.as_ref().map_or(0, Bytes::len) + ENTRY_OVERHEAD)?;
            let unknown = known_name.is_none();
            (known_name.unwrap_or_default(), Some(index), false, unknown)
        };
        let (value, huffman_value) = Self::decoded_string(input)?;
        budget.charge(value.len())?;

        let repr = match kind {
            LiteralKind::Incremental => Representation::IncrementalIndexing {
                name_index,
                huffman_name,
                huffman_value,
            },
            LiteralKind::WithoutIndexing => Representation::WithoutIndexing {
                name_index,
                huffman_name,
                huffman_value,
            },
            LiteralKind::NeverIndexed => Representation::NeverIndexed {
                name_index,
                huffman_name,
                huffman_value,
            },
        };
        if kind == LiteralKind::Incremental {
            let entry = if name_unknown {
                Entry::with_unknown_name(value.clone())
            } else {
                Entry::new(name.clone(), value.clone())
            };
            self.insert(entry);
        }
        Ok(HeaderField {
            name,
            value,
            repr,
            name_unknown,
            value_unknown: false,
        })
    }

    fn size_update(&mut self, size: u32) -> Result<(), HpackError> {
        if size > self.table_size_limit {
            return Err(HpackError::SizeUpdateTooLarge {
                requested: size,
                limit: self.table_size_limit,
            });
        }
        if size > MAX_SUPPORTED_TABLE_SIZE {
            return Err(HpackError::TableSizeUnsupported {
                requested: size,
                supported: MAX_SUPPORTED_TABLE_SIZE,
            });
        }
        self.changed();
        self.table.set_max_size(size as usize);
        self.max_size_known = true;
        self.size_updates.push(size);
        self.note_table_change();
        Ok(())
    }

    fn insert(&mut self, entry: Entry) {
        self.changed();
        let added = self.table.insert(entry);
        // An entry too big for the table empties it on the peer's side too
        // (sizes we track are exact or too small, never too large).
        if !added && self.max_size_known {
            self.past_unknown = false;
        }
        self.note_table_change();
    }

    /// Marks the state decoding depends on as changed: blocks seen before may decode otherwise.
    fn changed(&mut self) {
        self.version = self.version.wrapping_add(1);
    }

    /// Decides whether entries from before the capture can still exist.
    ///
    /// Our entry sizes are exact or (for unknown names) lower bounds, so the
    /// peer's known entries take at least as much room as ours. Once that
    /// leaves less than the smallest possible entry (32 bytes) under a known
    /// maximum, nothing older survives on the peer's side either.
    fn note_table_change(&mut self) {
        if self.past_unknown
            && self.max_size_known
            && self.table.max_size().saturating_sub(self.table.size()) < ENTRY_OVERHEAD
        {
            self.past_unknown = false;
        }
    }
}

/// Per-block header list budget.
struct Budget {
    used: usize,
    limit: usize,
}

impl Budget {
    fn charge(&mut self, bytes: usize) -> Result<(), HpackError> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.limit {
            return Err(HpackError::HeaderListTooLarge { limit: self.limit });
        }
        Ok(())
    }
}

/// The unread rest of a header block.
struct Input<'a> {
    rest: &'a [u8],
}

impl<'a> Input<'a> {
    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    fn integer(&mut self, prefix_bits: u8) -> Result<u32, HpackError> {
        let (value, used) = integer::decode(self.rest, prefix_bits)?;
        self.rest = self.rest.get(used..).ok_or(HpackError::Truncated)?;
        Ok(value)
    }

    /// Reads a string literal (§5.2) as it lies; returns it and whether it is Huffman-coded.
    fn string(&mut self) -> Result<(&'a [u8], bool), HpackError> {
        let huffman = self.peek().ok_or(HpackError::Truncated)? & 0x80 != 0;
        let len = self.integer(7)?;
        let remaining = self.rest.len();
        let (raw, rest) = self
            .rest
            .split_at_checked(len as usize)
            .ok_or(HpackError::StringTooLong { len, remaining })?;
        self.rest = rest;
        Ok((raw, huffman))
    }
}

/// Where each field's representation lies in a header block, in order, without decoding it:
/// the TUI highlights a header's bytes in the hex pane. Size updates are not fields and are
/// skipped; a malformed tail ends the list.
pub fn field_spans(block: &[u8]) -> Vec<std::ops::Range<usize>> {
    fn skip_string(input: &mut Input<'_>) -> Option<()> {
        let len = input.integer(7).ok()? as usize;
        input.rest = input.rest.get(len..)?;
        Some(())
    }
    let mut spans = Vec::new();
    let mut input = Input { rest: block };
    while let Some(first) = input.peek() {
        let start = block.len() - input.rest.len();
        let ok = if first & 0x80 != 0 {
            input.integer(7).ok().map(|_| ())
        } else if first & 0x20 != 0 && first & 0x40 == 0 {
            // A dynamic table size update.
            if input.integer(5).is_err() {
                break;
            }
            continue;
        } else {
            let prefix = if first & 0x40 != 0 { 6 } else { 4 };
            input.integer(prefix).ok().and_then(|name_index| {
                if name_index == 0 {
                    skip_string(&mut input)?;
                }
                skip_string(&mut input)
            })
        };
        if ok.is_none() {
            break;
        }
        spans.push(start..block.len() - input.rest.len());
    }
    spans
}
