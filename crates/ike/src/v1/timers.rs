//! Everything that happens because time passed: retransmission with backoff, half-open and
//! lifetime expiry, phase 1 and 2 rekeying, and dead peer detection.

use std::time::{Duration, Instant};

use super::{Peer, Phase1, QUICK_LINGER, QuickState};
use crate::DownReason;

/// How long to wait before trying a CHILD SA rekey again when no ISAKMP SA is up.
const REKEY_RETRY: Duration = Duration::from_secs(10);

impl Peer {
    /// The earliest instant at which [`Peer::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut at = |x: Instant| t = Some(t.map_or(x, |t| t.min(x)));
        let current = self.current();
        for (i, sa) in self.sas.iter().enumerate() {
            if let Some(p) = &sa.pending {
                at(p.next_at);
            }
            if !sa.initiator && sa.state != Phase1::Established {
                at(sa.created + self.config.half_open_timeout);
            }
            if let Some(e) = sa.expire_at {
                at(e);
            }
            if Some(i) == current {
                if let Some(r) = sa.rekey_at {
                    at(r);
                }
                if let Some(dpd) = self.config.dpd.filter(|_| sa.peer_dpd) {
                    match sa.probe {
                        Some(p) => at(p.next_at.min(p.first + dpd.timeout)),
                        None => at(sa.last_heard + dpd.delay),
                    }
                }
            }
        }
        for q in &self.quick {
            if let Some(p) = &q.pending {
                at(p.next_at);
            }
            if q.state == QuickState::Done {
                at(q.created + QUICK_LINGER);
            }
        }
        for c in &self.children {
            if let Some(r) = c.rekey_at {
                at(r);
            }
            at(c.expire_at);
        }
        t
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.phase1_timers(now);
        if self.quick_timers(now) {
            return;
        }
        self.child_timers(now);
        self.dpd_timers(now);
    }

    fn phase1_timers(&mut self, now: Instant) {
        let retransmit = self.config.retransmit;
        let mut i = 0;
        while i < self.sas.len() {
            let sa = &mut self.sas[i];
            if let Some(p) = &mut sa.pending
                && now >= p.next_at
            {
                if p.sends > retransmit.tries {
                    self.remove_sa(i, DownReason::Timeout);
                    continue;
                }
                p.next_at = now + retransmit.timeout(p.sends);
                p.sends += 1;
                let (l, r, bytes) = (sa.local, sa.remote, p.bytes.clone());
                self.transmit(l, r, bytes);
            }
            let sa = &self.sas[i];
            if !sa.initiator
                && sa.state != Phase1::Established
                && now >= sa.created + self.config.half_open_timeout
            {
                // Never reported up: forget it without an event.
                self.sas.remove(i);
                continue;
            }
            if sa.expire_at.is_some_and(|e| now >= e) {
                self.remove_sa(i, DownReason::Deleted);
                if self.current().is_none() {
                    // As after a delete: without an ISAKMP SA nothing can manage them.
                    self.quick.clear();
                    self.drop_children();
                }
                continue;
            }
            i += 1;
        }
        if let Some(idx) = self.current()
            && self.sas[idx].rekey_at.is_some_and(|r| now >= r)
        {
            self.sas[idx].rekey_at = None;
            let (l, r) = (self.sas[idx].local, self.sas[idx].remote);
            self.start_main_mode(now, l, r, false);
        }
    }

    /// Returns true when the peer was declared dead (nothing else is left to time).
    fn quick_timers(&mut self, now: Instant) -> bool {
        let retransmit = self.config.retransmit;
        let mut i = 0;
        while i < self.quick.len() {
            let q = &mut self.quick[i];
            if q.state == QuickState::Done && now >= q.created + QUICK_LINGER {
                self.quick.remove(i);
                continue;
            }
            if let Some(p) = &mut q.pending
                && now >= p.next_at
            {
                if p.sends > retransmit.tries {
                    let initiator = q.state == QuickState::Sent1;
                    self.quick.remove(i);
                    if initiator {
                        // Our quick mode went unanswered: the peer is gone.
                        self.peer_dead(now);
                        return true;
                    }
                    continue;
                }
                p.next_at = now + retransmit.timeout(p.sends);
                p.sends += 1;
                let bytes = p.bytes.clone();
                let cookies = q.cookies;
                if let Some(sa) = self.sas.iter().find(|s| s.cookies == cookies) {
                    let (l, r) = (sa.local, sa.remote);
                    self.transmit(l, r, bytes);
                }
            }
            i += 1;
        }
        false
    }

    fn child_timers(&mut self, now: Instant) {
        let expired: Vec<u32> = self
            .children
            .iter()
            .filter(|c| now >= c.expire_at)
            .map(|c| c.info.spi_in)
            .collect();
        if !expired.is_empty() {
            if let Some(idx) = self.current() {
                self.send_delete_esp(now, idx, &expired);
            }
            for spi in expired {
                self.remove_child(spi);
            }
        }
        let due: Vec<u32> = self
            .children
            .iter()
            .filter(|c| c.rekey_at.is_some_and(|r| now >= r))
            .map(|c| c.info.spi_in)
            .collect();
        for spi in due {
            let current = self.current();
            let Some(c) = self.children.iter_mut().find(|c| c.info.spi_in == spi) else {
                continue;
            };
            match current {
                Some(idx) => {
                    c.rekey_at = None;
                    self.start_quick_mode(now, idx, Some(spi));
                }
                None => c.rekey_at = Some(now + REKEY_RETRY),
            }
        }
    }

    fn dpd_timers(&mut self, now: Instant) {
        let (Some(dpd), Some(idx)) = (self.config.dpd, self.current()) else {
            return;
        };
        let sa = &self.sas[idx];
        if !sa.peer_dpd {
            return;
        }
        match sa.probe {
            Some(p) if now >= p.first + dpd.timeout => self.peer_dead(now),
            Some(p) if now >= p.next_at => self.probe(now, idx),
            Some(_) => {}
            None if now >= sa.last_heard + dpd.delay => self.probe(now, idx),
            None => {}
        }
    }
}
