//! How the daemon talks to the person reading its log: a failure that repeats at every retry
//! (a wrong key, no common suite) is said once per change of reason, then at most once per
//! [`REPEAT_EVERY`], not at every attempt.

use std::time::{Duration, Instant};

/// How often an unchanged reason is said again.
pub const REPEAT_EVERY: Duration = Duration::from_secs(300);

/// Remembers the last reason said and when.
#[derive(Debug, Default)]
pub struct ReasonLog {
    last: Option<(String, Instant)>,
}

impl ReasonLog {
    /// Whether `reason` should be logged at `now`: a new reason always, the same one again
    /// after [`REPEAT_EVERY`].
    pub fn should_log(&mut self, reason: &str, now: Instant) -> bool {
        let due = match &self.last {
            Some((last, at)) => last != reason || now.duration_since(*at) >= REPEAT_EVERY,
            None => true,
        };
        if due {
            self.last = Some((reason.to_owned(), now));
        }
        due
    }

    /// Forgets the last reason (the SA came up), so the next failure is said at once.
    pub fn reset(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_each_reason_once_then_rarely() {
        let mut log = ReasonLog::default();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert!(log.should_log("keys differ", t0));
        assert!(!log.should_log("keys differ", t0 + s(2)));
        assert!(!log.should_log("keys differ", t0 + s(299)));
        assert!(log.should_log("no common suite", t0 + s(300)));
        assert!(!log.should_log("no common suite", t0 + s(301)));
        assert!(log.should_log("no common suite", t0 + s(601)));
        log.reset();
        assert!(log.should_log("no common suite", t0 + s(602)));
    }
}
