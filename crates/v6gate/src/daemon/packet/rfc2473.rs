//! The RFC 2473/2003 kind: ipip6, ip6ip6 and `any` tunnels over IPv6 paths and their RFC 2003
//! paths over IPv4, all in one [`Dataplane`] core. MAP-E and DS-Lite tunnels run here too,
//! lowered to ipip6 by `control::softwire`.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::time::Instant;

use dataplane::offload::Coalescer;
use dataplane::{Batch, Dataplane, Destination, OuterMeta, PathId, TunnelConfig, TunnelId};
use mio::Registry;
use sys::raw::{BATCH_SIZE, PathSender, RawIpv4Socket, RawIpv6Socket, Received, Received4};
use tracing::debug;

use super::kind::Kind;
use super::log;
use super::rx::RxBuffers;
use super::send::{self, Out, Underlay};
use super::tun::Devices;
use super::{PacketError, PathChange, TunnelDevice, TunnelSnapshot};

pub(super) struct Rfc2473 {
    pub(super) core: Dataplane,
    /// Receive protocol 4 / 41 over IPv6; `ipip` sends every outer IPv6 packet.
    pub(super) ipip: RawIpv6Socket,
    pub(super) ipv6: RawIpv6Socket,
    /// Raw IPv4 sockets for paths over IPv4; `ipip4` also sends both protocols, since with
    /// `IP_HDRINCL` the protocol is the one in the header the core built.
    pub(super) ipip4: RawIpv4Socket,
    pub(super) ipv6in4: RawIpv4Socket,
    /// A send socket bound to each path's local address and connected to its remote (no
    /// per-packet source selection in the kernel), with that local address.
    senders: HashMap<IpAddr, (IpAddr, PathSender)>,
    batch: Batch,
    /// Where the core's path changes go to the owner; never waited on (see `PATH_CHANGES`).
    changes: tokio::sync::mpsc::Sender<PathChange>,
}

fn route(destination: Destination) -> Out {
    match destination {
        Destination::Underlay { remote } => Out::Raw(remote),
        Destination::Tun(id) => Out::Tun(id, None),
        Destination::TunPath(id, path) => Out::Tun(id, Some(path)),
        Destination::Local => Out::Local,
        #[allow(unreachable_patterns)]
        _ => Out::Nowhere,
    }
}

impl Rfc2473 {
    pub(super) fn new(
        ipip: RawIpv6Socket,
        ipv6: RawIpv6Socket,
        ipip4: RawIpv4Socket,
        ipv6in4: RawIpv4Socket,
        batch_bytes: usize,
        changes: tokio::sync::mpsc::Sender<PathChange>,
    ) -> Self {
        Self {
            core: Dataplane::new(),
            ipip,
            ipv6,
            ipip4,
            ipv6in4,
            senders: HashMap::new(),
            batch: Batch::new(batch_bytes),
            changes,
        }
    }

    pub(super) fn add(
        &mut self,
        registry: &Registry,
        devices: &mut Devices,
        config: TunnelConfig,
        tuns: Vec<TunnelDevice>,
    ) -> Result<TunnelId, PacketError> {
        let name = config.name.clone();
        let mtu = config.mtu;
        let endpoints: Vec<(IpAddr, IpAddr)> =
            config.paths.iter().map(|p| (p.local, p.remote)).collect();
        let id = self.core.add_tunnel(config).map_err(PacketError::Core)?;
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
        for TunnelDevice { path, tun } in tuns {
            if let Err(e) = devices.add(registry, id, path, tun, Coalescer::with_mtu(mtu)) {
                devices.remove(registry, id);
                self.core.remove_tunnel(id);
                return Err(e);
            }
        }
        Ok(id)
    }

    pub(super) fn update(&mut self, id: TunnelId, config: TunnelConfig) -> Result<(), PacketError> {
        self.core
            .update_tunnel(id, config)
            .map_err(PacketError::Core)
    }

    pub(super) fn remove(&mut self, id: TunnelId) {
        if let Some(config) = self.core.tunnel(id) {
            for path in &config.paths {
                if self.senders.get(&path.remote).map(|s| s.0) == Some(path.local) {
                    self.senders.remove(&path.remote);
                }
            }
        }
        self.core.remove_tunnel(id);
    }

    /// One `recvmmsg` on the raw IPv6 socket of protocol 4 (`ipip`) or 41; returns how many
    /// packets it took.
    pub(super) fn receive6(
        &mut self,
        now: Instant,
        ipip: bool,
        rx: &mut RxBuffers,
    ) -> io::Result<usize> {
        let socket = if ipip { &self.ipip } else { &self.ipv6 };
        let mut received = [Received::BLANK; BATCH_SIZE];
        let n = socket.recv_batch(&mut rx.slices(), &mut received)?;
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
            let _ = self
                .core
                .handle_outer(now, &meta, rx.slot(i, r.len), &mut self.batch);
        }
        Ok(n)
    }

    /// One `recvmmsg` on the raw IPv4 socket of protocol 4 (`ipip`) or 41.
    pub(super) fn receive4(
        &mut self,
        now: Instant,
        ipip: bool,
        rx: &mut RxBuffers,
    ) -> io::Result<usize> {
        let socket = if ipip { &self.ipip4 } else { &self.ipv6in4 };
        let mut received = [Received4::BLANK; BATCH_SIZE];
        let n = socket.recv_batch(&mut rx.slices(), &mut received)?;
        for (i, r) in received[..n].iter().enumerate() {
            let _ = self
                .core
                .handle_outer_ipv4(now, rx.slot(i, r.len), &mut self.batch);
        }
        Ok(n)
    }

    fn log_events(&mut self) {
        while let Some(event) = self.core.poll_event() {
            let Some((tunnel, news)) = log::rfc2473_news(event) else {
                continue;
            };
            if let Some(change) = news.change(tunnel) {
                // Full: the owner has changes to read still, and reads the core's state after
                // them. Closed: the owner is stopping.
                let _ = self.changes.try_send(change);
            }
            let Some(config) = self.core.tunnel(tunnel) else {
                continue;
            };
            let path_name = |p: usize| {
                config
                    .paths
                    .get(p)
                    .map_or_else(|| p.to_string(), |p| p.name.clone())
            };
            log::path_news(&config.name, path_name, news);
        }
    }
}

impl Kind for Rfc2473 {
    fn inner(&mut self, now: Instant, id: TunnelId, path: Option<PathId>, packet: &mut [u8]) {
        let _ = match path {
            Some(path) => self
                .core
                .handle_inner_on_path(now, id, path, packet, &mut self.batch),
            None => self.core.handle_inner(now, id, packet, &mut self.batch),
        };
    }

    fn held(&self) -> usize {
        self.batch.len()
    }

    fn flush(&mut self, origin: Option<TunnelId>, devices: &mut Devices) {
        let senders = &self.senders;
        let underlay = Underlay {
            raw6: &self.ipip,
            raw4: &self.ipip4,
            connected: |remote: IpAddr| senders.get(&remote).map(|(_, sender)| sender),
        };
        send::flush(&self.batch, route, underlay, None, devices, origin);
        self.batch.clear();
        self.log_events();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant, devices: &mut Devices) {
        self.batch.clear();
        self.core.handle_timeout(now, &mut self.batch);
        self.flush(None, devices);
    }
}

impl Rfc2473 {
    pub(super) fn snapshot(&self, devices: &Devices) -> Vec<TunnelSnapshot> {
        self.core
            .tunnels()
            .filter_map(|id| {
                let stats = *self.core.stats(id)?;
                let paths = (0..self.core.tunnel(id)?.paths.len())
                    .filter_map(|i| {
                        let i = u8::try_from(i).ok()?;
                        self.core.path_stats(id, PathId(i))
                    })
                    .collect();
                Some(TunnelSnapshot {
                    id,
                    stats,
                    shell: devices.counters(id),
                    paths,
                    active_path: self.core.active_path(id),
                })
            })
            .collect()
    }
}
