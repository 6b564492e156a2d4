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
