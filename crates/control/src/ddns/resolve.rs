//! When a peer's name is asked again, and what a new answer means.
//!
//! [`Resolution`] is sans-IO, one per named path endpoint. The shell calls
//! [`Resolution::poll_query`] and, when it says so, sends the A or AAAA query; the answer (or
//! failure) goes to [`Resolution::handle_answer`] / [`Resolution::handle_failure`]; path probes
//! and DPD report the peer's liveness through [`Resolution::handle_peer`].
//!
//! While the peer answers, the name is asked again when the record's TTL runs out, but not
//! more often than every [`Resolution::MIN_TTL`] nor less often than every
//! [`Resolution::MAX_TTL`]. Once the peer is declared gone it has probably moved: the name is
//! asked every [`Resolution::DEAD_INTERVAL`] until the answer changes or the peer is back.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The re-resolution schedule of one named endpoint.
#[derive(Debug, Clone)]
pub struct Resolution {
    answer: Option<IpAddr>,
    resolved_at: Option<Instant>,
    next: Instant,
    querying: bool,
    peer_dead: bool,
    failures: u32,
    last_error: Option<String>,
}

impl Resolution {
    /// Shortest re-resolution interval, whatever the TTL.
    pub const MIN_TTL: Duration = Duration::from_secs(30);
    /// Longest re-resolution interval, whatever the TTL.
    pub const MAX_TTL: Duration = Duration::from_secs(3600);
    /// Interval while the peer is declared gone.
    pub const DEAD_INTERVAL: Duration = Duration::from_secs(5);
    /// Longest wait between attempts while the name has never resolved.
    pub const MAX_RETRY: Duration = Duration::from_secs(60);

    /// A name not resolved yet: the first query is due at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            answer: None,
            resolved_at: None,
            next: now,
            querying: false,
            peer_dead: false,
            failures: 0,
            last_error: None,
        }
    }

    /// The address in use, if the name resolved.
    pub fn answer(&self) -> Option<IpAddr> {
        self.answer
    }

    /// When the name last resolved.
    pub fn resolved_at(&self) -> Option<Instant> {
        self.resolved_at
    }

    /// Why the last query failed, while it has not succeeded since.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Whether a query should leave now; it is then in flight until an answer or failure.
    pub fn poll_query(&mut self, now: Instant) -> bool {
        if self.querying || now < self.next {
            return false;
        }
        self.querying = true;
        true
    }

    /// When to call [`Resolution::poll_query`] next (`None` while a query is in flight).
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.querying).then_some(self.next)
    }

    /// The records of the path's family, with the answer's TTL. Returns the new address when
    /// it differs from the one in use: the path must be re-pointed (and IKE re-initiated).
    ///
    /// While the address in use is still among the records, it stays: round-robin answers must
    /// not bounce a tunnel between a peer's addresses.
    pub fn handle_answer(
        &mut self,
        now: Instant,
        records: &[IpAddr],
        ttl: Duration,
    ) -> Option<IpAddr> {
        self.querying = false;
        let Some(&first) = records.first() else {
            return self.handle_failure(now, "the name has no address of the path's family");
        };
        self.failures = 0;
        self.last_error = None;
        self.resolved_at = Some(now);
        let changed = match self.answer {
            Some(current) if records.contains(&current) => None,
            _ => Some(first),
        };
        if changed.is_some() {
            self.answer = changed;
            // A new address is a new chance: back to the TTL schedule until probes say otherwise.
            self.peer_dead = false;
        }
        self.next = now
            + if self.peer_dead {
                Self::DEAD_INTERVAL
            } else {
                ttl.clamp(Self::MIN_TTL, Self::MAX_TTL)
            };
        changed
    }

    /// The query failed (timeout, SERVFAIL, NXDOMAIN, no record of the family). The address
    /// in use, if any, stays.
    pub fn handle_failure(&mut self, now: Instant, why: &str) -> Option<IpAddr> {
        self.querying = false;
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(why.to_owned());
        let wait = if self.answer.is_none() {
            // Not started yet: 5 s, 10 s, 20 s ... up to a minute.
            Self::DEAD_INTERVAL
                .saturating_mul(1 << self.failures.saturating_sub(1).min(8))
                .min(Self::MAX_RETRY)
        } else if self.peer_dead {
            Self::DEAD_INTERVAL
        } else {
            Self::MIN_TTL
        };
        self.next = now + wait;
        None
    }

    /// Path probes or DPD declared the peer gone (`alive = false`) or back.
    pub fn handle_peer(&mut self, now: Instant, alive: bool) {
        if self.peer_dead != alive {
            return;
        }
        self.peer_dead = !alive;
        if !alive && !self.querying {
            self.next = self.next.min(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn ttl_is_clamped_between_30_s_and_an_hour() {
        let t0 = Instant::now();
        let mut r = Resolution::new(t0);
        assert!(r.poll_query(t0));
        assert!(!r.poll_query(t0), "one query in flight");
        assert_eq!(
            r.handle_answer(t0, &[ip("2001:db8::1")], secs(5)),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(r.poll_timeout(), Some(t0 + secs(30)));
        assert!(r.poll_query(t0 + secs(30)));
        assert_eq!(
            r.handle_answer(t0 + secs(30), &[ip("2001:db8::1")], secs(86_400)),
            None
        );
        assert_eq!(r.poll_timeout(), Some(t0 + secs(30) + secs(3600)));
        assert_eq!(r.handle_answer(t0, &[ip("2001:db8::1")], secs(300)), None);
        assert_eq!(r.poll_timeout(), Some(t0 + secs(300)));
    }

    #[test]
    fn a_dead_peer_is_asked_for_every_5_s_until_the_answer_changes() {
        let t0 = Instant::now();
        let mut r = Resolution::new(t0);
        r.poll_query(t0);
        r.handle_answer(t0, &[ip("2001:db8::1")], secs(600));
        r.handle_peer(t0 + secs(10), false);
        assert_eq!(r.poll_timeout(), Some(t0 + secs(10)));
        let mut now = t0 + secs(10);
        for _ in 0..3 {
            assert!(r.poll_query(now));
            assert_eq!(r.handle_answer(now, &[ip("2001:db8::1")], secs(600)), None);
            assert_eq!(r.poll_timeout(), Some(now + secs(5)));
            now += secs(5);
        }
        assert!(r.poll_query(now));
        assert_eq!(
            r.handle_answer(now, &[ip("2001:db8::2")], secs(600)),
            Some(ip("2001:db8::2"))
        );
        assert_eq!(r.poll_timeout(), Some(now + secs(600)));
    }

    #[test]
    fn a_peer_back_returns_to_the_ttl() {
        let t0 = Instant::now();
        let mut r = Resolution::new(t0);
        r.poll_query(t0);
        r.handle_answer(t0, &[ip("198.51.100.1")], secs(120));
        r.handle_peer(t0, false);
        r.poll_query(t0);
        r.handle_answer(t0, &[ip("198.51.100.1")], secs(120));
        assert_eq!(r.poll_timeout(), Some(t0 + secs(5)));
        r.handle_peer(t0 + secs(1), true);
        r.poll_query(t0 + secs(5));
        r.handle_answer(t0 + secs(5), &[ip("198.51.100.1")], secs(120));
        assert_eq!(r.poll_timeout(), Some(t0 + secs(125)));
    }

    #[test]
    fn the_address_in_use_stays_while_it_is_answered() {
        let t0 = Instant::now();
        let mut r = Resolution::new(t0);
        r.poll_query(t0);
        r.handle_answer(t0, &[ip("2001:db8::2"), ip("2001:db8::1")], secs(60));
        assert_eq!(r.answer(), Some(ip("2001:db8::2")));
        r.poll_query(t0 + secs(60));
        assert_eq!(
            r.handle_answer(
                t0 + secs(60),
                &[ip("2001:db8::1"), ip("2001:db8::2")],
                secs(60)
            ),
            None
        );
    }

    #[test]
    fn failures_keep_the_address_and_back_off_before_the_first_answer() {
        let t0 = Instant::now();
        let mut r = Resolution::new(t0);
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..6 {
            assert!(r.poll_query(now));
            r.handle_failure(now, "SERVFAIL");
            let next = r.poll_timeout().unwrap();
            waits.push((next - now).as_secs());
            now = next;
        }
        assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
        assert_eq!(r.last_error(), Some("SERVFAIL"));
        r.poll_query(now);
        r.handle_answer(now, &[ip("2001:db8::1")], secs(60));
        r.poll_query(now + secs(60));
        r.handle_failure(now + secs(60), "timeout");
        assert_eq!(r.answer(), Some(ip("2001:db8::1")));
        assert_eq!(r.poll_timeout(), Some(now + secs(90)));
    }

    #[test]
    fn an_empty_answer_is_a_failure() {
        let t0 = Instant::now();
        let mut r = Resolution::new(t0);
        r.poll_query(t0);
        assert_eq!(r.handle_answer(t0, &[], secs(60)), None);
        assert!(r.last_error().is_some());
        assert_eq!(r.answer(), None);
    }
}
