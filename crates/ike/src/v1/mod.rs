//! Sans-IO IKEv1 (RFC 2409): main mode with pre-shared keys and quick mode, for peers that
//! speak nothing newer (YAMAHA RTX, NEC IX, libreswan-era Linux gateways).
//!
//! A [`Peer`] has the same shape as the IKEv2 [`crate::Peer`] and reports with the same
//! [`Event`]s, so the daemon installs its CHILD SAs the same way:
//!
//! 1. feed datagrams from UDP 500/4500 with [`Peer::handle_datagram`] (without the RFC 3948
//!    non-ESP marker);
//! 2. after every input, drain [`Peer::poll_transmit`] (a datagram whose local or remote port
//!    is 4500 gets the non-ESP marker) and [`Peer::poll_event`];
//! 3. sleep until [`Peer::poll_timeout`], then call [`Peer::handle_timeout`] and drain again.
//!
//! Rooms: `suite` (SA payloads and choosing from them), `keys` (SKEYID, hashes, IVs,
//! KEYMAT, NAT-D), `cipher` (CBC with the carried-over IV), `selector` (client IDs as
//! traffic selectors), `main_mode`, `quick_mode`, `informational` (notify, delete, DPD), and
//! `timers` (retransmission, DPD, rekey and expiry).
//!
//! Aggressive mode is refused: it sends a hash keyed with the PSK before anyone is
//! authenticated, which an eavesdropper can attack offline.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_core::CryptoRngCore;
use wire::ike::TrafficSelector;
use wire::ikev1::{HeaderRepr, Message, exchange};

use crate::dh::{DhGroup, KeyPair};
use crate::error::{Error, Misbehaviour as Mis};
use crate::{ChildSaInfo, Config, DownReason, Event, Transmit};

pub mod cipher;
mod collision;
mod informational;
pub mod keys;
mod main_mode;
mod quick_mode;
pub mod selector;
pub mod suite;
mod timers;

use keys::{Cookies, Phase1Keys};
use suite::Phase1Suite;

/// Where one ISAKMP SA is in main mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase1 {
    /// Initiator: SA offer sent.
    Sent1,
    /// Initiator: KE and nonce sent.
    Sent3,
    /// Initiator: identity and HASH_I sent.
    Sent5,
    /// Responder: SA chosen, waiting for KE.
    Answered2,
    /// Responder: KE answered, waiting for the identity.
    Answered4,
    Established,
}

/// A request waiting for its answer, resent on the retransmission schedule.
#[derive(Debug, Clone)]
struct Pending {
    bytes: Vec<u8>,
    sends: u32,
    next_at: Instant,
}

/// An outstanding R-U-THERE.
#[derive(Debug, Clone, Copy)]
struct Probe {
    seq: u32,
    first: Instant,
    next_at: Instant,
}

struct IsakmpSa {
    cookies: Cookies,
    initiator: bool,
    state: Phase1,
    /// The initiator's SA payload body, covered by both authentication hashes.
    sai_b: Vec<u8>,
    suite: Option<Phase1Suite>,
    dh: Option<KeyPair>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    ke_i: Vec<u8>,
    ke_r: Vec<u8>,
    keys: Option<Phase1Keys>,
    /// The CBC chain of main mode; once established, the last phase 1 block that quick mode
    /// and informational IVs derive from.
    iv: Vec<u8>,
    local: SocketAddr,
    remote: SocketAddr,
    /// The peer announced RFC 3947 NAT traversal.
    nat_t: bool,
    /// NAT-D found a NAT: IKE and ESP go over UDP 4500.
    nat: bool,
    /// The peer announced RFC 3706 DPD.
    peer_dpd: bool,
    /// Send INITIAL-CONTACT in message 5 (no SA with the peer survives).
    initial_contact: bool,
    pending: Option<Pending>,
    /// The last request we answered and our answer, to resend when the same bytes come again.
    answered: Option<(Vec<u8>, Vec<u8>)>,
    created: Instant,
    last_heard: Instant,
    rekey_at: Option<Instant>,
    expire_at: Option<Instant>,
    probe: Option<Probe>,
    dpd_seq: u32,
    /// A newer ISAKMP SA took over (phase 1 rekey); this one only waits to be deleted.
    superseded: bool,
}

impl IsakmpSa {
    /// The first IV of a quick mode or informational exchange with message ID `mid`.
    fn phase2_iv(&self, mid: u32) -> Vec<u8> {
        let (hash, block) = self.suite.map_or((keys::HashAlg::Sha1, 16), |s| {
            (s.hash, cipher::block(s.encr))
        });
        keys::phase2_iv(hash, &self.iv, mid, block)
    }

    fn new(
        cookies: Cookies,
        initiator: bool,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
    ) -> Self {
        Self {
            cookies,
            initiator,
            state: if initiator {
                Phase1::Sent1
            } else {
                Phase1::Answered2
            },
            sai_b: Vec::new(),
            suite: None,
            dh: None,
            ni: Vec::new(),
            nr: Vec::new(),
            ke_i: Vec::new(),
            ke_r: Vec::new(),
            keys: None,
            iv: Vec::new(),
            local,
            remote,
            nat_t: false,
            nat: false,
            peer_dpd: false,
            initial_contact: false,
            pending: None,
            answered: None,
            created: now,
            last_heard: now,
            rekey_at: None,
            expire_at: None,
            probe: None,
            dpd_seq: 0,
            superseded: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuickState {
    /// Initiator: message 1 sent.
    Sent1,
    /// Responder: message 2 sent, waiting for HASH(3).
    Sent2,
    /// Finished: kept a while to answer a repeated message with the stored answer and to
    /// keep its message ID from starting another exchange.
    Done,
}

struct Quick {
    cookies: Cookies,
    mid: u32,
    state: QuickState,
    /// CBC chain of this exchange.
    iv: Vec<u8>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    dh: Option<KeyPair>,
    pfs: Option<DhGroup>,
    spi_in: u32,
    local_ts: TrafficSelector,
    remote_ts: TrafficSelector,
    /// The inbound SPI of the CHILD SA this exchange rekeys.
    rekeys: Option<u32>,
    /// What the responder chose, kept until HASH(3) confirms it: suite, terms, SPI out.
    chosen: Option<(crate::proposal::ChildSuite, suite::EspTerms, u32)>,
    /// The PFS shared secret g(qm)^xy.
    g_qm: Option<zeroize::Zeroizing<Vec<u8>>>,
    pending: Option<Pending>,
    answered: Option<(Vec<u8>, Vec<u8>)>,
    created: Instant,
}

struct Child {
    info: ChildSaInfo,
    rekey_at: Option<Instant>,
    expire_at: Instant,
}

/// How long a finished quick mode is remembered to answer a retransmitted message 2.
const QUICK_LINGER: Duration = Duration::from_secs(30);

/// Responder-side ISAKMP SAs still negotiating, beyond which the oldest is dropped: each
/// costs a DH computation and some memory, and nobody has been authenticated yet.
const MAX_HALF_OPEN: usize = 8;

/// The least time between two recoveries started by messages for unknown SAs.
pub const RECOVERY_INTERVAL: Duration = Duration::from_secs(2);

/// Quick modes in flight at once; more from the peer are refused.
const MAX_QUICK: usize = 8;

const NONCE_LEN: usize = 32;

/// IKEv1 SAs and their ESP SAs with one peer. See the module documentation for the call order.
pub struct Peer {
    config: Config,
    rng: Box<dyn CryptoRngCore + Send>,
    sas: Vec<IsakmpSa>,
    quick: Vec<Quick>,
    children: Vec<Child>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Where to (re)start from when DPD restarts the connection.
    endpoints: Option<(SocketAddr, SocketAddr)>,
    /// We want a CHILD SA as soon as an ISAKMP SA is up (we initiated).
    want_child: bool,
    /// When we last started main mode because the peer spoke to an SA we did not have.
    last_recovery: Option<Instant>,
    /// Recent rekeys of ESP SAs, to settle two of the same SA.
    rekeys: Vec<collision::Rekey>,
}

impl core::fmt::Debug for Peer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("v1::Peer")
            .field("sas", &self.sas.len())
            .field("children", &self.children.len())
            .finish_non_exhaustive()
    }
}

impl Peer {
    pub fn new(config: Config, rng: Box<dyn CryptoRngCore + Send>) -> Self {
        Self {
            config,
            rng,
            sas: Vec::new(),
            quick: Vec::new(),
            children: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            endpoints: None,
            want_child: false,
            last_recovery: None,
            rekeys: Vec::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// ISAKMP SAs in any state.
    pub fn ike_sa_count(&self) -> usize {
        self.sas.len()
    }

    /// Responder-side ISAKMP SAs still negotiating.
    pub fn half_open_count(&self) -> usize {
        self.sas
            .iter()
            .filter(|s| !s.initiator && s.state != Phase1::Established)
            .count()
    }

    /// Quick mode exchanges in flight or remembered.
    pub fn quick_mode_count(&self) -> usize {
        self.quick.len()
    }

    pub fn is_established(&self) -> bool {
        self.current().is_some()
    }

    pub fn child_sas(&self) -> impl Iterator<Item = &ChildSaInfo> {
        self.children.iter().map(|c| &c.info)
    }

    /// Cookies of the ISAKMP SA in use, if any.
    pub fn ike_spis(&self) -> Option<(u64, u64)> {
        self.current()
            .map(|i| (self.sas[i].cookies.i, self.sas[i].cookies.r))
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Starts main mode towards `remote` from `local`; a CHILD SA follows by quick mode.
    pub fn initiate(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<(), Error> {
        if self.config.ike.is_empty() || self.config.esp.is_empty() {
            return Err(Error::ApiMisuse("no IKE or ESP proposal"));
        }
        self.endpoints = Some((local, remote));
        self.want_child = true;
        let initial_contact = self.sas.iter().all(|s| s.state != Phase1::Established);
        self.start_main_mode(now, local, remote, initial_contact);
        Ok(())
    }

    /// Rekeys the CHILD SA whose inbound SPI is `spi_in` (make-before-break: the old one is
    /// deleted once the new one is installed).
    pub fn rekey_child(&mut self, now: Instant, spi_in: u32) -> Result<(), Error> {
        if !self.children.iter().any(|c| c.info.spi_in == spi_in) {
            return Err(Error::ApiMisuse("no such CHILD SA"));
        }
        let sa = self
            .current()
            .ok_or(Error::ApiMisuse("no established ISAKMP SA"))?;
        self.start_quick_mode(now, sa, Some(spi_in));
        Ok(())
    }

    /// Replaces the ISAKMP SA in use by a fresh main mode; the old one is deleted once the new
    /// one is up. CHILD SAs are untouched (IKEv1 does not tie them to the ISAKMP SA).
    pub fn rekey_ike(&mut self, now: Instant) -> Result<(), Error> {
        let idx = self
            .current()
            .ok_or(Error::ApiMisuse("no established ISAKMP SA"))?;
        let (local, remote) = (self.sas[idx].local, self.sas[idx].remote);
        self.start_main_mode(now, local, remote, false);
        Ok(())
    }

    /// Deletes every CHILD SA and ISAKMP SA with the peer, telling it so.
    pub fn delete(&mut self, now: Instant) {
        self.endpoints = None;
        self.want_child = false;
        if let Some(idx) = self.current() {
            // One message per protocol, CHILD SAs first, as peers expect (strongSwan acts on
            // the first delete payload of a message only).
            let spis: Vec<u32> = self.children.iter().map(|c| c.info.spi_in).collect();
            self.send_delete_esp(now, idx, &spis);
            self.send_delete_isakmp(now, idx);
        }
        self.drop_children();
        for idx in (0..self.sas.len()).rev() {
            self.remove_sa(idx, DownReason::Deleted);
        }
        self.quick.clear();
    }

    /// An authenticated ESP packet arrived on the CHILD SA with inbound SPI `spi_in`: the
    /// peer is alive, so DPD stays quiet (RFC 3706 §5.3 probes only an idle peer).
    pub fn handle_esp_received(&mut self, now: Instant, spi_in: u32) {
        if self.children.iter().any(|c| c.info.spi_in == spi_in)
            && let Some(idx) = self.current()
        {
            let sa = &mut self.sas[idx];
            sa.last_heard = sa.last_heard.max(now);
        }
    }

    /// Processes one IKEv1 datagram received on `local` from `remote`.
    ///
    /// Errors say what was wrong with the datagram (for logging); any answer owed to the
    /// peer has been queued already.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), Error> {
        let msg = Message::parse(bytes).map_err(wire_error)?;
        let h = msg.header;
        let r = match h.exchange_type {
            exchange::MAIN_MODE => self.main_mode(now, local, remote, &msg, bytes),
            exchange::QUICK_MODE => self.quick_mode(now, local, remote, &msg, bytes),
            exchange::INFORMATIONAL => self.informational(now, local, remote, &msg),
            other => Err(Error::PeerMisbehaved(Mis::UnexpectedExchange(other))),
        };
        if h.is_encrypted()
            && h.exchange_type != exchange::MAIN_MODE
            && r == Err(Error::PeerMisbehaved(Mis::UnknownSpi))
        {
            self.recover(now, local, remote);
        }
        r
    }

    /// ESP from the configured peer arrived under an SPI with no ESP SA here: as with an
    /// IKE message for an unknown ISAKMP SA, we lost our state and the peer did not. Starts
    /// main mode with INITIAL-CONTACT from `local` to `remote` whatever our role was, under
    /// the same conditions and rate limit as that case. Returns whether it started.
    pub fn handle_unknown_spi(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> bool {
        let before = self.last_recovery;
        self.recover(now, local, remote);
        self.last_recovery != before
    }

    /// When the peer last proved itself: a message whose hash verified on an established
    /// ISAKMP SA, or an authenticated ESP packet. Unauthenticated datagrams never move it.
    pub fn last_heard(&self) -> Option<Instant> {
        self.sas
            .iter()
            .filter(|s| s.state == Phase1::Established)
            .map(|s| s.last_heard)
            .max()
    }

    /// The peer protects messages with an ISAKMP SA we do not have: we lost our state (a
    /// restart) and it still holds its own. Rather than wait for its DPD to give up, start
    /// main mode with INITIAL-CONTACT, which makes it drop the stale SAs; at most once per
    /// [`RECOVERY_INTERVAL`], as anyone can send such a message.
    fn recover(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr) {
        let negotiating = self
            .sas
            .iter()
            .any(|s| s.initiator && s.state != Phase1::Established);
        if self.current().is_some()
            || negotiating
            || self
                .last_recovery
                .is_some_and(|t| now < t + RECOVERY_INTERVAL)
        {
            return;
        }
        self.last_recovery = Some(now);
        let (mut local, mut remote) = (local, remote);
        // Back to port 500: NAT detection runs again.
        local.set_port(500);
        remote.set_port(500);
        self.endpoints.get_or_insert((local, remote));
        self.want_child = true;
        self.start_main_mode(now, local, remote, true);
    }

    /// The established ISAKMP SA to run exchanges over: the newest one.
    fn current(&self) -> Option<usize> {
        self.sas
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == Phase1::Established && !s.superseded)
            .max_by_key(|(_, s)| s.created)
            .map(|(i, _)| i)
    }

    fn find_sa(&self, h: &HeaderRepr) -> Option<usize> {
        self.sas
            .iter()
            .position(|s| s.cookies.i == h.initiator_cookie && s.cookies.r == h.responder_cookie)
    }

    fn transmit(&mut self, local: SocketAddr, remote: SocketAddr, payload: Vec<u8>) {
        self.transmits.push_back(Transmit {
            local,
            remote,
            payload,
        });
    }

    fn random_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.rng.fill_bytes(&mut v);
        v
    }

    fn random_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.rng.fill_bytes(&mut b);
        u32::from_be_bytes(b)
    }

    /// A nonzero cookie, SPI or message ID (zero means "none" in all three).
    fn random_nonzero_u64(&mut self) -> u64 {
        loop {
            let mut b = [0u8; 8];
            self.rng.fill_bytes(&mut b);
            let v = u64::from_be_bytes(b);
            if v != 0 {
                return v;
            }
        }
    }

    /// An ESP SPI outside the reserved 1..=255 range and not in use.
    fn random_spi(&mut self) -> u32 {
        loop {
            let v = self.random_u32();
            if v > 255 && !self.children.iter().any(|c| c.info.spi_in == v) {
                return v;
            }
        }
    }

    fn random_mid(&mut self) -> u32 {
        loop {
            let v = self.random_u32();
            if v != 0 {
                return v;
            }
        }
    }

    /// Forgets an ISAKMP SA, reporting it down if it had been reported up.
    fn remove_sa(&mut self, idx: usize, reason: DownReason) {
        let sa = self.sas.remove(idx);
        self.quick.retain(|q| q.cookies != sa.cookies);
        if sa.state == Phase1::Established || sa.initiator {
            self.events.push_back(Event::IkeSaDown {
                spi_i: sa.cookies.i,
                spi_r: sa.cookies.r,
                reason,
            });
        }
    }

    fn drop_children(&mut self) {
        for c in core::mem::take(&mut self.children) {
            self.events.push_back(Event::ChildSaDeleted {
                spi_in: c.info.spi_in,
                spi_out: c.info.spi_out,
            });
        }
    }

    fn remove_child(&mut self, spi_in: u32) -> Option<ChildSaInfo> {
        let i = self.children.iter().position(|c| c.info.spi_in == spi_in)?;
        let c = self.children.remove(i);
        self.events.push_back(Event::ChildSaDeleted {
            spi_in: c.info.spi_in,
            spi_out: c.info.spi_out,
        });
        Some(c.info)
    }

    /// A rekey deadline: `margin` plus up to `jitter` before `life` ends, so that both ends
    /// rarely rekey at once; never earlier than half the lifetime.
    fn rekey_time(&mut self, now: Instant, life: Duration) -> Instant {
        let jitter_ms = u64::try_from(self.config.rekey_jitter.as_millis()).unwrap_or(0);
        let jitter = if jitter_ms == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(u64::from(self.random_u32()) % jitter_ms)
        };
        let before = (self.config.rekey_margin + jitter).min(life / 2);
        now + life - before
    }
}

/// The IKEv1 parse errors in the vocabulary of [`Error`].
fn wire_error(e: wire::ikev1::Error) -> Error {
    use wire::ike::Error as W;
    use wire::ikev1::Error as V1;
    Error::InvalidMessage(match e {
        V1::Truncated => W::Truncated,
        V1::BadLength => W::BadLength,
        V1::BadVersion(v) => W::BadVersion(v),
        V1::BadPayload(t) | V1::Misplaced(t) => W::BadPayload(t),
        _ => W::BadLength,
    })
}

/// Constant-time comparison for received hashes.
fn hashes_equal(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    core::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests;
