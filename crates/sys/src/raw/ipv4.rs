//! Raw IPv4 sockets for tunnels whose underlay is IPv4: IPv4-in-IPv4 (protocol 4, RFC 2003)
//! and IPv6-in-IPv4 (protocol 41, RFC 4213).

use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use socket2::{Domain, SockAddr, Socket};

use super::{Transmit, open_raw, recv_whole, set_buffers};
use crate::error::{Result, SysError};
use crate::fd::{set_int_option, set_option};
use crate::msg::{self, ControlBuffer, ControlMessage, ControlMessages};

/// `SOL_RAW` and its `ICMP_FILTER` option (linux/icmp.h), which the libc crate lacks.
const SOL_RAW: libc::c_int = 255;
const ICMP_FILTER: libc::c_int = 1;

/// One packet of an IPv4 batch send.
pub type Transmit4<'a> = Transmit<'a, Ipv4Addr>;

/// A datagram received on a [`RawIpv4Socket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received4 {
    /// Bytes written to the buffer: the whole datagram, starting with its IPv4 header
    /// (options included), reassembled if it arrived in fragments.
    pub len: usize,
    /// Outer source address.
    pub src: Ipv4Addr,
    /// Outer destination address as in the header (`IP_PKTINFO`'s `ipi_addr`); unspecified if
    /// the kernel sent none.
    pub dst: Ipv4Addr,
    /// Interface the datagram arrived on (`IP_PKTINFO`); 0 if unknown.
    pub ifindex: u32,
}

impl Received4 {
    /// Nothing received yet: what batch receive slots start as.
    pub const BLANK: Self = Self {
        len: 0,
        src: Ipv4Addr::UNSPECIFIED,
        dst: Ipv4Addr::UNSPECIFIED,
        ifindex: 0,
    };
}

/// Raw IPv4 socket for one IP protocol (4 = IPv4-in-IPv4, 41 = IPv6-in-IPv4).
///
/// Sending: `IP_HDRINCL` is on, so the caller builds the whole outer IPv4 header. The kernel
/// still rewrites some of it: the header checksum and total length are always recomputed,
/// the source address is filled in when zero, and the identification is filled in when zero
/// *and* DF is clear (a zero id with DF set stays zero, as RFC 6864 allows for atomic
/// datagrams). The kernel never fragments such a packet: one larger than the outgoing
/// device's MTU fails with `EMSGSIZE`, whatever DF says.
///
/// Receiving: Linux hands raw IPv4 sockets the whole datagram, IPv4 header included (unlike
/// raw IPv6 sockets, which strip it). A socket sees only IPv4 datagrams of its own protocol
/// addressed to this host; IPv6 packets never reach it, whatever their next header. If the
/// kernel's own `ipip` or `sit` module is loaded, datagrams no tunnel device claims are still
/// delivered here, but the kernel also answers them with ICMP port unreachable; hosts running
/// this socket should not load those modules.
///
/// Non-blocking from the start; [`AsRawFd`] for registration with a poller.
#[derive(Debug)]
pub struct RawIpv4Socket {
    socket: Socket,
    protocol: u8,
}

impl RawIpv4Socket {
    /// Opens the socket in the calling thread's network namespace, with buffers forced to
    /// [`BUFFER_SIZE`](super::BUFFER_SIZE) as for [`RawIpv6Socket`](super::RawIpv6Socket) and
    /// `IP_PKTINFO` requested with every datagram.
    pub fn open(protocol: u8) -> Result<Self> {
        let name = format!("raw IPv4 socket for protocol {protocol}");
        let socket = open_raw(Domain::IPV4, i32::from(protocol), &name)?;
        let error = |op: &'static str| {
            let name = name.clone();
            move |io| SysError::Socket {
                op,
                socket: name,
                io,
            }
        };
        socket
            .set_header_included_v4(true)
            .map_err(error("set IP_HDRINCL on"))?;
        set_buffers(&socket).map_err(error("size buffers of"))?;
        set_int_option(socket.as_raw_fd(), libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
            .map_err(error("request packet info on"))?;
        Ok(Self { socket, protocol })
    }

    /// On a socket for protocol 1 (ICMP): lets through only messages whose type is in
    /// `types` (Linux's `ICMP_FILTER`, types below 32), so that the packet thread is not woken
    /// for every echo the host answers.
    pub fn pass_only_icmp_types(&self, types: &[u8]) -> io::Result<()> {
        // `struct icmp_filter { __u32 data; }`: a set bit blocks that type.
        let pass = types
            .iter()
            .filter(|&&t| t < 32)
            .fold(0u32, |mask, &t| mask | (1 << t));
        set_option(self.socket.as_raw_fd(), SOL_RAW, ICMP_FILTER, &!pass)
    }

    /// The IP protocol number this socket carries.
    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    /// Receives only datagrams addressed to `local` (the tunnel's own endpoint).
    pub fn bind(&self, local: Ipv4Addr) -> io::Result<()> {
        self.socket
            .bind(&SockAddr::from(SocketAddrV4::new(local, 0)))
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

    /// Sends one complete IPv4 datagram. `dst` picks the route and must equal the header's
    /// destination address.
    pub fn send_to(&self, packet: &[u8], dst: Ipv4Addr) -> io::Result<usize> {
        self.socket
            .send_to(packet, &SockAddr::from(SocketAddrV4::new(dst, 0)))
    }

    /// Receives one datagram, IPv4 header included, into `buf`; `WouldBlock` when none is
    /// queued. A datagram longer than `buf` is dropped and reported as `InvalidData`.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Received4> {
        let mut control = ControlBuffer::new();
        let datagram = recv_whole(self.socket.as_raw_fd(), buf, &mut control)?;
        Ok(metadata(
            datagram.len,
            datagram.src,
            &control.0[..datagram.control_len],
        ))
    }

    /// Sends up to [`BATCH_SIZE`](super::BATCH_SIZE) datagrams with one `sendmmsg` and returns how many the
    /// kernel took; as [`RawIpv6Socket::send_batch`](super::RawIpv6Socket::send_batch).
    pub fn send_batch(&self, transmits: &[Transmit4<'_>]) -> io::Result<usize> {
        msg::send_batch(self.socket.as_raw_fd(), transmits)
    }

    /// Receives up to [`BATCH_SIZE`](super::BATCH_SIZE) datagrams with one `recvmmsg`, as
    /// [`RawIpv6Socket::recv_batch`](super::RawIpv6Socket::recv_batch): datagram `i` (IPv4
    /// header included) lands in `bufs[i]`, its metadata in `received[i]`, and datagrams too
    /// long for their buffer drop out.
    pub fn recv_batch(
        &self,
        bufs: &mut [IoSliceMut<'_>],
        received: &mut [Received4],
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

impl AsRawFd for RawIpv4Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl AsFd for RawIpv4Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

fn metadata(len: usize, src: Ipv4Addr, control: &[u8]) -> Received4 {
    let mut received = Received4 {
        len,
        src,
        ..Received4::BLANK
    };
    for message in ControlMessages::new(control) {
        apply_control_message(&mut received, message);
    }
    received
}

fn apply_control_message(received: &mut Received4, message: ControlMessage<'_>) {
    if message.level != libc::IPPROTO_IP || message.kind != libc::IP_PKTINFO {
        return;
    }
    // struct in_pktinfo { int ipi_ifindex; struct in_addr ipi_spec_dst; struct in_addr
    // ipi_addr; }: ipi_spec_dst is the local address routing picked, ipi_addr the header's.
    if let Some(index) = message.data.get(..4) {
        received.ifindex = u32::from_ne_bytes(index.try_into().unwrap_or([0; 4]));
    }
    if let Some(addr) = message.data.get(8..12) {
        received.dst = Ipv4Addr::from(<[u8; 4]>::try_from(addr).unwrap_or([0; 4]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::control_message;

    fn pktinfo(ifindex: u32, spec_dst: Ipv4Addr, addr: Ipv4Addr) -> Vec<u8> {
        let mut data = ifindex.to_ne_bytes().to_vec();
        data.extend_from_slice(&spec_dst.octets());
        data.extend_from_slice(&addr.octets());
        data
    }

    #[test]
    fn pktinfo_gives_header_destination_and_interface() {
        let header_dst = Ipv4Addr::new(198, 51, 100, 255);
        let local = Ipv4Addr::new(198, 51, 100, 1);
        let mut control = control_message(
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            &pktinfo(3, local, header_dst),
        );
        // The same type number at another level is not packet info.
        control.extend(control_message(
            libc::SOL_SOCKET,
            libc::IP_PKTINFO,
            &[0xff; 12],
        ));
        let src = Ipv4Addr::new(203, 0, 113, 9);
        let received = metadata(60, src, &control);
        assert_eq!(
            received,
            Received4 {
                len: 60,
                src,
                dst: header_dst,
                ifindex: 3,
            }
        );
    }

    #[test]
    fn short_or_missing_pktinfo_leaves_defaults() {
        let src = Ipv4Addr::new(203, 0, 113, 9);
        assert_eq!(metadata(1, src, &[]).dst, Ipv4Addr::UNSPECIFIED);
        // Interface index only: the address part was cut off.
        let control = control_message(libc::IPPROTO_IP, libc::IP_PKTINFO, &7u32.to_ne_bytes());
        let received = metadata(1, src, &control);
        assert_eq!((received.ifindex, received.dst), (7, Ipv4Addr::UNSPECIFIED));
        // Junk in the control buffer never panics.
        for len in 0..64 {
            let junk = vec![0xa5; len];
            assert_eq!(metadata(1, src, &junk).src, src);
        }
    }
}
