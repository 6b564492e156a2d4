use hex_literal::hex;
use proptest::prelude::*;

use super::*;

// Built with scapy's ISAKMP layer (an independent encoder): main mode message 1 offering
// AES-128/SHA-1/PSK/MODP-1024 for 28800 s, the S3 suite.
const MM1_S3: [u8; 84] = hex!(
    "0102030405060708000000000000000001100200000000000000005400000038"
    "00000001000000010000002c01010001000000240101000080010007800e0080"
    "800200028003000180040002800b0001800c7080"
);

// scapy again: AES-256/SHA2-256/MODP-2048 for 86400 s, whose duration no longer fits a basic
// attribute and travels as a 3-byte variable one.
const MM1_MODERN: [u8; 87] = hex!(
    "010203040506070800000000000000000110020000000000000000570000003b"
    "00000001000000010000002f01010001000000270101000080010007800e0100"
    "80020004800300018004000e800b0001000c0003015180"
);

// scapy: main mode message 3's shape, KE + Nonce + the RFC 3706 DPD vendor ID.
const MM3: [u8; 80] = hex!(
    "010203040506070811121314151617180410020000000000000000500a00000c"
    "aaaaaaaaaaaaaaaa0d000014bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb00000014"
    "afcad71368a1f1c96b8696fc77570100"
);

fn proposal_of(bytes: &[u8]) -> (Message<'_>, Sa) {
    let m = Message::parse(bytes).unwrap();
    let p = parse_payloads(m.header.next_payload, m.body).unwrap();
    assert_eq!(p.len(), 1);
    let Payload::Sa(sa) = p[0].payload.clone() else {
        panic!("not an SA: {p:?}")
    };
    (m, sa)
}

#[test]
fn parses_scapy_main_mode_sa_offers() {
    let (m, sa) = proposal_of(&MM1_S3);
    assert_eq!(m.header.initiator_cookie, 0x0102_0304_0506_0708);
    assert_eq!(m.header.responder_cookie, 0);
    assert_eq!(m.header.exchange_type, exchange::MAIN_MODE);
    assert!(!m.header.is_encrypted());
    assert_eq!((sa.doi, sa.situation), (DOI_IPSEC, SIT_IDENTITY_ONLY));
    let t = &sa.proposals[0].transforms[0];
    assert_eq!(sa.proposals[0].protocol, protocol::ISAKMP);
    assert_eq!(t.id, attr::KEY_IKE);
    assert_eq!(t.attribute(attr::ENCRYPTION), Some(7));
    assert_eq!(t.attribute(attr::KEY_LENGTH), Some(128));
    assert_eq!(t.attribute(attr::HASH), Some(2));
    assert_eq!(t.attribute(attr::AUTH_METHOD), Some(1));
    assert_eq!(t.attribute(attr::GROUP), Some(2));
    assert_eq!(t.attribute(attr::LIFE_DURATION), Some(28800));

    let (_, sa) = proposal_of(&MM1_MODERN);
    let t = &sa.proposals[0].transforms[0];
    assert_eq!(t.attribute(attr::KEY_LENGTH), Some(256));
    assert_eq!(t.attribute(attr::HASH), Some(4));
    assert_eq!(t.attribute(attr::GROUP), Some(14));
    assert_eq!(t.attribute(attr::LIFE_DURATION), Some(86400));
}

#[test]
fn emits_what_scapy_emits() {
    let (m, sa) = proposal_of(&MM1_S3);
    let mut body = Vec::new();
    let first = emit_payloads(&[Payload::Sa(sa)], &mut body);
    assert_eq!(first, payload_type::SA);
    let mut junk = [0xa5u8; HEADER_LEN];
    m.header.emit(&mut Header::new_unchecked(&mut junk[..]));
    assert_eq!(&junk[..], &MM1_S3[..HEADER_LEN]);
    assert_eq!(m.header.emit_message(&body), MM1_S3);
}

#[test]
fn chain_with_vendor_ids_and_spans() {
    let m = Message::parse(&MM3).unwrap();
    let p = parse_payloads(m.header.next_payload, m.body).unwrap();
    assert_eq!(p[0].payload, Payload::Ke(vec![0xaa; 8]));
    assert_eq!(p[1].payload, Payload::Nonce(vec![0xbb; 16]));
    assert_eq!(p[2].payload, Payload::Vendor(vendor::DPD.to_vec()));
    assert_eq!(p[0].span, 0..12);
    assert_eq!(p[1].span, 12..32);
    assert_eq!(p[2].span, 32..52);
    let mut out = Vec::new();
    emit_payloads(
        &p.iter().map(|x| x.payload.clone()).collect::<Vec<_>>(),
        &mut out,
    );
    assert_eq!(out, m.body);
}

#[test]
fn id_payload_matches_scapy() {
    let id = Payload::Id(Id {
        id_type: id_type::FQDN,
        protocol: 17,
        port: 500,
        data: b"a.example".to_vec(),
    });
    let mut out = Vec::new();
    emit_payloads(core::slice::from_ref(&id), &mut out);
    assert_eq!(out, hex!("00000011021101f4612e6578616d706c65"));
    assert_eq!(
        parse_payloads(payload_type::ID, &out).unwrap()[0].payload,
        id
    );
}

#[test]
fn padding_after_the_chain_is_ignored() {
    let mut body = MM3[HEADER_LEN..].to_vec();
    body.extend_from_slice(&[0, 0, 0, 3]);
    assert_eq!(parse_payloads(payload_type::KE, &body).unwrap().len(), 3);
}

#[test]
fn rejects_malformed_input_with_typed_errors() {
    assert_eq!(Message::parse(&MM1_S3[..20]), Err(Error::Truncated));
    assert_eq!(Message::parse(&MM1_S3[..80]), Err(Error::Truncated));
    let mut v2 = MM1_S3;
    v2[17] = 0x20;
    assert_eq!(Message::parse(&v2), Err(Error::BadVersion(2)));
    let body = &MM1_S3[HEADER_LEN..];
    // Payload length shorter than its header, and longer than the buffer.
    let mut b = body.to_vec();
    b[3] = 2;
    assert_eq!(parse_payloads(1, &b), Err(Error::BadLength));
    let mut b = body.to_vec();
    b[3] = 0xff;
    assert_eq!(parse_payloads(1, &b), Err(Error::Truncated));
    // Transform count that disagrees with the transforms present.
    let mut b = body.to_vec();
    b[19] = 2;
    assert_eq!(
        parse_payloads(1, &b),
        Err(Error::BadPayload(payload_type::PROPOSAL))
    );
    // A variable attribute overrunning its transform.
    let mut b = MM1_MODERN[HEADER_LEN..].to_vec();
    b[54] = 0x10;
    assert!(parse_payloads(1, &b).is_err());
    // A proposal at the top level.
    assert_eq!(
        parse_payloads(payload_type::PROPOSAL, &body[12..]),
        Err(Error::Misplaced(payload_type::PROPOSAL))
    );
    // Delete with SPI count and size that disagree with the body.
    let d = hex!("00000012 00000001 03 04 0002 11223344 5566");
    assert_eq!(
        parse_payloads(payload_type::DELETE, &d),
        Err(Error::BadPayload(payload_type::DELETE))
    );
    // A chain of empty payloads longer than any message needs.
    let empties: Vec<u8> = (0..=MAX_PAYLOADS).flat_map(|_| [13u8, 0, 0, 4]).collect();
    assert!(parse_payloads(13, &empties).is_err());
}

#[test]
fn notify_delete_nat_payloads_round_trip() {
    let payloads = vec![
        Payload::Hash(vec![1; 20]),
        Payload::Notify(Notify {
            doi: DOI_IPSEC,
            protocol: protocol::ISAKMP,
            notify_type: notify::R_U_THERE,
            spi: vec![9; 16],
            data: 7u32.to_be_bytes().to_vec(),
        }),
        Payload::Delete(Delete {
            doi: DOI_IPSEC,
            protocol: protocol::ESP,
            spi_size: 4,
            spis: vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]],
        }),
        Payload::NatD(vec![3; 20]),
        Payload::NatOa(NatOa {
            addr: "198.51.100.7".parse().unwrap(),
        }),
        Payload::NatOa(NatOa {
            addr: "2001:db8::7".parse().unwrap(),
        }),
    ];
    let mut out = Vec::new();
    let first = emit_payloads(&payloads, &mut out);
    let back: Vec<Payload> = parse_payloads(first, &out)
        .unwrap()
        .into_iter()
        .map(|p| p.payload)
        .collect();
    assert_eq!(back, payloads);
    // The R-U-THERE notify as RFC 3706 §5 lays it out.
    let mut n = Vec::new();
    payloads[1].emit_body(&mut n);
    assert_eq!(&n[..8], &hex!("00000001 01 10 8d28"));
}

#[test]
fn large_life_durations_travel_as_variable_attributes() {
    assert_eq!(
        Attribute::integer(attr::LIFE_DURATION, 28800),
        Attribute::Basic {
            kind: attr::LIFE_DURATION,
            value: 28800
        }
    );
    let a = Attribute::integer(attr::LIFE_DURATION, 86400);
    assert_eq!(a.value(), Some(86400));
    assert!(matches!(a, Attribute::Variable { ref value, .. } if value.len() == 4));
}

fn any_payload() -> impl Strategy<Value = Payload> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..40);
    let attr = prop_oneof![
        (0u16..0x8000, any::<u16>()).prop_map(|(kind, value)| Attribute::Basic { kind, value }),
        (0u16..0x8000, bytes()).prop_map(|(kind, value)| Attribute::Variable { kind, value }),
    ];
    let transform = (
        any::<u8>(),
        any::<u8>(),
        proptest::collection::vec(attr, 0..5),
    )
        .prop_map(|(number, id, attributes)| Transform {
            number,
            id,
            attributes,
        });
    let proposal = (
        any::<u8>(),
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..9),
        proptest::collection::vec(transform, 0..4),
    )
        .prop_map(|(number, protocol, spi, transforms)| Proposal {
            number,
            protocol,
            spi,
            transforms,
        });
    prop_oneof![
        (
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec(proposal, 0..3)
        )
            .prop_map(|(doi, situation, proposals)| Payload::Sa(Sa {
                doi,
                situation,
                proposals
            })),
        bytes().prop_map(Payload::Ke),
        bytes().prop_map(Payload::Nonce),
        bytes().prop_map(Payload::Hash),
        bytes().prop_map(Payload::Vendor),
        (any::<u8>(), any::<u8>(), any::<u16>(), bytes()).prop_map(
            |(id_type, protocol, port, data)| Payload::Id(Id {
                id_type,
                protocol,
                port,
                data
            })
        ),
        (any::<u8>(), any::<u16>(), bytes(), bytes()).prop_map(
            |(protocol, notify_type, spi, data)| Payload::Notify(Notify {
                doi: DOI_IPSEC,
                protocol,
                notify_type,
                spi,
                data
            })
        ),
        (1u8..17, 0usize..4).prop_map(|(size, n)| Payload::Delete(Delete {
            doi: DOI_IPSEC,
            protocol: protocol::ESP,
            spi_size: size,
            spis: (0..n).map(|i| vec![i as u8; usize::from(size)]).collect(),
        })),
    ]
}

proptest! {
    #[test]
    fn chains_round_trip(payloads in proptest::collection::vec(any_payload(), 0..6)) {
        let mut out = Vec::new();
        let first = emit_payloads(&payloads, &mut out);
        let back: Vec<Payload> =
            parse_payloads(first, &out).unwrap().into_iter().map(|p| p.payload).collect();
        prop_assert_eq!(back, payloads);
    }

    #[test]
    fn arbitrary_bytes_never_panic(first in 0u8..25, bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_payloads(first, &bytes);
        let _ = Message::parse(&bytes);
    }
}
