//! What an initiator does between IKE SAs: how long it waits before trying again, and
//! whether an SA that went down is worth another attempt at all.

use std::time::{Duration, Instant};

use super::{Config, DownReason, DpdAction};

/// Exponential backoff of re-initiation: `base`, twice that, four times ... up to `max`,
/// back to the start once an IKE SA is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Default for Backoff {
    /// 1 s, 2 s, 4 s ... up to a minute.
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(60))
    }
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            failures: 0,
        }
    }

    /// Delay before the next attempt after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let shift = self.failures.min(16);
        self.failures = self.failures.saturating_add(1);
        self.base.saturating_mul(1 << shift).min(self.max)
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failed attempts since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

impl Config {
    /// Whether an initiator tries again after its last IKE SA went down for `reason`: always,
    /// except when dead peer detection declared the peer dead and the action is to clear.
    pub fn retries_after(&self, reason: &DownReason) -> bool {
        let cleared_by_dpd = *reason == DownReason::Timeout
            && self.dpd.is_some_and(|dpd| dpd.action == DpdAction::Clear);
        !cleared_by_dpd
    }

    /// When a CHILD SA installed `age` ago is next rekeyed, at the latest (the jitter may
    /// bring it forward).
    pub fn child_rekey_in(&self, age: Duration) -> Duration {
        self.child_lifetime
            .saturating_sub(self.rekey_margin)
            .saturating_sub(age)
    }
}

/// Whether and when an initiator starts over after its IKE SA went down: [`Backoff`] between
/// attempts and [`Config::retries_after`] for whether to try at all. The shell only sleeps
/// until the instant it is given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reinitiation {
    backoff: Backoff,
}

impl Reinitiation {
    pub fn new(backoff: Backoff) -> Self {
        Self { backoff }
    }

    /// An IKE SA is up: the next failure waits the shortest delay again.
    pub fn up(&mut self) {
        self.backoff.reset();
    }

    /// The last IKE SA went down for `reason` at `now`: when to initiate again, or `None` to
    /// stay down. A responder waits for its peer; a dead peer with DPD action "clear" is left
    /// alone; a core that `restarted` already (DPD action "restart") needs no second attempt.
    pub fn after_down(
        &mut self,
        config: &Config,
        reason: &DownReason,
        initiator: bool,
        restarted: bool,
        now: Instant,
    ) -> Option<Instant> {
        if !initiator || restarted || !config.retries_after(reason) {
            return None;
        }
        Some(now + self.backoff.next_delay())
    }

    /// Failed attempts since the last IKE SA was up.
    pub fn failures(&self) -> u32 {
        self.backoff.failures()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let delays: Vec<u64> = (0..9).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(b.failures(), 9);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        // Many failures neither overflow nor pass the cap.
        for _ in 0..100 {
            assert!(b.next_delay() <= Duration::from_secs(60));
        }
        assert_eq!(
            Backoff::default(),
            Backoff::new(Duration::from_secs(1), Duration::from_secs(60))
        );
    }

    #[test]
    fn only_a_dead_peer_with_dpd_action_clear_is_left_alone() {
        let mut config = Config::new(b"k", Vec::new(), Vec::new());
        for reason in [
            DownReason::Timeout,
            DownReason::Deleted,
            DownReason::Replaced,
        ] {
            assert!(config.retries_after(&reason), "{reason:?}");
        }
        config.dpd.as_mut().unwrap().action = DpdAction::Clear;
        assert!(!config.retries_after(&DownReason::Timeout));
        assert!(config.retries_after(&DownReason::Deleted));
    }

    #[test]
    fn reinitiation_backs_off_only_for_an_initiator_that_should_retry() {
        let now = Instant::now();
        let mut config = Config::new(b"k", Vec::new(), Vec::new());
        let mut r = Reinitiation::default();
        let after = |r: &mut Reinitiation, config: &Config, initiator, restarted| {
            r.after_down(config, &DownReason::Timeout, initiator, restarted, now)
                .map(|at| at - now)
        };
        assert_eq!(
            after(&mut r, &config, true, false),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            after(&mut r, &config, true, false),
            Some(Duration::from_secs(2))
        );
        assert_eq!(r.failures(), 2);
        assert_eq!(after(&mut r, &config, false, false), None, "responder");
        assert_eq!(
            after(&mut r, &config, true, true),
            None,
            "restarted already"
        );
        assert_eq!(r.failures(), 2, "no attempt, no failure");
        r.up();
        assert_eq!(
            after(&mut r, &config, true, false),
            Some(Duration::from_secs(1))
        );
        config.dpd.as_mut().unwrap().action = DpdAction::Clear;
        assert_eq!(
            after(&mut r, &config, true, false),
            None,
            "dead peer, clear"
        );
    }

    #[test]
    fn children_rekey_a_margin_before_their_lifetime() {
        let config = Config::new(b"k", Vec::new(), Vec::new());
        // An hour's lifetime, 540 s margin: rekey at 51 minutes.
        assert_eq!(
            config.child_rekey_in(Duration::ZERO),
            Duration::from_secs(3060)
        );
        assert_eq!(
            config.child_rekey_in(Duration::from_secs(3000)),
            Duration::from_secs(60)
        );
        assert_eq!(
            config.child_rekey_in(Duration::from_secs(4000)),
            Duration::ZERO
        );
    }
}
