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
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use netlink_packet_route::address::{AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::packet_core::{
    DefaultNla, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REPLACE,
    NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use tokio::sync::mpsc;

use crate::error::{Result, SysError};

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
    pub gateway: Option<IpAddr>,
    pub kind: RouteKind,
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

/// What the kernel answers when the thing to delete does not exist.
fn is_gone(io: &io::Error) -> bool {
    matches!(
        io.raw_os_error(),
        Some(libc::ESRCH | libc::ENOENT | libc::EADDRNOTAVAIL)
    )
}

/// Maps route-lookup errnos that describe the matched route, not a failed request.
fn unreachable_lookup(io: &io::Error) -> Option<RouteLookup> {
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
    })
}

/// A request that could not be encoded; becomes a [`SysError::Invalid`] naming the object.
struct Unencodable(&'static str);

impl Unencodable {
    fn named(self, what: &'static str, object: &impl fmt::Display) -> SysError {
        SysError::Invalid {
            what,
            value: object.to_string(),
            reason: self.0,
        }
    }
}

fn route_message(route: &Route, delete: bool) -> std::result::Result<RouteMessage, Unencodable> {
    let family = Family::of(route.dst.addr());
    if route
        .gateway
        .is_some_and(|gateway| Family::of(gateway) != family)
    {
        return Err(Unencodable("gateway and destination differ in family"));
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
    if let Some(gateway) = route.gateway {
        attributes.push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
    }
    if let Some(oif) = route.oif {
        attributes.push(RouteAttribute::Oif(oif));
    }
    if let Some(metric) = route.metric {
        attributes.push(RouteAttribute::Priority(metric));
    }
    Ok(message)
}

fn route_address(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(addr) => Some(IpAddr::V4(*addr)),
        RouteAddress::Inet6(addr) => Some(IpAddr::V6(*addr)),
        _ => None,
    }
}

fn route_table(message: &RouteMessage) -> u32 {
    message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            RouteAttribute::Table(table) => Some(*table),
            _ => None,
        })
        .unwrap_or(u32::from(message.header.table))
}

fn parse_route(message: &RouteMessage) -> Option<Route> {
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
    };
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(address) => dst = route_address(address),
            RouteAttribute::Gateway(address) => route.gateway = route_address(address),
            RouteAttribute::Oif(oif) => route.oif = Some(*oif),
            RouteAttribute::Priority(metric) => route.metric = Some(*metric),
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

fn parse_lookup(message: &RouteMessage) -> RouteLookup {
    let mut lookup = RouteLookup {
        oif: None,
        gateway: None,
        prefsrc: None,
        table: route_table(message),
        kind: RouteKind::from_route_type(message.header.kind),
    };
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Oif(oif) => lookup.oif = Some(*oif),
            RouteAttribute::Gateway(address) => lookup.gateway = route_address(address),
            RouteAttribute::PrefSource(address) => lookup.prefsrc = route_address(address),
            _ => {}
        }
    }
    lookup
}

fn unspecified(family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        Family::V6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

fn address_message(index: u32, addr: IpNet, add: bool) -> AddressMessage {
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

fn parse_address(message: &AddressMessage) -> Option<IpNet> {
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

fn rule_message(rule: &Rule) -> RuleMessage {
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

fn parse_rule(message: &RuleMessage) -> Option<Rule> {
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
mod watch {
    use std::io;
    use std::os::fd::AsRawFd;

    use netlink_packet_route::RouteNetlinkMessage;
    use rtnetlink::constants::{
        RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_ROUTE, RTMGRP_LINK,
    };
    use rtnetlink::packet_core::{NetlinkBuffer, NetlinkMessage, NetlinkPayload};
    use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
    use tokio::io::unix::AsyncFd;
    use tokio::sync::mpsc;

    use super::{Change, Family, route_table};

    /// Kernel receive buffer for notifications: a full table flap must fit.
    const RECEIVE_BUFFER: i32 = 4 << 20;
    /// Legacy bind masks for RTNLGRP_IPV4_RULE (8) and RTNLGRP_IPV6_RULE (19): group N is bit
    /// N - 1.
    const RULE_GROUPS: u32 = (1 << (8 - 1)) | (1 << (19 - 1));
    /// One read; the kernel never sends a notification datagram larger than this.
    const DATAGRAM: usize = 64 << 10;

    pub(super) fn open() -> io::Result<AsyncFd<Socket>> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        let groups = RTMGRP_LINK
            | RTMGRP_IPV4_IFADDR
            | RTMGRP_IPV4_ROUTE
            | RTMGRP_IPV6_IFADDR
            | RTMGRP_IPV6_ROUTE
            | RULE_GROUPS;
        socket.bind(&SocketAddr::new(0, groups))?;
        let fd = socket.as_raw_fd();
        if crate::fd::set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RECEIVE_BUFFER)
            .is_err()
        {
            crate::fd::set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, RECEIVE_BUFFER)?;
        }
        socket.set_non_blocking(true)?;
        // SAFETY: `Socket` owns its descriptor and closes it only when dropped, which happens
        // after the `AsyncFd` deregisters it; nothing replaces the descriptor meanwhile.
        Ok(unsafe { AsyncFd::register(socket) }?)
    }

    /// Legacy bind mask of NFNLGRP_NFTABLES (7).
    const NFTABLES_GROUP: u32 = 1 << (7 - 1);

    pub(super) fn open_nftables() -> io::Result<AsyncFd<Socket>> {
        let mut socket = Socket::new(rtnetlink::sys::protocols::NETLINK_NETFILTER)?;
        socket.bind(&SocketAddr::new(0, NFTABLES_GROUP))?;
        socket.set_non_blocking(true)?;
        // SAFETY: as in `open`: the socket outlives its registration.
        Ok(unsafe { AsyncFd::register(socket) }?)
    }

    pub(super) async fn run_nftables(socket: AsyncFd<Socket>, sender: mpsc::Sender<()>) {
        let mut buffer = Vec::with_capacity(DATAGRAM);
        loop {
            let received = tokio::select! {
                () = sender.closed() => return,
                ready = socket.readable() => {
                    let Ok(mut guard) = ready else { return };
                    buffer.clear();
                    match guard.try_io(|socket| socket.get_ref().recv(&mut buffer, 0)) {
                        Ok(result) => result,
                        Err(_would_block) => continue,
                    }
                }
            };
            match received {
                // A lost notification (ENOBUFS) is a change too: look again.
                Ok(_) => {}
                Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    tracing::warn!("nftables change notifications stopped: {error}");
                    return;
                }
            }
            // Full means a wake-up is already pending, which covers this change.
            if let Err(mpsc::error::TrySendError::Closed(())) = sender.try_send(()) {
                return;
            }
        }
    }

    pub(super) async fn run(socket: AsyncFd<Socket>, sender: mpsc::Sender<Change>) {
        let mut buffer = Vec::with_capacity(DATAGRAM);
        loop {
            let received = tokio::select! {
                () = sender.closed() => return,
                ready = socket.readable() => {
                    let Ok(mut guard) = ready else { return };
                    buffer.clear();
                    match guard.try_io(|socket| socket.get_ref().recv(&mut buffer, 0)) {
                        Ok(result) => result,
                        Err(_would_block) => continue,
                    }
                }
            };
            let changes = match received {
                Ok(_) => decode(&buffer),
                Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                    vec![Change::Resync]
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    tracing::warn!("netlink change notifications stopped: {error}");
                    let _ = sender.send(Change::Resync).await;
                    return;
                }
            };
            for change in changes {
                if sender.send(change).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Decodes one datagram of notifications. Anything unreadable turns into one
    /// [`Change::Resync`], since a missed change is worse than a spurious full re-read.
    pub(super) fn decode(mut datagram: &[u8]) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut resync = false;
        while !datagram.is_empty() {
            let Ok(buffer) = NetlinkBuffer::new_checked(datagram) else {
                resync = true;
                break;
            };
            let len = usize::try_from(buffer.length()).unwrap_or(usize::MAX);
            let Some(message) = datagram.get(..len) else {
                resync = true;
                break;
            };
            match NetlinkMessage::<RouteNetlinkMessage>::deserialize(message) {
                Ok(message) => match message.payload {
                    NetlinkPayload::InnerMessage(inner) => changes.extend(change_of(inner)),
                    NetlinkPayload::Overrun(_) => resync = true,
                    _ => {}
                },
                Err(_) => resync = true,
            }
            // Messages are padded to 4 bytes.
            let next = len.div_ceil(4) * 4;
            datagram = datagram.get(next.max(4)..).unwrap_or(&[]);
        }
        if resync {
            changes.push(Change::Resync);
        }
        changes
    }

    fn change_of(message: RouteNetlinkMessage) -> Option<Change> {
        let (removed, message) = match message {
            RouteNetlinkMessage::DelRoute(route) => (true, RouteNetlinkMessage::NewRoute(route)),
            RouteNetlinkMessage::DelLink(link) => (true, RouteNetlinkMessage::NewLink(link)),
            RouteNetlinkMessage::DelAddress(addr) => (true, RouteNetlinkMessage::NewAddress(addr)),
            RouteNetlinkMessage::DelRule(rule) => (true, RouteNetlinkMessage::NewRule(rule)),
            other => (false, other),
        };
        match message {
            RouteNetlinkMessage::NewRoute(route) => Some(Change::Route {
                family: Family::from_address_family(route.header.address_family)?,
                table: route_table(&route),
                removed,
            }),
            RouteNetlinkMessage::NewLink(link) => Some(Change::Link {
                index: link.header.index,
                removed,
            }),
            RouteNetlinkMessage::NewRule(rule) => Some(Change::Rule {
                family: Family::from_address_family(rule.header.family)?,
                removed,
            }),
            RouteNetlinkMessage::NewAddress(address) => Some(Change::Address {
                family: Family::from_address_family(address.header.family)?,
                index: address.header.index,
                removed,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

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

    fn any_net() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (any::<u32>(), 0..=32u8)
                .prop_map(|(a, len)| IpNet::new(Ipv4Addr::from(a).into(), len).unwrap()),
            (any::<u128>(), 0..=128u8).prop_map(|(a, len)| IpNet::new(
                Ipv6Addr::from(a).into(),
                len
            )
            .unwrap()),
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
            prop_oneof![
                Just(RouteKind::Unicast),
                Just(RouteKind::Blackhole),
                Just(RouteKind::Unreachable),
                Just(RouteKind::Prohibit),
                Just(RouteKind::Throw),
            ],
        )
            .prop_map(|(dst, table, protocol, metric, oif, gateway, kind)| {
                let unicast = kind == RouteKind::Unicast;
                let gateway = gateway.filter(|_| unicast).map(|bits| match dst {
                    IpNet::V4(_) => IpAddr::from(Ipv4Addr::from(bits as u32)),
                    IpNet::V6(_) => IpAddr::from(Ipv6Addr::from(bits)),
                });
                Route {
                    dst,
                    table,
                    protocol,
                    metric,
                    oif: oif.filter(|_| unicast),
                    gateway,
                    kind,
                }
            })
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
                |(
                    v6,
                    priority,
                    table,
                    fwmark,
                    fwmask,
                    invert,
                    suppress_prefixlen,
                    (from, to, iif),
                )| {
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
            let RouteNetlinkMessage::NewRoute(decoded) =
                through_the_wire(RouteNetlinkMessage::NewRoute(encode(&route, false)))
            else {
                panic!("not a route");
            };
            prop_assert_eq!(parse_route(&decoded), Some(route));
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
        };
        assert_eq!(
            route.to_string(),
            "2001:db8::2/128 via 2001:db8::1 dev #3 table 6464 proto 250 metric 10"
        );
        let blackhole = Route {
            kind: RouteKind::Blackhole,
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
}
