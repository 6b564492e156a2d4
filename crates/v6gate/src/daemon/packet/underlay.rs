//! The underlay side of the packet loop: batched receives on the RFC 2473 kind's raw sockets
//! and the ICMP errors routers send about our outer packets, for every kind.

use std::io;
use std::time::Instant;

use dataplane::{DropReason, Verdict};
use tracing::warn;

use super::kind::Kind;
use super::run::Loop;
use super::rx::RX_BURST;

impl Loop {
    /// The RFC 2473 kind's raw socket of `ipv4` family and protocol 4 (`ipip`) or 41, until it
    /// is empty, sending what the packets produced every `RX_BURST` packets and at the end.
    pub(super) fn drain_rfc2473(&mut self, now: Instant, ipv4: bool, ipip: bool) {
        let (kind, rx, devices) = (&mut self.rfc2473, &mut self.rx, &mut self.devices);
        let socket = if ipv4 { "raw IPv4" } else { "raw IPv6" };
        let mut held = 0;
        loop {
            let received = if ipv4 {
                kind.receive4(now, ipip, rx)
            } else {
                kind.receive6(now, ipip, rx)
            };
            match received {
                Ok(0) => break,
                Ok(n) => held += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("{socket} socket receive failed: {e}");
                    break;
                }
            }
            if held >= RX_BURST {
                kind.flush(None, devices);
                held = 0;
            }
        }
        kind.flush(None, devices);
    }

    /// ICMPv6 errors (Packet Too Big) about an RFC 2473 tunnel's packets, else about ESP.
    pub(super) fn drain_icmp6(&mut self, now: Instant) {
        loop {
            let r = match self.icmp.recv(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("ICMPv6 socket receive failed: {e}");
                    return;
                }
            };
            let message = &self.buf[..r.len];
            let verdict = self.rfc2473.core.handle_icmpv6(now, r.src, r.dst, message);
            if verdict == Verdict::Dropped(DropReason::NoTunnel)
                && let Some(report) = dataplane::esp::too_big_v6(r.src, r.dst, message)
            {
                self.esp.lower_path_mtu(now, report, &mut self.devices);
            }
            self.rfc2473.flush(None, &mut self.devices);
        }
    }

    /// ICMPv4 destination unreachable (fragmentation needed) about paths over IPv4.
    pub(super) fn drain_icmp4(&mut self, now: Instant) {
        loop {
            let r = match self.icmp4.recv(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("ICMPv4 socket receive failed: {e}");
                    return;
                }
            };
            let datagram = &self.buf[..r.len];
            let verdict = self.rfc2473.core.handle_icmpv4(now, datagram);
            if verdict == Verdict::Dropped(DropReason::NoTunnel)
                && let Some(report) = dataplane::esp::too_big_v4(datagram)
            {
                self.esp.lower_path_mtu(now, report, &mut self.devices);
            }
            self.rfc2473.flush(None, &mut self.devices);
        }
    }
}
