//! What a decoder recognises instead of working out again: Huffman strings it decoded lately
//! (per thread) and header lists its direction produced lately (per decoder).

use super::{HeaderField, HeaderList};
use bytes::Bytes;

/// Huffman strings decoded lately on this thread, by their coded bytes. A client that does not
/// index a field sends the same literal call after call (h2, under tonic, sends every `:path`
/// so), and connections to one service send the same ones; found here, a string costs neither
/// the decoding nor an allocation. Per thread rather than per decoder, so that a capture of
/// many connections does not pay for it per connection.
#[derive(Default)]
pub(super) struct RecentStrings {
    slots: [Option<RecentString>; 8],
    next: usize,
}

/// Longer strings are not kept: their decoding costs more than the comparison saves less.
const RECENT_MAX: usize = 64;

struct RecentString {
    coded: [u8; RECENT_MAX],
    len: u8,
    decoded: Bytes,
}

impl RecentStrings {
    pub(super) fn get(&self, coded: &[u8]) -> Option<Bytes> {
        self.slots
            .iter()
            .flatten()
            .find(|s| &s.coded[..usize::from(s.len)] == coded)
            .map(|s| s.decoded.clone())
    }

    pub(super) fn put(&mut self, coded: &[u8], decoded: &Bytes) {
        if coded.len() > RECENT_MAX {
            return;
        }
        let mut slot = RecentString {
            coded: [0; RECENT_MAX],
            len: coded.len() as u8,
            decoded: decoded.clone(),
        };
        slot.coded[..coded.len()].copy_from_slice(coded);
        self.slots[self.next] = Some(slot);
        self.next = (self.next + 1) % self.slots.len();
    }
}

/// The last two header lists a decoder produced, newest first. A block that decodes to the same
/// fields as one of them shares its list instead of allocating one: calls repeat their headers,
/// and a server alternates two lists (response headers, trailers).
///
/// Each list also keeps the block that last produced it, when that block left the decoder as it
/// found it (no insertion, no size update), with the decoder's version at the time. Decoding is a
/// function of the decoder's state and the block's bytes, so the same bytes at the same version
/// give the same list without being decoded again. Blocks that only index the table and send
/// literals without indexing are the common case once a connection is warm: h2, under tonic,
/// sends every request that way.
#[derive(Debug, Clone, Default)]
pub(super) struct RecentLists {
    slots: [Option<RecentList>; 2],
}

#[derive(Debug, Clone)]
struct RecentList {
    list: HeaderList,
    block: Option<RecentBlock>,
}

#[derive(Debug, Clone)]
struct RecentBlock {
    version: u64,
    bytes: Box<[u8]>,
}

/// Longer blocks are not kept for comparison: rare, and each would hold its bytes per connection.
const BLOCK_MAX: usize = 256;

impl RecentLists {
    /// The list `block` decoded to when last seen at this `version` of the decoder.
    pub(super) fn repeat(&self, version: u64, block: &[u8]) -> Option<HeaderList> {
        self.slots.iter().flatten().find_map(|s| {
            let b = s.block.as_ref()?;
            (b.version == version && *b.bytes == *block).then(|| s.list.clone())
        })
    }

    /// The list of `fields`, shared with a recent one when equal; `fields` is left empty.
    /// `unchanged` is the block and the decoder's version when decoding it changed nothing.
    pub(super) fn share(
        &mut self,
        fields: &mut Vec<HeaderField>,
        unchanged: Option<(u64, &[u8])>,
    ) -> HeaderList {
        let block = unchanged
            .filter(|(_, b)| b.len() <= BLOCK_MAX)
            .map(|(version, b)| RecentBlock {
                version,
                bytes: b.into(),
            });
        if let Some(slot) = self
            .slots
            .iter_mut()
            .flatten()
            .find(|s| same_fields(&s.list, fields))
        {
            fields.clear();
            if block.is_some() {
                slot.block = block;
            }
            return slot.list.clone();
        }
        let list: HeaderList = fields.drain(..).collect();
        self.slots.swap(0, 1);
        self.slots[0] = Some(RecentList {
            list: list.clone(),
            block,
        });
        list
    }
}

/// `a == b`, sooner: fields taken from the tables or from the recent Huffman strings share
/// their bytes, so most compare by address, and the representations usually differ first.
pub(super) fn same_fields(a: &[HeaderField], b: &[HeaderField]) -> bool {
    let same =
        |x: &Bytes, y: &Bytes| x.len() == y.len() && (x.as_ptr() == y.as_ptr() || x[..] == y[..]);
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.repr == y.repr
                && x.name_unknown == y.name_unknown
                && x.value_unknown == y.value_unknown
                && same(&x.name, &y.name)
                && same(&x.value, &y.value)
        })
}

#[cfg(test)]
mod tests {
    use super::super::{HeaderField, Representation};
    use super::same_fields;
    use bytes::Bytes;

    fn field(name: Bytes, value: Bytes, repr: Representation) -> HeaderField {
        HeaderField {
            name,
            value,
            repr,
            name_unknown: false,
            value_unknown: false,
        }
    }

    /// `same_fields` answers as `==` does: for fields that share their bytes, fields with equal
    /// bytes elsewhere, and fields that differ in length, bytes, representation or flags.
    #[test]
    fn same_fields_is_equality() {
        let indexed = Representation::Indexed { index: 62 };
        let path = Bytes::from_static(b":path");
        let v = Bytes::copy_from_slice(b"/pkg.Svc/Get");
        let base = vec![field(path.clone(), v.clone(), indexed)];
        let mut unknown = base.clone();
        unknown[0].value_unknown = true;
        let lists = [
            base.clone(),
            // The same bytes at another address.
            vec![field(
                Bytes::copy_from_slice(b":path"),
                Bytes::copy_from_slice(b"/pkg.Svc/Get"),
                indexed,
            )],
            vec![field(
                path.clone(),
                Bytes::copy_from_slice(b"/pkg.Svc/Put"),
                indexed,
            )],
            vec![field(
                path.clone(),
                Bytes::copy_from_slice(b"/pkg.Svc/Gets"),
                indexed,
            )],
            vec![field(
                path.clone(),
                v.clone(),
                Representation::Indexed { index: 63 },
            )],
            unknown,
            Vec::new(),
            vec![field(path.clone(), v.clone(), indexed); 2],
        ];
        for a in &lists {
            for b in &lists {
                assert_eq!(same_fields(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }
}
