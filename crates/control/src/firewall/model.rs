//! The validated firewall and policy-routing model.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::ports::PortRange;

/// `to = "gateway"` in an `[[allow]]`: traffic to the gateway itself rather than through it.
pub const GATEWAY_TARGET: &str = "gateway";

/// First firewall mark of the policy rules that match protocols or ports: rule `i` (counting
/// only those) marks its packets `POLICY_MARK_BASE + i + 1` and its ip rule looks that mark
/// up. The high half spells "vG"; it stays clear of the pin bypass mark (0x7636), and only
/// unmarked packets are marked, so the daemon's own marked packets keep their routing.
pub const POLICY_MARK_BASE: u32 = 0x7647_0000;

/// What happens to a packet no rule accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Accept,
    Drop,
    /// Drop and tell the sender (TCP reset, ICMP administratively prohibited).
    Reject,
}

impl Verdict {
    pub const ALL: [Self; 3] = [Self::Accept, Self::Drop, Self::Reject];

    /// The spelling used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::Drop => "drop",
            Self::Reject => "reject",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Address families a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Family {
    Ipv4,
    Ipv6,
    #[default]
    Any,
}

impl Family {
    /// The spelling used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ipv4 => "ipv4",
            Self::Ipv6 => "ipv6",
            Self::Any => "any",
        }
    }

    /// Whether an address of `net`'s family is of this family.
    pub fn admits(self, net: &IpNet) -> bool {
        match self {
            Self::Any => true,
            Self::Ipv4 => matches!(net, IpNet::V4(_)),
            Self::Ipv6 => matches!(net, IpNet::V6(_)),
        }
    }
}

/// An IP protocol (IPv4 protocol / IPv6 next header, after extension headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmpv6,
    Esp,
    Ah,
    Gre,
    /// Any other protocol by number (4 is IPv4-in-IP, 41 IPv6-in-IP).
    Number(u8),
}

impl Protocol {
    /// Names accepted in the config file, with their protocols.
    pub const NAMED: [(&'static str, Self); 8] = [
        ("tcp", Self::Tcp),
        ("udp", Self::Udp),
        ("sctp", Self::Sctp),
        ("icmp", Self::Icmp),
        ("icmpv6", Self::Icmpv6),
        ("esp", Self::Esp),
        ("ah", Self::Ah),
        ("gre", Self::Gre),
    ];

    /// IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Sctp => 132,
            Self::Icmp => 1,
            Self::Icmpv6 => 58,
            Self::Esp => 50,
            Self::Ah => 51,
            Self::Gre => 47,
            Self::Number(n) => n,
        }
    }

    /// Whether the protocol has ports (and so `ports` can match it).
    pub fn has_ports(self) -> bool {
        matches!(self, Self::Tcp | Self::Udp | Self::Sctp)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Self::NAMED.iter().find(|(_, p)| p == self) {
            Some((name, _)) => f.write_str(name),
            None => write!(f, "{}", self.number()),
        }
    }
}

/// A protocol and its destination ports, as in `management = ["tcp/22"]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Service {
    pub protocol: Protocol,
    pub ports: Vec<PortRange>,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/", self.protocol)?;
        for (i, p) in self.ports.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// The `[firewall]` section with its zones, pinholes and port forwards. Present only when the
/// config has a `[firewall]` table; without one v6gate installs no ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firewall {
    /// Traffic to the gateway from zones without their own `input`.
    pub input: Verdict,
    /// Forwarded traffic that no zone's `forward_to`, pinhole or port forward accepts.
    pub forward: Verdict,
    /// Accepted to the gateway before anything else, from every zone, in every state.
    pub management: Vec<Service>,
    /// In file order; names are unique, and a device or tunnel is in at most one zone.
    pub zones: Vec<Zone>,
    pub allows: Vec<Allow>,
    pub port_forwards: Vec<PortForward>,
}

impl Firewall {
    /// The zone called `name`, if any.
    pub fn zone(&self, name: &str) -> Option<&Zone> {
        self.zones.iter().find(|z| z.name == name)
    }

    /// Whether `zone` is an uplink: some zone forwards to it, it masquerades, or no zone
    /// forwards anywhere (a host that routes nothing, like a lone VPS). Uplinks get DHCPv6
    /// client replies.
    pub fn is_uplink(&self, zone: &Zone) -> bool {
        zone.masquerade
            || self.zones.iter().all(|z| z.forward_to.is_empty())
            || self.zones.iter().any(|z| z.forward_to.contains(&zone.name))
    }
}

/// A `[[zone]]`: a set of devices and tunnels that share a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    /// Interface names; a trailing `*` matches every name with that prefix (`ppp*`).
    pub devices: Vec<String>,
    /// v6gate tunnels whose devices join the zone.
    pub tunnels: Vec<String>,
    /// `None` = `[firewall] input`.
    pub input: Option<Verdict>,
    /// Forwarded traffic from this zone that nothing accepts; `None` = `[firewall] forward`.
    pub forward: Option<Verdict>,
    /// Zones that traffic from this one may be forwarded to.
    pub forward_to: Vec<String>,
    /// IPv4 leaving through this zone is rewritten to the outgoing device's address.
    pub masquerade: bool,
    /// TCP SYNs forwarded into or out of this zone carry an MSS that fits the route's MTU.
    pub mss_clamp: bool,
}

/// Where an `[[allow]]` lets traffic go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AllowTarget {
    /// To the gateway itself (`to = "gateway"`).
    Gateway,
    /// Forwarded into the zone of this name.
    Zone(String),
}

/// An `[[allow]]`: a pinhole for new connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    pub name: String,
    pub from: String,
    pub to: AllowTarget,
    pub family: Family,
    /// Never empty.
    pub protocols: Vec<Protocol>,
    /// Source prefixes; empty = any.
    pub sources: Vec<IpNet>,
    /// Destination prefixes; empty = any.
    pub dest: Vec<IpNet>,
    /// Destination ports; empty = any. Only with port-bearing protocols.
    pub ports: Vec<PortRange>,
}

/// A `[[port_forward]]`: DNAT of a port arriving in a zone to a host behind the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForward {
    pub name: String,
    pub from: String,
    /// Never empty; each has ports.
    pub protocols: Vec<Protocol>,
    pub port: u16,
    pub to: IpAddr,
    pub to_port: u16,
}

/// `[[table]]` and `[[rule]]`: routing tables v6gate fills and the rules that choose them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Routing {
    pub tables: Vec<RouteTable>,
    pub rules: Vec<PolicyRule>,
}

impl Routing {
    /// The table called `name`, if any.
    pub fn table(&self, name: &str) -> Option<&RouteTable> {
        self.tables.iter().find(|t| t.name == name)
    }
}

/// A `[[table]]`: a routing table and its routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    pub name: String,
    pub id: u32,
    pub routes: Vec<TableRoute>,
}

/// One route of a `[[table]]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRoute {
    pub dst: IpNet,
    /// Gateway, of `dst`'s family. At least one of `via` and `device` is set.
    pub via: Option<IpAddr>,
    pub device: Option<String>,
    pub metric: u32,
}

/// A `[[rule]]`: policy routing. Protocols and ports are matched by the firewall, which marks
/// the packets; the rule then matches the mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRule {
    pub name: String,
    pub priority: u32,
    pub from: Option<IpNet>,
    pub to: Option<IpNet>,
    /// Incoming interface (`iif`): forwarded traffic from that device only.
    pub iif: Option<String>,
    /// Routing table id.
    pub table: u32,
    /// The families the rule exists in: those of `from`/`to`, else both.
    pub family: Family,
    pub protocols: Vec<Protocol>,
    pub ports: Vec<PortRange>,
    /// `Some` exactly when `protocols` or `ports` are set.
    pub mark: Option<u32>,
}
