//! Recovery from a restart on our side: the peer still holds CHILD SAs we lost and keeps
//! sending ESP under their SPIs. Waiting for its DPD costs minutes with the defaults; a fresh
//! IKE SA from our side (IKE_AUTH always carries INITIAL_CONTACT) makes it drop the stale
//! ones within one round trip plus the exchange.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Peer, State};

/// The least time between two recoveries: anyone who can spoof the peer's address can send
/// ESP with a made-up SPI, and each recovery costs a DH computation on both ends.
pub const RECOVERY_INTERVAL: Duration = Duration::from_secs(2);

impl Peer {
    /// ESP from the configured peer arrived under an SPI with no CHILD SA here. Starts
    /// IKE_SA_INIT from `local` to `remote` (the IKE endpoints, port 500) whatever our role
    /// was, unless an IKE SA is up or being negotiated by us, or the last recovery was less
    /// than [`RECOVERY_INTERVAL`] ago. Returns whether an exchange was started.
    ///
    /// With an IKE SA up, an unknown SPI is a late packet of an SA deleted by a rekey, not a
    /// lost state, so it starts nothing.
    pub fn handle_unknown_spi(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> bool {
        let busy = self.sas.iter().any(|s| {
            matches!(s.state, State::Established | State::Rekeyed)
                || (s.initiator && matches!(s.state, State::InitSent | State::AuthSent))
        });
        if busy
            || self
                .last_recovery
                .is_some_and(|t| now < t + RECOVERY_INTERVAL)
        {
            return false;
        }
        self.last_recovery = Some(now);
        self.initiate(now, local, remote).is_ok()
    }

    /// When the peer last proved itself: an authenticated IKE message or ESP packet on any
    /// of its SAs. Unauthenticated datagrams never move it, so a forger cannot keep a dead
    /// peer looking alive.
    pub fn last_heard(&self) -> Option<Instant> {
        self.sas
            .iter()
            .filter(|s| matches!(s.state, State::Established | State::Rekeyed))
            .map(|s| s.last_heard)
            .max()
    }
}
