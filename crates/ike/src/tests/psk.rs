//! A responder that holds one key per peer ID picks it by the ID the peer proves.

use super::*;

const KEY_A: &[u8] = b"the key of site a only";

/// B holds a default key and one of its own for `fqdn:a.example`, and accepts either.
fn responder() -> Config {
    let mut b = config_b();
    b.psk = b"the default key".to_vec();
    b.remote_psks = vec![(Identity::parse("fqdn:a.example").unwrap(), KEY_A.to_vec())];
    b
}

fn site_a(id: &str, psk: &[u8]) -> Config {
    let mut a = config_a();
    a.local_id = Some(Identity::parse(id).unwrap());
    a.psk = psk.to_vec();
    a
}

fn failed(p: &Pair) -> bool {
    p.a.peer.ike_sa_count() == 0
}

#[test]
fn the_peer_id_picks_its_own_key() {
    let mut p = Pair::new(site_a("fqdn:a.example", KEY_A), responder(), 71);
    p.establish();
    p.assert_children_agree();
    p.teardown();
}

#[test]
fn the_default_key_does_not_open_an_id_with_its_own() {
    let mut p = Pair::new(
        site_a("fqdn:a.example", b"the default key"),
        responder(),
        72,
    );
    p.initiate();
    p.drive_bounded(100, failed);
    assert!(
        p.b.errors
            .contains(&crate::Error::PeerMisbehaved(crate::Misbehaviour::BadAuth))
    );
    assert_eq!(p.b.ups(), 0);
}

#[test]
fn an_id_with_no_key_of_its_own_and_not_the_remote_id_is_refused() {
    // B has no remote_id: without a key of its own, only A's address is accepted.
    let mut p = Pair::new(
        site_a("fqdn:c.example", b"the default key"),
        responder(),
        73,
    );
    p.initiate();
    p.drive_bounded(100, failed);
    assert!(p.b.errors.contains(&crate::Error::PeerIncompatible(
        crate::Incompatibility::IdentityMismatch
    )));
    // The address identity with the default key is still welcome.
    let mut a = config_a();
    a.psk = b"the default key".to_vec();
    let mut p = Pair::new(a, responder(), 74);
    p.establish();
    p.teardown();
}

#[test]
fn the_initiator_uses_the_key_of_the_id_it_expects() {
    // A initiates to B and expects `fqdn:b.example`, which has a key of its own at A.
    let mut a = config_a();
    a.psk = b"unrelated".to_vec();
    a.remote_id = Some(Identity::parse("fqdn:b.example").unwrap());
    a.remote_psks = vec![(Identity::parse("fqdn:b.example").unwrap(), KEY_A.to_vec())];
    let mut b = config_b();
    b.local_id = Some(Identity::parse("fqdn:b.example").unwrap());
    b.psk = KEY_A.to_vec();
    let mut p = Pair::new(a, b, 75);
    p.establish();
    p.teardown();
}

#[test]
fn debug_output_never_carries_a_key() {
    let text = format!("{:?}", responder());
    // The bytes as `Vec<u8>`'s Debug would print them, and as text.
    for key in [b"the default key".as_slice(), KEY_A] {
        let bytes = format!("{key:?}");
        assert!(!text.contains(&bytes[1..bytes.len() - 1]), "{text}");
        assert!(!text.contains(std::str::from_utf8(key).unwrap()), "{text}");
    }
    assert!(
        text.contains("a.example"),
        "the identities still show: {text}"
    );
    assert_eq!(text.matches("<redacted>").count(), 2, "{text}");
}
