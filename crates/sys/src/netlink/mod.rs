//! Links, addresses, routes and policy rules through rtnetlink, plus change notifications.
//!
//! [`Netlink`] is one request connection (its task runs on the tokio runtime that created it);
//! [`watch_changes`] is a second, multicast-only socket. Both live in the network namespace of
//! the thread that created them. Requests carry exactly the flags the kernel needs for the
//! promised semantics (`NLM_F_EXCL` for add, `NLM_F_REPLACE` for replace); deletes of things
//! already gone succeed, so teardown and crash reconciliation can repeat themselves. This module
//! decides nothing: which routes to pin or which rules to install is the caller's plan.

use std::fmt;
use std::io;
use std::net::IpAddr;

use futures::StreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteType,
};
use netlink_packet_route::rule::RuleMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
    NetlinkMessage, NetlinkPayload,
};
use tokio::sync::mpsc;

use crate::error::{Result, SysError};

mod message;

use message::{
    address_message, is_gone, parse_address, parse_lookup, parse_route, parse_rule, route_message,
    route_table, rule_message, unreachable_lookup,
};

/// `RT_TABLE_MAIN`.
pub const TABLE_MAIN: u32 = 254;
/// `RT_TABLE_LOCAL`.
pub const TABLE_LOCAL: u32 = 255;
/// `RT_TABLE_COMPAT`: what the one-byte table field says when the real id needs `RTA_TABLE`.
const TABLE_COMPAT: u8 = 252;

/// Longest wait in [`Netlink::address_add`] for the kernel to install an address's local route.
pub const LOCAL_ROUTE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Longest wait for the kernel's complete answer to one request.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How often a dump interrupted by concurrent changes (`NLM_F_DUMP_INTR`) is retried.
const DUMP_ATTEMPTS: usize = 5;

/// Address family of routes and rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    fn address_family(self) -> AddressFamily {
        match self {
            Self::V4 => AddressFamily::Inet,
            Self::V6 => AddressFamily::Inet6,
        }
    }

    fn from_address_family(family: AddressFamily) -> Option<Self> {
        match family {
            AddressFamily::Inet => Some(Self::V4),
            AddressFamily::Inet6 => Some(Self::V6),
            _ => None,
        }
    }

    fn max_prefix_len(self) -> u8 {
        match self {
            Self::V4 => 32,
            Self::V6 => 128,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V4 => "ipv4",
            Self::V6 => "ipv6",
        })
    }
}

/// Route type (`rtm_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// Forward via a gateway or out of a device.
    Unicast,
    /// Deliver locally (the destination is one of this host's addresses).
    Local,
    /// Drop silently.
    Blackhole,
    /// Drop with ICMP unreachable. From [`Netlink::route_get`]: also "no route at all".
    Unreachable,
    /// Drop with ICMP administratively prohibited.
    Prohibit,
    /// Continue the lookup in the next rule's table.
    Throw,
    /// Any other type (broadcast, multicast, ...), by number.
    Other(u8),
}

impl RouteKind {
    fn to_route_type(self) -> RouteType {
        match self {
            Self::Unicast => RouteType::Unicast,
            Self::Local => RouteType::Local,
            Self::Blackhole => RouteType::BlackHole,
            Self::Unreachable => RouteType::Unreachable,
            Self::Prohibit => RouteType::Prohibit,
            Self::Throw => RouteType::Throw,
            Self::Other(kind) => RouteType::from(kind),
        }
    }

    fn from_route_type(kind: RouteType) -> Self {
        match kind {
            RouteType::Unicast => Self::Unicast,
            RouteType::Local => Self::Local,
            RouteType::BlackHole => Self::Blackhole,
            RouteType::Unreachable => Self::Unreachable,
            RouteType::Prohibit => Self::Prohibit,
            RouteType::Throw => Self::Throw,
            other => Self::Other(u8::from(other)),
        }
    }
}

impl fmt::Display for RouteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unicast => f.write_str("unicast"),
            Self::Local => f.write_str("local"),
            Self::Blackhole => f.write_str("blackhole"),
            Self::Unreachable => f.write_str("unreachable"),
            Self::Prohibit => f.write_str("prohibit"),
            Self::Throw => f.write_str("throw"),
            Self::Other(kind) => write!(f, "type {kind}"),
        }
    }
}

/// A route as installed or dumped. Routes are identified by table, destination, metric and
/// (for deletes) protocol, as in the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    pub dst: IpNet,
    pub table: u32,
    /// `rtm_protocol`: who installed the route (v6gate uses its own number to find its routes).
    pub protocol: u8,
    /// Route priority (`RTA_PRIORITY`); `None` lets the kernel pick (0 for IPv4, 1024 for IPv6).
    /// Dumps report what the kernel chose, except that IPv4 omits a metric of 0.
    pub metric: Option<u32>,
    pub oif: Option<u32>,
    /// For an IPv4 route, an IPv6 next hop is sent as `RTA_VIA` (`via inet6`).
    pub gateway: Option<IpAddr>,
    pub kind: RouteKind,
    /// The route's MTU metric (`mtu N`): what the kernel fragments to or answers
    /// frag-needed / Packet Too Big for.
    pub mtu: Option<u32>,
    /// Preferred source (`RTA_PREFSRC`, `src ADDR`) for packets this host originates along
    /// the route; of the route's family. The kernel refuses an address that is not local.
    pub prefsrc: Option<IpAddr>,
    /// The routing realm packets take along the route (`realm N`, the destination half of
    /// `RTA_FLOW`), which nftables reads as `rt classid`: a marker for traffic of one route
    /// that leaves through a device shared with other traffic. IPv4 only.
    pub realm: Option<u16>,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind != RouteKind::Unicast {
            write!(f, "{} ", self.kind)?;
        }
        write!(f, "{}", self.dst)?;
        if let Some(gateway) = self.gateway {
            write!(f, " via {gateway}")?;
        }
        if let Some(oif) = self.oif {
            write!(f, " dev #{oif}")?;
        }
        write!(f, " table {} proto {}", self.table, self.protocol)?;
        if let Some(metric) = self.metric {
            write!(f, " metric {metric}")?;
        }
        if let Some(prefsrc) = self.prefsrc {
            write!(f, " src {prefsrc}")?;
        }
        if let Some(mtu) = self.mtu {
            write!(f, " mtu {mtu}")?;
        }
        if let Some(realm) = self.realm {
            write!(f, " realm {realm}")?;
        }
        Ok(())
    }
}

/// The kernel's answer to "where would a packet to this address go" (`ip route get`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLookup {
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    /// Source address the kernel would pick.
    pub prefsrc: Option<IpAddr>,
    /// Table of the matching route; 0 when nothing matched.
    pub table: u32,
    pub kind: RouteKind,
    /// The realm the matching route gives (see [`Route::realm`]); IPv4 only.
    pub realm: Option<u16>,
}

/// A policy routing rule that looks up `table`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    pub family: Family,
    pub priority: u32,
    pub table: u32,
    pub fwmark: Option<u32>,
    /// Mask for `fwmark`; `None` means all bits (the kernel's default).
    pub fwmask: Option<u32>,
    /// `FIB_RULE_INVERT`: the selector is negated ("not fwmark 0x64").
    pub invert: bool,
    /// `suppress_prefixlength N`: ignore matches with a prefix of N bits or less (wg-quick's
    /// "use main, but not its default route").
    pub suppress_prefixlen: Option<u32>,
    /// Source and destination selectors (`from`, `to`), of the rule's family.
    pub from: Option<IpNet>,
    pub to: Option<IpNet>,
    /// Incoming interface by name (`iif`), so the rule stands before the device exists.
    pub iif: Option<String>,
}

impl Rule {
    /// A rule of `family` at `priority` that looks up `table` and selects everything.
    pub fn lookup(family: Family, priority: u32, table: u32) -> Self {
        Self {
            family,
            priority,
            table,
            fwmark: None,
            fwmask: None,
            invert: false,
            suppress_prefixlen: None,
            from: None,
            to: None,
            iif: None,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} rule priority {}", self.family, self.priority)?;
        if self.invert {
            f.write_str(" not")?;
        }
        if let Some(from) = self.from {
            write!(f, " from {from}")?;
        }
        if let Some(to) = self.to {
            write!(f, " to {to}")?;
        }
        if let Some(iif) = &self.iif {
            write!(f, " iif {iif}")?;
        }
        if let Some(mark) = self.fwmark {
            write!(f, " fwmark {mark:#x}")?;
            if let Some(mask) = self.fwmask {
                write!(f, "/{mask:#x}")?;
            }
        }
        write!(f, " table {}", self.table)?;
        if let Some(len) = self.suppress_prefixlen {
            write!(f, " suppress_prefixlength {len}")?;
        }
        Ok(())
    }
}

/// Handle for rtnetlink requests. One per daemon; cheap to share by reference.
#[derive(Debug, Clone)]
pub struct Netlink {
    handle: rtnetlink::Handle,
}

impl Netlink {
    /// Opens the rtnetlink socket in the calling thread's network namespace and spawns its
    /// connection task on the current tokio runtime, which must have I/O and time enabled.
    pub fn new() -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| SysError::netlink("start netlink connection", io::Error::other(e)))?;
        let (connection, handle, _unsolicited) = rtnetlink::new_connection()
            .map_err(|io| SysError::netlink("open netlink socket", io))?;
        runtime.spawn(connection);
        Ok(Self { handle })
    }

    /// Index of the interface `name`, or `None` if there is none.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>> {
        crate::tun::validate_name(name)?;
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_owned()));
        match self.request(RouteNetlinkMessage::GetLink(message), 0).await {
            Ok(replies) => Ok(replies.into_iter().find_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(link) => Some(link.header.index),
                _ => None,
            })),
            Err(io) if io.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(io) => Err(SysError::netlink(format!("look up link {name}"), io)),
        }
    }

    /// Current MTU of interface `index`.
    pub async fn link_mtu(&self, index: u32) -> Result<u32> {
        let op = || format!("read MTU of link #{index}");
        let link = self
            .link(index)
            .await
            .map_err(|io| SysError::netlink(op(), io))?;
        link.attributes
            .iter()
            .find_map(|attribute| match attribute {
                LinkAttribute::Mtu(mtu) => Some(*mtu),
                _ => None,
            })
            .ok_or_else(|| {
                SysError::netlink(op(), io::Error::other("kernel reply carries no IFLA_MTU"))
            })
    }

    /// The BPF classifiers on the `clsact` hook of interface `index` (`ingress`, else
    /// egress): each one's program name and id, as `tc filter show` lists them.
    pub async fn tc_bpf_filters(&self, index: u32, ingress: bool) -> Result<Vec<(String, u32)>> {
        use netlink_packet_route::tc::{
            TcAttribute, TcFilterBpfOption, TcHandle, TcMessage, TcOption,
        };
        let mut message = TcMessage::default();
        message.header.index = i32::try_from(index).unwrap_or(i32::MAX);
        message.header.parent = TcHandle {
            major: 0xffff,
            minor: if ingress {
                TcHandle::MIN_INGRESS
            } else {
                TcHandle::MIN_EGRESS
            },
        };
        let replies = self
            .dump(RouteNetlinkMessage::GetTrafficFilter(message))
            .await
            .map_err(|io| SysError::netlink(format!("list tc filters of link #{index}"), io))?;
        let mut found = Vec::new();
        for reply in replies {
            let RouteNetlinkMessage::NewTrafficFilter(filter) = reply else {
                continue;
            };
            let (mut name, mut id) = (None, None);
            for attribute in &filter.attributes {
                let TcAttribute::Options(options) = attribute else {
                    continue;
                };
                for option in options {
                    match option {
                        TcOption::Bpf(TcFilterBpfOption::ProgName(n)) => name = Some(n.clone()),
                        TcOption::Bpf(TcFilterBpfOption::ProgId(i)) => id = Some(*i),
                        _ => {}
                    }
                }
            }
            if let (Some(name), Some(id)) = (name, id) {
                found.push((name, id));
            }
        }
        Ok(found)
    }

    /// Whether interface `index` is administratively up (`IFF_UP`).
    pub async fn link_is_up(&self, index: u32) -> Result<bool> {
        let link = self
            .link(index)
            .await
            .map_err(|io| SysError::netlink(format!("read flags of link #{index}"), io))?;
        Ok(link.header.flags.contains(LinkFlags::Up))
    }

    /// Up with carrier: the state in which IPv6 activates addresses.
    async fn link_is_running(&self, index: u32) -> Result<bool> {
        let link = self
            .link(index)
            .await
            .map_err(|io| SysError::netlink(format!("read flags of link #{index}"), io))?;
        Ok(link
            .header
            .flags
            .contains(LinkFlags::Up | LinkFlags::LowerUp))
    }

    /// Sets interface `index` administratively up.
    pub async fn link_set_up(&self, index: u32) -> Result<()> {
        self.link_set_flag_up(index, true).await
    }

    /// Sets interface `index` administratively down.
    pub async fn link_set_down(&self, index: u32) -> Result<()> {
        self.link_set_flag_up(index, false).await
    }

    /// Sets the MTU of interface `index`.
    pub async fn link_set_mtu(&self, index: u32, mtu: u32) -> Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.attributes.push(LinkAttribute::Mtu(mtu));
        self.request(RouteNetlinkMessage::SetLink(message), NLM_F_ACK)
            .await
            .map(drop)
            .map_err(|io| SysError::netlink(format!("set MTU {mtu} on link #{index}"), io))
    }

    /// Sets the transmit queue length of interface `index`. For a TUN device this is how
    /// many packets the kernel holds for the reader before it drops: a userspace reader that
    /// is briefly late must not turn into TCP losses.
    pub async fn link_set_txqueuelen(&self, index: u32, len: u32) -> Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.attributes.push(LinkAttribute::TxQueueLen(len));
        self.request(RouteNetlinkMessage::SetLink(message), NLM_F_ACK)
            .await
            .map(drop)
            .map_err(|io| SysError::netlink(format!("set txqueuelen {len} on link #{index}"), io))
    }

    /// Adds `addr` (address and prefix length) to interface `index`; an existing identical
    /// address is replaced, so repeating this is harmless. IPv6 addresses get `IFA_F_NODAD` so
    /// they are usable at once instead of tentative for a second.
    ///
    /// The kernel installs the local route of an IPv6 address from a work queue, a moment
    /// after acknowledging the address; until then packets to it are routed away. On an up
    /// link this waits (up to [`LOCAL_ROUTE_WAIT`]) for that route, so that "added" means
    /// "receives".
    pub async fn address_add(&self, index: u32, addr: IpNet) -> Result<()> {
        let message = address_message(index, addr, true);
        self.request(
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
        .await
        .map(drop)
        .map_err(|io| SysError::netlink(format!("add address {addr} to link #{index}"), io))?;
        if addr.addr().is_ipv6() && self.link_is_running(index).await? {
            self.wait_for_local_route(addr.addr()).await?;
        }
        Ok(())
    }

    async fn wait_for_local_route(&self, addr: IpAddr) -> Result<()> {
        let deadline = tokio::time::Instant::now() + LOCAL_ROUTE_WAIT;
        while self.route_get(addr, None).await?.kind != RouteKind::Local {
            if tokio::time::Instant::now() >= deadline {
                tracing::debug!("no local route for {addr} after {LOCAL_ROUTE_WAIT:?}");
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// Removes `addr` from interface `index`; an address that is not there is not an error.
    pub async fn address_del(&self, index: u32, addr: IpNet) -> Result<()> {
        let message = address_message(index, addr, false);
        match self
            .request(RouteNetlinkMessage::DelAddress(message), NLM_F_ACK)
            .await
        {
            Ok(_) => Ok(()),
            Err(io) if is_gone(&io) => Ok(()),
            Err(io) => Err(SysError::netlink(
                format!("delete address {addr} from link #{index}"),
                io,
            )),
        }
    }

    /// Addresses configured on interface `index`.
    pub async fn addresses(&self, index: u32) -> Result<Vec<IpNet>> {
        let replies = self
            .dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))
            .await
            .map_err(|io| SysError::netlink(format!("list addresses of link #{index}"), io))?;
        Ok(replies
            .into_iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewAddress(message) if message.header.index == index => {
                    parse_address(&message)
                }
                _ => None,
            })
            .collect())
    }

    /// Asks the kernel how it would route a packet to `dst` carrying firewall mark `mark`.
    ///
    /// Destinations that resolve to a blackhole, unreachable or prohibit route come back as
    /// `Ok` with that kind (the kernel answers those with EINVAL, EHOSTUNREACH and EACCES); no
    /// route at all (ENETUNREACH) is `Ok` with [`RouteKind::Unreachable`] and table 0.
    pub async fn route_get(&self, dst: IpAddr, mark: Option<u32>) -> Result<RouteLookup> {
        let family = Family::of(dst);
        let mut message = RouteMessage::default();
        message.header.address_family = family.address_family();
        message.header.destination_prefix_length = family.max_prefix_len();
        // Without it IPv4 answers "main" whichever table matched (IPv6 always tells).
        message.header.flags = RouteFlags::LookupTable;
        message
            .attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst)));
        if let Some(mark) = mark {
            message.attributes.push(RouteAttribute::Mark(mark));
        }
        let replies = match self
            .request(RouteNetlinkMessage::GetRoute(message), 0)
            .await
        {
            Ok(replies) => replies,
            Err(io) => {
                return unreachable_lookup(&io).ok_or_else(|| {
                    let mark = mark.map(|m| format!(" mark {m:#x}")).unwrap_or_default();
                    SysError::netlink(format!("look up route to {dst}{mark}"), io)
                });
            }
        };
        replies
            .into_iter()
            .find_map(|reply| match reply {
                RouteNetlinkMessage::NewRoute(route) => Some(parse_lookup(&route)),
                _ => None,
            })
            .ok_or_else(|| {
                SysError::netlink(
                    format!("look up route to {dst}"),
                    io::Error::other("kernel sent no route"),
                )
            })
    }

    /// Adds `route`; fails with EEXIST if a route with the same key exists.
    pub async fn route_add(&self, route: &Route) -> Result<()> {
        let message = route_message(route, false).map_err(|e| e.named("add route", route))?;
        self.request(
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .await
        .map(drop)
        .map_err(|io| SysError::netlink(format!("add route {route}"), io))
    }

    /// Adds `route` or replaces the route with the same key.
    pub async fn route_replace(&self, route: &Route) -> Result<()> {
        let message = route_message(route, false).map_err(|e| e.named("replace route", route))?;
        self.request(
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
        .await
        .map(drop)
        .map_err(|io| SysError::netlink(format!("replace route {route}"), io))
    }

    /// Deletes `route` (matched on table, destination, metric, protocol, and gateway/device if
    /// given); a route that is already gone is not an error.
    pub async fn route_del(&self, route: &Route) -> Result<()> {
        let message = route_message(route, true).map_err(|e| e.named("delete route", route))?;
        match self
            .request(RouteNetlinkMessage::DelRoute(message), NLM_F_ACK)
            .await
        {
            Ok(_) => Ok(()),
            Err(io) if is_gone(&io) => Ok(()),
            Err(io) => Err(SysError::netlink(format!("delete route {route}"), io)),
        }
    }

    /// All routes of `family`, optionally only those of one table and/or protocol. Cached
    /// (cloned) entries and multipath routes' next hops are not reported.
    pub async fn routes(
        &self,
        family: Family,
        table: Option<u32>,
        protocol: Option<u8>,
    ) -> Result<Vec<Route>> {
        let mut request = RouteMessage::default();
        request.header.address_family = family.address_family();
        let replies = self
            .dump(RouteNetlinkMessage::GetRoute(request))
            .await
            .map_err(|io| SysError::netlink(format!("list {family} routes"), io))?;
        Ok(replies
            .into_iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewRoute(message) => parse_route(&message),
                _ => None,
            })
            .filter(|route| Family::of(route.dst.addr()) == family)
            .filter(|route| table.is_none_or(|table| route.table == table))
            .filter(|route| protocol.is_none_or(|protocol| route.protocol == protocol))
            .collect())
    }

    /// Adds `rule`; fails with EEXIST if an identical rule exists.
    pub async fn rule_add(&self, rule: &Rule) -> Result<()> {
        self.request(
            RouteNetlinkMessage::NewRule(rule_message(rule)),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .await
        .map(drop)
        .map_err(|io| SysError::netlink(format!("add {rule}"), io))
    }

    /// Adds `rule` even when an identical one exists. Rules are not keyed like routes: the
    /// kernel keeps both copies, and [`Netlink::rule_del`] removes one. Two daemons that need
    /// the same rule each add and later remove their own copy, so neither pulls the other's.
    pub async fn rule_add_copy(&self, rule: &Rule) -> Result<()> {
        self.request(
            RouteNetlinkMessage::NewRule(rule_message(rule)),
            NLM_F_ACK | NLM_F_CREATE,
        )
        .await
        .map(drop)
        .map_err(|io| SysError::netlink(format!("add {rule}"), io))
    }

    /// Deletes `rule`; a rule that is already gone is not an error.
    pub async fn rule_del(&self, rule: &Rule) -> Result<()> {
        match self
            .request(RouteNetlinkMessage::DelRule(rule_message(rule)), NLM_F_ACK)
            .await
        {
            Ok(_) => Ok(()),
            Err(io) if is_gone(&io) => Ok(()),
            Err(io) => Err(SysError::netlink(format!("delete {rule}"), io)),
        }
    }

    /// All "look up table N" rules of `family`. Rules with other actions (goto, blackhole, ...)
    /// are left out, and selectors this type does not model (oif, uid range, ...) are not reported.
    pub async fn rules(&self, family: Family) -> Result<Vec<Rule>> {
        let mut request = RuleMessage::default();
        request.header.family = family.address_family();
        let replies = self
            .dump(RouteNetlinkMessage::GetRule(request))
            .await
            .map_err(|io| SysError::netlink(format!("list {family} rules"), io))?;
        Ok(replies
            .into_iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewRule(message) => parse_rule(&message),
                _ => None,
            })
            .filter(|rule| rule.family == family)
            .collect())
    }

    async fn link(&self, index: u32) -> io::Result<LinkMessage> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        let replies = self
            .request(RouteNetlinkMessage::GetLink(message), 0)
            .await?;
        replies
            .into_iter()
            .find_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })
            .ok_or_else(|| io::Error::other("kernel sent no link"))
    }

    async fn link_set_flag_up(&self, index: u32, up: bool) -> Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.change_mask = LinkFlags::Up;
        if up {
            message.header.flags = LinkFlags::Up;
        }
        let state = if up { "up" } else { "down" };
        self.request(RouteNetlinkMessage::SetLink(message), NLM_F_ACK)
            .await
            .map(drop)
            .map_err(|io| SysError::netlink(format!("set link #{index} {state}"), io))
    }

    /// Sends one request and collects the replies; a NACK becomes its errno.
    async fn request(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        Ok(self.exchange(message, flags).await?.0)
    }

    /// A dump, retried while the kernel flags it as interrupted by concurrent changes.
    async fn dump(&self, message: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        for _ in 0..DUMP_ATTEMPTS {
            let (replies, interrupted) = self.exchange(message.clone(), NLM_F_DUMP).await?;
            if !interrupted {
                return Ok(replies);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::Interrupted,
            format!("dump interrupted by concurrent changes {DUMP_ATTEMPTS} times"),
        ))
    }

    async fn exchange(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<(Vec<RouteNetlinkMessage>, bool)> {
        let mut request = NetlinkMessage::from(message);
        request.header.flags = NLM_F_REQUEST | flags;
        let mut handle = self.handle.clone();
        let mut responses = handle.request(request).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "netlink connection task has ended",
            )
        })?;
        let collect = async {
            let mut replies = Vec::new();
            let mut interrupted = false;
            while let Some(response) = responses.next().await {
                interrupted |= response.header.flags & NLM_F_DUMP_INTR != 0;
                match response.payload {
                    NetlinkPayload::InnerMessage(reply) => replies.push(reply),
                    NetlinkPayload::Error(error) if error.code.is_some() => {
                        return Err(error.to_io());
                    }
                    NetlinkPayload::Overrun(_) => {
                        return Err(io::Error::other("netlink reply overran the socket buffer"));
                    }
                    _ => {}
                }
            }
            Ok((replies, interrupted))
        };
        // The connection drops replies it cannot decode; if that was the final one, the
        // request would otherwise wait forever.
        tokio::time::timeout(REQUEST_TIMEOUT, collect)
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no complete netlink reply within {REQUEST_TIMEOUT:?}"),
                )
            })?
    }
}

/// One change reported by [`watch_changes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A route was added, changed or removed.
    Route {
        family: Family,
        table: u32,
        removed: bool,
    },
    /// An interface appeared, changed (flags, MTU, carrier) or disappeared.
    Link { index: u32, removed: bool },
    /// An address was added or removed.
    Address {
        family: Family,
        index: u32,
        removed: bool,
    },
    /// A policy routing rule was added or removed.
    Rule { family: Family, removed: bool },
    /// Notifications were lost (socket buffer overrun) or unreadable: re-read all state.
    Resync,
}

/// Channel depth between the notification task and the caller.
const CHANGE_QUEUE: usize = 1024;

/// Subscribes to route, rule, link and address notifications (RTNLGRP_IPV4_ROUTE, IPV6_ROUTE,
/// IPV4_RULE, IPV6_RULE, LINK, IPV4_IFADDR, IPV6_IFADDR) in the calling thread's network
/// namespace.
///
/// A task on the current tokio runtime reads a dedicated netlink socket and yields one
/// [`Change`] per notification; coalescing is the caller's job. When the caller falls behind
/// and the kernel drops notifications, [`Change::Resync`] says so. The task ends when the
/// receiver is dropped.
pub fn watch_changes() -> Result<mpsc::Receiver<Change>> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| SysError::netlink("start change notifications", io::Error::other(e)))?;
    let socket = watch::open().map_err(|io| SysError::netlink("subscribe to changes", io))?;
    let (sender, receiver) = mpsc::channel(CHANGE_QUEUE);
    runtime.spawn(watch::run(socket, sender));
    Ok(receiver)
}

/// Subscribes to nftables notifications (NFNLGRP_NFTABLES) in the calling thread's network
/// namespace: one `()` per datagram of changes to any table, so the caller can read back the
/// tables it owns. The task ends when the receiver is dropped.
pub fn watch_nftables() -> Result<mpsc::Receiver<()>> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| SysError::netlink("start nftables notifications", io::Error::other(e)))?;
    let socket =
        watch::open_nftables().map_err(|io| SysError::netlink("subscribe to nftables", io))?;
    // One pending wake-up is enough: the reader looks at the whole table.
    let (sender, receiver) = mpsc::channel(1);
    runtime.spawn(watch::run_nftables(socket, sender));
    Ok(receiver)
}

#[allow(unsafe_code)]
mod watch;

#[cfg(test)]
mod tests;
