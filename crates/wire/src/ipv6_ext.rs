//! IPv6 extension headers (RFC 8200 §4) and the Tunnel Encapsulation Limit option (RFC 2473
//! §5.1).

use core::fmt;

use crate::field::be16;
use crate::{Error, Result, ip_proto};

/// Pad1 option: a single zero byte with no length field (RFC 8200 §4.2).
pub const OPT_PAD1: u8 = 0;
/// PadN option: type, length, then that many zero bytes (RFC 8200 §4.2).
pub const OPT_PADN: u8 = 1;
/// Tunnel Encapsulation Limit option type, carried in a Destination Options header (RFC 2473
/// §5.1). Its two high bits are 00: a node that does not know it skips it.
pub const OPT_TUNNEL_ENCAP_LIMIT: u8 = 0x04;
/// Length of the Destination Options header [`emit_encap_limit`] writes.
pub const ENCAP_LIMIT_HEADER_LEN: usize = 8;

/// Length of a Fragment header (RFC 8200 §4.5).
pub const FRAGMENT_HEADER_LEN: usize = 8;

mod field {
    use crate::field::Rest;

    pub(crate) const NXT_HDR: usize = 0;
    pub(crate) const LENGTH: usize = 1;
    pub(crate) const OPTIONS: Rest = 2..;

    /// Fragment header: offset (13 bits), two reserved bits, M flag.
    pub(crate) const FRAG_OFF_M: usize = 2;
}

/// Writes the 8-byte Destination Options header exactly as Linux ip6tnl does:
/// `[next_header, 0, 0x04, 0x01, limit, 0x01, 0x01, 0x00]`, i.e. the encapsulation limit option
/// followed by a 3-byte PadN to the 8-byte boundary.
///
/// Fails with [`Error::Truncated`] if `buf` is shorter than [`ENCAP_LIMIT_HEADER_LEN`]; bytes after
/// the first eight are not touched.
pub fn emit_encap_limit(next_header: u8, limit: u8, buf: &mut [u8]) -> Result<()> {
    let header = buf
        .get_mut(..ENCAP_LIMIT_HEADER_LEN)
        .ok_or(Error::Truncated)?;
    header.copy_from_slice(&[
        next_header,
        0,
        OPT_TUNNEL_ENCAP_LIMIT,
        1,
        limit,
        OPT_PADN,
        1,
        0,
    ]);
    Ok(())
}

/// A view over a Hop-by-Hop or Destination Options header (RFC 8200 §4.3, §4.6); both share
/// one layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionsHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> OptionsHeader<T> {
    /// Wraps a buffer without checking it; getters may panic on a malformed one.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let header = Self::new_unchecked(buffer);
        header.check_len()?;
        Ok(header)
    }

    /// Checks that the two fixed bytes and the whole header as its length field says are in the
    /// buffer. The options themselves are checked while iterating.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < field::OPTIONS.start || self.header_len() > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Next Header after this one.
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    /// Hdr Ext Len as stored: the length in 8-octet units, not counting the first eight.
    pub fn hdr_ext_len(&self) -> u8 {
        self.buffer.as_ref()[field::LENGTH]
    }

    /// Length of the whole header in bytes.
    pub fn header_len(&self) -> usize {
        (usize::from(self.hdr_ext_len()) + 1) * 8
    }

    /// The options, Pad1 and PadN included.
    pub fn options(&self) -> Options<'_> {
        Options {
            data: &self.buffer.as_ref()[field::OPTIONS.start..self.header_len()],
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> OptionsHeader<T> {
    /// Sets the Next Header.
    pub fn set_next_header(&mut self, value: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = value;
    }

    /// Sets Hdr Ext Len as stored (8-octet units beyond the first eight).
    pub fn set_hdr_ext_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::LENGTH] = value;
    }

    /// The option area, mutable.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[field::OPTIONS.start..end]
    }
}

/// One TLV option of an options header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opt<'a> {
    /// Option Type, action and change bits included (RFC 8200 §4.2).
    pub kind: u8,
    /// Option Data; empty for Pad1.
    pub data: &'a [u8],
}

impl fmt::Display for Opt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            OPT_PAD1 => f.write_str("Pad1"),
            OPT_PADN => write!(f, "PadN({})", self.data.len()),
            OPT_TUNNEL_ENCAP_LIMIT if self.data.len() == 1 => {
                write!(f, "TunnelEncapLimit({})", self.data[0])
            }
            kind => write!(f, "Option({kind:#04x}, {} bytes)", self.data.len()),
        }
    }
}

/// Iterator over the options of an [`OptionsHeader`]. After yielding an error it ends.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    data: &'a [u8],
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<Opt<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, rest) = self.data.split_first()?;
        if kind == OPT_PAD1 {
            self.data = rest;
            return Some(Ok(Opt { kind, data: &[] }));
        }
        let parsed = rest.split_first().and_then(|(&len, rest)| {
            let len = usize::from(len);
            (len <= rest.len()).then(|| {
                (
                    Opt {
                        kind,
                        data: &rest[..len],
                    },
                    &rest[len..],
                )
            })
        });
        match parsed {
            Some((opt, rest)) => {
                self.data = rest;
                Some(Ok(opt))
            }
            None => {
                self.data = &[];
                Some(Err(Error::BadOption))
            }
        }
    }
}

impl core::iter::FusedIterator for Options<'_> {}

/// What [`walk`] found behind a chain of extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Walk {
    /// The first protocol that is not one of the walked extension headers (for a non-first
    /// fragment: the Fragment header's Next Header).
    pub upper_protocol: u8,
    /// Byte offset of that protocol's header within the walked bytes.
    pub offset: usize,
    /// The Tunnel Encapsulation Limit of the first Destination Options header that had one.
    pub encap_limit: Option<u8>,
    /// Whether a Fragment header was passed.
    pub fragmented: bool,
}

impl fmt::Display for Walk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "upper={} at {}", self.upper_protocol, self.offset)?;
        if let Some(limit) = self.encap_limit {
            write!(f, " encap_limit={limit}")?;
        }
        if self.fragmented {
            f.write_str(" fragmented")?;
        }
        Ok(())
    }
}

/// Walks Hop-by-Hop (0), Routing (43), Fragment (44) and Destination Options (60) headers
/// starting at `bytes[0]`, where `next_header` names what is there (it is the fixed header's Next
/// Header when `bytes` is an IPv6 payload). Returns the first upper-layer protocol, its byte
/// offset, and the Tunnel Encapsulation Limit if a Destination Options header carried one.
///
/// Stops at a non-first fragment (offset ≠ 0), because what follows its header is the middle of
/// the upper-layer data. Option action bits (RFC 8200 §4.2) are not enforced: they instruct the
/// packet's destination, and a tunnel endpoint or forwarder only needs to find the payload.
///
/// Errors: [`Error::Truncated`] if a header runs past `bytes`; [`Error::BadOption`] for a
/// malformed option, an encapsulation limit option whose length is not 1, or a Hop-by-Hop header
/// anywhere but first (RFC 8200 §4.3).
pub fn walk(next_header: u8, bytes: &[u8]) -> Result<Walk> {
    let mut walk = Walk {
        upper_protocol: next_header,
        offset: 0,
        encap_limit: None,
        fragmented: false,
    };
    loop {
        let rest = &bytes[walk.offset..];
        match walk.upper_protocol {
            ip_proto::HOPOPTS | ip_proto::DSTOPTS => {
                if walk.upper_protocol == ip_proto::HOPOPTS && walk.offset != 0 {
                    return Err(Error::BadOption);
                }
                let header = OptionsHeader::new_checked(rest)?;
                let is_dest = walk.upper_protocol == ip_proto::DSTOPTS;
                for opt in header.options() {
                    let opt = opt?;
                    if opt.kind == OPT_TUNNEL_ENCAP_LIMIT && is_dest {
                        let [limit] = *opt.data else {
                            return Err(Error::BadOption);
                        };
                        walk.encap_limit.get_or_insert(limit);
                    }
                }
                walk.upper_protocol = header.next_header();
                walk.offset += header.header_len();
            }
            ip_proto::ROUTING => {
                // Same length encoding as the options headers (RFC 8200 §4.4); the routing data
                // is for the addressed nodes, not us.
                let header = OptionsHeader::new_checked(rest)?;
                walk.upper_protocol = header.next_header();
                walk.offset += header.header_len();
            }
            ip_proto::FRAGMENT => {
                if rest.len() < FRAGMENT_HEADER_LEN {
                    return Err(Error::Truncated);
                }
                walk.fragmented = true;
                walk.upper_protocol = rest[field::NXT_HDR];
                walk.offset += FRAGMENT_HEADER_LEN;
                if be16(rest, field::FRAG_OFF_M) & 0xfff8 != 0 {
                    return Ok(walk);
                }
            }
            _ => return Ok(walk),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;
    use proptest::prelude::*;

    /// ip6tnl-style packet: IPv6, Destination Options with encap limit 4, then IPv4 ICMP echo.
    const IP6TNL: [u8; 76] = hex!(
        "6000000000243c40"
        "20010db8000100000000000000000001"
        "20010db8000200000000000000000002"
        "0400040104010100"
        "4500001c000100003f0115a2c6336401cb0071090800f7fd00010001"
    );
    /// Hop-by-Hop (Pad1, PadN, Pad1), Routing (type 0, 1 address), first Fragment (M set),
    /// Destination Options (Pad1, encap limit 7, Pad1, Pad1), UDP.
    const CHAIN: [u8; 56] = hex!(
        "2b00000102000000"
        "2c02000100000000 20010db8000000000000000000000009"
        "3c00000111223344"
        "1100000401070000"
        "000100020008a45e"
    );
    /// Non-first fragment (offset 800) of a UDP datagram.
    const NON_FIRST: [u8; 24] = hex!("1100032011223344 00000000000000000000000000000000");

    #[test]
    fn emit_encap_limit_matches_linux_ip6tnl() {
        let mut buf = [0xa5u8; 9];
        emit_encap_limit(ip_proto::IPIP, 4, &mut buf).unwrap();
        assert_eq!(buf[..8], IP6TNL[40..48]);
        assert_eq!(buf[8], 0xa5, "bytes past the header are untouched");
        assert_eq!(emit_encap_limit(4, 4, &mut [0; 7]), Err(Error::Truncated));
    }

    #[test]
    fn walk_finds_ipip_behind_encap_limit() {
        let outer = crate::ipv6::Packet::new_checked(&IP6TNL[..]).unwrap();
        let walk = walk(outer.next_header(), outer.payload()).unwrap();
        assert_eq!(
            walk,
            Walk {
                upper_protocol: ip_proto::IPIP,
                offset: ENCAP_LIMIT_HEADER_LEN,
                encap_limit: Some(4),
                fragmented: false,
            }
        );
        let inner = crate::ipv4::Packet::new_checked(&outer.payload()[walk.offset..]).unwrap();
        assert_eq!(inner.src_addr(), std::net::Ipv4Addr::new(198, 51, 100, 1));
    }

    #[test]
    fn walk_through_every_extension_header() {
        let walk = walk(ip_proto::HOPOPTS, &CHAIN).unwrap();
        assert_eq!(
            walk,
            Walk {
                upper_protocol: ip_proto::UDP,
                offset: 48,
                encap_limit: Some(7),
                fragmented: true,
            }
        );
    }

    #[test]
    fn walk_stops_at_non_first_fragment() {
        let walk = walk(ip_proto::FRAGMENT, &NON_FIRST).unwrap();
        assert_eq!(walk.upper_protocol, ip_proto::UDP);
        assert_eq!(walk.offset, FRAGMENT_HEADER_LEN);
        assert!(walk.fragmented);
        assert_eq!(walk.encap_limit, None);
    }

    #[test]
    fn walk_without_extension_headers() {
        for proto in [ip_proto::TCP, ip_proto::IPIP, ip_proto::NONE, ip_proto::ESP] {
            let w = walk(proto, &[]).unwrap();
            assert_eq!(
                (w.upper_protocol, w.offset, w.encap_limit, w.fragmented),
                (proto, 0, None, false)
            );
        }
    }

    #[test]
    fn walk_truncations_are_errors() {
        for len in 0..48 {
            assert!(walk(ip_proto::HOPOPTS, &CHAIN[..len]).is_err(), "len {len}");
        }
        for len in 0..8 {
            assert_eq!(
                walk(ip_proto::DSTOPTS, &IP6TNL[40..40 + len]),
                Err(Error::Truncated)
            );
        }
    }

    #[test]
    fn walk_rejects_malformed_options() {
        // Encap limit with length 2.
        let bad_len = hex!("0400040204010000");
        assert_eq!(walk(ip_proto::DSTOPTS, &bad_len), Err(Error::BadOption));
        // PadN running past the header end.
        let overrun = hex!("0400010600000000");
        assert_eq!(walk(ip_proto::DSTOPTS, &overrun), Err(Error::BadOption));
        // Option type in the last byte with no length byte.
        let no_len = hex!("0400000000000005");
        assert_eq!(walk(ip_proto::DSTOPTS, &no_len), Err(Error::BadOption));
        // Hop-by-Hop after a Destination Options header.
        let late_hbh = hex!("0000010400000000 0600010400000000");
        assert_eq!(walk(ip_proto::DSTOPTS, &late_hbh), Err(Error::BadOption));
    }

    #[test]
    fn encap_limit_only_counts_in_destination_options() {
        // The same option in a Hop-by-Hop header is some other option there, not RFC 2473's.
        let hbh = hex!("0600040104010100");
        assert_eq!(walk(ip_proto::HOPOPTS, &hbh).unwrap().encap_limit, None);
    }

    #[test]
    fn first_encap_limit_wins() {
        let two = hex!("3c00040102010100 0400040109010100");
        let w = walk(ip_proto::DSTOPTS, &two).unwrap();
        assert_eq!(
            (w.encap_limit, w.offset, w.upper_protocol),
            (Some(2), 16, ip_proto::IPIP)
        );
    }

    #[test]
    fn options_iterate_pad1_padn_and_tlvs() {
        let header = OptionsHeader::new_checked(&CHAIN[48 - 8..48]).unwrap();
        assert_eq!(header.next_header(), ip_proto::UDP);
        assert_eq!(header.header_len(), 8);
        let opts: Vec<_> = header.options().collect::<Result<_>>().unwrap();
        assert_eq!(
            opts,
            [
                Opt {
                    kind: OPT_PAD1,
                    data: &[]
                },
                Opt {
                    kind: OPT_TUNNEL_ENCAP_LIMIT,
                    data: &[7]
                },
                Opt {
                    kind: OPT_PAD1,
                    data: &[]
                },
                Opt {
                    kind: OPT_PAD1,
                    data: &[]
                },
            ]
        );
        assert_eq!(opts[1].to_string(), "TunnelEncapLimit(7)");
        let hbh = OptionsHeader::new_checked(&CHAIN[..8]).unwrap();
        let kinds: Vec<_> = hbh.options().map(|o| o.unwrap().kind).collect();
        assert_eq!(kinds, [OPT_PAD1, OPT_PADN, OPT_PAD1]);
    }

    #[test]
    fn options_iterator_ends_after_an_error() {
        let header = OptionsHeader::new_checked(&hex!("0400010900000000")[..]).unwrap();
        let items: Vec<_> = header.options().collect();
        assert_eq!(items, [Err(Error::BadOption)]);
    }

    #[test]
    fn options_header_length_checks() {
        assert_eq!(
            OptionsHeader::new_checked(&[0u8][..]),
            Err(Error::Truncated)
        );
        assert_eq!(
            OptionsHeader::new_checked(&[0u8, 1, 0, 0, 0, 0, 0, 0][..]),
            Err(Error::Truncated)
        );
        let long = [0u8; 16];
        let mut h = OptionsHeader::new_unchecked(long);
        h.set_hdr_ext_len(1);
        h.set_next_header(ip_proto::TCP);
        assert_eq!(h.header_len(), 16);
        assert_eq!(h.options_mut().len(), 14);
        let h = OptionsHeader::new_checked(h.into_inner()).unwrap();
        assert_eq!(h.options().count(), 14, "fourteen Pad1 options");
    }

    /// One option of a generated options header.
    #[derive(Debug, Clone)]
    enum GenOpt {
        Pad1,
        PadN(u8),
        EncapLimit(u8),
        Other(u8, Vec<u8>),
    }

    fn gen_opt() -> impl Strategy<Value = GenOpt> {
        prop_oneof![
            Just(GenOpt::Pad1),
            (0u8..6).prop_map(GenOpt::PadN),
            any::<u8>().prop_map(GenOpt::EncapLimit),
            (2u8..=0xff, proptest::collection::vec(any::<u8>(), 0..6))
                .prop_filter("not a known type", |(k, _)| *k != OPT_TUNNEL_ENCAP_LIMIT)
                .prop_map(|(k, d)| GenOpt::Other(k, d)),
        ]
    }

    /// Builds a Destination Options header from `opts`, padded to 8 bytes with Pad1.
    fn build(next_header: u8, opts: &[GenOpt]) -> Vec<u8> {
        let mut h = vec![next_header, 0];
        for opt in opts {
            match opt {
                GenOpt::Pad1 => h.push(OPT_PAD1),
                GenOpt::PadN(n) => {
                    h.extend([OPT_PADN, *n]);
                    h.extend(std::iter::repeat_n(0, usize::from(*n)));
                }
                GenOpt::EncapLimit(l) => h.extend([OPT_TUNNEL_ENCAP_LIMIT, 1, *l]),
                GenOpt::Other(k, d) => {
                    h.extend([*k, d.len() as u8]);
                    h.extend(d);
                }
            }
        }
        while h.len() % 8 != 0 {
            h.push(OPT_PAD1);
        }
        h[1] = (h.len() / 8 - 1) as u8;
        h
    }

    proptest! {
        #[test]
        fn walk_over_generated_destination_options(
            headers in proptest::collection::vec(proptest::collection::vec(gen_opt(), 0..6), 1..4),
            upper in prop_oneof![Just(ip_proto::IPIP), Just(ip_proto::IPV6), Just(ip_proto::TCP)],
        ) {
            let mut bytes = Vec::new();
            let mut expected_limit = None;
            for (i, opts) in headers.iter().enumerate() {
                let next = if i + 1 == headers.len() { upper } else { ip_proto::DSTOPTS };
                bytes.extend(build(next, opts));
                for opt in opts {
                    if let GenOpt::EncapLimit(l) = opt {
                        expected_limit.get_or_insert(*l);
                    }
                }
            }
            let w = walk(ip_proto::DSTOPTS, &bytes).unwrap();
            prop_assert_eq!(w.upper_protocol, upper);
            prop_assert_eq!(w.offset, bytes.len());
            prop_assert_eq!(w.encap_limit, expected_limit);
            prop_assert!(!w.fragmented);
            for len in 0..bytes.len() {
                prop_assert!(walk(ip_proto::DSTOPTS, &bytes[..len]).is_err());
            }
        }

        #[test]
        fn walk_never_panics(next in any::<u8>(), bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(w) = walk(next, &bytes) {
                prop_assert!(w.offset <= bytes.len());
            }
        }
    }
}
