//! Main mode with pre-shared keys (RFC 2409 §5, §5.4), both roles, with RFC 3947 NAT
//! detection and the float to port 4500:
//!
//! ```text
//! 1 I→R  HDR, SA, VID(NAT-T), VID(DPD)        2 R→I  HDR, SA, VID...
//! 3 I→R  HDR, KE, Ni, NAT-D, NAT-D            4 R→I  HDR, KE, Nr, NAT-D, NAT-D
//! 5 I→R  HDR*, IDii, HASH_I [, N(INITIAL-CONTACT)]
//! 6 R→I  HDR*, IDir, HASH_R
//! ```
//!
//! The responder answers a repeated request with its stored answer (recognised by the
//! request's bytes); only the initiator retransmits on a timer.

use std::net::SocketAddr;
use std::time::Instant;

use wire::esp::NAT_T_PORT;
use wire::ikev1::{
    self, DOI_IPSEC, HeaderRepr, Id, Message, Notify, Payload, exchange, flags, notify,
    payload_type as pt, protocol, vendor,
};

use super::keys::{self, Cookies, Phase1Keys};
use super::suite;
use super::{
    IsakmpSa, MAX_HALF_OPEN, NONCE_LEN, Peer, Pending, Phase1, cipher, hashes_equal, wire_error,
};
use crate::error::{Error, Incompatibility as Inc, Misbehaviour as Mis};
use crate::identity::Identity;
use crate::{DownReason, Event};

/// What a main mode message carried that the state machine uses.
#[derive(Default)]
struct Contents {
    sa: Option<(ikev1::Sa, Vec<u8>)>,
    ke: Option<Vec<u8>>,
    nonce: Option<Vec<u8>>,
    id: Option<Id>,
    hash: Option<Vec<u8>>,
    nat_d: Vec<Vec<u8>>,
    nat_t: bool,
    dpd: bool,
    initial_contact: bool,
}

fn contents(first: u8, chain: &[u8]) -> Result<Contents, Error> {
    let mut c = Contents::default();
    for p in ikev1::parse_payloads(first, chain).map_err(wire_error)? {
        match p.payload {
            Payload::Sa(sa) => {
                let body = chain[p.span.start + ikev1::PAYLOAD_HEADER_LEN..p.span.end].to_vec();
                c.sa = Some((sa, body));
            }
            Payload::Ke(k) => c.ke = Some(k),
            Payload::Nonce(n) => c.nonce = Some(n),
            Payload::Id(id) => c.id = Some(id),
            Payload::Hash(h) => c.hash = Some(h),
            Payload::NatD(h) => c.nat_d.push(h),
            Payload::Vendor(v) if v == vendor::NAT_T_RFC3947 => c.nat_t = true,
            Payload::Vendor(v) if v == vendor::DPD => c.dpd = true,
            Payload::Notify(n) if n.notify_type == notify::INITIAL_CONTACT => {
                c.initial_contact = true;
            }
            _ => {}
        }
    }
    Ok(c)
}

fn missing(kind: u8) -> Error {
    Error::PeerMisbehaved(Mis::MissingPayload(kind))
}

/// The ID payload for an identity in phase 1 (RFC 2407 §4.6.2: protocol and port zero).
fn id_payload(identity: &Identity) -> Id {
    let v2 = identity.to_payload();
    Id {
        id_type: v2.id_type,
        protocol: 0,
        port: 0,
        data: v2.data,
    }
}

fn id_body(id: &Id) -> Vec<u8> {
    Payload::Id(id.clone()).body()
}

impl Peer {
    fn local_identity(&self, local: SocketAddr) -> Identity {
        self.config
            .local_id
            .clone()
            .unwrap_or(Identity::Addr(local.ip()))
    }

    fn remote_identity(&self, remote: SocketAddr) -> Identity {
        self.config
            .remote_id
            .clone()
            .unwrap_or(Identity::Addr(remote.ip()))
    }

    pub(super) fn start_main_mode(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        initial_contact: bool,
    ) {
        let cookies = Cookies {
            i: self.random_nonzero_u64(),
            r: 0,
        };
        let mut sa = IsakmpSa::new(cookies, true, local, remote, now);
        sa.initial_contact = initial_contact;
        let offer = suite::phase1_sa(&self.config.ike, self.config.ike_lifetime);
        let payload = Payload::Sa(offer);
        sa.sai_b = payload.body();
        let payloads = [
            payload,
            Payload::Vendor(vendor::NAT_T_RFC3947.to_vec()),
            Payload::Vendor(vendor::DPD.to_vec()),
        ];
        let bytes = plain_message(cookies, 0, &payloads);
        self.sas.push(sa);
        let idx = self.sas.len() - 1;
        self.send_request(idx, now, bytes);
    }

    /// Sends a main mode request and arms its retransmission.
    fn send_request(&mut self, idx: usize, now: Instant, bytes: Vec<u8>) {
        let sa = &mut self.sas[idx];
        sa.pending = Some(Pending {
            bytes: bytes.clone(),
            sends: 1,
            next_at: now + self.config.retransmit.timeout(0),
        });
        let (l, r) = (sa.local, sa.remote);
        self.transmit(l, r, bytes);
    }

    /// Sends a main mode answer and remembers it for repeated requests.
    fn send_answer(&mut self, idx: usize, request: &[u8], bytes: Vec<u8>) {
        let sa = &mut self.sas[idx];
        sa.answered = Some((request.to_vec(), bytes.clone()));
        let (l, r) = (sa.local, sa.remote);
        self.transmit(l, r, bytes);
    }

    pub(super) fn main_mode(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        msg: &Message<'_>,
        bytes: &[u8],
    ) -> Result<(), Error> {
        let h = msg.header;
        if let Some(idx) = self
            .sas
            .iter()
            .position(|s| s.answered.as_ref().is_some_and(|(req, _)| req == bytes))
        {
            let sa = &self.sas[idx];
            let answer = sa
                .answered
                .as_ref()
                .map(|(_, a)| a.clone())
                .unwrap_or_default();
            let (l, r) = (sa.local, sa.remote);
            self.transmit(l, r, answer);
            return Ok(());
        }
        if h.responder_cookie == 0 {
            if h.message_id != 0 || h.is_encrypted() {
                return Err(Error::PeerMisbehaved(Mis::UnexpectedMessageId(
                    h.message_id,
                )));
            }
            return self.respond_sa(now, local, remote, msg, bytes);
        }
        let idx = match self.find_sa(&h) {
            Some(i) => i,
            None => self
                .sas
                .iter()
                .position(|s| {
                    s.initiator
                        && s.state == Phase1::Sent1
                        && s.cookies.i == h.initiator_cookie
                        && s.cookies.r == 0
                })
                .ok_or(Error::PeerMisbehaved(Mis::UnknownSpi))?,
        };
        let r = match self.sas[idx].state {
            Phase1::Sent1 => self.on_sa_answer(now, idx, msg),
            Phase1::Sent3 => self.on_ke_answer(now, idx, msg),
            Phase1::Sent5 => self.on_id_answer(now, idx, msg),
            Phase1::Answered2 => self.respond_ke(idx, local, remote, msg, bytes),
            Phase1::Answered4 => self.respond_id(now, idx, local, remote, msg, bytes),
            // Not a repeat of the request we answered (that was resent above): a stray or
            // late answer, or a forgery.
            Phase1::Established => Err(Error::PeerMisbehaved(Mis::UnexpectedExchange(
                exchange::MAIN_MODE,
            ))),
        };
        if let Err(e) = &r
            && self.sas[idx].initiator
            && self.sas[idx].state != Phase1::Established
            && matches!(
                e,
                Error::PeerIncompatible(_) | Error::PeerMisbehaved(Mis::ChoseUnofferedProposal)
            )
        {
            // An answer we cannot agree with ends the attempt. Anything else may be a late
            // copy of an earlier answer or a forgery: dropped, the real answer may yet come.
            self.remove_sa(idx, DownReason::Failed(e.clone()));
        }
        r
    }

    /// Responder, message 1: choose a transform.
    fn respond_sa(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        msg: &Message<'_>,
        bytes: &[u8],
    ) -> Result<(), Error> {
        let c = contents(msg.header.next_payload, msg.body)?;
        let (offer, sai_b) = c.sa.ok_or(missing(pt::SA))?;
        let Some((answer, chosen)) =
            suite::choose_phase1(&offer, &self.config.ike, self.config.ike_lifetime)
        else {
            let cookies = Cookies {
                i: msg.header.initiator_cookie,
                r: 0,
            };
            let n = Payload::Notify(Notify {
                doi: DOI_IPSEC,
                protocol: protocol::ISAKMP,
                notify_type: notify::NO_PROPOSAL_CHOSEN,
                spi: cookies.bytes().to_vec(),
                data: Vec::new(),
            });
            let mut out = Vec::new();
            let first = ikev1::emit_payloads(&[n], &mut out);
            let header = header(cookies, exchange::INFORMATIONAL, first, 0, 0);
            self.transmit(local, remote, header.emit_message(&out));
            return Err(Error::PeerIncompatible(Inc::NoProposalChosen));
        };
        let open: Vec<usize> = (0..self.sas.len())
            .filter(|&i| !self.sas[i].initiator && self.sas[i].state != Phase1::Established)
            .collect();
        if open.len() >= MAX_HALF_OPEN
            && let Some(&oldest) = open.iter().min_by_key(|&&i| self.sas[i].created)
        {
            self.sas.remove(oldest);
        }
        let cookies = Cookies {
            i: msg.header.initiator_cookie,
            r: self.random_nonzero_u64(),
        };
        let mut sa = IsakmpSa::new(cookies, false, local, remote, now);
        sa.sai_b = sai_b;
        sa.suite = Some(chosen);
        sa.nat_t = c.nat_t;
        sa.peer_dpd = c.dpd;
        let mut payloads = vec![Payload::Sa(answer)];
        if c.nat_t {
            payloads.push(Payload::Vendor(vendor::NAT_T_RFC3947.to_vec()));
        }
        payloads.push(Payload::Vendor(vendor::DPD.to_vec()));
        self.sas.push(sa);
        let idx = self.sas.len() - 1;
        let out = plain_message(cookies, 0, &payloads);
        self.send_answer(idx, bytes, out);
        Ok(())
    }

    /// Initiator, message 2: the chosen transform; send our KE and nonce.
    fn on_sa_answer(&mut self, now: Instant, idx: usize, msg: &Message<'_>) -> Result<(), Error> {
        let c = contents(msg.header.next_payload, msg.body)?;
        let (answer, _) = c.sa.ok_or(missing(pt::SA))?;
        let chosen = suite::accepted_phase1(&answer, &self.config.ike)
            .ok_or(Error::PeerMisbehaved(Mis::ChoseUnofferedProposal))?;
        let dh = chosen.group.generate(&mut *self.rng);
        let ni = self.random_bytes(NONCE_LEN);
        let sa = &mut self.sas[idx];
        sa.cookies.r = msg.header.responder_cookie;
        sa.suite = Some(chosen);
        sa.nat_t = c.nat_t;
        sa.peer_dpd = c.dpd;
        sa.ke_i = dh.public().to_vec();
        sa.ni = ni.clone();
        sa.dh = Some(dh);
        sa.state = Phase1::Sent3;
        let mut payloads = vec![Payload::Ke(sa.ke_i.clone()), Payload::Nonce(ni)];
        if sa.nat_t {
            payloads.push(Payload::NatD(keys::nat_d(
                chosen.hash,
                sa.cookies,
                sa.remote,
            )));
            payloads.push(Payload::NatD(keys::nat_d(
                chosen.hash,
                sa.cookies,
                sa.local,
            )));
        }
        let bytes = plain_message(sa.cookies, 0, &payloads);
        self.send_request(idx, now, bytes);
        Ok(())
    }

    /// Responder, message 3: answer with our KE and nonce; the keys exist from here on.
    fn respond_ke(
        &mut self,
        idx: usize,
        local: SocketAddr,
        remote: SocketAddr,
        msg: &Message<'_>,
        bytes: &[u8],
    ) -> Result<(), Error> {
        let c = contents(msg.header.next_payload, msg.body)?;
        let ke_i = c.ke.ok_or(missing(pt::KE))?;
        let ni = c.nonce.ok_or(missing(pt::NONCE))?;
        check_nonce(&ni)?;
        let chosen = self.sas[idx].suite.ok_or(Error::ApiMisuse("no suite"))?;
        let dh = chosen.group.generate(&mut *self.rng);
        let g_xy = dh
            .agree(&ke_i)
            .map_err(|_| Error::PeerMisbehaved(Mis::BadPublicValue))?;
        let nr = self.random_bytes(NONCE_LEN);
        let psk = self
            .config
            .psk_for_address(self.sas[idx].remote.ip())
            .to_vec();
        let sa = &mut self.sas[idx];
        let keys = Phase1Keys::derive(
            chosen.hash,
            &psk,
            &ni,
            &nr,
            &g_xy,
            sa.cookies,
            chosen.encr.key_len(),
        );
        sa.iv = keys::phase1_iv(chosen.hash, &ke_i, dh.public(), cipher::block(chosen.encr));
        sa.keys = Some(keys);
        sa.ke_i = ke_i;
        sa.ke_r = dh.public().to_vec();
        sa.ni = ni;
        sa.nr = nr.clone();
        sa.state = Phase1::Answered4;
        let mut payloads = vec![Payload::Ke(sa.ke_r.clone()), Payload::Nonce(nr)];
        if sa.nat_t && !c.nat_d.is_empty() {
            payloads.push(Payload::NatD(keys::nat_d(chosen.hash, sa.cookies, remote)));
            payloads.push(Payload::NatD(keys::nat_d(chosen.hash, sa.cookies, local)));
            self.detect_nat(idx, &c.nat_d, local, remote);
        }
        let sa = &self.sas[idx];
        let out = plain_message(sa.cookies, 0, &payloads);
        self.send_answer(idx, bytes, out);
        Ok(())
    }

    /// RFC 3947 §3.2: the first NAT-D is the sender's hash of our address, the rest of its
    /// own; a mismatch means a NAT rewrote that side.
    fn detect_nat(
        &mut self,
        idx: usize,
        received: &[Vec<u8>],
        local: SocketAddr,
        remote: SocketAddr,
    ) {
        let sa = &mut self.sas[idx];
        let Some(hash) = sa.suite.map(|s| s.hash) else {
            return;
        };
        let ours = keys::nat_d(hash, sa.cookies, local);
        let theirs = keys::nat_d(hash, sa.cookies, remote);
        let local_behind_nat = received.first().is_none_or(|h| *h != ours);
        let remote_behind_nat = !received.iter().skip(1).any(|h| *h == theirs);
        if local_behind_nat || remote_behind_nat {
            sa.nat = true;
            self.events.push_back(Event::NatDetected {
                local_behind_nat,
                remote_behind_nat,
            });
        }
    }

    /// Initiator, message 4: derive the keys, float to 4500 behind a NAT, authenticate.
    fn on_ke_answer(&mut self, now: Instant, idx: usize, msg: &Message<'_>) -> Result<(), Error> {
        let c = contents(msg.header.next_payload, msg.body)?;
        let ke_r = c.ke.ok_or(missing(pt::KE))?;
        let nr = c.nonce.ok_or(missing(pt::NONCE))?;
        check_nonce(&nr)?;
        let psk = self
            .config
            .psk_for_address(self.sas[idx].remote.ip())
            .to_vec();
        let sa = &mut self.sas[idx];
        let chosen = sa.suite.ok_or(Error::ApiMisuse("no suite"))?;
        let dh = sa.dh.take().ok_or(Error::ApiMisuse("no DH"))?;
        let Ok(g_xy) = dh.agree(&ke_r) else {
            sa.dh = Some(dh);
            return Err(Error::PeerMisbehaved(Mis::BadPublicValue));
        };
        sa.keys = Some(Phase1Keys::derive(
            chosen.hash,
            &psk,
            &sa.ni,
            &nr,
            &g_xy,
            sa.cookies,
            chosen.encr.key_len(),
        ));
        sa.iv = keys::phase1_iv(chosen.hash, &sa.ke_i, &ke_r, cipher::block(chosen.encr));
        sa.ke_r = ke_r;
        sa.nr = nr;
        let (local, remote) = (sa.local, sa.remote);
        if sa.nat_t && !c.nat_d.is_empty() {
            self.detect_nat(idx, &c.nat_d, local, remote);
        }
        let sa = &mut self.sas[idx];
        if sa.nat {
            sa.local.set_port(NAT_T_PORT);
            sa.remote.set_port(NAT_T_PORT);
        }
        let id = id_payload(&self.local_identity(local));
        let sa = &self.sas[idx];
        let Some(keys) = &sa.keys else {
            return Err(Error::ApiMisuse("no keys"));
        };
        let hash_i = keys.auth_hash(chosen.hash, true, &transcript(sa), &id_body(&id));
        let mut payloads = vec![Payload::Id(id), Payload::Hash(hash_i)];
        if sa.initial_contact {
            payloads.push(Payload::Notify(Notify {
                doi: DOI_IPSEC,
                protocol: protocol::ISAKMP,
                notify_type: notify::INITIAL_CONTACT,
                spi: sa.cookies.bytes().to_vec(),
                data: Vec::new(),
            }));
        }
        self.sas[idx].state = Phase1::Sent5;
        let bytes = self.seal_main_mode(idx, &payloads);
        self.send_request(idx, now, bytes);
        Ok(())
    }

    /// Responder, message 5: check the initiator's identity and HASH_I, answer with ours.
    fn respond_id(
        &mut self,
        now: Instant,
        idx: usize,
        local: SocketAddr,
        remote: SocketAddr,
        msg: &Message<'_>,
        bytes: &[u8],
    ) -> Result<(), Error> {
        let (c, next_iv) = self.open_main_mode(idx, msg)?;
        let id = c.id.ok_or(missing(pt::ID))?;
        let got = c.hash.ok_or(missing(pt::HASH))?;
        self.check_identity(&id, remote)?;
        let sa = &self.sas[idx];
        let chosen = sa.suite.ok_or(Error::ApiMisuse("no suite"))?;
        let Some(keys) = &sa.keys else {
            return Err(Error::ApiMisuse("no keys"));
        };
        let want = keys.auth_hash(chosen.hash, true, &transcript(sa), &id_body(&id));
        if !hashes_equal(&want, &got) {
            return Err(Error::PeerMisbehaved(Mis::BadAuth));
        }
        let me = id_payload(&self.local_identity(local));
        let sa = &mut self.sas[idx];
        sa.iv = next_iv;
        // The initiator floats to 4500 after message 4 when it saw a NAT (RFC 3947 §4).
        sa.local = local;
        sa.remote = remote;
        let Some(keys) = &sa.keys else {
            return Err(Error::ApiMisuse("no keys"));
        };
        let hash_r = keys.auth_hash(chosen.hash, false, &transcript(sa), &id_body(&me));
        let out = self.seal_main_mode(idx, &[Payload::Id(me), Payload::Hash(hash_r)]);
        self.send_answer(idx, bytes, out);
        let idx = if c.initial_contact {
            self.peer_restarted(idx)
        } else {
            idx
        };
        self.established(now, idx);
        Ok(())
    }

    /// Initiator, message 6: check the responder's identity and HASH_R.
    fn on_id_answer(&mut self, now: Instant, idx: usize, msg: &Message<'_>) -> Result<(), Error> {
        let (c, next_iv) = self.open_main_mode(idx, msg)?;
        let id = c.id.ok_or(missing(pt::ID))?;
        let got = c.hash.ok_or(missing(pt::HASH))?;
        let remote = self.sas[idx].remote;
        self.check_identity(&id, remote)?;
        let sa = &self.sas[idx];
        let chosen = sa.suite.ok_or(Error::ApiMisuse("no suite"))?;
        let Some(keys) = &sa.keys else {
            return Err(Error::ApiMisuse("no keys"));
        };
        let want = keys.auth_hash(chosen.hash, false, &transcript(sa), &id_body(&id));
        if !hashes_equal(&want, &got) {
            return Err(Error::PeerMisbehaved(Mis::BadAuth));
        }
        self.sas[idx].iv = next_iv;
        let idx = if c.initial_contact {
            self.peer_restarted(idx)
        } else {
            idx
        };
        self.established(now, idx);
        Ok(())
    }

    fn check_identity(&self, id: &Id, remote: SocketAddr) -> Result<(), Error> {
        let want = self.remote_identity(remote).to_payload();
        // A key picked by the peer's address vouches for that address as its ID too.
        let own_key = Identity::Addr(remote.ip()).to_payload();
        let keyed = self
            .config
            .remote_psks
            .iter()
            .any(|(i, _)| *i == Identity::Addr(remote.ip()));
        if (want.id_type == id.id_type && want.data == id.data)
            || (keyed && own_key.id_type == id.id_type && own_key.data == id.data)
        {
            Ok(())
        } else {
            Err(Error::PeerIncompatible(Inc::IdentityMismatch))
        }
    }

    /// Decrypts an encrypted main mode message with the SA's CBC chain; returns what it
    /// carried and the IV to keep once it proved authentic.
    fn open_main_mode(&self, idx: usize, msg: &Message<'_>) -> Result<(Contents, Vec<u8>), Error> {
        if !msg.header.is_encrypted() {
            return Err(Error::PeerMisbehaved(Mis::DecryptFailed));
        }
        let sa = &self.sas[idx];
        let (Some(chosen), Some(keys)) = (sa.suite, &sa.keys) else {
            return Err(Error::ApiMisuse("no keys"));
        };
        let (plain, next) = cipher::open(chosen.encr, &keys.enc_key, &sa.iv, msg.body)
            .map_err(|_| Error::PeerMisbehaved(Mis::DecryptFailed))?;
        // Garbage after decryption means the wrong key or a forged message.
        let c = contents(msg.header.next_payload, &plain)
            .map_err(|_| Error::PeerMisbehaved(Mis::DecryptFailed))?;
        Ok((c, next))
    }

    /// Encrypts a main mode message with the SA's CBC chain and advances it.
    fn seal_main_mode(&mut self, idx: usize, payloads: &[Payload]) -> Vec<u8> {
        let mut chain = Vec::new();
        let first = ikev1::emit_payloads(payloads, &mut chain);
        let sa = &mut self.sas[idx];
        let (Some(chosen), Some(keys)) = (sa.suite, &sa.keys) else {
            return Vec::new();
        };
        let sealed = cipher::seal(chosen.encr, &keys.enc_key, &sa.iv, &chain);
        sa.iv = cipher::last_block(chosen.encr, &sealed);
        header(sa.cookies, exchange::MAIN_MODE, first, flags::ENCRYPTION, 0).emit_message(&sealed)
    }

    /// Phase 1 is complete: report it, let it replace older ISAKMP SAs, and start the first
    /// quick mode if we initiated.
    fn established(&mut self, now: Instant, idx: usize) {
        let Some(chosen) = self.sas[idx].suite else {
            return;
        };
        let life = chosen.lifetime;
        let rekey_at = self.rekey_time(now, life);
        let sa = &mut self.sas[idx];
        sa.state = Phase1::Established;
        sa.pending = None;
        sa.dh = None;
        sa.last_heard = now;
        sa.created = now;
        sa.expire_at = Some(now + life);
        // IKEv1 has no IKE SA rekey: a new main mode replaces it. The side that made the SA
        // does that; the other only steps in shortly before the end, for when its own
        // lifetime is the shorter one and the peer would otherwise let it run out.
        let last_call = (self.config.rekey_margin / 4).min(life / 10);
        sa.rekey_at = Some(if sa.initiator {
            rekey_at
        } else {
            now + life - last_call
        });
        let (cookies, initiator, remote) = (sa.cookies, sa.initiator, sa.remote);
        self.events.push_back(Event::IkeSaUp {
            spi_i: cookies.i,
            spi_r: cookies.r,
            suite: chosen.as_ike_suite(),
            remote,
        });
        let older: Vec<Cookies> = self
            .sas
            .iter()
            .filter(|s| s.cookies != cookies && s.state == Phase1::Established && !s.superseded)
            .map(|s| s.cookies)
            .collect();
        for old in older {
            self.events.push_back(Event::IkeSaRekeyed {
                old: (old.i, old.r),
                new: (cookies.i, cookies.r),
            });
            let Some(o) = self.sas.iter().position(|s| s.cookies == old) else {
                continue;
            };
            if initiator {
                // Make-before-break: the new SA is up, so the old one can go.
                self.send_delete_isakmp(now, o);
                self.sas.remove(o);
            } else {
                self.sas[o].superseded = true;
            }
        }
        let Some(idx) = self.sas.iter().position(|s| s.cookies == cookies) else {
            return;
        };
        if initiator && self.want_child && self.children.is_empty() && self.quick.is_empty() {
            self.start_quick_mode(now, idx, None);
        }
    }

    /// INITIAL-CONTACT: the peer kept nothing, so every other SA with it is stale. Returns
    /// the index of the SA that stays.
    pub(super) fn peer_restarted(&mut self, idx: usize) -> usize {
        let keep = self.sas[idx].cookies;
        self.quick.retain(|q| q.cookies == keep);
        self.drop_children();
        let mut i = 0;
        while i < self.sas.len() {
            if self.sas[i].cookies == keep {
                i += 1;
            } else {
                self.remove_sa(i, DownReason::Replaced);
            }
        }
        self.sas.iter().position(|s| s.cookies == keep).unwrap_or(0)
    }
}

fn transcript(sa: &IsakmpSa) -> keys::Transcript<'_> {
    keys::Transcript {
        g_xi: &sa.ke_i,
        g_xr: &sa.ke_r,
        cookies: sa.cookies,
        sai_b: &sa.sai_b,
    }
}

fn check_nonce(n: &[u8]) -> Result<(), Error> {
    // RFC 2409 §5: nonces are 8 to 256 bytes.
    if (8..=256).contains(&n.len()) {
        Ok(())
    } else {
        Err(Error::PeerMisbehaved(Mis::MissingPayload(pt::NONCE)))
    }
}

pub(super) fn header(cookies: Cookies, exchange: u8, first: u8, flags: u8, mid: u32) -> HeaderRepr {
    HeaderRepr {
        initiator_cookie: cookies.i,
        responder_cookie: cookies.r,
        next_payload: first,
        exchange_type: exchange,
        flags,
        message_id: mid,
        length: 0,
    }
}

fn plain_message(cookies: Cookies, mid: u32, payloads: &[Payload]) -> Vec<u8> {
    let mut body = Vec::new();
    let first = ikev1::emit_payloads(payloads, &mut body);
    header(cookies, exchange::MAIN_MODE, first, 0, mid).emit_message(&body)
}
