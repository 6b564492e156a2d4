//! Token bucket for the ICMP errors a tunnel generates (RFC 1812 §4.3.2.8,
//! RFC 4443 §2.4 (f)): a flood of oversized packets must not become a flood of
//! errors.

use std::time::{Duration, Instant};

/// How many ICMP errors a tunnel may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpRateLimit {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for IcmpRateLimit {
    fn default() -> Self {
        Self {
            per_second: 100,
            burst: 20,
        }
    }
}

/// Credit is kept as time: each token costs `1 s / per_second`, and the bucket
/// holds `burst` tokens' worth. Integer-exact, and the clock only moves it when
/// it moves forward.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    cost: Duration,
    capacity: Duration,
    credit: Duration,
    last: Option<Instant>,
}

impl TokenBucket {
    pub(crate) fn new(limit: IcmpRateLimit) -> Self {
        let cost = if limit.per_second == 0 {
            Duration::MAX
        } else {
            Duration::from_secs(1) / limit.per_second
        };
        let capacity = if limit.per_second == 0 {
            Duration::ZERO
        } else {
            cost.saturating_mul(limit.burst)
        };
        Self {
            cost,
            capacity,
            credit: capacity,
            last: None,
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last);
            self.credit = self.credit.saturating_add(elapsed).min(self.capacity);
        }
        // Keep the later of the two so a clock that steps back cannot mint credit.
        self.last = Some(self.last.map_or(now, |last| last.max(now)));
        if self.capacity > Duration::ZERO && self.credit >= self.cost {
            self.credit -= self.cost;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let mut bucket = TokenBucket::new(IcmpRateLimit::default());
        let t0 = Instant::now();
        let burst = (0..100).filter(|_| bucket.take(t0)).count();
        assert_eq!(burst, 20);
        // 10 ms buys exactly one more token at 100/s.
        assert!(!bucket.take(t0 + Duration::from_millis(9)));
        assert!(bucket.take(t0 + Duration::from_millis(10)));
        assert!(!bucket.take(t0 + Duration::from_millis(10)));
        // One second of packets every millisecond: 100 get through.
        let sent = (11..1011)
            .filter(|ms| bucket.take(t0 + Duration::from_millis(*ms)))
            .count();
        assert_eq!(sent, 100);
    }

    #[test]
    fn refills_to_burst_and_no_further() {
        let mut bucket = TokenBucket::new(IcmpRateLimit {
            per_second: 10,
            burst: 3,
        });
        let t0 = Instant::now();
        assert_eq!((0..10).filter(|_| bucket.take(t0)).count(), 3);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!((0..10).filter(|_| bucket.take(later)).count(), 3);
    }

    #[test]
    fn clock_stepping_back_mints_nothing() {
        let mut bucket = TokenBucket::new(IcmpRateLimit {
            per_second: 1,
            burst: 1,
        });
        let t0 = Instant::now() + Duration::from_secs(10);
        assert!(bucket.take(t0));
        assert!(!bucket.take(t0 - Duration::from_secs(5)));
        assert!(!bucket.take(t0 + Duration::from_millis(999)));
        assert!(bucket.take(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn zero_limits_send_nothing() {
        let t0 = Instant::now();
        let mut none = TokenBucket::new(IcmpRateLimit {
            per_second: 0,
            burst: 20,
        });
        assert!(!none.take(t0));
        let mut no_burst = TokenBucket::new(IcmpRateLimit {
            per_second: 100,
            burst: 0,
        });
        assert!(!no_burst.take(t0 + Duration::from_secs(1)));
    }
}
