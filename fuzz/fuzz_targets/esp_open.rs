//! ESP: arbitrary packets never open under a fixed key (and never panic), and arbitrary
//! payloads sealed by one SA open unchanged with its peer.
//! Input: 1 byte suite selector, 1 byte next header, then bytes used as packet and payload.
#![no_main]

use dataplane::esp::{InboundSa, Integrity, OutboundSa, Suite};
use libfuzzer_sys::fuzz_target;

const SUITES: [Suite; 5] = [
    Suite::AesGcm16 { key_bits: 128 },
    Suite::AesGcm16 { key_bits: 256 },
    Suite::AesCbc { key_bits: 128, integrity: Integrity::HmacSha1_96 },
    Suite::AesCbc { key_bits: 256, integrity: Integrity::HmacSha256_128 },
    Suite::TripleDesCbc { integrity: Integrity::HmacSha1_96 },
];

fuzz_target!(|data: &[u8]| {
    let Some((&[sel, nh], body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let suite = SUITES[usize::from(sel) % SUITES.len()];
    let esn = sel & 0x80 != 0;
    let encr = vec![0x42; suite.encr_key_len()];
    let integ = vec![0x24; suite.integ_key_len()];
    let spi = body
        .first_chunk::<4>()
        .map_or(0x1000, |b| u32::from_be_bytes(*b).max(256));

    let mut rx = InboundSa::new(spi, suite, &encr, &integ, esn).unwrap();
    let mut out = vec![0u8; body.len() + 64];
    assert!(rx.open(body, &mut out).is_err(), "a forged packet opened");

    let mut tx = OutboundSa::new(spi, suite, &encr, &integ, esn).unwrap();
    let mut packet = vec![0u8; tx.sealed_len(body.len())];
    let n = tx.seal(nh, body, &mut packet).unwrap();
    let opened = rx.open(&packet[..n], &mut out).unwrap();
    assert_eq!(opened.payload, body);
    assert_eq!(opened.next_header, nh);
    assert!(rx.open(&packet[..n], &mut out).is_err(), "replay accepted");
});
