//! A tunnel kind as the packet loop sees it: a strategy the one loop drives, not a loop of
//! its own.
//!
//! RFC 2473/2003 tunnels (`rfc2473.rs`: ipip6, ip6ip6, any, and their IPv4 paths) and ESP
//! tunnels (`esp.rs`: raw and in UDP) are the two kinds today. The loop owns the TUN devices
//! (`tun.rs`) and reads them the same way for every kind; a kind owns its core, its output
//! batch, its underlay sockets and what it keeps per path, and answers the calls below.
//!
//! A MAP-E or DS-Lite tunnel is not a kind: `control::softwire` lowers it to an ipip6
//! `TunnelConfig` with computed endpoints, which `Command::Add` hands to the RFC 2473 kind.
//! The kernel's tc-BPF path becomes a third kind: its `inner` sees only what the BPF
//! programs punt (probes, fragments, unusual headers), its underlay socket is registered in
//! `run.rs` beside the others, and its counters join the snapshot.

use std::time::Instant;

use dataplane::{PathId, TunnelId};

use super::tun::Devices;

pub(super) trait Kind {
    /// One inner packet read from tunnel `id`'s device (`path`'s own when the tunnel has a
    /// device per path); what it produces is held until [`Kind::flush`].
    fn inner(&mut self, now: Instant, id: TunnelId, path: Option<PathId>, packet: &mut [u8]);

    /// How many packets are held for sending.
    fn held(&self) -> usize;

    /// Sends what is held (TUN-bound packets through `devices`), charging failures to
    /// `origin` when the kind cannot tell whose they are, and logs what the core reported.
    fn flush(&mut self, origin: Option<TunnelId>, devices: &mut Devices);

    /// When the kind's cores next need [`Kind::handle_timeout`].
    fn poll_timeout(&self) -> Option<Instant>;

    /// Timers due at `now`: probes, keepalives, expiries. Sends what they produce.
    fn handle_timeout(&mut self, now: Instant, devices: &mut Devices);
}
