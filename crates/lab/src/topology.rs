//! The two-site topology: its machines, addresses and device names, and the knobs that
//! shape it.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Addresses of the two-site topology.
pub mod addr {
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// siteA's underlay address, the A end of the tunnel.
    pub const SITE_A_WAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);
    /// siteB's underlay address, the B end of the tunnel.
    pub const SITE_B_WAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1);
    /// The wan router on siteA's link.
    pub const WAN_A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 0xff);
    /// The wan router on siteB's link.
    pub const WAN_B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 0xff);

    pub const LAN_A4: &str = "198.51.100.0/24";
    pub const SITE_A_LAN4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    pub const HOST_A4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    pub const LAN_A6: &str = "2001:db8:a::/64";
    pub const SITE_A_LAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 1);
    pub const HOST_A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 0x10);

    pub const LAN_B4: &str = "203.0.113.0/24";
    pub const SITE_B_LAN4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
    pub const HOST_B4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
    pub const LAN_B6: &str = "2001:db8:b::/64";
    pub const SITE_B_LAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 1);
    pub const HOST_B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 0x10);

    /// Second (IPv4) underlay, present with `LabOptions::ipv4_underlay`.
    pub const SITE_A_WAN4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
    pub const WAN_A4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 254);
    pub const SITE_B_WAN4: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
    pub const WAN_B4: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 254);
}

/// Device names inside the lab namespaces.
pub mod dev {
    /// A site's LAN link, and the host's only link.
    pub const LAN: &str = "lan0";
    /// A site's IPv6 underlay link.
    pub const WAN6: &str = "wan0";
    /// A site's IPv4 underlay link.
    pub const WAN4: &str = "wan4";
    /// The wan router's links towards siteA and siteB.
    pub const WAN_TO_A6: &str = "to-a";
    pub const WAN_TO_B6: &str = "to-b";
    pub const WAN_TO_A4: &str = "to-a4";
    pub const WAN_TO_B4: &str = "to-b4";
}

/// One machine of the two-site topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    HostA,
    SiteA,
    Wan,
    SiteB,
    HostB,
}

impl Node {
    pub const ALL: [Self; 5] = [
        Self::HostA,
        Self::SiteA,
        Self::Wan,
        Self::SiteB,
        Self::HostB,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Short tag used in namespace and file names.
    pub fn tag(self) -> &'static str {
        match self {
            Self::HostA => "ha",
            Self::SiteA => "sa",
            Self::Wan => "wan",
            Self::SiteB => "sb",
            Self::HostB => "hb",
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HostA => "hostA",
            Self::SiteA => "siteA",
            Self::Wan => "wan",
            Self::SiteB => "siteB",
            Self::HostB => "hostB",
        })
    }
}

/// One of the two tunnel gateways.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Site {
    A,
    B,
}

impl Site {
    pub fn node(self) -> Node {
        match self {
            Self::A => Node::SiteA,
            Self::B => Node::SiteB,
        }
    }

    pub fn host(self) -> Node {
        match self {
            Self::A => Node::HostA,
            Self::B => Node::HostB,
        }
    }

    pub fn peer(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }

    /// The site's underlay address, its tunnel endpoint.
    pub fn wan6(self) -> Ipv6Addr {
        match self {
            Self::A => addr::SITE_A_WAN6,
            Self::B => addr::SITE_B_WAN6,
        }
    }

    /// The IPv4 prefix of the site's LAN.
    pub fn lan4(self) -> &'static str {
        match self {
            Self::A => addr::LAN_A4,
            Self::B => addr::LAN_B4,
        }
    }

    /// The IPv6 prefix of the site's LAN.
    pub fn lan6(self) -> &'static str {
        match self {
            Self::A => addr::LAN_A6,
            Self::B => addr::LAN_B6,
        }
    }

    /// The LAN host's IPv4 address.
    pub fn host4(self) -> Ipv4Addr {
        match self {
            Self::A => addr::HOST_A4,
            Self::B => addr::HOST_B4,
        }
    }

    /// The LAN host's IPv6 address.
    pub fn host6(self) -> Ipv6Addr {
        match self {
            Self::A => addr::HOST_A6,
            Self::B => addr::HOST_B6,
        }
    }

    pub(crate) fn letter(self) -> char {
        match self {
            Self::A => 'a',
            Self::B => 'b',
        }
    }
}

/// Knobs of [`Lab::two_sites`](crate::Lab::two_sites).
#[derive(Clone, Debug, Default)]
pub struct LabOptions {
    /// Add the second, IPv4 underlay (198.18.1.0/24 and 198.18.2.0/24 through wan).
    pub ipv4_underlay: bool,
    /// MTU of the siteA <-> wan IPv6 link (both ends); `None` keeps the veth default, 1500.
    pub wan_a_mtu: Option<u32>,
    /// MTU of the wan <-> siteB IPv6 link (both ends). Smaller than siteA's link, it makes
    /// the wan router answer big packets from siteA with ICMPv6 Packet Too Big.
    pub wan_b_mtu: Option<u32>,
    /// Turn IPv4 forwarding on in the sites. Off by default, so that a gateway's
    /// `ipv4_forwarding` setting, and its restore on stop, are what is observed.
    pub site_ipv4_forwarding: bool,
}
