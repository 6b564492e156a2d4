use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use netlink_packet_route::route::{RouteAttribute, RouteScope, RouteVia};
use netlink_packet_route::rule::{RuleAction, RuleAttribute};

use super::message::{Unencodable, route_address};
use super::*;

/// Encodes like the connection does and decodes like the kernel's reply would be.
fn through_the_wire(message: RouteNetlinkMessage) -> RouteNetlinkMessage {
    let bytes = serialized(message);
    match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes)
        .expect("own encoding decodes")
        .payload
    {
        NetlinkPayload::InnerMessage(inner) => inner,
        other => panic!("unexpected payload {other:?}"),
    }
}

/// Serialized into a junk-filled buffer, so a field left unwritten shows up.
fn serialized(message: RouteNetlinkMessage) -> Vec<u8> {
    let mut message = NetlinkMessage::from(message);
    message.finalize();
    let mut bytes = vec![0xa5; message.buffer_len()];
    message.serialize(&mut bytes);
    bytes
}

/// A route message as the kernel would answer it, parsed back.
fn read_back(message: RouteMessage) -> Option<Route> {
    let RouteNetlinkMessage::NewRoute(decoded) =
        through_the_wire(RouteNetlinkMessage::NewRoute(message))
    else {
        panic!("not a route");
    };
    parse_route(&decoded)
}

fn any_net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u32>(), 0..=32u8)
            .prop_map(|(a, len)| IpNet::new(Ipv4Addr::from(a).into(), len).unwrap()),
        (any::<u128>(), 0..=128u8)
            .prop_map(|(a, len)| IpNet::new(Ipv6Addr::from(a).into(), len).unwrap()),
    ]
}

fn any_route() -> impl Strategy<Value = Route> {
    (
        any_net().prop_map(|net| net.trunc()),
        any::<u32>(),
        any::<u8>(),
        proptest::option::of(any::<u32>()),
        proptest::option::of(1..u32::MAX),
        proptest::option::of(any::<u128>()),
        proptest::option::of(any::<u128>()),
        prop_oneof![
            Just(RouteKind::Unicast),
            Just(RouteKind::Blackhole),
            Just(RouteKind::Unreachable),
            Just(RouteKind::Prohibit),
            Just(RouteKind::Throw),
        ],
    )
        .prop_map(
            |(dst, table, protocol, metric, oif, gateway, prefsrc, kind)| {
                let unicast = kind == RouteKind::Unicast;
                let of_family = |bits: u128| match dst {
                    IpNet::V4(_) => IpAddr::from(Ipv4Addr::from(bits as u32)),
                    IpNet::V6(_) => IpAddr::from(Ipv6Addr::from(bits)),
                };
                let gateway = gateway.filter(|_| unicast).map(of_family);
                Route {
                    dst,
                    table,
                    protocol,
                    metric,
                    oif: oif.filter(|_| unicast),
                    gateway,
                    kind,
                    // Any value the kernel takes as an MTU metric, on some of the routes.
                    mtu: metric.filter(|_| unicast).map(|m| 68 + m % 65_000),
                    prefsrc: prefsrc.filter(|_| unicast).map(of_family),
                    realm: None,
                }
            },
        )
}

fn any_rule() -> impl Strategy<Value = Rule> {
    (
        any::<bool>(),
        any::<u32>(),
        any::<u32>(),
        proptest::option::of(any::<u32>()),
        proptest::option::of(1..u32::MAX),
        any::<bool>(),
        proptest::option::of(0..=128u32),
        (
            proptest::option::of(any_net()),
            proptest::option::of(any_net()),
            proptest::option::of("[a-z][a-z0-9]{0,14}"),
        ),
    )
        .prop_map(
            |(v6, priority, table, fwmark, fwmask, invert, suppress_prefixlen, (from, to, iif))| {
                let family = if v6 { Family::V6 } else { Family::V4 };
                // Selectors are of the rule's family, as the kernel insists.
                let of_family = |net: Option<IpNet>| {
                    net.filter(|n| Family::of(n.addr()) == family)
                        .map(|n| n.trunc())
                };
                Rule {
                    family,
                    priority,
                    table,
                    fwmark,
                    fwmask,
                    invert,
                    suppress_prefixlen,
                    from: of_family(from),
                    to: of_family(to),
                    iif,
                }
            },
        )
}

fn encode(route: &Route, delete: bool) -> RouteMessage {
    match route_message(route, delete) {
        Ok(message) => message,
        Err(Unencodable(reason)) => panic!("{route}: {reason}"),
    }
}

proptest! {
    #[test]
    fn route_round_trips(route in any_route()) {
        prop_assert_eq!(read_back(encode(&route, false)), Some(route));
    }

    #[test]
    fn rule_round_trips(rule in any_rule()) {
        let RouteNetlinkMessage::NewRule(decoded) =
            through_the_wire(RouteNetlinkMessage::NewRule(rule_message(&rule)))
        else {
            panic!("not a rule");
        };
        prop_assert_eq!(parse_rule(&decoded), Some(rule));
    }

    #[test]
    fn address_round_trips(net in any_net(), index in 1..u32::MAX) {
        let message = address_message(index, net, true);
        let RouteNetlinkMessage::NewAddress(decoded) =
            through_the_wire(RouteNetlinkMessage::NewAddress(message))
        else {
            panic!("not an address");
        };
        prop_assert_eq!(decoded.header.index, index);
        prop_assert_eq!(parse_address(&decoded), Some(net));
    }

    #[test]
    fn notification_decoding_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let changes = watch::decode(&bytes);
        prop_assert!(changes.len() <= bytes.len() / 16 + 1);
    }
}

#[test]
fn route_message_carries_table_beyond_one_byte() {
    let mut route = Route {
        dst: "2001:db8::/32".parse().unwrap(),
        table: 6464,
        protocol: 250,
        metric: None,
        oif: None,
        gateway: None,
        kind: RouteKind::Unicast,
        mtu: None,
        prefsrc: None,
        realm: None,
    };
    let message = encode(&route, false);
    assert_eq!(message.header.table, TABLE_COMPAT);
    assert!(message.attributes.contains(&RouteAttribute::Table(6464)));
    // A device route has link scope; deletes match any scope.
    assert_eq!(message.header.scope, RouteScope::Link);
    assert_eq!(encode(&route, true).header.scope, RouteScope::NoWhere);
    route.table = TABLE_MAIN;
    assert_eq!(u32::from(encode(&route, false).header.table), TABLE_MAIN);
}

#[test]
fn rule_normalises_kernel_defaults() {
    let mut message = rule_message(&Rule {
        fwmark: Some(1),
        ..Rule::lookup(Family::V4, 5, 7)
    });
    // What the kernel reports for "fwmark 1" and "no suppression".
    message.attributes.push(RuleAttribute::FwMask(u32::MAX));
    message
        .attributes
        .push(RuleAttribute::SuppressPrefixLen(u32::MAX));
    let rule = parse_rule(&message).unwrap();
    assert_eq!((rule.fwmark, rule.fwmask), (Some(1), None));
    assert_eq!(rule.suppress_prefixlen, None);
    message.header.action = RuleAction::Goto;
    assert_eq!(parse_rule(&message), None);
}

#[test]
fn reject_lookups_map_from_errnos() {
    let kind = |errno| unreachable_lookup(&io::Error::from_raw_os_error(errno)).map(|l| l.kind);
    assert_eq!(kind(libc::EINVAL), Some(RouteKind::Blackhole));
    assert_eq!(kind(libc::EHOSTUNREACH), Some(RouteKind::Unreachable));
    assert_eq!(kind(libc::ENETUNREACH), Some(RouteKind::Unreachable));
    assert_eq!(kind(libc::EACCES), Some(RouteKind::Prohibit));
    assert_eq!(kind(libc::EPERM), None);
    assert_eq!(kind(libc::ENODEV), None);
}

#[test]
fn notifications_decode_to_changes() {
    let mut route = RouteMessage::default();
    route.header.address_family = AddressFamily::Inet6;
    route.attributes.push(RouteAttribute::Table(6464));
    let mut link = LinkMessage::default();
    link.header.index = 7;
    let mut address = AddressMessage::default();
    address.header.family = AddressFamily::Inet;
    address.header.index = 7;
    let mut datagram = serialized(RouteNetlinkMessage::NewRoute(route.clone()));
    datagram.extend(serialized(RouteNetlinkMessage::DelRoute(route)));
    datagram.extend(serialized(RouteNetlinkMessage::DelLink(link)));
    datagram.extend(serialized(RouteNetlinkMessage::NewAddress(address)));
    assert_eq!(
        watch::decode(&datagram),
        vec![
            Change::Route {
                family: Family::V6,
                table: 6464,
                removed: false
            },
            Change::Route {
                family: Family::V6,
                table: 6464,
                removed: true
            },
            Change::Link {
                index: 7,
                removed: true
            },
            Change::Address {
                family: Family::V4,
                index: 7,
                removed: false
            },
        ]
    );
    // A cut-off second message still yields the first, then a resync.
    let first = serialized(RouteNetlinkMessage::DelLink(LinkMessage::default()));
    let mut cut = first.clone();
    cut.extend_from_slice(&first[..first.len() - 3]);
    assert_eq!(
        watch::decode(&cut),
        vec![
            Change::Link {
                index: 0,
                removed: true
            },
            Change::Resync
        ]
    );
    assert_eq!(watch::decode(&[]), vec![]);
}

#[test]
fn outside_a_runtime_is_an_error_not_a_panic() {
    let error = Netlink::new().unwrap_err();
    assert!(
        error.to_string().starts_with("start netlink connection: "),
        "{error}"
    );
    assert!(watch_changes().is_err());
}

#[test]
fn futures_can_move_between_threads() {
    fn assert_send<T: Send>(_: &T) {}
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _context = runtime.enter();
    let netlink = Netlink::new().unwrap();
    assert_send(&netlink.route_get(IpAddr::from(Ipv6Addr::LOCALHOST), None));
    assert_send(&netlink.routes(Family::V6, None, None));
    assert_send(&netlink.address_add(1, "2001:db8::1/64".parse().unwrap()));
    assert_send(&netlink.rules(Family::V4));
}

#[test]
fn route_display_reads_like_ip_route() {
    let route = Route {
        dst: "2001:db8::2/128".parse().unwrap(),
        table: 6464,
        protocol: 250,
        metric: Some(10),
        oif: Some(3),
        gateway: Some("2001:db8::1".parse().unwrap()),
        kind: RouteKind::Unicast,
        mtu: None,
        prefsrc: None,
        realm: None,
    };
    assert_eq!(
        route.to_string(),
        "2001:db8::2/128 via 2001:db8::1 dev #3 table 6464 proto 250 metric 10"
    );
    let blackhole = Route {
        kind: RouteKind::Blackhole,
        mtu: None,
        prefsrc: None,
        realm: None,
        gateway: None,
        oif: None,
        metric: None,
        ..route
    };
    assert_eq!(
        blackhole.to_string(),
        "blackhole 2001:db8::2/128 table 6464 proto 250"
    );
}

/// A tunnel's inner IPv4 route with an IPv6 next hop, as the kernel path installs it.
fn inner_route_via(table: u32, gateway: &str) -> Route {
    Route {
        dst: "203.0.113.0/24".parse().unwrap(),
        table,
        protocol: 118,
        metric: Some(40),
        oif: Some(5),
        gateway: Some(gateway.parse().unwrap()),
        kind: RouteKind::Unicast,
        mtu: Some(1460),
        prefsrc: None,
        realm: None,
    }
}

#[test]
fn an_ipv4_route_goes_via_an_ipv6_next_hop() {
    let route = inner_route_via(254, "fe80::1");
    let message = encode(&route, false);
    // RFC 5549 style next hop: RTA_VIA, since RTA_GATEWAY must match the route's family.
    assert!(
        message
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Via(RouteVia::Inet6(_))))
    );
    assert!(
        !message
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Gateway(_)))
    );
    assert_eq!(read_back(message), Some(route.clone()));
    assert_eq!(
        route.to_string(),
        "203.0.113.0/24 via fe80::1 dev #5 table 254 proto 118 metric 40 mtu 1460"
    );
    let v6_via_v4 = Route {
        dst: "2001:db8::/32".parse().unwrap(),
        gateway: Some("198.51.100.1".parse().unwrap()),
        ..route
    };
    assert!(route_message(&v6_via_v4, false).is_err());
}

#[test]
fn a_preferred_source_is_sent_read_back_and_shown() {
    let route = Route {
        prefsrc: Some("198.51.100.254".parse().unwrap()),
        ..inner_route_via(6464, "2001:db8::1")
    };
    let message = encode(&route, false);
    assert!(message.attributes.iter().any(|a| matches!(
        a,
        RouteAttribute::PrefSource(address) if route_address(address) == route.prefsrc
    )));
    assert_eq!(read_back(message), Some(route.clone()));
    assert_eq!(
        route.to_string(),
        "203.0.113.0/24 via 2001:db8::1 dev #5 table 6464 proto 118 metric 40 \
         src 198.51.100.254 mtu 1460"
    );
    // A delete matches the route whatever its source.
    assert!(
        !encode(&route, true)
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::PrefSource(_)))
    );
    let other_family = Route {
        prefsrc: Some("2001:db8::2".parse().unwrap()),
        ..route
    };
    assert!(route_message(&other_family, false).is_err());
}

#[test]
fn a_lookup_reads_an_ipv6_next_hop_and_the_realm() {
    // What `ip route get` answers for a kernel-path route: `via inet6`, and the realm.
    let message = encode(
        &Route {
            realm: Some(0xf600),
            ..inner_route_via(6464, "2001:db8::1")
        },
        false,
    );
    let lookup = parse_lookup(&message);
    assert_eq!(lookup.gateway, Some("2001:db8::1".parse().unwrap()));
    assert_eq!(lookup.realm, Some(0xf600));
    assert_eq!(lookup.oif, Some(5));
}

#[test]
fn a_realm_is_sent_read_back_and_shown() {
    let route = Route {
        realm: Some(0xf600),
        ..inner_route_via(6464, "2001:db8::1")
    };
    let message = encode(&route, false);
    assert!(message.attributes.iter().any(|a| matches!(
        a,
        RouteAttribute::Realm(r) if r.destination == 0xf600 && r.source == 0
    )));
    assert_eq!(read_back(message), Some(route.clone()));
    assert!(
        route.to_string().ends_with(" mtu 1460 realm 62976"),
        "{route}"
    );
    assert!(
        !encode(&route, true)
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Realm(_)))
    );
    let zero = Route {
        realm: Some(0),
        ..route.clone()
    };
    assert!(route_message(&zero, false).is_err());
    let v6 = Route {
        dst: "2001:db8:1::/48".parse().unwrap(),
        ..route
    };
    assert!(route_message(&v6, false).is_err());
}
