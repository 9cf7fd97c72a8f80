//! Prefix-coded integers (RFC 7541 §5.1).

use super::HpackError;

/// Continuation octets accepted after a full prefix. Five carry 35 bits, enough
/// for any `u32`; a longer run can only be zero-padding or garbage, and cutting
/// it off bounds the work per integer.
const MAX_CONTINUATION_OCTETS: usize = 5;

/// Decodes an integer whose prefix occupies the low `prefix_bits` (1..=8) of
/// `input[0]`. Returns the value and the number of octets consumed.
pub(super) fn decode(input: &[u8], prefix_bits: u8) -> Result<(u32, usize), HpackError> {
    debug_assert!((1..=8).contains(&prefix_bits));
    let first = *input.first().ok_or(HpackError::Truncated)?;
    let prefix_max = (1u32 << prefix_bits) - 1;
    let prefix = u32::from(first) & prefix_max;
    if prefix < prefix_max {
        return Ok((prefix, 1));
    }
    let mut value = u64::from(prefix);
    for (i, &octet) in input.iter().skip(1).enumerate() {
        if i == MAX_CONTINUATION_OCTETS {
            return Err(HpackError::IntegerOverflow);
        }
        value += u64::from(octet & 0x7f) << (7 * i);
        if value > u64::from(u32::MAX) {
            return Err(HpackError::IntegerOverflow);
        }
        if octet & 0x80 == 0 {
            // The check above makes the narrowing lossless.
            return Ok((value as u32, i + 2));
        }
    }
    Err(HpackError::Truncated)
}

/// Appends `value` with a `prefix_bits`-bit prefix; `flags` supplies the bits
/// of the first octet above the prefix.
pub(super) fn encode(value: usize, prefix_bits: u8, flags: u8, out: &mut Vec<u8>) {
    debug_assert!((1..=8).contains(&prefix_bits));
    let prefix_max = (1usize << prefix_bits) - 1;
    if value < prefix_max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | prefix_max as u8);
    let mut rest = value - prefix_max;
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(value: usize, prefix_bits: u8, flags: u8) -> Vec<u8> {
        let mut out = Vec::new();
        encode(value, prefix_bits, flags, &mut out);
        out
    }

    #[test]
    fn rfc_c_1_1_ten_with_5_bit_prefix() {
        assert_eq!(enc(10, 5, 0), [0b0000_1010]);
        assert_eq!(decode(&[0b1110_1010], 5), Ok((10, 1)));
    }

    #[test]
    fn rfc_c_1_2_1337_with_5_bit_prefix() {
        assert_eq!(enc(1337, 5, 0), [0b0001_1111, 0b1001_1010, 0b0000_1010]);
        assert_eq!(
            decode(&[0b1111_1111, 0b1001_1010, 0b0000_1010], 5),
            Ok((1337, 3))
        );
    }

    #[test]
    fn rfc_c_1_3_42_at_octet_boundary() {
        assert_eq!(enc(42, 8, 0), [0b0010_1010]);
        assert_eq!(decode(&[0b0010_1010, 0xff], 8), Ok((42, 1)));
    }

    #[test]
    fn prefix_boundaries() {
        for bits in 1..=8u8 {
            let max = (1usize << bits) - 1;
            for value in [0, max - 1, max, max + 1, 127 + max, 128 + max, 1 << 20] {
                if value == usize::MAX {
                    continue;
                }
                let coded = enc(value, bits, 0);
                assert_eq!(decode(&coded, bits), Ok((value as u32, coded.len())));
            }
        }
    }

    #[test]
    fn u32_max_round_trips_and_one_more_overflows() {
        for bits in 1..=8u8 {
            let coded = enc(u32::MAX as usize, bits, 0);
            assert_eq!(decode(&coded, bits), Ok((u32::MAX, coded.len())));
            let coded = enc(u32::MAX as usize + 1, bits, 0);
            assert_eq!(decode(&coded, bits), Err(HpackError::IntegerOverflow));
        }
    }

    #[test]
    fn flags_are_kept_out_of_the_value() {
        assert_eq!(enc(3, 4, 0x10), [0x13]);
        assert_eq!(decode(&[0x13], 4), Ok((3, 1)));
    }

    #[test]
    fn truncated() {
        assert_eq!(decode(&[], 5), Err(HpackError::Truncated));
        assert_eq!(decode(&[0x1f], 5), Err(HpackError::Truncated));
        assert_eq!(decode(&[0x1f, 0x80, 0x80], 5), Err(HpackError::Truncated));
    }

    #[test]
    fn overlong_continuation_is_rejected() {
        // Zero-valued continuation octets do not grow the value, but six of
        // them are more than any u32 needs.
        let input = [0x1f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
        assert_eq!(decode(&input, 5), Err(HpackError::IntegerOverflow));
        // Five are still accepted.
        let input = [0x1f, 0x80, 0x80, 0x80, 0x80, 0x00];
        assert_eq!(decode(&input, 5), Ok((31, 6)));
    }

    #[test]
    fn huge_integer_is_rejected() {
        let input = [0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert_eq!(decode(&input, 8), Err(HpackError::IntegerOverflow));
        let mut endless = vec![0xff; 1000];
        endless[0] = 0x7f;
        assert_eq!(decode(&endless, 7), Err(HpackError::IntegerOverflow));
    }
}
