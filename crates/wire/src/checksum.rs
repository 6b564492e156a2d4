//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Partial sums are folded one's-complement sums, *not* inverted; a header's checksum field holds
//! the inverted sum. Verifying a header means its folded sum, checksum field included, is 0xffff.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Folds a wide one's-complement accumulator into 16 bits (end-around carry).
const fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Folded one's-complement sum of `bytes` taken as big-endian 16-bit words; an odd final byte is
/// padded with zero on the right (RFC 1071 §4.1).
pub fn data(bytes: &[u8]) -> u16 {
    // Summing 32-bit words is equivalent because 2^16 ≡ 1 (mod 2^16 - 1); a u64 accumulator
    // cannot overflow for any buffer shorter than 2^32 words.
    let mut acc: u64 = 0;
    let mut words = bytes.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    match *words.remainder() {
        [a, b, c] => acc += u64::from(u16::from_be_bytes([a, b])) + (u64::from(c) << 8),
        [a, b] => acc += u64::from(u16::from_be_bytes([a, b])),
        [a] => acc += u64::from(a) << 8,
        _ => {}
    }
    fold(acc)
}

/// Folded one's-complement sum of partial sums.
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// Partial sum of the IPv4 pseudo-header used by TCP and UDP (RFC 9293 §3.1, RFC 768).
pub fn pseudo_header_v4(src: &Ipv4Addr, dst: &Ipv4Addr, protocol: u8, length: u32) -> u16 {
    let mut acc = u64::from(u32::from(*src)) + u64::from(u32::from(*dst));
    acc += u64::from(protocol) + u64::from(length);
    fold(acc)
}

/// Partial sum of the IPv6 pseudo-header used by upper layers (RFC 8200 §8.1): source,
/// destination, 32-bit upper-layer length and next header.
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, length: u32) -> u16 {
    let s = u128::from(*src);
    let d = u128::from(*dst);
    let mut acc: u64 = 0;
    for shift in [0u32, 32, 64, 96] {
        acc += u64::from((s >> shift) as u32) + u64::from((d >> shift) as u32);
    }
    acc += u64::from(length) + u64::from(next_header);
    fold(acc)
}

/// Whether a transport checksum field holds only the pseudo-header sum `pseudo` (0x0000 and
/// 0xffff being the same number in one's complement): what a stack leaves under
/// `CHECKSUM_PARTIAL` for the NIC to complete, and what GRO leaves in a merged packet.
///
/// Such a field may be completed without asking whether it is one: completing sums the
/// segment with the field as it stands and stores the inverse, and for a real checksum that
/// happens to equal the pseudo-header sum (one in 65,536) that gives the same value back.
pub fn holds_pseudo_header(field: u16, pseudo: u16) -> bool {
    field == pseudo || (field | pseudo == 0xffff && (field == 0 || pseudo == 0))
}

/// Incrementally updates a stored (inverted) checksum field after one 16-bit word of the covered
/// data changed from `old` to `new`: `HC' = ~(~HC + ~m + m')`, RFC 1624 eqn. 3.
///
/// Eqn. 3 rather than eqn. 2 because it never yields the "negative zero" 0x0000 for a header
/// whose full recomputation gives 0xffff, so the result is bit-identical to recomputing.
/// `old`/`new` must be aligned on the checksum's 16-bit word grid; for a value at an odd offset
/// pass both byte-swapped (one's-complement sums commute with byte swapping, RFC 1071 §2(B)).
pub fn update(checksum: u16, old: u16, new: u16) -> u16 {
    !fold(u64::from(!checksum) + u64::from(!old) + u64::from(new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        assert_eq!(data(&hex!("0001f203f4f5f6f7")), 0xddf2);
    }

    #[test]
    fn odd_length_pads_right() {
        assert_eq!(data(&[0xab]), 0xab00);
        assert_eq!(data(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        // 0x0001 + 0xf203 + 0xf400 = 0x1e604, end-around carry gives 0xe605.
        assert_eq!(data(&[0x00, 0x01, 0xf2, 0x03, 0xf4]), 0xe605);
        assert_eq!(data(&[]), 0);
        // Every carry at once: 64 KiB of ones, with even and odd tails.
        let ones = vec![0xffu8; 65_536 + 3];
        for len in [65_536, 65_537, 65_538, 65_539] {
            assert_eq!(
                data(&ones[..len]),
                if len % 2 == 1 { 0xff00 } else { 0xffff }
            );
        }
    }

    #[test]
    fn real_ipv4_header() {
        // An ICMP echo header captured with its stored checksum 0xc1ab.
        let hdr = hex!("45b80027123440004001c1abc6336401cb007109");
        assert_eq!(data(&hdr), 0xffff);
        let mut zeroed = hdr;
        zeroed[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(!data(&zeroed), 0xc1ab);
    }

    #[test]
    fn pseudo_headers_match_explicit_bytes() {
        let src4 = Ipv4Addr::new(198, 51, 100, 1);
        let dst4 = Ipv4Addr::new(203, 0, 113, 9);
        let mut ph4 = Vec::new();
        ph4.extend_from_slice(&src4.octets());
        ph4.extend_from_slice(&dst4.octets());
        ph4.extend_from_slice(&[0, 6, 0x05, 0xdc]);
        assert_eq!(pseudo_header_v4(&src4, &dst4, 6, 1500), data(&ph4));

        let src6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst6: Ipv6Addr = "2001:db8:ffff::abcd:2".parse().unwrap();
        let mut ph6 = Vec::new();
        ph6.extend_from_slice(&src6.octets());
        ph6.extend_from_slice(&dst6.octets());
        ph6.extend_from_slice(&0x0001_0004u32.to_be_bytes());
        ph6.extend_from_slice(&[0, 0, 0, 58]);
        assert_eq!(pseudo_header_v6(&src6, &dst6, 58, 0x0001_0004), data(&ph6));
    }

    #[test]
    fn combine_folds_carries() {
        assert_eq!(combine(&[0xffff, 0x0001]), 0x0001);
        assert_eq!(combine(&[0x8000, 0x8000]), 0x0001);
        assert_eq!(combine(&[]), 0);
    }

    #[test]
    fn pseudo_header_sum_in_either_zero() {
        assert!(holds_pseudo_header(0x1234, 0x1234));
        assert!(holds_pseudo_header(0x0000, 0xffff));
        assert!(holds_pseudo_header(0xffff, 0x0000));
        assert!(!holds_pseudo_header(0x1234, 0x1235));
        assert!(!holds_pseudo_header(0x0000, 0x1234));
        assert!(!holds_pseudo_header(0xedcb, 0x1234));
    }

    /// Completing as a NIC does: the field as it stands summed with the segment, inverted.
    fn complete(segment: &mut [u8]) {
        let sum = data(segment);
        segment[..2].copy_from_slice(&(!sum).to_be_bytes());
    }

    /// Whether `segment` (checksum field first) verifies under the pseudo-header sum `pseudo`.
    fn verifies(segment: &[u8], pseudo: u16) -> bool {
        combine(&[pseudo, data(segment)]) == 0xffff
    }

    proptest! {
        #[test]
        fn data_matches_the_rfc_1071_word_loop(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            // The textbook form: 16-bit big-endian words, odd byte padded, end-around carry.
            let mut reference: u32 = 0;
            for pair in bytes.chunks(2) {
                reference += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
                reference = (reference & 0xffff) + (reference >> 16);
            }
            prop_assert_eq!(u32::from(data(&bytes)), reference);
        }

        #[test]
        fn a_completed_pseudo_header_sum_verifies(
            mut segment in proptest::collection::vec(any::<u8>(), 2..300),
            pseudo in 1u16..0xffff,
        ) {
            segment[..2].copy_from_slice(&pseudo.to_be_bytes());
            complete(&mut segment);
            prop_assert!(verifies(&segment, pseudo));
        }

        #[test]
        fn a_checksum_equal_to_the_pseudo_header_sum_completes_to_itself(
            mut segment in proptest::collection::vec(any::<u8>(), 2..300),
        ) {
            // The one pseudo-header sum P for which the filled-in checksum ~(P + S) is P
            // itself: 2P = ~S, and doubling in one's complement is a left rotation.
            segment[..2].copy_from_slice(&[0, 0]);
            let pseudo = (!data(&segment)).rotate_right(1);
            let filled = !combine(&[pseudo, data(&segment)]);
            prop_assume!(filled == pseudo);
            segment[..2].copy_from_slice(&filled.to_be_bytes());
            prop_assert!(holds_pseudo_header(filled, pseudo));
            let before = segment.clone();
            complete(&mut segment);
            prop_assert_eq!(&segment, &before);
            prop_assert!(verifies(&segment, pseudo));
        }

        #[test]
        fn data_splits_at_even_offsets(bytes in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..150) {
            let cut = (cut * 2).min(bytes.len() & !1);
            prop_assert_eq!(
                // 0x0000 and 0xffff are the same one's-complement value; compare modulo that.
                u32::from(data(&bytes)) % 0xffff,
                u32::from(combine(&[data(&bytes[..cut]), data(&bytes[cut..])])) % 0xffff
            );
        }

        #[test]
        fn update_agrees_with_recompute(
            mut bytes in proptest::collection::vec(any::<u8>(), 4..200),
            word in any::<prop::sample::Index>(),
            new in any::<u16>(),
        ) {
            // Byte 0 stays nonzero and untouched so the covered data never sums to zero, as in
            // any real header (version/type fields, pseudo-header protocol).
            bytes[0] |= 1;
            let words = bytes.len() / 2;
            let at = (1 + word.index(words - 1)) * 2;
            let before = !data(&bytes);
            let old = u16::from_be_bytes([bytes[at], bytes[at + 1]]);
            bytes[at..at + 2].copy_from_slice(&new.to_be_bytes());
            prop_assert_eq!(update(before, old, new), !data(&bytes));
        }

        #[test]
        fn update_at_odd_offset_with_swapped_words(
            mut bytes in proptest::collection::vec(any::<u8>(), 4..200),
            pos in any::<prop::sample::Index>(),
            new in any::<u16>(),
        ) {
            bytes[0] |= 1;
            let at = (pos.index((bytes.len() - 2) / 2) * 2 + 1).min(bytes.len() - 2);
            prop_assume!(at % 2 == 1);
            let before = !data(&bytes);
            let old = u16::from_be_bytes([bytes[at], bytes[at + 1]]);
            bytes[at..at + 2].copy_from_slice(&new.to_be_bytes());
            prop_assert_eq!(update(before, old.swap_bytes(), new.swap_bytes()), !data(&bytes));
        }
    }
}
