use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hex_literal::hex;
use proptest::prelude::*;

use super::*;

/// IKE_SA_INIT request: SA (AES-GCM-16/128, PRF-HMAC-SHA2-256, DH 19) and a 16-byte nonce,
/// written out by hand from RFC 7296 §3.1-§3.3.
const SA_INIT: [u8; 88] = hex!(
    "0102030405060708 0000000000000000 21 20 22 08 00000000 00000058"
    "28 00 0028"
    "00 00 0024 01 01 00 03"
    "03 00 000c 01 00 0014 800e 0080"
    "03 00 0008 02 00 0005"
    "00 00 0008 04 00 0013"
    "00 00 0014 11111111111111111111111111111111"
);

fn sa_init_repr() -> (HeaderRepr, Vec<Payload>) {
    let header = HeaderRepr {
        initiator_spi: 0x0102_0304_0506_0708,
        responder_spi: 0,
        next_payload: payload_type::SA,
        exchange_type: exchange::IKE_SA_INIT,
        flags: flags::INITIATOR,
        message_id: 0,
        length: 88,
    };
    let payloads = vec![
        Payload::Sa(vec![Proposal {
            number: 1,
            protocol: protocol::IKE,
            spi: vec![],
            transforms: vec![
                Transform::with_key_length(transform::ENCR, transform::ENCR_AES_GCM_16, 128),
                Transform::new(transform::PRF, transform::PRF_HMAC_SHA2_256),
                Transform::new(transform::DH, transform::DH_ECP256),
            ],
        }]),
        Payload::Nonce(vec![0x11; 16]),
    ];
    (header, payloads)
}

#[test]
fn parses_known_sa_init() {
    let m = Message::parse(&SA_INIT).unwrap();
    let (header, payloads) = sa_init_repr();
    assert_eq!(m.header, header);
    assert_eq!(m.payloads, payloads);
    assert!(m.encrypted.is_none());
    let Payload::Sa(p) = &m.payloads[0] else {
        panic!("first payload is not SA")
    };
    assert_eq!(p[0].transforms[0].key_length(), Some(128));
    assert_eq!(p[0].transforms[1].key_length(), None);
}

#[test]
fn emits_known_sa_init() {
    let (header, payloads) = sa_init_repr();
    assert_eq!(Message::emit_plain(&header, &payloads), SA_INIT);
}

#[test]
fn header_view_fields_and_setters() {
    let h = Header::new_checked(&SA_INIT[..]).unwrap();
    assert_eq!(h.major_version(), 2);
    assert_eq!(h.minor_version(), 0);
    assert!(h.is_initiator());
    assert!(!h.is_response());
    assert_eq!(h.payload().len(), 60);

    let mut buf = [0xa5u8; HEADER_LEN];
    let (repr, _) = sa_init_repr();
    repr.emit(&mut Header::new_unchecked(&mut buf[..]));
    assert_eq!(buf, SA_INIT[..HEADER_LEN]);
}

#[test]
fn every_truncation_is_rejected() {
    for n in 0..SA_INIT.len() {
        assert!(Message::parse(&SA_INIT[..n]).is_err(), "prefix {n} parsed");
    }
}

#[test]
fn trailing_bytes_after_message_are_ignored() {
    let mut v = SA_INIT.to_vec();
    v.extend_from_slice(&[0xa5; 7]);
    assert_eq!(Message::parse(&v).unwrap().payloads, sa_init_repr().1);
}

#[test]
fn rejects_other_major_versions() {
    let mut v = SA_INIT;
    v[17] = 0x30;
    assert_eq!(Message::parse(&v), Err(Error::BadVersion(3)));
    assert_eq!(
        Error::BadVersion(3).notify_type(),
        notify::INVALID_MAJOR_VERSION
    );
    // Minor version differences are ignored (§2.5).
    v[17] = 0x21;
    assert!(Message::parse(&v).is_ok());
}

#[test]
fn rejects_bad_payload_lengths() {
    // Payload length shorter than its own header.
    let mut v = SA_INIT;
    v[30..32].copy_from_slice(&[0, 3]);
    assert!(Message::parse(&v).is_err());
    // Proposal length overrunning the SA payload.
    let mut v = SA_INIT;
    v[34..36].copy_from_slice(&[0, 0x40]);
    assert!(Message::parse(&v).is_err());
    // Transform "more" marker wrong on the last transform.
    let mut v = SA_INIT;
    v[60] = 3;
    assert!(Message::parse(&v).is_err());
    // Message length shorter than the chain: bytes left over.
    let mut v = SA_INIT;
    v[27] = 0x50;
    assert!(Message::parse(&v[..0x50]).is_err());
}

fn with_extra_payload(kind: u8, critical: bool) -> Vec<u8> {
    // Nonce now points at an extra payload appended at the end.
    let mut v = SA_INIT.to_vec();
    v[68] = kind;
    v.extend_from_slice(&[0, if critical { CRITICAL } else { 0 }, 0, 6, 0xde, 0xad]);
    let len = u32::try_from(v.len()).unwrap();
    v[24..28].copy_from_slice(&len.to_be_bytes());
    v
}

#[test]
fn unknown_noncritical_payload_is_skipped() {
    let m = Message::parse(&with_extra_payload(200, false)).unwrap();
    assert_eq!(m.payloads, sa_init_repr().1);
}

#[test]
fn unknown_critical_payload_is_rejected_with_its_type() {
    let e = Message::parse(&with_extra_payload(200, true)).unwrap_err();
    assert_eq!(e, Error::UnsupportedCritical(200));
    assert_eq!(e.notify_type(), notify::UNSUPPORTED_CRITICAL_PAYLOAD);
}

#[test]
fn known_uninterpreted_payload_is_kept() {
    let m = Message::parse(&with_extra_payload(payload_type::CP, false)).unwrap();
    assert_eq!(
        m.payloads.last(),
        Some(&Payload::Other {
            kind: payload_type::CP,
            data: vec![0xde, 0xad]
        })
    );
}

#[test]
fn encrypted_payload_is_split_off() {
    let header = HeaderRepr {
        initiator_spi: 1,
        responder_spi: 2,
        next_payload: 0,
        exchange_type: exchange::IKE_AUTH,
        flags: flags::INITIATOR,
        message_id: 1,
        length: 0,
    };
    let mut out = vec![0u8; HEADER_LEN];
    Payload::Vendor(b"v6gate".to_vec()).emit_body(&mut Vec::new());
    // V payload then SK.
    let v_start = out.len();
    out.extend_from_slice(&[payload_type::SK, 0, 0, 10]);
    out.extend_from_slice(b"v6gate");
    let sk = emit_encrypted_header(payload_type::IDI, 5, &mut out);
    out.extend_from_slice(&[1, 2, 3, 4, 5]);
    finish_header(&header, payload_type::VENDOR, &mut out);
    assert_eq!(v_start, HEADER_LEN);

    let m = Message::parse(&out).unwrap();
    assert_eq!(m.payloads, vec![Payload::Vendor(b"v6gate".to_vec())]);
    let enc = m.encrypted.unwrap();
    assert_eq!(enc.first_payload, payload_type::IDI);
    assert_eq!(enc.offset, sk);
    assert_eq!(enc.body, vec![1, 2, 3, 4, 5]);

    // Anything after SK is malformed.
    out.extend_from_slice(&[0, 0, 0, 4]);
    let len = u32::try_from(out.len()).unwrap();
    out[24..28].copy_from_slice(&len.to_be_bytes());
    assert_eq!(Message::parse(&out), Err(Error::MisplacedEncrypted));
}

#[test]
fn known_notify_delete_and_selectors() {
    // N(NAT_DETECTION_SOURCE_IP) with a 20-byte hash; D(ESP, 2 SPIs); TSi with one IPv4 range.
    let chain = hex!(
        "2a 00 001c 00 00 4004 0000000000000000000000000000000000000000"
        "2c 00 0010 03 04 0002 c0000001 c0000002"
        "00 00 0018 01 000000 07 11 0010 0000 ffff c6336400 c63364ff"
    );
    let p = parse_payloads(payload_type::NOTIFY, &chain).unwrap();
    assert_eq!(
        p,
        vec![
            Payload::Notify(Notify::new(notify::NAT_DETECTION_SOURCE_IP, vec![0; 20])),
            Payload::Delete(Delete {
                protocol: protocol::ESP,
                spis: vec![0xc000_0001, 0xc000_0002]
            }),
            Payload::TsI(vec![TrafficSelector {
                ip_protocol: 17,
                start_port: 0,
                end_port: 0xffff,
                start_addr: Ipv4Addr::new(198, 51, 100, 0).into(),
                end_addr: Ipv4Addr::new(198, 51, 100, 255).into(),
            }])
        ]
    );
    let mut out = Vec::new();
    assert_eq!(emit_payloads(&p, &mut out), payload_type::NOTIFY);
    assert_eq!(out, chain);
    for n in 0..chain.len() {
        assert!(
            parse_payloads(payload_type::NOTIFY, &chain[..n]).is_err(),
            "prefix {n}"
        );
    }
}

#[test]
fn rejects_bad_selector_and_nonce() {
    // Selector type 9 (unknown) and a 15-byte nonce.
    let ts = hex!("00 00 0018 01 000000 09 00 0010 0000 ffff 00000000 ffffffff");
    assert_eq!(
        parse_payloads(payload_type::TSR, &ts),
        Err(Error::BadPayload(payload_type::TSR))
    );
    let n = hex!("00 00 0013 000000000000000000000000000000");
    assert_eq!(
        parse_payloads(payload_type::NONCE, &n),
        Err(Error::BadPayload(payload_type::NONCE))
    );
}

#[test]
fn id_display() {
    let id = Id {
        id_type: id_type::FQDN,
        data: b"gw.example".to_vec(),
    };
    assert_eq!(id.to_string(), "fqdn:gw.example");
    let id = Id {
        id_type: id_type::IPV6_ADDR,
        data: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)
            .octets()
            .to_vec(),
    };
    assert_eq!(id.to_string(), "2001:db8::1");
    assert_eq!(id.body()[..4], [5, 0, 0, 0]);
}

fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn arb_addr_pair() -> impl Strategy<Value = (IpAddr, IpAddr)> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<[u8; 4]>()).prop_map(|(a, b)| (a.into(), b.into())),
        (any::<[u8; 16]>(), any::<[u8; 16]>()).prop_map(|(a, b)| (a.into(), b.into())),
    ]
}

fn arb_ts() -> impl Strategy<Value = TrafficSelector> {
    (arb_addr_pair(), any::<u8>(), any::<u16>(), any::<u16>()).prop_map(|((s, e), p, a, b)| {
        TrafficSelector {
            ip_protocol: p,
            start_port: a,
            end_port: b,
            start_addr: s,
            end_addr: e,
        }
    })
}

fn arb_attribute() -> impl Strategy<Value = Attribute> {
    prop_oneof![
        (0u16..0x8000, any::<u16>()).prop_map(|(kind, value)| Attribute::Tv { kind, value }),
        (0u16..0x8000, arb_bytes(8)).prop_map(|(kind, value)| Attribute::Tlv { kind, value }),
    ]
}

fn arb_transform() -> impl Strategy<Value = Transform> {
    (
        any::<u8>(),
        any::<u16>(),
        proptest::collection::vec(arb_attribute(), 0..3),
    )
        .prop_map(|(kind, id, attributes)| Transform {
            kind,
            id,
            attributes,
        })
}

fn arb_proposal() -> impl Strategy<Value = Proposal> {
    (
        any::<u8>(),
        any::<u8>(),
        arb_bytes(9),
        proptest::collection::vec(arb_transform(), 0..6),
    )
        .prop_map(|(number, protocol, spi, transforms)| Proposal {
            number,
            protocol,
            spi,
            transforms,
        })
}

fn arb_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        proptest::collection::vec(arb_proposal(), 1..4).prop_map(Payload::Sa),
        (any::<u16>(), arb_bytes(64)).prop_map(|(group, data)| Payload::Ke(Ke { group, data })),
        (any::<u8>(), arb_bytes(32)).prop_map(|(id_type, data)| Payload::IdI(Id { id_type, data })),
        (any::<u8>(), arb_bytes(32)).prop_map(|(id_type, data)| Payload::IdR(Id { id_type, data })),
        (any::<u8>(), arb_bytes(48)).prop_map(|(method, data)| Payload::Auth { method, data }),
        proptest::collection::vec(any::<u8>(), 16..=256).prop_map(Payload::Nonce),
        (any::<u8>(), arb_bytes(9), any::<u16>(), arb_bytes(24)).prop_map(
            |(protocol, spi, notify_type, data)| Payload::Notify(Notify {
                protocol,
                spi,
                notify_type,
                data
            })
        ),
        (any::<u8>(), proptest::collection::vec(any::<u32>(), 0..5))
            .prop_map(|(protocol, spis)| Payload::Delete(Delete { protocol, spis })),
        arb_bytes(20).prop_map(Payload::Vendor),
        proptest::collection::vec(arb_ts(), 0..4).prop_map(Payload::TsI),
        proptest::collection::vec(arb_ts(), 0..4).prop_map(Payload::TsR),
        (any::<u8>(), arb_bytes(40))
            .prop_map(|(encoding, data)| Payload::CertReq { encoding, data }),
        (
            prop_oneof![
                Just(payload_type::CERT),
                Just(payload_type::CP),
                Just(payload_type::EAP)
            ],
            arb_bytes(20)
        )
            .prop_map(|(kind, data)| Payload::Other { kind, data }),
    ]
}

proptest! {
    #[test]
    fn message_round_trip(
        payloads in proptest::collection::vec(arb_payload(), 0..6),
        spi_i in any::<u64>(), spi_r in any::<u64>(), mid in any::<u32>(), exch in any::<u8>(),
        fl in any::<u8>(),
    ) {
        let header = HeaderRepr {
            initiator_spi: spi_i,
            responder_spi: spi_r,
            next_payload: 0,
            exchange_type: exch,
            flags: fl,
            message_id: mid,
            length: 0,
        };
        let bytes = Message::emit_plain(&header, &payloads);
        let m = Message::parse(&bytes).unwrap();
        prop_assert_eq!(&m.payloads, &payloads);
        prop_assert_eq!(m.header.initiator_spi, spi_i);
        prop_assert_eq!(m.header.message_id, mid);
        prop_assert_eq!(m.header.length as usize, bytes.len());
        for n in 0..bytes.len() {
            prop_assert!(Message::parse(&bytes[..n]).is_err());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in arb_bytes(200)) {
        let _ = Message::parse(&bytes);
        let _ = parse_payloads(payload_type::SA, &bytes);
        let _ = parse_payloads(payload_type::TSI, &bytes);
    }
}
