//! A restarted responder recovers on the peer's first ESP packet under a lost SPI, and
//! `last heard` moves only on authenticated input.

use std::time::Duration;

use super::*;
use crate::DownReason;

#[test]
fn esp_under_a_lost_spi_brings_new_sas_within_the_exchange() {
    let mut p = Pair::new(s3(1, 2), s3(2, 1), 41);
    p.establish();
    let stale = p.a.children()[0].spi_in;
    p.b.restart(141);
    let at = p.now;
    let (local, remote) = (p.b.addr, p.a.addr);
    assert!(p.b.peer.handle_unknown_spi(at, local, remote));
    for ms in [1, 10, 100, 1000] {
        let t = at + Duration::from_millis(ms);
        assert!(!p.b.peer.handle_unknown_spi(t, local, remote), "{ms} ms");
    }
    p.drive_bounded(200, |p| {
        p.established() && p.mirrored() && p.a.peer.ike_sa_count() == 1
    });
    let took = p.now - at;
    // Main mode (three round trips) and quick mode (one and a half), 10 ms each way.
    assert!(took <= 9 * p.latency, "{took:?}");
    assert_eq!(p.a.downs(&DownReason::Replaced), 1);
    assert!(p.a.children().iter().all(|c| c.spi_in != stale));
    p.assert_children_agree();
    p.teardown();
}

#[test]
fn unknown_spis_start_nothing_while_an_sa_is_up() {
    let mut p = Pair::new(s3(1, 2), s3(2, 1), 42);
    p.establish();
    let (now, local, remote) = (p.now, p.b.addr, p.a.addr);
    assert!(!p.b.peer.handle_unknown_spi(now, local, remote));
    p.run_for(Duration::from_secs(1));
    assert_eq!((p.a.ups(), p.b.ups()), (1, 1));
    p.teardown();
}

#[test]
fn last_heard_moves_only_on_authenticated_input() {
    let mut p = Pair::new(s3(1, 2), s3(2, 1), 43);
    p.establish();
    let heard = p.b.peer.last_heard().expect("established");
    p.run_for(Duration::from_secs(3));
    let (now, local, remote) = (p.now, p.b.addr, p.a.addr);
    let (ci, cr) = p.b.peer.ike_spis().unwrap();
    // An encrypted informational under the live cookies whose hash cannot verify.
    let mut forged = Vec::new();
    forged.extend_from_slice(&ci.to_be_bytes());
    forged.extend_from_slice(&cr.to_be_bytes());
    forged.extend_from_slice(&[8, 0x10, 5, 0x01, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 60]);
    forged.extend_from_slice(&[0xa5; 32]);
    assert!(
        p.b.peer
            .handle_datagram(now, local, remote, &forged)
            .is_err()
    );
    p.b.peer.handle_esp_received(now, 0xdead_beef);
    assert_eq!(p.b.peer.last_heard(), Some(heard));
    let spi = p.b.children()[0].spi_in;
    p.b.peer.handle_esp_received(now, spi);
    assert_eq!(p.b.peer.last_heard(), Some(now));
    p.teardown();
}
