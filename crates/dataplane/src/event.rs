//! What the core tells the shell about, apart from packets.

use core::fmt;
use std::net::Ipv6Addr;

use crate::TunnelId;

/// Something the shell may want to act on or log; taken with
/// [`Dataplane::poll_event`](crate::Dataplane::poll_event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The tunnel's effective inner MTU changed; `mtu` is the new value. A shell
    /// may mirror it onto the TUN device so local senders see it directly.
    PathMtuChanged {
        tunnel: TunnelId,
        mtu: u16,
        reason: PathMtuReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathMtuReason {
    /// An ICMPv6 Packet Too Big from `from` reported a link MTU of `reported`.
    PacketTooBig { from: Ipv6Addr, reported: u32 },
    /// The lowered value aged out and the configured MTU applies again
    /// (RFC 8201 §4).
    Expired,
    /// [`Dataplane::update_tunnel`](crate::Dataplane::update_tunnel) changed
    /// the MTU or the framing.
    Reconfigured,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PathMtuChanged {
                tunnel,
                mtu,
                reason,
            } => {
                write!(f, "{tunnel}: path mtu now {mtu} (")?;
                match reason {
                    PathMtuReason::PacketTooBig { from, reported } => {
                        write!(f, "packet too big from {from}, link mtu {reported}")?;
                    }
                    PathMtuReason::Expired => f.write_str("lowered value expired")?,
                    PathMtuReason::Reconfigured => f.write_str("reconfigured")?,
                }
                f.write_str(")")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_tunnel_mtu_and_cause() {
        let event = Event::PathMtuChanged {
            tunnel: TunnelId(2),
            mtu: 1412,
            reason: PathMtuReason::PacketTooBig {
                from: "2001:db8::99".parse().unwrap(),
                reported: 1452,
            },
        };
        assert_eq!(
            event.to_string(),
            "tunnel#2: path mtu now 1412 (packet too big from 2001:db8::99, link mtu 1452)"
        );
    }
}
