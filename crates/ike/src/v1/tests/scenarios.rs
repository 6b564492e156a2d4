use super::*;
use crate::DownReason;
use crate::crypto::{Encr, Integ};
use crate::dh::DhGroup;
use crate::v1::keys::HashAlg;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

#[test]
fn s3_suite_main_and_quick_mode() {
    let mut p = Pair::new(s3(1, 2), s3(2, 1), 1);
    p.establish();
    p.assert_children_agree();
    let c = &p.a.children()[0];
    assert_eq!(c.suite.encr, Encr::AesCbc(128));
    assert_eq!(c.suite.integ, Some(Integ::HmacSha1_96));
    assert_eq!(c.suite.dh, None);
    assert_eq!(c.encr_in.len(), 16);
    assert_eq!(c.integ_in.len(), 20);
    assert!(!c.udp_encap);
    assert_eq!(c.local_ts, vec![lan(1)]);
    let up = p.a.up_suite().unwrap();
    assert_eq!(up.dh, DhGroup::Modp1024);
    assert_eq!(up.prf, HashAlg::Sha1.prf());
    // Six main mode and three quick mode messages, nothing more.
    assert_eq!(p.sent_to_b.len(), 5, "3 main mode + 2 quick mode requests");
    p.teardown();
}

#[test]
fn modern_suite_with_pfs_in_both_directions() {
    for b_initiates in [false, true] {
        let mut p = Pair::new(modern(1, 2), modern(2, 1), 2);
        if b_initiates {
            let (a, b) = (p.a.addr, p.b.addr);
            p.b.peer.initiate(p.now, b, a).unwrap();
        } else {
            p.initiate();
        }
        p.drive_bounded(100, Pair::established);
        p.assert_children_agree();
        let c = &p.a.children()[0];
        assert_eq!(c.suite.encr, Encr::AesCbc(256));
        assert_eq!(c.suite.integ, Some(Integ::HmacSha256_128));
        assert_eq!(c.suite.dh, Some(DhGroup::Modp2048));
        assert_eq!((c.encr_in.len(), c.integ_in.len()), (32, 32));
        p.teardown();
    }
}

#[test]
fn identities_and_a_wrong_psk() {
    let a = with_ids(s3(1, 2), "fqdn:a.example", "fqdn:b.example");
    let b = with_ids(s3(2, 1), "fqdn:b.example", "fqdn:a.example");
    let mut p = Pair::new(a.clone(), b.clone(), 3);
    p.establish();
    p.teardown();

    let mut wrong = b.clone();
    wrong.psk = b"another secret".to_vec();
    let mut p = Pair::new(a.clone(), wrong, 4);
    p.initiate();
    p.run_for(Duration::from_secs(300));
    assert!(!p.a.peer.is_established() && !p.b.peer.is_established());
    assert!(p.a.children().is_empty() && p.b.children().is_empty());
    // Decrypting message 5 with the wrong key yields garbage or a bad HASH_I.
    assert!(
        p.b.errors.iter().any(|e| matches!(
            e,
            crate::Error::PeerMisbehaved(
                crate::Misbehaviour::BadAuth | crate::Misbehaviour::DecryptFailed
            )
        )),
        "{:?}",
        p.b.errors
    );
    // The initiator gives up after its retransmissions and says so.
    assert!(p.a.downs(&DownReason::Timeout) == 1);

    let mut other_id = b;
    other_id.remote_id = Some(Identity::parse("fqdn:c.example").unwrap());
    let mut p = Pair::new(a, other_id, 5);
    p.initiate();
    p.run_for(Duration::from_secs(120));
    assert!(!p.b.peer.is_established());
    assert!(p.b.errors.iter().any(|e| matches!(
        e,
        crate::Error::PeerIncompatible(crate::Incompatibility::IdentityMismatch)
    )));
}

#[test]
fn no_common_proposal_fails_fast() {
    let mut p = Pair::new(s3(1, 2), modern(2, 1), 6);
    p.initiate();
    p.run_for(Duration::from_secs(5));
    assert!(!p.a.peer.is_established());
    assert_eq!(
        p.a.peer.ike_sa_count(),
        0,
        "attempt ended by NO-PROPOSAL-CHOSEN"
    );
    assert!(
        p.a.count(|e| matches!(
            e,
            Event::IkeSaDown {
                reason: DownReason::Failed(_),
                ..
            }
        )) == 1
    );
    assert_eq!(p.b.peer.ike_sa_count(), 0);
}

#[test]
fn survives_loss_duplication_and_reordering() {
    for seed in 0..24 {
        let mut p = Pair::new(s3(1, 2), s3(2, 1), 100 + seed);
        p.loss = 200;
        p.dup = 200;
        p.reorder = 200;
        p.initiate();
        p.drive_bounded(5000, |p| {
            p.established() && p.a.children().len() == p.b.children().len()
        });
        p.loss = 0;
        p.dup = 0;
        p.reorder = 0;
        p.run_for(Duration::from_secs(60));
        p.assert_children_agree();
        assert_eq!(p.a.children().len(), 1, "seed {seed}");
        assert_eq!(p.a.ups(), 1, "seed {seed}: {:?}", p.a.events);
        p.assert_no_leak();
        p.teardown();
    }
}

#[test]
fn repeated_requests_get_the_same_answer_bytes() {
    let mut p = Pair::new(s3(1, 2), s3(2, 1), 7);
    p.establish();
    // Replay main mode message 5 (the third datagram A sent) to B: B resends message 6
    // byte for byte and nothing changes.
    let m5 = p.sent_to_b[2].clone();
    let before = p.b.peer.ike_spis();
    let (a, b) = (p.a.addr, p.b.addr);
    p.b.peer.handle_datagram(p.now, b, a, &m5).unwrap();
    let first = p.b.peer.poll_transmit().unwrap();
    p.b.peer.handle_datagram(p.now, b, a, &m5).unwrap();
    let second = p.b.peer.poll_transmit().unwrap();
    assert_eq!(first.payload, second.payload);
    assert_eq!(p.b.peer.ike_spis(), before);
    assert_eq!(p.b.peer.ike_sa_count(), 1);
    // The same bytes with one flipped bit are not a retransmission.
    let mut forged = m5;
    let n = forged.len();
    forged[n - 1] ^= 1;
    assert!(p.b.peer.handle_datagram(p.now, b, a, &forged).is_err());
    assert!(p.b.peer.poll_transmit().is_none());
}

#[test]
fn child_rekey_is_make_before_break() {
    for cfg in [s3 as fn(u8, u8) -> Config, modern] {
        let mut p = Pair::new(cfg(1, 2), cfg(2, 1), 8);
        p.establish();
        let old = p.a.children()[0].clone();
        let now = p.now;
        p.a.peer.rekey_child(now, old.spi_in).unwrap();
        p.drive_bounded(100, |p| {
            p.mirrored() && p.a.children()[0].spi_in != old.spi_in
        });
        p.assert_children_agree();
        let new = p.a.children()[0].clone();
        assert_eq!(new.replaces, Some(old.spi_in));
        // The new SA was reported before the old one went, on both sides.
        for node in [&p.a, &p.b] {
            let up = node
                .events
                .iter()
                .position(|e| matches!(e, Event::ChildSaEstablished(c) if c.spi_in != old.spi_in && c.spi_in != old.spi_out))
                .unwrap();
            let down = node
                .events
                .iter()
                .position(|e| matches!(e, Event::ChildSaDeleted { .. }))
                .unwrap();
            assert!(up < down, "break before make: {:?}", node.events);
        }
        assert_ne!(new.encr_in, old.encr_in);
        p.teardown();
    }
}

#[test]
fn lifetimes_drive_rekeys_and_the_shorter_lifetime_wins() {
    let mut a = s3(1, 2);
    a.child_lifetime = Duration::from_secs(1200);
    a.rekey_margin = Duration::from_secs(60);
    a.rekey_jitter = Duration::from_secs(30);
    let mut b = s3(2, 1);
    b.child_lifetime = Duration::from_secs(600);
    b.rekey_margin = Duration::from_secs(60);
    b.rekey_jitter = Duration::from_secs(30);
    let mut p = Pair::new(a, b, 9);
    p.establish();
    // B accepted A's 1200 s but keeps its own 600 s: it rekeys first, well before 600 s.
    p.run_for(Duration::from_secs(3000));
    p.assert_children_agree();
    assert_eq!(p.a.children().len(), 1);
    let rekeys =
        p.b.count(|e| matches!(e, Event::ChildSaEstablished(c) if c.replaces.is_some()));
    assert!(rekeys >= 5, "B rekeyed {rekeys} times in 3000 s");
    // No SA ever expired unreplaced: every deletion followed a newer SA.
    p.assert_no_leak();
    p.teardown();
}

#[test]
fn rekey_collision_leaves_one_pair_by_the_lowest_nonce() {
    let short = |l, r| {
        let mut c = s3(l, r);
        c.child_lifetime = Duration::from_secs(900);
        c.rekey_margin = Duration::from_secs(90);
        c.rekey_jitter = Duration::from_secs(60);
        c
    };
    for seed in 0..6 {
        let mut p = Pair::new(short(1, 2), short(2, 1), 200 + seed);
        p.establish();
        let old_a = p.a.children()[0].spi_in;
        let old_b = p.b.children()[0].spi_in;
        let now = p.now;
        p.a.peer.rekey_child(now, old_a).unwrap();
        p.b.peer.rekey_child(now, old_b).unwrap();
        p.run_for(Duration::from_secs(30));
        p.assert_children_agree();
        // The quick mode holding the lowest nonce made the redundant pair, and its
        // initiator deleted it: one pair is left, as RFC 7296 §2.8.1 has it for IKEv2.
        let n = p.a.children().len();
        assert_eq!(n, 1, "seed {seed}: {n} CHILD SAs");
        assert!(p.a.children().iter().all(|c| c.spi_in != old_a));
        p.run_for(Duration::from_secs(4 * 900));
        p.assert_children_agree();
        assert_eq!(p.a.children().len(), 1, "seed {seed}");
        p.assert_no_leak();
        p.teardown();
    }
}

#[test]
fn phase1_rekey_keeps_children() {
    let mut p = Pair::new(s3(1, 2), s3(2, 1), 10);
    p.establish();
    let old = p.a.peer.ike_spis().unwrap();
    let child = p.a.children()[0].spi_in;
    let now = p.now;
    p.a.peer.rekey_ike(now).unwrap();
    p.drive_bounded(200, |p| {
        p.a.peer.ike_sa_count() == 1
            && p.b.peer.ike_sa_count() == 1
            && p.a.peer.ike_spis() != Some(old)
    });
    assert_eq!(p.a.peer.ike_spis(), p.b.peer.ike_spis());
    assert_eq!(p.a.count(|e| matches!(e, Event::IkeSaRekeyed { .. })), 1);
    assert_eq!(p.b.count(|e| matches!(e, Event::IkeSaRekeyed { .. })), 1);
    assert_eq!(p.a.children()[0].spi_in, child);
    // A CHILD rekey then runs over the new ISAKMP SA.
    let now = p.now;
    p.a.peer.rekey_child(now, child).unwrap();
    p.drive_bounded(100, |p| p.mirrored() && p.a.children()[0].spi_in != child);
    p.assert_children_agree();
    // The lifetime rekeys phase 1 on its own, again and again.
    p.run_for(Duration::from_secs(3 * 28800));
    assert!(p.a.count(|e| matches!(e, Event::IkeSaRekeyed { .. })) >= 3);
    assert_eq!(p.a.peer.ike_sa_count(), 1);
    p.assert_children_agree();
    p.teardown();
}

#[test]
fn nat_floats_to_4500_and_encapsulates() {
    // Behind a NAT the address is no identity: the peers name themselves.
    let a = with_ids(s3(1, 2), "fqdn:a.example", "fqdn:b.example");
    let b = with_ids(s3(2, 1), "fqdn:b.example", "fqdn:a.example");
    let mut p = Pair::new(a, b, 11);
    p.nat_a = Some("203.0.113.99".parse().unwrap());
    p.establish();
    p.assert_children_agree();
    let a = &p.a.children()[0];
    let b = &p.b.children()[0];
    assert!(a.udp_encap && b.udp_encap);
    assert_eq!(a.local.port(), 4500);
    assert_eq!(a.remote.port(), 4500);
    assert_eq!(b.remote.port(), 24500, "B answers the NAT's mapped port");
    assert!(p.a.events.contains(&Event::NatDetected {
        local_behind_nat: true,
        remote_behind_nat: false
    }));
    assert!(p.b.events.contains(&Event::NatDetected {
        local_behind_nat: false,
        remote_behind_nat: true
    }));
    p.teardown();
}

#[test]
fn dpd_keeps_an_idle_peer_and_restarts_after_a_dead_one() {
    let mut p = Pair::new(s3(1, 2), s3(2, 1), 12);
    p.establish();
    // Idle but alive: probes are answered, nothing goes down.
    p.run_for(Duration::from_secs(120));
    assert_eq!(p.a.count(|e| matches!(e, Event::IkeSaDown { .. })), 0);
    p.partitioned = true;
    let cut = p.now;
    p.drive_bounded(10_000, |p| {
        p.a.count(|e| {
            matches!(
                e,
                Event::IkeSaDown {
                    reason: DownReason::Timeout,
                    ..
                }
            )
        }) >= 1
    });
    let detected = p.now - cut;
    // 5 s of silence, then 20 s of unanswered probes.
    assert!(detected <= Duration::from_secs(26), "{detected:?}");
    assert!(p.a.children().is_empty());
    p.partitioned = false;
    p.drive_bounded(10_000, Pair::established);
    p.run_for(Duration::from_secs(60));
    // B saw INITIAL-CONTACT and dropped what it had from before.
    p.assert_children_agree();
    assert_eq!(p.b.peer.ike_sa_count(), 1);
    assert_eq!(p.b.children().len(), 1);
    p.teardown();
}

#[test]
fn a_restarted_responder_recovers_on_the_first_protected_message() {
    let mut p = Pair::new(s3(1, 2), s3(2, 1), 17);
    p.establish();
    p.b.restart(97);
    let at = p.now;
    // A's next DPD probe (5 s of silence) reaches a B that has no SA: B starts main mode
    // with INITIAL-CONTACT at once instead of A waiting out its 20 s DPD timeout.
    p.drive_bounded(10_000, |p| p.established() && p.mirrored());
    let took = p.now - at;
    assert!(took < Duration::from_secs(6), "{took:?}");
    assert_eq!(p.a.downs(&DownReason::Replaced), 1);
    p.run_for(Duration::from_secs(60));
    p.assert_children_agree();
    assert_eq!(p.a.peer.ike_sa_count(), 1);
    p.teardown();
}

#[test]
fn initiator_restart_replaces_the_old_sas_at_once() {
    let mut p = Pair::new(s3(1, 2), s3(2, 1), 14);
    p.establish();
    p.a.restart(98);
    let at = p.now;
    p.initiate();
    p.drive_bounded(200, |p| {
        p.established() && p.b.peer.ike_sa_count() == 1 && p.b.children().len() == 1
    });
    assert!(p.now - at < Duration::from_secs(1));
    assert_eq!(p.b.downs(&DownReason::Replaced), 1);
    p.assert_children_agree();
    p.teardown();
}

#[test]
fn aggressive_mode_and_garbage_are_refused() {
    let mut peer = Peer::new(s3(2, 1), rng(1));
    let now = Instant::now();
    let (l, r): (SocketAddr, SocketAddr) = (B_ADDR.parse().unwrap(), A_ADDR.parse().unwrap());
    let mut m = vec![0u8; 28];
    m[0] = 1;
    m[16] = 0;
    m[17] = 0x10;
    m[18] = wire::ikev1::exchange::AGGRESSIVE;
    m[27] = 28;
    assert!(peer.handle_datagram(now, l, r, &m).is_err());
    assert!(peer.handle_datagram(now, l, r, &m[..10]).is_err());
    m[17] = 0x20;
    assert!(peer.handle_datagram(now, l, r, &m).is_err());
    assert!(peer.poll_transmit().is_none());
    assert_eq!(peer.ike_sa_count(), 0);
}

#[test]
fn half_open_responders_are_bounded_and_expire() {
    let mut p = Pair::new(s3(1, 2), s3(2, 1), 15);
    // Many first messages from A that never continue.
    for _ in 0..20 {
        p.initiate();
        p.collect();
    }
    p.partitioned = false;
    p.step();
    assert!(p.b.peer.half_open_count() <= crate::v1::MAX_HALF_OPEN);
    p.partitioned = true;
    p.run_for(Duration::from_secs(300));
    assert_eq!(p.b.peer.half_open_count(), 0);
}

/// Every message of a real exchange, mutated byte by byte and truncated, fed to a fresh
/// responder and to the established one: nothing panics, nothing answers more than once,
/// and the established SA survives.
#[test]
fn mutated_messages_are_rejected_without_harm() {
    let mut p = Pair::new(modern(1, 2), modern(2, 1), 16);
    p.establish();
    let spis = p.b.peer.ike_spis();
    let children = p.b.children().len();
    let (a, b) = (p.a.addr, p.b.addr);
    let mut rng = ChaCha20Rng::seed_from_u64(16);
    for original in p.sent_to_b.clone() {
        for round in 0..200 {
            let mut m = original.clone();
            match round % 4 {
                0 => {
                    let i = rng.next_u32() as usize % m.len();
                    m[i] ^= 1 << (rng.next_u32() % 8);
                }
                1 => m.truncate(rng.next_u32() as usize % m.len()),
                2 => {
                    let i = rng.next_u32() as usize % m.len();
                    m[i] = rng.next_u32() as u8;
                }
                _ => {
                    let i = 28 + rng.next_u32() as usize % (m.len() - 28).max(1);
                    m.insert(i.min(m.len()), rng.next_u32() as u8);
                }
            }
            let mut fresh = Peer::new(s3(2, 1), rng_seed(round));
            let _ = fresh.handle_datagram(p.now, b, a, &m);
            assert!(fresh.poll_transmit().into_iter().count() <= 1);
            let _ = p.b.peer.handle_datagram(p.now, b, a, &m);
            let mut answers = 0;
            while p.b.peer.poll_transmit().is_some() {
                answers += 1;
            }
            assert!(answers <= 1, "{answers} answers to one datagram");
        }
    }
    assert_eq!(p.b.peer.ike_spis(), spis);
    assert_eq!(p.b.children().len(), children);
}

fn rng_seed(n: u64) -> Box<ChaCha20Rng> {
    rng(1000 + n)
}

#[test]
fn a_lone_isakmp_delete_takes_the_esp_sas_along() {
    let mut p = Pair::new(s3(1, 2), s3(2, 1), 18);
    p.establish();
    let now = p.now;
    p.a.peer.delete(now);
    // The ESP delete is lost; only the ISAKMP delete reaches B.
    let esp_delete = p.a.peer.poll_transmit().unwrap();
    let isakmp_delete = p.a.peer.poll_transmit().unwrap();
    assert!(p.a.peer.poll_transmit().is_none());
    drop(esp_delete);
    let (a, b) = (p.a.addr, p.b.addr);
    p.b.peer
        .handle_datagram(now, b, a, &isakmp_delete.payload)
        .unwrap();
    p.collect();
    assert_eq!(p.b.peer.ike_sa_count(), 0);
    assert!(p.b.children().is_empty());
    assert_eq!(p.b.count(|e| matches!(e, Event::ChildSaDeleted { .. })), 1);
    p.assert_no_leak();
    assert_eq!(p.b.peer.poll_timeout(), None);
}

#[test]
fn a_responder_with_the_shorter_lifetime_replaces_its_sa_in_time() {
    let mut b = s3(2, 1);
    b.ike_lifetime = Duration::from_secs(3600);
    let mut p = Pair::new(s3(1, 2), b, 19);
    p.establish();
    let child = p.a.children()[0].spi_in;
    // A believes in 8 h; B keeps 1 h and makes the successor before its SA runs out.
    for _ in 0..4 {
        p.run_for(Duration::from_secs(3600));
        assert!(p.a.peer.is_established() && p.b.peer.is_established());
        p.assert_children_agree();
        assert_eq!(p.a.children().len(), 1);
    }
    assert!(p.b.count(|e| matches!(e, Event::IkeSaRekeyed { .. })) >= 3);
    assert_eq!(p.b.peer.ike_sa_count(), 1);
    assert_eq!(p.a.peer.ike_sa_count(), 1);
    // The ESP SA was rekeyed on its own schedule, never dropped for want of an ISAKMP SA.
    assert_eq!(
        p.a.count(|e| matches!(e, Event::ChildSaDeleted { spi_in, .. } if *spi_in == child)),
        0
    );
    p.teardown();
}

#[test]
fn triple_des_when_both_ask_for_it() {
    let des = |l, r| {
        let mut c = s3(l, r);
        c.ike = vec![IkeProposal::parse("3des-sha1-modp1024").unwrap()];
        c.esp = vec![EspProposal::parse("3des-sha1").unwrap()];
        c
    };
    let mut p = Pair::new(des(1, 2), des(2, 1), 91);
    p.establish();
    p.assert_children_agree();
    let c = &p.a.children()[0];
    assert_eq!(c.suite.encr, Encr::TripleDesCbc);
    assert_eq!(c.encr_in.len(), 24);
    // Quick mode rekey and DPD run over the 8-byte-block phase 1 cipher too.
    let spi = c.spi_in;
    p.a.peer.rekey_child(p.now, spi).unwrap();
    p.run_for(Duration::from_secs(60));
    p.assert_children_agree();
    assert!(p.a.children().iter().all(|c| c.spi_in != spi));
    p.teardown();
}
