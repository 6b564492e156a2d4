//! The packet thread: a mio loop that moves bytes between TUN devices, raw sockets and the
//! sans-IO cores: [`dataplane::Dataplane`] for RFC 2473/2003 tunnels and one
//! [`dataplane::esp::EspTunnel`] per ipsec tunnel. It holds no protocol logic; every decision
//! is a core's.
//!
//! ESP arrives raw (protocol 50, one socket per family) or in UDP on the port 4500 socket of
//! the tunnel's local address, which this thread reads itself so that ESP never crosses a
//! channel; the rare IKE datagram on 4500 is handed back to the IKE shell. ESP tunnels are
//! found by the peer's address, which control keeps unique per tunnel.

use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use dataplane::esp::paths::path_of_destination;
use dataplane::esp::{
    EspBatch, EspDestination, EspEvent, EspPathConfig, EspPathEvent, EspPaths, EspStats, InboundSa,
    Integrity, OutboundSa, Suite, UdpKind, classify_udp,
};
use dataplane::offload::Coalescer;
use dataplane::{
    Batch, Dataplane, Destination, DropReason, Event, OuterMeta, PathId, PathStats, TunnelConfig,
    TunnelId, Verdict,
};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use sys::raw::{
    BATCH_SIZE, Icmpv6Socket, PathSender, RawIpv4Socket, RawIpv6Socket, Received, Received4,
    Transmit, Transmit4,
};
use sys::tun::TunDevice;
use tokio::sync::{mpsc as async_mpsc, oneshot};
use tracing::{debug, info, warn};

use super::ipsec::{Datagram, SaChange};

const WAKER: Token = Token(0);
const RAW_IPIP: Token = Token(1);
const RAW_IPV6: Token = Token(2);
const ICMPV6: Token = Token(3);
const RAW4_IPIP: Token = Token(4);
const RAW4_IPV6: Token = Token(5);
const RAW_ESP: Token = Token(6);
const RAW4_ESP: Token = Token(7);
const ICMPV4: Token = Token(8);
const FIRST_TUN: usize = 16;

/// Large enough for any IPv6 packet a TUN or raw socket can hand us.
const PACKET_BUF: usize = 96 * 1024;

/// Room for one datagram in a receive batch: a raw IPv6 socket hands over at most a 65,535-byte
/// payload, a raw IPv4 socket at most a 65,535-byte datagram (both can be GRO-merged trains).
const RX_SLOT: usize = 64 * 1024;

/// Underlay packets taken in before what they produced is sent: enough for the coalescer to
/// merge a burst of one flow, few enough that the batch stays small and latency low.
const RX_BURST: usize = 32;

/// TUN reads taken before what they produced is sent, and the most packets held for sending:
/// small packets (UDP, ACKs, anything not segmented by the kernel) then share one `sendmmsg`
/// or one UDP train instead of costing a send each.
const TX_READS: usize = 32;
const TX_HELD: usize = 2 * BATCH_SIZE;

/// ESP tunnels are numbered apart from the core's tunnels, so that one [`TunnelId`] names one
/// tunnel of either kind in commands and snapshots.
const FIRST_ESP_ID: u32 = 0x8000_0000;

/// Counters the shell keeps itself because only the shell sees them.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShellCounters {
    pub send_errors: u64,
    /// ESP-in-UDP sends that carried a train of datagrams (`UDP_SEGMENT`).
    pub udp_trains_sent: u64,
    /// ESP-in-UDP receives that brought a train of datagrams (`UDP_GRO`).
    pub udp_trains_received: u64,
}

#[derive(Debug, Clone)]
pub struct TunnelSnapshot {
    pub id: TunnelId,
    pub stats: dataplane::TunnelStats,
    pub shell: ShellCounters,
    /// In the order of the tunnel's paths.
    pub paths: Vec<PathStats>,
    pub active_path: Option<PathId>,
}

/// The packet path of one ipsec tunnel, for status.
#[derive(Debug, Clone)]
pub struct EspSnapshot {
    pub id: TunnelId,
    /// Totals over the paths.
    pub stats: EspStats,
    pub shell: ShellCounters,
    /// Index of the path that carries the traffic.
    pub active_path: usize,
    /// In the order of the tunnel's paths.
    pub paths: Vec<EspPathSnapshot>,
}

#[derive(Debug, Clone)]
pub struct EspPathSnapshot {
    pub stats: PathStats,
    pub keepalives_sent: u64,
    /// SPI of the path's outbound SA that seals now.
    pub active_outbound: Option<u32>,
    pub inbound_sas: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub tunnels: Vec<TunnelSnapshot>,
    pub esp: Vec<EspSnapshot>,
}

/// What the packet thread needs to run one path of an ipsec tunnel besides its core.
pub struct EspLinks {
    /// The UDP 4500 socket of the path's local address (shared by the paths using it).
    pub udp: Arc<UdpSocket>,
    /// Where IKE datagrams read from that socket go.
    pub ike: async_mpsc::Sender<Datagram>,
    /// Where the inbound SPIs of authenticated ESP go (the liveness of the path's IKE task).
    pub liveness: async_mpsc::UnboundedSender<u32>,
}

/// A TUN device handed to the packet thread: the tunnel's own, or one path's when the
/// tunnel has a device per path.
pub struct TunnelDevice {
    pub path: Option<PathId>,
    pub tun: TunDevice,
}

struct Device {
    path: Option<PathId>,
    token: Token,
    tun: TunDevice,
    /// Packets bound for this device, merged per TCP flow into super-packets so a burst
    /// from the underlay costs one TUN write instead of one per packet.
    coalescer: Coalescer,
}

#[derive(Default)]
struct TunnelDevices {
    devices: Vec<Device>,
    counters: ShellCounters,
}

impl TunnelDevices {
    /// The device for packets of `path`: its own if it has one, else the tunnel's.
    fn for_path_mut(&mut self, path: Option<PathId>) -> Option<&mut Device> {
        let index = self
            .devices
            .iter()
            .position(|d| d.path == path)
            .unwrap_or(0);
        self.devices.get_mut(index)
    }
}

enum Command {
    Add {
        config: Box<TunnelConfig>,
        devices: Vec<TunnelDevice>,
        reply: oneshot::Sender<Result<TunnelId, String>>,
    },
    AddEsp {
        health: dataplane::HealthConfig,
        paths: Vec<EspPathConfig>,
        name: String,
        tun: TunDevice,
        links: Vec<EspLinks>,
        reply: oneshot::Sender<Result<TunnelId, String>>,
    },
    Sa(SaChange),
    Update {
        id: TunnelId,
        config: Box<TunnelConfig>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Remove {
        id: TunnelId,
        reply: oneshot::Sender<()>,
    },
    Snapshot {
        reply: oneshot::Sender<Snapshot>,
    },
    Shutdown,
}

/// Owner's end of the packet thread.
pub struct Datapath {
    commands: mpsc::Sender<Command>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl Datapath {
    pub fn spawn() -> anyhow::Result<Self> {
        let poll = Poll::new().context("creating the packet thread's poller")?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).context("creating a waker")?);
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
        registry.register(
            &mut SourceFd(&ipip.as_raw_fd()),
            RAW_IPIP,
            Interest::READABLE,
        )?;
        registry.register(
            &mut SourceFd(&ipv6.as_raw_fd()),
            RAW_IPV6,
            Interest::READABLE,
        )?;
        registry.register(&mut SourceFd(&icmp.as_raw_fd()), ICMPV6, Interest::READABLE)?;
        registry.register(
            &mut SourceFd(&ipip4.as_raw_fd()),
            RAW4_IPIP,
            Interest::READABLE,
        )?;
        registry.register(
            &mut SourceFd(&ipv6in4.as_raw_fd()),
            RAW4_IPV6,
            Interest::READABLE,
        )?;
        registry.register(
            &mut SourceFd(&esp6.as_raw_fd()),
            RAW_ESP,
            Interest::READABLE,
        )?;
        registry.register(
            &mut SourceFd(&esp4.as_raw_fd()),
            RAW4_ESP,
            Interest::READABLE,
        )?;
        registry.register(
            &mut SourceFd(&icmp4.as_raw_fd()),
            ICMPV4,
            Interest::READABLE,
        )?;
        let (tx, rx) = mpsc::channel();
        let mut looper = Loop {
            poll,
            commands: rx,
            core: Dataplane::new(),
            ipip,
            ipv6,
            icmp,
            icmp4,
            ipip4,
            ipv6in4,
            tuns: HashMap::new(),
            slots: HashMap::new(),
            pending: Vec::new(),
            senders: HashMap::new(),
            next_slot: FIRST_TUN,
            buf: vec![0; PACKET_BUF],
            rx: RxBuffers::new(),
            batch: Batch::new(4 * PACKET_BUF),
            esp: EspSide {
                raw6: esp6,
                raw4: esp4,
                tunnels: HashMap::new(),
                senders: HashMap::new(),
                by_remote: HashMap::new(),
                tun_slots: HashMap::new(),
                udp: HashMap::new(),
                next_id: FIRST_ESP_ID,
                batch: EspBatch::new(4 * PACKET_BUF),
                held: None,
            },
        };
        let thread = std::thread::Builder::new()
            .name("v6gate-packets".into())
            .spawn(move || looper.run())
            .context("spawning the packet thread")?;
        Ok(Self {
            commands: tx,
            waker,
            thread: Some(thread),
        })
    }

    fn send(&self, command: Command) -> anyhow::Result<()> {
        self.commands
            .send(command)
            .map_err(|_| anyhow::anyhow!("the packet thread has stopped"))?;
        self.waker.wake().context("waking the packet thread")
    }

    pub async fn add_tunnel(
        &self,
        config: TunnelConfig,
        devices: Vec<TunnelDevice>,
    ) -> anyhow::Result<TunnelId> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Add {
            config: Box::new(config),
            devices,
            reply,
        })?;
        answer
            .await
            .context("the packet thread dropped the request")?
            .map_err(|e| anyhow::anyhow!(e))
    }

    /// Hands an ipsec tunnel's TUN device to the packet thread with an ESP core per path and
    /// no SA yet (inner packets are dropped as `no_sa` until IKE installs one). `links` has
    /// one entry per path.
    pub async fn add_esp_tunnel(
        &self,
        name: &str,
        health: dataplane::HealthConfig,
        paths: Vec<EspPathConfig>,
        tun: TunDevice,
        links: Vec<EspLinks>,
    ) -> anyhow::Result<TunnelId> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::AddEsp {
            health,
            paths,
            name: name.to_string(),
            tun,
            links,
            reply,
        })?;
        answer
            .await
            .context("the packet thread dropped the request")?
            .map_err(|e| anyhow::anyhow!(e))
    }

    /// Where the IKE shell's SA changes go, applied in the order sent.
    pub fn sa_sink(&self) -> SaSink {
        SaSink {
            commands: self.commands.clone(),
            waker: Arc::clone(&self.waker),
        }
    }

    /// Changes a running tunnel's core config in place (a reload that changed its routes):
    /// its devices, counters and path health stay.
    pub async fn update_tunnel(&self, id: TunnelId, config: TunnelConfig) -> anyhow::Result<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Update {
            id,
            config: Box::new(config),
            reply,
        })?;
        answer
            .await
            .context("the packet thread dropped the request")?
            .map_err(|e| anyhow::anyhow!(e))
    }

    pub async fn remove_tunnel(&self, id: TunnelId) -> anyhow::Result<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Remove { id, reply })?;
        answer
            .await
            .context("the packet thread dropped the request")
    }

    pub async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Snapshot { reply })?;
        answer
            .await
            .context("the packet thread dropped the request")
    }

    /// Stops the thread; its TUN devices close, which makes the kernel remove them and every
    /// route through them.
    pub fn shutdown(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.send(Command::Shutdown);
            if thread.join().is_err() {
                warn!("the packet thread panicked");
            }
        }
    }
}

/// Sends [`SaChange`]s to the packet thread from any thread.
#[derive(Clone)]
pub struct SaSink {
    commands: mpsc::Sender<Command>,
    waker: Arc<Waker>,
}

impl SaSink {
    /// False once the packet thread has stopped.
    pub fn send(&self, change: SaChange) -> bool {
        self.commands.send(Command::Sa(change)).is_ok() && self.waker.wake().is_ok()
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Loop {
    poll: Poll,
    commands: mpsc::Receiver<Command>,
    core: Dataplane,
    ipip: RawIpv6Socket,
    ipv6: RawIpv6Socket,
    icmp: Icmpv6Socket,
    /// ICMPv4 destination unreachable, for fragmentation needed about paths over IPv4.
    icmp4: RawIpv4Socket,
    /// Raw IPv4 sockets for paths over IPv4; `ipip4` also sends both protocols, since with
    /// `IP_HDRINCL` the protocol is the one in the header the core built.
    ipip4: RawIpv4Socket,
    ipv6in4: RawIpv4Socket,
    tuns: HashMap<TunnelId, TunnelDevices>,
    slots: HashMap<Token, (TunnelId, Option<PathId>)>,
    /// Devices whose coalescer holds packets not yet written.
    pending: Vec<(TunnelId, Option<PathId>)>,
    /// A send socket bound to each path's local address and connected to its remote (no
    /// per-packet source selection in the kernel), with that local address.
    senders: HashMap<IpAddr, (IpAddr, PathSender)>,
    next_slot: usize,
    buf: Vec<u8>,
    /// Buffers for one `recvmmsg` on a raw socket.
    rx: RxBuffers,
    batch: Batch,
    esp: EspSide,
}

/// [`BATCH_SIZE`] receive slots of [`RX_SLOT`] bytes, allocated once.
struct RxBuffers {
    storage: Vec<u8>,
}

impl RxBuffers {
    fn new() -> Self {
        Self {
            storage: vec![0; BATCH_SIZE * RX_SLOT],
        }
    }

    fn slices(&mut self) -> Vec<IoSliceMut<'_>> {
        self.storage
            .chunks_mut(RX_SLOT)
            .map(IoSliceMut::new)
            .collect()
    }

    fn slot(&mut self, index: usize, len: usize) -> &mut [u8] {
        let start = index * RX_SLOT;
        &mut self.storage[start..start + len.min(RX_SLOT)]
    }
}

/// The ipsec half of the packet thread.
struct EspSide {
    raw6: RawIpv6Socket,
    /// Receives whole IPv4 datagrams; sends with `IP_HDRINCL`.
    raw4: RawIpv4Socket,
    tunnels: HashMap<TunnelId, EspRuntime>,
    /// A send socket bound to each raw-ESP path's local address and connected to its peer
    /// (no per-packet source selection), by peer address.
    senders: HashMap<IpAddr, PathSender>,
    /// The tunnel and path of each peer address.
    by_remote: HashMap<IpAddr, (TunnelId, usize)>,
    tun_slots: HashMap<Token, TunnelId>,
    udp: HashMap<Token, UdpPort>,
    next_id: u32,
    batch: EspBatch,
    /// The tunnel whose output the batch holds and how many packets produced it.
    held: Option<(TunnelId, usize)>,
}

struct EspRuntime {
    name: String,
    core: EspPaths,
    device: Device,
    /// One per path.
    links: Vec<EspLinks>,
    /// Per path: whether its UDP socket still takes `UDP_SEGMENT` trains. Cleared for good
    /// when the kernel or the outgoing device says it cannot.
    udp_gso: Vec<bool>,
    counters: ShellCounters,
}

/// A UDP 4500 socket, registered once per local address and kept for the thread's life (the
/// IKE shell keeps it bound as long).
struct UdpPort {
    local: SocketAddr,
    socket: Arc<UdpSocket>,
    ike: async_mpsc::Sender<Datagram>,
}

impl Loop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(64);
        loop {
            let esp_timeout = self
                .esp
                .tunnels
                .values()
                .filter_map(|t| t.core.poll_timeout())
                .min();
            let timeout = [self.core.poll_timeout(), esp_timeout]
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
                    RAW_IPIP => self.drain_outer(now, true),
                    RAW_IPV6 => self.drain_outer(now, false),
                    ICMPV6 => self.drain_icmp(now),
                    ICMPV4 => self.drain_icmp4(now),
                    RAW4_IPIP => self.drain_outer_ipv4(now, true),
                    RAW4_IPV6 => self.drain_outer_ipv4(now, false),
                    RAW_ESP => self.drain_raw_esp(now, false),
                    RAW4_ESP => self.drain_raw_esp(now, true),
                    token => {
                        if let Some(&(id, path)) = self.slots.get(&token) {
                            self.drain_tun(now, id, path);
                        } else if let Some(&id) = self.esp.tun_slots.get(&token) {
                            self.drain_esp_tun(now, id);
                        } else if self.esp.udp.contains_key(&token) {
                            self.drain_udp(now, token);
                        }
                    }
                }
            }
            if !self.handle_commands() {
                return;
            }
            self.batch.clear();
            self.core.handle_timeout(Instant::now(), &mut self.batch);
            self.flush(None);
            self.log_events();
            self.esp_timeouts(Instant::now());
        }
    }

    /// Returns false when asked to stop.
    fn handle_commands(&mut self) -> bool {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Add {
                    config,
                    devices,
                    reply,
                } => {
                    let _ = reply.send(self.add(*config, devices));
                }
                Command::AddEsp {
                    health,
                    paths,
                    name,
                    tun,
                    links,
                    reply,
                } => {
                    let _ = reply.send(self.add_esp(health, paths, name, tun, links));
                }
                Command::Sa(change) => self.apply_sa_change(change),
                Command::Update { id, config, reply } => {
                    let result = self
                        .core
                        .update_tunnel(id, *config)
                        .map_err(|e| e.to_string());
                    let _ = reply.send(result);
                }
                Command::Remove { id, reply } => {
                    if let Some(devices) = self.tuns.remove(&id) {
                        self.release(devices);
                    }
                    if let Some(config) = self.core.tunnel(id) {
                        for path in &config.paths {
                            if self.senders.get(&path.remote).map(|s| s.0) == Some(path.local) {
                                self.senders.remove(&path.remote);
                            }
                        }
                    }
                    self.core.remove_tunnel(id);
                    self.remove_esp(id);
                    let _ = reply.send(());
                }
                Command::Snapshot { reply } => {
                    let tunnels = self
                        .core
                        .tunnels()
                        .filter_map(|id| {
                            let stats = *self.core.stats(id)?;
                            let shell = self.tuns.get(&id).map(|t| t.counters).unwrap_or_default();
                            let paths = (0..self.core.tunnel(id)?.paths.len())
                                .filter_map(|i| {
                                    let i = u8::try_from(i).ok()?;
                                    self.core.path_stats(id, PathId(i))
                                })
                                .collect();
                            let active_path = self.core.active_path(id);
                            Some(TunnelSnapshot {
                                id,
                                stats,
                                shell,
                                paths,
                                active_path,
                            })
                        })
                        .collect();
                    let esp = self
                        .esp
                        .tunnels
                        .iter()
                        .map(|(&id, t)| EspSnapshot {
                            id,
                            stats: t.core.stats(),
                            shell: t.counters,
                            active_path: t.core.active(),
                            paths: (0..t.core.len())
                                .filter_map(|i| {
                                    let core = t.core.path(i)?;
                                    Some(EspPathSnapshot {
                                        stats: t.core.path_stats(i)?,
                                        keepalives_sent: core.stats().keepalives_sent,
                                        active_outbound: core.active_outbound(),
                                        inbound_sas: core.inbound_count(),
                                    })
                                })
                                .collect(),
                        })
                        .collect();
                    let _ = reply.send(Snapshot { tunnels, esp });
                }
                Command::Shutdown => return false,
            }
        }
        true
    }

    fn add(
        &mut self,
        config: TunnelConfig,
        devices: Vec<TunnelDevice>,
    ) -> Result<TunnelId, String> {
        for d in &devices {
            d.tun
                .set_nonblocking(true)
                .map_err(|e| format!("setting {} non-blocking: {e}", d.tun.name()))?;
        }
        let name = config.name.clone();
        let endpoints: Vec<(IpAddr, IpAddr)> =
            config.paths.iter().map(|p| (p.local, p.remote)).collect();
        let id = self.core.add_tunnel(config).map_err(|e| e.to_string())?;
        for (local, remote) in endpoints {
            match self.senders.get(&remote) {
                // Two paths to one remote from different locals: the shared socket (which
                // takes the source from each packet's header) serves both.
                Some((other, _)) if *other != local => {
                    self.senders.remove(&remote);
                }
                Some(_) => {}
                None => match PathSender::open(local, remote) {
                    Ok(sender) => {
                        self.senders.insert(remote, (local, sender));
                    }
                    // No route yet (a blackholed pin): the shared socket still sends.
                    Err(e) => debug!(tunnel = %name, "no connected socket to {remote}: {e}"),
                },
            }
        }
        let mut owned = TunnelDevices::default();
        for TunnelDevice { path, tun } in devices {
            let token = Token(self.next_slot);
            self.next_slot += 1;
            if let Err(e) = self.poll.registry().register(
                &mut SourceFd(&tun.as_raw_fd()),
                token,
                Interest::READABLE,
            ) {
                let message = format!("registering {} with the poller: {e}", tun.name());
                self.release(owned);
                self.core.remove_tunnel(id);
                return Err(message);
            }
            debug!(tunnel = %name, device = tun.name(), "packet thread owns the TUN device");
            self.slots.insert(token, (id, path));
            owned.devices.push(Device {
                path,
                token,
                tun,
                coalescer: Coalescer::with_mtu(self.core.tunnel(id).map_or(u16::MAX, |c| c.mtu)),
            });
        }
        self.tuns.insert(id, owned);
        Ok(id)
    }

    /// Closes the devices (the kernel removes them and their routes).
    fn release(&mut self, devices: TunnelDevices) {
        for d in devices.devices {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&d.tun.as_raw_fd()));
            self.slots.remove(&d.token);
        }
    }

    fn drain_tun(&mut self, now: Instant, id: TunnelId, path: Option<PathId>) {
        self.batch.clear();
        let mut reads = 0;
        while let Some(tun) = self
            .tuns
            .get(&id)
            .and_then(|t| t.devices.iter().find(|d| d.path == path))
            .map(|d| &d.tun)
        {
            let header = tun.vnet_hdr_len();
            let n = match tun.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!(device = tun.name(), "TUN read failed: {e}");
                    break;
                }
            };
            let (core, batch) = (&mut self.core, &mut self.batch);
            // One read may be a TSO/USO super-packet: the core sees it as the segments the
            // kernel would have sent, each at most the TUN MTU.
            let split = segments(&mut self.buf[..n], header, |segment| {
                let _ = match path {
                    Some(path) => core.handle_inner_on_path(now, id, path, segment, batch),
                    None => core.handle_inner(now, id, segment, batch),
                };
            });
            if let Err(e) = split {
                debug!("unusable TUN read of {n} bytes dropped: {e}");
            }
            reads += 1;
            if reads == TX_READS || self.batch.len() >= TX_HELD {
                self.flush(Some(id));
                self.batch.clear();
                reads = 0;
            }
        }
        self.flush(Some(id));
        self.batch.clear();
    }

    fn drain_outer(&mut self, now: Instant, ipip: bool) {
        self.drain_underlay("raw IPv6", |lp| {
            let socket = if ipip { &lp.ipip } else { &lp.ipv6 };
            let mut received = [Received::BLANK; BATCH_SIZE];
            let n = socket.recv_batch(&mut lp.rx.slices(), &mut received)?;
            let next_header = if ipip {
                wire::ip_proto::IPIP
            } else {
                wire::ip_proto::IPV6
            };
            for (i, r) in received[..n].iter().enumerate() {
                let meta = OuterMeta {
                    src: r.src,
                    dst: r.dst,
                    next_header,
                    traffic_class: r.traffic_class,
                    encap_limit: r.encap_limit,
                };
                let payload = lp.rx.slot(i, r.len);
                let _ = lp.core.handle_outer(now, &meta, payload, &mut lp.batch);
            }
            Ok(n)
        });
    }

    fn drain_outer_ipv4(&mut self, now: Instant, ipip: bool) {
        self.drain_underlay("raw IPv4", |lp| {
            let socket = if ipip { &lp.ipip4 } else { &lp.ipv6in4 };
            let mut received = [Received4::BLANK; BATCH_SIZE];
            let n = socket.recv_batch(&mut lp.rx.slices(), &mut received)?;
            for (i, r) in received[..n].iter().enumerate() {
                let datagram = lp.rx.slot(i, r.len);
                let _ = lp.core.handle_outer_ipv4(now, datagram, &mut lp.batch);
            }
            Ok(n)
        });
    }

    /// Takes batches of underlay packets with `receive` (which returns how many it took)
    /// until the socket is empty, sending what they produced every `RX_BURST` packets and at
    /// the end.
    fn drain_underlay(
        &mut self,
        socket: &str,
        mut receive: impl FnMut(&mut Self) -> io::Result<usize>,
    ) {
        self.batch.clear();
        let mut held = 0;
        loop {
            match receive(self) {
                Ok(0) => break,
                Ok(n) => held += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("{socket} socket receive failed: {e}");
                    break;
                }
            }
            if held >= RX_BURST {
                self.flush(None);
                self.batch.clear();
                held = 0;
            }
        }
        self.flush(None);
    }

    fn drain_icmp(&mut self, now: Instant) {
        self.drain_icmp_socket("ICMPv6", |lp| {
            let r = lp.icmp.recv(&mut lp.buf)?;
            let message = &lp.buf[..r.len];
            let verdict = lp.core.handle_icmpv6(now, r.src, r.dst, message);
            // Not about an RFC 2473 tunnel: perhaps about ESP.
            if verdict == Verdict::Dropped(DropReason::NoTunnel)
                && let Some(report) = dataplane::esp::too_big_v6(r.src, r.dst, message)
            {
                lp.esp.lower_path_mtu(now, report);
            }
            Ok(())
        });
    }

    fn drain_icmp4(&mut self, now: Instant) {
        self.drain_icmp_socket("ICMPv4", |lp| {
            let r = lp.icmp4.recv(&mut lp.buf)?;
            let datagram = &lp.buf[..r.len];
            let verdict = lp.core.handle_icmpv4(now, datagram);
            if verdict == Verdict::Dropped(DropReason::NoTunnel)
                && let Some(report) = dataplane::esp::too_big_v4(datagram)
            {
                lp.esp.lower_path_mtu(now, report);
            }
            Ok(())
        });
    }

    /// Hands the core one ICMP message at a time with `receive_one` until the socket is
    /// empty, logging what each changed (they are rare, so no batching).
    fn drain_icmp_socket(
        &mut self,
        socket: &str,
        mut receive_one: impl FnMut(&mut Self) -> io::Result<()>,
    ) {
        loop {
            match receive_one(self) {
                Ok(()) => self.log_events(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("{socket} socket receive failed: {e}");
                    return;
                }
            }
        }
    }

    /// Sends what the core produced. `origin` is the tunnel whose TUN read caused it, charged
    /// with underlay send failures.
    fn flush(&mut self, origin: Option<TunnelId>) {
        // Outer packets leave in sendmmsg batches, one per family; a super-packet split into
        // 44 segments costs two system calls instead of 44.
        let mut v6: Vec<Transmit<'_>> = Vec::new();
        let mut v4: Vec<Transmit4<'_>> = Vec::new();
        let mut connected = ConnectedRun::default();
        let sender_of = |r: IpAddr| self.senders.get(&r).map(|(_, sender)| sender);
        let mut failed = 0;
        for (destination, packet) in self.batch.iter() {
            // Paths with a connected socket: consecutive packets to one remote go together.
            if let Destination::Underlay { remote } = destination {
                if self.senders.contains_key(&remote) {
                    failed += connected.push(remote, packet, sender_of);
                    continue;
                }
            }
            let (result, charged) = match destination {
                Destination::Underlay {
                    remote: IpAddr::V6(dst),
                } => {
                    v6.push(Transmit { packet, dst });
                    if v6.len() == BATCH_SIZE {
                        failed += send_all(&mut v6, |t| self.ipip.send_batch(t));
                    }
                    continue;
                }
                Destination::Underlay {
                    remote: IpAddr::V4(dst),
                } => {
                    v4.push(Transmit4 { packet, dst });
                    if v4.len() == BATCH_SIZE {
                        failed += send_all(&mut v4, |t| self.ipip4.send_batch(t));
                    }
                    continue;
                }
                Destination::Tun(id) | Destination::TunPath(id, _) => {
                    let path = match destination {
                        Destination::TunPath(_, path) => Some(path),
                        _ => None,
                    };
                    if let Some(d) = self.tuns.get_mut(&id).and_then(|t| t.for_path_mut(path)) {
                        d.coalescer.push(packet);
                        if !self.pending.contains(&(id, d.path)) {
                            self.pending.push((id, d.path));
                        }
                    }
                    continue;
                }
                // The gateway's own ICMP errors: the raw sockets send whole IP packets
                // (HDRINCL) whatever their protocol, and the host routes them to the LAN.
                Destination::Local => (send_local(&self.ipip4, &self.ipip, packet), origin),
            };
            if let Err(e) = result {
                if let Some(t) = charged.and_then(|id| self.tuns.get_mut(&id)) {
                    t.counters.send_errors += 1;
                    if t.counters.send_errors.is_power_of_two() {
                        debug!("send failed ({} so far): {e}", t.counters.send_errors);
                    }
                }
            }
        }
        failed += connected.send(sender_of);
        failed += send_all(&mut v6, |t| self.ipip.send_batch(t));
        failed += send_all(&mut v4, |t| self.ipip4.send_batch(t));
        if failed > 0 {
            if let Some(t) = origin.and_then(|id| self.tuns.get_mut(&id)) {
                t.counters.send_errors += failed;
            }
        }
        self.write_pending();
    }

    /// Writes what the devices' coalescers hold, one frame (a super-packet or a lone
    /// packet, with its virtio-net header) per write.
    fn write_pending(&mut self) {
        for (id, path) in self.pending.drain(..) {
            let Some(t) = self.tuns.get_mut(&id) else {
                continue;
            };
            let Some(d) = t.devices.iter_mut().find(|d| d.path == path) else {
                continue;
            };
            let mut failed = 0;
            for frame in d.coalescer.flush() {
                if let Err(e) = d.tun.write(frame) {
                    failed += 1;
                    debug!(device = d.tun.name(), "TUN write failed: {e}");
                }
            }
            d.coalescer.clear();
            t.counters.send_errors += failed;
        }
    }

    fn log_events(&mut self) {
        while let Some(event) = self.core.poll_event() {
            let tunnel = match &event {
                Event::PathMtuChanged { tunnel, .. }
                | Event::PathStateChanged { tunnel, .. }
                | Event::ActivePathChanged { tunnel, .. } => *tunnel,
                #[allow(unreachable_patterns)]
                _ => {
                    debug!("dataplane event: {event:?}");
                    continue;
                }
            };
            let Some(config) = self.core.tunnel(tunnel) else {
                continue;
            };
            let path_name = |p: PathId| {
                config
                    .paths
                    .get(p.index())
                    .map_or_else(|| p.to_string(), |p| p.name.clone())
            };
            match event {
                Event::PathMtuChanged {
                    path, mtu, reason, ..
                } => info!(
                    tunnel = %config.name,
                    path = %path_name(path),
                    "path MTU now {mtu} ({reason:?})"
                ),
                Event::PathStateChanged {
                    path,
                    state,
                    reason,
                    ..
                } => info!(
                    tunnel = %config.name,
                    path = %path_name(path),
                    "path {state} ({reason})"
                ),
                Event::ActivePathChanged {
                    from, to, reason, ..
                } => info!(
                    tunnel = %config.name,
                    "traffic moved from path {} to path {} ({reason})",
                    path_name(from),
                    path_name(to)
                ),
                #[allow(unreachable_patterns)]
                other => debug!("dataplane event: {other:?}"),
            }
        }
    }
}

/// The ipsec half of the loop.
impl Loop {
    fn add_esp(
        &mut self,
        health: dataplane::HealthConfig,
        paths: Vec<EspPathConfig>,
        name: String,
        tun: TunDevice,
        links: Vec<EspLinks>,
    ) -> Result<TunnelId, String> {
        tun.set_nonblocking(true)
            .map_err(|e| format!("setting {} non-blocking: {e}", tun.name()))?;
        if paths.is_empty() || paths.len() != links.len() || paths.len() > 256 {
            return Err(format!(
                "an ipsec tunnel needs 1 to 256 paths, each with its sockets; got {} path(s) \
                 and {} set(s) of sockets",
                paths.len(),
                links.len()
            ));
        }
        for p in &paths {
            if self.esp.by_remote.contains_key(&p.esp.remote) {
                return Err(format!(
                    "an ipsec tunnel to {} is running already",
                    p.esp.remote
                ));
            }
        }
        let registry = self.poll.registry();
        for (p, l) in paths.iter().zip(&links) {
            let local = SocketAddr::new(p.esp.local, l.udp.local_addr().map_or(0, |a| a.port()));
            if self.esp.udp.values().any(|u| u.local == local) {
                continue;
            }
            let token = Token(self.next_slot);
            self.next_slot += 1;
            registry
                .register(&mut SourceFd(&l.udp.as_raw_fd()), token, Interest::READABLE)
                .map_err(|e| format!("registering UDP {local} with the poller: {e}"))?;
            // Trains of ESP-in-UDP from a peer that segments (or merged by the kernel's
            // GRO) are read whole; without it the kernel splits them again first.
            if let Err(e) = sys::udp::enable_gro(&*l.udp) {
                info!(tunnel = %name, "UDP {local}: no receive offload (UDP_GRO): {e}");
            }
            self.esp.udp.insert(
                token,
                UdpPort {
                    local,
                    socket: Arc::clone(&l.udp),
                    ike: l.ike.clone(),
                },
            );
        }
        let token = Token(self.next_slot);
        self.next_slot += 1;
        registry
            .register(&mut SourceFd(&tun.as_raw_fd()), token, Interest::READABLE)
            .map_err(|e| format!("registering {} with the poller: {e}", tun.name()))?;
        let id = TunnelId(self.esp.next_id);
        self.esp.next_id = self.esp.next_id.wrapping_add(1).max(FIRST_ESP_ID);
        debug!(tunnel = %name, device = tun.name(), "packet thread owns the TUN device (ESP)");
        self.esp.tun_slots.insert(token, id);
        for (i, p) in paths.iter().enumerate() {
            self.esp.by_remote.insert(p.esp.remote, (id, i));
            match PathSender::open(p.esp.local, p.esp.remote) {
                Ok(sender) => {
                    self.esp.senders.insert(p.esp.remote, sender);
                }
                // No route yet (a blackholed pin): the shared raw socket still sends.
                Err(e) => debug!(tunnel = %name, "no connected socket to {}: {e}", p.esp.remote),
            }
        }
        self.esp.tunnels.insert(
            id,
            EspRuntime {
                name,
                core: EspPaths::new(health, paths),
                device: Device {
                    path: None,
                    token,
                    tun,
                    coalescer: Coalescer::default(),
                },
                udp_gso: links
                    .iter()
                    .map(|l| sys::udp::segmentation_supported(&*l.udp))
                    .collect(),
                links,
                counters: ShellCounters::default(),
            },
        );
        Ok(id)
    }

    /// Closes the tunnel's device; its SAs go with the core.
    fn remove_esp(&mut self, id: TunnelId) {
        let Some(t) = self.esp.tunnels.remove(&id) else {
            return;
        };
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&t.device.tun.as_raw_fd()));
        self.esp.tun_slots.remove(&t.device.token);
        let by_remote = &mut self.esp.by_remote;
        self.esp
            .senders
            .retain(|remote, _| by_remote.get(remote).is_none_or(|(v, _)| *v != id));
        by_remote.retain(|_, (v, _)| *v != id);
    }

    fn apply_sa_change(&mut self, change: SaChange) {
        let (name, path) = match &change {
            SaChange::Install { tunnel, path, .. }
            | SaChange::Remove { tunnel, path, .. }
            | SaChange::Clear { tunnel, path } => (tunnel.clone(), *path),
        };
        let Some((&id, t)) = self.esp.tunnels.iter_mut().find(|(_, t)| t.name == name) else {
            debug!(tunnel = %name, "SA change for a tunnel the packet thread does not run");
            return;
        };
        let path_name = t.core.path_name(path).unwrap_or("?").to_string();
        let now = Instant::now();
        match change {
            SaChange::Install {
                child, udp_port, ..
            } => match sa_pair(&child) {
                Ok((inbound, outbound)) => {
                    t.core.install_sa(now, path, inbound, outbound, udp_port);
                    info!(
                        tunnel = %t.name,
                        path = %path_name,
                        "ESP SA installed: in {:08x} out {:08x}{}",
                        child.spi_in,
                        child.spi_out,
                        if udp_port.is_some() { " (UDP 4500)" } else { "" }
                    );
                }
                Err(e) => warn!(tunnel = %t.name, "cannot install the CHILD SA: {e}"),
            },
            SaChange::Remove {
                spi_in, spi_out, ..
            } => {
                t.core.remove_sa(now, path, spi_in, spi_out);
                debug!(tunnel = %t.name, path = %path_name, "ESP SA removed: in {spi_in:08x} out {spi_out:08x}");
            }
            SaChange::Clear { .. } => {
                t.core.clear_sas(now, path);
                debug!(tunnel = %t.name, path = %path_name, "all ESP SAs of the path removed");
            }
        }
        // A path without SAs is down: traffic may have moved.
        self.esp.batch.clear();
        self.esp.flush(id);
    }

    fn drain_esp_tun(&mut self, now: Instant, id: TunnelId) {
        self.esp.batch.clear();
        let mut reads = 0;
        while let Some(t) = self.esp.tunnels.get_mut(&id) {
            let header = t.device.tun.vnet_hdr_len();
            let n = match t.device.tun.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!(device = t.device.tun.name(), "TUN read failed: {e}");
                    break;
                }
            };
            let batch = &mut self.esp.batch;
            let split = segments(&mut self.buf[..n], header, |segment| {
                let _ = t.core.handle_inner(now, segment, batch);
            });
            if let Err(e) = split {
                debug!("unusable TUN read of {n} bytes dropped: {e}");
            }
            reads += 1;
            if reads == TX_READS || self.esp.batch.len() >= TX_HELD {
                self.esp.flush(id);
                self.esp.batch.clear();
                reads = 0;
            }
        }
        self.esp.flush(id);
        self.esp.batch.clear();
    }

    /// Raw ESP: IPv6 sockets hand over the payload, IPv4 sockets the whole datagram.
    fn drain_raw_esp(&mut self, now: Instant, ipv4: bool) {
        loop {
            let mut received6 = [Received::BLANK; BATCH_SIZE];
            let mut received4 = [Received4::BLANK; BATCH_SIZE];
            let result = if ipv4 {
                self.esp
                    .raw4
                    .recv_batch(&mut self.rx.slices(), &mut received4)
            } else {
                self.esp
                    .raw6
                    .recv_batch(&mut self.rx.slices(), &mut received6)
            };
            let n = match result {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("raw ESP socket receive failed: {e}");
                    break;
                }
            };
            if n == 0 {
                break;
            }
            for i in 0..n {
                let (from, len) = if ipv4 {
                    (IpAddr::V4(received4[i].src), received4[i].len)
                } else {
                    (IpAddr::V6(received6[i].src), received6[i].len)
                };
                let packet = self.rx.slot(i, len);
                let start = if ipv4 {
                    (usize::from(packet.first().copied().unwrap_or(0) & 0x0f) * 4).min(len)
                } else {
                    0
                };
                self.esp.open(now, from, &packet[start..]);
            }
        }
        self.esp.finish_burst();
    }

    fn drain_udp(&mut self, now: Instant, token: Token) {
        while let Some(port) = self.esp.udp.get(&token) {
            let received = match sys::udp::recv(&*port.socket, &mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("UDP {} receive failed: {e}", port.local);
                    break;
                }
            };
            let remote = received.src;
            if received.segment.is_some() {
                self.esp.count_train_received(remote.ip());
            }
            for payload in received.datagrams(&self.buf) {
                match classify_udp(payload) {
                    UdpKind::Esp => self.esp.open(now, remote.ip(), payload),
                    UdpKind::Ike => {
                        let Some(port) = self.esp.udp.get(&token) else {
                            break;
                        };
                        let datagram = Datagram {
                            local: port.local,
                            remote,
                            payload: payload[4..].to_vec(),
                        };
                        if port.ike.try_send(datagram).is_err() {
                            debug!("IKE datagram from {remote} on 4500 dropped: IKE queue full");
                        }
                    }
                    UdpKind::Keepalive | UdpKind::Malformed => {}
                }
            }
        }
        self.esp.finish_burst();
    }

    fn esp_timeouts(&mut self, now: Instant) {
        let due: Vec<TunnelId> = self
            .esp
            .tunnels
            .iter()
            .filter(|(_, t)| t.core.poll_timeout().is_some_and(|at| at <= now))
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            self.esp.batch.clear();
            if let Some(t) = self.esp.tunnels.get_mut(&id) {
                t.core.handle_timeout(now, &mut self.esp.batch);
            }
            self.esp.flush(id);
        }
    }
}

impl EspSide {
    /// One ESP packet (from its SPI on) from `from`, to the tunnel of that peer. What it
    /// produces is held in the batch, so that a burst of one tunnel goes out together (one
    /// coalesced TUN write per flow): the batch is sent when the next packet is for another
    /// tunnel, after `RX_BURST` packets, or by `finish_burst`.
    fn open(&mut self, now: Instant, from: IpAddr, esp: &[u8]) {
        let Some(&(id, path)) = self.by_remote.get(&from) else {
            return;
        };
        if self
            .held
            .is_some_and(|(held, n)| held != id || n == RX_BURST)
        {
            self.finish_burst();
        }
        let Some(t) = self.tunnels.get_mut(&id) else {
            return;
        };
        let _ = t.core.handle_esp(now, path, esp, from, &mut self.batch);
        let n = self.held.map_or(0, |(_, n)| n);
        self.held = Some((id, n + 1));
    }

    /// A router said our ESP to `report.remote` met a smaller link: lowers that path's MTU
    /// (and logs it) when the report names one of our paths from its own local address.
    fn lower_path_mtu(&mut self, now: Instant, report: dataplane::esp::TooBig) {
        let Some(&(id, path)) = self.by_remote.get(&report.remote) else {
            return;
        };
        let Some(t) = self.tunnels.get_mut(&id) else {
            return;
        };
        if t.core.path(path).map(|p| p.config().local) != Some(report.local) {
            return;
        }
        let _ = t
            .core
            .lower_path_mtu(now, path, report.link_mtu, report.reason);
        self.batch.clear();
        self.flush(id);
    }

    /// Charges a received UDP train to the tunnel of the peer that sent it.
    fn count_train_received(&mut self, from: IpAddr) {
        let Some(&(id, _)) = self.by_remote.get(&from) else {
            return;
        };
        if let Some(t) = self.tunnels.get_mut(&id) {
            t.counters.udp_trains_received += 1;
        }
    }

    /// Sends what `open` has held back.
    fn finish_burst(&mut self) {
        if let Some((id, _)) = self.held.take() {
            self.flush(id);
        }
        self.batch.clear();
    }

    /// Sends what tunnel `id`'s core produced and passes its events on.
    fn flush(&mut self, id: TunnelId) {
        let Some(t) = self.tunnels.get_mut(&id) else {
            return;
        };
        let mut v6: Vec<Transmit<'_>> = Vec::new();
        let mut v4: Vec<Transmit4<'_>> = Vec::new();
        // Consecutive ESP-in-UDP packets to one peer of one size (the last may be shorter)
        // leave as one UDP_SEGMENT train: TCP in the tunnel makes most of them.
        let mut run: Option<UdpRun> = None;
        let mut connected = ConnectedRun::default();
        let sender_of = |r: IpAddr| self.senders.get(&r);
        for (index, (destination, packet)) in self.batch.iter().enumerate() {
            // Raw ESP on a path with a connected socket: consecutive packets to one peer go
            // together, without addresses.
            if let EspDestination::Raw { remote } = destination {
                if self.senders.contains_key(&remote) {
                    t.counters.send_errors += connected.push(remote, packet, sender_of);
                    continue;
                }
            }
            if let EspDestination::Udp { remote } = destination {
                let Some(path) = path_of_destination(&t.core, destination) else {
                    continue;
                };
                if let Some(r) = run.as_mut() {
                    if r.extend(index, path, remote, packet.len()) {
                        continue;
                    }
                    send_udp_run(t, &self.batch, r);
                }
                run = Some(UdpRun::new(index, path, remote, packet.len()));
                continue;
            }
            let result = match destination {
                EspDestination::Raw {
                    remote: IpAddr::V6(dst),
                } => {
                    v6.push(Transmit { packet, dst });
                    if v6.len() == BATCH_SIZE {
                        t.counters.send_errors += send_all(&mut v6, |b| self.raw6.send_batch(b));
                    }
                    continue;
                }
                EspDestination::Raw {
                    remote: IpAddr::V4(dst),
                } => {
                    v4.push(Transmit4 { packet, dst });
                    if v4.len() == BATCH_SIZE {
                        t.counters.send_errors += send_all(&mut v4, |b| self.raw4.send_batch(b));
                    }
                    continue;
                }
                EspDestination::Udp { .. } => continue,
                EspDestination::Tun => {
                    t.device.coalescer.push(packet);
                    continue;
                }
                EspDestination::Local => send_local(&self.raw4, &self.raw6, packet),
            };
            if let Err(e) = result {
                t.counters.send_errors += 1;
                if t.counters.send_errors.is_power_of_two() {
                    debug!(tunnel = %t.name, "send failed ({} so far): {e}", t.counters.send_errors);
                }
            }
        }
        if let Some(r) = &run {
            send_udp_run(t, &self.batch, r);
        }
        t.counters.send_errors += connected.send(sender_of);
        t.counters.send_errors += send_all(&mut v6, |b| self.raw6.send_batch(b));
        t.counters.send_errors += send_all(&mut v4, |b| self.raw4.send_batch(b));
        for frame in t.device.coalescer.flush() {
            if let Err(e) = t.device.tun.write(frame) {
                t.counters.send_errors += 1;
                debug!(tunnel = %t.name, "TUN write failed: {e}");
            }
        }
        t.device.coalescer.clear();
        while let Some((path, event)) = t.core.poll_esp_event() {
            match event {
                EspEvent::EspReceived { spi } => {
                    if let Some(links) = t.links.get(path) {
                        let _ = links.liveness.send(spi);
                    }
                }
                EspEvent::RekeyNeeded { spi } => warn!(
                    tunnel = %t.name,
                    "outbound SA {spi:08x} ran out of sequence numbers; waiting for the rekey"
                ),
            }
        }
        while let Some(event) = t.core.poll_event() {
            let name = |p: usize| t.core.path_name(p).unwrap_or("?").to_string();
            match event {
                EspPathEvent::StateChanged {
                    path,
                    state,
                    reason,
                } => info!(tunnel = %t.name, path = %name(path), "path {state} ({reason})"),
                EspPathEvent::ActivePathChanged { from, to, reason } => info!(
                    tunnel = %t.name,
                    "traffic moved from path {} to path {} ({reason})",
                    name(from),
                    name(to)
                ),
                EspPathEvent::PathMtuChanged { path, mtu, reason } => info!(
                    tunnel = %t.name,
                    path = %name(path),
                    "path MTU now {mtu} ({reason:?})"
                ),
            }
        }
    }
}

/// Consecutive packets to one remote, for that path's connected socket ([`PathSender`]):
/// they leave `BATCH_SIZE` per `sendmmsg`, without addresses.
#[derive(Default)]
struct ConnectedRun<'a> {
    to: Option<IpAddr>,
    packets: Vec<&'a [u8]>,
}

impl<'a> ConnectedRun<'a> {
    /// Adds `packet` for `remote`, first sending what the run holds when it is for another
    /// remote or full; returns how many of those could not be sent.
    fn push<'s>(
        &mut self,
        remote: IpAddr,
        packet: &'a [u8],
        sender_of: impl Fn(IpAddr) -> Option<&'s PathSender>,
    ) -> u64 {
        let mut failed = 0;
        if self.to != Some(remote) || self.packets.len() == BATCH_SIZE {
            failed = self.send(sender_of);
            self.to = Some(remote);
        }
        self.packets.push(packet);
        failed
    }

    /// Sends what the run holds; returns how many could not be sent.
    fn send<'s>(&mut self, sender_of: impl Fn(IpAddr) -> Option<&'s PathSender>) -> u64 {
        match self.to.and_then(sender_of) {
            Some(sender) => send_all(&mut self.packets, |p| sender.send_batch(p)),
            None => {
                self.packets.clear();
                0
            }
        }
    }
}

/// Consecutive entries of an [`EspBatch`] bound for one peer over one path's UDP socket, all
/// `segment` bytes long but the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UdpRun {
    first: usize,
    count: usize,
    bytes: usize,
    path: usize,
    remote: SocketAddr,
    segment: usize,
    /// The last packet was shorter than `segment`: nothing may follow it in the train.
    closed: bool,
}

impl UdpRun {
    fn new(index: usize, path: usize, remote: SocketAddr, len: usize) -> Self {
        Self {
            first: index,
            count: 1,
            bytes: len,
            path,
            remote,
            segment: len,
            closed: false,
        }
    }

    /// Takes entry `index` into the run if it can ride in the same train.
    fn extend(&mut self, index: usize, path: usize, remote: SocketAddr, len: usize) -> bool {
        let fits = !self.closed
            && index == self.first + self.count
            && path == self.path
            && remote == self.remote
            && len <= self.segment
            && len > 0
            && self.count < sys::udp::MAX_SEGMENTS
            && self.bytes + len <= sys::udp::MAX_PAYLOAD;
        if fits {
            self.count += 1;
            self.bytes += len;
            self.closed = len < self.segment;
        }
        fits
    }
}

/// Sends a run as one train, or datagram by datagram when it is one packet, when the path's
/// socket cannot take trains, or when the kernel refuses this train (a segment over the
/// route's MTU, say).
fn send_udp_run(t: &mut EspRuntime, batch: &EspBatch, run: &UdpRun) {
    let Some(links) = t.links.get(run.path) else {
        return;
    };
    let train = run.count > 1 && t.udp_gso.get(run.path).copied().unwrap_or(false);
    if train {
        if let Some(payload) = batch.span(run.first..run.first + run.count) {
            match sys::udp::send_segments(&*links.udp, run.remote, payload, run.segment) {
                Ok(_) => {
                    t.counters.udp_trains_sent += 1;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    t.counters.send_errors += u64::try_from(run.count).unwrap_or(u64::MAX);
                    return;
                }
                Err(e) if sys::udp::is_unsupported(&e) => {
                    warn!(
                        tunnel = %t.name,
                        "UDP segmentation offload refused ({e}); sending ESP-in-UDP datagram by datagram from now on"
                    );
                    if let Some(flag) = t.udp_gso.get_mut(run.path) {
                        *flag = false;
                    }
                }
                Err(e) => {
                    debug!(tunnel = %t.name, "UDP train of {} refused ({e}); sent datagram by datagram", run.count)
                }
            }
        }
    }
    for index in run.first..run.first + run.count {
        let Some((_, packet)) = batch.get(index) else {
            continue;
        };
        if let Err(e) = links.udp.send_to(packet, run.remote) {
            t.counters.send_errors += 1;
            if t.counters.send_errors.is_power_of_two() {
                debug!(tunnel = %t.name, "send failed ({} so far): {e}", t.counters.send_errors);
            }
        }
    }
}

/// dataplane's suite for the one IKE negotiated.
fn esp_suite(suite: &ike::proposal::ChildSuite) -> Result<Suite, String> {
    use ike::crypto::{Encr, Integ};
    match (suite.encr, suite.integ) {
        (Encr::AesGcm16(key_bits), None) => Ok(Suite::AesGcm16 { key_bits }),
        (Encr::AesCbc(key_bits), Some(Integ::HmacSha1_96)) => Ok(Suite::AesCbc {
            key_bits,
            integrity: Integrity::HmacSha1_96,
        }),
        (Encr::AesCbc(key_bits), Some(Integ::HmacSha256_128)) => Ok(Suite::AesCbc {
            key_bits,
            integrity: Integrity::HmacSha256_128,
        }),
        (Encr::TripleDesCbc, Some(Integ::HmacSha1_96)) => Ok(Suite::TripleDesCbc {
            integrity: Integrity::HmacSha1_96,
        }),
        (Encr::TripleDesCbc, Some(Integ::HmacSha256_128)) => Ok(Suite::TripleDesCbc {
            integrity: Integrity::HmacSha256_128,
        }),
        (encr, integ) => Err(format!(
            "ESP suite {encr:?} with {integ:?} is not one the dataplane implements"
        )),
    }
}

/// Both directions of a CHILD SA, keyed as IKE derived them.
fn sa_pair(child: &ike::ChildSaInfo) -> Result<(InboundSa, OutboundSa), String> {
    let suite = esp_suite(&child.suite)?;
    let esn = child.suite.esn;
    let inbound = InboundSa::new(child.spi_in, suite, &child.encr_in, &child.integ_in, esn)
        .map_err(|e| format!("inbound SA {:08x}: {e}", child.spi_in))?;
    let outbound = OutboundSa::new(child.spi_out, suite, &child.encr_out, &child.integ_out, esn)
        .map_err(|e| format!("outbound SA {:08x}: {e}", child.spi_out))?;
    Ok((inbound, outbound))
}

/// Sends a whole IPv4 or IPv6 packet through the host's stack to its destination.
fn send_local(v4: &RawIpv4Socket, v6: &RawIpv6Socket, packet: &[u8]) -> io::Result<()> {
    if let Ok(ip) = wire::Ipv4Packet::new_checked(packet) {
        v4.send_to(packet, ip.dst_addr()).map(drop)
    } else if let Ok(ip) = wire::Ipv6Packet::new_checked(packet) {
        v6.send_to(packet, ip.dst_addr()).map(drop)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "locally originated packet is neither IPv4 nor IPv6",
        ))
    }
}

/// Hands `each` the packets one TUN read holds: itself, or the segments of a super-packet
/// when the device prefixes reads with a virtio-net header of `header` bytes.
fn segments(read: &mut [u8], header: usize, each: impl FnMut(&mut [u8])) -> Result<usize, String> {
    let mut each = each;
    if header == 0 {
        each(read);
        return Ok(1);
    }
    let vnet = wire::virtio::Packet::new_checked(&read[..])
        .and_then(|p| wire::virtio::Repr::parse(&p))
        .map_err(|e| format!("virtio-net header: {e}"))?;
    dataplane::offload::split(&vnet, &mut read[header..], each).map_err(|e| e.to_string())
}

/// Sends every transmit, `BATCH_SIZE` per system call, and empties the list; returns how many
/// could not be sent. A failing packet is skipped so the rest still go.
fn send_all<T>(list: &mut Vec<T>, send: impl Fn(&[T]) -> io::Result<usize>) -> u64 {
    let mut failed = 0;
    let mut start = 0;
    while start < list.len() {
        match send(&list[start..]) {
            Ok(0) => {
                failed += 1;
                start += 1;
            }
            Ok(n) => start += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                debug!("underlay send failed: {e}");
                failed += 1;
                start += 1;
            }
        }
    }
    list.clear();
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use ike::crypto::{Encr, Integ};
    use ike::proposal::ChildSuite;

    fn suite(encr: Encr, integ: Option<Integ>) -> ChildSuite {
        ChildSuite {
            encr,
            integ,
            dh: None,
            esn: false,
        }
    }

    /// One end's view of a CHILD SA; `mirror` gives the peer's.
    fn child(suite: ChildSuite) -> ike::ChildSaInfo {
        let key = |seed: u8, len: usize| (0..len).map(|i| seed ^ i as u8).collect::<Vec<u8>>();
        let encr = suite.encr.key_len();
        let integ = suite.integ.map_or(0, Integ::key_len);
        ike::ChildSaInfo {
            spi_in: 0xc000_0001,
            spi_out: 0xc000_0002,
            suite,
            encr_in: key(0x11, encr),
            integ_in: key(0x22, integ),
            encr_out: key(0x33, encr),
            integ_out: key(0x44, integ),
            local_ts: Vec::new(),
            remote_ts: Vec::new(),
            udp_encap: false,
            local: "[2001:db8:0:1::1]:500".parse().unwrap(),
            remote: "[2001:db8:0:2::1]:500".parse().unwrap(),
            replaces: None,
        }
    }

    fn mirror(c: &ike::ChildSaInfo) -> ike::ChildSaInfo {
        let mut m = c.clone();
        std::mem::swap(&mut m.spi_in, &mut m.spi_out);
        std::mem::swap(&mut m.encr_in, &mut m.encr_out);
        std::mem::swap(&mut m.integ_in, &mut m.integ_out);
        m
    }

    #[test]
    fn udp_runs_take_equal_sizes_and_one_shorter_tail() {
        let peer: SocketAddr = "[2001:db8:b::1]:4500".parse().unwrap();
        let other: SocketAddr = "[2001:db8:b::1]:4501".parse().unwrap();
        let mut run = UdpRun::new(3, 0, peer, 1400);
        assert!(run.extend(4, 0, peer, 1400));
        assert!(!run.extend(6, 0, peer, 1400), "entry 5 went elsewhere");
        assert!(!run.extend(5, 1, peer, 1400), "another path's socket");
        assert!(!run.extend(5, 0, other, 1400), "another peer port");
        assert!(!run.extend(5, 0, peer, 1401), "longer than the segment");
        assert!(run.extend(5, 0, peer, 90));
        assert!(!run.extend(6, 0, peer, 90), "nothing after a short tail");
        assert_eq!((run.first, run.count, run.bytes), (3, 3, 2890));
        assert_eq!(run.segment, 1400);
    }

    #[test]
    fn udp_runs_stop_at_the_kernel_limits() {
        let peer: SocketAddr = "198.51.100.2:4500".parse().unwrap();
        let mut run = UdpRun::new(0, 0, peer, 100);
        let mut taken = 1;
        while run.extend(taken, 0, peer, 100) {
            taken += 1;
        }
        assert_eq!(taken, sys::udp::MAX_SEGMENTS);
        let mut run = UdpRun::new(0, 0, peer, 1500);
        let mut taken = 1;
        while run.extend(taken, 0, peer, 1500) {
            taken += 1;
        }
        assert_eq!(taken, sys::udp::MAX_PAYLOAD / 1500);
        assert!(run.bytes <= sys::udp::MAX_PAYLOAD);
    }

    #[test]
    fn ike_suites_map_to_the_dataplane_ones() {
        assert_eq!(
            esp_suite(&suite(Encr::AesGcm16(128), None)),
            Ok(Suite::AesGcm16 { key_bits: 128 })
        );
        assert_eq!(
            esp_suite(&suite(Encr::AesCbc(128), Some(Integ::HmacSha1_96))),
            Ok(Suite::AesCbc {
                key_bits: 128,
                integrity: Integrity::HmacSha1_96
            })
        );
        assert_eq!(
            esp_suite(&suite(Encr::AesCbc(256), Some(Integ::HmacSha256_128))),
            Ok(Suite::AesCbc {
                key_bits: 256,
                integrity: Integrity::HmacSha256_128
            })
        );
        assert_eq!(
            esp_suite(&suite(Encr::TripleDesCbc, Some(Integ::HmacSha1_96))),
            Ok(Suite::TripleDesCbc {
                integrity: Integrity::HmacSha1_96
            })
        );
        assert!(esp_suite(&suite(Encr::AesCbc(128), None)).is_err());
        assert!(esp_suite(&suite(Encr::AesCbc(128), Some(Integ::HmacSha384_192))).is_err());
    }

    #[test]
    fn what_one_end_seals_the_other_opens() {
        for s in [
            suite(Encr::AesGcm16(128), None),
            suite(Encr::AesCbc(128), Some(Integ::HmacSha1_96)),
        ] {
            let ours = child(s);
            let (_, mut outbound) = sa_pair(&ours).unwrap();
            let (mut inbound, _) = sa_pair(&mirror(&ours)).unwrap();
            assert_eq!(outbound.spi(), inbound.spi());
            let payload: Vec<u8> = (0..100u8).collect();
            let mut sealed = vec![0xa5; 256];
            let n = outbound.seal(4, &payload, &mut sealed).unwrap();
            let mut out = vec![0x5a; 256];
            let opened = inbound.open(&sealed[..n], &mut out).unwrap();
            assert_eq!((opened.next_header, opened.payload), (4, &payload[..]));
            // Keyed the same way round, the keys do not match: authentication fails.
            let (mut wrong, _) = sa_pair(&ours).unwrap();
            let mut sealed = vec![0; 256];
            let n = outbound.seal(4, &payload, &mut sealed).unwrap();
            sealed[..4].copy_from_slice(&ours.spi_in.to_be_bytes());
            assert!(wrong.open(&sealed[..n], &mut out).is_err());
        }
    }

    #[test]
    fn short_keys_are_refused_with_the_spi() {
        let mut c = child(suite(Encr::AesGcm16(128), None));
        c.encr_out.truncate(5);
        let e = sa_pair(&c).unwrap_err();
        assert!(e.contains("c0000002"), "{e}");
    }
}
