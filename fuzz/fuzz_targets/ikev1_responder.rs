//! An IKEv1 responder fed arbitrary datagrams with a deterministic RNG: it must never panic,
//! never answer more than once per datagram, and keep its negotiating state bounded.
//! Input: a sequence of records `[advance_secs: u8][len: u16 be][datagram]`.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ike::Config;
use ike::v1::Peer;
use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use wire::ike::TrafficSelector;

fuzz_target!(|data: &[u8]| {
    let ts = |s: &str, e: &str| TrafficSelector::range(s.parse().unwrap(), e.parse().unwrap());
    let mut config = Config::new(
        b"fuzz",
        vec![ts("198.18.2.0", "198.18.2.255")],
        vec![ts("198.18.1.0", "198.18.1.255")],
    );
    config.ike = vec![ike::proposal::IkeProposal::parse("aes128-sha1-modp1024").unwrap()];
    config.esp = vec![ike::proposal::EspProposal::parse("aes128-sha1").unwrap()];
    let mut peer = Peer::new(config, Box::new(ChaCha20Rng::seed_from_u64(7)));
    let local: SocketAddr = "203.0.113.1:500".parse().unwrap();
    let remote: SocketAddr = "198.51.100.1:500".parse().unwrap();
    let mut now = Instant::now();
    let mut rest = data;
    while let Some((&[adv, hi, lo], tail)) = rest.split_first_chunk::<3>() {
        let len = usize::from(u16::from_be_bytes([hi, lo])).min(tail.len());
        let (datagram, tail) = tail.split_at(len);
        rest = tail;
        now += Duration::from_secs(u64::from(adv));
        if peer.poll_timeout().is_some_and(|t| t <= now) {
            peer.handle_timeout(now);
            while peer.poll_transmit().is_some() {}
        }
        let _ = peer.handle_datagram(now, local, remote, datagram);
        let mut sent = 0;
        while let Some(t) = peer.poll_transmit() {
            assert!(!t.payload.is_empty());
            sent += 1;
        }
        assert!(sent <= 1, "one datagram in, at most one out");
        while peer.poll_event().is_some() {}
        assert!(peer.half_open_count() <= 8, "half-open state is bounded");
        assert!(peer.quick_mode_count() <= 8, "quick mode state is bounded");
    }
});
