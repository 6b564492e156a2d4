//! Kernel path: the tc-BPF programs, run by the kernel on arbitrary frames
//! (`BPF_PROG_TEST_RUN`, as root), never fail to run and give one of their three verdicts;
//! on the way out they forward exactly what the userspace core forwards, with the same
//! outer bytes; on the way in a decapsulated packet is one well-formed inner packet.
//! Input: 1 byte choosing the configuration (bit 0: IPv4 path, bit 1: encapsulation limit,
//! bit 2: inherit the traffic class, bit 7: ingress), then the packet after the Ethernet
//! header (whose type follows the version nibble).
#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Instant;

use dataplane::{
    Batch, Dataplane, EncapLimit, Mode, MssClamp, PathConfig, Probe, TrafficClass, TunnelConfig,
    Verdict,
};
use kpath::{KernelPath, Spec};
use libfuzzer_sys::fuzz_target;

const OK: i32 = 0;
const SHOT: i32 = 2;
const UNSPEC: i32 = -1;

fn config(choice: u8) -> TunnelConfig {
    let mut c = TunnelConfig::new(
        "fuzz",
        Mode::Any,
        Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1),
        Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1),
    );
    if choice & 1 != 0 {
        c.paths = vec![PathConfig {
            probe: Probe::None,
            ..PathConfig::new("v4", Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2))
        }];
    }
    if choice & 2 != 0 {
        c.encap_limit = EncapLimit::Limit(4);
    }
    if choice & 4 != 0 {
        c.traffic_class = TrafficClass::Inherit;
    }
    c.mss_clamp = MssClamp::Off;
    c.mtu = 1400;
    c.routes = vec![
        "203.0.113.0/24".parse().unwrap(),
        "2001:db8:b::/48".parse().unwrap(),
    ];
    c.allowed_sources = c.routes.clone();
    c
}

/// Loading verifies the programs, which takes milliseconds: once per configuration.
static LOADED: Mutex<Vec<(u8, KernelPath)>> = Mutex::new(Vec::new());

fuzz_target!(|data: &[u8]| {
    let Some((&choice, packet)) = data.split_first() else {
        return;
    };
    if packet.len() > 1500 {
        return;
    }
    let key = choice & 7;
    let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    let ethertype: u16 = if packet.first().map(|b| b >> 4) == Some(6) { 0x86dd } else { 0x0800 };
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(packet);

    let mut loaded = LOADED.lock().unwrap();
    if !loaded.iter().any(|(k, _)| *k == key) {
        let Ok(kernel) = KernelPath::load(&Spec::from_config(&config(key))) else {
            return; // not root: nothing to run the programs on
        };
        loaded.push((key, kernel));
    }
    let kernel = &mut loaded.iter_mut().find(|(k, _)| *k == key).unwrap().1;

    if choice & 0x80 != 0 {
        let run = kernel.run_decap(&frame).expect("the decapsulation program runs");
        assert!([OK, SHOT, UNSPEC].contains(&run.retval));
        if run.retval == OK && run.data != frame {
            let inner = &run.data[14..];
            match inner[0] >> 4 {
                4 => {
                    let p = wire::Ipv4Packet::new_checked(inner).expect("inner IPv4");
                    assert!(p.verify_checksum());
                    assert_eq!(usize::from(p.total_len()), inner.len());
                }
                6 => {
                    let p = wire::Ipv6Packet::new_checked(inner).expect("inner IPv6");
                    assert_eq!(usize::from(p.payload_len()) + 40, inner.len());
                }
                v => panic!("decapsulated an IPv{v} packet"),
            }
        }
        return;
    }

    // The outer IPv4 identification counts per loaded program: a fresh core per input would
    // disagree with it, so only IPv6 paths are compared byte for byte.
    let run = kernel.run_encap(&frame).expect("the encapsulation program runs");
    let mut core = Dataplane::new();
    let id = core.add_tunnel(config(key)).unwrap();
    let mut out = Batch::new(4096);
    let verdict = core.handle_inner(Instant::now(), id, &mut packet.to_vec(), &mut out);
    if verdict == Verdict::Forwarded {
        assert_eq!(run.retval, OK);
        let (_, outer) = out.get(0).unwrap();
        if key & 1 == 0 {
            assert_eq!(&run.data[14..], outer);
        } else {
            // All but the identification and the header checksum that covers it.
            let ours = &run.data[14..];
            assert_eq!(ours.len(), outer.len());
            assert_eq!((&ours[..4], &ours[6..10]), (&outer[..4], &outer[6..10]));
            assert_eq!(ours[12..], outer[12..]);
        }
    } else {
        assert_eq!(run.retval, UNSPEC);
        assert_eq!(run.data, frame);
    }
});
