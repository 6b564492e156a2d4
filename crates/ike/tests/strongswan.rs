//! Interoperability with strongSwan's charon over real UDP, inside network namespaces.
//!
//! Needs root, iproute2 and strongSwan (`/usr/lib/ipsec/charon`, `swanctl`); run with
//! `cargo test -p ike --features interop --test strongswan -- --ignored --nocapture`.
//!
//! The test builds two namespaces joined by a veth pair (198.51.100.0/24), starts charon as
//! the responder in one, and re-runs this test binary inside the other as the initiator: a
//! [`Peer`] on UDP 500/4500 with ESP sealed and opened by the dataplane's SAs. charon is told
//! to force UDP encapsulation and to do ESP in userspace (kernel-libipsec, so the kernel needs
//! no XFRM support): it decrypts our ESP-in-UDP, its namespace answers a ping to 198.18.2.1,
//! and the reply comes back encrypted. The echo reply only arrives if IKE, key derivation and
//! ESP all agree byte for byte. Each suite is pinged after establishment, after a CHILD SA
//! rekey (with PFS where the ESP proposal names a group), and after an IKE SA rekey followed
//! by another CHILD rekey, then deleted. Namespaces, config files and charon are
//! removed by a drop guard, also on panic.

#![cfg(feature = "interop")]

mod charon;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use charon::*;
use dataplane::esp::{InboundSa, OutboundSa};
use ike::proposal::{EspProposal, IkeProposal};
use ike::{ChildSaInfo, Config, Event, Peer};
use rand_core::OsRng;
use wire::ike::TrafficSelector;

const ROLE: &str = "V6GATE_IKE_INTEROP_ROLE";
const SUITE: &str = "V6GATE_IKE_INTEROP_SUITE";

/// (our IKE proposal, charon's IKE proposal, ESP proposal), in the syntax both share. The
/// last one lists the groups in opposite orders, so whichever side responds answers the
/// other's first KE with INVALID_KE_PAYLOAD.
const SUITES: [(&str, &str, &str); 6] = [
    (
        "aes128gcm16-prfsha256-ecp256",
        "aes128gcm16-prfsha256-ecp256",
        "aes128gcm16",
    ),
    (
        "aes256gcm16-prfsha384-ecp384",
        "aes256gcm16-prfsha384-ecp384",
        "aes256gcm16",
    ),
    (
        "aes256-sha256-modp2048",
        "aes256-sha256-modp2048",
        "aes256-sha256",
    ),
    (
        "aes128-sha1-modp1024",
        "aes128-sha1-modp1024",
        "aes128-sha1",
    ),
    (
        "aes128gcm16-prfsha256-x25519",
        "aes128gcm16-prfsha256-x25519",
        "aes128gcm16-ecp256",
    ),
    (
        "aes128gcm16-prfsha256-ecp256-ecp384",
        "aes128gcm16-prfsha256-ecp384-ecp256",
        "aes128gcm16",
    ),
];

#[test]
#[ignore = "needs root, iproute2 and strongSwan; see the module documentation"]
fn strongswan_interop() {
    if let Ok(role) = std::env::var(ROLE) {
        let idx: usize = std::env::var(SUITE).unwrap().parse().unwrap();
        let (ike, _, esp) = SUITES[idx];
        match role.as_str() {
            "initiator" => initiator(ike, esp),
            "responder" => responder(ike, esp),
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let lab = Lab::new("v6gike");
    for (i, (ike, theirs, esp)) in SUITES.iter().enumerate() {
        lab.configure(theirs, esp);
        let out = Command::new("ip")
            .args(["netns", "exec", &lab.ns_a])
            .arg(std::env::current_exe().unwrap())
            .args(["strongswan_interop", "--exact", "--ignored", "--nocapture"])
            .env(ROLE, "initiator")
            .env(SUITE, i.to_string())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "suite {ike} / {esp} failed:\n{stdout}\n{stderr}\n--- charon log ---\n{}",
            lab.log_tail()
        );
        assert_eq!(
            stdout.matches("echo reply").count(),
            3,
            "{ike} / {esp}: pings missing:\n{stdout}"
        );
        if ike != theirs {
            // charon prefers its own first group and answered our KE with INVALID_KE_PAYLOAD.
            assert!(
                stdout.contains("dh: Ecp384"),
                "no retry with charon's group:\n{stdout}"
            );
        }
        println!("{ike} / {esp}: we initiate: ok");
        lab.charon_initiates(i);
        println!("{ike} / {esp}: charon initiates: ok");
    }
}

impl Lab {
    fn configure(&self, ike: &str, esp: &str) {
        let conf = format!(
            "connections {{\n  v6gate {{\n    version = 2\n    local_addrs = {THEM}\n    remote_addrs = {US}\n    proposals = {ike}\n    encap = yes\n    local {{\n      auth = psk\n      id = fqdn:b.example\n    }}\n    remote {{\n      auth = psk\n      id = fqdn:a.example\n    }}\n    children {{\n      net {{\n        local_ts = 198.18.2.0/24\n        remote_ts = 198.18.1.0/24\n        esp_proposals = {esp}\n        mode = tunnel\n      }}\n    }}\n  }}\n}}\nsecrets {{\n  ike-1 {{\n    id-a = fqdn:a.example\n    id-b = fqdn:b.example\n    secret = \"{PSK}\"\n  }}\n}}\n"
        );
        fs::write(self.etc.join("swanctl/conf.d/v6gate.conf"), conf).unwrap();
        let uri = format!("unix://{}/charon.vici", self.dir.display());
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns_b,
                "swanctl",
                "--load-all",
                "--clear",
                "--uri",
                &uri,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("loaded connection 'v6gate'"),
            "swanctl: {text}"
        );
    }

    /// Runs our responder in the first namespace and has charon initiate to it, then
    /// terminate the IKE SA once the responder has pinged and rekeyed.
    fn charon_initiates(&self, suite: usize) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns_a])
            .arg(std::env::current_exe().unwrap())
            .args(["strongswan_interop", "--exact", "--ignored", "--nocapture"])
            .env(ROLE, "responder")
            .env(SUITE, suite.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = String::new();
        let mut wait_for = |marker: &str, seen: &mut String| {
            for line in lines.by_ref() {
                let line = line.unwrap();
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(marker) {
                    return true;
                }
            }
            false
        };
        let uri = format!("unix://{}/charon.vici", self.dir.display());
        let swanctl = |args: &[&str]| {
            Command::new("ip")
                .args(["netns", "exec", &self.ns_b, "swanctl"])
                .args(args)
                .args(["--uri", &uri])
                .output()
                .unwrap()
        };
        assert!(
            wait_for("responder ready", &mut seen),
            "responder died:\n{seen}"
        );
        let init = swanctl(&["--initiate", "--child", "net", "--timeout", "20"]);
        assert!(
            init.status.success(),
            "charon could not initiate:\n{}\n{seen}\n--- charon log ---\n{}",
            String::from_utf8_lossy(&init.stdout),
            self.log_tail()
        );
        // charon rekeys the CHILD SA and the IKE SA towards our responder.
        let ok = wait_for("awaiting charon rekeys", &mut seen);
        assert!(
            ok,
            "responder failed:\n{seen}\n--- charon log ---\n{}",
            self.log_tail()
        );
        let out = swanctl(&["--rekey", "--child", "net"]);
        assert!(out.status.success(), "child rekey: {}", self.log_tail());
        let ok = wait_for("child rekeyed by charon", &mut seen);
        assert!(
            ok,
            "responder failed:\n{seen}\n--- charon log ---\n{}",
            self.log_tail()
        );
        let out = swanctl(&["--rekey", "--ike", "v6gate"]);
        assert!(out.status.success(), "IKE rekey: {}", self.log_tail());
        let ok = wait_for("awaiting delete", &mut seen);
        assert!(
            ok,
            "responder failed:\n{seen}\n--- charon log ---\n{}",
            self.log_tail()
        );
        let term = swanctl(&["--terminate", "--ike", "v6gate", "--timeout", "20"]);
        assert!(
            term.status.success(),
            "terminate failed: {}",
            self.log_tail()
        );
        wait_for("never printed", &mut seen);
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "responder failed:\n{seen}\n--- charon log ---\n{}",
            self.log_tail()
        );
        if SUITES[suite].0 != SUITES[suite].1 {
            // We prefer our first group and answered charon's KE with INVALID_KE_PAYLOAD.
            assert!(
                seen.contains("dh: Ecp256"),
                "no retry with our group:\n{seen}"
            );
        }
        assert_eq!(
            seen.matches("echo reply").count(),
            4,
            "pings missing:\n{seen}"
        );
    }
}

// ---- the initiator, running inside the first namespace ------------------------------------

struct Endpoint {
    peer: Peer,
    s500: UdpSocket,
    s4500: UdpSocket,
    events: Vec<Event>,
    esp_in: Vec<Vec<u8>>,
    start: Instant,
}

impl Endpoint {
    fn now(&self) -> Instant {
        self.start + self.start.elapsed()
    }

    fn flush(&mut self) {
        while let Some(t) = self.peer.poll_transmit() {
            if t.local.port() == 4500 {
                let mut buf = vec![0u8; t.payload.len() + 4];
                wire::esp::emit_non_esp_marker(&t.payload, &mut buf).unwrap();
                self.s4500.send_to(&buf, t.remote).unwrap();
            } else {
                self.s500.send_to(&t.payload, t.remote).unwrap();
            }
        }
        while let Some(e) = self.peer.poll_event() {
            println!("event: {e:?}");
            self.events.push(e);
        }
    }

    /// Runs the peer until `done` holds or the deadline passes.
    fn drive(&mut self, secs: u64, done: impl Fn(&[Event]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        self.flush();
        while !done(&self.events) {
            assert!(
                Instant::now() < deadline,
                "timed out; events: {:?}",
                self.events
            );
            let now = self.now();
            if self.peer.poll_timeout().is_some_and(|t| t <= now) {
                self.peer.handle_timeout(now);
            }
            self.receive(Duration::from_millis(20));
            self.flush();
        }
    }

    fn receive(&mut self, wait: Duration) {
        let mut buf = [0u8; 4096];
        for (sock, port) in [(&self.s500, 500u16), (&self.s4500, 4500)] {
            sock.set_read_timeout(Some(wait)).unwrap();
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let local = SocketAddr::new(US.parse().unwrap(), port);
            let now = self.start + self.start.elapsed();
            let ike = if port == 4500 {
                match wire::esp::classify_udp4500(&buf[..n]) {
                    Some(wire::esp::Udp4500::Ike(m)) => Some(m.to_vec()),
                    Some(wire::esp::Udp4500::Esp(p)) => {
                        self.esp_in.push(p.to_vec());
                        None
                    }
                    _ => None,
                }
            } else {
                Some(buf[..n].to_vec())
            };
            if let Some(m) = ike
                && let Err(e) = self.peer.handle_datagram(now, local, from, &m)
            {
                println!("rejected datagram: {e}");
            }
        }
    }

    /// Pings 198.18.2.1 through the CHILD SA and expects the echo reply back through it.
    fn ping(&mut self, child: &ChildSaInfo, seq: u16) {
        let suite = esp_suite(child);
        let mut tx = OutboundSa::new(
            child.spi_out,
            suite,
            &child.encr_out,
            &child.integ_out,
            child.suite.esn,
        )
        .unwrap();
        let mut rx = InboundSa::new(
            child.spi_in,
            suite,
            &child.encr_in,
            &child.integ_in,
            child.suite.esn,
        )
        .unwrap();
        let icmp = wire::Icmpv4Repr::EchoRequest {
            ident: 0x6a7e,
            seq_no: seq,
            data: b"v6gate interop",
        };
        let ip = wire::Ipv4Repr {
            src_addr: "198.18.1.1".parse().unwrap(),
            dst_addr: "198.18.2.1".parse().unwrap(),
            protocol: wire::ip_proto::ICMP,
            payload_len: icmp.buffer_len(),
            ttl: 64,
            dscp_ecn: 0,
            ident: seq,
            dont_frag: false,
        };
        let mut inner = vec![0u8; ip.buffer_len() + icmp.buffer_len()];
        ip.emit(&mut wire::Ipv4Packet::new_unchecked(&mut inner[..]));
        icmp.emit(&mut wire::Icmpv4Packet::new_unchecked(
            &mut inner[ip.buffer_len()..],
        ));
        let mut pkt = vec![0u8; tx.sealed_len(inner.len())];
        let remote = SocketAddr::new(THEM.parse().unwrap(), 4500);
        let deadline = Instant::now() + Duration::from_secs(10);
        // The peer may install the SA a moment after we do: resend once a second.
        let mut resend = Instant::now();
        loop {
            assert!(
                Instant::now() < deadline,
                "no echo reply through SPI {:#x}",
                child.spi_in
            );
            if Instant::now() >= resend {
                let n = tx.seal(wire::ip_proto::IPIP, &inner, &mut pkt).unwrap();
                self.s4500.send_to(&pkt[..n], remote).unwrap();
                resend = Instant::now() + Duration::from_secs(1);
            }
            self.receive(Duration::from_millis(50));
            self.flush();
            for p in std::mem::take(&mut self.esp_in) {
                let mut out = vec![0u8; p.len()];
                let Ok(o) = rx.open(&p, &mut out) else {
                    continue;
                };
                assert_eq!(o.next_header, wire::ip_proto::IPIP);
                let v4 = wire::Ipv4Packet::new_checked(o.payload).unwrap();
                let reply = wire::Icmpv4Packet::new_checked(v4.payload()).unwrap();
                if let Ok(wire::Icmpv4Repr::EchoReply { seq_no, data, .. }) =
                    wire::Icmpv4Repr::parse(&reply)
                    && seq_no == seq
                {
                    assert_eq!(data, b"v6gate interop");
                    println!("echo reply {seq} through SPI {:#x}", child.spi_in);
                    return;
                }
            }
        }
    }
}

fn initiator(ike: &str, esp: &str) {
    let us: IpAddr = US.parse().unwrap();
    let mut ep = endpoint(config(ike, esp));
    let now = ep.now();
    ep.peer
        .initiate(
            now,
            SocketAddr::new(us, 500),
            SocketAddr::new(THEM.parse().unwrap(), 500),
        )
        .unwrap();
    ep.drive(30, |ev| {
        ev.iter().any(|e| matches!(e, Event::ChildSaEstablished(_)))
    });
    assert!(
        ep.events
            .iter()
            .any(|e| matches!(e, Event::NatDetected { .. })),
        "charon's forced encapsulation shows as a NAT"
    );
    let child = ep.peer.child_sas().next().unwrap().clone();
    assert!(child.udp_encap);
    ep.ping(&child, 1);

    // CHILD SA rekey (with PFS when the ESP proposal names a group).
    let now = ep.now();
    ep.peer.rekey_child(now, child.spi_in).unwrap();
    let old = child.spi_in;
    ep.drive(30, |ev| {
        ev.iter()
            .any(|e| matches!(e, Event::ChildSaDeleted { spi_in, .. } if *spi_in == old))
    });
    let child = ep.peer.child_sas().next().unwrap().clone();
    assert_eq!(child.replaces, Some(old));
    ep.ping(&child, 2);

    // IKE SA rekey; the CHILD SA stays, and a further CHILD rekey runs over the new IKE SA.
    let now = ep.now();
    ep.peer.rekey_ike(now).unwrap();
    ep.drive(30, |ev| {
        ev.iter().any(|e| matches!(e, Event::IkeSaRekeyed { .. }))
    });
    ep.drive(30, |_| true);
    let now = ep.now();
    ep.peer.rekey_child(now, child.spi_in).unwrap();
    let old = child.spi_in;
    ep.drive(30, |ev| {
        ev.iter()
            .any(|e| matches!(e, Event::ChildSaDeleted { spi_in, .. } if *spi_in == old))
    });
    let child = ep.peer.child_sas().next().unwrap().clone();
    ep.ping(&child, 3);

    let now = ep.now();
    ep.peer.delete(now);
    ep.drive(30, |ev| {
        ev.iter().any(|e| matches!(e, Event::IkeSaDown { .. }))
    });
    assert_eq!(ep.peer.ike_sa_count(), 0);
}

fn config(ike: &str, esp: &str) -> Config {
    let ts = |s: &str, e: &str| TrafficSelector::range(s.parse().unwrap(), e.parse().unwrap());
    let mut config = Config::new(
        PSK.as_bytes(),
        vec![ts("198.18.1.0", "198.18.1.255")],
        vec![ts("198.18.2.0", "198.18.2.255")],
    );
    config.ike = vec![IkeProposal::parse(ike).unwrap()];
    config.esp = vec![EspProposal::parse(esp).unwrap()];
    config.local_id = Some(ike::Identity::parse("fqdn:a.example").unwrap());
    config.remote_id = Some(ike::Identity::parse("fqdn:b.example").unwrap());
    config
}

fn endpoint(config: Config) -> Endpoint {
    let us: IpAddr = US.parse().unwrap();
    Endpoint {
        peer: Peer::new(config, Box::new(OsRng)),
        s500: UdpSocket::bind((us, 500)).unwrap(),
        s4500: UdpSocket::bind((us, 4500)).unwrap(),
        events: Vec::new(),
        esp_in: Vec::new(),
        start: Instant::now(),
    }
}

/// charon initiates; we answer, ping through the CHILD SA, rekey it from our side, ping
/// again, and wait for charon to delete the IKE SA.
fn responder(ike: &str, esp: &str) {
    let mut ep = endpoint(config(ike, esp));
    println!("responder ready");
    std::io::stdout().flush().unwrap();
    ep.drive(30, |ev| {
        ev.iter().any(|e| matches!(e, Event::ChildSaEstablished(_)))
    });
    let child = ep.peer.child_sas().next().unwrap().clone();
    assert!(child.udp_encap);
    ep.ping(&child, 11);
    let now = ep.now();
    ep.peer.rekey_child(now, child.spi_in).unwrap();
    let old = child.spi_in;
    ep.drive(30, |ev| {
        ev.iter()
            .any(|e| matches!(e, Event::ChildSaDeleted { spi_in, .. } if *spi_in == old))
    });
    let child = ep.peer.child_sas().next().unwrap().clone();
    ep.ping(&child, 12);

    println!("awaiting charon rekeys");
    std::io::stdout().flush().unwrap();
    let old = child.spi_in;
    ep.drive(30, |ev| {
        ev.iter()
            .any(|e| matches!(e, Event::ChildSaDeleted { spi_in, .. } if *spi_in == old))
    });
    let child = ep.peer.child_sas().next().unwrap().clone();
    assert_eq!(child.replaces, Some(old));
    ep.ping(&child, 13);
    println!("child rekeyed by charon");
    std::io::stdout().flush().unwrap();
    ep.drive(30, |ev| {
        ev.iter().any(|e| matches!(e, Event::IkeSaRekeyed { .. }))
    });
    // The old IKE SA goes once charon deletes it; the CHILD SA lives on under the new one.
    let start = Instant::now();
    while ep.peer.ike_sa_count() > 1 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "old IKE SA never deleted"
        );
        ep.receive(Duration::from_millis(50));
        ep.flush();
    }
    assert_eq!(ep.peer.child_sas().next().unwrap().spi_in, child.spi_in);
    ep.ping(&child, 14);
    println!("awaiting delete");
    std::io::stdout().flush().unwrap();
    ep.drive(30, |ev| {
        ev.iter().any(|e| matches!(e, Event::IkeSaDown { .. }))
    });
    assert_eq!(ep.peer.ike_sa_count(), 0);
    assert_eq!(ep.peer.child_sas().count(), 0);
}
