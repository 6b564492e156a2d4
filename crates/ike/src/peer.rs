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
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand_core::CryptoRngCore;
use wire::esp::NAT_T_PORT;
use wire::ike::{
    self, Delete, HeaderRepr, Id, Ke, Message, Notify, Payload, Proposal, TrafficSelector,
    auth_method, exchange, flags, notify, payload_type as pt, protocol,
};

use crate::crypto::Prf;
use crate::dh::{DhGroup, KeyPair};
use crate::error::{Error, Incompatibility as Inc, Misbehaviour as Mis};
use crate::identity::{self, Identity};
use crate::keys::{ChildKeys, IkeKeys, nat_hash, psk_auth};
use crate::proposal::{ChildSuite, EspProposal, IkeProposal, IkeSuite};

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
#[derive(Debug, Clone)]
pub struct Config {
    /// Our identity; the local address when `None`.
    pub local_id: Option<Identity>,
    /// The identity the peer must prove; the peer's address when `None`.
    pub remote_id: Option<Identity>,
    pub psk: Vec<u8>,
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

impl Config {
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

    fn datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), Error> {
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.reject_init(local, remote, bytes, e);
                return Err(e.into());
            }
        };
        let h = msg.header;
        if h.exchange_type == exchange::IKE_SA_INIT {
            if h.is_response() {
                let idx = self
                    .sas
                    .iter()
                    .position(|s| {
                        s.initiator && s.spi_i == h.initiator_spi && s.state == State::InitSent
                    })
                    .ok_or(Error::PeerMisbehaved(Mis::UnknownSpi))?;
                return self.init_response(idx, now, bytes, &msg);
            }
            if h.responder_spi != 0 || h.message_id != 0 {
                return Err(Error::PeerMisbehaved(Mis::UnexpectedMessageId(
                    h.message_id,
                )));
            }
            if let Some(idx) = self
                .sas
                .iter()
                .position(|s| !s.initiator && s.spi_i == h.initiator_spi && s.remote == remote)
            {
                // A retransmitted IKE_SA_INIT: answer with what we sent before.
                if let Some((0, resp)) = self.sas[idx].last_response.clone() {
                    self.transmit(idx, resp);
                }
                return Ok(());
            }
            return self.init_request(now, local, remote, bytes, &msg);
        }
        let idx = self
            .sas
            .iter()
            .position(|s| s.spi_i == h.initiator_spi && s.spi_r == h.responder_spi)
            .ok_or(Error::PeerMisbehaved(Mis::UnknownSpi))?;
        if h.is_response() {
            let matches = self.sas[idx]
                .pending
                .as_ref()
                .is_some_and(|p| p.mid == h.message_id);
            if !matches {
                return Err(Error::PeerMisbehaved(Mis::UnexpectedMessageId(
                    h.message_id,
                )));
            }
            let payloads = self.open(idx, bytes, &msg)?;
            self.sas[idx].last_heard = now;
            self.response(idx, now, bytes, &payloads)
        } else {
            let sa = &self.sas[idx];
            if h.message_id.wrapping_add(1) == sa.peer_mid {
                if let Some((mid, resp)) = sa.last_response.clone()
                    && mid == h.message_id
                {
                    // Only answer copies that authenticate, so forged copies cannot make us
                    // amplify traffic.
                    self.open(idx, bytes, &msg)?;
                    self.transmit(idx, resp);
                }
                return Ok(());
            }
            if h.message_id != sa.peer_mid {
                return Err(Error::PeerMisbehaved(Mis::UnexpectedMessageId(
                    h.message_id,
                )));
            }
            let payloads = self.open(idx, bytes, &msg)?;
            self.sas[idx].last_heard = now;
            self.request(
                idx,
                now,
                local,
                remote,
                h.exchange_type,
                h.message_id,
                &payloads,
            )
        }
    }

    // ---- IKE_SA_INIT ---------------------------------------------------------------------

    /// Answers an unparseable IKE_SA_INIT request whose header we can still read with the
    /// Notify §2.5 / §1.5 ask for: UNSUPPORTED_CRITICAL_PAYLOAD naming the payload type, or
    /// INVALID_MAJOR_VERSION. Other errors, and anything on an existing SA, go unanswered.
    fn reject_init(&mut self, local: SocketAddr, remote: SocketAddr, bytes: &[u8], e: ike::Error) {
        let Ok(view) = ike::Header::new_checked(bytes) else {
            return;
        };
        if view.exchange_type() != exchange::IKE_SA_INIT
            || view.is_response()
            || view.responder_spi() != 0
            || view.message_id() != 0
        {
            return;
        }
        let n = match e {
            ike::Error::UnsupportedCritical(t) => {
                Notify::new(notify::UNSUPPORTED_CRITICAL_PAYLOAD, vec![t])
            }
            ike::Error::BadVersion(_) => Notify::new(notify::INVALID_MAJOR_VERSION, vec![]),
            _ => return,
        };
        let header = HeaderRepr {
            initiator_spi: view.initiator_spi(),
            responder_spi: 0,
            next_payload: 0,
            exchange_type: exchange::IKE_SA_INIT,
            flags: flags::RESPONSE,
            message_id: 0,
            length: 0,
        };
        self.transmits.push_back(Transmit {
            local,
            remote,
            payload: Message::emit_plain(&header, &[Payload::Notify(n)]),
        });
    }

    fn send_init(&mut self, idx: usize, now: Instant) {
        let sa = &self.sas[idx];
        let Some(dh) = &sa.dh else { return };
        let mut payloads = Vec::new();
        if let Some(c) = &sa.cookie {
            payloads.push(Payload::Notify(Notify::new(notify::COOKIE, c.clone())));
        }
        let group = dh.group();
        let proposals = self
            .config
            .ike
            .iter()
            .enumerate()
            .map(|(i, p)| p.to_payload(proposal_number(i), &[], Some(group)))
            .collect();
        payloads.push(Payload::Sa(proposals));
        payloads.push(Payload::Ke(Ke {
            group: group.id(),
            data: dh.public().to_vec(),
        }));
        payloads.push(Payload::Nonce(sa.ni.clone()));
        payloads.extend(nat_notifies(sa.spi_i, 0, sa.local, sa.remote));
        let header = HeaderRepr {
            initiator_spi: sa.spi_i,
            responder_spi: 0,
            next_payload: 0,
            exchange_type: exchange::IKE_SA_INIT,
            flags: flags::INITIATOR,
            message_id: 0,
            length: 0,
        };
        let bytes = Message::emit_plain(&header, &payloads);
        let sa = &mut self.sas[idx];
        sa.init_request = bytes.clone();
        sa.next_mid = 1;
        sa.pending = Some(Pending {
            mid: 0,
            bytes: bytes.clone(),
            sends: 1,
            next_at: now + self.config.retransmit.timeout(0),
            deadline: None,
            sent: Sent::Init,
        });
        self.transmit(idx, bytes);
    }

    fn init_request(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
        msg: &Message,
    ) -> Result<(), Error> {
        let h = msg.header;
        let reply = |payloads: Vec<Payload>| {
            let header = HeaderRepr {
                initiator_spi: h.initiator_spi,
                responder_spi: 0,
                next_payload: 0,
                exchange_type: exchange::IKE_SA_INIT,
                flags: flags::RESPONSE,
                message_id: 0,
                length: 0,
            };
            Transmit {
                local,
                remote,
                payload: Message::emit_plain(&header, &payloads),
            }
        };
        let (Some(sa), Some(ke), Some(ni)) = (
            find_sa(&msg.payloads),
            find_ke(&msg.payloads),
            find_nonce(&msg.payloads),
        ) else {
            return Err(Error::PeerMisbehaved(Mis::MissingPayload(pt::SA)));
        };
        // §2.6: under load, make the initiator prove it can receive at its address.
        let cookie = self.cookie(ni, remote.ip(), h.initiator_spi);
        if self.half_open_count() >= self.config.cookie_threshold {
            let got = msg
                .notifies(notify::COOKIE)
                .next()
                .map(|n| n.data.as_slice());
            if got != Some(cookie.as_slice()) {
                self.transmits
                    .push_back(reply(vec![Payload::Notify(Notify::new(
                        notify::COOKIE,
                        cookie,
                    ))]));
                return Ok(());
            }
        }
        let Some(suite) = sa.iter().find_map(|p| {
            self.config
                .ike
                .iter()
                .find_map(|ours| ours.select(p))
                .map(|s| (s, p.number))
        }) else {
            let n = Notify::new(notify::NO_PROPOSAL_CHOSEN, vec![]);
            self.transmits.push_back(reply(vec![Payload::Notify(n)]));
            return Err(Error::PeerIncompatible(Inc::NoProposalChosen));
        };
        let (suite, number) = suite;
        if ke.group != suite.dh.id() {
            // §1.2: tell the initiator which group we want; keep no state.
            let n = Notify::new(
                notify::INVALID_KE_PAYLOAD,
                suite.dh.id().to_be_bytes().to_vec(),
            );
            self.transmits.push_back(reply(vec![Payload::Notify(n)]));
            return Err(Error::PeerIncompatible(Inc::InvalidKe(suite.dh.id())));
        }
        let dh = suite.dh.generate(&mut *self.rng);
        let shared = dh
            .agree(&ke.data)
            .map_err(|_| Error::PeerMisbehaved(Mis::BadPublicValue))?;
        let spi_r = self.random_ike_spi();
        let nr = self.random_bytes(NONCE_LEN);
        let keys = IkeKeys::derive(&suite, &shared, ni, &nr, h.initiator_spi, spi_r);
        let nat = self.nat_check(msg, h.initiator_spi, local, remote);
        let mut payloads = vec![
            Payload::Sa(vec![suite.to_payload(number, &[])]),
            Payload::Ke(Ke {
                group: suite.dh.id(),
                data: dh.public().to_vec(),
            }),
            Payload::Nonce(nr.clone()),
        ];
        payloads.extend(nat_notifies(h.initiator_spi, spi_r, local, remote));
        let header = HeaderRepr {
            initiator_spi: h.initiator_spi,
            responder_spi: spi_r,
            next_payload: 0,
            exchange_type: exchange::IKE_SA_INIT,
            flags: flags::RESPONSE,
            message_id: 0,
            length: 0,
        };
        let response = Message::emit_plain(&header, &payloads);
        self.sas.push(IkeSa {
            spi_i: h.initiator_spi,
            spi_r,
            initiator: false,
            state: State::HalfOpen,
            suite: Some(suite),
            keys: Some(keys),
            ni: ni.to_vec(),
            nr,
            dh: None,
            cookie: None,
            init_request: bytes[..h.length as usize].to_vec(),
            init_response: response.clone(),
            next_mid: 0,
            peer_mid: 1,
            pending: None,
            queue: VecDeque::new(),
            last_response: Some((0, response.clone())),
            children: Vec::new(),
            local,
            remote,
            nat,
            created: now,
            last_heard: now,
            rekey_at: None,
            dying: false,
            ike_rekeyed_by_peer: None,
        });
        let idx = self.sas.len() - 1;
        self.transmit(idx, response);
        Ok(())
    }

    fn init_response(
        &mut self,
        idx: usize,
        now: Instant,
        bytes: &[u8],
        msg: &Message,
    ) -> Result<(), Error> {
        if let Some(c) = msg.notifies(notify::COOKIE).next() {
            self.sas[idx].cookie = Some(c.data.clone());
            self.send_init(idx, now);
            return Ok(());
        }
        if let Some(n) = msg.notifies(notify::INVALID_KE_PAYLOAD).next() {
            let want = n
                .data
                .get(..2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .and_then(DhGroup::from_id)
                .filter(|g| self.config.ike.iter().any(|p| p.dh.contains(g)));
            let Some(group) = want else {
                let e = Error::PeerIncompatible(Inc::NoProposalChosen);
                self.remove_sa(idx, DownReason::Failed(e.clone()));
                return Err(e);
            };
            let current = self.sas[idx].dh.as_ref().map(KeyPair::group);
            if current == Some(group) {
                // Asked for the group we used: the peer is confused; stop rather than loop.
                let e = Error::PeerMisbehaved(Mis::ErrorNotify(notify::INVALID_KE_PAYLOAD));
                self.remove_sa(idx, DownReason::Failed(e.clone()));
                return Err(e);
            }
            self.sas[idx].dh = Some(group.generate(&mut *self.rng));
            self.send_init(idx, now);
            return Ok(());
        }
        if let Some(n) = msg.payloads.iter().find_map(|p| match p {
            Payload::Notify(n) if notify::is_error(n.notify_type) => Some(n.notify_type),
            _ => None,
        }) {
            let e = if n == notify::NO_PROPOSAL_CHOSEN {
                Error::PeerIncompatible(Inc::NoProposalChosen)
            } else {
                Error::PeerMisbehaved(Mis::ErrorNotify(n))
            };
            self.remove_sa(idx, DownReason::Failed(e.clone()));
            return Err(e);
        }
        let (Some(sa_p), Some(ke), Some(nr)) = (
            find_sa(&msg.payloads),
            find_ke(&msg.payloads),
            find_nonce(&msg.payloads),
        ) else {
            return Err(Error::PeerMisbehaved(Mis::MissingPayload(pt::SA)));
        };
        let suite = match sa_p {
            [p] => IkeSuite::from_accepted(p),
            _ => None,
        }
        .filter(|s| self.config.ike.iter().any(|o| o.allows(s)))
        .ok_or(Error::PeerMisbehaved(Mis::ChoseUnofferedProposal))?;
        let sa = &self.sas[idx];
        let dh = sa.dh.as_ref().ok_or(Error::ApiMisuse("no DH state"))?;
        if ke.group != suite.dh.id() || dh.group() != suite.dh {
            return Err(Error::PeerMisbehaved(Mis::ChoseUnofferedProposal));
        }
        let shared = dh
            .agree(&ke.data)
            .map_err(|_| Error::PeerMisbehaved(Mis::BadPublicValue))?;
        let h = msg.header;
        let keys = IkeKeys::derive(&suite, &shared, &sa.ni, nr, sa.spi_i, h.responder_spi);
        let nat = self.nat_check(msg, h.initiator_spi, sa.local, sa.remote);
        let sa = &mut self.sas[idx];
        sa.spi_r = h.responder_spi;
        sa.suite = Some(suite);
        sa.keys = Some(keys);
        sa.nr = nr.to_vec();
        sa.dh = None;
        sa.init_response = bytes[..h.length as usize].to_vec();
        sa.pending = None;
        sa.state = State::AuthSent;
        sa.last_heard = now;
        if nat {
            // §2.23: the initiator moves to port 4500 once a NAT is seen.
            sa.nat = true;
            sa.local.set_port(NAT_T_PORT);
            sa.remote.set_port(NAT_T_PORT);
        }
        self.send_auth(idx, now);
        Ok(())
    }

    /// Checks the NAT detection notifies of an IKE_SA_INIT message; returns whether a NAT is
    /// between us and reports it.
    fn nat_check(
        &mut self,
        msg: &Message,
        spi_i: u64,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> bool {
        let h = msg.header;
        // Hashes in the request use SPIr 0; the response's use the real SPIr.
        let spi_r = if h.is_response() { h.responder_spi } else { 0 };
        let src = msg
            .notifies(notify::NAT_DETECTION_SOURCE_IP)
            .collect::<Vec<_>>();
        let Some(dst) = msg.notifies(notify::NAT_DETECTION_DESTINATION_IP).next() else {
            return false;
        };
        if src.is_empty() {
            return false;
        }
        let remote_hash = nat_hash(spi_i, spi_r, remote.ip(), remote.port());
        let local_hash = nat_hash(spi_i, spi_r, local.ip(), local.port());
        let remote_behind_nat = !src.iter().any(|n| n.data == remote_hash);
        let local_behind_nat = dst.data != local_hash;
        if local_behind_nat || remote_behind_nat {
            self.events.push_back(Event::NatDetected {
                local_behind_nat,
                remote_behind_nat,
            });
            true
        } else {
            false
        }
    }

    fn cookie(&self, ni: &[u8], addr: IpAddr, spi_i: u64) -> Vec<u8> {
        let ip = match addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        // §2.6: <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>).
        let mut c = vec![1u8];
        let mac = Prf::HmacSha256.compute(&self.cookie_secret, &[ni, &ip, &spi_i.to_be_bytes()]);
        c.extend_from_slice(&mac[..16]);
        c
    }

    // ---- IKE_AUTH ------------------------------------------------------------------------

    fn local_identity(&self, sa: &IkeSa) -> Identity {
        self.config
            .local_id
            .clone()
            .unwrap_or(Identity::Addr(sa.local.ip()))
    }

    fn remote_identity(&self, sa: &IkeSa) -> Identity {
        self.config
            .remote_id
            .clone()
            .unwrap_or(Identity::Addr(sa.remote.ip()))
    }

    /// AUTH data that `initiator_side` (original initiator or responder) must send.
    fn auth_data(&self, sa: &IkeSa, from_initiator: bool, id: &Id) -> Vec<u8> {
        let (Some(suite), Some(keys)) = (&sa.suite, &sa.keys) else {
            return Vec::new();
        };
        if from_initiator {
            psk_auth(
                suite.prf,
                &self.config.psk,
                &sa.init_request,
                &sa.nr,
                &keys.sk_pi,
                &id.body(),
            )
        } else {
            psk_auth(
                suite.prf,
                &self.config.psk,
                &sa.init_response,
                &sa.ni,
                &keys.sk_pr,
                &id.body(),
            )
        }
    }

    fn send_auth(&mut self, idx: usize, now: Instant) {
        let spi_in = self.random_esp_spi();
        let sa = &self.sas[idx];
        let id = self.local_identity(sa).to_payload();
        let auth = self.auth_data(sa, true, &id);
        let mut payloads = vec![Payload::IdI(id)];
        if let Some(r) = &self.config.remote_id {
            payloads.push(Payload::IdR(r.to_payload()));
        }
        payloads.push(Payload::Auth {
            method: auth_method::SHARED_KEY_MIC,
            data: auth,
        });
        payloads.push(Payload::Notify(Notify::new(
            notify::INITIAL_CONTACT,
            vec![],
        )));
        payloads.push(Payload::Sa(self.esp_proposals(spi_in, None)));
        payloads.push(Payload::TsI(self.config.local_ts.clone()));
        payloads.push(Payload::TsR(self.config.remote_ts.clone()));
        self.send_request(
            idx,
            now,
            exchange::IKE_AUTH,
            &payloads,
            Sent::Auth { spi_in },
        );
    }

    fn esp_proposals(&self, spi_in: u32, pfs: Option<DhGroup>) -> Vec<Proposal> {
        self.config
            .esp
            .iter()
            .enumerate()
            .map(|(i, p)| p.to_payload(proposal_number(i), spi_in, pfs))
            .collect()
    }

    fn auth_request(
        &mut self,
        idx: usize,
        now: Instant,
        payloads: &[Payload],
    ) -> Result<Vec<Payload>, Error> {
        let sa = &self.sas[idx];
        let id = payloads.iter().find_map(|p| match p {
            Payload::IdI(id) => Some(id),
            _ => None,
        });
        let auth = payloads.iter().find_map(|p| match p {
            Payload::Auth { method, data } => Some((*method, data)),
            _ => None,
        });
        let (Some(id), Some((method, data))) = (id, auth) else {
            return Err(Error::PeerMisbehaved(Mis::MissingPayload(pt::AUTH)));
        };
        if method != auth_method::SHARED_KEY_MIC {
            return Err(Error::PeerIncompatible(Inc::UnsupportedAuthMethod(method)));
        }
        if !self.remote_identity(sa).matches(id) {
            return Err(Error::PeerIncompatible(Inc::IdentityMismatch));
        }
        let expect = self.auth_data(sa, true, id);
        if !ct_eq(&expect, data) {
            return Err(Error::PeerMisbehaved(Mis::BadAuth));
        }
        let local_id = self.local_identity(sa).to_payload();
        let my_auth = self.auth_data(sa, false, &local_id);
        let replace = ike::notifies(payloads, notify::INITIAL_CONTACT)
            .next()
            .is_some();
        self.sas[idx].state = State::Established;
        self.sas[idx].last_heard = now;
        self.up(idx, now, replace);
        let mut out = vec![
            Payload::IdR(local_id),
            Payload::Auth {
                method: auth_method::SHARED_KEY_MIC,
                data: my_auth,
            },
        ];
        match self.child_request(idx, now, payloads, None) {
            Ok(mut child) => out.append(&mut child),
            Err(e) => {
                self.events.push_back(Event::ChildSaFailed(e.clone()));
                if let Some(n) = e.notify_type() {
                    out.push(Payload::Notify(Notify::new(n, vec![])));
                }
            }
        }
        Ok(out)
    }

    fn auth_response(
        &mut self,
        idx: usize,
        now: Instant,
        spi_in: u32,
        payloads: &[Payload],
    ) -> Result<(), Error> {
        if let Some(n) = first_error(payloads)
            && n == notify::AUTHENTICATION_FAILED
        {
            let e = Error::PeerMisbehaved(Mis::ErrorNotify(n));
            self.remove_sa(idx, DownReason::Failed(e.clone()));
            return Err(e);
        }
        let sa = &self.sas[idx];
        let id = payloads.iter().find_map(|p| match p {
            Payload::IdR(id) => Some(id),
            _ => None,
        });
        let auth = payloads.iter().find_map(|p| match p {
            Payload::Auth { method, data } => Some((*method, data)),
            _ => None,
        });
        let result = match (id, auth) {
            (Some(id), Some((auth_method::SHARED_KEY_MIC, data))) => {
                if !self.remote_identity(sa).matches(id) {
                    Err(Error::PeerIncompatible(Inc::IdentityMismatch))
                } else if !ct_eq(&self.auth_data(sa, false, id), data) {
                    Err(Error::PeerMisbehaved(Mis::BadAuth))
                } else {
                    Ok(())
                }
            }
            (Some(_), Some((m, _))) => Err(Error::PeerIncompatible(Inc::UnsupportedAuthMethod(m))),
            _ => Err(Error::PeerMisbehaved(Mis::MissingPayload(pt::AUTH))),
        };
        if let Err(e) = result {
            self.remove_sa(idx, DownReason::Failed(e.clone()));
            return Err(e);
        }
        self.sas[idx].state = State::Established;
        self.up(idx, now, true);
        if let Err(e) = self.child_response(idx, now, spi_in, None, None, payloads) {
            self.events.push_back(Event::ChildSaFailed(e));
        }
        Ok(())
    }

    /// An IKE SA became established: report it, schedule its rekey, and retire older IKE SAs
    /// with the same peer (a restarted peer leaves stale ones behind).
    fn up(&mut self, idx: usize, now: Instant, replace: bool) {
        let jitter = self.jitter();
        let sa = &mut self.sas[idx];
        sa.rekey_at = Some(
            now + self
                .config
                .ike_lifetime
                .saturating_sub(self.config.rekey_margin + jitter),
        );
        let (spi_i, spi_r, remote) = (sa.spi_i, sa.spi_r, sa.remote);
        let Some(suite) = sa.suite else { return };
        self.events.push_back(Event::IkeSaUp {
            spi_i,
            spi_r,
            suite,
            remote,
        });
        if replace {
            // Removing now would shift the index the caller still uses; handle_datagram
            // retires them once the message is processed.
            for s in &self.sas {
                if (s.spi_i, s.spi_r) != (spi_i, spi_r)
                    && matches!(s.state, State::Established | State::Rekeyed)
                {
                    self.replaced.push((s.spi_i, s.spi_r));
                }
            }
        }
    }

    // ---- CHILD SAs -----------------------------------------------------------------------

    /// Responder side of a CHILD SA negotiation (IKE_AUTH or CREATE_CHILD_SA). Returns the
    /// payloads of the answer.
    fn child_request(
        &mut self,
        idx: usize,
        now: Instant,
        payloads: &[Payload],
        exch: Option<(&[u8], Option<&Ke>)>,
    ) -> Result<Vec<Payload>, Error> {
        let proposals =
            find_sa(payloads).ok_or(Error::PeerMisbehaved(Mis::MissingPayload(pt::SA)))?;
        let (tsi, tsr) =
            find_ts(payloads).ok_or(Error::PeerMisbehaved(Mis::MissingPayload(pt::TSI)))?;
        let want_dh = match exch {
            Some((_, Some(ke))) => Some(
                DhGroup::from_id(ke.group).ok_or(Error::PeerIncompatible(Inc::NoProposalChosen))?,
            ),
            _ => None,
        };
        let (suite, number, spi_out) = proposals
            .iter()
            .find_map(|p| {
                let spi = u32::from_be_bytes(p.spi.as_slice().try_into().ok()?);
                self.config
                    .esp
                    .iter()
                    .find_map(|o| o.select(p, want_dh))
                    .map(|s| (s, p.number, spi))
            })
            .ok_or(Error::PeerIncompatible(Inc::NoProposalChosen))?;
        // The peer's TSi is its side, i.e. our remote side.
        let remote_ts = identity::narrow(tsi, &self.config.remote_ts);
        let local_ts = identity::narrow(tsr, &self.config.local_ts);
        if remote_ts.is_empty() || local_ts.is_empty() {
            return Err(Error::PeerIncompatible(Inc::TsUnacceptable));
        }
        let rekeys = ike::notifies(payloads, notify::REKEY_SA)
            .next()
            .and_then(|n| n.spi.as_slice().try_into().ok().map(u32::from_be_bytes));
        let spi_in = self.random_esp_spi();
        let sa = &self.sas[idx];
        let (ni, nr, ke_out, pfs) = match exch {
            None => (sa.ni.clone(), sa.nr.clone(), None, None),
            Some((ni, ke)) => {
                let nr = self.random_bytes(NONCE_LEN);
                match (ke, suite.dh) {
                    (Some(ke), Some(g)) => {
                        let kp = g.generate(&mut *self.rng);
                        let z = kp
                            .agree(&ke.data)
                            .map_err(|_| Error::PeerMisbehaved(Mis::BadPublicValue))?;
                        (
                            ni.to_vec(),
                            nr,
                            Some(Ke {
                                group: g.id(),
                                data: kp.public().to_vec(),
                            }),
                            Some(z),
                        )
                    }
                    _ => (ni.to_vec(), nr, None, None),
                }
            }
        };
        // The peer names the child by the SPI it receives on, which is our outbound SPI.
        let old_in = rekeys.and_then(|spi_out| {
            self.sas[idx]
                .children
                .iter()
                .find(|c| c.info.spi_out == spi_out)
                .map(|c| c.info.spi_in)
        });
        if rekeys.is_some() && old_in.is_none() {
            return Err(Error::PeerMisbehaved(Mis::ErrorNotify(
                notify::CHILD_SA_NOT_FOUND,
            )));
        }
        let ours_in_flight = self.sas[idx].pending.as_ref().is_some_and(
            |p| matches!(p.sent, Sent::CreateChild { rekeys: Some(s), .. } if Some(s) == old_in),
        );
        if let Some(old) = old_in
            && let Some(c) = self.sas[idx]
                .children
                .iter_mut()
                .find(|c| c.info.spi_in == old)
        {
            if c.rekeying && c.rekeyed_by_peer.is_none() && !ours_in_flight {
                // Our own rekey of it already finished: it is on its way out.
                return Err(Error::PeerMisbehaved(Mis::ErrorNotify(
                    notify::TEMPORARY_FAILURE,
                )));
            }
            c.rekeyed_by_peer = Some(PeerRekey {
                ni: ni.clone(),
                nr: nr.clone(),
                made: spi_in,
            });
        }
        let sa = &self.sas[idx];
        let km = sa.child_keys(&suite, pfs.as_deref().map(|z| z.as_slice()), &ni, &nr)?;
        let info = ChildSaInfo {
            spi_in,
            spi_out,
            suite,
            encr_in: km.encr_i.clone(),
            integ_in: km.integ_i.clone(),
            encr_out: km.encr_r.clone(),
            integ_out: km.integ_r.clone(),
            local_ts: local_ts.clone(),
            remote_ts: remote_ts.clone(),
            udp_encap: sa.nat,
            local: sa.local,
            remote: sa.remote,
            replaces: old_in,
        };
        self.add_child(idx, now, info);
        let mut out = vec![Payload::Sa(vec![suite.to_payload(number, spi_in)])];
        if exch.is_some() {
            out.push(Payload::Nonce(nr));
        }
        if let Some(ke) = ke_out {
            out.push(Payload::Ke(ke));
        }
        out.push(Payload::TsI(remote_ts));
        out.push(Payload::TsR(local_ts));
        Ok(out)
    }

    /// Initiator side: the answer to our IKE_AUTH or CREATE_CHILD_SA.
    fn child_response(
        &mut self,
        idx: usize,
        now: Instant,
        spi_in: u32,
        rekeys: Option<u32>,
        exch: Option<(&[u8], Option<&KeyPair>)>,
        payloads: &[Payload],
    ) -> Result<(), Error> {
        if let Some(n) = first_error(payloads) {
            return Err(match n {
                notify::NO_PROPOSAL_CHOSEN => Error::PeerIncompatible(Inc::NoProposalChosen),
                notify::TS_UNACCEPTABLE => Error::PeerIncompatible(Inc::TsUnacceptable),
                n => Error::PeerMisbehaved(Mis::ErrorNotify(n)),
            });
        }
        let proposals =
            find_sa(payloads).ok_or(Error::PeerMisbehaved(Mis::MissingPayload(pt::SA)))?;
        let (tsi, tsr) =
            find_ts(payloads).ok_or(Error::PeerMisbehaved(Mis::MissingPayload(pt::TSI)))?;
        let (suite, spi_out) = match proposals {
            [p] => ChildSuite::from_accepted(p),
            _ => None,
        }
        .filter(|(s, _)| self.config.esp.iter().any(|o| o.allows(s)))
        .ok_or(Error::PeerMisbehaved(Mis::ChoseUnofferedProposal))?;
        // The responder may only narrow what we proposed.
        if !identity::is_subset(tsi, &self.config.local_ts)
            || !identity::is_subset(tsr, &self.config.remote_ts)
            || tsi.is_empty()
            || tsr.is_empty()
        {
            return Err(Error::PeerIncompatible(Inc::TsUnacceptable));
        }
        let sa = &self.sas[idx];
        let (ni, nr, pfs) = match exch {
            None => (sa.ni.clone(), sa.nr.clone(), None),
            Some((ni, dh)) => {
                let nr = find_nonce(payloads)
                    .ok_or(Error::PeerMisbehaved(Mis::MissingPayload(pt::NONCE)))?;
                let pfs = match (dh, suite.dh) {
                    (Some(kp), Some(g)) if kp.group() == g => {
                        let ke = find_ke(payloads)
                            .filter(|k| k.group == g.id())
                            .ok_or(Error::PeerMisbehaved(Mis::MissingPayload(pt::KE)))?;
                        Some(
                            kp.agree(&ke.data)
                                .map_err(|_| Error::PeerMisbehaved(Mis::BadPublicValue))?,
                        )
                    }
                    (None, None) => None,
                    _ => return Err(Error::PeerMisbehaved(Mis::ChoseUnofferedProposal)),
                };
                (ni.to_vec(), nr.to_vec(), pfs)
            }
        };
        let km = sa.child_keys(&suite, pfs.as_deref().map(|z| z.as_slice()), &ni, &nr)?;
        let info = ChildSaInfo {
            spi_in,
            spi_out,
            suite,
            encr_in: km.encr_r.clone(),
            integ_in: km.integ_r.clone(),
            encr_out: km.encr_i.clone(),
            integ_out: km.integ_i.clone(),
            local_ts: tsi.to_vec(),
            remote_ts: tsr.to_vec(),
            udp_encap: sa.nat,
            local: sa.local,
            remote: sa.remote,
            replaces: rekeys,
        };
        self.add_child(idx, now, info);
        if let Some(old) = rekeys {
            self.finish_child_rekey(idx, now, old, spi_in, &ni, &nr);
        }
        Ok(())
    }

    /// After our rekey of `old` produced `new`: delete the old SA, unless the peer rekeyed it
    /// at the same time and our exchange holds the lowest nonce (§2.8.1), in which case our
    /// new SA is the redundant one.
    fn finish_child_rekey(
        &mut self,
        idx: usize,
        now: Instant,
        old: u32,
        new: u32,
        ni: &[u8],
        nr: &[u8],
    ) {
        let peer = self.sas[idx]
            .children
            .iter()
            .find(|c| c.info.spi_in == old)
            .and_then(|c| c.rekeyed_by_peer.clone());
        let delete = match peer {
            Some(p) if p.holds_lower_nonce_than(ni, nr) => old,
            Some(_) => new,
            None => old,
        };
        // The SA stays installed until the peer confirms the delete, so that packets it sent
        // on it meanwhile still decrypt.
        if let Some(c) = self.sas[idx]
            .children
            .iter_mut()
            .find(|c| c.info.spi_in == delete)
        {
            c.rekey_at = None;
        }
        self.queue_request(idx, now, Request::DeleteChild(vec![delete]));
    }

    fn add_child(&mut self, idx: usize, now: Instant, info: ChildSaInfo) {
        let jitter = self.jitter();
        let life = self.config.child_lifetime;
        let rekey = now + life.saturating_sub(self.config.rekey_margin + jitter);
        if let Some(old) = info.replaces
            && let Some(c) = self.sas[idx]
                .children
                .iter_mut()
                .find(|c| c.info.spi_in == old)
        {
            c.rekey_at = None;
        }
        self.events
            .push_back(Event::ChildSaEstablished(Box::new(info.clone())));
        self.sas[idx].children.push(Child {
            info,
            rekey_at: Some(rekey),
            expire_at: now + life,
            rekeying: false,
            rekeyed_by_peer: None,
        });
    }

    fn remove_child(&mut self, idx: usize, spi_in: u32) {
        let sa = &mut self.sas[idx];
        if let Some(pos) = sa.children.iter().position(|c| c.info.spi_in == spi_in) {
            let c = sa.children.remove(pos);
            self.events.push_back(Event::ChildSaDeleted {
                spi_in,
                spi_out: c.info.spi_out,
            });
        }
    }

    // ---- requests and responses -------------------------------------------------------------

    fn queue_request(&mut self, idx: usize, now: Instant, req: Request) {
        let sa = &mut self.sas[idx];
        if sa.pending.is_some() || sa.state != State::Established {
            if !sa.queue.contains(&req) {
                sa.queue.push_back(req);
            }
            return;
        }
        self.dispatch(idx, now, req);
    }

    fn dispatch(&mut self, idx: usize, now: Instant, req: Request) {
        match req {
            Request::CreateChild { rekeys } => {
                if let Some(old) = rekeys {
                    let Some(c) = self.sas[idx]
                        .children
                        .iter_mut()
                        .find(|c| c.info.spi_in == old)
                    else {
                        return self.next_request(idx, now);
                    };
                    c.rekeying = true;
                }
                let spi_in = self.random_esp_spi();
                let ni = self.random_bytes(NONCE_LEN);
                let pfs = self.config.esp.first().and_then(|p| p.dh.first().copied());
                let dh = pfs.map(|g| g.generate(&mut *self.rng));
                let mut payloads = Vec::new();
                if let Some(old) = rekeys {
                    payloads.push(Payload::Notify(Notify {
                        protocol: protocol::ESP,
                        spi: old.to_be_bytes().to_vec(),
                        notify_type: notify::REKEY_SA,
                        data: vec![],
                    }));
                }
                payloads.push(Payload::Sa(self.esp_proposals(spi_in, pfs)));
                payloads.push(Payload::Nonce(ni.clone()));
                if let Some(kp) = &dh {
                    payloads.push(Payload::Ke(Ke {
                        group: kp.group().id(),
                        data: kp.public().to_vec(),
                    }));
                }
                let (lts, rts) = self.sas[idx]
                    .children
                    .iter()
                    .find(|c| Some(c.info.spi_in) == rekeys)
                    .map_or(
                        (self.config.local_ts.clone(), self.config.remote_ts.clone()),
                        |c| (c.info.local_ts.clone(), c.info.remote_ts.clone()),
                    );
                payloads.push(Payload::TsI(lts));
                payloads.push(Payload::TsR(rts));
                self.send_request(
                    idx,
                    now,
                    exchange::CREATE_CHILD_SA,
                    &payloads,
                    Sent::CreateChild {
                        rekeys,
                        spi_in,
                        ni,
                        dh,
                    },
                );
            }
            Request::RekeyIke => {
                let spi = self.random_ike_spi();
                let ni = self.random_bytes(NONCE_LEN);
                let Some(suite) = self.sas[idx].suite else {
                    return;
                };
                let dh = suite.dh.generate(&mut *self.rng);
                let proposals = self
                    .config
                    .ike
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        p.to_payload(proposal_number(i), &spi.to_be_bytes(), Some(suite.dh))
                    })
                    .collect();
                let payloads = vec![
                    Payload::Sa(proposals),
                    Payload::Nonce(ni.clone()),
                    Payload::Ke(Ke {
                        group: suite.dh.id(),
                        data: dh.public().to_vec(),
                    }),
                ];
                self.send_request(
                    idx,
                    now,
                    exchange::CREATE_CHILD_SA,
                    &payloads,
                    Sent::RekeyIke { spi, ni, dh },
                );
            }
            Request::DeleteChild(spis) => {
                let payloads = vec![Payload::Delete(Delete {
                    protocol: protocol::ESP,
                    spis: spis.clone(),
                })];
                self.send_request(
                    idx,
                    now,
                    exchange::INFORMATIONAL,
                    &payloads,
                    Sent::DeleteChild(spis),
                );
            }
            Request::DeleteIke => {
                self.sas[idx].dying = true;
                let payloads = vec![Payload::Delete(Delete {
                    protocol: protocol::IKE,
                    spis: vec![],
                })];
                self.send_request(
                    idx,
                    now,
                    exchange::INFORMATIONAL,
                    &payloads,
                    Sent::DeleteIke,
                );
            }
            Request::Dpd => self.send_request(idx, now, exchange::INFORMATIONAL, &[], Sent::Dpd),
        }
    }

    fn next_request(&mut self, idx: usize, now: Instant) {
        let sa = &mut self.sas[idx];
        if sa.pending.is_some() || !matches!(sa.state, State::Established | State::Rekeyed) {
            return;
        }
        if let Some(req) = sa.queue.pop_front() {
            self.dispatch(idx, now, req);
        }
    }

    fn send_request(
        &mut self,
        idx: usize,
        now: Instant,
        exch: u8,
        payloads: &[Payload],
        sent: Sent,
    ) {
        let sa = &mut self.sas[idx];
        let mid = sa.next_mid;
        sa.next_mid = sa.next_mid.wrapping_add(1);
        let bytes = self.seal(idx, exch, false, mid, payloads);
        let deadline = match (&sent, self.config.dpd) {
            (Sent::Dpd, Some(d)) => Some(now + d.timeout),
            _ => None,
        };
        self.sas[idx].pending = Some(Pending {
            mid,
            bytes: bytes.clone(),
            sends: 1,
            next_at: now + self.config.retransmit.timeout(0),
            deadline,
            sent,
        });
        self.transmit(idx, bytes);
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        idx: usize,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        exch: u8,
        mid: u32,
        payloads: &[Payload],
    ) -> Result<(), Error> {
        // Follow the peer if its address changed behind a NAT.
        self.sas[idx].local = local;
        self.sas[idx].remote = remote;
        let state = self.sas[idx].state;
        let (answer, result) = match (exch, state) {
            (exchange::IKE_AUTH, State::HalfOpen) => match self.auth_request(idx, now, payloads) {
                Ok(p) => (p, Ok(())),
                Err(e) => {
                    let n = e.notify_type().unwrap_or(notify::AUTHENTICATION_FAILED);
                    (vec![Payload::Notify(Notify::new(n, vec![]))], Err(e))
                }
            },
            (exchange::CREATE_CHILD_SA, State::Established) => {
                match self.create_child_request(idx, now, payloads) {
                    Ok(p) => (p, Ok(())),
                    Err(e) => {
                        let n = match &e {
                            Error::PeerMisbehaved(Mis::ErrorNotify(x)) => *x,
                            e => e.notify_type().unwrap_or(notify::NO_PROPOSAL_CHOSEN),
                        };
                        (vec![Payload::Notify(Notify::new(n, vec![]))], Err(e))
                    }
                }
            }
            (exchange::CREATE_CHILD_SA, State::Rekeyed) => {
                // Being replaced: ask the peer to retry on the new SA (§2.25).
                let n = Notify::new(notify::TEMPORARY_FAILURE, vec![]);
                (vec![Payload::Notify(n)], Ok(()))
            }
            (exchange::INFORMATIONAL, State::Established | State::Rekeyed) => {
                (self.informational_request(idx, payloads), Ok(()))
            }
            _ => return Err(Error::PeerMisbehaved(Mis::UnexpectedExchange(exch))),
        };
        let bytes = self.seal(idx, exch, true, mid, &answer);
        let sa = &mut self.sas[idx];
        sa.peer_mid = mid.wrapping_add(1);
        sa.last_response = Some((mid, bytes.clone()));
        self.transmit(idx, bytes);
        let sa = &self.sas[idx];
        if sa.dying && exch == exchange::INFORMATIONAL {
            self.remove_sa(idx, DownReason::Deleted);
        } else if result.is_err() && state == State::HalfOpen {
            // Failed authentication: nothing to keep.
            self.sas.remove(idx);
        } else {
            self.next_request(idx, now);
        }
        result
    }

    fn create_child_request(
        &mut self,
        idx: usize,
        now: Instant,
        payloads: &[Payload],
    ) -> Result<Vec<Payload>, Error> {
        let ni = find_nonce(payloads)
            .ok_or(Error::PeerMisbehaved(Mis::MissingPayload(pt::NONCE)))?
            .to_vec();
        let ke = find_ke(payloads).cloned();
        let is_ike = find_sa(payloads)
            .is_some_and(|p| p.first().is_some_and(|p| p.protocol == protocol::IKE));
        if !is_ike {
            return self.child_request(idx, now, payloads, Some((&ni, ke.as_ref())));
        }
        // IKE SA rekey (§2.18), responder side.
        let proposals = find_sa(payloads).unwrap_or_default();
        let ke = ke.ok_or(Error::PeerMisbehaved(Mis::MissingPayload(pt::KE)))?;
        let (suite, number, spi_i) = proposals
            .iter()
            .find_map(|p| {
                let spi = u64::from_be_bytes(p.spi.as_slice().try_into().ok()?);
                self.config
                    .ike
                    .iter()
                    .find_map(|o| o.select(p))
                    .map(|s| (s, p.number, spi))
            })
            .ok_or(Error::PeerIncompatible(Inc::NoProposalChosen))?;
        if ke.group != suite.dh.id() {
            return Err(Error::PeerIncompatible(Inc::InvalidKe(suite.dh.id())));
        }
        let kp = suite.dh.generate(&mut *self.rng);
        let z = kp
            .agree(&ke.data)
            .map_err(|_| Error::PeerMisbehaved(Mis::BadPublicValue))?;
        let spi_r = self.random_ike_spi();
        let nr = self.random_bytes(NONCE_LEN);
        let old = &self.sas[idx];
        let (Some(old_suite), Some(old_keys)) = (&old.suite, &old.keys) else {
            return Err(Error::ApiMisuse("IKE SA without keys"));
        };
        let keys = IkeKeys::derive_rekey(
            old_suite.prf,
            &old_keys.sk_d,
            &suite,
            &z,
            &ni,
            &nr,
            spi_i,
            spi_r,
        );
        self.sas[idx].ike_rekeyed_by_peer = Some(PeerRekey {
            ni: ni.clone(),
            nr: nr.clone(),
            made: (spi_i, spi_r),
        });
        self.rekeyed(idx, now, spi_i, spi_r, false, suite, keys, ni, nr.clone());
        Ok(vec![
            Payload::Sa(vec![suite.to_payload(number, &spi_r.to_be_bytes())]),
            Payload::Nonce(nr),
            Payload::Ke(Ke {
                group: suite.dh.id(),
                data: kp.public().to_vec(),
            }),
        ])
    }

    /// Creates the IKE SA that replaces the one at `idx` and moves the CHILD SAs to it.
    #[allow(clippy::too_many_arguments)]
    fn rekeyed(
        &mut self,
        idx: usize,
        now: Instant,
        spi_i: u64,
        spi_r: u64,
        initiator: bool,
        suite: IkeSuite,
        keys: IkeKeys,
        ni: Vec<u8>,
        nr: Vec<u8>,
    ) {
        let jitter = self.jitter();
        let old = &mut self.sas[idx];
        old.state = State::Rekeyed;
        old.rekey_at = None;
        old.queue.clear();
        // From now on `created` dates the replacement, for the rekeyed-SA timeout.
        old.created = now;
        let children = core::mem::take(&mut old.children);
        let (local, remote, nat) = (old.local, old.remote, old.nat);
        let old_spis = (old.spi_i, old.spi_r);
        self.sas.push(IkeSa {
            spi_i,
            spi_r,
            initiator,
            state: State::Established,
            suite: Some(suite),
            keys: Some(keys),
            ni,
            nr,
            dh: None,
            cookie: None,
            init_request: Vec::new(),
            init_response: Vec::new(),
            next_mid: 0,
            peer_mid: 0,
            pending: None,
            queue: VecDeque::new(),
            last_response: None,
            children,
            local,
            remote,
            nat,
            created: now,
            last_heard: now,
            rekey_at: Some(
                now + self
                    .config
                    .ike_lifetime
                    .saturating_sub(self.config.rekey_margin + jitter),
            ),
            dying: false,
            ike_rekeyed_by_peer: None,
        });
        self.events.push_back(Event::IkeSaRekeyed {
            old: old_spis,
            new: (spi_i, spi_r),
        });
    }

    fn informational_request(&mut self, idx: usize, payloads: &[Payload]) -> Vec<Payload> {
        let mut ours = Vec::new();
        for p in payloads {
            let Payload::Delete(d) = p else { continue };
            match d.protocol {
                protocol::IKE => {
                    self.sas[idx].dying = true;
                    return Vec::new();
                }
                protocol::ESP => {
                    for spi_out in &d.spis {
                        let found = self.sas[idx]
                            .children
                            .iter()
                            .find(|c| c.info.spi_out == *spi_out)
                            .map(|c| c.info.spi_in);
                        if let Some(spi_in) = found {
                            self.remove_child(idx, spi_in);
                            ours.push(spi_in);
                        }
                    }
                }
                _ => {}
            }
        }
        if ours.is_empty() {
            Vec::new()
        } else {
            vec![Payload::Delete(Delete {
                protocol: protocol::ESP,
                spis: ours,
            })]
        }
    }

    fn response(
        &mut self,
        idx: usize,
        now: Instant,
        _bytes: &[u8],
        payloads: &[Payload],
    ) -> Result<(), Error> {
        let Some(p) = self.sas[idx].pending.take() else {
            return Ok(());
        };
        let spis = (self.sas[idx].spi_i, self.sas[idx].spi_r);
        let result = match p.sent {
            Sent::Init => Ok(()),
            Sent::Auth { spi_in } => self.auth_response(idx, now, spi_in, payloads),
            Sent::CreateChild {
                rekeys,
                spi_in,
                ni,
                dh,
            } => {
                let r = self.child_response(
                    idx,
                    now,
                    spi_in,
                    rekeys,
                    Some((&ni, dh.as_ref())),
                    payloads,
                );
                if let Err(e) = &r {
                    if let Some(old) = rekeys
                        && let Some(c) = self.sas[idx]
                            .children
                            .iter_mut()
                            .find(|c| c.info.spi_in == old)
                    {
                        // Try again later if the old SA is still there.
                        c.rekeying = false;
                        c.rekey_at = Some(now + self.config.retransmit.base * 2);
                    }
                    self.events.push_back(Event::ChildSaFailed(e.clone()));
                }
                r
            }
            Sent::RekeyIke { spi, ni, dh } => {
                self.rekey_ike_response(idx, now, spi, &ni, &dh, payloads)
            }
            Sent::DeleteChild(spis) => {
                for spi in spis {
                    self.remove_child(idx, spi);
                }
                Ok(())
            }
            Sent::Dpd => Ok(()),
            Sent::DeleteIke => {
                self.remove_sa(idx, DownReason::Deleted);
                return Ok(());
            }
        };
        // A failed exchange may have removed the SA, shifting the indices.
        if self
            .sas
            .get(idx)
            .is_some_and(|s| (s.spi_i, s.spi_r) == spis)
        {
            self.next_request(idx, now);
        }
        result
    }

    fn rekey_ike_response(
        &mut self,
        idx: usize,
        now: Instant,
        spi_i: u64,
        ni: &[u8],
        dh: &KeyPair,
        payloads: &[Payload],
    ) -> Result<(), Error> {
        if let Some(n) = first_error(payloads) {
            // A collision or a temporary refusal: retry later.
            self.sas[idx].rekey_at = Some(now + self.config.retransmit.base * 2);
            return Err(Error::PeerMisbehaved(Mis::ErrorNotify(n)));
        }
        let proposals =
            find_sa(payloads).ok_or(Error::PeerMisbehaved(Mis::MissingPayload(pt::SA)))?;
        let (suite, spi_r) = match proposals {
            [p] => IkeSuite::from_accepted(p)
                .zip(p.spi.as_slice().try_into().ok().map(u64::from_be_bytes)),
            _ => None,
        }
        .filter(|(s, _)| s.dh == dh.group() && self.config.ike.iter().any(|o| o.allows(s)))
        .ok_or(Error::PeerMisbehaved(Mis::ChoseUnofferedProposal))?;
        let nr =
            find_nonce(payloads).ok_or(Error::PeerMisbehaved(Mis::MissingPayload(pt::NONCE)))?;
        let ke = find_ke(payloads).ok_or(Error::PeerMisbehaved(Mis::MissingPayload(pt::KE)))?;
        let z = dh
            .agree(&ke.data)
            .map_err(|_| Error::PeerMisbehaved(Mis::BadPublicValue))?;
        let old = &self.sas[idx];
        let (Some(old_suite), Some(old_keys)) = (&old.suite, &old.keys) else {
            return Err(Error::ApiMisuse("IKE SA without keys"));
        };
        let keys = IkeKeys::derive_rekey(
            old_suite.prf,
            &old_keys.sk_d,
            &suite,
            &z,
            ni,
            nr,
            spi_i,
            spi_r,
        );
        let collision = self.sas[idx].ike_rekeyed_by_peer.clone();
        self.rekeyed(
            idx,
            now,
            spi_i,
            spi_r,
            true,
            suite,
            keys,
            ni.to_vec(),
            nr.to_vec(),
        );
        let ours = self.sas.len() - 1;
        match collision {
            // §2.8.2: the peer rekeyed the same SA meanwhile. The exchange holding the lowest
            // of the four nonces made the redundant SA; its initiator deletes it, and the
            // initiator of the surviving one deletes the old SA.
            Some(p) if !p.holds_lower_nonce_than(ni, nr) => {
                self.sas[ours].queue.push_back(Request::DeleteIke);
                self.next_request(ours, now);
            }
            Some(p) => {
                if let Some(t) = self.sas.iter().position(|s| (s.spi_i, s.spi_r) == p.made) {
                    let children = core::mem::take(&mut self.sas[t].children);
                    self.sas[ours].children.extend(children);
                }
                self.sas[idx].queue.push_back(Request::DeleteIke);
            }
            None => self.sas[idx].queue.push_back(Request::DeleteIke),
        }
        Ok(())
    }

    // ---- plumbing -------------------------------------------------------------------------

    fn established(&self) -> Option<usize> {
        self.sas.iter().position(|s| s.state == State::Established)
    }

    fn remove_sa(&mut self, idx: usize, reason: DownReason) {
        let sa = self.sas.remove(idx);
        for c in &sa.children {
            self.events.push_back(Event::ChildSaDeleted {
                spi_in: c.info.spi_in,
                spi_out: c.info.spi_out,
            });
        }
        // Half-open responder SAs were never reported up, and rekeyed ones were already
        // reported replaced.
        if !matches!(sa.state, State::HalfOpen | State::Rekeyed) {
            self.events.push_back(Event::IkeSaDown {
                spi_i: sa.spi_i,
                spi_r: sa.spi_r,
                reason,
            });
        }
    }

    fn transmit(&mut self, idx: usize, payload: Vec<u8>) {
        let sa = &self.sas[idx];
        self.transmits.push_back(Transmit {
            local: sa.local,
            remote: sa.remote,
            payload,
        });
    }

    /// Builds an encrypted message on the SA at `idx`.
    fn seal(
        &mut self,
        idx: usize,
        exch: u8,
        response: bool,
        mid: u32,
        payloads: &[Payload],
    ) -> Vec<u8> {
        let iv_len = self.sas[idx].suite.map_or(0, |s| s.encr.iv_len());
        let iv = self.random_bytes(iv_len);
        let sa = &self.sas[idx];
        let (Some(suite), Some(keys)) = (&sa.suite, &sa.keys) else {
            return Vec::new();
        };
        let mut plain = Vec::new();
        let first = ike::emit_payloads(payloads, &mut plain);
        let dk = keys.direction(suite, sa.initiator);
        let body_len = dk.sealed_len(plain.len());
        let mut out = vec![0u8; ike::HEADER_LEN];
        ike::emit_encrypted_header(first, body_len, &mut out);
        let mut fl = if sa.initiator { flags::INITIATOR } else { 0 };
        if response {
            fl |= flags::RESPONSE;
        }
        let header = HeaderRepr {
            initiator_spi: sa.spi_i,
            responder_spi: sa.spi_r,
            next_payload: pt::SK,
            exchange_type: exch,
            flags: fl,
            message_id: mid,
            length: u32::try_from(out.len() + body_len).unwrap_or(u32::MAX),
        };
        header.emit(&mut ike::Header::new_unchecked(&mut out[..ike::HEADER_LEN]));
        dk.seal(&iv, &plain, &mut out);
        out
    }

    /// Verifies and decrypts the SK payload of a message on the SA at `idx`.
    fn open(&self, idx: usize, bytes: &[u8], msg: &Message) -> Result<Vec<Payload>, Error> {
        let sa = &self.sas[idx];
        let (Some(suite), Some(keys)) = (&sa.suite, &sa.keys) else {
            return Err(Error::PeerMisbehaved(Mis::UnknownSpi));
        };
        let enc = msg
            .encrypted
            .as_ref()
            .ok_or(Error::PeerMisbehaved(Mis::MissingPayload(pt::SK)))?;
        let aad_end = enc.offset + ike::PAYLOAD_HEADER_LEN;
        let aad = bytes
            .get(..aad_end)
            .ok_or(Error::InvalidMessage(ike::Error::Truncated))?;
        // Messages from the original initiator use SK_ei/SK_ai.
        let dk = keys.direction(suite, !sa.initiator);
        let plain = dk
            .open(aad, &enc.body)
            .map_err(|_| Error::PeerMisbehaved(Mis::DecryptFailed))?;
        Ok(ike::parse_payloads(enc.first_payload, &plain)?)
    }

    fn random_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.rng.fill_bytes(&mut v);
        v
    }

    fn random_ike_spi(&mut self) -> u64 {
        loop {
            let spi = self.rng.next_u64();
            if spi != 0 && !self.sas.iter().any(|s| s.spi_i == spi || s.spi_r == spi) {
                return spi;
            }
        }
    }

    fn random_esp_spi(&mut self) -> u32 {
        loop {
            let spi = self.rng.next_u32();
            if spi >= 256 && !self.child_sas().any(|c| c.spi_in == spi) {
                return spi;
            }
        }
    }

    fn jitter(&mut self) -> Duration {
        let max = self.config.rekey_jitter.as_millis();
        if max == 0 {
            return Duration::ZERO;
        }
        let ms = u128::from(self.rng.next_u64()) % max;
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }
}

fn proposal_number(i: usize) -> u8 {
    u8::try_from(i + 1).unwrap_or(u8::MAX)
}

fn nat_notifies(spi_i: u64, spi_r: u64, local: SocketAddr, remote: SocketAddr) -> [Payload; 2] {
    [
        Payload::Notify(Notify::new(
            notify::NAT_DETECTION_SOURCE_IP,
            nat_hash(spi_i, spi_r, local.ip(), local.port()).to_vec(),
        )),
        Payload::Notify(Notify::new(
            notify::NAT_DETECTION_DESTINATION_IP,
            nat_hash(spi_i, spi_r, remote.ip(), remote.port()).to_vec(),
        )),
    ]
}

fn find_sa(p: &[Payload]) -> Option<&[Proposal]> {
    p.iter().find_map(|p| match p {
        Payload::Sa(v) => Some(v.as_slice()),
        _ => None,
    })
}

fn find_ke(p: &[Payload]) -> Option<&Ke> {
    p.iter().find_map(|p| match p {
        Payload::Ke(k) => Some(k),
        _ => None,
    })
}

fn find_nonce(p: &[Payload]) -> Option<&[u8]> {
    p.iter().find_map(|p| match p {
        Payload::Nonce(n) => Some(n.as_slice()),
        _ => None,
    })
}

fn find_ts(p: &[Payload]) -> Option<(&[TrafficSelector], &[TrafficSelector])> {
    let i = p.iter().find_map(|p| match p {
        Payload::TsI(t) => Some(t.as_slice()),
        _ => None,
    })?;
    let r = p.iter().find_map(|p| match p {
        Payload::TsR(t) => Some(t.as_slice()),
        _ => None,
    })?;
    Some((i, r))
}

fn first_error(p: &[Payload]) -> Option<u16> {
    p.iter().find_map(|p| match p {
        Payload::Notify(n) if notify::is_error(n.notify_type) => Some(n.notify_type),
        _ => None,
    })
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}
