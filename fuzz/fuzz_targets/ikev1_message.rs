//! ISAKMP (IKEv1) messages: whatever parses survives emit -> parse with the same header and
//! payloads, and a payload chain round-trips the same way.
//! Input: an ISAKMP message (header and payload chain).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::ikev1::{Message, Payload, emit_payloads, parse_payloads, payload_type};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        if !m.header.is_encrypted()
            && let Ok(p) = parse_payloads(m.header.next_payload, m.body)
        {
            let payloads: Vec<Payload> = p.into_iter().map(|x| x.payload).collect();
            let mut body = Vec::new();
            let first = emit_payloads(&payloads, &mut body);
            let mut header = m.header;
            header.next_payload = first;
            let bytes = header.emit_message(&body);
            let again = Message::parse(&bytes).expect("emitted message parses");
            assert_eq!(again.header.initiator_cookie, m.header.initiator_cookie);
            assert_eq!(again.header.message_id, m.header.message_id);
            let back: Vec<Payload> = parse_payloads(again.header.next_payload, again.body)
                .expect("emitted chain parses")
                .into_iter()
                .map(|x| x.payload)
                .collect();
            assert_eq!(back, payloads);
        }
    }
    // The same bytes as a decrypted body starting with a HASH payload (quick mode, informational).
    if let Ok(p) = parse_payloads(payload_type::HASH, data) {
        let payloads: Vec<Payload> = p.into_iter().map(|x| x.payload).collect();
        let mut out = Vec::new();
        let first = emit_payloads(&payloads, &mut out);
        let back: Vec<Payload> = parse_payloads(first, &out)
            .expect("emitted chain parses")
            .into_iter()
            .map(|x| x.payload)
            .collect();
        assert_eq!(back, payloads);
    }
});
