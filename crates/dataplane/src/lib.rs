//! Sans-IO tunnel core for IPv4 and IPv6 in IPv6 (RFC 2473) and in IPv4
//! (RFC 2003, RFC 4213), over one or several paths per tunnel.
//!
//! Speaks the same bytes as Linux `ip6tnl` (`mode ipip6`, `ip6ip6`, `any`),
//! `ipip` and `sit`, and YAMAHA `tunnel encapsulation ipip`, minus the Tunnel
//! Encapsulation Limit option by default. Each tunnel probes its paths and
//! sends on the cheapest one that is up, failing over within a second.
//! [`Dataplane`] takes packets and `now`, and appends what to send to a
//! [`Batch`]; it opens no sockets, reads no clock and logs nothing.
//!
//! Rooms: `config` (what a tunnel and its paths are), `dataplane` (the set of
//! tunnels and the entry points), `tunnel` (per-packet decisions and path
//! selection), `encap` (the outer headers), `probe` (keepalives and ICMP
//! probes), `health` (up/down from probes, usable on its own for anything
//! probed), `fragment` (inner IPv4 fragmentation), `icmp` (errors to inner
//! senders), `mss` (TCP MSS clamping), `pmtu` (path MTU from Packet Too Big).
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
mod ident;
mod inner;
mod mode;
mod mss;
pub mod offload;
mod pmtu;
mod probe;
mod ratelimit;
mod selection;
mod stats;
mod too_big;
mod tunnel;

#[cfg(test)]
mod tests;

pub use batch::{Batch, Destination, Iter as BatchIter};
pub use config::{
    ConfigError, DEFAULT_HOP_LIMIT, EncapLimit, IPV4_OVERHEAD, MAX_PATHS, MIN_IPV4_MTU,
    MIN_IPV6_MTU, MssClamp, PathConfig, PathId, Probe, TrafficClass, TunnelConfig, TunnelId,
};
pub use dataplane::{Dataplane, OuterMeta};
pub use event::{Event, PathMtuReason, SwitchReason};
pub use health::{HealthConfig, HealthState};
pub use mode::{InnerFamilies, Mode};
pub use pmtu::PMTU_EXPIRY;
pub use ratelimit::IcmpRateLimit;
pub use stats::{DropCounters, DropReason, PathStats, TunnelStats, Verdict};
