//! The packet loop: one poller for every socket and device, dispatch by token to the tunnel
//! kinds, the owner's commands, and the kinds' timers.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use dataplane::{PathId, TunnelId};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use sys::raw::{Icmpv6Socket, RawIpv4Socket, RawIpv6Socket};
use tracing::{debug, warn};

use super::esp::{Esp, is_esp};
use super::kind::Kind;
use super::rfc2473::Rfc2473;
use super::rx::RxBuffers;
use super::tun::{Devices, TX_HELD, TX_READS, segments};
use super::{Command, PathChange, Snapshot, WAKER};

const RAW_IPIP: Token = Token(1);
const RAW_IPV6: Token = Token(2);
const ICMPV6: Token = Token(3);
const RAW4_IPIP: Token = Token(4);
const RAW4_IPV6: Token = Token(5);
const RAW_ESP: Token = Token(6);
const RAW4_ESP: Token = Token(7);
const ICMPV4: Token = Token(8);

/// Large enough for any IPv6 packet a TUN or raw socket can hand us.
const PACKET_BUF: usize = 96 * 1024;

pub(super) struct Loop {
    poll: Poll,
    commands: mpsc::Receiver<Command>,
    pub(super) rfc2473: Rfc2473,
    pub(super) esp: Esp,
    pub(super) icmp: Icmpv6Socket,
    /// ICMPv4 destination unreachable, for fragmentation needed about paths over IPv4.
    pub(super) icmp4: RawIpv4Socket,
    pub(super) devices: Devices,
    pub(super) buf: Vec<u8>,
    /// Buffers for one `recvmmsg` on a raw socket.
    pub(super) rx: RxBuffers,
}

impl Loop {
    /// Opens the underlay sockets of every kind and registers them with `poll`.
    pub(super) fn open(
        poll: Poll,
        commands: mpsc::Receiver<Command>,
        changes: tokio::sync::mpsc::Sender<PathChange>,
    ) -> anyhow::Result<Self> {
        let ipip = RawIpv6Socket::open(wire::ip_proto::IPIP)
            .context("opening the raw IPv6 socket for IPv4-in-IPv6 (protocol 4)")?;
        let ipv6 = RawIpv6Socket::open(wire::ip_proto::IPV6)
            .context("opening the raw IPv6 socket for IPv6-in-IPv6 (protocol 41)")?;
        let icmp = Icmpv6Socket::open().context("opening the ICMPv6 socket for Packet Too Big")?;
        let ipip4 = RawIpv4Socket::open(wire::ip_proto::IPIP)
            .context("opening the raw IPv4 socket for IPv4-in-IPv4 (protocol 4)")?;
        let ipv6in4 = RawIpv4Socket::open(wire::ip_proto::IPV6)
            .context("opening the raw IPv4 socket for IPv6-in-IPv4 (protocol 41)")?;
        let esp6 = RawIpv6Socket::open(wire::ip_proto::ESP)
            .context("opening the raw IPv6 socket for ESP (protocol 50)")?;
        let esp4 = RawIpv4Socket::open(wire::ip_proto::ESP)
            .context("opening the raw IPv4 socket for ESP (protocol 50)")?;
        let icmp4 = RawIpv4Socket::open(wire::ip_proto::ICMP)
            .context("opening the raw IPv4 socket for ICMP (fragmentation needed)")?;
        icmp4
            .pass_only_icmp_types(&[wire::icmpv4::msg_type::DST_UNREACHABLE])
            .context("filtering the ICMPv4 socket to destination unreachable")?;
        let registry = poll.registry();
        for (fd, token) in [
            (ipip.as_raw_fd(), RAW_IPIP),
            (ipv6.as_raw_fd(), RAW_IPV6),
            (icmp.as_raw_fd(), ICMPV6),
            (ipip4.as_raw_fd(), RAW4_IPIP),
            (ipv6in4.as_raw_fd(), RAW4_IPV6),
            (esp6.as_raw_fd(), RAW_ESP),
            (esp4.as_raw_fd(), RAW4_ESP),
            (icmp4.as_raw_fd(), ICMPV4),
        ] {
            registry
                .register(&mut SourceFd(&fd), token, Interest::READABLE)
                .context("registering an underlay socket with the poller")?;
        }
        Ok(Self {
            poll,
            commands,
            rfc2473: Rfc2473::new(ipip, ipv6, ipip4, ipv6in4, 4 * PACKET_BUF, changes),
            esp: Esp::new(esp6, esp4, 4 * PACKET_BUF),
            icmp,
            icmp4,
            devices: Devices::new(),
            buf: vec![0; PACKET_BUF],
            rx: RxBuffers::new(),
        })
    }

    pub(super) fn run(&mut self) {
        let mut events = Events::with_capacity(64);
        loop {
            let timeout = [self.rfc2473.poll_timeout(), self.esp.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .map(|at| at.saturating_duration_since(Instant::now()))
                .map(|d| d.min(Duration::from_secs(60)));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                warn!("packet thread poll failed: {e}");
                return;
            }
            let now = Instant::now();
            for event in &events {
                match event.token() {
                    WAKER => {}
                    RAW_IPIP => self.drain_rfc2473(now, false, true),
                    RAW_IPV6 => self.drain_rfc2473(now, false, false),
                    ICMPV6 => self.drain_icmp6(now),
                    ICMPV4 => self.drain_icmp4(now),
                    RAW4_IPIP => self.drain_rfc2473(now, true, true),
                    RAW4_IPV6 => self.drain_rfc2473(now, true, false),
                    RAW_ESP => self
                        .esp
                        .drain_raw(now, false, &mut self.rx, &mut self.devices),
                    RAW4_ESP => self
                        .esp
                        .drain_raw(now, true, &mut self.rx, &mut self.devices),
                    token => self.drain_slot(now, token),
                }
            }
            if !self.handle_commands() {
                return;
            }
            self.rfc2473
                .handle_timeout(Instant::now(), &mut self.devices);
            self.esp.handle_timeout(Instant::now(), &mut self.devices);
        }
    }

    /// A TUN device of either kind, or an ESP tunnel's UDP socket.
    fn drain_slot(&mut self, now: Instant, token: Token) {
        if let Some((id, path)) = self.devices.slot(token) {
            let kind: &mut dyn Kind = if is_esp(id) {
                &mut self.esp
            } else {
                &mut self.rfc2473
            };
            drain_tun(now, id, path, kind, &mut self.devices, &mut self.buf);
        } else if self.esp.owns_udp(token) {
            self.esp
                .drain_udp(now, token, &mut self.buf, &mut self.devices);
        }
    }

    /// Returns false when asked to stop.
    fn handle_commands(&mut self) -> bool {
        while let Ok(command) = self.commands.try_recv() {
            let registry = self.poll.registry();
            match command {
                Command::Add {
                    config,
                    devices,
                    reply,
                } => {
                    let result = self
                        .rfc2473
                        .add(registry, &mut self.devices, *config, devices);
                    let _ = reply.send(result);
                }
                Command::AddEsp { tunnel, reply } => {
                    let result = self.esp.add(registry, &mut self.devices, *tunnel);
                    let _ = reply.send(result);
                }
                Command::Sa(command) => self.esp.apply(command, &mut self.devices),
                Command::Update { id, config, reply } => {
                    let _ = reply.send(self.rfc2473.update(id, *config));
                }
                Command::Remove { id, reply } => {
                    self.devices.remove(registry, id);
                    if is_esp(id) {
                        self.esp.remove(id);
                    } else {
                        self.rfc2473.remove(id);
                    }
                    let _ = reply.send(());
                }
                Command::Snapshot { reply } => {
                    let _ = reply.send(Snapshot {
                        tunnels: self.rfc2473.snapshot(&self.devices),
                        esp: self.esp.snapshot(&self.devices),
                        esp_not_peer: self.esp.not_peer(),
                    });
                }
                Command::Shutdown => return false,
            }
        }
        true
    }
}

/// Reads the device of tunnel `id` (`path`'s own, or the tunnel's) until it is empty, hands
/// each packet to the tunnel's kind and sends what it produced every `TX_READS` reads, when
/// `TX_HELD` packets wait, and at the end.
pub(super) fn drain_tun(
    now: Instant,
    id: TunnelId,
    path: Option<PathId>,
    kind: &mut dyn Kind,
    devices: &mut Devices,
    buf: &mut [u8],
) {
    let mut reads = 0;
    while let Some(tun) = devices.device(id, path) {
        let header = tun.vnet_hdr_len();
        let n = match tun.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                warn!(device = tun.name(), "TUN read failed: {e}");
                break;
            }
        };
        // One read may be a TSO/USO super-packet: the core sees it as the segments the
        // kernel would have sent, each at most the TUN MTU.
        let split = segments(&mut buf[..n], header, |segment| {
            kind.inner(now, id, path, segment);
        });
        if let Err(e) = split {
            debug!("unusable TUN read of {n} bytes dropped: {e}");
        }
        reads += 1;
        if reads == TX_READS || kind.held() >= TX_HELD {
            kind.flush(Some(id), devices);
            reads = 0;
        }
    }
    kind.flush(Some(id), devices);
}
