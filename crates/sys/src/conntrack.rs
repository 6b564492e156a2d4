//! Forgetting conntrack entries over ctnetlink: the IPv4 flows whose replies go to one address.
//!
//! The kernel forgets a masqueraded flow when its output device goes; a flow translated with
//! `snat` (a MAP-E CE on the kernel path, whose packets leave through the underlay device)
//! keeps its translation until conntrack times it out, even once the address or port set it
//! was translated to belongs to someone else. [`forget_replies_to`] is that device's going for
//! such flows: it dumps the IPv4 entries and deletes those whose reply tuple is addressed to
//! the given address, by their original tuple. Blocking; one socket per call.

use std::io;
use std::net::Ipv4Addr;

use rtnetlink::sys::protocols::NETLINK_NETFILTER;
use rtnetlink::sys::{Socket, SocketAddr};

use crate::error::SysError;

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TUPLE_IP: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
/// The attribute type without `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER`.
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const HEADER: usize = 16;
const AF_INET: u8 = 2;

/// Deletes every IPv4 conntrack entry of the calling thread's namespace whose replies go to
/// `addr` (the flows translated to it, and the host's own flows from it); returns how many
/// it deleted. An entry that went meanwhile is not an error.
pub fn forget_replies_to(addr: Ipv4Addr) -> Result<usize, SysError> {
    let op = |what: &str| format!("{what} conntrack entries replying to {addr}");
    let socket = open().map_err(|e| SysError::netlink(op("opening ctnetlink to forget"), e))?;
    let tuples = dump(&socket, addr).map_err(|e| SysError::netlink(op("listing"), e))?;
    let mut deleted = 0;
    for (seq, tuple) in (2u32..).zip(&tuples) {
        match delete(&socket, seq, tuple) {
            Ok(()) => deleted += 1,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(SysError::netlink(op("deleting"), e)),
        }
    }
    Ok(deleted)
}

fn open() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// The original tuples (whole attributes, as the kernel sent them) of the entries whose
/// reply goes to `addr`.
fn dump(socket: &Socket, addr: Ipv4Addr) -> io::Result<Vec<Vec<u8>>> {
    socket.send(
        &request(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, 1, &[]),
        0,
    )?;
    let mut tuples = Vec::new();
    loop {
        let (buf, _) = socket.recv_from_full()?;
        let part = dump_part(&buf, addr)?;
        tuples.extend(part.originals.iter().map(|t| t.to_vec()));
        if part.done {
            return Ok(tuples);
        }
    }
}

/// What one datagram of a conntrack dump says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DumpPart<'a> {
    /// The original tuples (whole attributes, as the kernel sent them) of the entries whose
    /// reply goes to the address asked for.
    pub originals: Vec<&'a [u8]>,
    /// The dump ended in this datagram.
    pub done: bool,
}

/// Reads one datagram of the kernel's answer to a dump of IPv4 entries: a malformed
/// message or an error the kernel reports is an error; attributes it cannot read are
/// skipped, so such an entry is not found rather than misread.
pub fn dump_part(datagram: &[u8], addr: Ipv4Addr) -> io::Result<DumpPart<'_>> {
    let mut part = DumpPart::default();
    for (kind, payload) in messages(datagram)? {
        match kind {
            NLMSG_DONE => {
                part.done = true;
                break;
            }
            NLMSG_ERROR => check_ack(payload)?,
            _ => part.originals.extend(original_if_reply_to(payload, addr)),
        }
    }
    Ok(part)
}

fn delete(socket: &Socket, seq: u32, tuple: &[u8]) -> io::Result<()> {
    socket.send(
        &request(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq, tuple),
        0,
    )?;
    loop {
        let (buf, _) = socket.recv_from_full()?;
        for (kind, payload) in messages(&buf)? {
            if kind == NLMSG_ERROR {
                return check_ack(payload);
            }
        }
    }
}

/// A ctnetlink request for IPv4 entries with `attributes` after the `nfgenmsg`.
fn request(message: u16, flags: u16, seq: u32, attributes: &[u8]) -> Vec<u8> {
    let len = HEADER + 4 + attributes.len();
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    buf.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | message).to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family, version 0, resource id 0.
    buf.extend_from_slice(&[AF_INET, 0, 0, 0]);
    buf.extend_from_slice(attributes);
    buf
}

/// An `NLMSG_ERROR` payload: 0 is the acknowledgement, a negative errno the refusal.
fn check_ack(payload: &[u8]) -> io::Result<()> {
    let code = payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(i32::from_ne_bytes)
        .ok_or_else(|| malformed("short error message"))?;
    match code {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e.saturating_neg())),
    }
}

fn malformed(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// The netlink messages of one datagram as (type, payload).
fn messages(buf: &[u8]) -> io::Result<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= HEADER {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < HEADER || len > rest.len() {
            return Err(malformed("netlink message length"));
        }
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        out.push((kind, &rest[HEADER..len]));
        rest = rest.get(align(len)..).unwrap_or_default();
    }
    Ok(out)
}

const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// The attributes of `buf` as (type without flags, the whole attribute, its value).
fn attributes(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8], &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        if len < 4 || len > rest.len() {
            return None;
        }
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        let item = (kind, &rest[..len], &rest[4..len]);
        rest = rest.get(align(len)..).unwrap_or_default();
        Some(item)
    })
}

fn attribute(buf: &[u8], kind: u16) -> Option<(&[u8], &[u8])> {
    attributes(buf).find_map(|(k, whole, value)| (k == kind).then_some((whole, value)))
}

/// For one entry of the dump (after its `nfgenmsg`): its `CTA_TUPLE_ORIG` attribute when its
/// reply tuple's destination is `addr`.
fn original_if_reply_to(payload: &[u8], addr: Ipv4Addr) -> Option<&[u8]> {
    let entry = payload.get(4..)?;
    let (_, reply) = attribute(entry, CTA_TUPLE_REPLY)?;
    let (_, ip) = attribute(reply, CTA_TUPLE_IP)?;
    let (_, dst) = attribute(ip, CTA_IP_V4_DST)?;
    if dst != addr.octets() {
        return None;
    }
    attribute(entry, CTA_TUPLE_ORIG).map(|(whole, _)| whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&u16::try_from(4 + value.len()).unwrap().to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(align(out.len()), 0);
        out
    }

    fn nested(kind: u16, value: &[u8]) -> Vec<u8> {
        attr(kind | 0x8000, value)
    }

    /// A dump entry's payload: nfgenmsg, then the two tuples' addresses.
    fn entry(src: [u8; 4], dst: [u8; 4], reply_src: [u8; 4], reply_dst: [u8; 4]) -> Vec<u8> {
        let tuple = |kind, s: [u8; 4], d: [u8; 4]| {
            let ip = [attr(1, &s), attr(CTA_IP_V4_DST, &d)].concat();
            nested(kind, &nested(CTA_TUPLE_IP, &ip))
        };
        [
            vec![AF_INET, 0, 0, 0],
            tuple(CTA_TUPLE_ORIG, src, dst),
            tuple(CTA_TUPLE_REPLY, reply_src, reply_dst),
            attr(3, &0u32.to_be_bytes()),
        ]
        .concat()
    }

    const LAN: [u8; 4] = [198, 51, 100, 10];
    const FAR: [u8; 4] = [203, 0, 113, 10];
    const SHARED: [u8; 4] = [198, 18, 8, 1];

    #[test]
    fn a_flow_translated_to_the_address_is_found_by_its_reply() {
        let translated = entry(LAN, FAR, FAR, SHARED);
        let tuple = original_if_reply_to(&translated, Ipv4Addr::from(SHARED)).unwrap();
        // The whole original tuple, nested flag and all, to send back in the delete.
        assert_eq!(
            u16::from_ne_bytes([tuple[2], tuple[3]]),
            0x8000 | CTA_TUPLE_ORIG
        );
        assert!(tuple.windows(4).any(|w| w == LAN));
        assert!(!tuple.windows(4).any(|w| w == SHARED));
        // Untranslated, and a flow from outside to the address: their replies go elsewhere.
        assert!(original_if_reply_to(&entry(LAN, FAR, FAR, LAN), SHARED.into()).is_none());
        assert!(original_if_reply_to(&entry(FAR, SHARED, SHARED, FAR), SHARED.into()).is_none());
    }

    #[test]
    fn malformed_input_is_refused_or_skipped_without_panicking() {
        let good = entry(LAN, FAR, FAR, SHARED);
        for cut in 0..good.len() {
            let _ = original_if_reply_to(&good[..cut], SHARED.into());
        }
        let mut message = request(IPCTNL_MSG_CT_GET, 0, 1, &good[4..]);
        assert_eq!(messages(&message).unwrap().len(), 1);
        assert_eq!(messages(&message).unwrap()[0].1, &good[..]);
        message[0] = 0xff;
        assert!(messages(&message).is_err());
        assert!(messages(&[0u8; 7]).unwrap().is_empty());
        assert!(check_ack(&[0, 0]).is_err());
        assert!(check_ack(&0i32.to_ne_bytes()).is_ok());
        let refused = check_ack(&(-libc::ENOENT).to_ne_bytes()).unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(libc::ENOENT));
    }

    /// A netlink message of `kind` around `payload`, as the kernel sends it in a dump.
    fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&u32::try_from(HEADER + payload.len()).unwrap().to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&[0; 10]);
        out.extend_from_slice(payload);
        out.resize(align(out.len()), 0);
        out
    }

    #[test]
    fn a_dump_part_finds_the_translated_flows_and_ends_at_done() {
        let new = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
        let translated = message(new, &entry(LAN, FAR, FAR, SHARED));
        let other = message(new, &entry(LAN, FAR, FAR, LAN));
        let after_done = message(new, &entry([198, 51, 100, 11], FAR, FAR, SHARED));
        let datagram = [translated.clone(), other.clone()].concat();
        let part = dump_part(&datagram, SHARED.into()).unwrap();
        assert_eq!(part.originals.len(), 1);
        assert!(part.originals[0].windows(4).any(|w| w == LAN));
        assert!(!part.done);
        // Nothing after the end of the dump counts.
        let last = [other, message(NLMSG_DONE, &0i32.to_ne_bytes()), after_done].concat();
        let part = dump_part(&last, SHARED.into()).unwrap();
        assert_eq!(
            part,
            DumpPart {
                originals: Vec::new(),
                done: true
            }
        );
        // The kernel's refusal of the dump is the caller's error.
        let refused = message(NLMSG_ERROR, &(-libc::EPERM).to_ne_bytes());
        let error = dump_part(&refused, SHARED.into()).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EPERM));
    }
}
