//! Uplink watch probes against the kernel: ICMP and ICMPv6 echo sockets bound to one device,
//! with a neighbour in a peer namespace that is also reachable through a second device.
//!
//! ```text
//!   test namespace                          peer namespace (answers pings)
//!   upl0  198.51.100.1/24 2001:db8:1::1/64  ── upl0p 198.51.100.2 2001:db8:1::2 fe80::2
//!         fe80::1/64
//!   alt0  203.0.113.1/24  2001:db8:2::1/64  ── alt0p 203.0.113.2  2001:db8:2::2
//! ```
//!
//! The test namespace routes the neighbour's addresses (and everything else) through `alt0`:
//! host routes in a table a policy rule consults before main, and default routes in main. A
//! probe bound to `upl0` must still go out of `upl0`, and get nothing once `upl0` is down.

use std::io::{self, Read};
use std::net::IpAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use ipnet::IpNet;
use sys::SysError;
use sys::netlink::{Family, Netlink, Route, RouteKind, Rule, TABLE_MAIN};
use sys::ping::{EchoReply, PingKind, PingSocket};
use sys::sysctl;

mod common;

use common::{PeerNetns, net, recv_soon};

const TABLE: u32 = 6466;
const PROTOCOL: u8 = 250;
const WATCHED: &str = "upl0";

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Topology {
    /// Keeps the peer namespace (and the veth pairs into it) alive.
    peer: PeerNetns,
    watched: u32,
}

/// A raw socket in the peer namespace that sees every ICMP message arriving on one of its
/// devices: which way did the echo requests come?
struct RequestTap {
    socket: Socket,
    family: Family,
}

impl RequestTap {
    fn open(peer: &PeerNetns, device: &'static str, family: Family) -> Self {
        let socket = peer.enter(move || {
            let (domain, protocol) = match family {
                Family::V4 => (Domain::IPV4, Protocol::ICMPV4),
                Family::V6 => (Domain::IPV6, Protocol::ICMPV6),
            };
            let socket = Socket::new(domain, Type::RAW.nonblocking(), Some(protocol)).unwrap();
            socket.bind_device(Some(device.as_bytes())).unwrap();
            socket
        });
        Self { socket, family }
    }

    /// Sequence numbers of the echo requests that arrived since the last call.
    fn echo_requests(&self) -> Vec<u16> {
        let mut seqs = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(len) = (&self.socket).read(&mut buf) {
            let (start, request) = match self.family {
                Family::V4 => (usize::from(buf[0] & 0x0f) * 4, 8),
                Family::V6 => (0, 128),
            };
            if len >= start + 8 && buf[start] == request {
                seqs.push(u16::from_be_bytes([buf[start + 6], buf[start + 7]]));
                seqs.dedup();
            }
        }
        seqs
    }
}

async fn topology(netlink: &Netlink) -> Topology {
    // Loose reverse-path filtering whatever the host's default: replies to probes bound to
    // the watched device arrive there although the route back to their source points at alt0.
    sysctl::write("net/ipv4/conf/all/rp_filter", "2").unwrap();
    sysctl::write("net/ipv4/conf/default/rp_filter", "2").unwrap();
    let peer = PeerNetns::new();
    peer.veth(
        WATCHED,
        "upl0p",
        &["198.51.100.2/24", "2001:db8:1::2/64", "fe80::2/64"],
    );
    peer.veth("alt0", "alt0p", &["203.0.113.2/24", "2001:db8:2::2/64"]);
    let mut indexes = Vec::new();
    for (device, addrs) in [
        (
            WATCHED,
            &["198.51.100.1/24", "2001:db8:1::1/64", "fe80::1/64"][..],
        ),
        ("alt0", &["203.0.113.1/24", "2001:db8:2::1/64"][..]),
    ] {
        let index = netlink.link_index(device).await.unwrap().unwrap();
        netlink.link_set_up(index).await.unwrap();
        for a in addrs {
            netlink.address_add(index, net(a)).await.unwrap();
        }
        indexes.push(index);
    }
    let (watched, alt) = (indexes[0], indexes[1]);
    let via_alt = |dst: &str, table: u32, gateway: &str| Route {
        dst: net(dst),
        table,
        protocol: PROTOCOL,
        metric: None,
        oif: Some(alt),
        gateway: Some(addr(gateway)),
        kind: RouteKind::Unicast,
        mtu: None,
        prefsrc: None,
        realm: None,
    };
    for route in [
        via_alt("198.51.100.2/32", TABLE, "203.0.113.2"),
        via_alt("2001:db8:1::2/128", TABLE, "2001:db8:2::2"),
        via_alt("0.0.0.0/0", TABLE_MAIN, "203.0.113.2"),
        via_alt("::/0", TABLE_MAIN, "2001:db8:2::2"),
    ] {
        netlink.route_add(&route).await.unwrap();
    }
    for family in [Family::V4, Family::V6] {
        let rule = Rule {
            family,
            priority: 100,
            table: TABLE,
            fwmark: None,
            fwmask: None,
            invert: false,
            suppress_prefixlen: None,
            from: None,
            to: None,
            iif: None,
        };
        netlink.rule_add(&rule).await.unwrap();
    }
    Topology { peer, watched }
}

/// Sends echoes until one is answered (the first may wait for neighbour resolution) and
/// returns the reply, its payload in `buf`.
async fn ping(socket: &PingSocket, dst: IpAddr, seq: u16, buf: &mut [u8]) -> EchoReply {
    let payload = seq.to_be_bytes().repeat(16);
    for attempt in 0..3 {
        socket
            .send_echo(dst, seq, &payload)
            .unwrap_or_else(|e| panic!("echo {seq} to {dst}: {e}"));
        match recv_soon(|| socket.recv_reply(buf)).await {
            Ok(reply) => {
                assert_eq!(&buf[..reply.payload_len], &payload[..]);
                return reply;
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut && attempt < 2 => {}
            Err(e) => panic!("no echo reply from {dst}: {e}"),
        }
    }
    unreachable!()
}

/// Probes without an answer: either the send fails at once or nothing comes back for a while.
async fn assert_unanswered(socket: &PingSocket, dst: IpAddr) {
    let mut buf = [0u8; 128];
    if let Err(error) = socket.send_echo(dst, 99, b"anyone?") {
        // ENOBUFS: the veth dropped it for want of a peer (real NICs tend to drop silently).
        assert!(
            matches!(
                error.raw_os_error(),
                Some(libc::ENETUNREACH | libc::ENOBUFS)
            ),
            "{error}"
        );
        return;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let result = socket.recv_reply(&mut buf);
    assert!(
        matches!(&result, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
        "expected no reply from {dst}, got {result:?}"
    );
}

/// The watch scenario with whatever kind of socket the namespace allows.
async fn bound_probes_use_the_device(netlink: Netlink, kind: PingKind) {
    let topology = topology(&netlink).await;
    let mut buf = [0u8; 128];
    let targets = [
        (Family::V4, addr("198.51.100.2")),
        (Family::V6, addr("2001:db8:1::2")),
    ];
    let mut bound = Vec::new();
    for (family, target) in targets {
        let on_watched = RequestTap::open(&topology.peer, "upl0p", family);
        let on_alt = RequestTap::open(&topology.peer, "alt0p", family);
        let unbound = PingSocket::open(family, None, None).unwrap();
        assert_eq!((unbound.kind(), unbound.family()), (kind, family));
        let reply = ping(&unbound, target, 1, &mut buf).await;
        assert_eq!((reply.from, reply.seq), (target, 1));
        // Unbound, the routes through alt0 win.
        assert_eq!(
            (on_alt.echo_requests(), on_watched.echo_requests()),
            (vec![1], vec![])
        );

        let socket = PingSocket::open(family, Some(WATCHED), None).unwrap();
        assert_eq!(socket.kind(), kind);
        let reply = ping(&socket, target, 2, &mut buf).await;
        assert_eq!((reply.from, reply.seq), (target, 2));
        // Probes keep working when marked, as the daemon's own packets are.
        socket.set_mark(0x64).unwrap();
        assert_eq!(ping(&socket, target, 3, &mut buf).await.seq, 3);
        // Bound, they left through the watched device only.
        assert_eq!(
            (on_alt.echo_requests(), on_watched.echo_requests()),
            (vec![], vec![2, 3])
        );
        bound.push((socket, target));
    }

    // A link-local neighbour takes its zone from the bound device.
    let link_local = PingSocket::open(Family::V6, Some(WATCHED), None).unwrap();
    let reply = ping(&link_local, addr("fe80::2"), 4, &mut buf).await;
    assert_eq!(reply.from, addr("fe80::2"));

    // Bound to a source address as well.
    let sourced = PingSocket::open(Family::V4, Some(WATCHED), Some(addr("198.51.100.1"))).unwrap();
    assert_eq!(
        ping(&sourced, addr("198.51.100.2"), 5, &mut buf).await.seq,
        5
    );

    // The neighbour's end loses its link, so ours loses carrier: bound probes go unanswered
    // (sent into a dead link, or refused), although alt0 still has routes to everything.
    topology.peer.ip("link set upl0p down");
    for (socket, target) in &bound {
        assert_unanswered(socket, *target).await;
    }

    // Our end taken down: sends fail at once.
    netlink.link_set_down(topology.watched).await.unwrap();
    for (socket, target) in &bound {
        let error = socket.send_echo(*target, 7, b"").unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENETUNREACH), "{error}");
    }
}

/// A fresh namespace's `ping_group_range` is `1 0`, which refuses root too: raw sockets.
#[test]
fn raw_fallback_probes_through_the_bound_device_only() {
    common::in_netns(|netlink| async move {
        assert_eq!(
            sysctl::read("net/ipv4/ping_group_range")
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>(),
            ["1", "0"]
        );
        bound_probes_use_the_device(netlink, PingKind::Raw).await;
    });
}

#[test]
fn datagram_sockets_probe_through_the_bound_device_only() {
    common::in_netns(|netlink| async move {
        sysctl::write("net/ipv4/ping_group_range", "0 2147483647").unwrap();
        bound_probes_use_the_device(netlink, PingKind::Datagram).await;
    });
}

/// A target beyond the gateway: with no route through the bound device, IPv4 assumes it is
/// on-link there and IPv6 refuses; a route through the device in a table the rules reach
/// makes both work, although main's default route points at alt0.
#[test]
fn targets_beyond_the_gateway_need_a_route_through_the_device() {
    common::in_netns(|netlink| async move {
        let topology = topology(&netlink).await;
        let mut buf = [0u8; 128];
        let (far4, far6) = (addr("198.18.0.1"), addr("2001:db8:ff::1"));
        let v4 = PingSocket::open(Family::V4, Some(WATCHED), None).unwrap();
        let v6 = PingSocket::open(Family::V6, Some(WATCHED), None).unwrap();
        // No one on the link answers ARP for it, so the probe goes nowhere.
        v4.send_echo(far4, 1, b"").unwrap();
        assert_unanswered(&v4, far4).await;
        let error = v6.send_echo(far6, 1, b"").unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENETUNREACH), "{error}");

        topology.peer.ip("addr add 198.18.0.1/32 dev lo");
        topology.peer.ip("addr add 2001:db8:ff::1/128 dev lo");
        for (dst, gateway) in [(far4, "198.51.100.2"), (far6, "2001:db8:1::2")] {
            let route = Route {
                dst: IpNet::from(dst),
                table: TABLE,
                protocol: PROTOCOL,
                metric: None,
                oif: Some(topology.watched),
                gateway: Some(addr(gateway)),
                kind: RouteKind::Unicast,
                mtu: None,
                prefsrc: None,
                realm: None,
            };
            netlink.route_add(&route).await.unwrap();
        }
        let on_watched = RequestTap::open(&topology.peer, "upl0p", Family::V4);
        assert_eq!(ping(&v4, far4, 2, &mut buf).await.from, far4);
        assert_eq!(on_watched.echo_requests(), [2]);
        assert_eq!(ping(&v6, far6, 2, &mut buf).await.from, far6);
    });
}

/// Raw sockets see every echo reply of the host: each must report only its own.
#[test]
fn raw_sockets_report_only_their_own_replies() {
    common::in_netns(|netlink| async move {
        let _topology = topology(&netlink).await;
        let target = addr("198.51.100.2");
        let mut buf = [0u8; 128];
        let first = PingSocket::open(Family::V4, Some(WATCHED), None).unwrap();
        let second = PingSocket::open(Family::V4, Some(WATCHED), None).unwrap();
        assert_eq!(
            (first.kind(), second.kind()),
            (PingKind::Raw, PingKind::Raw)
        );
        assert_ne!(first.identifier(), second.identifier());
        assert_eq!(ping(&first, target, 7, &mut buf).await.seq, 7);
        assert_eq!(
            second.recv_reply(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        let reply = ping(&second, target, 8, &mut buf).await;
        assert_eq!(reply.seq, 8);
        assert_eq!(
            first.recv_reply(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );

        // A payload larger than the buffer is reported, not cut short.
        first.send_echo(target, 9, &[0x77; 64]).unwrap();
        let error = recv_soon(|| first.recv_reply(&mut buf[..16]))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
    });
}

#[test]
fn open_refuses_mismatched_source_and_unknown_device() {
    common::in_netns(|_netlink| async move {
        let error = PingSocket::open(Family::V6, None, Some(addr("198.51.100.1"))).unwrap_err();
        assert!(matches!(error, SysError::Invalid { .. }), "{error}");
        let error = PingSocket::open(Family::V4, Some("nosuch0"), None).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENODEV), "{error}");
        assert!(error.to_string().contains("nosuch0"), "{error}");
        assert!(PingSocket::open(Family::V4, Some("bad/name"), None).is_err());
        let socket = PingSocket::open(Family::V4, None, None).unwrap();
        let error = socket.send_echo(addr("2001:db8::1"), 1, b"").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    });
}
