//! Both ends rekeying the same ESP SA at once. IKEv1 has no rule for it (RFC 2409 leaves
//! both new SAs standing); v6gate applies RFC 7296 §2.8.1's: of the two quick modes that
//! replaced the same SA, the one holding the lowest of the four nonces made the redundant
//! SA, and the end that initiated that quick mode deletes it. Both ends saw the same
//! nonces, so they agree without another message, and a peer that knows nothing of the rule
//! just receives an ordinary Delete.

use std::time::{Duration, Instant};

use super::Peer;

/// How long a rekey is remembered to catch a colliding one: the other quick mode completes
/// within its retransmissions.
const WINDOW: Duration = Duration::from_secs(120);

/// Rekeys remembered at once; older ones are dropped first.
const MAX_RECORDS: usize = 16;

/// A quick mode that replaced an ESP SA.
#[derive(Debug, Clone)]
pub(super) struct Rekey {
    /// Our inbound SPI of the SA it replaced.
    old: u32,
    /// Our inbound SPI of the SA it made.
    made: u32,
    /// The lower of its two nonces.
    lowest: Vec<u8>,
    /// We initiated it.
    ours: bool,
    at: Instant,
}

impl Peer {
    /// The SA that a recent rekey replaced by `spi_in`: a peer's quick mode that seems to
    /// rekey a brand-new SA crossed ours and meant its predecessor.
    pub(super) fn replaced_by(&self, spi_in: u32) -> Option<u32> {
        self.rekeys.iter().find(|r| r.made == spi_in).map(|r| r.old)
    }

    /// Records that the quick mode with nonces `ni`, `nr` replaced `old` by `made`, and
    /// settles a collision with an earlier rekey of `old`.
    pub(super) fn rekeyed(
        &mut self,
        now: Instant,
        idx: usize,
        old: u32,
        made: u32,
        (ni, nr): (&[u8], &[u8]),
        ours: bool,
    ) {
        self.rekeys.retain(|r| now < r.at + WINDOW);
        if self.rekeys.len() >= MAX_RECORDS {
            self.rekeys.remove(0);
        }
        let this = Rekey {
            old,
            made,
            lowest: ni.min(nr).to_vec(),
            ours,
            at: now,
        };
        let Some(i) = self.rekeys.iter().position(|r| r.old == old) else {
            self.rekeys.push(this);
            return;
        };
        let other = self.rekeys.remove(i);
        let redundant = if other.lowest < this.lowest {
            other
        } else {
            this
        };
        if redundant.ours && self.remove_child(redundant.made).is_some() {
            self.send_delete_esp(now, idx, &[redundant.made]);
        }
    }
}
