//! Kernel-facing tests, each in a network namespace of its own.
//!
//! Every test runs on a fresh thread that unshares its network namespace; devices, sockets and
//! netlink connections made there belong to that namespace, which the kernel frees when the
//! thread and its descriptors are gone, also after a panic. Needs root (CAP_NET_ADMIN and
//! CAP_SYS_ADMIN). Documentation prefixes only.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use sys::netlink::{Change, Family, Netlink, Route, RouteKind, Rule, TABLE_MAIN, watch_changes};
use sys::raw::{BATCH_SIZE, Icmpv6Socket, RawIpv6Socket, Received, Transmit};
use sys::sysctl::{self, SysctlJournal};
use sys::tun::TunDevice;

mod common;

use common::{in_netns, ipv4_udp, net, recv_in_batches, recv_soon, send_in_batches};

const TABLE: u32 = 6464;
const PROTOCOL: u8 = 250;

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// `lo`'s index, with `addrs` added to it.
async fn loopback_with(netlink: &Netlink, addrs: &[&str]) -> u32 {
    let lo = netlink.link_index("lo").await.unwrap().unwrap();
    for addr in addrs {
        netlink.address_add(lo, net(addr)).await.unwrap();
    }
    lo
}

/// A UDP datagram in IPv4 as a tunnel carries it, from 198.51.100.1 to 203.0.113.1.
fn inner(payload: &[u8]) -> Vec<u8> {
    ipv4_udp(
        Ipv4Addr::new(198, 51, 100, 1),
        Ipv4Addr::new(203, 0, 113, 1),
        7,
        payload,
    )
}

/// A TUN device, up, with the given addresses.
async fn tun_with(netlink: &Netlink, name: &str, addrs: &[&str]) -> TunDevice {
    let tun = TunDevice::create(name).unwrap();
    netlink.link_set_up(tun.index()).await.unwrap();
    for addr in addrs {
        netlink.address_add(tun.index(), net(addr)).await.unwrap();
    }
    tun
}

fn route(dst: &str, kind: RouteKind) -> Route {
    Route {
        dst: net(dst),
        table: TABLE,
        protocol: PROTOCOL,
        metric: None,
        oif: None,
        gateway: None,
        kind,
        mtu: None,
        prefsrc: None,
        realm: None,
    }
}

/// IPv6 header with the given traffic class and next header, then `rest`.
fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, traffic_class: u8, next: u8, rest: &[u8]) -> Vec<u8> {
    let first = 0x6000_0000u32 | (u32::from(traffic_class) << 20);
    let mut packet = first.to_be_bytes().to_vec();
    packet.extend_from_slice(&(rest.len() as u16).to_be_bytes());
    packet.push(next);
    packet.push(64);
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    packet.extend_from_slice(rest);
    packet
}

#[test]
fn tun_is_exclusive_and_vanishes_on_drop() {
    in_netns(|netlink| async move {
        let tun = TunDevice::create("v6gt0").unwrap();
        assert_eq!(tun.name(), "v6gt0");
        assert_eq!(
            netlink.link_index("v6gt0").await.unwrap(),
            Some(tun.index())
        );
        let again = TunDevice::create("v6gt0").unwrap_err();
        assert_eq!(again.raw_os_error(), Some(libc::EEXIST), "{again}");
        assert!(again.to_string().contains("v6gt0"), "{again}");
        // Names of other kinds of interfaces are refused as well.
        assert_eq!(
            TunDevice::create("lo").unwrap_err().raw_os_error(),
            Some(libc::EEXIST)
        );
        drop(tun);
        assert_eq!(netlink.link_index("v6gt0").await.unwrap(), None);
    });
}

#[test]
fn tun_carries_packets_both_ways() {
    in_netns(|netlink| async move {
        let tun = tun_with(&netlink, "v6gt1", &["198.51.100.1/24"]).await;
        tun.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 2048];
        // Drain whatever the kernel sends on link-up (IPv6 router solicitations, MLD).
        while tun.read(&mut buf).is_ok() {}

        // Host -> TUN: a datagram to a neighbour on the TUN's subnet comes out of `read`.
        let sender = UdpSocket::bind("198.51.100.1:0").unwrap();
        sender.send_to(b"outbound", "198.51.100.7:9").unwrap();
        let len = loop {
            let len = recv_soon(|| tun.read(&mut buf)).await.unwrap();
            if buf[0] >> 4 == 4 {
                break len;
            }
        };
        let packet = &buf[..len];
        assert_eq!(&packet[16..20], &[198, 51, 100, 7]);
        assert_eq!(packet[9], 17);
        assert_eq!(&packet[len - 8..], b"outbound");

        // TUN -> host: a packet written into the device reaches a local socket.
        let receiver = UdpSocket::bind("198.51.100.1:5555").unwrap();
        receiver.set_nonblocking(true).unwrap();
        let packet = ipv4_udp(
            Ipv4Addr::new(198, 51, 100, 9),
            Ipv4Addr::new(198, 51, 100, 1),
            5555,
            b"inbound",
        );
        assert_eq!(tun.write(&packet).unwrap(), packet.len());
        let mut data = [0u8; 64];
        let (n, from) = recv_soon(|| receiver.recv_from(&mut data)).await.unwrap();
        assert_eq!(&data[..n], b"inbound");
        assert_eq!(from, "198.51.100.9:40000".parse::<SocketAddr>().unwrap());
    });
}

#[test]
fn links_and_addresses() {
    in_netns(|netlink| async move {
        let tun = TunDevice::create("v6gt2").unwrap();
        let index = tun.index();
        assert!(!netlink.link_is_up(index).await.unwrap());
        netlink.link_set_up(index).await.unwrap();
        assert!(netlink.link_is_up(index).await.unwrap());
        netlink.link_set_mtu(index, 1460).await.unwrap();
        assert_eq!(netlink.link_mtu(index).await.unwrap(), 1460);
        let error = netlink.link_set_mtu(index, 10).await.unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EINVAL));
        assert!(
            error.to_string().starts_with("set MTU 10 on link #"),
            "{error}"
        );

        netlink
            .address_add(index, net("2001:db8:1::1/64"))
            .await
            .unwrap();
        netlink
            .address_add(index, net("198.51.100.1/24"))
            .await
            .unwrap();
        // Repeating an add is harmless.
        netlink
            .address_add(index, net("2001:db8:1::1/64"))
            .await
            .unwrap();
        // NODAD: the address is bindable at once, not tentative.
        UdpSocket::bind("[2001:db8:1::1]:0").unwrap();
        let addrs = netlink.addresses(index).await.unwrap();
        assert!(addrs.contains(&net("2001:db8:1::1/64")), "{addrs:?}");
        assert!(addrs.contains(&net("198.51.100.1/24")), "{addrs:?}");

        netlink
            .address_del(index, net("2001:db8:1::1/64"))
            .await
            .unwrap();
        netlink
            .address_del(index, net("2001:db8:1::1/64"))
            .await
            .unwrap();
        let addrs = netlink.addresses(index).await.unwrap();
        assert!(!addrs.contains(&net("2001:db8:1::1/64")), "{addrs:?}");
        netlink.link_set_down(index).await.unwrap();
        assert!(!netlink.link_is_up(index).await.unwrap());

        let missing = netlink.link_mtu(9999).await.unwrap_err();
        assert_eq!(missing.raw_os_error(), Some(libc::ENODEV));
    });
}

#[test]
fn routes_add_replace_list_delete() {
    in_netns(|netlink| async move {
        let tun = tun_with(&netlink, "v6gt3", &["2001:db8:1::1/64", "198.51.100.1/24"]).await;
        for (dst, gateway) in [
            ("2001:db8:2::2/128", "2001:db8:1::2"),
            ("203.0.113.0/24", "198.51.100.2"),
        ] {
            let mut route = route(dst, RouteKind::Unicast);
            route.oif = Some(tun.index());
            route.gateway = Some(gateway.parse().unwrap());
            route.metric = Some(100);
            netlink.route_add(&route).await.unwrap();
            let error = netlink.route_add(&route).await.unwrap_err();
            assert_eq!(error.raw_os_error(), Some(libc::EEXIST), "{error}");
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("add route {dst} via")),
                "{error}"
            );
            netlink.route_replace(&route).await.unwrap();

            let family = Family::of(route.dst.addr());
            let listed = netlink
                .routes(family, Some(TABLE), Some(PROTOCOL))
                .await
                .unwrap();
            assert_eq!(listed, vec![route.clone()]);
            // Other tables and protocols are filtered out.
            assert!(
                netlink
                    .routes(family, Some(TABLE), Some(PROTOCOL + 1))
                    .await
                    .unwrap()
                    .is_empty()
            );
            let main = netlink
                .routes(family, Some(TABLE_MAIN), None)
                .await
                .unwrap();
            assert!(main.iter().all(|r| r.table == TABLE_MAIN) && !main.is_empty());

            netlink.route_del(&route).await.unwrap();
            netlink.route_del(&route).await.unwrap();
            assert!(
                netlink
                    .routes(family, Some(TABLE), None)
                    .await
                    .unwrap()
                    .is_empty()
            );
        }

        // A one-byte table id goes in the header and still round-trips.
        let mut small = route("2001:db8:3::/48", RouteKind::Blackhole);
        small.table = 100;
        small.metric = Some(1024);
        netlink.route_add(&small).await.unwrap();
        assert_eq!(
            netlink.routes(Family::V6, Some(100), None).await.unwrap(),
            vec![small.clone()]
        );

        let mixed = Route {
            gateway: Some("198.51.100.2".parse().unwrap()),
            ..route("2001:db8:4::/48", RouteKind::Unicast)
        };
        assert!(matches!(
            netlink.route_add(&mixed).await,
            Err(sys::SysError::Invalid { .. })
        ));
    });
}

/// Crash reconciliation: whatever a dump reports can be deleted with exactly that value.
#[test]
fn dumped_routes_delete_cleanly() {
    in_netns(|netlink| async move {
        let tun = tun_with(&netlink, "v6gt7", &["2001:db8:1::1/64", "198.51.100.1/24"]).await;
        let mut installed = Vec::new();
        for (dst, kind) in [
            ("2001:db8:2::/48", RouteKind::Blackhole),
            ("2001:db8:3::/48", RouteKind::Unreachable),
            ("::/0", RouteKind::Unicast),
            ("203.0.113.0/24", RouteKind::Blackhole),
            ("0.0.0.0/0", RouteKind::Unicast),
            ("198.18.0.0/15", RouteKind::Unicast),
        ] {
            let mut route = route(dst, kind);
            if kind == RouteKind::Unicast {
                route.oif = Some(tun.index());
            }
            if dst == "198.18.0.0/15" {
                route.gateway = Some("198.51.100.2".parse().unwrap());
                route.metric = Some(7);
            }
            netlink.route_add(&route).await.unwrap();
            installed.push(route);
        }
        // Someone else's route in the same table must survive.
        let mut foreign = route("2001:db8:4::/48", RouteKind::Blackhole);
        foreign.protocol = PROTOCOL + 1;
        netlink.route_add(&foreign).await.unwrap();

        for family in [Family::V4, Family::V6] {
            let ours = netlink
                .routes(family, Some(TABLE), Some(PROTOCOL))
                .await
                .unwrap();
            let expected = installed
                .iter()
                .filter(|r| Family::of(r.dst.addr()) == family)
                .count();
            assert_eq!(ours.len(), expected, "{ours:?}");
            for route in &ours {
                netlink.route_del(route).await.unwrap();
            }
            assert!(
                netlink
                    .routes(family, Some(TABLE), Some(PROTOCOL))
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
        let left = netlink.routes(Family::V6, Some(TABLE), None).await.unwrap();
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(left[0].dst, foreign.dst);
    });
}

#[test]
fn route_get_reports_path_and_reject_kinds() {
    in_netns(|netlink| async move {
        let tun = tun_with(&netlink, "v6gt4", &["2001:db8:1::1/64", "198.51.100.1/24"]).await;
        let index = tun.index();
        let mut via = route("2001:db8:9::/48", RouteKind::Unicast);
        via.table = TABLE_MAIN;
        via.gateway = Some("2001:db8:1::2".parse().unwrap());
        via.oif = Some(index);
        netlink.route_add(&via).await.unwrap();
        for (dst, kind) in [
            ("2001:db8:2::/48", RouteKind::Blackhole),
            ("2001:db8:3::/48", RouteKind::Unreachable),
            ("2001:db8:4::/48", RouteKind::Prohibit),
            ("203.0.113.0/25", RouteKind::Blackhole),
            ("203.0.113.128/25", RouteKind::Unreachable),
        ] {
            let mut reject = route(dst, kind);
            reject.table = TABLE_MAIN;
            netlink.route_add(&reject).await.unwrap();
        }

        let lookup = netlink
            .route_get("2001:db8:9::5".parse().unwrap(), None)
            .await
            .unwrap();
        assert_eq!(lookup.kind, RouteKind::Unicast);
        assert_eq!(lookup.oif, Some(index));
        assert_eq!(lookup.gateway, Some("2001:db8:1::2".parse().unwrap()));
        assert_eq!(lookup.prefsrc, Some("2001:db8:1::1".parse().unwrap()));
        assert_eq!(lookup.table, TABLE_MAIN);

        let lookup = netlink
            .route_get("198.51.100.7".parse().unwrap(), None)
            .await
            .unwrap();
        assert_eq!(
            (lookup.kind, lookup.oif, lookup.gateway, lookup.prefsrc),
            (
                RouteKind::Unicast,
                Some(index),
                None,
                Some("198.51.100.1".parse().unwrap())
            )
        );

        let local = netlink
            .route_get("2001:db8:1::1".parse().unwrap(), None)
            .await
            .unwrap();
        assert_eq!(local.kind, RouteKind::Local);

        for (dst, kind) in [
            ("2001:db8:2::1", RouteKind::Blackhole),
            ("2001:db8:3::1", RouteKind::Unreachable),
            ("2001:db8:4::1", RouteKind::Prohibit),
            ("2001:db8:ff::1", RouteKind::Unreachable),
            ("203.0.113.1", RouteKind::Blackhole),
            ("203.0.113.200", RouteKind::Unreachable),
            ("198.18.0.1", RouteKind::Unreachable),
        ] {
            let lookup = netlink.route_get(dst.parse().unwrap(), None).await.unwrap();
            assert_eq!(lookup.kind, kind, "{dst}");
            assert_eq!((lookup.oif, lookup.table), (None, 0), "{dst}");
        }
    });
}

#[test]
fn rules_with_inverted_fwmark_steer_lookups() {
    in_netns(|netlink| async move {
        let tun = tun_with(&netlink, "v6gt5", &["2001:db8:1::1/64"]).await;
        let mut default = route("::/0", RouteKind::Unicast);
        default.oif = Some(tun.index());
        netlink.route_add(&default).await.unwrap();

        // wg-quick's pair: unmarked traffic uses TABLE, main keeps its specific routes.
        let unmarked = Rule {
            family: Family::V6,
            priority: 1000,
            table: TABLE,
            fwmark: Some(0x64),
            fwmask: None,
            invert: true,
            suppress_prefixlen: None,
            from: None,
            to: None,
            iif: None,
        };
        let main_specific = Rule {
            family: Family::V6,
            priority: 999,
            table: TABLE_MAIN,
            fwmark: None,
            fwmask: None,
            invert: false,
            suppress_prefixlen: Some(0),
            from: None,
            to: None,
            iif: None,
        };
        let masked = Rule {
            family: Family::V6,
            priority: 1001,
            table: TABLE,
            fwmark: Some(0x100),
            fwmask: Some(0xff00),
            invert: false,
            suppress_prefixlen: None,
            from: None,
            to: None,
            iif: None,
        };
        // A policy rule by source, destination and incoming device (`[[rule]]`).
        let selected = Rule {
            from: Some("2001:db8:1::5/128".parse().unwrap()),
            to: Some("2001:db8:99::/48".parse().unwrap()),
            iif: Some("lan0".into()),
            ..Rule::lookup(Family::V6, 1002, TABLE)
        };
        for rule in [&unmarked, &main_specific, &masked, &selected] {
            netlink.rule_add(rule).await.unwrap();
        }
        let error = netlink.rule_add(&unmarked).await.unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EEXIST), "{error}");
        assert_eq!(
            error.to_string(),
            "add ipv6 rule priority 1000 not fwmark 0x64 table 6464: File exists (os error 17)"
        );

        let rules = netlink.rules(Family::V6).await.unwrap();
        for rule in [&unmarked, &main_specific, &masked, &selected] {
            assert!(rules.contains(rule), "{rule} missing from {rules:?}");
        }
        // Defaults are reported too (local at 0, main at 32766).
        assert!(
            rules
                .iter()
                .any(|r| r.priority == 32766 && r.table == TABLE_MAIN)
        );
        assert!(
            netlink
                .rules(Family::V4)
                .await
                .unwrap()
                .iter()
                .all(|r| r.family == Family::V4)
        );

        let dst = IpAddr::from(v6("2001:db8:77::1"));
        let unmarked_lookup = netlink.route_get(dst, None).await.unwrap();
        assert_eq!(
            (unmarked_lookup.table, unmarked_lookup.oif),
            (TABLE, Some(tun.index()))
        );
        let marked_lookup = netlink.route_get(dst, Some(0x64)).await.unwrap();
        assert_eq!(
            (marked_lookup.kind, marked_lookup.table),
            (RouteKind::Unreachable, 0)
        );

        for rule in [&unmarked, &main_specific, &masked, &selected] {
            netlink.rule_del(rule).await.unwrap();
            netlink.rule_del(rule).await.unwrap();
        }
        let rules = netlink.rules(Family::V6).await.unwrap();
        assert!(rules.iter().all(|r| r.table != TABLE), "{rules:?}");
        assert_eq!(netlink.route_get(dst, None).await.unwrap().table, 0);
    });
}

#[test]
fn watch_changes_sees_routes_links_and_addresses() {
    in_netns(|netlink| async move {
        let mut changes = watch_changes().unwrap();
        let tun = TunDevice::create("v6gt6").unwrap();
        let index = tun.index();
        netlink.link_set_up(index).await.unwrap();
        netlink
            .address_add(index, net("2001:db8:1::1/64"))
            .await
            .unwrap();
        let mut blackhole = route("2001:db8:2::/48", RouteKind::Blackhole);
        netlink.route_add(&blackhole).await.unwrap();
        netlink.route_del(&blackhole).await.unwrap();
        blackhole.dst = net("203.0.113.0/24");
        netlink.route_add(&blackhole).await.unwrap();

        let wanted = [
            Change::Link {
                index,
                removed: false,
            },
            Change::Address {
                family: Family::V6,
                index,
                removed: false,
            },
            Change::Route {
                family: Family::V6,
                table: TABLE,
                removed: false,
            },
            Change::Route {
                family: Family::V6,
                table: TABLE,
                removed: true,
            },
            Change::Route {
                family: Family::V4,
                table: TABLE,
                removed: false,
            },
        ];
        let mut seen = Vec::new();
        while !wanted.iter().all(|change| seen.contains(change)) {
            let change = changes.recv().await.expect("watch task ended");
            assert_ne!(change, Change::Resync);
            seen.push(change);
        }
        drop(tun);
        loop {
            let change = changes.recv().await.expect("watch task ended");
            if change
                == (Change::Link {
                    index,
                    removed: true,
                })
            {
                break;
            }
        }
    });
}

/// Raw socket round trip over loopback: plain, with traffic class, and with an RFC 2473
/// encapsulation limit destination option.
#[test]
fn raw_socket_sends_and_receives_ipv4_in_ipv6_with_metadata() {
    in_netns(|netlink| async move {
        let lo = loopback_with(&netlink, &["2001:db8::1/128", "2001:db8::2/128"]).await;
        let (local, remote) = (v6("2001:db8::1"), v6("2001:db8::2"));

        let socket = RawIpv6Socket::open(4).unwrap();
        assert_eq!(socket.protocol(), 4);
        assert!(socket.recv_buffer_size().unwrap() >= sys::raw::BUFFER_SIZE);
        assert!(socket.send_buffer_size().unwrap() >= sys::raw::BUFFER_SIZE);
        socket.set_mark(0x64).unwrap();
        let mut buf = [0u8; 2048];
        assert_eq!(
            socket.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );

        let inner = inner(b"tunnelled");
        let plain = ipv6(local, remote, 0xb8, 4, &inner);
        assert_eq!(socket.send_to(&plain, remote).unwrap(), plain.len());
        let received = recv_soon(|| socket.recv(&mut buf)).await.unwrap();
        assert_eq!(&buf[..received.len], &inner[..]);
        assert_eq!(
            (received.src, received.dst, received.traffic_class),
            (local, remote, 0xb8)
        );
        assert_eq!(received.ifindex, lo);
        assert_eq!(received.encap_limit, None);

        // Destination options: next header 4, length 0, encap limit 4, PadN(1).
        let mut with_option = vec![4, 0, 0x04, 0x01, 4, 0x01, 0x01, 0x00];
        with_option.extend_from_slice(&inner);
        let limited = ipv6(remote, local, 0, 60, &with_option);
        socket.send_to(&limited, local).unwrap();
        let received = recv_soon(|| socket.recv(&mut buf)).await.unwrap();
        assert_eq!(&buf[..received.len], &inner[..]);
        assert_eq!((received.src, received.dst), (remote, local));
        assert_eq!(received.encap_limit, Some(4));

        // A buffer too small for the datagram is an error, not a silent truncation.
        socket.send_to(&plain, remote).unwrap();
        let error = recv_soon(|| socket.recv(&mut buf[..16])).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");

        // Bound to one endpoint, the socket ignores traffic to the other.
        let bound = RawIpv6Socket::open(4).unwrap();
        bound.bind(local).unwrap();
        socket.send_to(&plain, remote).unwrap();
        socket.send_to(&limited, local).unwrap();
        let received = recv_soon(|| bound.recv(&mut buf)).await.unwrap();
        assert_eq!(received.dst, local);
        assert_eq!(
            bound.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    });
}

#[test]
fn raw_socket_batches_keep_order_and_metadata() {
    in_netns(|netlink| async move {
        loopback_with(&netlink, &["2001:db8::1/128", "2001:db8::2/128"]).await;
        let (local, remote) = (v6("2001:db8::1"), v6("2001:db8::2"));
        let socket = RawIpv6Socket::open(4).unwrap();

        // More than one batch's worth; every fifth carries an encapsulation limit.
        let count = BATCH_SIZE + 8;
        let packets: Vec<(Vec<u8>, Vec<u8>, Ipv6Addr)> = (0..count)
            .map(|i| {
                let inner = inner(&vec![i as u8; 10 + i]);
                let (src, dst) = if i % 2 == 0 {
                    (local, remote)
                } else {
                    (remote, local)
                };
                let outer = if i % 5 == 0 {
                    let mut options = vec![4, 0, 0x04, 0x01, i as u8, 0x01, 0x01, 0x00];
                    options.extend_from_slice(&inner);
                    ipv6(src, dst, i as u8, 60, &options)
                } else {
                    ipv6(src, dst, i as u8, 4, &inner)
                };
                (inner, outer, dst)
            })
            .collect();
        let transmits: Vec<Transmit<'_>> = packets
            .iter()
            .map(|(_, outer, dst)| Transmit {
                packet: outer,
                dst: *dst,
            })
            .collect();
        send_in_batches(&transmits, |batch| socket.send_batch(batch));
        recv_in_batches(
            count,
            Received::BLANK,
            |bufs, meta| socket.recv_batch(bufs, meta),
            |meta| meta.len,
            |next, datagram, meta| {
                let (inner, _, dst) = &packets[next];
                assert_eq!(datagram, &inner[..], "packet {next}");
                assert_eq!(meta.dst, *dst, "packet {next}");
                assert_eq!(meta.traffic_class, next as u8, "packet {next}");
                let limit = (next % 5 == 0).then_some(next as u8);
                assert_eq!(meta.encap_limit, limit, "packet {next}");
            },
        )
        .await;
        let mut received = vec![Received::BLANK; BATCH_SIZE];

        // Datagrams too big for their buffer drop out; the others move up in order.
        let small = inner(b"s");
        let big = inner(&[0xbb; 100]);
        for inner in [&big, &small, &big, &small] {
            socket
                .send_to(&ipv6(local, remote, 0, 4, inner), remote)
                .unwrap();
        }
        let mut short = vec![[0u8; 64]; 4];
        let mut bufs: Vec<_> = short.iter_mut().map(|b| io::IoSliceMut::new(b)).collect();
        let mut got = 0;
        while got < 2 {
            let n = recv_soon(|| socket.recv_batch(&mut bufs, &mut received[got..]))
                .await
                .unwrap();
            for meta in &received[got..got + n] {
                assert_eq!(meta.len, small.len());
            }
            got += n;
        }
        drop(bufs);
        assert_eq!(got, 2);
        assert_eq!(&short[0][..small.len()], &small[..]);
        assert_eq!(&short[1][..small.len()], &small[..]);
    });
}

#[test]
fn raw_socket_carries_ipv6_in_ipv6() {
    in_netns(|netlink| async move {
        loopback_with(&netlink, &["2001:db8::1/128"]).await;
        let local = v6("2001:db8::1");
        let socket = RawIpv6Socket::open(41).unwrap();
        let inner = ipv6(v6("2001:db8:a::1"), v6("2001:db8:b::1"), 0, 59, &[]);
        let outer = ipv6(local, local, 0x20, 41, &inner);
        socket.send_to(&outer, local).unwrap();
        let mut buf = [0u8; 256];
        let received = recv_soon(|| socket.recv(&mut buf)).await.unwrap();
        assert_eq!(&buf[..received.len], &inner[..]);
        assert_eq!(received.traffic_class, 0x20);
    });
}

#[test]
fn icmpv6_socket_passes_only_packet_too_big() {
    in_netns(|netlink| async move {
        loopback_with(&netlink, &["2001:db8::1/128"]).await;
        let local = v6("2001:db8::1");
        let filtered = Icmpv6Socket::open().unwrap();

        // An unfiltered ICMPv6 socket sends; the kernel fills in the checksum.
        let sender = socket2::Socket::new(
            socket2::Domain::IPV6,
            socket2::Type::RAW,
            Some(socket2::Protocol::ICMPV6),
        )
        .unwrap();
        let to = socket2::SockAddr::from(std::net::SocketAddrV6::new(local, 0, 0, 0));
        let echo = [128, 0, 0, 0, 0, 1, 0, 1];
        sender.send_to(&echo, &to).unwrap();
        // Packet Too Big, MTU 1280, quoting the start of an IPv6 packet.
        let mut too_big = vec![2, 0, 0, 0, 0, 0, 0x05, 0x00];
        too_big.extend(ipv6(local, v6("2001:db8:5::1"), 0, 4, &[0; 8]));
        sender.send_to(&too_big, &to).unwrap();

        let mut buf = [0u8; 512];
        let received = recv_soon(|| filtered.recv(&mut buf)).await.unwrap();
        assert_eq!(buf[0], 2, "first message passed was type {}", buf[0]);
        assert_eq!(received.len, too_big.len());
        assert_eq!(&buf[4..8], &1280u32.to_be_bytes());
        assert_eq!((received.src, received.dst), (local, local));
        // Neither the echo request nor the kernel's echo reply got through.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            filtered.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    });
}

/// `/proc/sys/net` resolves in the namespace of the thread that opens it: a key of a device
/// that exists only in the test's namespace is readable and writable there and absent from the
/// namespace of the test harness.
#[test]
fn sysctl_journal_in_thread_namespace() {
    let name = format!("v6gs{}", std::process::id() % 100_000);
    let key = format!("net/ipv4/conf/{name}/rp_filter");
    let outside = key.clone();
    in_netns(move |netlink| async move {
        let _tun = tun_with(&netlink, &name, &[]).await;
        let original = sysctl::read(&key).unwrap();
        let changed = if original == "2" { "1" } else { "2" };

        let mut journal = SysctlJournal::new();
        journal.set(&key, changed).unwrap();
        journal.set(&key, "0").unwrap();
        assert_eq!(sysctl::read(&key).unwrap(), "0");
        let accept_ra = format!("net/ipv6/conf/{name}/accept_ra");
        journal.set(&accept_ra, "0").unwrap();
        assert_eq!(
            journal.originals()[0],
            (key.clone(), original.clone()),
            "first-seen value is kept"
        );
        assert_eq!(journal.originals().len(), 2);
        assert!(journal.restore().is_empty());
        assert_eq!(sysctl::read(&key).unwrap(), original);
        assert!(journal.originals().is_empty());

        let error = sysctl::write(&key, "not-a-number").unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EINVAL), "{error}");
    });
    // Back on the harness thread (original namespace): the device's key does not exist.
    let error = sysctl::read(&outside).unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::ENOENT), "{error}");
}

#[test]
fn sysctl_restore_reports_failures_and_continues() {
    in_netns(|netlink| async move {
        let first = tun_with(&netlink, "v6gs-a", &[]).await;
        let second = tun_with(&netlink, "v6gs-b", &[]).await;
        let key_a = "net/ipv4/conf/v6gs-a/rp_filter";
        let key_b = "net/ipv4/conf/v6gs-b/rp_filter";
        let original_b = sysctl::read(key_b).unwrap();
        let mut journal = SysctlJournal::new();
        journal.set(key_a, "2").unwrap();
        journal.set(key_b, "2").unwrap();
        // The first device vanishes: its original cannot be written back.
        drop(first);
        let errors = journal.restore();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].to_string().contains(key_a), "{}", errors[0]);
        assert_eq!(sysctl::read(key_b).unwrap(), original_b);
        drop(second);
    });
}
