//! Main mode needs the key before the peer's ID arrives, so a key of its own can only be
//! picked by the peer's address.

use super::*;

const KEY_A: &[u8] = b"the key of site a only";

fn responder(entry: &str) -> Config {
    let mut b = s3(2, 1);
    b.psk = b"the default key".to_vec();
    b.remote_psks = vec![(Identity::parse(entry).unwrap(), KEY_A.to_vec())];
    b
}

fn site_a(psk: &[u8]) -> Config {
    let mut a = s3(1, 2);
    a.psk = psk.to_vec();
    a
}

#[test]
fn the_peer_address_picks_its_own_key() {
    let a_ip = A_ADDR.parse::<SocketAddr>().unwrap().ip();
    let mut p = Pair::new(site_a(KEY_A), responder(&a_ip.to_string()), 81);
    p.establish();
    p.assert_children_agree();
    p.teardown();

    let mut p = Pair::new(site_a(b"the default key"), responder(&a_ip.to_string()), 82);
    p.initiate();
    p.run_for(Duration::from_secs(120));
    assert!(!p.b.peer.is_established());
}

#[test]
fn an_fqdn_entry_cannot_pick_a_main_mode_key() {
    // The ID comes encrypted under keys made from the PSK: the FQDN entry is never consulted,
    // the default key is used.
    let mut a = with_ids(
        site_a(b"the default key"),
        "fqdn:a.example",
        "fqdn:b.example",
    );
    a.remote_id = None;
    let mut b = responder("fqdn:a.example");
    b.remote_id = Some(Identity::parse("fqdn:a.example").unwrap());
    let mut p = Pair::new(a, b, 83);
    p.establish();
    p.teardown();
}
