//! IKEv1 interoperability with strongSwan's charon over real UDP, inside network namespaces.
//!
//! Needs root, iproute2 and strongSwan (`/usr/lib/ipsec/charon`, `swanctl`, the
//! kernel-libipsec plugin), all of which `scripts/test` installs; it runs in the normal test
//! suite.
//!
//! Two namespaces are joined by a veth pair (198.51.100.0/24). charon runs in one with a
//! `version = 1` main mode PSK connection; this test binary is re-run inside the other as a
//! [`ike::v1::Peer`] on UDP 500/4500 with ESP sealed and opened by the dataplane's SAs.
//! charon forces UDP encapsulation and does ESP in userspace (kernel-libipsec), so the kernel
//! needs no XFRM. Pings cross the tunnel in both directions: ours to 198.18.2.1 behind
//! charon, and charon's namespace pinging 198.18.1.1, which this side answers through ESP.
//! Each answer only arrives if main mode, quick mode, KEYMAT and ESP agree byte for byte.
//!
//! Suites: the seed's S3 set exactly (aes128-sha1-modp1024, no PFS, 28800 s, DPD 5 s / 20 s
//! restart) and a modern one (aes256-sha256-modp2048 with PFS in quick mode). Each runs with
//! us initiating (ping, CHILD rekey from our side, ping, delete) and with charon initiating
//! (ping both ways, CHILD rekey from charon's side, ping, charon terminates).

mod charon;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use charon::*;
use dataplane::esp::{InboundSa, OutboundSa};
use ike::proposal::{EspProposal, IkeProposal};
use ike::v1::Peer;
use ike::{ChildSaInfo, Config, Dpd, DpdAction, Event};
use rand_core::OsRng;
use wire::ike::TrafficSelector;

const ROLE: &str = "V6GATE_IKEV1_INTEROP_ROLE";
const SUITE: &str = "V6GATE_IKEV1_INTEROP_SUITE";

struct Case {
    name: &'static str,
    ike: &'static str,
    esp: &'static str,
    /// charon's ESP proposal; a DH group there means PFS.
    charon_esp: &'static str,
    lifetime: u64,
    /// Identities: the addresses (as the seed's conn) or FQDNs.
    fqdn: bool,
}

const CASES: [Case; 2] = [
    Case {
        name: "s3",
        ike: "aes128-sha1-modp1024",
        esp: "aes128-sha1",
        charon_esp: "aes128-sha1",
        lifetime: 28800,
        fqdn: false,
    },
    Case {
        name: "modern",
        ike: "aes256-sha256-modp2048",
        esp: "aes256-sha256-modp2048",
        charon_esp: "aes256-sha256-modp2048",
        lifetime: 3600,
        fqdn: true,
    },
];

#[test]
fn strongswan_ikev1_interop() {
    if let Ok(role) = std::env::var(ROLE) {
        let idx: usize = std::env::var(SUITE).unwrap().parse().unwrap();
        match role.as_str() {
            "initiator" => initiator(&CASES[idx]),
            "responder" => responder(&CASES[idx]),
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let lab = Lab::new("v6gik1");
    for (i, case) in CASES.iter().enumerate() {
        lab.configure(case);
        let t = Instant::now();
        let out = Command::new("ip")
            .args(["netns", "exec", &lab.ns_a])
            .arg(std::env::current_exe().unwrap())
            .args(["strongswan_ikev1_interop", "--exact", "--nocapture"])
            .env(ROLE, "initiator")
            .env(SUITE, i.to_string())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{}: we initiate: failed:\n{stdout}\n{stderr}\n--- charon log ---\n{}",
            case.name,
            lab.log_tail()
        );
        assert_eq!(
            stdout.matches("echo reply").count(),
            2,
            "{}: pings missing:\n{stdout}",
            case.name
        );
        println!("{}: we initiate: ok in {:?}", case.name, t.elapsed());
        let t = Instant::now();
        lab.charon_initiates(i);
        println!("{}: charon initiates: ok in {:?}", case.name, t.elapsed());
    }
}

impl Lab {
    fn configure(&self, case: &Case) {
        let (local_id, remote_id) = if case.fqdn {
            ("fqdn:b.example", "fqdn:a.example")
        } else {
            (THEM, US)
        };
        let conf = format!(
            "connections {{\n  v6gate {{\n    version = 1\n    aggressive = no\n    local_addrs = {THEM}\n    remote_addrs = {US}\n    proposals = {ike}\n    encap = yes\n    dpd_delay = 5s\n    dpd_timeout = 20s\n    reauth_time = {life}s\n    rekey_time = 0s\n    local {{\n      auth = psk\n      id = {local_id}\n    }}\n    remote {{\n      auth = psk\n      id = {remote_id}\n    }}\n    children {{\n      net {{\n        local_ts = 198.18.2.0/24\n        remote_ts = 198.18.1.0/24\n        esp_proposals = {esp}\n        mode = tunnel\n        rekey_time = {life}s\n        life_time = {life}s\n        dpd_action = restart\n      }}\n    }}\n  }}\n}}\nsecrets {{\n  ike-1 {{\n    id-1 = {local_id}\n    id-2 = {remote_id}\n    secret = \"{PSK}\"\n  }}\n}}\n",
            ike = case.ike,
            esp = case.charon_esp,
            life = case.lifetime,
        );
        fs::write(self.etc.join("swanctl/conf.d/v6gate.conf"), conf).unwrap();
        let out = self.swanctl(&["--load-all", "--clear"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("loaded connection 'v6gate'"),
            "swanctl: {text}"
        );
    }

    /// Runs our responder in the first namespace and has charon initiate to it, rekey the
    /// CHILD SA, and terminate.
    fn charon_initiates(&self, suite: usize) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns_a])
            .arg(std::env::current_exe().unwrap())
            .args(["strongswan_ikev1_interop", "--exact", "--nocapture"])
            .env(ROLE, "responder")
            .env(SUITE, suite.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut guard = Reaper(Some(child.id()));
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
        let fail = |what: &str, seen: &str| -> ! {
            panic!("{what}:\n{seen}\n--- charon log ---\n{}", self.log_tail())
        };
        if !wait_for("responder ready", &mut seen) {
            fail("responder died", &seen);
        }
        let init = self.swanctl(&["--initiate", "--child", "net", "--timeout", "20"]);
        if !init.status.success() {
            fail(
                &format!(
                    "charon could not initiate: {}",
                    String::from_utf8_lossy(&init.stdout)
                ),
                &seen,
            );
        }
        if !wait_for("answering pings", &mut seen) {
            fail("responder failed", &seen);
        }
        // charon's side pings ours through the tunnel; our responder answers through ESP.
        let ping = Command::new("ip")
            .args([
                "netns", "exec", &self.ns_b, "ping", "-c", "3", "-i", "0.2", "-W", "2",
            ])
            .args(["-I", THEIR_HOST, OUR_HOST])
            .output()
            .unwrap();
        if !ping.status.success() {
            fail(
                &format!(
                    "ping from charon's side: {}",
                    String::from_utf8_lossy(&ping.stdout)
                ),
                &seen,
            );
        }
        let out = self.swanctl(&["--rekey", "--child", "net"]);
        assert!(out.status.success(), "child rekey: {}", self.log_tail());
        if !wait_for("child rekeyed by charon", &mut seen) {
            fail("responder failed after charon's rekey", &seen);
        }
        let term = self.swanctl(&["--terminate", "--ike", "v6gate", "--timeout", "20"]);
        assert!(
            term.status.success(),
            "terminate failed: {}",
            self.log_tail()
        );
        wait_for("never printed", &mut seen);
        let status = child.wait().unwrap();
        guard.0 = None;
        if !status.success() {
            fail("responder failed", &seen);
        }
        assert_eq!(
            seen.matches("echo reply").count(),
            2,
            "pings missing:\n{seen}"
        );
        assert!(seen.matches("answered echo request").count() >= 3, "{seen}");
    }
}

// ---- our side, running inside the first namespace -----------------------------------------

struct Endpoint {
    peer: Peer,
    s500: UdpSocket,
    s4500: UdpSocket,
    events: Vec<Event>,
    esp_in: Vec<Vec<u8>>,
    start: Instant,
    /// The CHILD SA whose pings we answer, as dataplane SAs.
    answering: Option<(OutboundSa, InboundSa)>,
}

fn sas(child: &ChildSaInfo) -> (OutboundSa, InboundSa) {
    let suite = esp_suite(child);
    (
        OutboundSa::new(
            child.spi_out,
            suite,
            &child.encr_out,
            &child.integ_out,
            false,
        )
        .unwrap(),
        InboundSa::new(child.spi_in, suite, &child.encr_in, &child.integ_in, false).unwrap(),
    )
}

fn icmp_packet(src: &str, dst: &str, reply: bool, seq: u16) -> Vec<u8> {
    let data: &[u8] = b"v6gate ikev1 interop";
    let icmp = if reply {
        wire::Icmpv4Repr::EchoReply {
            ident: 0x6a7e,
            seq_no: seq,
            data,
        }
    } else {
        wire::Icmpv4Repr::EchoRequest {
            ident: 0x6a7e,
            seq_no: seq,
            data,
        }
    };
    ip_packet(src, dst, &icmp, seq)
}

fn ip_packet(src: &str, dst: &str, icmp: &wire::Icmpv4Repr<'_>, ident: u16) -> Vec<u8> {
    let ip = wire::Ipv4Repr {
        src_addr: src.parse().unwrap(),
        dst_addr: dst.parse().unwrap(),
        protocol: wire::ip_proto::ICMP,
        payload_len: icmp.buffer_len(),
        ttl: 64,
        dscp_ecn: 0,
        ident,
        dont_frag: false,
    };
    let mut out = vec![0u8; ip.buffer_len() + icmp.buffer_len()];
    ip.emit(&mut wire::Ipv4Packet::new_unchecked(&mut out[..]));
    icmp.emit(&mut wire::Icmpv4Packet::new_unchecked(
        &mut out[ip.buffer_len()..],
    ));
    out
}

impl Endpoint {
    fn new(config: Config) -> Self {
        let us: IpAddr = US.parse().unwrap();
        Self {
            peer: Peer::new(config, Box::new(OsRng)),
            s500: UdpSocket::bind((us, 500)).unwrap(),
            s4500: UdpSocket::bind((us, 4500)).unwrap(),
            events: Vec::new(),
            esp_in: Vec::new(),
            start: Instant::now(),
            answering: None,
        }
    }

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

    /// Runs the peer until `done` holds, failing after `secs`.
    fn drive(&mut self, secs: u64, done: impl Fn(&[Event]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        self.flush();
        while !done(&self.events) {
            assert!(
                Instant::now() < deadline,
                "timed out; events: {:?}",
                self.events
            );
            self.turn();
        }
    }

    fn turn(&mut self) {
        let now = self.now();
        if self.peer.poll_timeout().is_some_and(|t| t <= now) {
            self.peer.handle_timeout(now);
        }
        self.receive(Duration::from_millis(20));
        self.answer_pings();
        self.flush();
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

    /// Answers echo requests that charon's side sends through the CHILD SA.
    fn answer_pings(&mut self) {
        let Some((tx, rx)) = &mut self.answering else {
            return;
        };
        let remote = SocketAddr::new(THEM.parse().unwrap(), 4500);
        let mut keep = Vec::new();
        for p in std::mem::take(&mut self.esp_in) {
            let mut out = vec![0u8; p.len()];
            let Ok(o) = rx.open(&p, &mut out) else {
                keep.push(p);
                continue;
            };
            let Ok(v4) = wire::Ipv4Packet::new_checked(o.payload) else {
                continue;
            };
            let Ok(icmp) = wire::Icmpv4Packet::new_checked(v4.payload()) else {
                continue;
            };
            if let Ok(wire::Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }) = wire::Icmpv4Repr::parse(&icmp)
            {
                let reply = wire::Icmpv4Repr::EchoReply {
                    ident,
                    seq_no,
                    data,
                };
                let inner = ip_packet(OUR_HOST, THEIR_HOST, &reply, seq_no);
                let mut pkt = vec![0u8; tx.sealed_len(inner.len())];
                let n = tx.seal(wire::ip_proto::IPIP, &inner, &mut pkt).unwrap();
                self.s4500.send_to(&pkt[..n], remote).unwrap();
                println!("answered echo request {seq_no}");
            }
        }
        self.esp_in = keep;
    }

    /// Pings charon's side through the CHILD SA and waits for the reply through it.
    fn ping(&mut self, child: &ChildSaInfo, seq: u16) {
        let (mut tx, mut rx) = sas(child);
        let inner = icmp_packet(OUR_HOST, THEIR_HOST, false, seq);
        let mut pkt = vec![0u8; tx.sealed_len(inner.len())];
        let remote = SocketAddr::new(THEM.parse().unwrap(), 4500);
        let deadline = Instant::now() + Duration::from_secs(10);
        // The peer may install the SA a moment after we do: resend every half second.
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
                resend = Instant::now() + Duration::from_millis(500);
            }
            self.receive(Duration::from_millis(20));
            self.flush();
            for p in std::mem::take(&mut self.esp_in) {
                let mut out = vec![0u8; p.len()];
                let Ok(o) = rx.open(&p, &mut out) else {
                    continue;
                };
                let now = self.now();
                self.peer.handle_esp_received(now, child.spi_in);
                let v4 = wire::Ipv4Packet::new_checked(o.payload).unwrap();
                let reply = wire::Icmpv4Packet::new_checked(v4.payload()).unwrap();
                if let Ok(wire::Icmpv4Repr::EchoReply { seq_no, data, .. }) =
                    wire::Icmpv4Repr::parse(&reply)
                    && seq_no == seq
                {
                    assert_eq!(data, b"v6gate ikev1 interop");
                    println!("echo reply {seq} through SPI {:#x}", child.spi_in);
                    return;
                }
            }
        }
    }
}

fn config(case: &Case) -> Config {
    let ts = |s: &str, e: &str| TrafficSelector::range(s.parse().unwrap(), e.parse().unwrap());
    let mut config = Config::new(
        PSK.as_bytes(),
        vec![ts("198.18.1.0", "198.18.1.255")],
        vec![ts("198.18.2.0", "198.18.2.255")],
    );
    config.ike = vec![IkeProposal::parse(case.ike).unwrap()];
    config.esp = vec![EspProposal::parse(case.esp).unwrap()];
    config.ike_lifetime = Duration::from_secs(case.lifetime);
    config.child_lifetime = Duration::from_secs(case.lifetime);
    config.dpd = Some(Dpd {
        delay: Duration::from_secs(5),
        timeout: Duration::from_secs(20),
        action: DpdAction::Restart,
    });
    if case.fqdn {
        config.local_id = Some(ike::Identity::parse("fqdn:a.example").unwrap());
        config.remote_id = Some(ike::Identity::parse("fqdn:b.example").unwrap());
    }
    config
}

fn initiator(case: &Case) {
    let us: IpAddr = US.parse().unwrap();
    let mut ep = Endpoint::new(config(case));
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
    assert_eq!(child.suite.dh.is_some(), case.esp.contains("modp"));
    ep.ping(&child, 1);

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

    let now = ep.now();
    ep.peer.delete(now);
    ep.flush();
    assert_eq!(ep.peer.ike_sa_count(), 0);
    assert_eq!(ep.peer.child_sas().count(), 0);
}

/// charon initiates; we answer, ping, answer charon's pings, follow charon's CHILD rekey,
/// ping through the new SA, and wait for charon to delete everything.
fn responder(case: &Case) {
    let mut ep = Endpoint::new(config(case));
    println!("responder ready");
    std::io::stdout().flush().unwrap();
    ep.drive(30, |ev| {
        ev.iter().any(|e| matches!(e, Event::ChildSaEstablished(_)))
    });
    let child = ep.peer.child_sas().next().unwrap().clone();
    assert!(child.udp_encap);
    ep.ping(&child, 11);
    ep.answering = Some(sas(&child));
    println!("answering pings");
    std::io::stdout().flush().unwrap();
    // charon keeps the SA it rekeyed until that one expires, so the new one is found by what
    // it replaces rather than by the old one going away.
    let old = child.spi_in;
    ep.drive(30, |ev| {
        ev.iter()
            .any(|e| matches!(e, Event::ChildSaEstablished(c) if c.replaces == Some(old)))
    });
    ep.answering = None;
    let child = ep
        .peer
        .child_sas()
        .find(|c| c.replaces == Some(old))
        .unwrap()
        .clone();
    ep.ping(&child, 12);
    println!("child rekeyed by charon");
    std::io::stdout().flush().unwrap();
    ep.drive(30, |ev| {
        ev.iter().any(|e| matches!(e, Event::IkeSaDown { .. }))
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while ep.peer.child_sas().count() > 0 {
        assert!(Instant::now() < deadline, "CHILD SA never deleted");
        ep.turn();
    }
    assert_eq!(ep.peer.ike_sa_count(), 0);
}
