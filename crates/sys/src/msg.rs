//! `recvmsg`, `recvmmsg` and `sendmmsg` for IPv4 and IPv6 datagram sockets, and a walker for
//! the control messages they return. Shared by the raw and ping sockets so the pointer work is
//! written, and reviewed, once.

use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;

/// Most datagrams moved by one `recvmmsg`/`sendmmsg` call.
pub const BATCH_SIZE: usize = 32;

/// One packet of a batch send: a complete IP packet and the destination that routes it
/// (an [`Ipv6Addr`] for a raw IPv6 socket, an [`Ipv4Addr`] for a raw IPv4 socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit<'a, A = Ipv6Addr> {
    pub packet: &'a [u8],
    pub dst: A,
}

/// An address family's `sockaddr`, as far as these calls need one: a destination to write and
/// a source to read back.
pub(crate) trait SocketAddress: Copy {
    /// `sockaddr_in` or `sockaddr_in6`.
    type Raw: Copy;

    fn to_raw(self) -> Self::Raw;
    fn from_raw(raw: &Self::Raw) -> Self;
}

impl SocketAddress for Ipv4Addr {
    type Raw = libc::sockaddr_in;

    fn to_raw(self) -> Self::Raw {
        libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            // s_addr holds the address in network byte order, i.e. the octets as they are.
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(self.octets()),
            },
            sin_zero: [0; 8],
        }
    }

    fn from_raw(raw: &Self::Raw) -> Self {
        Self::from(raw.sin_addr.s_addr.to_ne_bytes())
    }
}

impl SocketAddress for Ipv6Addr {
    type Raw = libc::sockaddr_in6;

    fn to_raw(self) -> Self::Raw {
        libc::sockaddr_in6 {
            sin6_family: libc::AF_INET6 as libc::sa_family_t,
            sin6_port: 0,
            sin6_flowinfo: 0,
            sin6_addr: libc::in6_addr {
                s6_addr: self.octets(),
            },
            sin6_scope_id: 0,
        }
    }

    fn from_raw(raw: &Self::Raw) -> Self {
        Self::from(raw.sin6_addr.s6_addr)
    }
}

/// Either family with its port, for UDP sockets: NAT traversal needs the peer's port.
impl SocketAddress for SocketAddr {
    type Raw = libc::sockaddr_storage;

    fn to_raw(self) -> Self::Raw {
        let mut storage = zeroed_raw::<Self>();
        match self {
            Self::V4(v4) => {
                let mut raw = v4.ip().to_raw();
                raw.sin_port = v4.port().to_be();
                // SAFETY: sockaddr_storage is larger than and aligned for every sockaddr type.
                unsafe {
                    std::ptr::from_mut(&mut storage)
                        .cast::<libc::sockaddr_in>()
                        .write(raw)
                };
            }
            Self::V6(v6) => {
                let mut raw = v6.ip().to_raw();
                raw.sin6_port = v6.port().to_be();
                raw.sin6_flowinfo = v6.flowinfo();
                raw.sin6_scope_id = v6.scope_id();
                // SAFETY: as above.
                unsafe {
                    std::ptr::from_mut(&mut storage)
                        .cast::<libc::sockaddr_in6>()
                        .write(raw)
                };
            }
        }
        storage
    }

    /// A family other than IPv4 or IPv6, which an IP socket never reports, reads as
    /// `0.0.0.0:0`.
    fn from_raw(raw: &Self::Raw) -> Self {
        match i32::from(raw.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in, which it is large
                // and aligned enough for.
                let v4 = unsafe { &*std::ptr::from_ref(raw).cast::<libc::sockaddr_in>() };
                Self::from((Ipv4Addr::from_raw(v4), u16::from_be(v4.sin_port)))
            }
            libc::AF_INET6 => {
                // SAFETY: as above, for sockaddr_in6.
                let v6 = unsafe { &*std::ptr::from_ref(raw).cast::<libc::sockaddr_in6>() };
                Self::V6(std::net::SocketAddrV6::new(
                    Ipv6Addr::from_raw(v6),
                    u16::from_be(v6.sin6_port),
                    v6.sin6_flowinfo,
                    v6.sin6_scope_id,
                ))
            }
            _ => Self::from((Ipv4Addr::UNSPECIFIED, 0)),
        }
    }
}

fn raw_len<A: SocketAddress>() -> io::Result<libc::socklen_t> {
    libc::socklen_t::try_from(size_of::<A::Raw>()).map_err(io::Error::other)
}

/// One received datagram as `recvmsg` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Datagram<A> {
    /// Bytes written across the buffers.
    pub(crate) len: usize,
    /// The datagram's real length, which is more than `len` when it was truncated.
    pub(crate) size: usize,
    /// The datagram was longer than the buffers together (the rest is lost).
    pub(crate) truncated: bool,
    pub(crate) src: A,
    /// Bytes of control messages written to the control buffer.
    pub(crate) control_len: usize,
}

/// Receives one datagram, scattered over `bufs` in order, with its control messages.
pub(crate) fn recvmsg<A: SocketAddress>(
    fd: RawFd,
    bufs: &mut [IoSliceMut<'_>],
    control: &mut [u8],
) -> io::Result<Datagram<A>> {
    let capacity: usize = bufs.iter().map(|buf| buf.len()).sum();
    let mut src = zeroed_raw::<A>();
    // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = std::ptr::from_mut(&mut src).cast();
    msg.msg_namelen = raw_len::<A>()?;
    // IoSliceMut is guaranteed ABI-compatible with iovec on Unix.
    msg.msg_iov = bufs.as_mut_ptr().cast();
    msg.msg_iovlen = bufs.len();
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len();
    // SAFETY: every pointer in `msg` refers to a live, exclusively borrowed buffer of the
    // stated length (`src`, the iovecs of `bufs` and what they point at, `control`); the kernel
    // writes within those lengths only, and nothing is kept after the call. MSG_TRUNC makes
    // the return value the datagram's real length.
    let rc = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_TRUNC) };
    let len = usize::try_from(rc).map_err(|_| io::Error::last_os_error())?;
    Ok(Datagram {
        len: len.min(capacity),
        size: len,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0 || len > capacity,
        src: A::from_raw(&src),
        control_len: msg.msg_controllen.min(control.len()),
    })
}

fn zeroed_raw<A: SocketAddress>() -> A::Raw {
    // SAFETY: `A::Raw` is sockaddr_in, sockaddr_in6 or sockaddr_storage (the only
    // implementations), plain C structs of integers for which all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// `sendmmsg` of whole packets on a connected socket: no destination per message, so the
/// kernel uses the route cached in the socket.
pub(crate) fn sendmmsg_connected(fd: RawFd, packets: &[&[u8]]) -> io::Result<usize> {
    let count = packets.len().min(BATCH_SIZE);
    if count == 0 {
        return Ok(0);
    }
    let mut iovs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; BATCH_SIZE];
    // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths).
    let mut hdrs: [libc::mmsghdr; BATCH_SIZE] = unsafe { std::mem::zeroed() };
    for (i, packet) in packets.iter().take(count).enumerate() {
        // The kernel only reads through iov_base on send; the cast to *mut is the C API's.
        iovs[i].iov_base = packet.as_ptr().cast_mut().cast();
        iovs[i].iov_len = packet.len();
        hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    let vlen = libc::c_uint::try_from(count).map_err(io::Error::other)?;
    // SAFETY: the first `count` headers point at live entries of `iovs`, whose iovecs point
    // at the callers' packets for their full lengths; all outlive the call and the kernel only
    // reads them (and writes `msg_len` in the headers we own).
    let rc = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), vlen, 0) };
    usize::try_from(rc).map_err(|_| io::Error::last_os_error())
}

/// The batch send of both raw socket kinds: at most [`BATCH_SIZE`] packets, none sent for an
/// empty slice.
pub(crate) fn send_batch<A: SocketAddress>(
    fd: RawFd,
    transmits: &[Transmit<'_, A>],
) -> io::Result<usize> {
    let transmits = &transmits[..transmits.len().min(BATCH_SIZE)];
    if transmits.is_empty() {
        return Ok(0);
    }
    sendmmsg(fd, transmits)
}

/// The batch receive of both raw socket kinds: one `recvmmsg` into at most [`BATCH_SIZE`]
/// slots, then the datagrams too long for their buffer dropped from the results.
pub(crate) fn recv_batch<A: SocketAddress, R: Copy>(
    fd: RawFd,
    bufs: &mut [IoSliceMut<'_>],
    received: &mut [R],
    decode: impl FnMut(usize, A, &[u8]) -> R,
    len_of: impl Fn(&R) -> usize,
) -> io::Result<usize> {
    let slots = bufs.len().min(received.len()).min(BATCH_SIZE);
    if slots == 0 {
        return Ok(0);
    }
    let (count, truncated) = recvmmsg(fd, &mut bufs[..slots], received, decode)?;
    Ok(drop_truncated(bufs, received, count, truncated, len_of))
}

/// Sends up to [`BATCH_SIZE`] packets with one `sendmmsg`; returns how many the kernel took.
pub(crate) fn sendmmsg<A: SocketAddress>(
    fd: RawFd,
    transmits: &[Transmit<'_, A>],
) -> io::Result<usize> {
    let count = transmits.len().min(BATCH_SIZE);
    let mut addrs = [zeroed_raw::<A>(); BATCH_SIZE];
    let mut iovs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; BATCH_SIZE];
    // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths).
    let mut hdrs: [libc::mmsghdr; BATCH_SIZE] = unsafe { std::mem::zeroed() };
    let namelen = raw_len::<A>()?;
    for (i, transmit) in transmits.iter().take(count).enumerate() {
        addrs[i] = transmit.dst.to_raw();
        // The kernel only reads through iov_base on send; the cast to *mut is the C API's.
        iovs[i].iov_base = transmit.packet.as_ptr().cast_mut().cast();
        iovs[i].iov_len = transmit.packet.len();
        let hdr = &mut hdrs[i].msg_hdr;
        hdr.msg_name = std::ptr::from_mut(&mut addrs[i]).cast();
        hdr.msg_namelen = namelen;
        hdr.msg_iov = &mut iovs[i];
        hdr.msg_iovlen = 1;
    }
    let vlen = libc::c_uint::try_from(count).map_err(io::Error::other)?;
    // SAFETY: the first `count` headers point at live entries of `addrs` and `iovs`, whose
    // iovecs point at the callers' packets for their full lengths; all outlive the call and
    // the kernel only reads them (and writes `msg_len` in the headers we own).
    let rc = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), vlen, 0) };
    usize::try_from(rc).map_err(|_| io::Error::last_os_error())
}

/// Control space per datagram in batches: packet info, traffic class and a destination options
/// header of realistic size; longer options arrive cut short (MSG_CTRUNC) and are read as far
/// as they go.
const BATCH_CONTROL_LEN: usize = 256;

/// Aligned so the kernel's `cmsghdr`s inside are aligned too.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct BatchControlBuffer([u8; BATCH_CONTROL_LEN]);

/// Receives up to [`BATCH_SIZE`] datagrams with one `recvmmsg`: datagram `i` lands in
/// `bufs[i]` and `decode(len, src, control)` in `received[i]`. Returns the count and a bit
/// mask of datagrams that were longer than their buffer.
pub(crate) fn recvmmsg<A: SocketAddress, R>(
    fd: RawFd,
    bufs: &mut [IoSliceMut<'_>],
    received: &mut [R],
    mut decode: impl FnMut(usize, A, &[u8]) -> R,
) -> io::Result<(usize, u64)> {
    let slots = bufs.len().min(received.len()).min(BATCH_SIZE);
    let mut addrs = [zeroed_raw::<A>(); BATCH_SIZE];
    let mut controls = [BatchControlBuffer([0; BATCH_CONTROL_LEN]); BATCH_SIZE];
    let mut iovs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; BATCH_SIZE];
    // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths).
    let mut hdrs: [libc::mmsghdr; BATCH_SIZE] = unsafe { std::mem::zeroed() };
    let namelen = raw_len::<A>()?;
    for (i, buf) in bufs.iter_mut().take(slots).enumerate() {
        iovs[i].iov_base = buf.as_mut_ptr().cast();
        iovs[i].iov_len = buf.len();
        let hdr = &mut hdrs[i].msg_hdr;
        hdr.msg_name = std::ptr::from_mut(&mut addrs[i]).cast();
        hdr.msg_namelen = namelen;
        hdr.msg_iov = &mut iovs[i];
        hdr.msg_iovlen = 1;
        hdr.msg_control = controls[i].0.as_mut_ptr().cast();
        hdr.msg_controllen = BATCH_CONTROL_LEN;
    }
    let vlen = libc::c_uint::try_from(slots).map_err(io::Error::other)?;
    // SAFETY: the first `slots` headers point at live, exclusively borrowed entries of
    // `addrs`, `controls` and `iovs`, and the iovecs at the callers' buffers, each with its
    // true length; the kernel writes within those lengths only. A null timeout means none.
    let rc = unsafe { libc::recvmmsg(fd, hdrs.as_mut_ptr(), vlen, 0, std::ptr::null_mut()) };
    let count = usize::try_from(rc).map_err(|_| io::Error::last_os_error())?;
    let mut truncated = 0u64;
    for i in 0..count.min(slots) {
        let hdr = &hdrs[i];
        if hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            truncated |= 1 << i;
        }
        let len = usize::try_from(hdr.msg_len).unwrap_or(0).min(bufs[i].len());
        let control_len = hdr.msg_hdr.msg_controllen.min(BATCH_CONTROL_LEN);
        received[i] = decode(len, A::from_raw(&addrs[i]), &controls[i].0[..control_len]);
    }
    Ok((count.min(slots), truncated))
}

/// Drops the datagrams flagged in `truncated` (a mask over the first `count`) from a batch,
/// moving later ones up in both `bufs` and `received`; returns how many are left. A partial
/// packet is never useful to a tunnel.
pub(crate) fn drop_truncated<R: Copy>(
    bufs: &mut [IoSliceMut<'_>],
    received: &mut [R],
    count: usize,
    truncated: u64,
    len_of: impl Fn(&R) -> usize,
) -> usize {
    if truncated == 0 {
        return count;
    }
    let mut kept = 0;
    for i in 0..count {
        if truncated & (1 << i) != 0 {
            continue;
        }
        if kept != i {
            let len = len_of(&received[i]);
            let (head, tail) = bufs.split_at_mut(i);
            let Some(target) = head[kept].get_mut(..len) else {
                continue;
            };
            target.copy_from_slice(&tail[0][..len]);
            received[kept] = received[i];
        }
        kept += 1;
    }
    kept
}

/// Control-message space for single receives: packet info and traffic class are small; an
/// IPv6 destination options header can be up to 2048 bytes (hdr ext len 255).
pub(crate) const CONTROL_LEN: usize = 2048 + 256;

/// Aligned so the kernel's `cmsghdr`s inside are aligned too.
#[repr(C, align(8))]
pub(crate) struct ControlBuffer(pub(crate) [u8; CONTROL_LEN]);

impl ControlBuffer {
    pub(crate) fn new() -> Self {
        Self([0; CONTROL_LEN])
    }
}

/// One control message: level, type and data bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ControlMessage<'a> {
    pub(crate) level: i32,
    pub(crate) kind: i32,
    pub(crate) data: &'a [u8],
}

/// Walks the control buffer the way `CMSG_NXTHDR` does, without trusting the lengths in it.
pub(crate) struct ControlMessages<'a> {
    rest: &'a [u8],
}

impl<'a> ControlMessages<'a> {
    pub(crate) const HEADER_LEN: usize = size_of::<libc::cmsghdr>();

    pub(crate) fn new(buffer: &'a [u8]) -> Self {
        Self { rest: buffer }
    }

    pub(crate) fn align(len: usize) -> usize {
        let align = size_of::<usize>();
        len.div_ceil(align) * align
    }
}

impl<'a> Iterator for ControlMessages<'a> {
    type Item = ControlMessage<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let header = self.rest.get(..Self::HEADER_LEN)?;
        // cmsghdr is { size_t cmsg_len; int cmsg_level; int cmsg_type; } in native endianness.
        let (len, tail) = header.split_at(size_of::<usize>());
        let len = usize::from_ne_bytes(len.try_into().ok()?);
        let level = i32::from_ne_bytes(tail.get(..4)?.try_into().ok()?);
        let kind = i32::from_ne_bytes(tail.get(4..8)?.try_into().ok()?);
        let data_start = Self::align(Self::HEADER_LEN);
        if len < data_start {
            self.rest = &[];
            return None;
        }
        // A length past the end means the kernel cut the message short (MSG_CTRUNC): what
        // is there is still good, and the options parsers cope with a partial header.
        let data = self.rest.get(data_start..len.min(self.rest.len()))?;
        self.rest = self.rest.get(Self::align(len)..).unwrap_or(&[]);
        Some(ControlMessage { level, kind, data })
    }
}

/// Builds one control message as the kernel lays it out (for `sendmsg`, and for tests of
/// the parsers).
pub(crate) fn control_message(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
    let header_len = ControlMessages::align(ControlMessages::HEADER_LEN);
    let len = header_len + data.len();
    let mut out = Vec::new();
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&level.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.resize(header_len, 0);
    out.extend_from_slice(data);
    out.resize(ControlMessages::align(len), 0xee);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_stop_at_lying_lengths() {
        let mut buffer = control_message(libc::IPPROTO_IPV6, libc::IPV6_TCLASS, &[1, 0, 0, 0]);
        let good = buffer.len();
        // A second header whose length runs past the buffer, as after MSG_CTRUNC: its data is
        // what is there, and the walk ends with it.
        buffer.extend(control_message(
            libc::IPPROTO_IPV6,
            libc::IPV6_TCLASS,
            &[2, 0, 0, 0],
        ));
        buffer[good..good + size_of::<usize>()].copy_from_slice(&4096usize.to_ne_bytes());
        let messages: Vec<_> = ControlMessages::new(&buffer).collect();
        assert_eq!(messages.len(), 2);
        assert_eq!(
            messages[1].data,
            &buffer[good + ControlMessages::HEADER_LEN..]
        );
        // A length shorter than the header itself.
        buffer[good..good + size_of::<usize>()].copy_from_slice(&3usize.to_ne_bytes());
        assert_eq!(ControlMessages::new(&buffer).count(), 1);
        // Truncated header.
        assert_eq!(ControlMessages::new(&buffer[..good + 5]).count(), 1);
    }

    #[test]
    fn socket_addresses_round_trip_in_network_order() {
        let v4 = Ipv4Addr::new(198, 51, 100, 7);
        let raw = v4.to_raw();
        assert_eq!(raw.sin_addr.s_addr.to_ne_bytes(), [198, 51, 100, 7]);
        assert_eq!(i32::from(raw.sin_family), libc::AF_INET);
        assert_eq!(Ipv4Addr::from_raw(&raw), v4);
        let v6: Ipv6Addr = "2001:db8::7".parse().unwrap();
        assert_eq!(Ipv6Addr::from_raw(&v6.to_raw()), v6);
        assert_eq!(
            Ipv4Addr::from_raw(&zeroed_raw::<Ipv4Addr>()),
            Ipv4Addr::UNSPECIFIED
        );
        assert_eq!(
            Ipv6Addr::from_raw(&zeroed_raw::<Ipv6Addr>()),
            Ipv6Addr::UNSPECIFIED
        );
    }

    #[test]
    fn socket_addresses_with_ports_round_trip_through_storage() {
        for text in ["198.51.100.7:4500", "[2001:db8::7]:4501"] {
            let addr: SocketAddr = text.parse().unwrap();
            let raw = addr.to_raw();
            assert_eq!(SocketAddr::from_raw(&raw), addr);
        }
        let v6: SocketAddr = "[2001:db8::7]:4500".parse().unwrap();
        let raw = v6.to_raw();
        assert_eq!(i32::from(raw.ss_family), libc::AF_INET6);
        assert_eq!(
            SocketAddr::from_raw(&zeroed_raw::<SocketAddr>()),
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
        );
    }

    #[test]
    fn truncated_datagrams_drop_out_of_a_batch() {
        let mut storage = [[0u8; 4]; 4];
        for (i, buf) in storage.iter_mut().enumerate() {
            buf.fill(i as u8 + 1);
        }
        let mut received = [4usize, 4, 2, 4];
        let mut bufs: Vec<_> = storage.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        // Datagrams 0 and 2 were too long.
        let kept = drop_truncated(&mut bufs, &mut received, 4, 0b0101, |len| *len);
        drop(bufs);
        assert_eq!(kept, 2);
        assert_eq!(&received[..2], &[4, 4]);
        assert_eq!(storage[0], [2; 4]);
        assert_eq!(storage[1], [4; 4]);
        let mut bufs: Vec<_> = storage.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        assert_eq!(
            drop_truncated(&mut bufs, &mut received, 3, 0, |len| *len),
            3
        );
    }
}
