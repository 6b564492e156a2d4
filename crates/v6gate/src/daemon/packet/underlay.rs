//! The underlay side of the packet loop: batched receives on the RFC 2473 kind's raw sockets
//! and the ICMP errors routers send about our outer packets, for every kind.

use std::io::{self, IoSliceMut};
use std::time::Instant;

use dataplane::{DropReason, Verdict};
use sys::raw::BATCH_SIZE;
use tracing::warn;

use super::kind::Kind;
use super::run::Loop;

/// Room for one datagram in a receive batch: a raw IPv6 socket hands over at most a 65,535-byte
/// payload, a raw IPv4 socket at most a 65,535-byte datagram (both can be GRO-merged trains).
const RX_SLOT: usize = 64 * 1024;

/// Underlay packets taken in before what they produced is sent: enough for the coalescer to
/// merge a burst of one flow, few enough that the batch stays small and latency low.
pub(super) const RX_BURST: usize = 32;

/// [`BATCH_SIZE`] receive slots of [`RX_SLOT`] bytes, allocated once.
pub(super) struct RxBuffers {
    storage: Vec<u8>,
}

impl RxBuffers {
    pub(super) fn new() -> Self {
        Self {
            storage: vec![0; BATCH_SIZE * RX_SLOT],
        }
    }

    pub(super) fn slices(&mut self) -> Vec<IoSliceMut<'_>> {
        self.storage
            .chunks_mut(RX_SLOT)
            .map(IoSliceMut::new)
            .collect()
    }

    pub(super) fn slot(&mut self, index: usize, len: usize) -> &mut [u8] {
        let start = index * RX_SLOT;
        &mut self.storage[start..start + len.min(RX_SLOT)]
    }
}

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
