//! Sans-IO tunnel core for RFC 2473 IPv4-in-IPv6 and IPv6-in-IPv6.
//!
//! Speaks the same bytes as Linux `ip6tnl` (`mode ipip6`, `ip6ip6`, `any`) and
//! YAMAHA `tunnel encapsulation ipip`, minus the Tunnel Encapsulation Limit
//! option by default. [`Dataplane`] takes packets and `now`, and appends what
//! to send to a [`Batch`]; it opens no sockets, reads no clock and logs nothing.
//!
//! Rooms: `config` (what a tunnel is), `dataplane` (the set of tunnels and the
//! entry points), `tunnel` (per-packet decisions), `encap` (the outer header),
//! `fragment` (inner IPv4 fragmentation), `icmp` (errors to inner senders),
//! `mss` (TCP MSS clamping), `pmtu` (path MTU from Packet Too Big), `health`
//! (up/down from probes, usable on its own for anything probed).
#![forbid(unsafe_code)]

mod batch;
mod config;
mod dataplane;
mod encap;
pub mod esp;
mod event;
mod fragment;
pub mod health;
mod icmp;
mod inner;
mod mss;
mod pmtu;
mod ratelimit;
mod stats;
mod tunnel;

#[cfg(test)]
mod tests;

pub use batch::{Batch, Destination, Iter as BatchIter};
pub use config::{
    ConfigError, DEFAULT_HOP_LIMIT, EncapLimit, MIN_IPV4_MTU, MIN_IPV6_MTU, Mode, MssClamp,
    TrafficClass, TunnelConfig, TunnelId,
};
pub use dataplane::{Dataplane, OuterMeta};
pub use event::{Event, PathMtuReason};
pub use health::{HealthConfig, HealthState};
pub use pmtu::PMTU_EXPIRY;
pub use ratelimit::IcmpRateLimit;
pub use stats::{DropCounters, DropReason, TunnelStats, Verdict};
