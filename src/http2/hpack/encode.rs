//! A minimal HPACK encoder for re-emitting header lists (e.g. as HAProxy
//! input) where compression does not matter but predictability does.

use super::integer;
use super::table::{find_static, StaticMatch};

/// Encodes `headers` as one header block that needs no dynamic table state:
/// an indexed field when the static table has the exact name and value, else a
/// literal without indexing, naming the static entry when only the name
/// matches. No Huffman coding and no dynamic table, so any decoder in any
/// state decodes it the same way and it never changes the decoder's state.
pub fn encode_plain(headers: &[(&[u8], &[u8])], out: &mut Vec<u8>) {
    for &(name, value) in headers {
        match find_static(name, value) {
            Some(StaticMatch::Field(index)) => integer::encode(index as usize, 7, 0x80, out),
            Some(StaticMatch::Name(index)) => {
                integer::encode(index as usize, 4, 0x00, out);
                plain_string(value, out);
            }
            None => {
                out.push(0x00);
                plain_string(name, out);
                plain_string(value, out);
            }
        }
    }
}

fn plain_string(s: &[u8], out: &mut Vec<u8>) {
    integer::encode(s.len(), 7, 0x00, out);
    out.extend_from_slice(s);
}
