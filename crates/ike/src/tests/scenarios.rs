use std::time::{Duration, Instant};

use crate::crypto::Encr;
use crate::dh::DhGroup;
use crate::proposal::IkeProposal;
use crate::{DownReason, DpdAction, Error, Event, Incompatibility, Peer};

use super::*;

const IKE_SUITES: [(&str, &str); 7] = [
    ("aes128gcm16-prfsha256-modp2048", "aes128gcm16"),
    ("aes256gcm16-prfsha384-ecp384", "aes256gcm16"),
    ("aes128gcm16-prfsha256-ecp256", "aes128gcm16"),
    ("aes128gcm16-prfsha256-x25519", "aes256gcm16"),
    ("aes128-sha1-modp1024", "aes128-sha1"),
    ("aes256-sha256-modp2048", "aes256-sha256"),
    ("3des-sha1-modp1024", "3des-sha1"),
];

#[test]
fn establishes_with_defaults_and_keys_agree() {
    let mut p = Pair::default_pair(1);
    p.establish();
    p.assert_children_agree();
    assert_eq!(p.a.ups(), 1);
    assert_eq!(p.b.ups(), 1);
    let c = &p.a.children()[0];
    assert_eq!(c.suite.encr, Encr::AesGcm16(128));
    assert_eq!(c.encr_out.len(), 20, "AES-128 key + salt");
    assert!(!c.udp_encap, "no NAT between the sites");
    assert_eq!(c.local_ts, vec![lan(1)]);
    assert_eq!(p.a.peer.ike_spis(), p.b.peer.ike_spis());
    assert!(
        p.a.errors.is_empty() && p.b.errors.is_empty(),
        "{:?} {:?}",
        p.a.errors,
        p.b.errors
    );
    p.teardown();
}

#[test]
fn establishes_every_listed_suite() {
    for (i, (ike, esp)) in IKE_SUITES.iter().enumerate() {
        let mut p = Pair::new(
            with_proposals(config_a(), ike, esp),
            with_proposals(config_b(), ike, esp),
            10 + i as u64,
        );
        p.establish();
        p.assert_children_agree();
        let suite =
            p.a.up_suite()
                .unwrap_or_else(|| panic!("no IkeSaUp for {ike}"));
        let want = IkeProposal::parse(ike).unwrap();
        assert!(want.allows(&suite), "{ike}: negotiated {suite:?}");
        // A rekey exercises CREATE_CHILD_SA with this suite's keys.
        p.rekey_child(false, 200);
        p.assert_children_agree();
        p.teardown();
    }
}

#[test]
fn invalid_ke_retries_with_the_group_the_responder_wants() {
    let mut a = config_a();
    a.ike = vec![IkeProposal::parse("aes128gcm16-prfsha256-ecp256-modp2048").unwrap()];
    let mut b = config_b();
    b.ike = vec![IkeProposal::parse("aes128gcm16-prfsha256-modp2048").unwrap()];
    let mut p = Pair::new(a, b, 2);
    p.establish();
    p.assert_children_agree();
    assert!(
        p.b.errors
            .contains(&Error::PeerIncompatible(Incompatibility::InvalidKe(14)))
    );
    let suite = p.a.up_suite().expect("not up");
    assert_eq!(suite.dh, DhGroup::Modp2048);
    p.teardown();
}

#[test]
fn no_common_proposal_fails_cleanly() {
    let a = with_proposals(config_a(), "aes128-sha1-modp1024", "aes128-sha1");
    let mut p = Pair::new(a, config_b(), 3);
    p.initiate();
    p.drive_bounded(100, |p| p.a.peer.ike_sa_count() == 0);
    assert_eq!(
        p.a.downs(&DownReason::Failed(Error::PeerIncompatible(
            Incompatibility::NoProposalChosen
        ))),
        1
    );
    p.run_for(Duration::from_secs(300));
    p.assert_empty();
}

#[test]
fn cookie_is_demanded_and_honoured() {
    let mut b = config_b();
    b.cookie_threshold = 0;
    let mut p = Pair::new(config_a(), b, 4);
    p.establish();
    p.assert_children_agree();
    p.teardown();
}

#[test]
fn responder_keeps_no_state_without_a_valid_cookie() {
    let mut b = config_b();
    b.cookie_threshold = 0;
    let mut p = Pair::new(config_a(), b, 5);
    p.initiate();
    // Capture A's first IKE_SA_INIT and replay it to B from elsewhere many times.
    let first = p.a.peer.poll_transmit().unwrap();
    let now = p.now;
    for port in 0..50u16 {
        let from: SocketAddr = format!("198.51.100.77:{}", 1000 + port).parse().unwrap();
        p.b.peer
            .handle_datagram(now, first.remote, from, &first.payload)
            .unwrap();
        let reply = p.b.peer.poll_transmit().unwrap();
        let m = wire::ike::Message::parse(&reply.payload).unwrap();
        assert_eq!(m.notifies(wire::ike::notify::COOKIE).count(), 1);
    }
    assert_eq!(p.b.peer.ike_sa_count(), 0);
    assert_eq!(p.b.peer.half_open_count(), 0);
}

#[test]
fn half_open_sas_expire() {
    let mut p = Pair::default_pair(6);
    p.initiate();
    // Deliver only the first IKE_SA_INIT, then cut the network.
    let t = p.a.peer.poll_transmit().unwrap();
    let now = p.now;
    p.b.peer
        .handle_datagram(now, t.remote, t.local, &t.payload)
        .unwrap();
    assert_eq!(p.b.peer.half_open_count(), 1);
    p.partitioned = true;
    p.run_for(Duration::from_secs(400));
    assert_eq!(p.b.peer.half_open_count(), 0);
    assert_eq!(
        p.a.downs(&DownReason::Timeout),
        1,
        "initiator gives up after its retransmissions"
    );
    p.assert_empty();
}

#[test]
fn retransmits_follow_the_backoff_schedule() {
    let mut p = Pair::default_pair(7);
    p.partitioned = true;
    p.initiate();
    let start = p.now;
    let mut sends = Vec::new();
    for _ in 0..50 {
        while p.a.peer.poll_transmit().is_some() {
            sends.push(p.now - start);
        }
        match p.a.peer.poll_timeout() {
            Some(t) => {
                p.now = t;
                p.a.peer.handle_timeout(t);
            }
            None => break,
        }
    }
    let secs: Vec<f64> = sends.iter().map(Duration::as_secs_f64).collect();
    // 4 s base, factor 1.8, 5 retransmissions.
    let expect = [0.0, 4.0, 11.2, 24.16, 47.488, 89.4784];
    assert_eq!(secs.len(), expect.len(), "{secs:?}");
    for (s, e) in secs.iter().zip(expect) {
        assert!((s - e).abs() < 1e-6, "{secs:?}");
    }
    while let Some(e) = p.a.peer.poll_event() {
        p.a.events.push(e);
    }
    assert_eq!(p.a.downs(&DownReason::Timeout), 1);
    assert_eq!(p.a.peer.ike_sa_count(), 0);
}

#[test]
fn survives_loss_duplication_and_reordering() {
    for seed in 0..6 {
        let mut p = Pair::default_pair(100 + seed);
        p.loss = 250;
        p.dup = 300;
        p.reorder = 300;
        p.initiate();
        p.drive_bounded(2000, Pair::established);
        p.assert_children_agree();
        p.rekey_child(false, 2000);
        p.assert_children_agree();
        p.loss = 0;
        p.teardown();
    }
}

#[test]
fn child_rekey_installs_new_before_deleting_old() {
    let mut p = Pair::default_pair(8);
    p.establish();
    let old = p.rekey_child(false, 100);
    p.assert_children_agree();
    for (node, old_in) in [(&p.a, old.spi_in), (&p.b, old.spi_out)] {
        let new_at = node
            .events
            .iter()
            .position(|e| matches!(e, Event::ChildSaEstablished(c) if c.replaces == Some(old_in)))
            .expect("new SA reported with the SA it replaces");
        let del_at = node
            .events
            .iter()
            .position(|e| matches!(e, Event::ChildSaDeleted { spi_in, .. } if *spi_in == old_in))
            .expect("old SA deleted");
        assert!(new_at < del_at, "make-before-break");
    }
    assert_ne!(p.a.children()[0].encr_out, old.encr_out);
    p.teardown();
}

#[test]
fn ike_rekey_moves_children_and_keeps_working() {
    let mut p = Pair::default_pair(9);
    p.establish();
    let old_spis = p.a.peer.ike_spis().unwrap();
    let child = p.a.children()[0].spi_in;
    p.a.peer.rekey_ike(p.now).unwrap();
    p.drive_bounded(200, |p| {
        p.a.peer.ike_sa_count() == 1
            && p.b.peer.ike_sa_count() == 1
            && p.a.peer.ike_spis() != Some(old_spis)
    });
    assert_eq!(p.a.peer.ike_spis(), p.b.peer.ike_spis());
    assert_eq!(
        p.a.children()[0].spi_in,
        child,
        "children survive an IKE rekey"
    );
    for node in [&p.a, &p.b] {
        assert_eq!(node.count(|e| matches!(e, Event::IkeSaRekeyed { .. })), 1);
        assert_eq!(node.count(|e| matches!(e, Event::ChildSaDeleted { .. })), 0);
    }
    // The new IKE SA's keys work both ways: rekey the child from B's side over it.
    p.rekey_child(true, 200);
    p.assert_children_agree();
    p.teardown();
}

#[test]
fn simultaneous_child_rekey_leaves_one_pair() {
    for seed in 0..8 {
        let mut p = Pair::default_pair(200 + seed);
        p.establish();
        let a_old = p.a.children()[0].spi_in;
        let b_old = p.b.children()[0].spi_in;
        let now = p.now;
        p.a.peer.rekey_child(now, a_old).unwrap();
        p.b.peer.rekey_child(now, b_old).unwrap();
        p.drive_bounded(400, |p| {
            p.a.children().len() == 1
                && p.b.children().len() == 1
                && p.a.children()[0].spi_in != a_old
                && p.b.children()[0].spi_in != b_old
        });
        p.run_for(Duration::from_secs(60));
        assert_eq!(p.a.children().len(), 1, "seed {seed}");
        for node in [&p.a, &p.b] {
            let made =
                node.count(|e| matches!(e, Event::ChildSaEstablished(c) if c.replaces.is_some()));
            assert_eq!(
                made, 2,
                "both rekeys completed before the collision was resolved"
            );
        }
        p.assert_children_agree();
        p.assert_no_leak();
        p.teardown();
    }
}

#[test]
fn delete_from_either_side_clears_both() {
    for from_b in [false, true] {
        let mut p = Pair::default_pair(11);
        p.establish();
        let now = p.now;
        if from_b {
            p.b.peer.delete(now);
        } else {
            p.a.peer.delete(now);
        }
        p.drive_bounded(100, |p| {
            p.a.peer.ike_sa_count() == 0 && p.b.peer.ike_sa_count() == 0
        });
        assert_eq!(p.a.downs(&DownReason::Deleted), 1);
        assert_eq!(p.b.downs(&DownReason::Deleted), 1);
        p.run_for(Duration::from_secs(600));
        p.assert_empty();
    }
}

#[test]
fn dpd_declares_a_silent_peer_dead() {
    let mut p = Pair::new(
        with_dpd(config_a(), DpdAction::Clear),
        with_dpd(config_b(), DpdAction::Clear),
        12,
    );
    p.establish();
    // Idle traffic: DPD exchanges keep it up.
    p.run_for(Duration::from_secs(200));
    assert!(p.established());
    p.partitioned = true;
    p.run_for(Duration::from_secs(400));
    assert_eq!(p.a.downs(&DownReason::Timeout), 1);
    assert_eq!(p.b.downs(&DownReason::Timeout), 1);
    p.assert_empty();
}

#[test]
fn dpd_restart_reestablishes_after_an_outage() {
    let mut p = Pair::new(
        with_dpd(config_a(), DpdAction::Restart),
        with_dpd(config_b(), DpdAction::Clear),
        13,
    );
    p.establish();
    p.partitioned = true;
    p.run_for(Duration::from_secs(160));
    assert!(!p.a.peer.is_established(), "A noticed the outage");
    p.partitioned = false;
    p.run_for(Duration::from_secs(400));
    assert!(p.established(), "A restarted the connection");
    assert_eq!(p.a.peer.ike_sa_count(), 1);
    assert_eq!(p.b.peer.ike_sa_count(), 1);
    p.assert_children_agree();
    p.teardown();
}

#[test]
fn restarted_peer_replaces_the_stale_ike_sa() {
    let mut p = Pair::default_pair(14);
    p.establish();
    let stale = p.b.children()[0].spi_in;
    // A reboots: all its state is gone; B still holds the old SAs.
    p.a = Node::new(config_a(), A_ADDR, 999);
    p.initiate();
    p.drive_bounded(100, |p| {
        p.a.peer.is_established() && p.b.peer.ike_sa_count() == 1 && p.b.children().len() == 1
    });
    assert_eq!(p.b.downs(&DownReason::Replaced), 1);
    assert!(
        p.b.events
            .iter()
            .any(|e| matches!(e, Event::ChildSaDeleted { spi_in, .. } if *spi_in == stale))
    );
    p.assert_children_agree();
    p.teardown();
}

#[test]
fn lifetimes_rekey_on_their_own_without_leaks() {
    let mut a = config_a();
    let mut b = config_b();
    for c in [&mut a, &mut b] {
        c.child_lifetime = Duration::from_secs(600);
        c.ike_lifetime = Duration::from_secs(1800);
        c.rekey_margin = Duration::from_secs(120);
        c.rekey_jitter = Duration::from_secs(60);
    }
    let mut p = Pair::new(a, b, 15);
    p.establish();
    p.run_for(Duration::from_secs(3 * 3600));
    assert!(p.established());
    for node in [&p.a, &p.b] {
        let rekeys =
            node.count(|e| matches!(e, Event::ChildSaEstablished(c) if c.replaces.is_some()));
        assert!(rekeys >= 15, "children rekeyed {rekeys} times");
        assert!(node.count(|e| matches!(e, Event::IkeSaRekeyed { .. })) >= 3);
        assert_eq!(node.peer.ike_sa_count(), 1);
    }
    // Never let an SA run to its hard expiry.
    assert!(
        p.a.errors.is_empty() && p.b.errors.is_empty(),
        "{:?} {:?}",
        p.a.errors,
        p.b.errors
    );
    p.assert_children_agree();
    p.teardown();
}

#[test]
fn wrong_psk_fails_authentication() {
    let mut b = config_b();
    b.psk = b"another secret".to_vec();
    let mut p = Pair::new(config_a(), b, 16);
    p.initiate();
    p.drive_bounded(100, |p| p.a.peer.ike_sa_count() == 0);
    assert!(
        p.b.errors
            .iter()
            .any(|e| e.notify_type() == Some(wire::ike::notify::AUTHENTICATION_FAILED))
    );
    assert_eq!(
        p.a.count(|e| matches!(
            e,
            Event::IkeSaDown {
                reason: DownReason::Failed(_),
                ..
            }
        )),
        1
    );
    assert_eq!(p.b.ups(), 0);
    p.run_for(Duration::from_secs(300));
    p.assert_empty();
}

#[test]
fn identities_of_every_kind() {
    let pairs = [
        ("fqdn:a.example", "fqdn:b.example"),
        ("email:a@example.net", "email:b@example.net"),
        ("keyid:site-a", "keyid:#b0b0"),
        ("198.51.100.1", "203.0.113.1"),
    ];
    for (i, (ida, idb)) in pairs.iter().enumerate() {
        let mut p = Pair::new(
            with_ids(config_a(), ida, idb),
            with_ids(config_b(), idb, ida),
            20 + i as u64,
        );
        p.establish();
        p.teardown();
    }
    // B expects a different identity for A.
    let mut p = Pair::new(
        with_ids(config_a(), "fqdn:a.example", "fqdn:b.example"),
        with_ids(config_b(), "fqdn:b.example", "fqdn:x.example"),
        30,
    );
    p.initiate();
    p.drive_bounded(100, |p| p.a.peer.ike_sa_count() == 0);
    assert!(
        p.b.errors
            .contains(&Error::PeerIncompatible(Incompatibility::IdentityMismatch))
    );
    p.run_for(Duration::from_secs(300));
    p.assert_empty();
}

#[test]
fn responder_narrows_traffic_selectors() {
    let mut b = config_b();
    b.remote_ts = vec![TrafficSelector::range(
        "198.18.1.16".parse().unwrap(),
        "198.18.1.31".parse().unwrap(),
    )];
    let mut p = Pair::new(config_a(), b, 31);
    p.establish();
    assert_eq!(p.a.children()[0].local_ts, p.b.children()[0].remote_ts);
    assert_eq!(
        p.a.children()[0].local_ts[0].start_addr.to_string(),
        "198.18.1.16"
    );
    p.assert_children_agree();
    p.teardown();

    // Disjoint selectors: IKE SA up, CHILD SA refused.
    let mut b = config_b();
    b.remote_ts = vec![lan(9)];
    let mut p = Pair::new(config_a(), b, 32);
    p.initiate();
    p.drive_bounded(100, |p| {
        p.a.peer.is_established() && p.b.peer.is_established()
    });
    p.run_for(Duration::from_secs(1));
    assert!(p.a.events.iter().any(|e| matches!(
        e,
        Event::ChildSaFailed(Error::PeerIncompatible(Incompatibility::TsUnacceptable))
    )));
    assert_eq!(p.a.children().len(), 0);
    p.teardown();
}

#[test]
fn garbage_never_panics_and_changes_nothing() {
    let mut p = Pair::default_pair(33);
    p.establish();
    let mut r = ChaCha20Rng::seed_from_u64(1);
    let spis = p.b.peer.ike_spis().unwrap();
    let now = p.now;
    for len in 0..400usize {
        let mut junk = vec![0u8; len];
        r.fill_bytes(&mut junk);
        // Half the time, aim at the live SA with a plausible header.
        if len >= 28 && len % 2 == 0 {
            junk[..8].copy_from_slice(&spis.0.to_be_bytes());
            junk[8..16].copy_from_slice(&spis.1.to_be_bytes());
            junk[16] = 46;
            junk[17] = 0x20;
            junk[18] = 37;
            junk[24..28].copy_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
        }
        let (a, b) = (p.a.addr, p.b.addr);
        assert!(p.b.peer.handle_datagram(now, b, a, &junk).is_err());
    }
    assert!(p.b.peer.poll_transmit().is_none(), "no reply to garbage");
    p.assert_children_agree();
    p.teardown();
}

#[test]
fn api_misuse_is_reported() {
    let mut peer = Peer::new(config_a(), rng(1));
    let now = Instant::now();
    assert!(matches!(
        peer.rekey_child(now, 1234),
        Err(Error::ApiMisuse(_))
    ));
    assert!(matches!(peer.rekey_ike(now), Err(Error::ApiMisuse(_))));
}

#[test]
fn simultaneous_ike_rekey_leaves_one_ike_sa() {
    for seed in 0..8 {
        let mut p = Pair::default_pair(300 + seed);
        p.establish();
        let old = p.a.peer.ike_spis().unwrap();
        let now = p.now;
        p.a.peer.rekey_ike(now).unwrap();
        p.b.peer.rekey_ike(now).unwrap();
        p.drive_bounded(400, |p| {
            p.a.peer.ike_sa_count() == 1
                && p.b.peer.ike_sa_count() == 1
                && p.a.peer.ike_spis() != Some(old)
        });
        p.run_for(Duration::from_secs(60));
        assert_eq!(p.a.peer.ike_spis(), p.b.peer.ike_spis(), "seed {seed}");
        for node in [&p.a, &p.b] {
            // Both exchanges completed: the collision path ran, not a plain rekey.
            assert_eq!(node.count(|e| matches!(e, Event::IkeSaRekeyed { .. })), 2);
        }
        assert_eq!(p.a.children().len(), 1, "seed {seed}");
        p.assert_children_agree();
        // The surviving IKE SA carries a child rekey, so both ends hold the same keys.
        p.rekey_child(false, 200);
        p.assert_children_agree();
        p.teardown();
    }
}

#[test]
fn nat_is_detected_and_traffic_moves_to_port_4500() {
    let a = with_ids(config_a(), "fqdn:a.example", "fqdn:b.example");
    let b = with_ids(config_b(), "fqdn:b.example", "fqdn:a.example");
    let mut p = Pair::new(a, b, 40);
    p.a.addr = "198.18.0.2:500".parse().unwrap();
    p.nat_a = Some("198.51.100.200".parse().unwrap());
    p.establish();
    assert!(p.a.events.contains(&Event::NatDetected {
        local_behind_nat: true,
        remote_behind_nat: false
    }));
    assert!(p.b.events.contains(&Event::NatDetected {
        local_behind_nat: false,
        remote_behind_nat: true
    }));
    for node in [&p.a, &p.b] {
        let c = &node.children()[0];
        assert!(c.udp_encap);
        assert_eq!(c.remote.port() % 10000, 4500, "{c:?}");
        assert_eq!(c.local.port() % 10000, 4500, "{c:?}");
    }
    // Rekeys and DPD keep working through the mapping on 4500.
    p.rekey_child(false, 200);
    p.assert_children_agree();
    p.run_for(Duration::from_secs(120));
    assert!(p.established());
    p.teardown();
}

#[test]
fn unsupported_critical_payload_and_major_version_are_answered() {
    let mut p = Pair::default_pair(50);
    p.initiate();
    let t = p.a.peer.poll_transmit().unwrap();
    let (a, b) = (p.a.addr, p.b.addr);
    let now = p.now;
    // Append a critical payload of unknown type 200 after the last payload.
    let mut m = t.payload.clone();
    let last = last_payload_offset(&m);
    m[last] = 200;
    m.extend_from_slice(&[0, 0x80, 0, 4]);
    let len = u32::try_from(m.len()).unwrap();
    m[24..28].copy_from_slice(&len.to_be_bytes());
    let e = p.b.peer.handle_datagram(now, b, a, &m).unwrap_err();
    assert_eq!(
        e,
        Error::InvalidMessage(wire::ike::Error::UnsupportedCritical(200))
    );
    let reply = wire::ike::Message::parse(&p.b.peer.poll_transmit().unwrap().payload).unwrap();
    let n: Vec<_> = reply
        .notifies(wire::ike::notify::UNSUPPORTED_CRITICAL_PAYLOAD)
        .collect();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].data, [200]);
    // Major version 3.
    let mut m = t.payload.clone();
    m[17] = 0x30;
    assert!(p.b.peer.handle_datagram(now, b, a, &m).is_err());
    let reply = wire::ike::Message::parse(&p.b.peer.poll_transmit().unwrap().payload).unwrap();
    assert_eq!(reply.header.responder_spi, 0);
    assert_eq!(
        reply
            .notifies(wire::ike::notify::INVALID_MAJOR_VERSION)
            .count(),
        1
    );
    // Neither left state behind.
    assert_eq!(p.b.peer.ike_sa_count(), 0);
}

/// Offset of the next-payload field of the last payload of a plain message.
fn last_payload_offset(m: &[u8]) -> usize {
    let mut at = 16;
    let mut off = 28;
    while m[at] != 0 {
        at = off;
        off += usize::from(u16::from_be_bytes([m[off + 2], m[off + 3]]));
    }
    at
}

#[test]
fn duplicate_requests_get_the_cached_response() {
    let mut p = Pair::default_pair(51);
    p.initiate();
    let (a, b) = (p.a.addr, p.b.addr);
    let now = p.now;
    let init = p.a.peer.poll_transmit().unwrap();
    p.b.peer.handle_datagram(now, b, a, &init.payload).unwrap();
    let r1 = p.b.peer.poll_transmit().unwrap();
    p.b.peer.handle_datagram(now, b, a, &init.payload).unwrap();
    let r2 = p.b.peer.poll_transmit().unwrap();
    assert_eq!(r1.payload, r2.payload, "IKE_SA_INIT answered from cache");
    assert_eq!(p.b.peer.half_open_count(), 1);
    p.a.peer.handle_datagram(now, a, b, &r1.payload).unwrap();
    let auth = p.a.peer.poll_transmit().unwrap();
    p.b.peer.handle_datagram(now, b, a, &auth.payload).unwrap();
    let r1 = p.b.peer.poll_transmit().unwrap();
    p.b.peer.handle_datagram(now, b, a, &auth.payload).unwrap();
    let r2 = p.b.peer.poll_transmit().unwrap();
    assert_eq!(r1.payload, r2.payload, "IKE_AUTH answered from cache");
    assert_eq!(p.b.peer.child_sas().count(), 1, "no second CHILD SA");
    p.a.peer.handle_datagram(now, a, b, &r2.payload).unwrap();
    assert!(p.a.peer.is_established());
    // A stale copy of the first response is ignored by the initiator.
    assert!(p.a.peer.handle_datagram(now, a, b, &r1.payload).is_err());
    p.teardown();
}

#[test]
fn ipv6_underlay_with_address_identities() {
    let mut a = config_a();
    let mut b = config_b();
    let v6 = |s: &str, e: &str| TrafficSelector::range(s.parse().unwrap(), e.parse().unwrap());
    a.local_ts.push(v6("2001:db8:1::", "2001:db8:1::ffff"));
    a.remote_ts.push(v6("2001:db8:2::", "2001:db8:2::ffff"));
    b.local_ts.push(v6("2001:db8:2::", "2001:db8:2::ffff"));
    b.remote_ts.push(v6("2001:db8:1::", "2001:db8:1::ffff"));
    let mut p = Pair::new(a, b, 52);
    p.a.addr = "[2001:db8::a]:500".parse().unwrap();
    p.b.addr = "[2001:db8::b]:500".parse().unwrap();
    p.establish();
    p.assert_children_agree();
    let c = &p.a.children()[0];
    assert_eq!(
        c.local_ts.len(),
        2,
        "both families negotiated: {:?}",
        c.local_ts
    );
    assert!(c.remote.is_ipv6());
    p.teardown();
}

#[test]
fn esp_traffic_keeps_dpd_quiet() {
    let mut p = Pair::default_pair(53);
    p.establish();
    p.run_for(Duration::from_secs(1));
    let before = p.delivered;
    for _ in 0..10 {
        let now = p.now;
        let spi_a = p.a.children()[0].spi_in;
        let spi_b = p.b.children()[0].spi_in;
        p.a.peer.handle_esp_received(now, spi_a);
        p.b.peer.handle_esp_received(now, spi_b);
        p.run_for(Duration::from_secs(20));
    }
    assert_eq!(p.delivered, before, "no DPD exchange while ESP flows");
    // Silence again: DPD resumes.
    p.run_for(Duration::from_secs(60));
    assert!(p.delivered > before);
    p.teardown();
}

#[test]
fn rekeyed_ike_sa_is_dropped_when_its_delete_is_lost() {
    let mut a = config_a();
    let mut b = config_b();
    a.dpd = None;
    b.dpd = None;
    let mut p = Pair::new(a, b, 54);
    p.establish();
    let old = p.a.peer.ike_spis().unwrap();
    p.a.peer.rekey_ike(p.now).unwrap();
    // Run until A has the new SA (and is about to delete the old one), then lose everything.
    p.drive_bounded(100, |p| p.a.peer.ike_spis().is_some_and(|s| s != old));
    p.partitioned = true;
    p.drop_in_flight();
    p.run_for(Duration::from_secs(130));
    p.partitioned = false;
    p.run_for(Duration::from_secs(100));
    assert_eq!(p.a.peer.ike_sa_count(), 1);
    assert_eq!(p.b.peer.ike_sa_count(), 1);
    assert_eq!(p.a.peer.ike_spis(), p.b.peer.ike_spis());
    p.assert_children_agree();
    p.teardown();
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Mutated IKE_SA_INIT requests (bit flips, truncation, trailing junk) never panic the
    /// responder and leave at most the one half-open SA a valid request would.
    #[test]
    fn mutated_sa_init_never_panics(
        flips in proptest::collection::vec((0usize..2000, 0u8..8), 0..8),
        cut in proptest::option::of(0usize..2000),
        junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..16),
        seed in 0u64..4,
    ) {
        let mut p = Pair::default_pair(60 + seed);
        p.initiate();
        let t = p.a.peer.poll_transmit().unwrap();
        let mut m = t.payload.clone();
        for (at, bit) in flips {
            let i = at % m.len();
            m[i] ^= 1 << bit;
        }
        if let Some(c) = cut {
            m.truncate(c % (m.len() + 1));
        }
        m.extend_from_slice(&junk);
        let (a, b) = (p.a.addr, p.b.addr);
        let now = p.now;
        let _ = p.b.peer.handle_datagram(now, b, a, &m);
        while let Some(reply) = p.b.peer.poll_transmit() {
            // Whatever B answers, A must digest it without panicking too.
            let _ = p.a.peer.handle_datagram(now, a, b, &reply.payload);
        }
        proptest::prop_assert!(p.b.peer.half_open_count() <= 1);
        p.run_for(Duration::from_secs(400));
        proptest::prop_assert_eq!(p.b.peer.half_open_count(), 0);
    }
}
