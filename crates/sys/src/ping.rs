//! ICMP echo for uplink watches: is the gateway (or a target behind it) still answering
//! through *this* uplink?
//!
//! [`PingSocket`] prefers the kernel's unprivileged ICMP datagram sockets (`SOCK_DGRAM` with
//! `IPPROTO_ICMP`/`IPPROTO_ICMPV6`): the kernel picks the echo identifier, fills in checksums
//! and delivers only the replies meant for this socket. They are allowed only to groups in
//! `net.ipv4.ping_group_range` (which governs IPv6 too), and root gets no exemption: the
//! default in a new network namespace is `1 0`, nobody. There the socket falls back to a raw
//! ICMP socket with an `ICMP_FILTER`/`ICMP6_FILTER` that passes echo replies only, its own
//! identifier, and checks of identifier and (for IPv4) checksum in user space.
//!
//! Binding to a device (`SO_BINDTODEVICE`) is what makes a probe test one uplink: the kernel's
//! route lookup then considers only routes through that device, so a default route in the
//! main table (or a policy rule's table) pointing at another uplink is passed over, and only
//! replies arriving on that device are delivered. Caveats of that lookup:
//! - reject routes and rules (blackhole, unreachable, prohibit) still match whatever the
//!   device, so a kill-switch route covering the target silences the probe;
//! - with no route through the device at all, IPv4 assumes the target is on-link there and
//!   resolves it with ARP, while IPv6 fails the send with `ENETUNREACH`: a target beyond the
//!   gateway needs a route through the device in some table the rules reach;
//! - a device set down fails the send with `ENETUNREACH`; one that lost carrier may take the
//!   probe and drop it, or fail the send (a veth without its peer says `ENOBUFS`): a watch
//!   should count any send error as a lost probe;
//! - strict reverse-path filtering (`rp_filter=1`) drops the replies when the route back to
//!   the target points at another device; loose mode (2) lets them in;
//! - a device enslaved to a VRF is looked up in the VRF's table.
//!
//! Non-blocking; [`AsRawFd`] so the daemon can wrap it in `tokio::io::unix::AsyncFd`.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::error::{Result, SysError};
use crate::fd::set_option;
use crate::msg::{self, Datagram};
use crate::netlink::Family;

/// ICMP echo reply and request types (RFC 792).
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
/// ICMPv6 echo request and reply types (RFC 4443 §4).
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;
/// `ICMP_FILTER` at level `SOL_RAW` (linux/icmp.h), not exported by libc.
const ICMP_FILTER: libc::c_int = 1;
/// `ICMP6_FILTER` at level `IPPROTO_ICMPV6` (linux/icmpv6.h).
const ICMP6_FILTER: libc::c_int = 1;
/// Echo header: type, code, checksum, identifier, sequence number.
const ECHO_HEADER_LEN: usize = 8;
/// Receive prefix for raw IPv4: the IPv4 header without options, then the echo header.
const IPV4_HEADER_LEN: usize = 20;
const PREFIX_LEN: usize = IPV4_HEADER_LEN + ECHO_HEADER_LEN;

/// Which kind of kernel socket carries the echoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PingKind {
    /// Unprivileged ICMP datagram socket; the kernel assigns the identifier.
    Datagram,
    /// Raw ICMP socket (`CAP_NET_RAW`), used when `ping_group_range` refuses the first.
    Raw,
}

/// One echo reply: who answered, to which sequence number, and how much payload came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoReply {
    pub from: IpAddr,
    pub seq: u16,
    /// Bytes of echoed payload, now at the start of the caller's buffer.
    pub payload_len: usize,
}

/// An ICMP or ICMPv6 echo socket, optionally bound to a device and a source address.
#[derive(Debug)]
pub struct PingSocket {
    socket: Socket,
    family: Family,
    kind: PingKind,
    identifier: u16,
}

impl PingSocket {
    /// Opens an echo socket in the calling thread's network namespace.
    ///
    /// `device` binds it to that interface (see the module docs for what that does to route
    /// lookups); `source` binds it to a local address of `family`, which also makes it the
    /// source of every probe. A datagram socket is tried first, a raw one if the kernel
    /// refuses it (`EACCES`/`EPERM` from `ping_group_range`, or no ping socket support).
    pub fn open(family: Family, device: Option<&str>, source: Option<IpAddr>) -> Result<Self> {
        if let Some(source) = source.filter(|source| Family::of(*source) != family) {
            return Err(SysError::Invalid {
                what: "ping source address",
                value: source.to_string(),
                reason: "not of the socket's address family",
            });
        }
        if let Some(device) = device {
            crate::tun::validate_name(device)?;
        }
        let name = match device {
            Some(device) => format!("{family} ping socket on {device}"),
            None => format!("{family} ping socket"),
        };
        let error = |op: &'static str| {
            let name = name.clone();
            move |io| SysError::Socket {
                op,
                socket: name,
                io,
            }
        };
        let (domain, protocol) = match family {
            Family::V4 => (Domain::IPV4, Protocol::ICMPV4),
            Family::V6 => (Domain::IPV6, Protocol::ICMPV6),
        };
        let (socket, kind) = match Socket::new(domain, Type::DGRAM.nonblocking(), Some(protocol)) {
            Ok(socket) => (socket, PingKind::Datagram),
            Err(io) if refused_datagram(&io) => {
                let socket = Socket::new(domain, Type::RAW.nonblocking(), Some(protocol))
                    .map_err(error("open"))?;
                filter_echo_replies(&socket, family).map_err(error("set ICMP filter on"))?;
                (socket, PingKind::Raw)
            }
            Err(io) => return Err(error("open")(io)),
        };
        if let Some(device) = device {
            socket
                .bind_device(Some(device.as_bytes()))
                .map_err(error("bind to device"))?;
        }
        let identifier = match kind {
            PingKind::Datagram => {
                // Binding (to port 0) makes the kernel choose the identifier now, so it is
                // known before the first probe.
                let source = source.unwrap_or_else(|| unspecified(family));
                socket
                    .bind(&SockAddr::from(SocketAddr::new(source, 0)))
                    .map_err(error("bind"))?;
                socket
                    .local_addr()
                    .ok()
                    .and_then(|addr| addr.as_socket())
                    .map_or(0, |addr| addr.port())
            }
            PingKind::Raw => {
                if let Some(source) = source {
                    socket
                        .bind(&SockAddr::from(SocketAddr::new(source, 0)))
                        .map_err(error("bind"))?;
                }
                next_identifier()
            }
        };
        Ok(Self {
            socket,
            family,
            kind,
            identifier,
        })
    }

    /// The address family of probes and replies.
    pub fn family(&self) -> Family {
        self.family
    }

    /// Datagram or raw, as [`open`](Self::open) managed.
    pub fn kind(&self) -> PingKind {
        self.kind
    }

    /// The echo identifier this socket's probes carry.
    pub fn identifier(&self) -> u16 {
        self.identifier
    }

    /// Sets `SO_MARK` on probes, so they take the same policy rules as the tunnel's own
    /// outer packets.
    pub fn set_mark(&self, mark: u32) -> io::Result<()> {
        self.socket.set_mark(mark)
    }

    /// Sends one echo request with sequence number `seq` and `payload` to `dst`. A link-local
    /// IPv6 `dst` takes its zone from the bound device.
    pub fn send_echo(&self, dst: IpAddr, seq: u16, payload: &[u8]) -> io::Result<()> {
        if Family::of(dst) != self.family {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{dst} is not an {} address", self.family),
            ));
        }
        let header = echo_request(self.family, self.kind, self.identifier, seq, payload);
        let to = SockAddr::from(SocketAddr::new(dst, 0));
        let sent = self
            .socket
            .send_to_vectored(&[IoSlice::new(&header), IoSlice::new(payload)], &to)?;
        if sent != header.len() + payload.len() {
            return Err(io::Error::other(format!(
                "echo request cut short: {sent} of {} bytes sent",
                header.len() + payload.len()
            )));
        }
        Ok(())
    }

    /// Receives the next echo reply for this socket, its payload copied to the start of
    /// `buf`; `WouldBlock` when none is queued. Anything else a raw socket sees (other
    /// identifiers, bad checksums, runts) is consumed and skipped. A reply whose payload does
    /// not fit `buf` is consumed and reported as `InvalidData`.
    pub fn recv_reply(&self, buf: &mut [u8]) -> io::Result<EchoReply> {
        let ip_header = self.family == Family::V4 && self.kind == PingKind::Raw;
        let prefix_len = if ip_header {
            PREFIX_LEN
        } else {
            ECHO_HEADER_LEN
        };
        loop {
            let mut prefix = [0u8; PREFIX_LEN];
            let mut control = [0u8; 0];
            let datagram = {
                let mut bufs = [
                    IoSliceMut::new(&mut prefix[..prefix_len]),
                    IoSliceMut::new(buf),
                ];
                self.receive(&mut bufs, &mut control)?
            };
            let Some(reply) = parse_reply(
                &prefix[..prefix_len],
                buf,
                datagram.len,
                ip_header,
                self.family,
            ) else {
                continue;
            };
            if self.kind == PingKind::Raw && reply.identifier != self.identifier {
                continue;
            }
            if datagram.truncated {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "echo reply of {} bytes dropped: buffer holds {} bytes of payload",
                        datagram.size,
                        buf.len()
                    ),
                ));
            }
            if ip_header && !reply.checksum_ok {
                continue;
            }
            return Ok(EchoReply {
                from: datagram.src,
                seq: reply.seq,
                payload_len: reply.payload_len,
            });
        }
    }

    fn receive(
        &self,
        bufs: &mut [IoSliceMut<'_>],
        control: &mut [u8],
    ) -> io::Result<Datagram<IpAddr>> {
        let fd = self.socket.as_raw_fd();
        Ok(match self.family {
            Family::V4 => widen(msg::recvmsg::<Ipv4Addr>(fd, bufs, control)?),
            Family::V6 => widen(msg::recvmsg::<Ipv6Addr>(fd, bufs, control)?),
        })
    }
}

impl AsRawFd for PingSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl AsFd for PingSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

fn widen<A: Into<IpAddr>>(datagram: Datagram<A>) -> Datagram<IpAddr> {
    Datagram {
        len: datagram.len,
        size: datagram.size,
        truncated: datagram.truncated,
        src: datagram.src.into(),
        control_len: datagram.control_len,
    }
}

/// Errors with which the kernel refuses an ICMP datagram socket but may allow a raw one.
fn refused_datagram(io: &io::Error) -> bool {
    matches!(
        io.raw_os_error(),
        Some(
            libc::EACCES
                | libc::EPERM
                | libc::EPROTONOSUPPORT
                | libc::ESOCKTNOSUPPORT
                | libc::EAFNOSUPPORT
        )
    )
}

fn unspecified(family: Family) -> IpAddr {
    match family {
        Family::V4 => Ipv4Addr::UNSPECIFIED.into(),
        Family::V6 => Ipv6Addr::UNSPECIFIED.into(),
    }
}

/// Identifiers for raw sockets: seeded by the process id so two watchers on one host rarely
/// collide, and distinct for the first 65536 sockets of a process (an odd stride is a
/// bijection modulo 2^16).
fn next_identifier() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let seed = std::process::id().to_le_bytes();
    u16::from_le_bytes([seed[0], seed[1]]).wrapping_add(n.wrapping_mul(0x9e37))
}

/// Passes echo replies only: both filters are bit sets of types to *block*.
fn filter_echo_replies(socket: &Socket, family: Family) -> io::Result<()> {
    let fd = socket.as_raw_fd();
    match family {
        Family::V4 => set_option(
            fd,
            libc::SOL_RAW,
            ICMP_FILTER,
            &icmp_filter_passing(ICMP_ECHO_REPLY),
        ),
        Family::V6 => set_option(
            fd,
            libc::IPPROTO_ICMPV6,
            ICMP6_FILTER,
            &icmpv6_filter_passing(ICMPV6_ECHO_REPLY),
        ),
    }
}

/// `struct icmp_filter { __u32 data; }`: bit n set blocks type n (types above 31 always pass).
fn icmp_filter_passing(icmp_type: u8) -> u32 {
    !(1u32 << icmp_type)
}

/// `struct icmp6_filter { __u32 data[8]; }`, bit set = blocked.
fn icmpv6_filter_passing(icmp_type: u8) -> [u32; 8] {
    let mut data = [u32::MAX; 8];
    data[usize::from(icmp_type >> 5)] &= !(1 << (icmp_type & 31));
    data
}

/// The echo request header. Datagram sockets get their identifier and checksum from the
/// kernel, as does ICMPv6 on raw sockets; raw ICMP for IPv4 carries our own checksum.
fn echo_request(
    family: Family,
    kind: PingKind,
    identifier: u16,
    seq: u16,
    payload: &[u8],
) -> [u8; ECHO_HEADER_LEN] {
    let icmp_type = match family {
        Family::V4 => ICMP_ECHO_REQUEST,
        Family::V6 => ICMPV6_ECHO_REQUEST,
    };
    let [id_hi, id_lo] = identifier.to_be_bytes();
    let [seq_hi, seq_lo] = seq.to_be_bytes();
    let mut header = [icmp_type, 0, 0, 0, id_hi, id_lo, seq_hi, seq_lo];
    if family == Family::V4 && kind == PingKind::Raw {
        let sum = checksum(&[&header, payload]);
        header[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    header
}

/// RFC 1071 Internet checksum over consecutive chunks; every chunk but the last must have
/// even length (ours: the 8-byte header, then the payload).
fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for chunk in chunks {
        let mut pairs = chunk.chunks_exact(2);
        for pair in &mut pairs {
            sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        if let [last] = pairs.remainder() {
            sum += u32::from(u16::from_be_bytes([*last, 0]));
        }
        sum = (sum & 0xffff) + (sum >> 16);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(0xffff)
}

/// An echo reply as found in a received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ParsedReply {
    identifier: u16,
    seq: u16,
    payload_len: usize,
    /// The ICMP checksum verifies (meaningful for raw IPv4 only: the kernel checks the rest).
    checksum_ok: bool,
}

/// Finds the echo reply in a datagram the kernel scattered over `prefix` then `buf` (`len`
/// bytes in all), moves its payload to the start of `buf` and reads its header. With
/// `ip_header`, the datagram starts with an IPv4 header whose length (options included) is
/// read from it. `None` for anything that is not a well-formed echo reply.
fn parse_reply(
    prefix: &[u8],
    buf: &mut [u8],
    len: usize,
    ip_header: bool,
    family: Family,
) -> Option<ParsedReply> {
    let at = |i: usize| -> Option<u8> {
        match i.checked_sub(prefix.len()) {
            None => prefix.get(i).copied(),
            Some(j) => buf.get(j).copied(),
        }
        .filter(|_| i < len)
    };
    let start = if ip_header {
        let first = at(0)?;
        let header_len = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || header_len < IPV4_HEADER_LEN {
            return None;
        }
        header_len
    } else {
        0
    };
    let mut header = [0u8; ECHO_HEADER_LEN];
    for (i, byte) in header.iter_mut().enumerate() {
        *byte = at(start + i)?;
    }
    let reply_type = match family {
        Family::V4 => ICMP_ECHO_REPLY,
        Family::V6 => ICMPV6_ECHO_REPLY,
    };
    if header[0] != reply_type || header[1] != 0 {
        return None;
    }
    // The payload begins behind the echo header; `prefix` is never longer than that offset.
    let payload_at = (start + ECHO_HEADER_LEN).checked_sub(prefix.len())?;
    let payload_len = len.checked_sub(start + ECHO_HEADER_LEN)?;
    let payload_end = payload_at.checked_add(payload_len)?;
    if payload_end > buf.len() {
        return None;
    }
    buf.copy_within(payload_at..payload_end, 0);
    Some(ParsedReply {
        identifier: u16::from_be_bytes([header[4], header[5]]),
        seq: u16::from_be_bytes([header[6], header[7]]),
        payload_len,
        checksum_ok: checksum(&[&header, &buf[..payload_len]]) == 0,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// An echo reply with a valid checksum, optionally behind an IPv4 header with options.
    fn reply(identifier: u16, seq: u16, payload: &[u8], ip_options: Option<usize>) -> Vec<u8> {
        let mut icmp = vec![ICMP_ECHO_REPLY, 0, 0, 0];
        icmp.extend_from_slice(&identifier.to_be_bytes());
        icmp.extend_from_slice(&seq.to_be_bytes());
        icmp.extend_from_slice(payload);
        let sum = checksum(&[&icmp]);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        let Some(options) = ip_options else {
            return icmp;
        };
        let header_len = IPV4_HEADER_LEN + options;
        let mut packet = vec![0u8; header_len];
        packet[0] = 0x40 | u8::try_from(header_len / 4).unwrap();
        packet[9] = 1;
        packet.extend(icmp);
        packet
    }

    /// Splits `datagram` as the kernel would over a prefix of `prefix_len` and `buf`.
    fn scatter(datagram: &[u8], prefix_len: usize, buf: &mut [u8]) -> (Vec<u8>, usize) {
        let mut prefix = vec![0xa5; prefix_len];
        let head = datagram.len().min(prefix_len);
        prefix[..head].copy_from_slice(&datagram[..head]);
        let rest = &datagram[head..];
        let copied = rest.len().min(buf.len());
        buf[..copied].copy_from_slice(&rest[..copied]);
        (prefix, head + copied)
    }

    #[test]
    fn echo_request_known_answer() {
        // Echo request id 0x1234 seq 1, payload "abcd", checksum by hand:
        // 0x0800 + 0x1234 + 0x0001 + 0x6162 + 0x6364 = 0xdefb, complemented 0x2104.
        let header = echo_request(Family::V4, PingKind::Raw, 0x1234, 1, b"abcd");
        assert_eq!(header, [8, 0, 0x21, 0x04, 0x12, 0x34, 0, 1]);
        assert_eq!(checksum(&[&header, b"abcd"]), 0);
        // The kernel fills in what datagram sockets and ICMPv6 leave at zero.
        assert_eq!(
            echo_request(Family::V4, PingKind::Datagram, 7, 2, b"abcd"),
            [8, 0, 0, 0, 0, 7, 0, 2]
        );
        assert_eq!(
            echo_request(Family::V6, PingKind::Raw, 7, 0x0102, b""),
            [128, 0, 0, 0, 0, 7, 1, 2]
        );
    }

    #[test]
    fn filters_pass_only_echo_replies() {
        let v4 = icmp_filter_passing(ICMP_ECHO_REPLY);
        for t in 0..32u8 {
            assert_eq!(v4 & (1 << t) == 0, t == ICMP_ECHO_REPLY, "type {t}");
        }
        let v6 = icmpv6_filter_passing(ICMPV6_ECHO_REPLY);
        for t in 0..=255u8 {
            let blocked = v6[usize::from(t >> 5)] & (1 << (t & 31)) != 0;
            assert_eq!(!blocked, t == ICMPV6_ECHO_REPLY, "type {t}");
        }
    }

    #[test]
    fn raw_ipv4_reply_with_options_moves_payload_to_the_front() {
        for options in [0, 4, 8, 40] {
            let datagram = reply(0xbeef, 9, b"payload!", Some(options));
            let mut buf = [0xa5u8; 64];
            let (prefix, len) = scatter(&datagram, PREFIX_LEN, &mut buf);
            let parsed = parse_reply(&prefix, &mut buf, len, true, Family::V4).unwrap();
            assert_eq!(
                parsed,
                ParsedReply {
                    identifier: 0xbeef,
                    seq: 9,
                    payload_len: 8,
                    checksum_ok: true,
                },
                "options {options}"
            );
            assert_eq!(&buf[..8], b"payload!", "options {options}");
        }
    }

    #[test]
    fn corrupted_checksum_is_flagged() {
        let mut datagram = reply(1, 2, b"xyz", Some(0));
        *datagram.last_mut().unwrap() ^= 0x40;
        let mut buf = [0u8; 16];
        let (prefix, len) = scatter(&datagram, PREFIX_LEN, &mut buf);
        let parsed = parse_reply(&prefix, &mut buf, len, true, Family::V4).unwrap();
        assert!(!parsed.checksum_ok);
    }

    #[test]
    fn not_replies_or_runts_are_skipped() {
        let mut buf = [0u8; 16];
        // A request is not a reply.
        let mut request = reply(1, 2, b"", None);
        request[0] = ICMP_ECHO_REQUEST;
        let (prefix, len) = scatter(&request, ECHO_HEADER_LEN, &mut buf);
        assert_eq!(parse_reply(&prefix, &mut buf, len, false, Family::V4), None);
        // ICMPv6 wants type 129, not 0.
        let (prefix, len) = scatter(&reply(1, 2, b"", None), ECHO_HEADER_LEN, &mut buf);
        assert_eq!(parse_reply(&prefix, &mut buf, len, false, Family::V6), None);
        // Shorter than an echo header.
        assert_eq!(parse_reply(&prefix, &mut buf, 7, false, Family::V4), None);
        // An IPv4 header claiming less than 20 bytes, or not version 4.
        let mut bad = reply(1, 2, b"", Some(0));
        bad[0] = 0x44;
        let (prefix, len) = scatter(&bad, PREFIX_LEN, &mut buf);
        assert_eq!(parse_reply(&prefix, &mut buf, len, true, Family::V4), None);
        bad[0] = 0x65;
        let (prefix, len) = scatter(&bad, PREFIX_LEN, &mut buf);
        assert_eq!(parse_reply(&prefix, &mut buf, len, true, Family::V4), None);
    }

    #[test]
    fn identifiers_differ_within_a_process() {
        let ids: std::collections::HashSet<u16> = (0..1000).map(|_| next_identifier()).collect();
        assert_eq!(ids.len(), 1000);
    }

    proptest! {
        #[test]
        fn datagram_replies_parse_back(
            identifier in any::<u16>(),
            seq in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..48),
        ) {
            let datagram = reply(identifier, seq, &payload, None);
            let mut buf = [0x5au8; 48];
            let (prefix, len) = scatter(&datagram, ECHO_HEADER_LEN, &mut buf);
            let parsed = parse_reply(&prefix, &mut buf, len, false, Family::V4).unwrap();
            prop_assert_eq!((parsed.identifier, parsed.seq), (identifier, seq));
            prop_assert_eq!(&buf[..parsed.payload_len], &payload[..]);
        }

        #[test]
        fn parsing_junk_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..96),
            prefix_len in prop_oneof![Just(ECHO_HEADER_LEN), Just(PREFIX_LEN)],
            ip_header in any::<bool>(),
            v6 in any::<bool>(),
            capacity in 0..64usize,
        ) {
            let mut buf = vec![0u8; capacity];
            let (prefix, len) = scatter(&bytes, prefix_len, &mut buf);
            let family = if v6 { Family::V6 } else { Family::V4 };
            if let Some(parsed) = parse_reply(&prefix, &mut buf, len, ip_header, family) {
                prop_assert!(parsed.payload_len <= buf.len());
            }
        }
    }
}
