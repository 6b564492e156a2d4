//! What the core tells the shell about, apart from packets.

use core::fmt;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::health::HealthReason;
use crate::{HealthState, PathId, TunnelId};

/// Something the shell may want to act on or log; taken with
/// [`Dataplane::poll_event`](crate::Dataplane::poll_event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A path's effective inner MTU changed; `mtu` is the new value. When it is
    /// the active path (see [`TunnelStats::path_mtu`](crate::TunnelStats::path_mtu)),
    /// a shell may mirror it onto the TUN device so local senders see it
    /// directly.
    PathMtuChanged {
        tunnel: TunnelId,
        path: PathId,
        mtu: u16,
        reason: PathMtuReason,
    },
    /// A path's probes made it go up or down.
    PathStateChanged {
        tunnel: TunnelId,
        path: PathId,
        state: HealthState,
        reason: HealthReason,
    },
    /// Traffic of the tunnel now leaves on another path. Only the outer path
    /// changes: the TUN device, inner routes and inner sessions are untouched.
    ActivePathChanged {
        tunnel: TunnelId,
        from: PathId,
        to: PathId,
        reason: SwitchReason,
    },
}

/// Why the active path changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SwitchReason {
    /// The active path went down; traffic moved at once to the cheapest path
    /// that is up.
    ActiveDown,
    /// A cheaper path is up, and the hold-down since the last switch is over.
    Failback,
    /// [`Dataplane::update_tunnel`](crate::Dataplane::update_tunnel) removed the
    /// active path.
    Reconfigured,
}

impl fmt::Display for SwitchReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ActiveDown => "active path down",
            Self::Failback => "failback to a cheaper path",
            Self::Reconfigured => "active path removed by reconfiguration",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathMtuReason {
    /// An ICMPv6 Packet Too Big from `from` reported a link MTU of `reported`.
    PacketTooBig { from: Ipv6Addr, reported: u32 },
    /// An ICMPv4 Fragmentation Needed from `from` reported a next-hop MTU of `reported`
    /// (RFC 1191), for a path over IPv4.
    FragmentationNeeded { from: Ipv4Addr, reported: u16 },
    /// The lowered value aged out and the configured MTU applies again
    /// (RFC 8201 §4).
    Expired,
    /// [`Dataplane::update_tunnel`](crate::Dataplane::update_tunnel) changed
    /// the MTU or the framing.
    Reconfigured,
}

impl fmt::Display for PathMtuReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PacketTooBig { from, reported } => {
                write!(f, "packet too big from {from}, link mtu {reported}")
            }
            Self::FragmentationNeeded { from, reported } => {
                write!(
                    f,
                    "fragmentation needed from {from}, next-hop mtu {reported}"
                )
            }
            Self::Expired => f.write_str("lowered value expired"),
            Self::Reconfigured => f.write_str("reconfigured"),
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PathMtuChanged {
                tunnel,
                path,
                mtu,
                reason,
            } => write!(f, "{tunnel} {path}: path mtu now {mtu} ({reason})"),
            Self::PathStateChanged {
                tunnel,
                path,
                state,
                reason,
            } => write!(f, "{tunnel} {path}: {state} ({reason})"),
            Self::ActivePathChanged {
                tunnel,
                from,
                to,
                reason,
            } => write!(f, "{tunnel}: traffic moves from {from} to {to} ({reason})"),
        }
    }
}

/// Events waiting beyond this are dropped oldest first: a shell that never
/// polls must not make the core grow without bound.
pub(crate) const MAX_EVENTS: usize = 1024;

/// The events waiting for the shell.
#[derive(Debug, Default)]
pub(crate) struct EventQueue(VecDeque<Event>);

impl EventQueue {
    pub(crate) fn push(&mut self, event: Event) {
        if self.0.len() == MAX_EVENTS {
            self.0.pop_front();
        }
        self.0.push_back(event);
    }

    pub(crate) fn pop(&mut self) -> Option<Event> {
        self.0.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_tunnel_mtu_and_cause() {
        let event = Event::PathMtuChanged {
            tunnel: TunnelId(2),
            path: PathId(1),
            mtu: 1412,
            reason: PathMtuReason::PacketTooBig {
                from: "2001:db8::99".parse().unwrap(),
                reported: 1452,
            },
        };
        assert_eq!(
            event.to_string(),
            "tunnel#2 path#1: path mtu now 1412 (packet too big from 2001:db8::99, link mtu 1452)"
        );
        let event = Event::PathStateChanged {
            tunnel: TunnelId(2),
            path: PathId(0),
            state: HealthState::Down,
            reason: HealthReason::ProbesLost(3),
        };
        assert_eq!(event.to_string(), "tunnel#2 path#0: down (3 probes lost)");
        let event = Event::ActivePathChanged {
            tunnel: TunnelId(2),
            from: PathId(0),
            to: PathId(1),
            reason: SwitchReason::ActiveDown,
        };
        assert_eq!(
            event.to_string(),
            "tunnel#2: traffic moves from path#0 to path#1 (active path down)"
        );
    }

    #[test]
    fn queue_is_bounded_and_keeps_the_newest() {
        let mut queue = EventQueue::default();
        for mtu in 0..(MAX_EVENTS as u16 + 10) {
            queue.push(Event::PathMtuChanged {
                tunnel: TunnelId(0),
                path: PathId(0),
                mtu,
                reason: PathMtuReason::Expired,
            });
        }
        let mtus: Vec<u16> = std::iter::from_fn(|| queue.pop())
            .filter_map(|e| match e {
                Event::PathMtuChanged { mtu, .. } => Some(mtu),
                _ => None,
            })
            .collect();
        assert_eq!(mtus.len(), MAX_EVENTS);
        assert_eq!(mtus[0], 10);
        assert_eq!(*mtus.last().unwrap(), MAX_EVENTS as u16 + 9);
    }
}
