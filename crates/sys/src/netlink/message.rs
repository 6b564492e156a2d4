//! Messages to and from the kernel: built from and read into the module's types.

use std::fmt;
use std::io;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use netlink_packet_route::address::{AddressMessage, AddressScope};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteMetric,
    RouteProtocol, RouteRealm, RouteScope, RouteVia,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};
use rtnetlink::packet_core::DefaultNla;

use super::{Family, Route, RouteKind, RouteLookup, Rule, TABLE_COMPAT};
use crate::error::SysError;

/// What the kernel answers when the thing to delete does not exist.
pub(super) fn is_gone(io: &io::Error) -> bool {
    matches!(
        io.raw_os_error(),
        Some(libc::ESRCH | libc::ENOENT | libc::EADDRNOTAVAIL)
    )
}

/// Maps route-lookup errnos that describe the matched route, not a failed request.
pub(super) fn unreachable_lookup(io: &io::Error) -> Option<RouteLookup> {
    let kind = match io.raw_os_error()? {
        libc::EINVAL => RouteKind::Blackhole,
        libc::EHOSTUNREACH | libc::ENETUNREACH => RouteKind::Unreachable,
        libc::EACCES => RouteKind::Prohibit,
        _ => return None,
    };
    Some(RouteLookup {
        oif: None,
        gateway: None,
        prefsrc: None,
        // The kernel answers with an errno only, so which table held a reject route is
        // unknown; for ENETUNREACH there was none.
        table: 0,
        kind,
        realm: None,
    })
}

/// A request that could not be encoded; becomes a [`SysError::Invalid`] naming the object.
pub(super) struct Unencodable(pub(super) &'static str);

impl Unencodable {
    pub(super) fn named(self, what: &'static str, object: &impl fmt::Display) -> SysError {
        SysError::Invalid {
            what,
            value: object.to_string(),
            reason: self.0,
        }
    }
}

pub(super) fn route_message(route: &Route, delete: bool) -> Result<RouteMessage, Unencodable> {
    let family = Family::of(route.dst.addr());
    // An IPv4 route may go via an IPv6 next hop (RTA_VIA), not the other way round.
    if route
        .gateway
        .is_some_and(|gateway| Family::of(gateway) != family && family == Family::V6)
    {
        return Err(Unencodable("an IPv6 route cannot go via an IPv4 next hop"));
    }
    if route
        .prefsrc
        .is_some_and(|prefsrc| Family::of(prefsrc) != family)
    {
        return Err(Unencodable(
            "a route's preferred source must be of its family",
        ));
    }
    match route.realm {
        Some(_) if family != Family::V4 => {
            return Err(Unencodable("only an IPv4 route has a realm"));
        }
        // The kernel reports no realm for 0: the route would never read back as asked.
        Some(0) => return Err(Unencodable("realm 0 is no realm")),
        _ => {}
    }
    let mut message = RouteMessage::default();
    let header = &mut message.header;
    header.address_family = family.address_family();
    header.destination_prefix_length = route.dst.prefix_len();
    header.table = u8::try_from(route.table)
        .ok()
        .filter(|&table| table != RouteHeader::RT_TABLE_UNSPEC)
        .unwrap_or(TABLE_COMPAT);
    header.protocol = RouteProtocol::from(route.protocol);
    header.kind = route.kind.to_route_type();
    header.scope = if delete {
        // RT_SCOPE_NOWHERE matches any scope on delete.
        RouteScope::NoWhere
    } else if route.kind == RouteKind::Unicast && route.gateway.is_none() {
        RouteScope::Link
    } else if route.kind == RouteKind::Local {
        RouteScope::Host
    } else {
        RouteScope::Universe
    };
    let attributes = &mut message.attributes;
    attributes.push(RouteAttribute::Table(route.table));
    if route.dst.prefix_len() > 0 {
        attributes.push(RouteAttribute::Destination(RouteAddress::from(
            route.dst.network(),
        )));
    }
    match route.gateway {
        Some(IpAddr::V6(gateway)) if family == Family::V4 => {
            attributes.push(RouteAttribute::Via(RouteVia::Inet6(gateway)));
        }
        Some(gateway) => attributes.push(RouteAttribute::Gateway(RouteAddress::from(gateway))),
        None => {}
    }
    if let Some(oif) = route.oif {
        attributes.push(RouteAttribute::Oif(oif));
    }
    if let Some(metric) = route.metric {
        attributes.push(RouteAttribute::Priority(metric));
    }
    if let (Some(prefsrc), false) = (route.prefsrc, delete) {
        attributes.push(RouteAttribute::PrefSource(RouteAddress::from(prefsrc)));
    }
    if let (Some(mtu), false) = (route.mtu, delete) {
        attributes.push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
    }
    if let (Some(realm), false) = (route.realm, delete) {
        attributes.push(RouteAttribute::Realm(RouteRealm {
            source: 0,
            destination: realm,
        }));
    }
    Ok(message)
}

pub(super) fn route_address(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(addr) => Some(IpAddr::V4(*addr)),
        RouteAddress::Inet6(addr) => Some(IpAddr::V6(*addr)),
        _ => None,
    }
}

pub(super) fn route_table(message: &RouteMessage) -> u32 {
    message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            RouteAttribute::Table(table) => Some(*table),
            _ => None,
        })
        .unwrap_or(u32::from(message.header.table))
}

pub(super) fn parse_route(message: &RouteMessage) -> Option<Route> {
    let header = &message.header;
    if header.flags.contains(RouteFlags::Cloned) {
        return None;
    }
    let family = Family::from_address_family(header.address_family)?;
    let mut dst = None;
    let mut route = Route {
        dst: IpNet::new(unspecified(family), 0).ok()?,
        table: route_table(message),
        protocol: u8::from(header.protocol),
        metric: None,
        oif: None,
        gateway: None,
        kind: RouteKind::from_route_type(header.kind),
        mtu: None,
        prefsrc: None,
        realm: None,
    };
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(address) => dst = route_address(address),
            RouteAttribute::Gateway(address) => route.gateway = route_address(address),
            RouteAttribute::Via(RouteVia::Inet6(gateway)) => {
                route.gateway = Some(IpAddr::V6(*gateway));
            }
            RouteAttribute::Oif(oif) => route.oif = Some(*oif),
            RouteAttribute::Priority(metric) => route.metric = Some(*metric),
            RouteAttribute::PrefSource(address) => route.prefsrc = route_address(address),
            RouteAttribute::Realm(realm) if realm.destination != 0 => {
                route.realm = Some(realm.destination);
            }
            RouteAttribute::Metrics(metrics) => {
                route.mtu = metrics.iter().find_map(|m| match m {
                    RouteMetric::Mtu(mtu) => Some(*mtu),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    if let Some(dst) = dst {
        route.dst = IpNet::new(dst, header.destination_prefix_length).ok()?;
    }
    // IPv6 reject routes are reported "dev lo", an internal detail nobody configured.
    if !matches!(route.kind, RouteKind::Unicast | RouteKind::Local) {
        route.oif = None;
    }
    Some(route)
}

pub(super) fn parse_lookup(message: &RouteMessage) -> RouteLookup {
    let mut lookup = RouteLookup {
        oif: None,
        gateway: None,
        prefsrc: None,
        table: route_table(message),
        kind: RouteKind::from_route_type(message.header.kind),
        realm: None,
    };
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Oif(oif) => lookup.oif = Some(*oif),
            RouteAttribute::Gateway(address) => lookup.gateway = route_address(address),
            RouteAttribute::Via(RouteVia::Inet6(gateway)) => {
                lookup.gateway = Some(IpAddr::V6(*gateway));
            }
            RouteAttribute::PrefSource(address) => lookup.prefsrc = route_address(address),
            RouteAttribute::Realm(realm) if realm.destination != 0 => {
                lookup.realm = Some(realm.destination);
            }
            _ => {}
        }
    }
    lookup
}

pub(super) fn unspecified(family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        Family::V6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

pub(super) fn address_message(index: u32, addr: IpNet, add: bool) -> AddressMessage {
    let mut message = AddressMessage::default();
    let header = &mut message.header;
    header.family = Family::of(addr.addr()).address_family();
    header.prefix_len = addr.prefix_len();
    header.index = index;
    header.scope = AddressScope::Universe;
    let attributes = &mut message.attributes;
    match addr.addr() {
        IpAddr::V4(_) => {
            // IFA_LOCAL is the address; IFA_ADDRESS the peer, which is the same on
            // broadcast and point-to-point links configured without a peer.
            attributes.push(AddressAttribute::Local(addr.addr()));
            attributes.push(AddressAttribute::Address(addr.addr()));
        }
        IpAddr::V6(_) => {
            attributes.push(AddressAttribute::Address(addr.addr()));
            if add {
                header.flags = AddressHeaderFlags::Nodad;
                attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
        }
    }
    message
}

pub(super) fn parse_address(message: &AddressMessage) -> Option<IpNet> {
    // IFA_LOCAL is this host's address where both are present (IPv4, IPv6 with a peer).
    let local = message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(addr) => Some(*addr),
        _ => None,
    });
    let address = message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(addr) => Some(*addr),
        _ => None,
    });
    IpNet::new(local.or(address)?, message.header.prefix_len).ok()
}

/// `FRA_IIFNAME` of `linux/fib_rules.h`.
const FRA_IIFNAME: u16 = 3;

pub(super) fn rule_message(rule: &Rule) -> RuleMessage {
    let mut message = RuleMessage::default();
    let header = &mut message.header;
    header.family = rule.family.address_family();
    header.table = u8::try_from(rule.table)
        .ok()
        .filter(|&table| table != RouteHeader::RT_TABLE_UNSPEC)
        .unwrap_or(TABLE_COMPAT);
    header.action = RuleAction::ToTable;
    if rule.invert {
        header.flags = RuleFlags::Invert;
    }
    let attributes = &mut message.attributes;
    attributes.push(RuleAttribute::Priority(rule.priority));
    attributes.push(RuleAttribute::Table(rule.table));
    if let Some(mark) = rule.fwmark {
        attributes.push(RuleAttribute::FwMark(mark));
    }
    if let Some(mask) = rule.fwmask {
        attributes.push(RuleAttribute::FwMask(mask));
    }
    if let Some(len) = rule.suppress_prefixlen {
        attributes.push(RuleAttribute::SuppressPrefixLen(len));
    }
    if let Some(from) = rule.from {
        message.header.src_len = from.prefix_len();
        message.attributes.push(RuleAttribute::Source(from.addr()));
    }
    if let Some(to) = rule.to {
        message.header.dst_len = to.prefix_len();
        message
            .attributes
            .push(RuleAttribute::Destination(to.addr()));
    }
    if let Some(iif) = &rule.iif {
        // The crate's `Iifname` leaves the terminating NUL the kernel expects unwritten (junk
        // in a reused buffer would become part of the name), so it is spelled out here.
        let mut name = iif.as_bytes().to_vec();
        name.push(0);
        message
            .attributes
            .push(RuleAttribute::Other(DefaultNla::new(FRA_IIFNAME, name)));
    }
    message
}

pub(super) fn parse_rule(message: &RuleMessage) -> Option<Rule> {
    let header = &message.header;
    if header.action != RuleAction::ToTable {
        return None;
    }
    let mut rule = Rule {
        family: Family::from_address_family(header.family)?,
        priority: 0,
        table: u32::from(header.table),
        fwmark: None,
        fwmask: None,
        invert: header.flags.contains(RuleFlags::Invert),
        suppress_prefixlen: None,
        from: None,
        to: None,
        iif: None,
    };
    for attribute in &message.attributes {
        match attribute {
            RuleAttribute::Priority(priority) => rule.priority = *priority,
            RuleAttribute::Table(table) => rule.table = *table,
            RuleAttribute::FwMark(mark) => rule.fwmark = Some(*mark),
            RuleAttribute::FwMask(mask) => rule.fwmask = Some(*mask),
            // The kernel reports "no suppression" as -1 (u32::MAX).
            RuleAttribute::SuppressPrefixLen(len) if *len != u32::MAX => {
                rule.suppress_prefixlen = Some(*len);
            }
            RuleAttribute::Source(addr) => rule.from = IpNet::new(*addr, header.src_len).ok(),
            RuleAttribute::Destination(addr) => {
                rule.to = IpNet::new(*addr, header.dst_len).ok();
            }
            RuleAttribute::Iifname(name) => rule.iif = Some(name.clone()),
            _ => {}
        }
    }
    // A mark without a mask is stored with all mask bits set; report it as given.
    if rule.fwmask == Some(u32::MAX) || rule.fwmark.is_none() && rule.fwmask == Some(0) {
        rule.fwmask = None;
    }
    Some(rule)
}
