//! When one DDNS entry sends an update for one family.
//!
//! [`Updater`] is sans-IO. The shell drives it in this order:
//!
//! 1. [`Updater::restore`] once, with what the state file says was last accepted;
//! 2. [`Updater::handle_address`] whenever the address to publish may have changed;
//! 3. [`Updater::poll_update`] — `Some(addr)`: send an update for `addr` now;
//! 4. [`Updater::handle_outcome`] with the provider's answer, which says what to persist;
//! 5. sleep until [`Updater::poll_timeout`] or the next address event, then back to 3.
//!
//! The rules: send only when the address differs from the last one the provider accepted, or
//! when that acceptance is [`Policy::refresh`] old; never twice within the entry's minimum
//! interval; after an error wait exponentially longer (with jitter, capped); after an
//! authentication or account error send nothing until the entry is created again (a reload).

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Timing rules of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// No two updates leave closer together than this.
    pub min_interval: Duration,
    /// An unchanged address is sent again after this long, in case the record was lost.
    pub refresh: Duration,
    /// Wait after the first failure; doubled for each further one.
    pub backoff_first: Duration,
    /// Longest wait between failed attempts.
    pub backoff_cap: Duration,
}

impl Policy {
    /// Forced refresh every 24 h.
    pub const REFRESH: Duration = Duration::from_secs(24 * 3600);
    /// First retry after 30 s.
    pub const BACKOFF_FIRST: Duration = Duration::from_secs(30);
    /// Retries at most every 30 min.
    pub const BACKOFF_CAP: Duration = Duration::from_secs(30 * 60);

    pub fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            refresh: Self::REFRESH,
            backoff_first: Self::BACKOFF_FIRST,
            backoff_cap: Self::BACKOFF_CAP,
        }
    }
}

/// What the provider made of an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The record holds the address now (dyndns2 `good` and `nochg`, Value Domain `status=0`,
    /// HTTP 2xx, DNS NOERROR).
    Accepted,
    /// Try again later: a 503 or 429, a 5xx, dyndns2 `911`/`dnserr`, a network error. The
    /// provider may name the least wait (`Retry-After`, dyndns2's 10 minutes after `911`).
    Retry {
        reason: String,
        at_least: Option<Duration>,
    },
    /// Sending again cannot help until the configuration changes: bad credentials (`badauth`,
    /// Value Domain's non-zero status, HTTP 401/403, TSIG refused) or an account problem
    /// (`nohost`, `notfqdn`, `!yours`, `abuse`, `numhost`). The entry stops until reload.
    Stop { reason: String },
}

/// The last answer an entry got, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastResult {
    Accepted { addr: IpAddr },
    Retry { reason: String },
    Stopped { reason: String },
}

impl std::fmt::Display for LastResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Accepted { addr } => write!(f, "accepted {addr}"),
            Self::Retry { reason } => write!(f, "will retry: {reason}"),
            Self::Stopped { reason } => write!(f, "stopped until reload: {reason}"),
        }
    }
}

/// A snapshot for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The address the provider last accepted, and when.
    pub published: Option<(IpAddr, Instant)>,
    /// The address the device has now, if it can be published.
    pub current: Option<IpAddr>,
    pub last_result: Option<LastResult>,
    /// When the next update may leave (`None`: nothing to send, or stopped).
    pub next_attempt: Option<Instant>,
    /// Failed attempts in a row.
    pub failures: u32,
}

/// The update decision of one entry and family.
#[derive(Debug, Clone)]
pub struct Updater {
    policy: Policy,
    published: Option<(IpAddr, Instant)>,
    current: Option<IpAddr>,
    in_flight: Option<IpAddr>,
    last_sent: Option<Instant>,
    failures: u32,
    retry_at: Option<Instant>,
    stopped: bool,
    last_result: Option<LastResult>,
    jitter: u64,
    /// When the updater was made: "due at once" without reading the clock.
    created: Instant,
}

impl Updater {
    /// `seed` drives the backoff jitter (any value; the shell passes a random one so that many
    /// gateways behind one provider outage do not retry in step).
    pub fn new(policy: Policy, seed: u64, now: Instant) -> Self {
        Self {
            policy,
            published: None,
            current: None,
            in_flight: None,
            last_sent: None,
            failures: 0,
            retry_at: None,
            stopped: false,
            last_result: None,
            jitter: seed,
            created: now,
        }
    }

    /// The provider accepted `addr` at `accepted_at` (from the state file: a restart must not
    /// send it again).
    pub fn restore(&mut self, addr: IpAddr, accepted_at: Instant) {
        self.published = Some((addr, accepted_at));
    }

    /// The address the device has now (`None`: no publishable address).
    pub fn handle_address(&mut self, addr: Option<IpAddr>) {
        self.current = addr;
    }

    /// The address to send an update for now, if one is due; the update is then in flight
    /// until [`Updater::handle_outcome`].
    pub fn poll_update(&mut self, now: Instant) -> Option<IpAddr> {
        let at = self.next_attempt()?;
        if now < at {
            return None;
        }
        let addr = self.current?;
        self.in_flight = Some(addr);
        self.last_sent = Some(now);
        Some(addr)
    }

    /// The provider's answer to the update in flight. Returns the address to persist as
    /// accepted, if it was.
    pub fn handle_outcome(&mut self, now: Instant, outcome: Outcome) -> Option<IpAddr> {
        let addr = self.in_flight.take()?;
        match outcome {
            Outcome::Accepted => {
                self.published = Some((addr, now));
                self.failures = 0;
                self.retry_at = None;
                self.last_result = Some(LastResult::Accepted { addr });
                Some(addr)
            }
            Outcome::Retry { reason, at_least } => {
                self.failures = self.failures.saturating_add(1);
                let wait = self.backoff().max(at_least.unwrap_or_default());
                self.retry_at = Some(now + wait);
                self.last_result = Some(LastResult::Retry { reason });
                None
            }
            Outcome::Stop { reason } => {
                self.failures = self.failures.saturating_add(1);
                self.stopped = true;
                self.last_result = Some(LastResult::Stopped { reason });
                None
            }
        }
    }

    /// When [`Updater::poll_update`] should be called next, without an address event.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_attempt()
    }

    /// Whether an authentication or account error stopped the entry.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    pub fn status(&self) -> Status {
        Status {
            published: self.published,
            current: self.current,
            last_result: self.last_result.clone(),
            next_attempt: self.next_attempt(),
            failures: self.failures,
        }
    }

    /// The earliest moment an update is due and allowed, if one is due at all.
    fn next_attempt(&self) -> Option<Instant> {
        if self.stopped || self.in_flight.is_some() {
            return None;
        }
        let current = self.current?;
        let due = match self.published {
            Some((addr, at)) if addr == current => at + self.policy.refresh,
            // Never accepted, or accepted a different value: due at once.
            _ => self.created,
        };
        let spaced = self.last_sent.map(|t| t + self.policy.min_interval);
        [Some(due), spaced, self.retry_at]
            .into_iter()
            .flatten()
            .max()
    }

    /// The wait after the latest failure: `backoff_first * 2^(failures - 1)`, capped, and then
    /// "equal jitter": a uniform draw from the upper half of that.
    fn backoff(&mut self) -> Duration {
        let exp = self.failures.saturating_sub(1).min(20);
        let full = self
            .policy
            .backoff_first
            .saturating_mul(1 << exp)
            .min(self.policy.backoff_cap);
        let half = full / 2;
        let draw = splitmix64(&mut self.jitter);
        let extra = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        let extra = if extra == 0 { 0 } else { draw % (extra + 1) };
        half + Duration::from_millis(extra)
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a statistically sound, non-cryptographic stream for
/// spreading retries; nothing secret depends on it.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: &str = "2001:db8:1::1";
    const B: &str = "2001:db8:2::1";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn updater(t0: Instant) -> Updater {
        Updater::new(Policy::new(secs(60)), 7, t0)
    }

    fn retry() -> Outcome {
        Outcome::Retry {
            reason: "HTTP 503".into(),
            at_least: None,
        }
    }

    #[test]
    fn sends_a_new_address_at_once_and_only_once() {
        let t0 = Instant::now();
        let mut u = updater(t0);
        assert_eq!(u.poll_update(t0), None, "nothing to publish yet");
        assert_eq!(u.poll_timeout(), None);
        u.handle_address(Some(ip(A)));
        assert_eq!(u.poll_update(t0), Some(ip(A)));
        assert_eq!(u.poll_update(t0), None, "one update in flight at a time");
        assert_eq!(u.handle_outcome(t0, Outcome::Accepted), Some(ip(A)));
        // The same address again: nothing until the daily refresh.
        u.handle_address(Some(ip(A)));
        assert_eq!(u.poll_update(t0 + secs(3600)), None);
        assert_eq!(u.poll_timeout(), Some(t0 + Policy::REFRESH));
        assert_eq!(u.poll_update(t0 + Policy::REFRESH), Some(ip(A)));
    }

    #[test]
    fn a_restored_address_is_not_sent_again() {
        let t0 = Instant::now();
        let mut u = updater(t0);
        u.restore(ip(A), t0);
        u.handle_address(Some(ip(A)));
        assert_eq!(u.poll_update(t0 + secs(1)), None);
        u.handle_address(Some(ip(B)));
        assert_eq!(u.poll_update(t0 + secs(1)), Some(ip(B)));
    }

    #[test]
    fn changes_within_the_minimum_interval_wait_for_it() {
        let t0 = Instant::now();
        let mut u = updater(t0);
        u.handle_address(Some(ip(A)));
        u.poll_update(t0).unwrap();
        u.handle_outcome(t0, Outcome::Accepted);
        u.handle_address(Some(ip(B)));
        assert_eq!(u.poll_update(t0 + secs(59)), None);
        assert_eq!(u.poll_timeout(), Some(t0 + secs(60)));
        assert_eq!(u.poll_update(t0 + secs(60)), Some(ip(B)));
    }

    #[test]
    fn an_address_that_moves_back_before_sending_sends_nothing() {
        let t0 = Instant::now();
        let mut u = updater(t0);
        u.restore(ip(A), t0);
        u.handle_address(Some(ip(B)));
        u.handle_address(Some(ip(A)));
        assert_eq!(u.poll_update(t0 + secs(5)), None);
    }

    #[test]
    fn errors_back_off_exponentially_up_to_the_cap() {
        let t0 = Instant::now();
        let mut u = updater(t0);
        u.handle_address(Some(ip(A)));
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..10 {
            assert_eq!(u.poll_update(now), Some(ip(A)));
            u.handle_outcome(now, retry());
            let next = u.poll_timeout().unwrap();
            waits.push(next - now);
            assert_eq!(u.poll_update(next - Duration::from_millis(1)), None);
            now = next;
        }
        // Equal jitter: failure n waits between half and all of min(30 s * 2^(n-1), 30 min),
        // and never less than the minimum interval.
        for (n, wait) in waits.iter().enumerate() {
            let full = (secs(30) * (1 << n)).min(secs(1800));
            assert!(*wait >= (full / 2).max(secs(60)), "failure {n}: {wait:?}");
            assert!(*wait <= full.max(secs(60)), "failure {n}: {wait:?}");
        }
        assert!(waits[9] >= secs(900));
        assert_eq!(u.status().failures, 10);
        // Success resets the count.
        u.poll_update(now).unwrap();
        u.handle_outcome(now, Outcome::Accepted);
        assert_eq!(u.status().failures, 0);
    }

    #[test]
    fn a_provider_wait_is_honoured() {
        let t0 = Instant::now();
        let mut u = updater(t0);
        u.handle_address(Some(ip(A)));
        u.poll_update(t0).unwrap();
        u.handle_outcome(
            t0,
            Outcome::Retry {
                reason: "911".into(),
                at_least: Some(secs(600)),
            },
        );
        assert!(u.poll_timeout().unwrap() >= t0 + secs(600));
    }

    #[test]
    fn an_authentication_error_stops_the_entry() {
        let t0 = Instant::now();
        let mut u = updater(t0);
        u.handle_address(Some(ip(A)));
        u.poll_update(t0).unwrap();
        u.handle_outcome(
            t0,
            Outcome::Stop {
                reason: "badauth".into(),
            },
        );
        assert!(u.is_stopped());
        u.handle_address(Some(ip(B)));
        assert_eq!(u.poll_update(t0 + Policy::REFRESH * 2), None);
        assert_eq!(u.poll_timeout(), None);
        assert_eq!(
            u.status().last_result.unwrap().to_string(),
            "stopped until reload: badauth"
        );
    }

    #[derive(Debug, Clone)]
    enum Event {
        Address(Option<u8>),
        Tick(u16),
        Answer(u8),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            proptest::option::of(0u8..3).prop_map(Event::Address),
            (0u16..4000).prop_map(Event::Tick),
            (0u8..4).prop_map(Event::Answer),
        ]
    }

    proptest! {
        /// Whatever happens: updates are min_interval apart, never repeat an accepted value
        /// before the refresh, and nothing leaves after a stop.
        #[test]
        fn updates_respect_the_rules(events in proptest::collection::vec(event(), 1..200), seed: u64) {
            let t0 = Instant::now();
            let mut u = Updater::new(Policy::new(secs(60)), seed, t0);
            let mut now = t0;
            let mut sent: Vec<Instant> = Vec::new();
            let mut accepted: Option<(IpAddr, Instant)> = None;
            let mut stopped = false;
            let mut in_flight = None;
            for e in events {
                match e {
                    Event::Address(a) => u.handle_address(a.map(|n| IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(n) + 1]))),
                    Event::Tick(s) => now += secs(u64::from(s)),
                    Event::Answer(kind) => {
                        let outcome = match kind {
                            0 | 1 => Outcome::Accepted,
                            2 => retry(),
                            _ => Outcome::Stop { reason: "badauth".into() },
                        };
                        if let Some(addr) = in_flight.take() {
                            match &outcome {
                                Outcome::Accepted => accepted = Some((addr, now)),
                                Outcome::Stop { .. } => stopped = true,
                                Outcome::Retry { .. } => {}
                            }
                        }
                        u.handle_outcome(now, outcome);
                    }
                }
                if let Some(addr) = u.poll_update(now) {
                    prop_assert!(!stopped);
                    if let Some(last) = sent.last() {
                        prop_assert!(now - *last >= secs(60));
                    }
                    if let Some((a, at)) = accepted {
                        prop_assert!(a != addr || now - at >= Policy::REFRESH);
                    }
                    sent.push(now);
                    in_flight = Some(addr);
                }
                if let Some(next) = u.poll_timeout() {
                    prop_assert!(next <= now + Policy::REFRESH + Policy::BACKOFF_CAP);
                }
            }
        }
    }
}
