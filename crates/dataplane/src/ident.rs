//! Identification values for the packets the core builds.

/// Identification values for packets the core originates, shared by all
/// tunnels so that fragments of different tunnels never collide at a host
/// that terminates several of them.
#[derive(Debug, Default)]
pub(crate) struct Idents {
    /// ICMPv4 errors, outer IPv4 headers, inner probes.
    ipv4: u16,
    /// Outer IPv6 Fragment headers.
    ipv6: u32,
}

impl Idents {
    pub(crate) fn next_ipv4(&mut self) -> u16 {
        self.ipv4 = self.ipv4.wrapping_add(1);
        self.ipv4
    }

    pub(crate) fn next_ipv6(&mut self) -> u32 {
        self.ipv6 = self.ipv6.wrapping_add(1);
        self.ipv6
    }
}
