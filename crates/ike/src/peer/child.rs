//! CREATE_CHILD_SA (RFC 7296 §1.3): new and rekeyed CHILD SAs, and rekeying the IKE SA.

use std::collections::VecDeque;
use std::time::Instant;

use wire::ike::{self, Ke, Payload, notify, payload_type as pt, protocol};

use crate::dh::{DhGroup, KeyPair};
use crate::error::{Error, Incompatibility as Inc, Misbehaviour as Mis};
use crate::identity::{self};
use crate::keys::IkeKeys;
use crate::proposal::{ChildSuite, IkeSuite};

use super::*;

impl Peer {
    /// Responder side of a CHILD SA negotiation (IKE_AUTH or CREATE_CHILD_SA). Returns the
    /// payloads of the answer.
    pub(super) fn child_request(
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
    pub(super) fn child_response(
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
    pub(super) fn finish_child_rekey(
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

    pub(super) fn add_child(&mut self, idx: usize, now: Instant, info: ChildSaInfo) {
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

    pub(super) fn remove_child(&mut self, idx: usize, spi_in: u32) {
        let sa = &mut self.sas[idx];
        if let Some(pos) = sa.children.iter().position(|c| c.info.spi_in == spi_in) {
            let c = sa.children.remove(pos);
            self.events.push_back(Event::ChildSaDeleted {
                spi_in,
                spi_out: c.info.spi_out,
            });
        }
    }

    pub(super) fn create_child_request(
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
    pub(super) fn rekeyed(
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
            last_request: [0; 32],
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

    pub(super) fn rekey_ike_response(
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
}
