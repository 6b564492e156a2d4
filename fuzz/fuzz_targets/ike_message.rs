//! IKEv2 messages: whatever parses survives emit -> parse with the same header and payloads,
//! and a plaintext payload chain round-trips the same way.
//! Input: an IKE message (header and payload chain).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::ike::{Message, emit_payloads, parse_payloads, payload_type};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        if m.encrypted.is_none() {
            let bytes = Message::emit_plain(&m.header, &m.payloads);
            let again = Message::parse(&bytes).expect("emitted message parses");
            assert_eq!(again.payloads, m.payloads);
            assert_eq!(again.header.initiator_spi, m.header.initiator_spi);
            assert_eq!(again.header.message_id, m.header.message_id);
            assert_eq!(again.header.exchange_type, m.header.exchange_type);
        }
    }
    // The same bytes as a decrypted SK body starting with an SA payload.
    if let Ok(p) = parse_payloads(payload_type::SA, data) {
        let mut out = Vec::new();
        let first = emit_payloads(&p, &mut out);
        assert_eq!(parse_payloads(first, &out).expect("emitted chain parses"), p);
    }
});
