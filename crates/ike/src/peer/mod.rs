//! The IKE state machine for one configured peer (RFC 7296), sans-IO.
//!
//! A [`Peer`] holds every IKE SA negotiated with one remote gateway, in either role, and the
//! CHILD SAs under them. It reads no clock, opens no socket and draws randomness only from the
//! RNG it was given. The caller drives it:
//!
//! 1. feed datagrams from UDP 500/4500 with [`Peer::handle_datagram`] (without the RFC 3948
//!    non-ESP marker);
//! 2. after every input, drain [`Peer::poll_transmit`] (send each datagram; one whose local or
//!    remote port is 4500 gets the non-ESP marker) and [`Peer::poll_event`] (install or remove
//!    SAs in the dataplane);
//! 3. sleep until [`Peer::poll_timeout`], then call [`Peer::handle_timeout`] and drain again.
//!
//! Commands ([`Peer::initiate`], [`Peer::rekey_child`], [`Peer::rekey_ike`], [`Peer::delete`])
//! only queue work; their output also comes out of the poll functions.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_core::CryptoRngCore;
use wire::esp::NAT_T_PORT;
use wire::ike::TrafficSelector;

use crate::dh::KeyPair;
use crate::error::Error;
use crate::identity::Identity;
use crate::keys::{ChildKeys, IkeKeys};
use crate::proposal::{ChildSuite, EspProposal, IkeProposal, IkeSuite};

mod auth;
mod child;
mod framing;
mod informational;
mod policy;
mod recovery;

pub use policy::{Backoff, Reinitiation};
pub use recovery::RECOVERY_INTERVAL;
mod sa_init;

use framing::{ct_eq, digest, find_ke, find_nonce, find_sa, find_ts, first_error, proposal_number};

/// Retransmission schedule for requests (strongSwan's defaults: 4 s, factor 1.8, 5 tries).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retransmit {
    pub base: Duration,
    pub factor: f64,
    /// Retransmissions after the first send; the request fails one timeout after the last.
    pub tries: u32,
}

impl Default for Retransmit {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(4),
            factor: 1.8,
            tries: 5,
        }
    }
}

impl Retransmit {
    /// How long to wait after send number `n` (0 = first send).
    pub fn timeout(&self, n: u32) -> Duration {
        let exp = i32::try_from(n).unwrap_or(i32::MAX);
        self.base.mul_f64(self.factor.powi(exp))
    }
}

/// What to do when the peer stops answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpdAction {
    /// Tear the SAs down and establish them again.
    Restart,
    /// Tear the SAs down and wait for the peer.
    Clear,
}

/// Dead peer detection: an empty INFORMATIONAL after `delay` of silence; the peer is declared
/// dead when it has not answered within `timeout` (or the retransmissions ran out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dpd {
    pub delay: Duration,
    pub timeout: Duration,
    pub action: DpdAction,
}

/// Everything negotiated with one peer.
#[derive(Clone)]
pub struct Config {
    /// Our identity; the local address when `None`.
    pub local_id: Option<Identity>,
    /// The identity the peer must prove; the peer's address when `None`.
    pub remote_id: Option<Identity>,
    pub psk: Vec<u8>,
    /// Keys of their own for peers that prove one of these identities (as NEC IX and YAMAHA
    /// RTX hold one key per peer ID); `psk` serves every other peer. A peer proving one of
    /// these identities is accepted as well as `remote_id`.
    pub remote_psks: Vec<(Identity, Vec<u8>)>,
    pub ike: Vec<IkeProposal>,
    pub esp: Vec<EspProposal>,
    /// Our side of the tunnel (TSi when we initiate).
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub retransmit: Retransmit,
    pub dpd: Option<Dpd>,
    pub ike_lifetime: Duration,
    pub child_lifetime: Duration,
    /// Rekey this long before the lifetime ends ...
    pub rekey_margin: Duration,
    /// ... minus a random part up to this, so that both ends rarely rekey at once.
    pub rekey_jitter: Duration,
    /// Half-open IKE SAs above which IKE_SA_INIT requests must carry a COOKIE (§2.6).
    pub cookie_threshold: usize,
    /// A responder's half-open IKE SA is dropped when IKE_AUTH has not come by then.
    pub half_open_timeout: Duration,
}

/// Written by hand so that a debug log of a config can never carry the pre-shared keys.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let remote_psks: Vec<(&Identity, Redacted)> = self
            .remote_psks
            .iter()
            .map(|(id, _)| (id, Redacted))
            .collect();
        f.debug_struct("Config")
            .field("local_id", &self.local_id)
            .field("remote_id", &self.remote_id)
            .field("psk", &Redacted)
            .field("remote_psks", &remote_psks)
            .field("ike", &self.ike)
            .field("esp", &self.esp)
            .field("local_ts", &self.local_ts)
            .field("remote_ts", &self.remote_ts)
            .field("retransmit", &self.retransmit)
            .field("dpd", &self.dpd)
            .field("ike_lifetime", &self.ike_lifetime)
            .field("child_lifetime", &self.child_lifetime)
            .field("rekey_margin", &self.rekey_margin)
            .field("rekey_jitter", &self.rekey_jitter)
            .field("cookie_threshold", &self.cookie_threshold)
            .field("half_open_timeout", &self.half_open_timeout)
            .finish()
    }
}

/// Stands in for a key in debug output.
struct Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Config {
    /// The key shared with a peer that proves `id`: its own from `remote_psks`, or `psk`.
    pub fn psk_for(&self, id: &wire::ike::Id) -> &[u8] {
        self.remote_psks
            .iter()
            .find(|(i, _)| i.matches(id))
            .map_or(&self.psk, |(_, k)| k)
    }

    /// The key to prove ourselves with before the peer said who it is: the one of the
    /// identity we expect, if it has its own.
    pub fn psk_for_expected(&self) -> &[u8] {
        self.remote_id
            .as_ref()
            .and_then(|r| self.remote_psks.iter().find(|(i, _)| i == r))
            .map_or(&self.psk, |(_, k)| k)
    }

    /// The key for a peer at `addr` when its ID is not known yet: IKEv1 main mode derives
    /// SKEYID from the key before the ID arrives (RFC 2409 §5.4), so only an address
    /// identity in `remote_psks` can pick a key there, as with strongSwan and NEC IX.
    pub fn psk_for_address(&self, addr: std::net::IpAddr) -> &[u8] {
        self.remote_psks
            .iter()
            .find(|(i, _)| *i == Identity::Addr(addr))
            .map_or(&self.psk, |(_, k)| k)
    }

    /// A configuration with the modern default proposals and strongSwan-like timers.
    pub fn new(
        psk: &[u8],
        local_ts: Vec<TrafficSelector>,
        remote_ts: Vec<TrafficSelector>,
    ) -> Self {
        Self {
            local_id: None,
            remote_id: None,
            psk: psk.to_vec(),
            remote_psks: Vec::new(),
            ike: vec![IkeProposal::default_modern()],
            esp: vec![EspProposal::default_modern()],
            local_ts,
            remote_ts,
            retransmit: Retransmit::default(),
            dpd: Some(Dpd {
                delay: Duration::from_secs(30),
                timeout: Duration::from_secs(150),
                action: DpdAction::Restart,
            }),
            ike_lifetime: Duration::from_secs(4 * 3600),
            child_lifetime: Duration::from_secs(3600),
            rekey_margin: Duration::from_secs(540),
            rekey_jitter: Duration::from_secs(60),
            cookie_threshold: 10,
            half_open_timeout: Duration::from_secs(30),
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The IKE message, without the non-ESP marker.
    pub payload: Vec<u8>,
}

/// A CHILD SA as the dataplane needs it, oriented from our side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSaInfo {
    /// SPI the peer puts on packets to us.
    pub spi_in: u32,
    /// SPI we put on packets to the peer.
    pub spi_out: u32,
    pub suite: ChildSuite,
    pub encr_in: Vec<u8>,
    pub integ_in: Vec<u8>,
    pub encr_out: Vec<u8>,
    pub integ_out: Vec<u8>,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    /// ESP goes in UDP 4500 (a NAT was detected).
    pub udp_encap: bool,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The inbound SPI of the CHILD SA this one rekeys; the old one stays installed until a
    /// `ChildSaDeleted` for it follows.
    pub replaces: Option<u32>,
}

/// Why an IKE SA went away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// We or the peer deleted it.
    Deleted,
    /// Requests went unanswered (includes DPD).
    Timeout,
    /// Replaced by a newer IKE SA with the same peer (peer restart, INITIAL_CONTACT).
    Replaced,
    /// Negotiation failed.
    Failed(Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// IKE_SA_INIT found a NAT: the shell moves IKE and ESP to UDP 4500.
    NatDetected {
        local_behind_nat: bool,
        remote_behind_nat: bool,
    },
    IkeSaUp {
        spi_i: u64,
        spi_r: u64,
        suite: IkeSuite,
        remote: SocketAddr,
    },
    IkeSaRekeyed {
        old: (u64, u64),
        new: (u64, u64),
    },
    IkeSaDown {
        spi_i: u64,
        spi_r: u64,
        reason: DownReason,
    },
    ChildSaEstablished(Box<ChildSaInfo>),
    ChildSaDeleted {
        spi_in: u32,
        spi_out: u32,
    },
    /// A CHILD SA could not be set up (the IKE SA stays).
    ChildSaFailed(Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Initiator: IKE_SA_INIT sent.
    InitSent,
    /// Initiator: IKE_AUTH sent.
    AuthSent,
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH.
    HalfOpen,
    Established,
    /// Replaced by a rekeyed IKE SA; only the Delete exchange is left.
    Rekeyed,
}

#[derive(Debug)]
struct Child {
    info: ChildSaInfo,
    rekey_at: Option<Instant>,
    expire_at: Instant,
    /// We have a rekey of this child in flight or done.
    rekeying: bool,
    /// The peer rekeyed this child: (its Ni, our Nr, the inbound SPI of the SA it made).
    rekeyed_by_peer: Option<PeerRekey<u32>>,
}

/// A rekey of an SA that the peer initiated: that exchange's nonces and what it created.
#[derive(Debug, Clone)]
struct PeerRekey<T> {
    ni: Vec<u8>,
    nr: Vec<u8>,
    made: T,
}

impl<T> PeerRekey<T> {
    /// §2.8.1/§2.8.2: whether the peer's exchange holds the lowest of the four nonces when
    /// compared with ours (`ni`, `nr`), making the SA it created the redundant one.
    fn holds_lower_nonce_than(&self, ni: &[u8], nr: &[u8]) -> bool {
        self.ni.as_slice().min(self.nr.as_slice()) < ni.min(nr)
    }
}

/// Work waiting for the one-request window.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Request {
    CreateChild { rekeys: Option<u32> },
    RekeyIke,
    DeleteChild(Vec<u32>),
    DeleteIke,
    Dpd,
}

#[derive(Debug)]
enum Sent {
    Init,
    Auth {
        spi_in: u32,
    },
    CreateChild {
        rekeys: Option<u32>,
        spi_in: u32,
        ni: Vec<u8>,
        dh: Option<KeyPair>,
    },
    RekeyIke {
        spi: u64,
        ni: Vec<u8>,
        dh: KeyPair,
    },
    DeleteChild(Vec<u32>),
    DeleteIke,
    Dpd,
}

#[derive(Debug)]
struct Pending {
    mid: u32,
    bytes: Vec<u8>,
    sends: u32,
    next_at: Instant,
    /// Hard deadline (DPD timeout), if shorter than the retransmission schedule.
    deadline: Option<Instant>,
    sent: Sent,
}

#[derive(Debug)]
struct IkeSa {
    spi_i: u64,
    spi_r: u64,
    /// We are the original initiator (sets the I flag and picks SK_ei/SK_ai for sending).
    initiator: bool,
    state: State,
    suite: Option<IkeSuite>,
    keys: Option<IkeKeys>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    dh: Option<KeyPair>,
    cookie: Option<Vec<u8>>,
    init_request: Vec<u8>,
    init_response: Vec<u8>,
    next_mid: u32,
    peer_mid: u32,
    pending: Option<Pending>,
    queue: VecDeque<Request>,
    last_response: Option<(u32, Vec<u8>)>,
    /// SHA-256 of the request `last_response` answers: a copy is a retransmission only if
    /// its bytes are the same (§2.1), not merely its message ID.
    last_request: [u8; 32],
    children: Vec<Child>,
    local: SocketAddr,
    remote: SocketAddr,
    nat: bool,
    created: Instant,
    last_heard: Instant,
    rekey_at: Option<Instant>,
    /// Set once a Delete for this SA was sent or received; removed after the exchange.
    dying: bool,
    /// The peer rekeyed this IKE SA: (its Ni, our Nr, SPIs of the SA it made), kept to
    /// resolve a simultaneous rekey (§2.8.2).
    ike_rekeyed_by_peer: Option<PeerRekey<(u64, u64)>>,
}

impl IkeSa {
    /// CHILD_SA keying material from this IKE SA's SK_d (RFC 7296 §2.17), the same for both
    /// ends; which half each end sends with is the caller's choice.
    fn child_keys(
        &self,
        suite: &ChildSuite,
        pfs: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
    ) -> Result<ChildKeys, Error> {
        let (Some(ike_suite), Some(keys)) = (&self.suite, &self.keys) else {
            return Err(Error::ApiMisuse("IKE SA without keys"));
        };
        Ok(ChildKeys::derive(
            ike_suite.prf,
            &keys.sk_d,
            suite,
            pfs,
            ni,
            nr,
        ))
    }
}

/// IKE and CHILD SAs with one peer. See the module documentation for the call order.
pub struct Peer {
    config: Config,
    rng: Box<dyn CryptoRngCore + Send>,
    cookie_secret: [u8; 32],
    sas: Vec<IkeSa>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Where to (re)start from when DPD restarts the connection.
    endpoints: Option<(SocketAddr, SocketAddr)>,
    /// IKE SAs superseded by one that just came up, removed after the current message.
    replaced: Vec<(u64, u64)>,
    /// When [`Peer::handle_unknown_spi`] last started an exchange.
    last_recovery: Option<Instant>,
}

impl core::fmt::Debug for Peer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Peer")
            .field("sas", &self.sas.len())
            .finish_non_exhaustive()
    }
}

const NONCE_LEN: usize = 32;

/// How long an IKE SA replaced by a rekey waits for the peer's Delete before it is dropped
/// silently (the peer may have lost it, or a collision left nobody to send it).
const REKEYED_LINGER: Duration = Duration::from_secs(120);

impl Peer {
    pub fn new(config: Config, mut rng: Box<dyn CryptoRngCore + Send>) -> Self {
        let mut cookie_secret = [0u8; 32];
        rng.fill_bytes(&mut cookie_secret);
        Self {
            config,
            rng,
            cookie_secret,
            sas: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            endpoints: None,
            replaced: Vec::new(),
            last_recovery: None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// IKE SAs in any state (half-open included).
    pub fn ike_sa_count(&self) -> usize {
        self.sas.len()
    }

    /// Responder-side IKE SAs waiting for IKE_AUTH.
    pub fn half_open_count(&self) -> usize {
        self.sas
            .iter()
            .filter(|s| s.state == State::HalfOpen)
            .count()
    }

    pub fn is_established(&self) -> bool {
        self.sas.iter().any(|s| s.state == State::Established)
    }

    /// Installed CHILD SAs over all IKE SAs.
    pub fn child_sas(&self) -> impl Iterator<Item = &ChildSaInfo> {
        self.sas
            .iter()
            .flat_map(|s| s.children.iter().map(|c| &c.info))
    }

    /// SPIs of the established IKE SA, if any.
    pub fn ike_spis(&self) -> Option<(u64, u64)> {
        self.sas
            .iter()
            .find(|s| s.state == State::Established)
            .map(|s| (s.spi_i, s.spi_r))
    }

    /// The established IKE SA's SPIs (initiator's first), suite and keys, for a key log
    /// that lets Wireshark decrypt its messages.
    pub fn established_keys(&self) -> Option<((u64, u64), IkeSuite, &IkeKeys)> {
        let sa = self.sas.iter().find(|s| s.state == State::Established)?;
        Some(((sa.spi_i, sa.spi_r), sa.suite?, sa.keys.as_ref()?))
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Starts IKE_SA_INIT towards `remote` from `local`.
    pub fn initiate(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<(), Error> {
        let proposal = self
            .config
            .ike
            .first()
            .ok_or(Error::ApiMisuse("no IKE proposal"))?;
        let group = *proposal
            .dh
            .first()
            .ok_or(Error::ApiMisuse("IKE proposal without DH"))?;
        self.endpoints = Some((local, remote));
        let spi_i = self.random_ike_spi();
        let ni = self.random_bytes(NONCE_LEN);
        let dh = group.generate(&mut *self.rng);
        self.sas.push(IkeSa {
            spi_i,
            spi_r: 0,
            initiator: true,
            state: State::InitSent,
            suite: None,
            keys: None,
            ni,
            nr: Vec::new(),
            dh: Some(dh),
            cookie: None,
            init_request: Vec::new(),
            init_response: Vec::new(),
            next_mid: 0,
            peer_mid: 0,
            pending: None,
            queue: VecDeque::new(),
            last_response: None,
            last_request: [0; 32],
            children: Vec::new(),
            local,
            remote,
            nat: false,
            created: now,
            last_heard: now,
            rekey_at: None,
            dying: false,
            ike_rekeyed_by_peer: None,
        });
        let idx = self.sas.len() - 1;
        self.send_init(idx, now);
        Ok(())
    }

    /// Rekeys the CHILD SA whose inbound SPI is `spi_in` (make-before-break).
    pub fn rekey_child(&mut self, now: Instant, spi_in: u32) -> Result<(), Error> {
        let idx = self
            .sas
            .iter()
            .position(|s| {
                s.state == State::Established && s.children.iter().any(|c| c.info.spi_in == spi_in)
            })
            .ok_or(Error::ApiMisuse("no such CHILD SA"))?;
        self.queue_request(
            idx,
            now,
            Request::CreateChild {
                rekeys: Some(spi_in),
            },
        );
        Ok(())
    }

    /// Rekeys the established IKE SA.
    pub fn rekey_ike(&mut self, now: Instant) -> Result<(), Error> {
        let idx = self
            .established()
            .ok_or(Error::ApiMisuse("no established IKE SA"))?;
        self.queue_request(idx, now, Request::RekeyIke);
        Ok(())
    }

    /// Deletes every IKE SA (and so every CHILD SA) with the peer.
    pub fn delete(&mut self, now: Instant) {
        self.endpoints = None;
        for idx in (0..self.sas.len()).rev() {
            match self.sas[idx].state {
                State::Established => self.queue_request(idx, now, Request::DeleteIke),
                _ => self.remove_sa(idx, DownReason::Deleted),
            }
        }
    }

    /// Tells the peer that an authenticated ESP packet arrived on the CHILD SA with inbound
    /// SPI `spi_in`: traffic from the peer proves it alive, so DPD stays quiet (RFC 7296
    /// §2.4 only asks for liveness checks when nothing was heard).
    pub fn handle_esp_received(&mut self, now: Instant, spi_in: u32) {
        if let Some(sa) = self
            .sas
            .iter_mut()
            .find(|s| s.children.iter().any(|c| c.info.spi_in == spi_in))
        {
            sa.last_heard = sa.last_heard.max(now);
        }
    }

    /// The earliest instant at which [`Peer::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut at = |x: Instant| t = Some(t.map_or(x, |t| t.min(x)));
        for sa in &self.sas {
            if let Some(p) = &sa.pending {
                at(p.deadline.map_or(p.next_at, |d| d.min(p.next_at)));
            }
            if sa.state == State::HalfOpen {
                at(sa.created + self.config.half_open_timeout);
            }
            if sa.state == State::Rekeyed && sa.pending.is_none() {
                at(sa.created + REKEYED_LINGER);
            }
            if sa.state == State::Established {
                if let Some(r) = sa.rekey_at {
                    at(r);
                }
                if let (Some(dpd), None) = (self.config.dpd, &sa.pending) {
                    at(sa.last_heard + dpd.delay);
                }
                for c in &sa.children {
                    if let Some(r) = c.rekey_at {
                        at(r);
                    }
                    at(c.expire_at);
                }
            }
        }
        t
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let mut idx = 0;
        while idx < self.sas.len() {
            if self.timeout_sa(idx, now) {
                idx += 1;
            }
        }
    }

    /// Returns false if the SA at `idx` was removed.
    fn timeout_sa(&mut self, idx: usize, now: Instant) -> bool {
        let retransmit = self.config.retransmit;
        if let Some(p) = &mut self.sas[idx].pending {
            let dead = p.deadline.is_some_and(|d| now >= d)
                || (now >= p.next_at && p.sends > retransmit.tries);
            if dead {
                let was_dpd = matches!(p.sent, Sent::Dpd);
                let deleting = matches!(p.sent, Sent::DeleteIke);
                let establishing = self.sas[idx].state != State::Established;
                // Only a peer that went away after establishment is restarted; a failed
                // first attempt is reported and left to the caller.
                let restart = self
                    .config
                    .dpd
                    .is_some_and(|d| d.action == DpdAction::Restart)
                    && !self.sas[idx].dying
                    && (was_dpd || !establishing);
                self.remove_sa(
                    idx,
                    if deleting {
                        DownReason::Deleted
                    } else {
                        DownReason::Timeout
                    },
                );
                if restart && !deleting && !self.is_established() {
                    self.restart(now);
                }
                return false;
            }
            if now >= p.next_at {
                let bytes = p.bytes.clone();
                p.next_at = now + retransmit.timeout(p.sends);
                p.sends += 1;
                self.transmit(idx, bytes);
            }
        }
        let sa = &self.sas[idx];
        if sa.state == State::HalfOpen && now >= sa.created + self.config.half_open_timeout {
            // Never reported up: no event, just forget it.
            self.sas.remove(idx);
            return false;
        }
        if sa.state == State::Rekeyed && sa.pending.is_none() && now >= sa.created + REKEYED_LINGER
        {
            // The peer never deleted the SA it replaced; its CHILD SAs have moved already.
            self.remove_sa(idx, DownReason::Replaced);
            return false;
        }
        if sa.state != State::Established {
            return true;
        }
        if sa.rekey_at.is_some_and(|r| now >= r) {
            self.sas[idx].rekey_at = None;
            self.queue_request(idx, now, Request::RekeyIke);
        }
        let mut expired = Vec::new();
        let mut rekey = Vec::new();
        for c in &mut self.sas[idx].children {
            if now >= c.expire_at {
                expired.push(c.info.spi_in);
            } else if c.rekey_at.is_some_and(|r| now >= r) {
                c.rekey_at = None;
                rekey.push(c.info.spi_in);
            }
        }
        for spi in rekey {
            self.queue_request(idx, now, Request::CreateChild { rekeys: Some(spi) });
        }
        if !expired.is_empty() {
            for spi in &expired {
                self.remove_child(idx, *spi);
            }
            self.queue_request(idx, now, Request::DeleteChild(expired));
        }
        let sa = &self.sas[idx];
        if let Some(dpd) = self.config.dpd
            && sa.pending.is_none()
            && sa.queue.is_empty()
            && now >= sa.last_heard + dpd.delay
        {
            self.queue_request(idx, now, Request::Dpd);
        }
        true
    }

    fn restart(&mut self, now: Instant) {
        if let Some((local, remote)) = self.endpoints {
            // Ports fall back to 500: NAT detection runs again.
            let (mut l, mut r) = (local, remote);
            if l.port() == NAT_T_PORT {
                l.set_port(500);
            }
            if r.port() == NAT_T_PORT {
                r.set_port(500);
            }
            let _ = self.initiate(now, l, r);
        }
    }

    /// Processes one IKE datagram received on `local` from `remote`.
    ///
    /// Errors report what was wrong with the datagram (for logging); any Notify owed to the
    /// peer has already been queued for transmission.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), Error> {
        let r = self.datagram(now, local, remote, bytes);
        for spis in core::mem::take(&mut self.replaced) {
            if let Some(idx) = self.sas.iter().position(|s| (s.spi_i, s.spi_r) == spis) {
                self.remove_sa(idx, DownReason::Replaced);
            }
        }
        r
    }

    // ---- IKE_SA_INIT ---------------------------------------------------------------------

    // ---- IKE_AUTH ------------------------------------------------------------------------

    // ---- CHILD SAs -----------------------------------------------------------------------

    // ---- requests and responses -------------------------------------------------------------

    // ---- plumbing -------------------------------------------------------------------------
}
