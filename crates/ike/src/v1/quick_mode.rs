//! Quick mode (RFC 2409 §5.5): ESP SAs under an ISAKMP SA, with or without PFS.
//!
//! ```text
//! 1 I→R  HDR*, HASH(1), SA, Ni [, KE] , IDci, IDcr
//! 2 R→I  HDR*, HASH(2), SA, Nr [, KE] , IDci, IDcr
//! 3 I→R  HDR*, HASH(3)
//! ```
//!
//! HASH(1) = prf(SKEYID_a, M-ID | everything after HASH), HASH(2) = prf(SKEYID_a, M-ID | Ni_b
//! | everything after HASH), HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b). The initiator
//! installs after sending message 3, the responder after receiving it; until then the
//! responder resends message 2, and the initiator answers a repeated message 2 with its
//! stored message 3.

use std::net::SocketAddr;
use std::time::Instant;

use wire::ike::TrafficSelector;
use wire::ikev1::{self, Message, Payload, exchange, flags, payload_type as pt, protocol};

use super::keys;
use super::main_mode::header;
use super::suite::{self, EspTerms};
use super::{
    Child, MAX_QUICK, NONCE_LEN, Peer, Pending, Quick, QuickState, cipher, hashes_equal, selector,
};
use crate::error::{Error, Incompatibility as Inc, Misbehaviour as Mis};
use crate::identity;
use crate::proposal::ChildSuite;
use crate::{ChildSaInfo, Event};

/// A decrypted quick mode or informational message whose HASH verified.
pub(super) struct Verified {
    pub payloads: Vec<Payload>,
    pub next_iv: Vec<u8>,
}

/// The HASH payload followed by `rest`, with HASH = prf(key, prefix | rest as sent).
pub(super) fn hashed_chain(
    prf: crate::crypto::Prf,
    key: &[u8],
    prefix: &[&[u8]],
    rest: &[Payload],
) -> Vec<u8> {
    let mut tail = Vec::new();
    let first = ikev1::emit_payloads(rest, &mut tail);
    let mut parts: Vec<&[u8]> = prefix.to_vec();
    parts.push(&tail);
    let hash = prf.compute(key, &parts);
    let mut out = vec![first, 0, 0, 0];
    out.extend_from_slice(&hash);
    let len = u16::try_from(out.len()).unwrap_or(u16::MAX);
    out[2..4].copy_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&tail);
    out
}

impl Peer {
    /// Decrypts a message protected by ISAKMP SA `idx` with `iv` and checks that it starts
    /// with a HASH equal to prf(SKEYID_a, prefix | the payloads after it).
    pub(super) fn open_hashed(
        &self,
        idx: usize,
        msg: &Message<'_>,
        iv: &[u8],
        prefix: &[&[u8]],
    ) -> Result<Verified, Error> {
        let sa = &self.sas[idx];
        let (Some(chosen), Some(k)) = (sa.suite, &sa.keys) else {
            return Err(Error::PeerMisbehaved(Mis::UnknownSpi));
        };
        if !msg.header.is_encrypted() {
            return Err(Error::PeerMisbehaved(Mis::DecryptFailed));
        }
        let (plain, next_iv) = cipher::open(chosen.encr, &k.enc_key, iv, msg.body)
            .map_err(|_| Error::PeerMisbehaved(Mis::DecryptFailed))?;
        let parsed = ikev1::parse_payloads(msg.header.next_payload, &plain)
            .map_err(|_| Error::PeerMisbehaved(Mis::DecryptFailed))?;
        let (Some(first), Some(last)) = (parsed.first(), parsed.last()) else {
            return Err(Error::PeerMisbehaved(Mis::MissingPayload(pt::HASH)));
        };
        let Payload::Hash(got) = &first.payload else {
            return Err(Error::PeerMisbehaved(Mis::MissingPayload(pt::HASH)));
        };
        let mut parts: Vec<&[u8]> = prefix.to_vec();
        parts.push(&plain[first.span.end..last.span.end]);
        let want = chosen.hash.prf().compute(&k.skeyid_a, &parts);
        if !hashes_equal(&want, got) {
            return Err(Error::PeerMisbehaved(Mis::BadAuth));
        }
        Ok(Verified {
            payloads: parsed.into_iter().skip(1).map(|p| p.payload).collect(),
            next_iv,
        })
    }

    /// Encrypts a hashed chain for ISAKMP SA `idx`; returns the datagram and the next IV.
    pub(super) fn seal_hashed(
        &self,
        idx: usize,
        exchange: u8,
        mid: u32,
        iv: &[u8],
        chain: &[u8],
    ) -> (Vec<u8>, Vec<u8>) {
        let sa = &self.sas[idx];
        let (Some(chosen), Some(k)) = (sa.suite, &sa.keys) else {
            return (Vec::new(), Vec::new());
        };
        let sealed = cipher::seal(chosen.encr, &k.enc_key, iv, chain);
        let next = cipher::last_block(chosen.encr, &sealed);
        let h = header(sa.cookies, exchange, pt::HASH, flags::ENCRYPTION, mid);
        (h.emit_message(&sealed), next)
    }

    fn phase2_iv(&self, idx: usize, mid: u32) -> Vec<u8> {
        self.sas[idx].phase2_iv(mid)
    }

    fn skeyid_a(&self, idx: usize) -> (crate::crypto::Prf, Vec<u8>) {
        let sa = &self.sas[idx];
        match (sa.suite, &sa.keys) {
            (Some(s), Some(k)) => (s.hash.prf(), k.skeyid_a.to_vec()),
            _ => (crate::crypto::Prf::HmacSha1, Vec::new()),
        }
    }

    /// Starts a quick mode over ISAKMP SA `idx`, for a new CHILD SA or to rekey `rekeys`.
    pub(super) fn start_quick_mode(&mut self, now: Instant, idx: usize, rekeys: Option<u32>) {
        if self.quick.len() >= MAX_QUICK {
            return;
        }
        let (local_ts, remote_ts) =
            match rekeys.and_then(|spi| self.children.iter().find(|c| c.info.spi_in == spi)) {
                Some(c) => (c.info.local_ts[0], c.info.remote_ts[0]),
                None => match (self.config.local_ts.first(), self.config.remote_ts.first()) {
                    (Some(l), Some(r)) => (*l, *r),
                    _ => return,
                },
            };
        let mid = self.random_mid();
        let spi_in = self.random_spi();
        let ni = self.random_bytes(NONCE_LEN);
        let pfs = self.config.esp.first().and_then(|p| p.dh.first().copied());
        let dh = pfs.map(|g| g.generate(&mut *self.rng));
        let terms = EspTerms {
            pfs,
            lifetime: self.config.child_lifetime,
            udp: self.sas[idx].nat,
        };
        let mut rest = vec![
            Payload::Sa(suite::esp_sa(&self.config.esp, spi_in, terms)),
            Payload::Nonce(ni.clone()),
        ];
        if let Some(kp) = &dh {
            rest.push(Payload::Ke(kp.public().to_vec()));
        }
        rest.push(Payload::Id(selector::to_id(&local_ts)));
        rest.push(Payload::Id(selector::to_id(&remote_ts)));
        let (prf, key) = self.skeyid_a(idx);
        let chain = hashed_chain(prf, &key, &[&mid.to_be_bytes()], &rest);
        let iv = self.phase2_iv(idx, mid);
        let (bytes, next_iv) = self.seal_hashed(idx, exchange::QUICK_MODE, mid, &iv, &chain);
        let sa = &self.sas[idx];
        let (local, remote, cookies) = (sa.local, sa.remote, sa.cookies);
        self.quick.push(Quick {
            cookies,
            mid,
            state: QuickState::Sent1,
            iv: next_iv,
            ni,
            nr: Vec::new(),
            dh,
            pfs,
            spi_in,
            local_ts,
            remote_ts,
            rekeys,
            chosen: None,
            g_qm: None,
            pending: Some(Pending {
                bytes: bytes.clone(),
                sends: 1,
                next_at: now + self.config.retransmit.timeout(0),
            }),
            answered: None,
            created: now,
        });
        self.transmit(local, remote, bytes);
    }

    pub(super) fn quick_mode(
        &mut self,
        now: Instant,
        _local: SocketAddr,
        _remote: SocketAddr,
        msg: &Message<'_>,
        bytes: &[u8],
    ) -> Result<(), Error> {
        let h = msg.header;
        let idx = self
            .find_sa(&h)
            .filter(|&i| {
                self.sas[i].keys.is_some() && self.sas[i].state == super::Phase1::Established
            })
            .ok_or(Error::PeerMisbehaved(Mis::UnknownSpi))?;
        if let Some(q) = self
            .quick
            .iter()
            .find(|q| q.answered.as_ref().is_some_and(|(req, _)| req == bytes))
        {
            let answer = q
                .answered
                .as_ref()
                .map(|(_, a)| a.clone())
                .unwrap_or_default();
            let (l, r) = (self.sas[idx].local, self.sas[idx].remote);
            self.transmit(l, r, answer);
            return Ok(());
        }
        let cookies = self.sas[idx].cookies;
        match self
            .quick
            .iter()
            .position(|q| q.cookies == cookies && q.mid == h.message_id)
        {
            Some(qi) => match self.quick[qi].state {
                QuickState::Sent1 => self.on_quick_answer(now, idx, qi, msg, bytes),
                QuickState::Sent2 => self.on_quick_hash3(now, idx, qi, msg),
                QuickState::Done => Ok(()),
            },
            None => self.respond_quick(now, idx, msg, bytes),
        }
    }

    /// Responder, message 1.
    fn respond_quick(
        &mut self,
        now: Instant,
        idx: usize,
        msg: &Message<'_>,
        bytes: &[u8],
    ) -> Result<(), Error> {
        let mid = msg.header.message_id;
        if mid == 0 {
            return Err(Error::PeerMisbehaved(Mis::UnexpectedMessageId(0)));
        }
        let iv = self.phase2_iv(idx, mid);
        let v = self.open_hashed(idx, msg, &iv, &[&mid.to_be_bytes()])?;
        self.sas[idx].last_heard = now;
        if self.quick.len() >= MAX_QUICK {
            return Err(Error::PeerIncompatible(Inc::NoProposalChosen));
        }
        let mut offer = None;
        let mut ni = None;
        let mut ke = None;
        let mut ids = Vec::new();
        for p in v.payloads {
            match p {
                Payload::Sa(sa) => offer = Some(sa),
                Payload::Nonce(n) => ni = Some(n),
                Payload::Ke(k) => ke = Some(k),
                Payload::Id(id) => ids.push(id),
                _ => {}
            }
        }
        let offer = offer.ok_or(Error::PeerMisbehaved(Mis::MissingPayload(pt::SA)))?;
        let ni = ni.ok_or(Error::PeerMisbehaved(Mis::MissingPayload(pt::NONCE)))?;
        let (local, remote) = (self.sas[idx].local, self.sas[idx].remote);
        // Without client IDs the SA protects traffic between the two gateways.
        let (remote_ts, local_ts) = match ids.as_slice() {
            [] => (host(remote.ip()), host(local.ip())),
            [ci, cr] => (
                selector::from_id(ci).ok_or(Error::PeerIncompatible(Inc::TsUnacceptable))?,
                selector::from_id(cr).ok_or(Error::PeerIncompatible(Inc::TsUnacceptable))?,
            ),
            _ => return Err(Error::PeerMisbehaved(Mis::MissingPayload(pt::ID))),
        };
        if !identity::is_subset(core::slice::from_ref(&remote_ts), &self.config.remote_ts)
            || !identity::is_subset(core::slice::from_ref(&local_ts), &self.config.local_ts)
        {
            return Err(Error::PeerIncompatible(Inc::TsUnacceptable));
        }
        let spi_in = self.random_spi();
        let (answer, child, terms, spi_out) =
            suite::choose_esp(&offer, &self.config.esp, spi_in, self.config.child_lifetime)
                .ok_or(Error::PeerIncompatible(Inc::NoProposalChosen))?;
        let mut dh = None;
        let mut g_qm = None;
        if let Some(group) = terms.pfs {
            let ke = ke.ok_or(Error::PeerMisbehaved(Mis::MissingPayload(pt::KE)))?;
            let kp = group.generate(&mut *self.rng);
            g_qm = Some(
                kp.agree(&ke)
                    .map_err(|_| Error::PeerMisbehaved(Mis::BadPublicValue))?,
            );
            dh = Some(kp);
        }
        let nr = self.random_bytes(NONCE_LEN);
        let mut rest = vec![Payload::Sa(answer), Payload::Nonce(nr.clone())];
        if let Some(kp) = &dh {
            rest.push(Payload::Ke(kp.public().to_vec()));
        }
        for id in ids {
            rest.push(Payload::Id(id));
        }
        let (prf, key) = self.skeyid_a(idx);
        let chain = hashed_chain(prf, &key, &[&mid.to_be_bytes(), &ni], &rest);
        let (out, next_iv) = self.seal_hashed(idx, exchange::QUICK_MODE, mid, &v.next_iv, &chain);
        self.quick.push(Quick {
            cookies: self.sas[idx].cookies,
            mid,
            state: QuickState::Sent2,
            iv: next_iv,
            ni,
            nr,
            dh: None,
            pfs: terms.pfs,
            spi_in,
            local_ts,
            remote_ts,
            rekeys: None,
            chosen: Some((child, terms, spi_out)),
            g_qm,
            pending: Some(Pending {
                bytes: out.clone(),
                sends: 1,
                next_at: now + self.config.retransmit.timeout(0),
            }),
            answered: Some((bytes.to_vec(), out.clone())),
            created: now,
        });
        self.transmit(local, remote, out);
        Ok(())
    }

    /// Responder, message 3: HASH(3) confirms; install.
    fn on_quick_hash3(
        &mut self,
        now: Instant,
        idx: usize,
        qi: usize,
        msg: &Message<'_>,
    ) -> Result<(), Error> {
        let q = &self.quick[qi];
        let mid = q.mid.to_be_bytes();
        let v = self.open_hashed(idx, msg, &q.iv, &[&[0], &mid, &q.ni, &q.nr])?;
        if !v.payloads.is_empty() {
            // HASH(3) covers no payloads; anything after it would be unauthenticated.
            return Err(Error::PeerMisbehaved(Mis::UnexpectedExchange(
                exchange::QUICK_MODE,
            )));
        }
        self.sas[idx].last_heard = now;
        let snapshot = Installing::from(&self.quick[qi]);
        // Kept for a while, done, so that its message ID cannot start a second exchange.
        let q = &mut self.quick[qi];
        q.state = QuickState::Done;
        q.pending = None;
        q.created = now;
        self.install_from(now, idx, snapshot, false);
        Ok(())
    }

    /// Initiator, message 2: check, confirm with HASH(3), install.
    fn on_quick_answer(
        &mut self,
        now: Instant,
        idx: usize,
        qi: usize,
        msg: &Message<'_>,
        bytes: &[u8],
    ) -> Result<(), Error> {
        let q = &self.quick[qi];
        let mid = q.mid.to_be_bytes();
        let v = self.open_hashed(idx, msg, &q.iv, &[&mid, &q.ni])?;
        self.sas[idx].last_heard = now;
        let mut answer = None;
        let mut nr = None;
        let mut ke = None;
        let mut ids = Vec::new();
        for p in v.payloads {
            match p {
                Payload::Sa(sa) => answer = Some(sa),
                Payload::Nonce(n) => nr = Some(n),
                Payload::Ke(k) => ke = Some(k),
                Payload::Id(id) => ids.push(id),
                _ => {}
            }
        }
        let result = (|| {
            let answer = answer.ok_or(Error::PeerMisbehaved(Mis::MissingPayload(pt::SA)))?;
            let nr = nr.ok_or(Error::PeerMisbehaved(Mis::MissingPayload(pt::NONCE)))?;
            let (child, terms, spi_out) = suite::accepted_esp(&answer, &self.config.esp)
                .filter(|(_, t, _)| t.pfs == q.pfs)
                .ok_or(Error::PeerMisbehaved(Mis::ChoseUnofferedProposal))?;
            if let [ci, cr] = ids.as_slice()
                && (selector::from_id(ci) != Some(q.local_ts)
                    || selector::from_id(cr) != Some(q.remote_ts))
            {
                return Err(Error::PeerIncompatible(Inc::TsUnacceptable));
            }
            let g_qm = match (&q.dh, ke) {
                (Some(kp), Some(ke)) => Some(
                    kp.agree(&ke)
                        .map_err(|_| Error::PeerMisbehaved(Mis::BadPublicValue))?,
                ),
                (Some(_), None) => return Err(Error::PeerMisbehaved(Mis::MissingPayload(pt::KE))),
                _ => None,
            };
            Ok((child, terms, spi_out, nr, g_qm))
        })();
        let (child, terms, spi_out, nr, g_qm) = match result {
            Ok(r) => r,
            Err(e) => {
                self.quick.remove(qi);
                self.events.push_back(Event::ChildSaFailed(e.clone()));
                return Err(e);
            }
        };
        let (prf, key) = self.skeyid_a(idx);
        let h3 = prf.compute(&key, &[&[0], &mid, &self.quick[qi].ni, &nr]);
        let mut chain = vec![0, 0, 0, 0];
        chain.extend_from_slice(&h3);
        let len = u16::try_from(chain.len()).unwrap_or(u16::MAX);
        chain[2..4].copy_from_slice(&len.to_be_bytes());
        let (out, _) = self.seal_hashed(
            idx,
            exchange::QUICK_MODE,
            self.quick[qi].mid,
            &v.next_iv,
            &chain,
        );
        let q = &mut self.quick[qi];
        q.nr = nr;
        q.g_qm = g_qm;
        q.dh = None;
        q.chosen = Some((child, terms, spi_out));
        q.state = QuickState::Done;
        q.pending = None;
        q.answered = Some((bytes.to_vec(), out.clone()));
        q.created = now;
        let (l, r) = (self.sas[idx].local, self.sas[idx].remote);
        self.transmit(l, r, out);
        let snapshot = Installing::from(&self.quick[qi]);
        self.install_from(now, idx, snapshot, true);
        Ok(())
    }

    /// Derives the ESP keys both ways and reports the CHILD SA (RFC 2409 §5.5: the KEYMAT of
    /// each SA uses the SPI its receiver chose).
    fn install_from(&mut self, now: Instant, idx: usize, q: Installing, initiator: bool) {
        let Some((suite, terms, spi_out)) = q.chosen else {
            return;
        };
        let sa = &self.sas[idx];
        let (Some(p1), Some(k)) = (sa.suite, &sa.keys) else {
            return;
        };
        let prf = p1.hash.prf();
        let len = suite.key_len();
        let g = q.g_qm.as_deref().map(Vec::as_slice);
        let seed = keys::KeymatSeed {
            pfs: g,
            protocol: protocol::ESP,
            ni: &q.ni,
            nr: &q.nr,
        };
        let km_in = keys::keymat(prf, &k.skeyid_d, &seed, q.spi_in, len);
        let km_out = keys::keymat(prf, &k.skeyid_d, &seed, spi_out, len);
        let ek = suite.encr.key_len();
        let replaces = if initiator {
            q.rekeys
        } else {
            self.children
                .iter()
                .filter(|c| c.info.local_ts == [q.local_ts] && c.info.remote_ts == [q.remote_ts])
                // The peer rekeys the SA closest to its end.
                .min_by_key(|c| c.expire_at)
                .map(|c| self.replaced_by(c.info.spi_in).unwrap_or(c.info.spi_in))
        };
        let info = ChildSaInfo {
            spi_in: q.spi_in,
            spi_out,
            suite,
            encr_in: km_in[..ek].to_vec(),
            integ_in: km_in[ek..].to_vec(),
            encr_out: km_out[..ek].to_vec(),
            integ_out: km_out[ek..].to_vec(),
            local_ts: vec![q.local_ts],
            remote_ts: vec![q.remote_ts],
            udp_encap: sa.nat || terms.udp,
            local: sa.local,
            remote: sa.remote,
            replaces,
        };
        let life = terms.lifetime;
        // When the peer's shorter lifetime governs, the peer rekeys on its schedule and we
        // only step in near the end, so that the two ends do not both rekey (IKEv1 has no
        // way to tell the duplicates apart).
        let rekey_at = if life < self.config.child_lifetime {
            now + life.mul_f64(0.9)
        } else {
            self.rekey_time(now, life)
        };
        if let Some(old) = replaces
            && let Some(c) = self.children.iter_mut().find(|c| c.info.spi_in == old)
        {
            // Whoever rekeyed it also retires it; we do not rekey it a second time.
            c.rekey_at = None;
        }
        self.children.push(Child {
            info: info.clone(),
            rekey_at: Some(rekey_at),
            expire_at: now + life,
        });
        self.events
            .push_back(Event::ChildSaEstablished(Box::new(info)));
        if initiator && let Some(old) = replaces {
            // Make-before-break: the new SA is in, so the old one goes, both here and there.
            self.send_delete_esp(now, idx, &[old]);
            self.remove_child(old);
        }
        if let Some(old) = replaces {
            self.rekeyed(now, idx, old, q.spi_in, (&q.ni, &q.nr), initiator);
        }
    }
}

/// What installing a CHILD SA needs from a finished quick mode.
struct Installing {
    chosen: Option<(ChildSuite, EspTerms, u32)>,
    g_qm: Option<zeroize::Zeroizing<Vec<u8>>>,
    spi_in: u32,
    ni: Vec<u8>,
    nr: Vec<u8>,
    local_ts: TrafficSelector,
    remote_ts: TrafficSelector,
    rekeys: Option<u32>,
}

impl From<&Quick> for Installing {
    fn from(q: &Quick) -> Self {
        Self {
            chosen: q.chosen,
            g_qm: q.g_qm.clone(),
            spi_in: q.spi_in,
            ni: q.ni.clone(),
            nr: q.nr.clone(),
            local_ts: q.local_ts,
            remote_ts: q.remote_ts,
            rekeys: q.rekeys,
        }
    }
}

fn host(a: std::net::IpAddr) -> TrafficSelector {
    TrafficSelector::range(a, a)
}
