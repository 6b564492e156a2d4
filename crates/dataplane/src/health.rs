//! Up or down, from probes sent at a steady rate and the replies they get.
//!
//! [`Tracker`] knows nothing of what is probed or how: a path to a v6gate peer
//! (keepalives), a path to a foreign router (ICMP echo through the tunnel), an
//! uplink (ICMP echo through one device). The owner sends a probe whenever
//! [`Tracker::probe_due`] says so and reports it with
//! [`on_probe_sent`](Tracker::on_probe_sent), feeds replies to
//! [`on_reply`](Tracker::on_reply), and calls
//! [`handle_timeout`](Tracker::handle_timeout) at
//! [`poll_timeout`](Tracker::poll_timeout). State changes come out of
//! [`poll_transition`](Tracker::poll_transition) with their reason.
//!
//! The hysteresis is asymmetric on purpose: going down must be fast, since
//! traffic is being lost meanwhile; coming back must be slow, since a target
//! that just failed is likely to fail again and every change of mind costs the
//! traffic that follows it a path change.

use core::fmt;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How probe results turn into [`HealthState`]s.
///
/// The defaults aim at S4: a dead path replaced within a second, and no false
/// alarm on a healthy home broadband link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HealthConfig {
    /// Time between two probes. 100 ms: ten small packets a second per path
    /// (about 5 kbit/s with headers) is nothing next to the traffic, and it is
    /// what lets `down_after` lost probes fit in well under a second.
    pub interval: Duration,
    /// A probe unanswered for this long is lost. 300 ms: far above the
    /// round-trip time of a healthy domestic path (a few to a few tens of ms),
    /// so a slow reply is not mistaken for a lost one, and above 200 ms so that
    /// even an intercontinental path does not flap.
    pub timeout: Duration,
    /// Lost probes in a row that take a target down. 3: a single lost packet
    /// (random loss, a queue overflowing for a moment) must not move traffic;
    /// at 0.1 % independent loss three in a row happen once in 10^9 probes,
    /// about three years at ten probes a second.
    pub down_after: u32,
    /// Replies in a row that bring a target that was down back up. 20, i.e.
    /// 2 s of unbroken health at the default interval: a path that has just
    /// failed must prove it is stable before traffic returns to it.
    pub up_after: u32,
    /// The least time a target stays down once down (for a [`Tracker`] used
    /// alone), or between two path switches of a tunnel when traffic fails back
    /// (see [`TunnelConfig::health`](crate::TunnelConfig::health)). 5 s: a path
    /// flapping faster than that cannot drag traffic along with it, and five
    /// seconds on the backup costs little.
    pub hold_down: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(300),
            down_after: 3,
            up_after: 20,
            hold_down: Duration::from_secs(5),
        }
    }
}

impl HealthConfig {
    /// `[tunnel.health]` defaults: a silent path is given up within 900 ms (S4 asks for a new
    /// path within a second), five packets a second per path keep that cheap, and a recovered
    /// path must stay clean for 2 s after a 5 s hold-down before traffic fails back to it.
    /// ([`Default`] is the core's own, faster choice for a tracker used on its own.)
    pub const TUNNEL_DEFAULT: Self = Self {
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(300),
        down_after: 3,
        up_after: 10,
        hold_down: Duration::from_secs(5),
    };

    /// `[[watch]]` defaults: an uplink probed once a second (ICMP to a host on the internet,
    /// which should not see a flood), given up after 3 lost, trusted again after 5 answered.
    pub const WATCH_DEFAULT: Self = Self {
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        down_after: 3,
        up_after: 5,
        hold_down: Duration::ZERO,
    };

    /// The latest a target that goes silent is declared down: the probe sent
    /// just after it went silent may leave up to one `interval` later,
    /// `down_after - 1` more follow it, and the last one's `timeout` runs out.
    /// At the defaults, 600 ms.
    pub fn worst_detection(&self) -> Duration {
        self.interval.saturating_mul(self.down_after) + self.timeout
    }

    /// What is wrong with these values, if anything.
    pub fn problem(&self) -> Option<&'static str> {
        if self.interval.is_zero() {
            Some("interval is zero")
        } else if self.timeout.is_zero() {
            Some("timeout is zero")
        } else if self.down_after == 0 {
            Some("down_after is zero")
        } else if self.up_after == 0 {
            Some("up_after is zero")
        } else {
            None
        }
    }
}

/// What a [`Tracker`] believes about its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HealthState {
    /// No verdict yet: nothing answered and not enough probes were lost.
    #[default]
    Unknown,
    Up,
    Down,
}

impl HealthState {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a [`Tracker`] changed its mind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HealthReason {
    /// This many probes in a row went unanswered.
    ProbesLost(u32),
    /// This many replies in a row after being down (and the hold-down is over).
    RepliesInARow(u32),
    /// The first reply of a target that had not failed yet: it has nothing to
    /// prove, and making it wait would only delay the first choice of a path.
    FirstReply,
}

impl fmt::Display for HealthReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ProbesLost(1) => f.write_str("1 probe lost"),
            Self::ProbesLost(n) => write!(f, "{n} probes lost"),
            Self::RepliesInARow(1) => f.write_str("1 reply"),
            Self::RepliesInARow(n) => write!(f, "{n} replies in a row"),
            Self::FirstReply => f.write_str("first reply"),
        }
    }
}

/// One change of [`HealthState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub at: Instant,
    pub from: HealthState,
    pub to: HealthState,
    pub reason: HealthReason,
}

/// Probes lost among the last ones whose fate is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Loss {
    pub lost: u32,
    /// At most [`LOSS_WINDOW`].
    pub probes: u32,
}

impl Loss {
    /// 0 to 100; 0 before any probe is settled.
    pub fn percent(&self) -> f64 {
        if self.probes == 0 {
            0.0
        } else {
            f64::from(self.lost) * 100.0 / f64::from(self.probes)
        }
    }
}

/// How many of the latest settled probes [`Loss`] counts: 10 s at the default
/// interval, long enough to show a lossy path, short enough to show recovery.
pub const LOSS_WINDOW: u32 = 100;

/// Probes awaiting an answer beyond this are counted lost at once: an owner
/// probing far faster than `timeout / interval` predicts must not make the
/// tracker grow.
pub const MAX_IN_FLIGHT: usize = 64;

/// Transitions waiting beyond this are dropped oldest first.
const MAX_TRANSITIONS: usize = 64;

/// Health of one probed target. Sans-IO: time only moves when a `now` is given.
#[derive(Debug, Clone)]
pub struct Tracker {
    config: HealthConfig,
    state: HealthState,
    /// Sequence number and send time, oldest first.
    in_flight: VecDeque<(u32, Instant)>,
    last_sent: Option<Instant>,
    lost_in_a_row: u32,
    replies_in_a_row: u32,
    down_since: Option<Instant>,
    last_change: Option<Instant>,
    srtt: Option<Duration>,
    /// One bit per settled probe, newest in bit 0; a set bit is a loss.
    outcomes: u128,
    settled: u32,
    transitions: VecDeque<Transition>,
}

impl Tracker {
    pub fn new(config: HealthConfig) -> Self {
        Self {
            config,
            state: HealthState::Unknown,
            in_flight: VecDeque::new(),
            last_sent: None,
            lost_in_a_row: 0,
            replies_in_a_row: 0,
            down_since: None,
            last_change: None,
            srtt: None,
            outcomes: 0,
            settled: 0,
            transitions: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &HealthConfig {
        &self.config
    }

    pub fn state(&self) -> HealthState {
        self.state
    }

    /// Smoothed round-trip time (RFC 6298's estimator, gain 1/8).
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    pub fn loss(&self) -> Loss {
        let window = if LOSS_WINDOW >= 128 {
            u128::MAX
        } else {
            (1u128 << LOSS_WINDOW) - 1
        };
        Loss {
            lost: (self.outcomes & window).count_ones(),
            probes: self.settled.min(LOSS_WINDOW),
        }
    }

    /// When the state last changed.
    pub fn last_change(&self) -> Option<Instant> {
        self.last_change
    }

    /// Probes sent and neither answered nor lost yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether a probe should leave now: one `interval` after the previous one,
    /// or at once if none has been sent.
    pub fn probe_due(&self, now: Instant) -> bool {
        self.last_sent
            .is_none_or(|last| now >= last + self.config.interval)
    }

    /// When the next probe is due; `None` until the first is sent, which is
    /// due at once.
    pub fn next_probe(&self) -> Option<Instant> {
        self.last_sent.map(|last| last + self.config.interval)
    }

    /// A probe with this sequence number left at `now`.
    pub fn on_probe_sent(&mut self, now: Instant, seq: u32) {
        self.expire(now);
        if self.in_flight.len() == MAX_IN_FLIGHT {
            self.in_flight.pop_front();
            self.settle_lost(now);
        }
        self.in_flight.push_back((seq, now));
        self.last_sent = Some(now);
    }

    /// A reply to probe `seq` arrived. Returns its round-trip time, or `None`
    /// if no such probe is waiting: a duplicate, a stray, or one that arrived
    /// after its timeout, or after a reply to a later probe, and was already
    /// counted lost.
    pub fn on_reply(&mut self, now: Instant, seq: u32) -> Option<Duration> {
        self.expire(now);
        let at = self.in_flight.iter().position(|&(s, _)| s == seq)?;
        // Probes of one target travel one way and come back in order, so the
        // older ones still waiting are not coming: settling them now keeps
        // "in a row" in the order the probes were sent.
        for _ in 0..at {
            self.in_flight.pop_front();
            self.settle_lost(now);
        }
        let (_, sent) = self.in_flight.pop_front()?;
        let rtt = now.saturating_duration_since(sent);
        self.srtt = Some(match self.srtt {
            None => rtt,
            Some(srtt) => srtt - srtt / 8 + rtt / 8,
        });
        self.record(false);
        self.lost_in_a_row = 0;
        self.replies_in_a_row = self.replies_in_a_row.saturating_add(1);
        match self.state {
            HealthState::Unknown => self.change(now, HealthState::Up, HealthReason::FirstReply),
            HealthState::Down => self.try_up(now),
            HealthState::Up => {}
        }
        Some(rtt)
    }

    /// Counts the probes whose time is up as lost, and ends a hold-down that
    /// was only waiting for time to pass.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        if self.state == HealthState::Down {
            self.try_up(now);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) or a probe is next due:
    /// the next probe, the oldest probe's timeout, or the end of a hold-down
    /// that is all that keeps the target down. `None` before the first probe,
    /// which is due at once.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timeout = self.config.timeout;
        let expiry = self.in_flight.front().map(|&(_, sent)| sent + timeout);
        let hold_down_end = (self.state == HealthState::Down
            && self.replies_in_a_row >= self.config.up_after)
            .then(|| self.down_since.map(|since| since + self.config.hold_down))
            .flatten();
        [self.next_probe(), expiry, hold_down_end]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn poll_transition(&mut self) -> Option<Transition> {
        self.transitions.pop_front()
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(_, sent)) = self.in_flight.front() {
            if sent + self.config.timeout > now {
                break;
            }
            self.in_flight.pop_front();
            self.settle_lost(now);
        }
    }

    fn settle_lost(&mut self, now: Instant) {
        self.record(true);
        self.replies_in_a_row = 0;
        self.lost_in_a_row = self.lost_in_a_row.saturating_add(1);
        if self.lost_in_a_row >= self.config.down_after && self.state != HealthState::Down {
            let reason = HealthReason::ProbesLost(self.lost_in_a_row);
            self.change(now, HealthState::Down, reason);
        }
    }

    fn try_up(&mut self, now: Instant) {
        let held = self
            .down_since
            .is_none_or(|since| now >= since + self.config.hold_down);
        if self.replies_in_a_row >= self.config.up_after && held {
            let reason = HealthReason::RepliesInARow(self.replies_in_a_row);
            self.change(now, HealthState::Up, reason);
        }
    }

    fn record(&mut self, lost: bool) {
        self.outcomes = (self.outcomes << 1) | u128::from(lost);
        self.settled = self.settled.saturating_add(1);
    }

    fn change(&mut self, now: Instant, to: HealthState, reason: HealthReason) {
        let from = self.state;
        self.state = to;
        self.last_change = Some(now);
        self.down_since = (to == HealthState::Down).then_some(now);
        if self.transitions.len() == MAX_TRANSITIONS {
            self.transitions.pop_front();
        }
        self.transitions.push_back(Transition {
            at: now,
            from,
            to,
            reason,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn config() -> HealthConfig {
        HealthConfig {
            interval: 100 * MS,
            timeout: 300 * MS,
            down_after: 3,
            up_after: 5,
            hold_down: 2000 * MS,
        }
    }

    /// Drives a tracker with probes every interval for `probes` rounds; the
    /// target answers after `rtt` when `answers(round)` says so.
    struct Drive {
        tracker: Tracker,
        t0: Instant,
        now: Instant,
        seq: u32,
        /// Replies scheduled: (arrival, seq).
        pending: Vec<(Instant, u32)>,
        transitions: Vec<Transition>,
    }

    impl Drive {
        fn new(config: HealthConfig) -> Self {
            let t0 = Instant::now();
            Self {
                tracker: Tracker::new(config),
                t0,
                now: t0,
                seq: 0,
                pending: Vec::new(),
                transitions: Vec::new(),
            }
        }

        fn at(&self, ms: u32) -> Instant {
            self.t0 + ms * MS
        }

        /// Runs in 1 ms steps until `until_ms`.
        fn run(&mut self, until_ms: u32, rtt: Duration, answers: impl Fn(Instant) -> bool) {
            while self.now < self.at(until_ms) {
                self.now += MS;
                let now = self.now;
                let due: Vec<_> = self
                    .pending
                    .iter()
                    .copied()
                    .filter(|p| p.0 <= now)
                    .collect();
                self.pending.retain(|p| p.0 > now);
                for (_, seq) in due {
                    let _ = self.tracker.on_reply(now, seq);
                }
                self.tracker.handle_timeout(now);
                if self.tracker.probe_due(now) {
                    self.seq += 1;
                    self.tracker.on_probe_sent(now, self.seq);
                    if answers(now) {
                        self.pending.push((now + rtt, self.seq));
                    }
                }
                while let Some(t) = self.tracker.poll_transition() {
                    self.transitions.push(t);
                }
            }
        }
    }

    #[test]
    fn defaults_detect_within_a_second() {
        let c = HealthConfig::default();
        assert_eq!(c.worst_detection(), 600 * MS);
        assert!(c.worst_detection() < Duration::from_secs(1));
        assert_eq!(c.problem(), None);
    }

    #[test]
    fn first_reply_brings_an_unknown_target_up() {
        let mut d = Drive::new(config());
        assert_eq!(d.tracker.state(), HealthState::Unknown);
        assert!(d.tracker.probe_due(d.now));
        assert_eq!(d.tracker.poll_timeout(), None);
        d.run(50, 20 * MS, |_| true);
        assert_eq!(d.tracker.state(), HealthState::Up);
        assert_eq!(d.transitions.len(), 1);
        let t = d.transitions[0];
        assert_eq!((t.from, t.to), (HealthState::Unknown, HealthState::Up));
        assert_eq!(t.reason, HealthReason::FirstReply);
        assert_eq!(t.at, d.at(21));
        assert_eq!(d.tracker.srtt(), Some(20 * MS));
        assert_eq!(d.tracker.last_change(), Some(d.at(21)));
    }

    #[test]
    fn silence_takes_it_down_after_down_after_timeouts() {
        let mut d = Drive::new(config());
        d.run(1000, 10 * MS, |_| true);
        assert_eq!(d.tracker.state(), HealthState::Up);
        // Probes leave at 1, 101, ...; the one at 1001 is the first unanswered.
        let cut = d.at(1000);
        d.run(3000, 10 * MS, |now| now < cut);
        let down = d.transitions[1];
        assert_eq!(down.to, HealthState::Down);
        assert_eq!(down.reason, HealthReason::ProbesLost(3));
        // Lost probes at 1001, 1101, 1201; the last times out at 1501.
        assert_eq!(down.at, d.at(1501));
        assert!(down.at - cut <= config().worst_detection());
        assert_eq!(d.transitions.len(), 2);
        assert_eq!(d.tracker.state(), HealthState::Down);
    }

    #[test]
    fn unknown_goes_down_without_ever_answering() {
        let mut d = Drive::new(config());
        d.run(1000, 10 * MS, |_| false);
        assert_eq!(d.transitions.len(), 1);
        assert_eq!(d.transitions[0].from, HealthState::Unknown);
        assert_eq!(d.transitions[0].to, HealthState::Down);
        assert_eq!(d.transitions[0].at, d.at(201 + 300));
    }

    #[test]
    fn isolated_losses_do_not_take_it_down() {
        let mut d = Drive::new(config());
        // Every other probe lost: never three in a row.
        let t0 = d.t0;
        d.run(20_000, 10 * MS, |now| {
            ((now - t0).as_millis() / 100) % 2 == 0
        });
        assert_eq!(d.transitions.len(), 1);
        assert_eq!(d.tracker.state(), HealthState::Up);
        let loss = d.tracker.loss();
        assert_eq!(loss.probes, LOSS_WINDOW);
        assert!((loss.lost as i64 - 50).abs() <= 1, "{loss:?}");
        assert!((loss.percent() - 50.0).abs() <= 1.0);
    }

    #[test]
    fn comes_back_after_up_after_replies_and_the_hold_down() {
        let mut d = Drive::new(config());
        let (cut, back) = (d.at(1000), d.at(1600));
        d.run(6000, 10 * MS, |now| now < cut || now >= back);
        let states: Vec<_> = d.transitions.iter().map(|t| (t.to, t.reason)).collect();
        assert_eq!(
            states,
            vec![
                (HealthState::Up, HealthReason::FirstReply),
                (HealthState::Down, HealthReason::ProbesLost(3)),
                (HealthState::Up, HealthReason::RepliesInARow(19)),
            ]
        );
        // Down at 1501; probes from 1601 are answered, the fifth reply comes at
        // 2011, but the hold-down keeps it down until 3501, by when replies
        // 1611..=3411 have come in.
        assert_eq!(d.transitions[1].at, d.at(1501));
        assert_eq!(d.transitions[2].at, d.at(3501));
    }

    #[test]
    fn without_hold_down_up_after_alone_decides() {
        let mut d = Drive::new(HealthConfig {
            hold_down: Duration::ZERO,
            ..config()
        });
        let (cut, back) = (d.at(1000), d.at(1600));
        d.run(4000, 10 * MS, |now| now < cut || now >= back);
        // Replies to the probes of 1601, 1701, ... 2001 arrive 10 ms later.
        assert_eq!(d.transitions[2].at, d.at(2011));
        assert_eq!(d.transitions[2].reason, HealthReason::RepliesInARow(5));
    }

    #[test]
    fn a_loss_restarts_the_count_to_up() {
        let mut d = Drive::new(HealthConfig {
            hold_down: Duration::ZERO,
            ..config()
        });
        let t0 = d.t0;
        // Down from 1000; from 1600 four answers, one loss, then answers.
        d.run(6000, 10 * MS, |now| {
            let ms = (now - t0).as_millis();
            ms < 1000 || (1600..2000).contains(&ms) || ms >= 2100
        });
        assert_eq!(d.transitions[2].to, HealthState::Up);
        // Probes of 2101..=2501 are the five in a row.
        assert_eq!(d.transitions[2].at, d.at(2511));
    }

    #[test]
    fn late_and_unknown_replies_are_ignored() {
        let t0 = Instant::now();
        let mut tracker = Tracker::new(config());
        tracker.on_probe_sent(t0, 7);
        assert_eq!(tracker.on_reply(t0 + 10 * MS, 8), None);
        assert_eq!(tracker.on_reply(t0 + 300 * MS, 7), None, "at the timeout");
        assert_eq!(tracker.loss(), Loss { lost: 1, probes: 1 });
        assert_eq!(tracker.in_flight(), 0);
        tracker.on_probe_sent(t0 + 400 * MS, 9);
        assert_eq!(tracker.on_reply(t0 + 450 * MS, 9), Some(50 * MS));
        assert_eq!(tracker.on_reply(t0 + 460 * MS, 9), None, "duplicate");
        assert_eq!(tracker.loss(), Loss { lost: 1, probes: 2 });
        assert_eq!(tracker.state(), HealthState::Up);
    }

    #[test]
    fn a_reply_settles_older_probes_as_lost() {
        let t0 = Instant::now();
        let mut tracker = Tracker::new(config());
        for seq in 1..=3 {
            tracker.on_probe_sent(t0 + seq * 10 * MS, seq);
        }
        assert_eq!(tracker.on_reply(t0 + 40 * MS, 3), Some(10 * MS));
        assert_eq!(tracker.in_flight(), 0);
        assert_eq!(tracker.loss(), Loss { lost: 2, probes: 3 });
        assert_eq!(tracker.on_reply(t0 + 41 * MS, 1), None);
        assert_eq!(tracker.state(), HealthState::Up);
    }

    #[test]
    fn srtt_follows_rfc_6298_gain() {
        let t0 = Instant::now();
        let mut tracker = Tracker::new(config());
        tracker.on_probe_sent(t0, 1);
        let _ = tracker.on_reply(t0 + 80 * MS, 1);
        tracker.on_probe_sent(t0 + 100 * MS, 2);
        let _ = tracker.on_reply(t0 + 100 * MS + 160 * MS, 2);
        assert_eq!(tracker.srtt(), Some(90 * MS));
    }

    #[test]
    fn poll_timeout_covers_probe_expiry_and_hold_down() {
        let t0 = Instant::now();
        let mut tracker = Tracker::new(HealthConfig {
            interval: 1000 * MS,
            timeout: 300 * MS,
            down_after: 1,
            up_after: 1,
            hold_down: 5000 * MS,
        });
        tracker.on_probe_sent(t0, 1);
        assert_eq!(tracker.poll_timeout(), Some(t0 + 300 * MS));
        tracker.handle_timeout(t0 + 300 * MS);
        assert_eq!(tracker.state(), HealthState::Down);
        assert_eq!(tracker.poll_timeout(), Some(t0 + 1000 * MS));
        tracker.on_probe_sent(t0 + 1000 * MS, 2);
        let _ = tracker.on_reply(t0 + 1010 * MS, 2);
        // Enough replies; only the hold-down (until 5.3 s) keeps it down.
        assert_eq!(tracker.state(), HealthState::Down);
        assert_eq!(tracker.poll_timeout(), Some(t0 + 2000 * MS));
        tracker.on_probe_sent(t0 + 2000 * MS, 3);
        let _ = tracker.on_reply(t0 + 2010 * MS, 3);
        tracker.on_probe_sent(t0 + 3000 * MS, 4);
        let _ = tracker.on_reply(t0 + 3010 * MS, 4);
        tracker.on_probe_sent(t0 + 4000 * MS, 5);
        let _ = tracker.on_reply(t0 + 4010 * MS, 5);
        tracker.on_probe_sent(t0 + 5000 * MS, 6);
        let _ = tracker.on_reply(t0 + 5010 * MS, 6);
        assert_eq!(tracker.poll_timeout(), Some(t0 + 5300 * MS));
        tracker.handle_timeout(t0 + 5300 * MS);
        assert_eq!(tracker.state(), HealthState::Up);
    }

    #[test]
    fn probes_in_flight_are_bounded() {
        let t0 = Instant::now();
        let mut tracker = Tracker::new(HealthConfig {
            timeout: Duration::from_secs(3600),
            ..config()
        });
        for seq in 0..1000 {
            tracker.on_probe_sent(t0 + seq * MS, seq);
        }
        assert_eq!(tracker.in_flight(), MAX_IN_FLIGHT);
        assert_eq!(tracker.state(), HealthState::Down);
        assert_eq!(tracker.loss().lost, LOSS_WINDOW);
        // The newest are the ones kept.
        assert_eq!(tracker.on_reply(t0 + 1000 * MS, 999), Some(MS));
        assert_eq!(tracker.on_reply(t0 + 1000 * MS, 0), None);
        let mut transitions = 0;
        while tracker.poll_transition().is_some() {
            transitions += 1;
        }
        assert_eq!(transitions, 1);
    }

    #[test]
    fn reasons_read_as_sentences() {
        assert_eq!(HealthReason::ProbesLost(3).to_string(), "3 probes lost");
        assert_eq!(
            HealthReason::RepliesInARow(20).to_string(),
            "20 replies in a row"
        );
        assert_eq!(HealthReason::FirstReply.to_string(), "first reply");
        assert_eq!(HealthState::Down.to_string(), "down");
    }

    #[test]
    fn rejects_zero_values() {
        for (c, problem) in [
            (
                HealthConfig {
                    interval: Duration::ZERO,
                    ..config()
                },
                "interval is zero",
            ),
            (
                HealthConfig {
                    timeout: Duration::ZERO,
                    ..config()
                },
                "timeout is zero",
            ),
            (
                HealthConfig {
                    down_after: 0,
                    ..config()
                },
                "down_after is zero",
            ),
            (
                HealthConfig {
                    up_after: 0,
                    ..config()
                },
                "up_after is zero",
            ),
        ] {
            assert_eq!(c.problem(), Some(problem));
        }
    }
}
