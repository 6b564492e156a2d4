//! Our side of the interop tests, for either IKE version: the core on UDP 500/4500 in the
//! first namespace, ESP sealed and opened by the dataplane's SAs, pings through a CHILD SA
//! both ways, and this test binary re-run inside a namespace.

use std::io::{BufRead, BufReader, Lines, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use dataplane::esp::{InboundSa, OutboundSa};
use ike::{ChildSaInfo, Core, Event};

use super::{OUR_HOST, THEIR_HOST, THEM, US, esp_suite};

/// The dataplane's SAs for a CHILD SA: outbound, inbound.
pub fn sas(child: &ChildSaInfo) -> (OutboundSa, InboundSa) {
    let suite = esp_suite(child);
    let esn = child.suite.esn;
    (
        OutboundSa::new(child.spi_out, suite, &child.encr_out, &child.integ_out, esn).unwrap(),
        InboundSa::new(child.spi_in, suite, &child.encr_in, &child.integ_in, esn).unwrap(),
    )
}

/// An IPv4 packet carrying `icmp` from `src` to `dst`.
pub fn ip_packet(src: &str, dst: &str, icmp: &wire::Icmpv4Repr<'_>, ident: u16) -> Vec<u8> {
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

pub struct Endpoint<P> {
    pub peer: P,
    s500: UdpSocket,
    s4500: UdpSocket,
    pub events: Vec<Event>,
    esp_in: Vec<Vec<u8>>,
    start: Instant,
    /// What our echo requests carry, and the replies must.
    data: &'static [u8],
    /// The CHILD SA whose pings we answer, as dataplane SAs.
    pub answering: Option<(OutboundSa, InboundSa)>,
}

impl<P: Core> Endpoint<P> {
    pub fn new(peer: P, data: &'static [u8]) -> Self {
        let us: IpAddr = US.parse().unwrap();
        Self {
            peer,
            s500: UdpSocket::bind((us, 500)).unwrap(),
            s4500: UdpSocket::bind((us, 4500)).unwrap(),
            events: Vec::new(),
            esp_in: Vec::new(),
            start: Instant::now(),
            data,
            answering: None,
        }
    }

    pub fn now(&self) -> Instant {
        self.start + self.start.elapsed()
    }

    pub fn flush(&mut self) {
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
    pub fn drive(&mut self, secs: u64, done: impl Fn(&[Event]) -> bool) {
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

    /// Waits for a CHILD SA and returns it; it is UDP-encapsulated, as charon is told to.
    pub fn await_child(&mut self) -> ChildSaInfo {
        self.drive(30, |ev| {
            ev.iter().any(|e| matches!(e, Event::ChildSaEstablished(_)))
        });
        let child = self.peer.child_sas().next().unwrap().clone();
        assert!(child.udp_encap);
        child
    }

    /// Initiates to charon and waits for the CHILD SA, which charon's forced encapsulation
    /// shows as behind a NAT.
    pub fn initiate(&mut self) -> ChildSaInfo {
        let now = self.now();
        self.peer
            .initiate(
                now,
                SocketAddr::new(US.parse().unwrap(), 500),
                SocketAddr::new(THEM.parse().unwrap(), 500),
            )
            .unwrap();
        let child = self.await_child();
        assert!(
            self.events
                .iter()
                .any(|e| matches!(e, Event::NatDetected { .. })),
            "charon's forced encapsulation shows as a NAT"
        );
        child
    }

    /// Waits until the CHILD SA `old` is deleted; returns the one left.
    pub fn await_deleted(&mut self, old: u32) -> ChildSaInfo {
        self.drive(30, |ev| {
            ev.iter()
                .any(|e| matches!(e, Event::ChildSaDeleted { spi_in, .. } if *spi_in == old))
        });
        self.peer.child_sas().next().unwrap().clone()
    }

    /// Rekeys `child` from our side; returns the new CHILD SA once the old one is gone.
    pub fn rekey(&mut self, child: &ChildSaInfo) -> ChildSaInfo {
        let now = self.now();
        self.peer.rekey_child(now, child.spi_in).unwrap();
        self.await_deleted(child.spi_in)
    }

    /// One round: due timers, what arrived, pings to answer, what to send.
    pub fn turn(&mut self) {
        let now = self.now();
        if self.peer.poll_timeout().is_some_and(|t| t <= now) {
            self.peer.handle_timeout(now);
        }
        self.receive(Duration::from_millis(20));
        self.answer_pings();
        self.flush();
    }

    pub fn receive(&mut self, wait: Duration) {
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

    /// Pings charon's side through the CHILD SA and expects the echo reply back through it.
    pub fn ping(&mut self, child: &ChildSaInfo, seq: u16) {
        let (mut tx, mut rx) = sas(child);
        let request = wire::Icmpv4Repr::EchoRequest {
            ident: 0x6a7e,
            seq_no: seq,
            data: self.data,
        };
        let inner = ip_packet(OUR_HOST, THEIR_HOST, &request, seq);
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
                assert_eq!(o.next_header, wire::ip_proto::IPIP);
                let now = self.now();
                self.peer.handle_esp_received(now, child.spi_in);
                let v4 = wire::Ipv4Packet::new_checked(o.payload).unwrap();
                let reply = wire::Icmpv4Packet::new_checked(v4.payload()).unwrap();
                if let Ok(wire::Icmpv4Repr::EchoReply { seq_no, data, .. }) =
                    wire::Icmpv4Repr::parse(&reply)
                    && seq_no == seq
                {
                    assert_eq!(data, self.data);
                    println!("echo reply {seq} through SPI {:#x}", child.spi_in);
                    return;
                }
            }
        }
    }
}

/// A line the test driving this re-run waits for.
pub fn say(line: &str) {
    println!("{line}");
    std::io::stdout().flush().unwrap();
}

/// This test binary, to run only `test` inside `namespace` with `env` set; `ignored` where
/// the test is ignored by default.
pub fn rerun(namespace: &str, test: &str, ignored: bool, env: &[(&str, String)]) -> Command {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", namespace])
        .arg(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture"]);
    if ignored {
        command.arg("--ignored");
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    command
}

/// A re-run of this test binary whose output is read as it comes; killed if dropped before
/// it exits.
pub struct Rerun {
    child: Option<Child>,
    lines: Lines<BufReader<ChildStdout>>,
    /// Everything it printed so far.
    pub seen: String,
}

impl Rerun {
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child: Some(child),
            lines,
            seen: String::new(),
        }
    }

    /// Reads until a line contains `marker`; false if the output ends first.
    pub fn wait_for(&mut self, marker: &str) -> bool {
        for line in self.lines.by_ref() {
            let line = line.unwrap();
            self.seen.push_str(&line);
            self.seen.push('\n');
            if line.contains(marker) {
                return true;
            }
        }
        false
    }

    /// Reads until a line contains `marker`; if the output ends first, fails with what it
    /// printed and charon's `log`.
    pub fn expect(&mut self, marker: &str, log: impl FnOnce() -> String) {
        if !self.wait_for(marker) {
            panic!(
                "no {marker:?} from our side:\n{}\n--- charon log ---\n{}",
                self.seen,
                log()
            );
        }
    }

    /// Reads the rest of the output and waits for the exit.
    pub fn finish(&mut self) -> ExitStatus {
        self.wait_for("\0never printed\0");
        self.child.take().unwrap().wait().unwrap()
    }
}

impl Drop for Rerun {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
