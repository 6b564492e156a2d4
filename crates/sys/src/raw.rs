//! Raw IP sockets: one per tunnelled protocol and underlay IP version for the data path, one
//! for ICMPv6 Packet Too Big messages.
//!
//! [`RawIpv6Socket`] sends complete IPv6 packets built by the caller (`IPV6_HDRINCL`) and
//! receives the payload behind the IPv6 header and its extension headers, with the outer
//! addresses, traffic class and any Tunnel Encapsulation Limit reported as metadata. The kernel
//! neither fragments nor checks what we send: a packet larger than the outgoing device's MTU
//! fails with `EMSGSIZE`, and path MTU is learned from [`Icmpv6Socket`].
//!
//! [`RawIpv4Socket`] is the same for an IPv4 underlay, except that what it receives is the
//! whole datagram, IPv4 header included, as Linux delivers it; see its docs for the header
//! fields the kernel rewrites on sending.

use std::io::{self, IoSliceMut};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::error::{Result, SysError};
use crate::fd::{set_int_option, set_option};
use crate::msg::{self, ControlBuffer, ControlMessage, ControlMessages, Datagram};
pub use crate::msg::{BATCH_SIZE, Transmit};

mod ipv4;

pub use ipv4::{RawIpv4Socket, Received4, Transmit4};

/// Socket buffer size asked for on data-path sockets: a burst of full-size packets must not be
/// dropped while the poll loop is busy (the kernel default of ~200 KiB is a few hundred packets).
pub const BUFFER_SIZE: usize = 4 << 20;

/// Destination option type of the RFC 2473 Tunnel Encapsulation Limit (§5.1).
const OPTION_TUNNEL_ENCAP_LIMIT: u8 = 0x04;
/// Destination option type of Pad1, the only option without a length byte (RFC 8200 §4.2).
const OPTION_PAD1: u8 = 0x00;
/// `ICMP6_FILTER` socket option (linux/icmpv6.h), not exported by libc.
const ICMP6_FILTER: libc::c_int = 1;
/// ICMPv6 type Packet Too Big (RFC 4443 §3.2).
const ICMPV6_PACKET_TOO_BIG: u8 = 2;

/// A received datagram: its length in the caller's buffer and the outer-header metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes written to the buffer: the payload after the IPv6 header and extension headers.
    pub len: usize,
    /// Outer source address.
    pub src: Ipv6Addr,
    /// Outer destination address (`IPV6_PKTINFO`); unspecified if the kernel sent none.
    pub dst: Ipv6Addr,
    /// Interface the packet arrived on (`IPV6_PKTINFO`); 0 if unknown.
    pub ifindex: u32,
    /// Outer traffic class (`IPV6_TCLASS`).
    pub traffic_class: u8,
    /// Tunnel Encapsulation Limit, if a destination options header carried one.
    pub encap_limit: Option<u8>,
}

impl Received {
    /// Nothing received yet: what batch receive slots start as.
    pub const BLANK: Self = Self {
        len: 0,
        src: Ipv6Addr::UNSPECIFIED,
        dst: Ipv6Addr::UNSPECIFIED,
        ifindex: 0,
        traffic_class: 0,
        encap_limit: None,
    };
}

/// Raw IPv6 socket for one IP protocol (4 = IPv4-in-IPv6, 41 = IPv6-in-IPv6).
///
/// Sends complete IPv6 packets (`IPV6_HDRINCL`, so the caller controls every header byte) and
/// receives payloads with [`Received`] metadata. Non-blocking from the start.
#[derive(Debug)]
pub struct RawIpv6Socket {
    socket: Socket,
    protocol: u8,
}

impl RawIpv6Socket {
    /// Opens the socket in the calling thread's network namespace.
    ///
    /// Buffers are forced to [`BUFFER_SIZE`] (`SO_RCVBUFFORCE`, falling back to the plain
    /// option, capped by `net.core.*mem_max`, without `CAP_NET_ADMIN`); packet info, traffic
    /// class and destination options are requested with every datagram.
    pub fn open(protocol: u8) -> Result<Self> {
        let name = format!("raw IPv6 socket for protocol {protocol}");
        let socket = open_raw(Domain::IPV6, i32::from(protocol), &name)?;
        let error = |op: &'static str| {
            let name = name.clone();
            move |io| SysError::Socket {
                op,
                socket: name,
                io,
            }
        };
        socket
            .set_header_included_v6(true)
            .map_err(error("set IPV6_HDRINCL on"))?;
        set_buffers(&socket).map_err(error("size buffers of"))?;
        request_metadata(&socket).map_err(error("request packet info on"))?;
        let fd = socket.as_raw_fd();
        set_int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVDSTOPTS, 1)
            .map_err(error("set IPV6_RECVDSTOPTS on"))?;
        Ok(Self { socket, protocol })
    }

    /// The IP protocol number this socket carries.
    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    /// Receives only packets addressed to `local` (the tunnel's own endpoint).
    pub fn bind(&self, local: Ipv6Addr) -> io::Result<()> {
        self.socket
            .bind(&SockAddr::from(SocketAddrV6::new(local, 0, 0, 0)))
    }

    /// Sets `SO_MARK` on everything sent, so policy rules can route our own outer packets
    /// differently from the traffic they carry.
    pub fn set_mark(&self, mark: u32) -> io::Result<()> {
        self.socket.set_mark(mark)
    }

    /// Kernel receive buffer in bytes (twice what was asked for: the kernel adds bookkeeping).
    pub fn recv_buffer_size(&self) -> io::Result<usize> {
        self.socket.recv_buffer_size()
    }

    /// Kernel send buffer in bytes.
    pub fn send_buffer_size(&self) -> io::Result<usize> {
        self.socket.send_buffer_size()
    }

    /// Sends one complete IPv6 packet. `dst` picks the route and must equal the packet's
    /// destination address.
    pub fn send_to(&self, packet: &[u8], dst: Ipv6Addr) -> io::Result<usize> {
        self.socket
            .send_to(packet, &SockAddr::from(SocketAddrV6::new(dst, 0, 0, 0)))
    }

    /// Receives one payload into `buf`; `WouldBlock` when none is queued. A datagram longer than
    /// `buf` is dropped and reported as `InvalidData`.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        recv_with_metadata(self.socket.as_raw_fd(), buf)
    }

    /// Sends up to [`BATCH_SIZE`] packets with one `sendmmsg` and returns how many the kernel
    /// took. A failure after the first packet ends the batch early and shows in the count; the
    /// next call (starting at the first packet not sent) reports it.
    pub fn send_batch(&self, transmits: &[Transmit<'_>]) -> io::Result<usize> {
        msg::send_batch(self.socket.as_raw_fd(), transmits)
    }

    /// Receives up to [`BATCH_SIZE`] datagrams with one `recvmmsg`: datagram `i` lands in
    /// `bufs[i]` and its metadata in `received[i]`. Returns how many; `WouldBlock` when none is
    /// queued. Datagrams too long for their buffer are dropped from the results (later ones
    /// move up), since a partial payload is never useful.
    pub fn recv_batch(
        &self,
        bufs: &mut [IoSliceMut<'_>],
        received: &mut [Received],
    ) -> io::Result<usize> {
        msg::recv_batch(
            self.socket.as_raw_fd(),
            bufs,
            received,
            metadata,
            |received| received.len,
        )
    }
}

impl AsRawFd for RawIpv6Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl AsFd for RawIpv6Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// Raw ICMPv6 socket whose `ICMP6_FILTER` passes only Packet Too Big (type 2): the source of
/// tunnel path MTU. Received bytes start at the ICMPv6 header. Non-blocking.
#[derive(Debug)]
pub struct Icmpv6Socket {
    socket: Socket,
}

impl Icmpv6Socket {
    /// Opens the socket in the calling thread's network namespace.
    pub fn open() -> Result<Self> {
        let name = "ICMPv6 socket";
        let socket = open_raw(Domain::IPV6, libc::IPPROTO_ICMPV6, name)?;
        let error = |op: &'static str| {
            move |io| SysError::Socket {
                op,
                socket: name.to_owned(),
                io,
            }
        };
        set_option(
            socket.as_raw_fd(),
            libc::IPPROTO_ICMPV6,
            ICMP6_FILTER,
            &Icmpv6Filter::only(ICMPV6_PACKET_TOO_BIG),
        )
        .map_err(error("set ICMP6_FILTER on"))?;
        request_metadata(&socket).map_err(error("request packet info on"))?;
        Ok(Self { socket })
    }

    /// Receives one ICMPv6 message (from its type byte on) into `buf`.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        recv_with_metadata(self.socket.as_raw_fd(), buf)
    }
}

impl AsRawFd for Icmpv6Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl AsFd for Icmpv6Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// `struct icmp6_filter`: a bit per ICMPv6 type, set = blocked (Linux semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Icmpv6Filter {
    data: [u32; 8],
}

impl Icmpv6Filter {
    fn only(pass: u8) -> Self {
        let mut data = [u32::MAX; 8];
        data[usize::from(pass >> 5)] &= !(1 << (pass & 31));
        Self { data }
    }

    #[cfg(test)]
    fn passes(&self, icmp_type: u8) -> bool {
        self.data[usize::from(icmp_type >> 5)] & (1 << (icmp_type & 31)) == 0
    }
}

fn open_raw(domain: Domain, protocol: i32, name: &str) -> Result<Socket> {
    Socket::new(
        domain,
        Type::RAW.nonblocking(),
        Some(Protocol::from(protocol)),
    )
    .map_err(|io| SysError::Socket {
        op: "open",
        socket: name.to_owned(),
        io,
    })
}

/// Forces the send and receive buffers of any socket (a UDP socket carrying ESP-in-UDP, say)
/// to [`BUFFER_SIZE`], like this module's own sockets: with the default 208 KiB a burst
/// overflows them while the packet thread is busy elsewhere.
pub fn enlarge_buffers<S: AsFd>(socket: &S) -> io::Result<()> {
    set_buffers(&socket2::SockRef::from(socket))
}

fn set_buffers(socket: &Socket) -> io::Result<()> {
    let size = libc::c_int::try_from(BUFFER_SIZE).map_err(io::Error::other)?;
    let fd = socket.as_raw_fd();
    if set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size).is_err() {
        socket.set_recv_buffer_size(BUFFER_SIZE)?;
    }
    if set_int_option(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, size).is_err() {
        socket.set_send_buffer_size(BUFFER_SIZE)?;
    }
    Ok(())
}

fn request_metadata(socket: &Socket) -> io::Result<()> {
    set_int_option(
        socket.as_raw_fd(),
        libc::IPPROTO_IPV6,
        libc::IPV6_RECVPKTINFO,
        1,
    )?;
    socket.set_recv_tclass_v6(true)
}

fn recv_with_metadata(fd: RawFd, buf: &mut [u8]) -> io::Result<Received> {
    let mut control = ControlBuffer::new();
    let datagram = recv_whole(fd, buf, &mut control)?;
    Ok(metadata(
        datagram.len,
        datagram.src,
        &control.0[..datagram.control_len],
    ))
}

/// Receives one datagram into `buf`; one longer than `buf` is an `InvalidData` error.
fn recv_whole<A: msg::SocketAddress>(
    fd: RawFd,
    buf: &mut [u8],
    control: &mut ControlBuffer,
) -> io::Result<Datagram<A>> {
    let capacity = buf.len();
    let datagram = msg::recvmsg(fd, &mut [IoSliceMut::new(buf)], &mut control.0)?;
    if datagram.truncated {
        return Err(too_long(datagram.size, capacity));
    }
    Ok(datagram)
}

fn too_long(size: usize, capacity: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("datagram of {size} bytes dropped: receive buffer holds {capacity}"),
    )
}

fn metadata(len: usize, src: Ipv6Addr, control: &[u8]) -> Received {
    let mut received = Received {
        len,
        src,
        ..Received::BLANK
    };
    for message in ControlMessages::new(control) {
        apply_control_message(&mut received, message);
    }
    received
}

fn apply_control_message(received: &mut Received, message: ControlMessage<'_>) {
    if message.level != libc::IPPROTO_IPV6 {
        return;
    }
    match message.kind {
        libc::IPV6_PKTINFO => {
            // struct in6_pktinfo { struct in6_addr ipi6_addr; int ipi6_ifindex; }
            if let Some(addr) = message.data.get(..16) {
                let octets: [u8; 16] = addr.try_into().unwrap_or([0; 16]);
                received.dst = Ipv6Addr::from(octets);
            }
            if let Some(index) = message.data.get(16..20) {
                received.ifindex = u32::from_ne_bytes(index.try_into().unwrap_or([0; 4]));
            }
        }
        libc::IPV6_TCLASS => {
            if let Some(value) = message.data.get(..4) {
                let value = i32::from_ne_bytes(value.try_into().unwrap_or([0; 4]));
                received.traffic_class = u8::try_from(value & 0xff).unwrap_or(0);
            }
        }
        libc::IPV6_DSTOPTS => {
            if let Some(limit) = encap_limit(message.data) {
                received.encap_limit = Some(limit);
            }
        }
        _ => {}
    }
}

/// Finds the Tunnel Encapsulation Limit in a destination options header (next header, hdr ext
/// len, options). Malformed options end the walk without a result.
fn encap_limit(header: &[u8]) -> Option<u8> {
    let declared = (usize::from(*header.get(1)?) + 1) * 8;
    let options = header.get(2..declared.min(header.len()))?;
    let mut at = 0;
    while let Some(&kind) = options.get(at) {
        if kind == OPTION_PAD1 {
            at += 1;
            continue;
        }
        let len = usize::from(*options.get(at + 1)?);
        let value = options.get(at + 2..at + 2 + len)?;
        if kind == OPTION_TUNNEL_ENCAP_LIMIT && len == 1 {
            return Some(value[0]);
        }
        at += 2 + len;
    }
    None
}

/// A send-only raw socket for one underlay path: `IPPROTO_RAW` (the caller writes every header
/// byte; it receives nothing), bound to the path's local address and connected to its remote,
/// so `sendmmsg` needs no addresses. Bound, the kernel skips source address selection, which
/// an unbound socket runs for every packet (about 8 % of a gateway's CPU time in a profile of
/// one TCP flow). Raw sockets keep no route cache, so the route and rule lookups remain.
#[derive(Debug)]
pub struct PathSender {
    socket: Socket,
}

impl PathSender {
    pub fn open(local: std::net::IpAddr, remote: std::net::IpAddr) -> Result<Self> {
        let name = format!("raw socket {local} -> {remote}");
        let domain = if remote.is_ipv6() {
            Domain::IPV6
        } else {
            Domain::IPV4
        };
        let socket = open_raw(domain, libc::IPPROTO_RAW, &name)?;
        let error = |op: &'static str| {
            let name = name.clone();
            move |io| SysError::Socket {
                op,
                socket: name,
                io,
            }
        };
        set_buffers(&socket).map_err(error("size buffers of"))?;
        socket
            .bind(&SockAddr::from(std::net::SocketAddr::new(local, 0)))
            .map_err(error("bind"))?;
        socket
            .connect(&SockAddr::from(std::net::SocketAddr::new(remote, 0)))
            .map_err(error("connect"))?;
        Ok(Self { socket })
    }

    /// Sends up to [`BATCH_SIZE`] whole packets (headers included) with one `sendmmsg`;
    /// returns how many the kernel took.
    pub fn send_batch(&self, packets: &[&[u8]]) -> io::Result<usize> {
        msg::sendmmsg_connected(self.socket.as_raw_fd(), packets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::control_message;

    #[test]
    fn encap_limit_found_after_padding() {
        // Encapsulation limit 7 first, then PadN to fill the 8-byte header.
        let header = [4, 0, 0x04, 0x01, 7, 0x01, 0x01, 0x00];
        assert_eq!(encap_limit(&header), Some(7));
        // Pad1 bytes before it.
        let header = [4, 0, 0x00, 0x00, 0x00, 0x04, 0x01, 9];
        assert_eq!(encap_limit(&header), Some(9));
    }

    #[test]
    fn encap_limit_absent_or_malformed() {
        assert_eq!(encap_limit(&[]), None);
        assert_eq!(encap_limit(&[4]), None);
        // PadN only.
        assert_eq!(encap_limit(&[4, 0, 0x01, 0x04, 0, 0, 0, 0]), None);
        // Option 4 with the wrong length is not the encapsulation limit.
        assert_eq!(encap_limit(&[4, 0, 0x04, 0x02, 1, 2, 0x00, 0x00]), None);
        // Option length runs past the header.
        assert_eq!(encap_limit(&[4, 0, 0x01, 0x09, 0, 0, 0, 0]), None);
        // Declared header length beyond the bytes given: only what is there is read.
        assert_eq!(encap_limit(&[4, 1, 0x04, 0x01, 3]), Some(3));
        // Option after the declared end is ignored.
        let mut long = vec![4, 0, 0x01, 0x04, 0, 0, 0, 0];
        long.extend_from_slice(&[0x04, 0x01, 5, 0x01, 0x01, 0, 0, 0]);
        assert_eq!(encap_limit(&long), None);
    }

    #[test]
    fn control_messages_fill_metadata() {
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut pktinfo = dst.octets().to_vec();
        pktinfo.extend_from_slice(&7u32.to_ne_bytes());
        let mut buffer = control_message(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, &pktinfo);
        buffer.extend(control_message(
            libc::IPPROTO_IPV6,
            libc::IPV6_TCLASS,
            &0xb8i32.to_ne_bytes(),
        ));
        buffer.extend(control_message(
            libc::IPPROTO_IPV6,
            libc::IPV6_DSTOPTS,
            &[4, 0, 0x04, 0x01, 4, 0x01, 0x01, 0x00],
        ));
        // An unrelated level with a colliding type number must not be read as pktinfo.
        buffer.extend(control_message(
            libc::SOL_SOCKET,
            libc::IPV6_PKTINFO,
            &[0xff; 20],
        ));
        let mut received = Received::BLANK;
        let messages: Vec<_> = ControlMessages::new(&buffer).collect();
        assert_eq!(messages.len(), 4);
        for message in messages {
            apply_control_message(&mut received, message);
        }
        assert_eq!(received.dst, dst);
        assert_eq!(received.ifindex, 7);
        assert_eq!(received.traffic_class, 0xb8);
        assert_eq!(received.encap_limit, Some(4));
    }

    #[test]
    fn icmpv6_filter_passes_only_packet_too_big() {
        let filter = Icmpv6Filter::only(ICMPV6_PACKET_TOO_BIG);
        for icmp_type in 0..=255u8 {
            assert_eq!(
                filter.passes(icmp_type),
                icmp_type == ICMPV6_PACKET_TOO_BIG,
                "type {icmp_type}"
            );
        }
        assert_eq!(filter.data[0], !(1 << 2));
    }
}
