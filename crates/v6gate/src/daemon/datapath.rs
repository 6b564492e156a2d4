//! The packet thread: a mio loop that moves bytes between TUN devices, raw sockets and the
//! sans-IO [`dataplane::Dataplane`]. It holds no protocol logic; every decision is the core's.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use dataplane::{
    Batch, Dataplane, Destination, Event, OuterMeta, PathId, PathStats, TunnelConfig, TunnelId,
};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use sys::raw::{Icmpv6Socket, RawIpv4Socket, RawIpv6Socket};
use sys::tun::TunDevice;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

const WAKER: Token = Token(0);
const RAW_IPIP: Token = Token(1);
const RAW_IPV6: Token = Token(2);
const ICMPV6: Token = Token(3);
const RAW4_IPIP: Token = Token(4);
const RAW4_IPV6: Token = Token(5);
const FIRST_TUN: usize = 16;

/// Large enough for any IPv6 packet a TUN or raw socket can hand us.
const PACKET_BUF: usize = 65_536;

/// Counters the shell keeps itself because only the shell sees them.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShellCounters {
    pub send_errors: u64,
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
}

#[derive(Default)]
struct TunnelDevices {
    devices: Vec<Device>,
    counters: ShellCounters,
}

impl TunnelDevices {
    /// The device for packets of `path`: its own if it has one, else the tunnel's.
    fn for_path(&self, path: Option<PathId>) -> Option<&Device> {
        self.devices
            .iter()
            .find(|d| d.path == path)
            .or_else(|| self.devices.first())
    }
}

enum Command {
    Add {
        config: Box<TunnelConfig>,
        devices: Vec<TunnelDevice>,
        reply: oneshot::Sender<Result<TunnelId, String>>,
    },
    Remove {
        id: TunnelId,
        reply: oneshot::Sender<()>,
    },
    Snapshot {
        reply: oneshot::Sender<Vec<TunnelSnapshot>>,
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
        let (tx, rx) = mpsc::channel();
        let mut looper = Loop {
            poll,
            commands: rx,
            core: Dataplane::new(),
            ipip,
            ipv6,
            icmp,
            ipip4,
            ipv6in4,
            tuns: HashMap::new(),
            slots: HashMap::new(),
            next_slot: FIRST_TUN,
            buf: vec![0; PACKET_BUF],
            batch: Batch::new(4 * PACKET_BUF),
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

    pub async fn remove_tunnel(&self, id: TunnelId) -> anyhow::Result<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Remove { id, reply })?;
        answer
            .await
            .context("the packet thread dropped the request")
    }

    pub async fn snapshot(&self) -> anyhow::Result<Vec<TunnelSnapshot>> {
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
    /// Raw IPv4 sockets for paths over IPv4; `ipip4` also sends both protocols, since with
    /// `IP_HDRINCL` the protocol is the one in the header the core built.
    ipip4: RawIpv4Socket,
    ipv6in4: RawIpv4Socket,
    tuns: HashMap<TunnelId, TunnelDevices>,
    slots: HashMap<Token, (TunnelId, Option<PathId>)>,
    next_slot: usize,
    buf: Vec<u8>,
    batch: Batch,
}

impl Loop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(64);
        loop {
            let timeout = self
                .core
                .poll_timeout()
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
                    RAW4_IPIP => self.drain_outer_ipv4(now, true),
                    RAW4_IPV6 => self.drain_outer_ipv4(now, false),
                    token => {
                        if let Some(&(id, path)) = self.slots.get(&token) {
                            self.drain_tun(now, id, path);
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
                Command::Remove { id, reply } => {
                    if let Some(devices) = self.tuns.remove(&id) {
                        self.release(devices);
                    }
                    self.core.remove_tunnel(id);
                    let _ = reply.send(());
                }
                Command::Snapshot { reply } => {
                    let snapshot = self
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
                    let _ = reply.send(snapshot);
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
        let id = self.core.add_tunnel(config).map_err(|e| e.to_string())?;
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
            owned.devices.push(Device { path, token, tun });
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
        loop {
            let Some(tun) = self
                .tuns
                .get(&id)
                .and_then(|t| t.devices.iter().find(|d| d.path == path))
                .map(|d| &d.tun)
            else {
                return;
            };
            let n = match tun.read(&mut self.buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!(device = tun.name(), "TUN read failed: {e}");
                    return;
                }
            };
            self.batch.clear();
            let packet = &mut self.buf[..n];
            let _ = match path {
                Some(path) => {
                    self.core
                        .handle_inner_on_path(now, id, path, packet, &mut self.batch)
                }
                None => self.core.handle_inner(now, id, packet, &mut self.batch),
            };
            self.flush(Some(id));
        }
    }

    fn drain_outer(&mut self, now: Instant, ipip: bool) {
        loop {
            let socket = if ipip { &self.ipip } else { &self.ipv6 };
            let received = match socket.recv(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("raw socket receive failed: {e}");
                    return;
                }
            };
            let meta = OuterMeta {
                src: received.src,
                dst: received.dst,
                next_header: if ipip {
                    wire::ip_proto::IPIP
                } else {
                    wire::ip_proto::IPV6
                },
                traffic_class: received.traffic_class,
                encap_limit: received.encap_limit,
            };
            self.batch.clear();
            let _ =
                self.core
                    .handle_outer(now, &meta, &mut self.buf[..received.len], &mut self.batch);
            self.flush(None);
        }
    }

    fn drain_outer_ipv4(&mut self, now: Instant, ipip: bool) {
        loop {
            let socket = if ipip { &self.ipip4 } else { &self.ipv6in4 };
            let received = match socket.recv(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("raw IPv4 socket receive failed: {e}");
                    return;
                }
            };
            self.batch.clear();
            let _ =
                self.core
                    .handle_outer_ipv4(now, &mut self.buf[..received.len], &mut self.batch);
            self.flush(None);
        }
    }

    fn drain_icmp(&mut self, now: Instant) {
        loop {
            let received = match self.icmp.recv(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("ICMPv6 socket receive failed: {e}");
                    return;
                }
            };
            let _ =
                self.core
                    .handle_icmpv6(now, received.src, received.dst, &self.buf[..received.len]);
            self.log_events();
        }
    }

    /// Sends what the core produced. `origin` is the tunnel whose TUN read caused it, charged
    /// with underlay send failures.
    fn flush(&mut self, origin: Option<TunnelId>) {
        for (destination, packet) in self.batch.iter() {
            let (result, charged) = match destination {
                Destination::Underlay {
                    remote: IpAddr::V6(remote),
                } => (self.ipip.send_to(packet, remote).map(|_| ()), origin),
                Destination::Underlay {
                    remote: IpAddr::V4(remote),
                } => (self.ipip4.send_to(packet, remote).map(|_| ()), origin),
                Destination::Tun(id) => match self.tuns.get(&id).and_then(|t| t.for_path(None)) {
                    Some(d) => (d.tun.write(packet).map(|_| ()), Some(id)),
                    None => continue,
                },
                Destination::TunPath(id, path) => {
                    match self.tuns.get(&id).and_then(|t| t.for_path(Some(path))) {
                        Some(d) => (d.tun.write(packet).map(|_| ()), Some(id)),
                        None => continue,
                    }
                }
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
