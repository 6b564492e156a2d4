//! UDP segmentation and receive offload for the ESP-in-UDP socket.
//!
//! With `UDP_SEGMENT` one `sendmsg` hands the kernel up to [`MAX_SEGMENTS`] datagrams of one
//! size (the last may be shorter) to one destination: one route lookup and one trip down the
//! stack instead of one per datagram; the kernel (or the NIC) cuts them apart as late as it
//! can, and on veth not at all. With `UDP_GRO` on the receiving socket, such a train is read
//! back whole with one `recvmsg`, its segment size in a control message, and the kernel's GRO
//! merges datagrams of one flow that arrived apart. `UDP_SEGMENT` exists since Linux 4.18
//! ([`segmentation_supported`] asks), `UDP_GRO` since 5.0 ([`enable_gro`] fails before); a
//! kernel that refuses a train later is told apart by its error ([`is_unsupported`]).

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};

use socket2::{MsgHdr, SockAddr, SockRef};

use crate::fd::{int_option, set_int_option};
use crate::msg::{self, ControlMessages};

/// Datagrams per `UDP_SEGMENT` send: the kernel's limit was 64 before Linux 6.9 (128 since).
pub const MAX_SEGMENTS: usize = 64;

/// Payload bytes per `UDP_SEGMENT` send: the IPv4 total length of 65,535 less the IPv4 and
/// UDP headers, which the IPv6 limit (payload length 65,535 less the UDP header) exceeds.
pub const MAX_PAYLOAD: usize = 65_535 - 20 - 8;

/// Asks the kernel to hand this socket GRO trains whole (`UDP_GRO`), each with its segment
/// size; see [`recv`]. A kernel without it answers `ENOPROTOOPT`.
pub fn enable_gro<S: AsFd>(socket: &S) -> io::Result<()> {
    set_int_option(socket.as_fd().as_raw_fd(), libc::SOL_UDP, libc::UDP_GRO, 1)
}

/// Whether the kernel knows `UDP_SEGMENT` (Linux 4.18): one that does not would ignore the
/// control message and send the whole payload as one datagram, so ask before the first train.
pub fn segmentation_supported<S: AsFd>(socket: &S) -> bool {
    int_option(socket.as_fd().as_raw_fd(), libc::SOL_UDP, libc::UDP_SEGMENT).is_ok()
}

/// Sends `payload` to `dst` as datagrams of `segment` bytes (the last one may be shorter) with
/// one `sendmsg` and `UDP_SEGMENT`. `payload` must hold at most [`MAX_SEGMENTS`] segments and
/// [`MAX_PAYLOAD`] bytes, and `segment` plus the headers must fit the route's MTU; otherwise
/// the kernel answers `EINVAL`. Returns the bytes sent.
pub fn send_segments<S: AsFd>(
    socket: &S,
    dst: SocketAddr,
    payload: &[u8],
    segment: usize,
) -> io::Result<usize> {
    let segment = u16::try_from(segment)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment over 65535 bytes"))?;
    let control = msg::control_message(libc::SOL_UDP, libc::UDP_SEGMENT, &segment.to_ne_bytes());
    let dst = SockAddr::from(dst);
    let bufs = [IoSlice::new(payload)];
    let message = MsgHdr::new()
        .with_addr(&dst)
        .with_buffers(&bufs)
        .with_control(&control);
    SockRef::from(socket).sendmsg(&message, 0)
}

/// Whether a send or option error means the kernel or the outgoing device cannot do UDP
/// offloads at all (so asking again is pointless), rather than that this one send was wrong.
/// `EIO` is the kernel's answer when the device has no checksum offload.
pub fn is_unsupported(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EIO | libc::ENOPROTOOPT | libc::EOPNOTSUPP | libc::ENOSYS)
    )
}

/// One receive: a datagram, or a GRO train of datagrams of `segment` bytes each (the last may
/// be shorter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes written to the buffer.
    pub len: usize,
    pub src: SocketAddr,
    /// The segment size of a train; `None` for a lone datagram.
    pub segment: Option<usize>,
    /// The train or datagram was longer than the buffer: the last datagram in it is cut.
    pub truncated: bool,
}

impl Received {
    /// The datagrams in `buf[..len]`, without a cut-off last one.
    pub fn datagrams<'a>(&self, buf: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        let data = &buf[..self.len.min(buf.len())];
        let size = self.segment.unwrap_or(data.len()).max(1);
        let whole = if self.truncated {
            data.len() / size * size
        } else {
            data.len()
        };
        data[..whole].chunks(size)
    }
}

/// Room for the `UDP_GRO` control message (an int) with headers and alignment to spare.
const CONTROL_LEN: usize = 64;

/// Receives one datagram or GRO train into `buf` (64 KiB holds any train).
pub fn recv<S: AsFd>(socket: &S, buf: &mut [u8]) -> io::Result<Received> {
    // The walker reads the control messages byte by byte, so the buffer needs no alignment.
    let mut control = [0u8; CONTROL_LEN];
    let datagram = msg::recvmsg::<SocketAddr>(
        socket.as_fd().as_raw_fd(),
        &mut [IoSliceMut::new(buf)],
        &mut control,
    )?;
    Ok(Received {
        len: datagram.len,
        src: datagram.src,
        segment: gro_segment(&control[..datagram.control_len]),
        truncated: datagram.truncated,
    })
}

/// The segment size in a receive's control messages, if it was a GRO train.
fn gro_segment(control: &[u8]) -> Option<usize> {
    ControlMessages::new(control)
        .find(|m| m.level == libc::SOL_UDP && m.kind == libc::UDP_GRO)
        .and_then(|m| {
            let bytes: [u8; 4] = m.data.get(..4)?.try_into().ok()?;
            usize::try_from(i32::from_ne_bytes(bytes)).ok()
        })
        .filter(|&size| size > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::control_message;

    #[test]
    fn gro_segment_read_from_its_control_message() {
        let mut control = control_message(libc::IPPROTO_IPV6, libc::IPV6_TCLASS, &[0, 0, 0, 0]);
        control.extend(control_message(
            libc::SOL_UDP,
            libc::UDP_GRO,
            &1400i32.to_ne_bytes(),
        ));
        assert_eq!(gro_segment(&control), Some(1400));
        assert_eq!(
            gro_segment(&control_message(
                libc::SOL_UDP,
                libc::UDP_GRO,
                &0i32.to_ne_bytes()
            )),
            None
        );
        assert_eq!(
            gro_segment(&control_message(libc::SOL_UDP, libc::UDP_GRO, &[1])),
            None
        );
        assert_eq!(gro_segment(&[]), None);
    }

    #[test]
    fn a_train_splits_into_its_datagrams() {
        let buf: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let src: SocketAddr = "[2001:db8::1]:4500".parse().unwrap();
        let train = Received {
            len: 1000,
            src,
            segment: Some(300),
            truncated: false,
        };
        let sizes: Vec<usize> = train.datagrams(&buf).map(<[u8]>::len).collect();
        assert_eq!(sizes, [300, 300, 300, 100]);
        assert_eq!(train.datagrams(&buf).nth(1).unwrap(), &buf[300..600]);
        // A cut train loses only its partial tail.
        let cut = Received {
            truncated: true,
            ..train
        };
        assert_eq!(cut.datagrams(&buf).count(), 3);
        let lone = Received {
            segment: None,
            ..train
        };
        assert_eq!(lone.datagrams(&buf).count(), 1);
        let empty = Received { len: 0, ..lone };
        assert_eq!(empty.datagrams(&buf).count(), 0);
    }

    #[test]
    fn the_probe_tells_a_known_option_from_an_unknown_one() {
        // An unbound socket: nothing reaches the network.
        let socket =
            socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::DGRAM, None).unwrap();
        assert!(segmentation_supported(&socket));
        let unknown = int_option(socket.as_raw_fd(), libc::SOL_UDP, 9999).unwrap_err();
        assert_eq!(unknown.raw_os_error(), Some(libc::ENOPROTOOPT));
        assert!(is_unsupported(&unknown));
    }

    #[test]
    fn unsupported_errors_are_told_apart_from_bad_sends() {
        assert!(is_unsupported(&io::Error::from_raw_os_error(libc::EIO)));
        assert!(is_unsupported(&io::Error::from_raw_os_error(
            libc::ENOPROTOOPT
        )));
        assert!(!is_unsupported(&io::Error::from_raw_os_error(libc::EINVAL)));
        assert!(!is_unsupported(&io::Error::from_raw_os_error(
            libc::EMSGSIZE
        )));
    }
}
