//! TUN devices with virtio-net headers, offloads and several queues, each test in a network
//! namespace of its own (see `netns.rs` for how namespaces are made and freed).
//!
//! The TCP test routes a local connection through the device to a peer address and plays the
//! peer by rewriting addresses: what the client sends to P comes back from F to the server's
//! own address, and the server's answers to F come back from P. So the kernel's own TCP talks
//! to itself through the device, with TSO super-packets in both directions, and every
//! super-packet read is also written back as one. Documentation prefixes only.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use sys::SysError;
use sys::tun::{Offloads, TunDevice, TunOptions, VNET_HDR_LEN};

mod common;

use common::{checksum, in_netns, ipv4_udp, net, recv_soon};

const NEEDS_CSUM: u8 = 1;
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
const GSO_UDP_L4: u8 = 5;
const MTU: usize = 1500;

/// The three addresses of the loop: ours (on the device), the peer the client dials, and the
/// one the server sees the client come from.
#[derive(Clone, Copy)]
struct Addrs {
    local: IpAddr,
    peer: IpAddr,
    fake: IpAddr,
    prefix: u8,
}

const V4: Addrs = Addrs {
    local: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
    peer: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
    fake: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3)),
    prefix: 24,
};

const V6: Addrs = Addrs {
    local: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0, 1)),
    peer: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0, 2)),
    fake: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0, 3)),
    prefix: 64,
};

fn octets(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// [`V4`] in another subnet, for a second device in the same namespace.
const V4_OTHER: Addrs = Addrs {
    local: IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1)),
    peer: IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2)),
    fake: IpAddr::V4(Ipv4Addr::new(198, 18, 1, 3)),
    prefix: 24,
};

/// The virtio-net header fields a test looks at.
#[derive(Debug, Clone, Copy, Default)]
struct Vnet {
    flags: u8,
    gso_type: u8,
    gso_size: u16,
    csum_start: u16,
    csum_offset: u16,
}

impl Vnet {
    fn read(frame: &[u8]) -> Self {
        let le = |at: usize| u16::from_le_bytes([frame[at], frame[at + 1]]);
        Self {
            flags: frame[0],
            gso_type: frame[1],
            gso_size: le(4),
            csum_start: le(6),
            csum_offset: le(8),
        }
    }
}

/// One's-complement sum of a folded (not inverted) sum after 16-bit words `old` became `new`.
fn replace_words(mut sum: u16, old: &[u8], new: &[u8]) -> u16 {
    let add = |a: u16, b: u16| {
        let s = u32::from(a) + u32::from(b);
        ((s & 0xffff) + (s >> 16)) as u16
    };
    for (o, n) in old.chunks(2).zip(new.chunks(2)) {
        sum = add(sum, !u16::from_be_bytes([o[0], o[1]]));
        sum = add(sum, u16::from_be_bytes([n[0], n[1]]));
    }
    sum
}

#[derive(Debug, Default)]
struct LoopStats {
    frames: usize,
    super_packets: usize,
    largest: usize,
    elapsed: Duration,
}

/// Rewrites one TCP frame read from the device so that it comes back as the peer's, and
/// writes it back whole (a super-packet stays one). Other frames (router solicitations, MLD)
/// are dropped.
fn reflect(tun: &TunDevice, frame: &mut [u8], addrs: Addrs, stats: &mut LoopStats) {
    let header_len = tun.vnet_hdr_len();
    let vnet = if header_len > 0 {
        Vnet::read(frame)
    } else {
        Vnet::default()
    };
    let packet = &mut frame[header_len..];
    let (v6, l3, protocol, addr_at) = match packet[0] >> 4 {
        4 => (false, usize::from(packet[0] & 0x0f) * 4, packet[9], 12..20),
        6 => (true, 40, packet[6], 8..40),
        _ => return,
    };
    if protocol != 6 || v6 != addrs.local.is_ipv6() {
        return;
    }
    let old = packet[addr_at.clone()].to_vec();
    let half = old.len() / 2;
    let (src, dst) = (&old[..half], &old[half..]);
    let new_src = if src == octets(addrs.local) && dst == octets(addrs.peer) {
        addrs.fake
    } else if src == octets(addrs.local) && dst == octets(addrs.fake) {
        addrs.peer
    } else {
        return;
    };
    let mut new = octets(new_src);
    new.extend_from_slice(&octets(addrs.local));
    packet[addr_at].copy_from_slice(&new);
    let at = l3 + 16;
    let field = u16::from_be_bytes([packet[at], packet[at + 1]]);
    let field = if vnet.flags & NEEDS_CSUM != 0 {
        // Partial: the field holds the pseudo-header sum itself.
        assert_eq!(usize::from(vnet.csum_start), l3);
        assert_eq!(vnet.csum_offset, 16);
        replace_words(field, &old, &new)
    } else {
        !replace_words(!field, &old, &new)
    };
    packet[at..at + 2].copy_from_slice(&field.to_be_bytes());
    if !v6 {
        packet[10..12].fill(0);
        let sum = checksum(&[&packet[..l3]]);
        packet[10..12].copy_from_slice(&sum.to_be_bytes());
    }
    stats.frames += 1;
    if vnet.gso_type != GSO_NONE {
        let expected = if v6 { GSO_TCPV6 } else { GSO_TCPV4 };
        assert_eq!(vnet.gso_type & 0x7f, expected);
        assert!(vnet.gso_size > 0);
        stats.super_packets += 1;
        stats.largest = stats.largest.max(packet.len());
    }
    let len = frame.len();
    assert_eq!(
        tun.write(frame)
            .expect("the kernel takes its own frame back"),
        len
    );
}

/// Waits up to 50 ms for the device to have a frame (`poll`), so the loop reacts at once.
#[allow(unsafe_code)]
fn wait_readable(tun: &TunDevice) {
    let mut fds = [libc::pollfd {
        fd: tun.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: poll writes `revents` of one pollfd that lives on our stack for the call.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 1, 50) };
    assert!(rc >= 0, "poll: {}", io::Error::last_os_error());
}

fn pattern(at: usize) -> u8 {
    (at % 251) as u8
}

/// Sends `total` bytes from a client to a server in this namespace through the device and
/// returns what the loop saw.
fn tcp_through(tun: &TunDevice, addrs: Addrs, total: usize) -> LoopStats {
    let listener = TcpListener::bind(SocketAddr::new(addrs.local, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || -> io::Result<(usize, IpAddr)> {
        let (mut stream, from) = listener.accept()?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut buf = vec![0u8; 1 << 16];
        let mut received = 0;
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Ok((received, from.ip()));
            }
            for (i, byte) in buf[..n].iter().enumerate() {
                assert_eq!(*byte, pattern(received + i), "byte {}", received + i);
            }
            received += n;
        }
    });
    let client = std::thread::spawn(move || -> io::Result<()> {
        let target = SocketAddr::new(addrs.peer, port);
        let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        let data: Vec<u8> = (0..total).map(pattern).collect();
        for chunk in data.chunks(1 << 16) {
            stream.write_all(chunk)?;
        }
        stream.shutdown(std::net::Shutdown::Write)
    });

    let mut stats = LoopStats::default();
    let mut frame = vec![0u8; VNET_HDR_LEN + 65536];
    let start = Instant::now();
    let deadline = start + Duration::from_secs(15);
    while !server.is_finished() {
        assert!(Instant::now() < deadline, "transfer stalled: {stats:?}");
        match tun.read(&mut frame) {
            Ok(n) => reflect(tun, &mut frame[..n], addrs, &mut stats),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_readable(tun),
            Err(e) => panic!("read: {e}"),
        }
    }
    stats.elapsed = start.elapsed();
    client.join().unwrap().expect("client sent everything");
    let (received, from) = server.join().unwrap().expect("server read to the end");
    assert_eq!(received, total);
    assert_eq!(from, addrs.fake);
    stats
}

async fn offloaded_tun(netlink: &sys::netlink::Netlink, name: &str, addrs: &[Addrs]) -> TunDevice {
    let options = TunOptions {
        vnet_hdr: true,
        offloads: Offloads::ALL,
        multi_queue: false,
    };
    tun_up(netlink, name, options, addrs).await
}

async fn tun_up(
    netlink: &sys::netlink::Netlink,
    name: &str,
    options: TunOptions,
    addrs: &[Addrs],
) -> TunDevice {
    let tun = TunDevice::create_with(name, options).unwrap();
    netlink.link_set_mtu(tun.index(), MTU as u32).await.unwrap();
    netlink.link_set_up(tun.index()).await.unwrap();
    for a in addrs {
        let addr = net(&format!("{}/{}", a.local, a.prefix));
        netlink.address_add(tun.index(), addr).await.unwrap();
    }
    tun.set_nonblocking(true).unwrap();
    tun
}

#[test]
fn tcp_through_an_offloaded_tun_moves_super_packets_both_ways() {
    in_netns(|netlink| async move {
        let tun = offloaded_tun(&netlink, "v6go0", &[V4, V6]).await;
        assert_eq!(tun.vnet_hdr_len(), VNET_HDR_LEN);
        for addrs in [V4, V6] {
            let stats = tcp_through(&tun, addrs, 8 << 20);
            // Reads larger than the MTU, announced as TSO, and written back whole.
            assert!(stats.super_packets > 0, "{stats:?}");
            assert!(stats.largest > MTU, "{stats:?}");
            // 8 MiB in MTU-sized packets would be some 5800 frames each way.
            assert!(stats.frames < 5800, "{stats:?}");
        }
    });
}

#[test]
fn offloads_cut_the_system_calls_of_a_transfer_tenfold() {
    in_netns(|netlink| async move {
        let plain = tun_up(&netlink, "v6go5", TunOptions::default(), &[V4_OTHER]).await;
        let offloaded = offloaded_tun(&netlink, "v6go6", &[V4]).await;
        let total = 32 << 20;
        let before = tcp_through(&plain, V4_OTHER, total);
        let after = tcp_through(&offloaded, V4, total);
        assert_eq!(before.super_packets, 0);
        // Each frame is one read and one write of the loop.
        assert!(after.frames * 10 < before.frames, "{before:?} {after:?}");
        let rate = |s: &LoopStats| total as f64 * 8.0 / s.elapsed.as_secs_f64() / 1e9;
        eprintln!(
            "32 MiB through a TUN loop: plain {} frames {:.2} Gbit/s; offloaded {} frames {:.2} Gbit/s",
            before.frames,
            rate(&before),
            after.frames,
            rate(&after)
        );
    });
}

/// UDP GSO on a socket (`UDP_SEGMENT`, linux/udp.h): one send, several datagrams.
const UDP_SEGMENT: libc::c_int = 103;

#[allow(unsafe_code)]
fn set_udp_segment(socket: &UdpSocket, size: u16) {
    let value = libc::c_int::from(size);
    // SAFETY: setsockopt reads one int from a local that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            UDP_SEGMENT,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "UDP_SEGMENT: {}", io::Error::last_os_error());
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let found: (u32, u32) = (
        parts.next().and_then(|p| p.parse().ok()).unwrap_or(0),
        parts.next().and_then(|p| p.parse().ok()).unwrap_or(0),
    );
    found >= (major, minor)
}

#[test]
fn uso_is_granted_where_the_kernel_has_it_and_carries_udp_super_packets() {
    in_netns(|netlink| async move {
        let tun = offloaded_tun(&netlink, "v6go1", &[V4]).await;
        let granted = tun.offloads();
        assert!(granted.csum && granted.tso4 && granted.tso6, "{granted:?}");
        assert_eq!(granted.uso4, granted.uso6);
        assert_eq!(granted.uso4, kernel_at_least(6, 2), "{granted:?}");
        if !granted.uso4 {
            return;
        }
        let mut frame = vec![0u8; VNET_HDR_LEN + 65536];
        while tun.read(&mut frame).is_ok() {}
        let socket = UdpSocket::bind(SocketAddr::new(V4.local, 0)).unwrap();
        set_udp_segment(&socket, 1000);
        let payload = vec![7u8; 4500];
        socket
            .send_to(&payload, SocketAddr::new(V4.peer, 9))
            .unwrap();
        let (vnet, len) = loop {
            let n = recv_soon(|| tun.read(&mut frame)).await.unwrap();
            if frame[VNET_HDR_LEN] >> 4 == 4 {
                break (Vnet::read(&frame), n - VNET_HDR_LEN);
            }
        };
        assert_eq!(
            (vnet.gso_type, vnet.gso_size),
            (GSO_UDP_L4, 1000),
            "{vnet:?}"
        );
        assert_eq!((vnet.csum_start, vnet.csum_offset), (20, 6));
        assert_eq!(len, 20 + 8 + 4500);
    });
}

#[test]
fn a_plain_vnet_header_announces_finished_packets() {
    in_netns(|netlink| async move {
        let options = TunOptions {
            vnet_hdr: true,
            ..TunOptions::default()
        };
        let tun = TunDevice::create_with("v6go2", options).unwrap();
        assert_eq!(tun.offloads(), Offloads::default());
        netlink.link_set_up(tun.index()).await.unwrap();
        netlink
            .address_add(tun.index(), net("198.51.100.1/24"))
            .await
            .unwrap();
        tun.set_nonblocking(true).unwrap();
        let mut frame = [0u8; 4096];
        while tun.read(&mut frame).is_ok() {}

        // Without offloads the kernel finishes checksums and segments itself.
        let sender = UdpSocket::bind("198.51.100.1:0").unwrap();
        sender.send_to(&[1u8; 3000], "198.51.100.7:9").unwrap();
        let n = loop {
            let n = recv_soon(|| tun.read(&mut frame)).await.unwrap();
            if frame[VNET_HDR_LEN] >> 4 == 4 {
                break n;
            }
        };
        let vnet = Vnet::read(&frame);
        assert_eq!((vnet.flags, vnet.gso_type), (0, GSO_NONE), "{vnet:?}");
        assert!(n - VNET_HDR_LEN <= MTU);
        assert_eq!(
            &frame[VNET_HDR_LEN + 16..VNET_HDR_LEN + 20],
            &[198, 51, 100, 7]
        );

        // write_packet puts the empty header in front; a bare packet would be misread.
        let receiver = UdpSocket::bind("198.51.100.1:5555").unwrap();
        receiver.set_nonblocking(true).unwrap();
        let packet = ipv4_udp(
            Ipv4Addr::new(198, 51, 100, 9),
            Ipv4Addr::new(198, 51, 100, 1),
            5555,
            b"inbound",
        );
        assert_eq!(tun.write_packet(&packet).unwrap(), packet.len());
        let mut data = [0u8; 64];
        let (n, _) = recv_soon(|| receiver.recv_from(&mut data)).await.unwrap();
        assert_eq!(&data[..n], b"inbound");

        // A header the kernel cannot mean (GSO type 2 is unassigned) is refused by the write
        // itself.
        let mut bogus = vec![0u8; VNET_HDR_LEN];
        bogus[1] = 2;
        bogus[4..6].copy_from_slice(&100u16.to_le_bytes());
        bogus.extend_from_slice(&packet);
        let error = tun.write(&bogus).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EINVAL), "{error}");
    });
}

#[test]
fn options_the_kernel_could_not_honour_are_refused_first() {
    in_netns(|netlink| async move {
        let no_header = TunOptions {
            vnet_hdr: false,
            offloads: Offloads::ALL,
            multi_queue: false,
        };
        let error = TunDevice::create_with("v6go3", no_header).unwrap_err();
        assert!(matches!(error, SysError::Invalid { .. }), "{error}");
        assert!(error.to_string().contains("vnet_hdr"), "{error}");
        let tso_without_csum = TunOptions {
            vnet_hdr: true,
            offloads: Offloads {
                tso4: true,
                ..Offloads::default()
            },
            multi_queue: false,
        };
        let error = TunDevice::create_with("v6go3", tso_without_csum).unwrap_err();
        assert!(error.to_string().contains("csum"), "{error}");
        assert_eq!(netlink.link_index("v6go3").await.unwrap(), None);

        let single = TunDevice::create("v6go3").unwrap();
        assert_eq!(single.options(), TunOptions::default());
        assert_eq!(single.vnet_hdr_len(), 0);
        let error = single.clone_queue().unwrap_err();
        assert!(error.to_string().contains("multi_queue"), "{error}");
    });
}

#[test]
fn queues_share_one_device_until_the_last_closes() {
    in_netns(|netlink| async move {
        let options = TunOptions {
            vnet_hdr: true,
            offloads: Offloads::ALL,
            multi_queue: true,
        };
        let first = TunDevice::create_with("v6go4", options).unwrap();
        let second = first.clone_queue().unwrap();
        let third = second.clone_queue().unwrap();
        assert_eq!(second.index(), first.index());
        assert_eq!(third.options(), first.options());
        assert_ne!(second.as_raw_fd(), first.as_raw_fd());
        // Creating is still exclusive, whatever queues exist.
        let again = TunDevice::create_with("v6go4", options).unwrap_err();
        assert_eq!(
            again.io().and_then(io::Error::raw_os_error),
            Some(libc::EEXIST)
        );

        drop(first);
        drop(third);
        assert_eq!(
            netlink.link_index("v6go4").await.unwrap(),
            Some(second.index())
        );
        // The remaining queue still carries packets.
        netlink.link_set_up(second.index()).await.unwrap();
        netlink
            .address_add(second.index(), net("198.51.100.1/24"))
            .await
            .unwrap();
        let receiver = UdpSocket::bind("198.51.100.1:5556").unwrap();
        receiver.set_nonblocking(true).unwrap();
        let packet = ipv4_udp(
            Ipv4Addr::new(198, 51, 100, 9),
            Ipv4Addr::new(198, 51, 100, 1),
            5556,
            b"queue",
        );
        assert_eq!(second.write_packet(&packet).unwrap(), packet.len());
        let mut data = [0u8; 16];
        let (n, _) = recv_soon(|| receiver.recv_from(&mut data)).await.unwrap();
        assert_eq!(&data[..n], b"queue");
        drop(second);
        assert_eq!(netlink.link_index("v6go4").await.unwrap(), None);
    });
}
