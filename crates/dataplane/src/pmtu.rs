//! Path MTU of a tunnel as learnt from ICMPv6 Packet Too Big (RFC 8201).

use std::time::{Duration, Instant};

/// How long a lowered path MTU holds before the configured one is tried again
/// (RFC 8201 §4: "at least 5 minutes", 10 recommended).
pub const PMTU_EXPIRY: Duration = Duration::from_secs(10 * 60);

/// What a Packet Too Big did to the path MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Update {
    Lowered,
    /// Same value again: the evidence is fresh, so the expiry moves on.
    Refreshed,
    /// Not below the current value: path MTU never grows on a PTB.
    Ignored,
}

#[derive(Debug, Clone)]
pub(crate) struct PathMtu {
    configured: u16,
    lowered: Option<(u16, Instant)>,
}

impl PathMtu {
    pub(crate) fn new(configured: u16) -> Self {
        Self {
            configured,
            lowered: None,
        }
    }

    /// The effective inner MTU.
    pub(crate) fn current(&self) -> u16 {
        self.lowered.map_or(self.configured, |(mtu, _)| mtu)
    }

    pub(crate) fn expires(&self) -> Option<Instant> {
        self.lowered.map(|(_, at)| at)
    }

    pub(crate) fn lower(&mut self, now: Instant, mtu: u16) -> Update {
        let current = self.current();
        let expires = now + PMTU_EXPIRY;
        if mtu < current {
            self.lowered = Some((mtu, expires));
            Update::Lowered
        } else if mtu == current && self.lowered.is_some() {
            self.lowered = Some((mtu, expires));
            Update::Refreshed
        } else {
            Update::Ignored
        }
    }

    /// Returns to the configured MTU once the lowered one has expired; true if it did.
    pub(crate) fn expire(&mut self, now: Instant) -> bool {
        match self.lowered {
            Some((_, at)) if at <= now => {
                self.lowered = None;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowers_never_raises_and_expires() {
        let t0 = Instant::now();
        let mut pmtu = PathMtu::new(1460);
        assert_eq!(pmtu.lower(t0, 1500), Update::Ignored);
        assert_eq!(pmtu.lower(t0, 1460), Update::Ignored);
        assert_eq!(pmtu.expires(), None);
        assert_eq!(pmtu.lower(t0, 1400), Update::Lowered);
        assert_eq!(pmtu.current(), 1400);
        assert_eq!(pmtu.lower(t0, 1420), Update::Ignored);
        assert_eq!(pmtu.current(), 1400);
        assert_eq!(pmtu.expires(), Some(t0 + PMTU_EXPIRY));

        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(pmtu.lower(t1, 1400), Update::Refreshed);
        assert_eq!(pmtu.expires(), Some(t1 + PMTU_EXPIRY));

        assert!(!pmtu.expire(t0 + PMTU_EXPIRY));
        assert_eq!(pmtu.current(), 1400);
        assert!(pmtu.expire(t1 + PMTU_EXPIRY));
        assert_eq!(pmtu.current(), 1460);
        assert_eq!(pmtu.expires(), None);
        assert!(!pmtu.expire(t1 + PMTU_EXPIRY * 2));
    }
}
