//! Tunnels over an IPv4 underlay, against the kernel: raw IPv4 sockets across a veth pair into
//! a peer namespace, and endpoint pinning with an IPv4 host route and an inverted fwmark rule.
//! Each test runs in a namespace of its own (see `netns.rs`); documentation prefixes only.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use sys::netlink::{Family, Netlink, Route, RouteKind, Rule, TABLE_MAIN};
use sys::raw::{BATCH_SIZE, RawIpv4Socket, RawIpv6Socket, Received4, Transmit4};
use sys::tun::TunDevice;

mod common;

use common::{
    PeerNetns, checksum, in_netns, ipv4_udp, net, recv_in_batches, recv_soon, send_in_batches,
};

const TABLE: u32 = 6465;
const PROTOCOL: u8 = 250;
const MARK: u32 = 0x64;

const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

/// Outer IPv4 header fields a test controls; the rest is fixed.
struct Outer {
    tos: u8,
    id: u16,
    dont_fragment: bool,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    /// Written as given (the kernel must replace it).
    checksum: u16,
    /// Written as given (the kernel must replace it).
    total_len: u16,
}

impl Outer {
    fn ipip(id: u16) -> Self {
        Self {
            tos: 0xb8,
            id,
            dont_fragment: true,
            src: LOCAL,
            dst: REMOTE,
            protocol: 4,
            checksum: 0xdead,
            total_len: 0,
        }
    }

    fn wrap(&self, inner: &[u8]) -> Vec<u8> {
        let flags: u16 = if self.dont_fragment { 0x4000 } else { 0 };
        let mut packet = vec![0x45, self.tos];
        packet.extend_from_slice(&self.total_len.to_be_bytes());
        packet.extend_from_slice(&self.id.to_be_bytes());
        packet.extend_from_slice(&flags.to_be_bytes());
        packet.extend_from_slice(&[64, self.protocol]);
        packet.extend_from_slice(&self.checksum.to_be_bytes());
        packet.extend_from_slice(&self.src.octets());
        packet.extend_from_slice(&self.dst.octets());
        packet.extend_from_slice(inner);
        packet
    }
}

fn inner_packet(payload: &[u8]) -> Vec<u8> {
    ipv4_udp(
        Ipv4Addr::new(203, 0, 113, 1),
        Ipv4Addr::new(198, 18, 0, 1),
        7,
        payload,
    )
}

fn id_of(datagram: &[u8]) -> u16 {
    u16::from_be_bytes([datagram[4], datagram[5]])
}

/// A veth pair `local`/`remote` into `peer`, both ends up, with 198.51.100.1/24 and
/// 2001:db8:1::1/64 here and .2/::2 there. Returns the local index.
async fn link_to_peer(netlink: &Netlink, peer: &PeerNetns, local: &str, remote: &str) -> u32 {
    peer.veth(local, remote, &["198.51.100.2/24", "2001:db8:1::2/64"]);
    let index = netlink.link_index(local).await.unwrap().expect("veth end");
    netlink.link_set_up(index).await.unwrap();
    netlink
        .address_add(index, net("198.51.100.1/24"))
        .await
        .unwrap();
    netlink
        .address_add(index, net("2001:db8:1::1/64"))
        .await
        .unwrap();
    index
}

/// Waits a moment and checks that nothing is queued.
async fn assert_silent<T: std::fmt::Debug>(mut recv: impl FnMut() -> io::Result<T>) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let result = recv();
    assert!(
        matches!(&result, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
        "expected nothing, got {result:?}"
    );
}

#[test]
fn raw_ipv4_socket_carries_ipip_over_veth() {
    in_netns(|netlink| async move {
        let peer = PeerNetns::new();
        link_to_peer(&netlink, &peer, "v4ul0", "v4ul0p").await;
        let peer_index = peer.link_index("v4ul0p");
        let receiver = peer.enter(|| RawIpv4Socket::open(4).unwrap());
        let sender = RawIpv4Socket::open(4).unwrap();
        assert_eq!(sender.protocol(), 4);
        assert!(sender.recv_buffer_size().unwrap() >= sys::raw::BUFFER_SIZE);
        assert!(sender.send_buffer_size().unwrap() >= sys::raw::BUFFER_SIZE);
        sender.set_mark(MARK).unwrap();
        let mut buf = [0u8; 2048];
        assert_eq!(
            receiver.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );

        // Checksum and total length are wrong on purpose: the kernel rewrites both, and keeps
        // the id, TOS and DF we chose.
        let inner = inner_packet(b"over an IPv4 underlay");
        let packet = Outer::ipip(0x1234).wrap(&inner);
        assert_eq!(sender.send_to(&packet, REMOTE).unwrap(), packet.len());
        let received = recv_soon(|| receiver.recv(&mut buf)).await.unwrap();
        assert_eq!(
            received,
            Received4 {
                len: packet.len(),
                src: LOCAL,
                dst: REMOTE,
                ifindex: peer_index,
            }
        );
        let datagram = &buf[..received.len];
        assert_eq!(&datagram[20..], &inner[..], "whole datagram, header first");
        assert_eq!(
            u16::from_be_bytes([datagram[2], datagram[3]]),
            packet.len() as u16
        );
        assert_eq!(checksum(&[&datagram[..20]]), 0, "checksum recomputed");
        assert_eq!(id_of(datagram), 0x1234);
        assert_eq!((datagram[1], datagram[6] & 0x40), (0xb8, 0x40));
        assert_eq!((datagram[8], datagram[9]), (64, 4));

        // Zero source: filled in. Zero id with DF: stays zero. Zero id without DF: filled in
        // (checked over two datagrams, since one id may legitimately come out as zero).
        let mut zeros = Outer::ipip(0);
        zeros.src = Ipv4Addr::UNSPECIFIED;
        sender.send_to(&zeros.wrap(&inner), REMOTE).unwrap();
        let received = recv_soon(|| receiver.recv(&mut buf)).await.unwrap();
        assert_eq!(received.src, LOCAL);
        assert_eq!(&buf[12..16], &LOCAL.octets());
        assert_eq!(id_of(&buf), 0);
        let mut fragmentable = Outer::ipip(0);
        fragmentable.dont_fragment = false;
        let mut ids = Vec::new();
        for _ in 0..2 {
            sender.send_to(&fragmentable.wrap(&inner), REMOTE).unwrap();
            recv_soon(|| receiver.recv(&mut buf)).await.unwrap();
            ids.push(id_of(&buf));
        }
        assert!(ids.iter().any(|&id| id != 0), "{ids:?}");

        // Larger than the link MTU: refused, not fragmented, whatever DF says.
        let big = fragmentable.wrap(&inner_packet(&[0x55; 1500]));
        let error = sender.send_to(&big, REMOTE).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EMSGSIZE), "{error}");

        // A datagram longer than the buffer is an error, not a silent truncation.
        sender.send_to(&packet, REMOTE).unwrap();
        let error = recv_soon(|| receiver.recv(&mut buf[..30]))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
        assert_silent(|| receiver.recv(&mut buf)).await;
    });
}

/// Sockets split traffic by IP version and protocol, and binding filters by destination.
#[test]
fn raw_ipv4_sockets_see_only_their_protocol_and_version() {
    in_netns(|netlink| async move {
        let peer = PeerNetns::new();
        link_to_peer(&netlink, &peer, "v4ul1", "v4ul1p").await;
        peer.ip("addr add 198.51.100.3/24 dev v4ul1p");
        let (ipip, sit, ipip6, bound) = peer.enter(|| {
            let bound = RawIpv4Socket::open(4).unwrap();
            bound.bind(REMOTE).unwrap();
            (
                RawIpv4Socket::open(4).unwrap(),
                RawIpv4Socket::open(41).unwrap(),
                RawIpv6Socket::open(4).unwrap(),
                bound,
            )
        });
        let mut buf = [0u8; 2048];

        // IPv4-in-IPv6 reaches the IPv6 socket for protocol 4, and no IPv4 socket.
        let v6_sender = RawIpv6Socket::open(4).unwrap();
        let (v6_local, v6_remote): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8:1::1".parse().unwrap(),
            "2001:db8:1::2".parse().unwrap(),
        );
        let inner = inner_packet(b"6");
        let mut outer6 = vec![0x60, 0, 0, 0];
        outer6.extend_from_slice(&(inner.len() as u16).to_be_bytes());
        outer6.extend_from_slice(&[4, 64]);
        outer6.extend_from_slice(&v6_local.octets());
        outer6.extend_from_slice(&v6_remote.octets());
        outer6.extend_from_slice(&inner);
        v6_sender.send_to(&outer6, v6_remote).unwrap();
        let received = recv_soon(|| ipip6.recv(&mut buf)).await.unwrap();
        assert_eq!(&buf[..received.len], &inner[..]);
        assert_silent(|| ipip.recv(&mut buf)).await;

        // IPv6-in-IPv4 (protocol 41) reaches only the protocol-41 socket.
        let sender = RawIpv4Socket::open(41).unwrap();
        let mut six_in_four = Outer::ipip(1);
        six_in_four.protocol = 41;
        let sit_packet = six_in_four.wrap(&outer6);
        sender.send_to(&sit_packet, REMOTE).unwrap();
        let received = recv_soon(|| sit.recv(&mut buf)).await.unwrap();
        assert_eq!(&buf[20..received.len], &outer6[..]);
        assert_eq!(buf[9], 41);
        assert_silent(|| ipip.recv(&mut buf)).await;

        // To the peer's second address: the unbound socket sees it, the bound one does not.
        let sender = RawIpv4Socket::open(4).unwrap();
        let other = Ipv4Addr::new(198, 51, 100, 3);
        let mut elsewhere = Outer::ipip(2);
        elsewhere.dst = other;
        sender.send_to(&elsewhere.wrap(&inner), other).unwrap();
        let received = recv_soon(|| ipip.recv(&mut buf)).await.unwrap();
        assert_eq!(received.dst, other);
        assert_silent(|| bound.recv(&mut buf)).await;
        sender
            .send_to(&Outer::ipip(3).wrap(&inner), REMOTE)
            .unwrap();
        let received = recv_soon(|| bound.recv(&mut buf)).await.unwrap();
        assert_eq!((received.dst, id_of(&buf)), (REMOTE, 3));
    });
}

#[test]
fn raw_ipv4_batches_keep_order_and_metadata() {
    in_netns(|netlink| async move {
        let peer = PeerNetns::new();
        link_to_peer(&netlink, &peer, "v4ul2", "v4ul2p").await;
        let receiver = peer.enter(|| RawIpv4Socket::open(4).unwrap());
        let sender = RawIpv4Socket::open(4).unwrap();

        let count = BATCH_SIZE + 8;
        let packets: Vec<Vec<u8>> = (0..count)
            .map(|i| Outer::ipip(100 + i as u16).wrap(&inner_packet(&vec![i as u8; 10 + i])))
            .collect();
        let transmits: Vec<Transmit4<'_>> = packets
            .iter()
            .map(|packet| Transmit4 {
                packet,
                dst: REMOTE,
            })
            .collect();
        send_in_batches(&transmits, |batch| sender.send_batch(batch));
        let blank = Received4 {
            len: 0,
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::UNSPECIFIED,
            ifindex: 0,
        };
        recv_in_batches(
            count,
            blank,
            |bufs, meta| receiver.recv_batch(bufs, meta),
            |meta| meta.len,
            |next, datagram, meta| {
                assert_eq!(id_of(datagram), 100 + next as u16, "datagram {next}");
                assert_eq!(&datagram[20..], &packets[next][20..], "datagram {next}");
                assert_eq!((meta.src, meta.dst), (LOCAL, REMOTE), "datagram {next}");
            },
        )
        .await;
    });
}

/// Pinning an IPv4 tunnel endpoint: unmarked traffic to it follows a /32 in our table out of
/// the underlay device, while the tunnel's own (marked) packets skip that rule and use main.
#[test]
fn ipv4_endpoint_pin_is_skipped_by_marked_lookups() {
    in_netns(|netlink| async move {
        let underlay = TunDevice::create("v4pin0").unwrap();
        let other = TunDevice::create("v4pin1").unwrap();
        for (device, addr) in [(&underlay, "198.51.100.1/24"), (&other, "203.0.113.1/24")] {
            netlink.link_set_up(device.index()).await.unwrap();
            netlink
                .address_add(device.index(), net(addr))
                .await
                .unwrap();
        }
        let default = Route {
            dst: net("0.0.0.0/0"),
            table: TABLE_MAIN,
            protocol: PROTOCOL,
            metric: None,
            oif: Some(other.index()),
            gateway: Some("203.0.113.2".parse().unwrap()),
            kind: RouteKind::Unicast,
            mtu: None,
            prefsrc: None,
            realm: None,
        };
        netlink.route_add(&default).await.unwrap();
        let endpoint: IpAddr = "198.18.0.9".parse().unwrap();
        let pin = Route {
            dst: net("198.18.0.9/32"),
            table: TABLE,
            protocol: PROTOCOL,
            metric: None,
            oif: Some(underlay.index()),
            gateway: Some("198.51.100.254".parse().unwrap()),
            kind: RouteKind::Unicast,
            mtu: None,
            prefsrc: None,
            realm: None,
        };
        netlink.route_add(&pin).await.unwrap();
        let unmarked = Rule {
            family: Family::V4,
            priority: 1000,
            table: TABLE,
            fwmark: Some(MARK),
            fwmask: None,
            invert: true,
            suppress_prefixlen: None,
            from: None,
            to: None,
            iif: None,
        };
        netlink.rule_add(&unmarked).await.unwrap();

        assert_eq!(
            netlink
                .routes(Family::V4, Some(TABLE), Some(PROTOCOL))
                .await
                .unwrap(),
            vec![pin.clone()]
        );
        assert!(netlink.rules(Family::V4).await.unwrap().contains(&unmarked));
        assert!(!netlink.rules(Family::V6).await.unwrap().contains(&Rule {
            family: Family::V6,
            ..unmarked.clone()
        }));

        let lookup = netlink.route_get(endpoint, None).await.unwrap();
        assert_eq!(
            (lookup.kind, lookup.table, lookup.oif, lookup.gateway),
            (
                RouteKind::Unicast,
                TABLE,
                Some(underlay.index()),
                pin.gateway
            )
        );
        assert_eq!(lookup.prefsrc, Some("198.51.100.1".parse().unwrap()));
        let marked = netlink.route_get(endpoint, Some(MARK)).await.unwrap();
        assert_eq!(
            (marked.table, marked.oif, marked.gateway),
            (TABLE_MAIN, Some(other.index()), default.gateway)
        );
        // Another mark is still "not MARK": pinned.
        let other_mark = netlink.route_get(endpoint, Some(MARK + 1)).await.unwrap();
        assert_eq!(other_mark.table, TABLE);
        // Destinations without a pin fall through the rule's table to main.
        let elsewhere = netlink
            .route_get("198.18.0.10".parse().unwrap(), None)
            .await
            .unwrap();
        assert_eq!(
            (elsewhere.table, elsewhere.oif),
            (TABLE_MAIN, Some(other.index()))
        );

        netlink.rule_del(&unmarked).await.unwrap();
        netlink.route_del(&pin).await.unwrap();
        let unpinned = netlink.route_get(endpoint, None).await.unwrap();
        assert_eq!(
            (unpinned.table, unpinned.oif),
            (TABLE_MAIN, Some(other.index()))
        );
        netlink.route_del(&default).await.unwrap();
        assert_eq!(
            netlink.route_get(endpoint, None).await.unwrap().kind,
            RouteKind::Unreachable
        );
    });
}

/// An ICMPv4 message of `kind`/`code` with 8 bytes of rest-of-header and `data`, checksummed.
fn icmp(kind: u8, code: u8, rest: [u8; 4], data: &[u8]) -> Vec<u8> {
    let mut message = vec![kind, code, 0, 0];
    message.extend_from_slice(&rest);
    message.extend_from_slice(data);
    let sum = checksum(&[&message]);
    message[2..4].copy_from_slice(&sum.to_be_bytes());
    message
}

#[test]
fn icmp_filter_passes_only_fragmentation_needed_traffic() {
    in_netns(|netlink| async move {
        let peer = PeerNetns::new();
        link_to_peer(&netlink, &peer, "v4ic0", "v4ic0p").await;
        let listener = RawIpv4Socket::open(1).unwrap();
        listener.pass_only_icmp_types(&[3]).unwrap();
        let sender = peer.enter(|| RawIpv4Socket::open(1).unwrap());
        let outer = |message: &[u8]| {
            Outer {
                protocol: 1,
                src: REMOTE,
                dst: LOCAL,
                ..Outer::ipip(9)
            }
            .wrap(message)
        };
        // An echo request (answered by the kernel, filtered for us), then a Fragmentation
        // Needed quoting one of our IPIP packets with next-hop MTU 1454.
        let echo = icmp(8, 0, [0, 1, 0, 1], b"ping");
        let quoted = &Outer::ipip(7).wrap(&inner_packet(b"x"))[..28];
        let frag_needed = icmp(3, 4, [0, 0, 0x05, 0xae], quoted);
        sender.send_to(&outer(&echo), LOCAL).unwrap();
        sender.send_to(&outer(&frag_needed), LOCAL).unwrap();
        let mut buf = [0u8; 2048];
        let received = recv_soon(|| listener.recv(&mut buf)).await.unwrap();
        let datagram = &buf[..received.len];
        assert_eq!(received.src, REMOTE);
        // The whole datagram, IPv4 header first, and it is the frag-needed one.
        assert_eq!(datagram[9], 1);
        assert_eq!(&datagram[20..], &frag_needed[..]);
        assert_silent(|| listener.recv(&mut buf)).await;
    });
}
