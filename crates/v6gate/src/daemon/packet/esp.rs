//! The ESP kind: ipsec tunnels, one [`EspPaths`] core per tunnel, ESP raw (protocol 50) or in
//! UDP on port 4500, and the SAs the IKE shell hands in.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::esp::paths::path_of_destination;
use dataplane::esp::{
    EspBatch, EspDestination, EspDrop, EspEvent, EspPaths, UdpKind, classify_udp,
};
use dataplane::offload::Coalescer;
use dataplane::{PathId, TunnelId};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use sys::raw::{BATCH_SIZE, PathSender, RawIpv4Socket, RawIpv6Socket, Received, Received4};
use tokio::sync::mpsc as async_mpsc;
use tracing::{debug, info, warn};

use super::kind::Kind;
use super::log;
use super::rx::{RX_BURST, RxBuffers};
use super::send::{self, Out, UdpPaths, Underlay};
use super::tun::Devices;
use super::{Datagram, UnknownSpi};
use super::{
    EspLinks, EspPathSnapshot, EspSnapshot, NewEspTunnel, PacketError, SaChange, SaCommand,
    TunnelDevice,
};

/// ESP tunnels are numbered apart from the RFC 2473 core's tunnels, so that one [`TunnelId`]
/// names one tunnel of either kind in commands and snapshots.
const FIRST_ESP_ID: u32 = 0x8000_0000;

/// The least time between two reports of unknown SPIs from one peer to its IKE shell.
const UNKNOWN_SPI_EVERY: Duration = Duration::from_secs(1);

/// Whether `id` names an ESP tunnel.
pub(super) fn is_esp(id: TunnelId) -> bool {
    id.0 >= FIRST_ESP_ID
}

pub(super) struct Esp {
    raw6: RawIpv6Socket,
    /// Receives whole IPv4 datagrams; sends with `IP_HDRINCL`.
    raw4: RawIpv4Socket,
    tunnels: HashMap<TunnelId, EspRuntime>,
    /// A send socket bound to each raw-ESP path's local address and connected to its peer
    /// (no per-packet source selection), by peer address.
    senders: HashMap<IpAddr, PathSender>,
    /// The tunnel and path of each peer address.
    by_remote: HashMap<IpAddr, (TunnelId, usize)>,
    udp: HashMap<Token, UdpPort>,
    next_id: u32,
    batch: EspBatch,
    /// The tunnel whose output the batch holds and how many packets produced it.
    held: Option<(TunnelId, usize)>,
    /// The path whose device gets what the batch holds for the TUN side (with a device per
    /// path; a tunnel with one device takes everything on it).
    batch_path: Option<PathId>,
    /// ESP from addresses that are no tunnel's peer.
    not_peer: u64,
    unknown_spis: UnknownSpis,
}

/// When each peer's last unknown SPI was reported: at most one report per peer per
/// [`UNKNOWN_SPI_EVERY`]. Only configured peers get an entry.
#[derive(Debug, Default)]
struct UnknownSpis {
    reported: HashMap<IpAddr, Instant>,
}

impl UnknownSpis {
    /// Whether an unknown SPI from `peer` at `now` is reported (and then remembered).
    fn due(&mut self, peer: IpAddr, now: Instant) -> bool {
        if self
            .reported
            .get(&peer)
            .is_some_and(|at| now.saturating_duration_since(*at) < UNKNOWN_SPI_EVERY)
        {
            return false;
        }
        self.reported.insert(peer, now);
        true
    }

    fn forget(&mut self, peer: IpAddr) {
        self.reported.remove(&peer);
    }
}

struct EspRuntime {
    name: String,
    core: EspPaths,
    /// One per path.
    links: Vec<EspLinks>,
    /// Per path: whether its UDP socket still takes `UDP_SEGMENT` trains.
    udp_gso: Vec<bool>,
}

/// A UDP 4500 socket, registered once per local address and kept for the thread's life (the
/// IKE shell keeps it bound as long).
struct UdpPort {
    local: SocketAddr,
    socket: Arc<std::net::UdpSocket>,
    ike: async_mpsc::Sender<Datagram>,
}

impl Esp {
    pub(super) fn new(raw6: RawIpv6Socket, raw4: RawIpv4Socket, batch_bytes: usize) -> Self {
        Self {
            raw6,
            raw4,
            tunnels: HashMap::new(),
            senders: HashMap::new(),
            by_remote: HashMap::new(),
            udp: HashMap::new(),
            next_id: FIRST_ESP_ID,
            batch: EspBatch::new(batch_bytes),
            held: None,
            batch_path: None,
            not_peer: 0,
            unknown_spis: UnknownSpis::default(),
        }
    }

    pub(super) fn owns_udp(&self, token: Token) -> bool {
        self.udp.contains_key(&token)
    }

    pub(super) fn not_peer(&self) -> u64 {
        self.not_peer
    }

    pub(super) fn add(
        &mut self,
        registry: &Registry,
        devices: &mut Devices,
        tunnel: NewEspTunnel,
    ) -> Result<TunnelId, PacketError> {
        let NewEspTunnel {
            name,
            health,
            paths,
            tuns,
            links,
        } = tunnel;
        if paths.is_empty() || paths.len() != links.len() || paths.len() > 256 {
            return Err(PacketError::EspPaths {
                paths: paths.len(),
                links: links.len(),
            });
        }
        if let Some(p) = paths
            .iter()
            .find(|p| self.by_remote.contains_key(&p.esp.remote))
        {
            return Err(PacketError::PeerTaken(p.esp.remote));
        }
        for (p, l) in paths.iter().zip(&links) {
            let local = SocketAddr::new(p.esp.local, l.udp.local_addr().map_or(0, |a| a.port()));
            if self.udp.values().any(|u| u.local == local) {
                continue;
            }
            let token = devices.next_token();
            registry
                .register(&mut SourceFd(&l.udp.as_raw_fd()), token, Interest::READABLE)
                .map_err(|error| PacketError::Register {
                    what: format!("UDP {local}"),
                    error,
                })?;
            // Trains of ESP-in-UDP from a peer that segments (or merged by the kernel's
            // GRO) are read whole; without it the kernel splits them again first.
            if let Err(e) = sys::udp::enable_gro(&*l.udp) {
                info!(tunnel = %name, "UDP {local}: no receive offload (UDP_GRO): {e}");
            }
            self.udp.insert(
                token,
                UdpPort {
                    local,
                    socket: Arc::clone(&l.udp),
                    ike: l.ike.clone(),
                },
            );
        }
        let id = TunnelId(self.next_id);
        for TunnelDevice { path, tun } in tuns {
            devices.add(registry, id, path, tun, Coalescer::default())?;
        }
        self.next_id = self.next_id.wrapping_add(1).max(FIRST_ESP_ID);
        for (i, p) in paths.iter().enumerate() {
            self.by_remote.insert(p.esp.remote, (id, i));
            match PathSender::open(p.esp.local, p.esp.remote) {
                Ok(sender) => {
                    self.senders.insert(p.esp.remote, sender);
                }
                // No route yet (a blackholed pin): the shared raw socket still sends.
                Err(e) => debug!(tunnel = %name, "no connected socket to {}: {e}", p.esp.remote),
            }
        }
        self.tunnels.insert(
            id,
            EspRuntime {
                name,
                core: EspPaths::new(health, paths),
                udp_gso: links
                    .iter()
                    .map(|l| sys::udp::segmentation_supported(&*l.udp))
                    .collect(),
                links,
            },
        );
        Ok(id)
    }

    /// Forgets the tunnel; its SAs go with the core (the loop closes its device).
    pub(super) fn remove(&mut self, id: TunnelId) {
        if self.tunnels.remove(&id).is_none() {
            return;
        }
        let by_remote = &mut self.by_remote;
        self.senders
            .retain(|remote, _| by_remote.get(remote).is_none_or(|(v, _)| *v != id));
        for (remote, (v, _)) in by_remote.iter() {
            if *v == id {
                self.unknown_spis.forget(*remote);
            }
        }
        by_remote.retain(|_, (v, _)| *v != id);
    }

    pub(super) fn snapshot(&self, devices: &Devices) -> Vec<EspSnapshot> {
        self.tunnels
            .iter()
            .map(|(&id, t)| EspSnapshot {
                id,
                stats: t.core.stats(),
                shell: devices.counters(id),
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
            .collect()
    }

    pub(super) fn apply(&mut self, command: SaCommand, devices: &mut Devices) {
        let SaCommand {
            tunnel,
            path,
            change,
        } = command;
        let Some((&id, t)) = self.tunnels.iter_mut().find(|(_, t)| t.name == tunnel) else {
            debug!(tunnel = %tunnel, "SA change for a tunnel the packet thread does not run");
            return;
        };
        let path_name = t.core.path_name(path).unwrap_or("?").to_string();
        let now = Instant::now();
        match change {
            SaChange::Inbound { sa, done } => {
                let spi = sa.spi();
                t.core.install_inbound(now, path, *sa);
                debug!(tunnel = %t.name, path = %path_name, "ESP SA in {spi:08x} opens");
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            SaChange::Outbound {
                spi_in,
                sa,
                udp_port,
            } => {
                let spi_out = sa.spi();
                t.core.install_outbound(now, path, *sa, udp_port);
                info!(
                    tunnel = %t.name,
                    path = %path_name,
                    "ESP SA installed: in {spi_in:08x} out {spi_out:08x}{}",
                    if udp_port.is_some() { " (UDP 4500)" } else { "" }
                );
            }
            SaChange::Remove { spi_in, spi_out } => {
                t.core.remove_sa(now, path, spi_in, spi_out);
                debug!(tunnel = %t.name, path = %path_name, "ESP SA removed: in {spi_in:08x} out {spi_out:08x}");
            }
            SaChange::Clear => {
                t.core.clear_sas(now, path);
                debug!(tunnel = %t.name, path = %path_name, "all ESP SAs of the path removed");
            }
        }
        // A path without SAs is down: traffic may have moved.
        self.batch.clear();
        self.flush(Some(id), devices);
    }

    /// Raw ESP until the socket is empty: IPv6 sockets hand over the payload, IPv4 sockets
    /// the whole datagram.
    pub(super) fn drain_raw(
        &mut self,
        now: Instant,
        ipv4: bool,
        rx: &mut RxBuffers,
        devices: &mut Devices,
    ) {
        loop {
            let mut received6 = [Received::BLANK; BATCH_SIZE];
            let mut received4 = [Received4::BLANK; BATCH_SIZE];
            let result = if ipv4 {
                self.raw4.recv_batch(&mut rx.slices(), &mut received4)
            } else {
                self.raw6.recv_batch(&mut rx.slices(), &mut received6)
            };
            let n = match result {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("raw ESP socket receive failed: {e}");
                    break;
                }
            };
            for i in 0..n {
                if ipv4 {
                    let r = received4[i];
                    let Ok(ip) = wire::Ipv4Packet::new_checked(&*rx.slot(i, r.len)) else {
                        continue;
                    };
                    self.open(now, IpAddr::V4(r.src), ip.payload(), devices);
                } else {
                    let r = received6[i];
                    self.open(now, IpAddr::V6(r.src), rx.slot(i, r.len), devices);
                }
            }
        }
        self.finish_burst(devices);
    }

    /// The UDP 4500 socket of `token` until it is empty: ESP to its tunnel, IKE back to the
    /// IKE shell.
    pub(super) fn drain_udp(
        &mut self,
        now: Instant,
        token: Token,
        buf: &mut [u8],
        devices: &mut Devices,
    ) {
        while let Some(port) = self.udp.get(&token) {
            let received = match sys::udp::recv(&*port.socket, buf) {
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
                self.count_train_received(remote.ip(), devices);
            }
            for payload in received.datagrams(buf) {
                match classify_udp(payload) {
                    UdpKind::Esp => self.open(now, remote.ip(), payload, devices),
                    UdpKind::Ike => {
                        let Some(port) = self.udp.get(&token) else {
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
        self.finish_burst(devices);
    }

    /// One ESP packet (from its SPI on) from `from`, to the tunnel of that peer. What it
    /// produces is held in the batch, so that a burst of one tunnel goes out together (one
    /// coalesced TUN write per flow): the batch is sent when the next packet is for another
    /// tunnel, after `RX_BURST` packets, or by `finish_burst`.
    fn open(&mut self, now: Instant, from: IpAddr, esp: &[u8], devices: &mut Devices) {
        let Some(&(id, path)) = self.by_remote.get(&from) else {
            self.not_peer += 1;
            return;
        };
        let device = Some(PathId(u8::try_from(path).unwrap_or(u8::MAX)));
        if self
            .held
            .is_some_and(|(held, n)| held != id || n == RX_BURST || self.batch_path != device)
        {
            self.finish_burst(devices);
        }
        let Some(t) = self.tunnels.get_mut(&id) else {
            return;
        };
        self.batch_path = device;
        let result = t.core.handle_esp(now, path, esp, from, &mut self.batch);
        let n = self.held.map_or(0, |(_, n)| n);
        self.held = Some((id, n + 1));
        if result == Err(EspDrop::UnknownSpi) {
            self.report_unknown_spi(now, id, path, from, esp);
        }
    }

    /// Tells the path's IKE shell that its peer sends on an SPI no SA knows (it lost its
    /// state, or ours), at most once a second per peer.
    fn report_unknown_spi(
        &mut self,
        now: Instant,
        id: TunnelId,
        path: usize,
        peer: IpAddr,
        esp: &[u8],
    ) {
        let Ok(packet) = wire::esp::Packet::new_checked(esp) else {
            return;
        };
        let Some(links) = self.tunnels.get(&id).and_then(|t| t.links.get(path)) else {
            return;
        };
        if !self.unknown_spis.due(peer, now) {
            return;
        }
        let Some(t) = self.tunnels.get(&id) else {
            return;
        };
        let _ = links.unknown_spi.send(UnknownSpi {
            tunnel: t.name.clone(),
            path,
            peer,
            spi: packet.spi(),
        });
    }

    /// A router said our ESP to `report.remote` met a smaller link: lowers that path's MTU
    /// (and logs it) when the report names one of our paths from its own local address.
    pub(super) fn lower_path_mtu(
        &mut self,
        now: Instant,
        report: dataplane::esp::TooBig,
        devices: &mut Devices,
    ) {
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
        self.flush(Some(id), devices);
    }

    /// Charges a received UDP train to the tunnel of the peer that sent it.
    fn count_train_received(&mut self, from: IpAddr, devices: &mut Devices) {
        let Some(&(id, _)) = self.by_remote.get(&from) else {
            return;
        };
        if let Some(counters) = devices.counters_mut(id) {
            counters.udp_trains_received += 1;
        }
    }

    /// Sends what `open` has held back.
    fn finish_burst(&mut self, devices: &mut Devices) {
        if let Some((id, _)) = self.held {
            self.flush(Some(id), devices);
        }
        self.held = None;
        self.batch.clear();
    }
}

impl Kind for Esp {
    fn inner(&mut self, now: Instant, id: TunnelId, path: Option<PathId>, packet: &mut [u8]) {
        if let Some(t) = self.tunnels.get_mut(&id) {
            // ICMP errors go back out of the device the packet came in by.
            self.batch_path = path;
            let _ = match path {
                Some(PathId(p)) => {
                    t.core
                        .handle_inner_on_path(now, usize::from(p), packet, &mut self.batch)
                }
                None => t.core.handle_inner(now, packet, &mut self.batch),
            };
        }
    }

    fn held(&self) -> usize {
        self.batch.len()
    }

    /// Sends what tunnel `origin`'s core produced (the batch holds one tunnel's output at a
    /// time) and passes its events on.
    fn flush(&mut self, origin: Option<TunnelId>, devices: &mut Devices) {
        let Some(id) = origin else {
            self.batch.clear();
            return;
        };
        let Some(t) = self.tunnels.get_mut(&id) else {
            self.batch.clear();
            return;
        };
        let senders = &self.senders;
        let underlay = Underlay {
            raw6: &self.raw6,
            raw4: &self.raw4,
            connected: |remote: IpAddr| senders.get(&remote),
        };
        let core = &t.core;
        let batch_path = self.batch_path;
        let route = |destination: EspDestination| match destination {
            EspDestination::Raw { remote } => Out::Raw(remote),
            EspDestination::Udp { remote } => match path_of_destination(core, destination) {
                Some(path) => Out::Udp { path, remote },
                None => Out::Nowhere,
            },
            EspDestination::Tun => Out::Tun(id, batch_path),
            EspDestination::Local => Out::Local,
        };
        let udp = UdpPaths {
            tunnel: &t.name,
            links: &t.links,
            gso: &mut t.udp_gso,
        };
        send::flush(&self.batch, route, underlay, Some(udp), devices, Some(id));
        self.batch.clear();
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
            log::path_news(&t.name, name, event.into());
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.tunnels
            .values()
            .filter_map(|t| t.core.poll_timeout())
            .min()
    }

    fn handle_timeout(&mut self, now: Instant, devices: &mut Devices) {
        let due: Vec<TunnelId> = self
            .tunnels
            .iter()
            .filter(|(_, t)| t.core.poll_timeout().is_some_and(|at| at <= now))
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            self.batch.clear();
            if let Some(t) = self.tunnels.get_mut(&id) {
                t.core.handle_timeout(now, &mut self.batch);
            }
            self.flush(Some(id), devices);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_spis_are_reported_once_a_second_per_peer() {
        let mut spis = UnknownSpis::default();
        let a: IpAddr = "2001:db8:0:2::1".parse().unwrap();
        let b: IpAddr = "198.18.2.1".parse().unwrap();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert!(spis.due(a, t0));
        assert!(!spis.due(a, t0 + ms(999)));
        assert!(spis.due(b, t0 + ms(10)), "another peer has its own second");
        assert!(spis.due(a, t0 + ms(1000)));
        assert!(!spis.due(a, t0 + ms(1500)));
        spis.forget(a);
        assert!(spis.due(a, t0 + ms(1600)), "a peer forgotten starts over");
    }
}
