//! Messages in and out of an IKE SA: which SA a datagram is for, the one request in flight
//! and its retransmission, requests and responses handed to their exchange, sealing and
//! opening the encrypted payload, and the randomness every exchange draws on.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use wire::ike::{
    self, Delete, HeaderRepr, Ke, Message, Notify, Payload, Proposal, TrafficSelector, exchange,
    flags, notify, payload_type as pt, protocol,
};

use crate::error::{Error, Misbehaviour as Mis};

use super::*;

impl Peer {
    pub(super) fn datagram(
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
        let whole = bytes.get(..h.length as usize).unwrap_or(bytes);
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
            let same = |s: &IkeSa| !s.initiator && s.spi_i == h.initiator_spi && s.remote == remote;
            let copy = digest(whole);
            if let Some(idx) = self
                .sas
                .iter()
                .position(|s| same(s) && s.last_request == copy)
            {
                // A retransmitted IKE_SA_INIT: answer with what we sent before.
                if let Some((0, resp)) = self.sas[idx].last_response.clone() {
                    self.transmit(idx, resp);
                }
                return Ok(());
            }
            // Same SPI and address but other bytes: a new request (the initiator restarted
            // and drew the same SPI, or came back with a cookie). Its half-open predecessor
            // can never complete now.
            self.sas
                .retain(|s| !(same(s) && s.state == State::HalfOpen));
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
                // A retransmission is the very same datagram (§2.1); anything else under the
                // old message ID is stale or forged and gets no answer.
                return match sa.last_response.clone() {
                    Some((mid, resp))
                        if mid == h.message_id && sa.last_request == digest(whole) =>
                    {
                        self.transmit(idx, resp);
                        Ok(())
                    }
                    _ => Err(Error::PeerMisbehaved(Mis::UnexpectedMessageId(
                        h.message_id,
                    ))),
                };
            }
            if h.message_id != sa.peer_mid {
                return Err(Error::PeerMisbehaved(Mis::UnexpectedMessageId(
                    h.message_id,
                )));
            }
            let payloads = self.open(idx, bytes, &msg)?;
            self.sas[idx].last_heard = now;
            self.sas[idx].last_request = digest(whole);
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

    pub(super) fn queue_request(&mut self, idx: usize, now: Instant, req: Request) {
        let sa = &mut self.sas[idx];
        if sa.pending.is_some() || sa.state != State::Established {
            if !sa.queue.contains(&req) {
                sa.queue.push_back(req);
            }
            return;
        }
        self.dispatch(idx, now, req);
    }

    pub(super) fn dispatch(&mut self, idx: usize, now: Instant, req: Request) {
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

    pub(super) fn next_request(&mut self, idx: usize, now: Instant) {
        let sa = &mut self.sas[idx];
        if sa.pending.is_some() || !matches!(sa.state, State::Established | State::Rekeyed) {
            return;
        }
        if let Some(req) = sa.queue.pop_front() {
            self.dispatch(idx, now, req);
        }
    }

    pub(super) fn send_request(
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
    pub(super) fn request(
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

    pub(super) fn response(
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

    pub(super) fn established(&self) -> Option<usize> {
        self.sas.iter().position(|s| s.state == State::Established)
    }

    pub(super) fn remove_sa(&mut self, idx: usize, reason: DownReason) {
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

    pub(super) fn transmit(&mut self, idx: usize, payload: Vec<u8>) {
        let sa = &self.sas[idx];
        self.transmits.push_back(Transmit {
            local: sa.local,
            remote: sa.remote,
            payload,
        });
    }

    /// Builds an encrypted message on the SA at `idx`.
    pub(super) fn seal(
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
    pub(super) fn open(
        &self,
        idx: usize,
        bytes: &[u8],
        msg: &Message,
    ) -> Result<Vec<Payload>, Error> {
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

    pub(super) fn random_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.rng.fill_bytes(&mut v);
        v
    }

    pub(super) fn random_ike_spi(&mut self) -> u64 {
        loop {
            let spi = self.rng.next_u64();
            if spi != 0 && !self.sas.iter().any(|s| s.spi_i == spi || s.spi_r == spi) {
                return spi;
            }
        }
    }

    pub(super) fn random_esp_spi(&mut self) -> u32 {
        loop {
            let spi = self.rng.next_u32();
            if spi >= 256 && !self.child_sas().any(|c| c.spi_in == spi) {
                return spi;
            }
        }
    }

    pub(super) fn jitter(&mut self) -> Duration {
        let max = self.config.rekey_jitter.as_millis();
        if max == 0 {
            return Duration::ZERO;
        }
        let ms = u128::from(self.rng.next_u64()) % max;
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }
}

pub(super) fn proposal_number(i: usize) -> u8 {
    u8::try_from(i + 1).unwrap_or(u8::MAX)
}

pub(super) fn find_sa(p: &[Payload]) -> Option<&[Proposal]> {
    p.iter().find_map(|p| match p {
        Payload::Sa(v) => Some(v.as_slice()),
        _ => None,
    })
}

pub(super) fn find_ke(p: &[Payload]) -> Option<&Ke> {
    p.iter().find_map(|p| match p {
        Payload::Ke(k) => Some(k),
        _ => None,
    })
}

pub(super) fn find_nonce(p: &[Payload]) -> Option<&[u8]> {
    p.iter().find_map(|p| match p {
        Payload::Nonce(n) => Some(n.as_slice()),
        _ => None,
    })
}

pub(super) fn find_ts(p: &[Payload]) -> Option<(&[TrafficSelector], &[TrafficSelector])> {
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

pub(super) fn first_error(p: &[Payload]) -> Option<u16> {
    p.iter().find_map(|p| match p {
        Payload::Notify(n) if notify::is_error(n.notify_type) => Some(n.notify_type),
        _ => None,
    })
}

pub(super) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// What identifies a request's exact bytes without keeping them.
pub(super) fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}
