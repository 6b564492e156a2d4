//! Which of a tunnel's paths carries its traffic, for every kind of tunnel (RFC 2473 and
//! ESP alike): the cheapest path that is up, failover at once, failback after a hold-down.
//! Also the two time helpers every path-keeping core needs: a [`Clock`] fed by the shell's
//! `now`, and [`earliest`] of two deadlines.

use std::time::{Duration, Instant};

use crate::health::{Tracker, Transition};
use crate::{HealthConfig, HealthState, SwitchReason};

/// A path's health tracker. The paths' own trackers never hold a path down: whether traffic
/// may go back to a path is decided per tunnel (by [`PathSelection`]), and a backup that has
/// recovered should be usable the moment the active path fails.
pub(crate) fn path_tracker(health: HealthConfig) -> Tracker {
    Tracker::new(HealthConfig {
        hold_down: Duration::ZERO,
        ..health
    })
}

/// Hands every transition the paths' trackers learnt to `report`, with the path's index.
pub(crate) fn drain_transitions<'a>(
    trackers: impl Iterator<Item = Option<&'a mut Tracker>>,
    mut report: impl FnMut(usize, Transition),
) {
    for (i, tracker) in trackers.enumerate() {
        let Some(tracker) = tracker else {
            continue;
        };
        while let Some(transition) = tracker.poll_transition() {
            report(i, transition);
        }
    }
}

/// Traffic moved from one path to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Switch {
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) reason: SwitchReason,
}

/// The active path of one tunnel and the hold-down that guards failback.
#[derive(Debug, Clone)]
pub(crate) struct PathSelection {
    active: usize,
    last_switch: Option<Instant>,
    /// When a failback waiting for the hold-down may happen.
    failback_at: Option<Instant>,
    /// Moves made by health (failovers and failbacks), for the operator's counters.
    switches: u64,
}

impl PathSelection {
    /// Starts on [`cheapest`] of `costs`.
    pub(crate) fn new(costs: impl IntoIterator<Item = u32>) -> Self {
        Self {
            active: cheapest(costs),
            last_switch: None,
            failback_at: None,
            switches: 0,
        }
    }

    pub(crate) fn active(&self) -> usize {
        self.active
    }

    /// How often [`select`](Self::select) moved traffic since the tunnel started (a reset by
    /// configuration is not counted).
    pub(crate) fn switches(&self) -> u64 {
        self.switches
    }

    /// When [`select`](Self::select) may move traffic without any health change.
    pub(crate) fn failback_at(&self) -> Option<Instant> {
        self.failback_at
    }

    /// Puts traffic on `active` by decision of the configuration, not of health: the
    /// hold-down since the last switch still counts, a pending failback is forgotten.
    pub(crate) fn reset(&mut self, active: usize) {
        self.active = active;
        self.failback_at = None;
    }

    /// The cheapest path that is up carries the traffic. Failover from a path that went
    /// down is immediate; failback to a cheaper path waits for `hold_down` since the last
    /// switch, so a flapping path cannot drag traffic back and forth. With no path up,
    /// traffic stays where it is: it may still get through. `path(i)` is the cost and state
    /// of path `i` of `count`.
    pub(crate) fn select(
        &mut self,
        now: Instant,
        hold_down: Duration,
        count: usize,
        path: impl Fn(usize) -> (u32, HealthState),
    ) -> Option<Switch> {
        self.failback_at = None;
        let rank = |i: usize| (path(i).0, i);
        let best = (0..count)
            .filter(|&i| path(i).1 == HealthState::Up)
            .min_by_key(|&i| rank(i))?;
        let active = self.active;
        if best == active {
            return None;
        }
        let reason = match path(active).1 {
            HealthState::Down => SwitchReason::ActiveDown,
            // Also from a path with no verdict yet: the cheapest one at start.
            _ if rank(best) < rank(active) => {
                if let Some(allowed) = self.last_switch.map(|at| at + hold_down)
                    && now < allowed
                {
                    self.failback_at = Some(allowed);
                    return None;
                }
                SwitchReason::Failback
            }
            // A costlier path is up, but the active one has not failed yet.
            _ => return None,
        };
        self.active = best;
        self.last_switch = Some(now);
        self.switches += 1;
        Some(Switch {
            from: active,
            to: best,
            reason,
        })
    }
}

/// The path traffic starts on: the cheapest, the first listed among equals (0 when there
/// is none).
pub(crate) fn cheapest(costs: impl IntoIterator<Item = u32>) -> usize {
    costs
        .into_iter()
        .enumerate()
        .min_by_key(|&(i, cost)| (cost, i))
        .map_or(0, |(i, _)| i)
}

/// A core's own time line, from the `now`s the shell hands in: keepalives carry nanoseconds
/// since the first one, and a probe due "at once" is due at the latest one.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Clock {
    seen: Option<(Instant, Instant)>,
}

impl Clock {
    /// Notes `now`; nanoseconds since the first `now` seen.
    pub(crate) fn tick(&mut self, now: Instant) -> u64 {
        let (start, latest) = self.seen.get_or_insert((now, now));
        *latest = (*latest).max(now);
        // Saturates after 584 years of uptime.
        u64::try_from(now.saturating_duration_since(*start).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The latest `now` seen, if any.
    pub(crate) fn latest(&self) -> Option<Instant> {
        self.seen.map(|(_, latest)| latest)
    }
}

/// The earlier of two optional deadlines; either alone if the other is `None`.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_secs(5);

    fn states(s: &[(u32, HealthState)]) -> impl Fn(usize) -> (u32, HealthState) + '_ {
        move |i| s[i]
    }

    #[test]
    fn starts_on_the_cheapest_first_listed_among_equals() {
        assert_eq!(PathSelection::new([10, 5, 5]).active(), 1);
        assert_eq!(PathSelection::new([]).active(), 0);
    }

    #[test]
    fn fails_over_at_once_and_back_after_the_hold_down() {
        use HealthState::{Down, Up};
        let t0 = Instant::now();
        let mut sel = PathSelection::new([0, 10]);
        let down = [(0, Down), (10, Up)];
        let switch = sel.select(t0, HOLD, 2, states(&down));
        assert_eq!(
            switch,
            Some(Switch {
                from: 0,
                to: 1,
                reason: SwitchReason::ActiveDown
            })
        );
        let back = [(0, Up), (10, Up)];
        let early = t0 + Duration::from_secs(1);
        assert_eq!(sel.select(early, HOLD, 2, states(&back)), None);
        assert_eq!(sel.failback_at(), Some(t0 + HOLD));
        let switch = sel.select(t0 + HOLD, HOLD, 2, states(&back)).unwrap();
        assert_eq!((switch.to, switch.reason), (0, SwitchReason::Failback));
        assert_eq!(sel.switches(), 2, "the failover and the failback");
        assert_eq!(sel.failback_at(), None);
    }

    #[test]
    fn with_nothing_up_or_only_costlier_paths_up_traffic_stays() {
        use HealthState::{Down, Unknown, Up};
        let mut sel = PathSelection::new([0, 10]);
        let now = Instant::now();
        assert_eq!(
            sel.select(now, HOLD, 2, states(&[(0, Down), (10, Down)])),
            None
        );
        assert_eq!(
            sel.select(now, HOLD, 2, states(&[(0, Unknown), (10, Up)])),
            None
        );
        assert_eq!(sel.active(), 0);
    }

    #[test]
    fn clock_counts_from_the_first_now_and_keeps_the_latest() {
        let t0 = Instant::now();
        let mut clock = Clock::default();
        assert_eq!(clock.latest(), None);
        assert_eq!(clock.tick(t0 + Duration::from_millis(2)), 0);
        assert_eq!(clock.tick(t0 + Duration::from_millis(5)), 3_000_000);
        assert_eq!(clock.tick(t0), 0, "earlier than the start saturates");
        assert_eq!(clock.latest(), Some(t0 + Duration::from_millis(5)));
    }

    #[test]
    fn earliest_ignores_a_missing_deadline() {
        let t = Instant::now();
        let later = t + Duration::from_secs(1);
        assert_eq!(earliest(Some(later), Some(t)), Some(t));
        assert_eq!(earliest(None, Some(t)), Some(t));
        assert_eq!(earliest(Some(t), None), Some(t));
        assert_eq!(earliest(None, None), None);
    }
}
