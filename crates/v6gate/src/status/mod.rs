//! The gateway's status: typed, assembled in one place, read by `status`, metrics and `doctor`.
//!
//! The daemon fills a [`GatewayStatus`] from its host state and the packet thread's counters;
//! the decisions that turn those facts into states (when a tunnel counts as up, what a path's
//! health reads as) live in [`assemble`]. [`render`] turns it into the table a person reads,
//! `crate::metrics` into the Prometheus text format, and the control socket ([`protocol`])
//! carries it as JSON, so `status --json` shows exactly what the daemon reported.
//!
//! This module depends on no daemon internals: the daemon depends on it.

pub mod assemble;
mod ipsec;
mod model;
mod protocol;
mod render;

pub use ipsec::{ChildStatus, IkeState, IpsecStatus};
pub use model::{
    GatewayStatus, PathState, PathStatus, PinnedRoute, RouteKind, TunnelState, TunnelStatus,
    WatchStatus,
};
pub use protocol::{Request, Response, query};
pub use render::render;
