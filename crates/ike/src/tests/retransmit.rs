//! A retransmitted request is the very same datagram; one that only shares the SPIs and the
//! message ID is something else.

use super::*;

fn flip_last(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    *v.last_mut().unwrap() ^= 0x01;
    v
}

#[test]
fn sa_init_with_the_same_spi_but_other_bytes_is_a_new_request() {
    let mut p = Pair::default_pair(61);
    p.initiate();
    let (a, b, now) = (p.a.addr, p.b.addr, p.now);
    let init = p.a.peer.poll_transmit().unwrap();
    p.b.peer.handle_datagram(now, b, a, &init.payload).unwrap();
    let first = p.b.peer.poll_transmit().unwrap();
    // Same SPIi, same address, one byte different (here in the NAT detection hash).
    p.b.peer
        .handle_datagram(now, b, a, &flip_last(&init.payload))
        .unwrap();
    let second = p.b.peer.poll_transmit().unwrap();
    assert_ne!(first.payload[8..16], second.payload[8..16], "a fresh SPIr");
    assert_eq!(p.b.peer.half_open_count(), 1, "the superseded one is gone");
    // The true copy of the new request is answered from the cache.
    p.b.peer
        .handle_datagram(now, b, a, &flip_last(&init.payload))
        .unwrap();
    assert_eq!(p.b.peer.poll_transmit().unwrap().payload, second.payload);
    assert_eq!(p.b.peer.half_open_count(), 1);
}

#[test]
fn an_altered_copy_under_the_last_message_id_gets_no_answer() {
    let mut p = Pair::default_pair(62);
    p.initiate();
    let (a, b, now) = (p.a.addr, p.b.addr, p.now);
    let init = p.a.peer.poll_transmit().unwrap();
    p.b.peer.handle_datagram(now, b, a, &init.payload).unwrap();
    let r = p.b.peer.poll_transmit().unwrap();
    p.a.peer.handle_datagram(now, a, b, &r.payload).unwrap();
    let auth = p.a.peer.poll_transmit().unwrap();
    p.b.peer.handle_datagram(now, b, a, &auth.payload).unwrap();
    let answer = p.b.peer.poll_transmit().unwrap();
    assert!(
        p.b.peer
            .handle_datagram(now, b, a, &flip_last(&auth.payload))
            .is_err()
    );
    assert_eq!(
        p.b.peer.poll_transmit(),
        None,
        "no answer to an altered copy"
    );
    p.b.peer.handle_datagram(now, b, a, &auth.payload).unwrap();
    assert_eq!(p.b.peer.poll_transmit().unwrap().payload, answer.payload);
    assert_eq!(p.b.peer.child_sas().count(), 1);
}
