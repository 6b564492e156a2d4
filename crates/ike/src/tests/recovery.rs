//! A restarted responder recovers on the peer's first ESP packet under a lost SPI, and
//! `last heard` moves only on authenticated input.

use std::time::Duration;

use super::*;
use crate::RECOVERY_INTERVAL;

/// A and B up; then B loses all its state, as a SIGKILL and restart would.
fn up_then_b_restarts(seed: u64) -> (Pair, u32) {
    let mut p = Pair::default_pair(seed);
    p.establish();
    let stale = p.a.children()[0].spi_in;
    p.b = Node::new(config_b(), B_ADDR, seed + 1000);
    (p, stale)
}

#[test]
fn esp_under_a_lost_spi_brings_a_new_sa_within_the_exchange() {
    let (mut p, stale) = up_then_b_restarts(31);
    let at = p.now;
    let (local, remote) = (p.b.addr, p.a.addr);
    // B's dataplane sees A's ESP under an SPI it no longer has.
    assert!(p.b.peer.handle_unknown_spi(at, local, remote));
    // Every further packet of the same burst starts nothing more.
    for ms in [1, 10, 100, 1000] {
        let t = at + Duration::from_millis(ms);
        assert!(!p.b.peer.handle_unknown_spi(t, local, remote), "{ms} ms");
    }
    p.drive_bounded(100, |p| {
        p.established() && p.a.peer.ike_sa_count() == 1 && p.a.children().len() == 1
    });
    let took = p.now - at;
    // IKE_SA_INIT and IKE_AUTH: two round trips of 2 x 10 ms, nothing waited for.
    assert!(took <= 4 * p.latency, "{took:?}");
    assert_eq!(p.a.downs(&DownReason::Replaced), 1);
    assert!(
        p.a.events
            .iter()
            .any(|e| matches!(e, Event::ChildSaDeleted { spi_in, .. } if *spi_in == stale))
    );
    assert!(p.a.children().iter().all(|c| c.spi_in != stale));
    p.assert_children_agree();
    p.teardown();
}

#[test]
fn unknown_spis_start_nothing_while_an_sa_is_up() {
    let mut p = Pair::default_pair(32);
    p.establish();
    // A late packet of an SA a rekey deleted: no new IKE SA for that.
    let (now, local, remote) = (p.now, p.b.addr, p.a.addr);
    assert!(!p.b.peer.handle_unknown_spi(now, local, remote));
    assert!(!p.a.peer.handle_unknown_spi(now, p.a.addr, remote));
    p.run_for(Duration::from_secs(1));
    assert_eq!((p.a.ups(), p.b.ups()), (1, 1));
    p.teardown();
}

#[test]
fn a_failed_recovery_is_retried_only_after_the_interval() {
    let (mut p, _) = up_then_b_restarts(33);
    let (local, remote) = (p.b.addr, p.a.addr);
    p.partitioned = true;
    let at = p.now;
    assert!(p.b.peer.handle_unknown_spi(at, local, remote));
    // The attempt runs out of retransmissions while A is unreachable.
    p.run_for(Duration::from_secs(300));
    assert!(!p.b.peer.is_established());
    p.partitioned = false;
    let now = p.now;
    assert!(now >= at + RECOVERY_INTERVAL);
    assert!(p.b.peer.handle_unknown_spi(now, local, remote));
    p.drive_bounded(100, |p| p.established() && p.a.peer.ike_sa_count() == 1);
    p.assert_children_agree();
    p.teardown();
}

#[test]
fn last_heard_moves_only_on_authenticated_input() {
    let mut p = Pair::default_pair(34);
    p.establish();
    let heard = p.b.peer.last_heard().expect("established");
    p.run_for(Duration::from_secs(5));
    let (now, local, remote) = (p.now, p.b.addr, p.a.addr);
    let (spi_i, spi_r) = p.b.peer.ike_spis().unwrap();
    // A forged INFORMATIONAL under the live SPIs and the next message ID: garbage inside.
    let mut forged = Vec::new();
    forged.extend_from_slice(&spi_i.to_be_bytes());
    forged.extend_from_slice(&spi_r.to_be_bytes());
    forged.extend_from_slice(&[46, 0x20, 37, 0x08, 0, 0, 0, 2, 0, 0, 0, 60]);
    forged.extend_from_slice(&[0, 0, 0, 32]);
    forged.extend_from_slice(&[0xa5; 28]);
    assert_eq!(
        p.b.peer.handle_datagram(now, local, remote, &forged),
        Err(crate::Error::PeerMisbehaved(
            crate::Misbehaviour::DecryptFailed
        ))
    );
    // ESP under an SPI B does not hold proves nothing either.
    p.b.peer.handle_esp_received(now, 0xdead_beef);
    assert_eq!(p.b.peer.last_heard(), Some(heard));
    // An authenticated ESP packet does.
    let spi = p.b.children()[0].spi_in;
    p.b.peer.handle_esp_received(now, spi);
    assert_eq!(p.b.peer.last_heard(), Some(now));
    p.teardown();
}
