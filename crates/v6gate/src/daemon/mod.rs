//! `v6gate run`: bring the configured tunnels up, keep their endpoints pinned, answer the
//! control socket, and on stop remove everything that was installed.
//!
//! Order of set-up, per tunnel (undone in reverse, and undone whole when a step fails so a
//! config is never half-applied): for every path, check its local address, pin its remote
//! endpoint and ensure the pin rule of its family; then create the TUN device(s), set
//! MTU/addresses/sysctls, bring them up, add the inner routes, and hand the devices to the
//! packet thread. Watches start after the tunnels and stop before them.
//!
//! An ipsec tunnel takes the same steps up to its TUN device; then its packet path is an ESP
//! core per path in the packet thread instead of an RFC 2473 one, and its IKE tasks, one per
//! path, start last and stop first (so the peer hears a DELETE while the tunnel still stands).

mod control_socket;
mod datapath;
mod ipsec;
pub mod pin;
mod watch;

pub use ipsec::{ChildStatus, IpsecStatus};
pub use watch::WatchStatus;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use control::{Config, Tunnel};
use ipnet::IpNet;
use sys::netlink::{Family, Netlink, Route, RouteKind, Rule};
use sys::sysctl::SysctlJournal;
use sys::tun::TunDevice;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::status::{GatewayStatus, PathStatus, PinnedRoute, Request, Response, TunnelStatus};
use datapath::{Datapath, EspLinks, TunnelDevice};
use ipsec::{IkeSockets, IpsecTunnel, SaChange};
use pin::{Decision, Facts, Pin};
use watch::WatchTask;

/// Routing protocol number stamped on every route v6gate installs, so a restart after a crash
/// can find and remove its leftovers (`ip route show proto 118`).
pub const ROUTE_PROTOCOL: u8 = 118;

/// Firewall mark of v6gate's own route lookups. The pin rule is `not fwmark MARK`, so a lookup
/// with this mark sees the underlay behind the pin.
pub const LOOKUP_MARK: u32 = 0x7636;

const MAIN_TABLE: u32 = 254;

/// Packets the kernel queues on a TUN device for the packet thread.
const TUN_TXQUEUELEN: u32 = 1000;

pub fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let mut daemon = Daemon::start(config_path.to_path_buf(), config).await?;
        let result = daemon.serve().await;
        daemon.stop().await;
        result
    })
}

struct PathRuntime {
    remote: IpAddr,
    pin: Pin,
    pin_route: Route,
}

struct TunnelRuntime {
    config: Tunnel,
    id: dataplane::TunnelId,
    /// Interface indexes of the tunnel's TUN device(s).
    ifindexes: Vec<u32>,
    paths: Vec<PathRuntime>,
    routes: Vec<Route>,
    mtu: u16,
    /// The IKE side of an ipsec tunnel: one IKE SA per path, in the order of the paths.
    ipsec: Vec<IpsecTunnel>,
}

struct Daemon {
    config_path: PathBuf,
    config: Config,
    netlink: Netlink,
    datapath: Datapath,
    sysctls: SysctlJournal,
    rules: Vec<Rule>,
    tunnels: Vec<TunnelRuntime>,
    watches: Vec<WatchTask>,
    started: Instant,
    control: Option<control_socket::Server>,
    /// UDP 500/4500 per local address of ipsec tunnels, bound at first use and kept.
    ike_sockets: HashMap<IpAddr, IkeSockets>,
    /// The IKE tasks' SA changes, forwarded to the packet thread in order.
    sa_changes: mpsc::UnboundedSender<SaChange>,
}

impl Daemon {
    async fn start(config_path: PathBuf, config: Config) -> anyhow::Result<Self> {
        let netlink = Netlink::new().context("opening rtnetlink")?;
        let datapath = Datapath::spawn()?;
        let (sa_changes, mut sa_rx) = mpsc::unbounded_channel();
        let sink = datapath.sa_sink();
        tokio::spawn(async move {
            while let Some(change) = sa_rx.recv().await {
                if !sink.send(change) {
                    break;
                }
            }
        });
        // Beside the control socket, so two instances never share one, and in /run, so a
        // reboot (which resets sysctls anyway) forgets it.
        let journal = config.gateway.control_socket.with_extension("journal");
        let sysctls = SysctlJournal::persistent(journal.clone())
            .with_context(|| format!("reading the sysctl journal {}", journal.display()))?;
        if !sysctls.originals().is_empty() {
            info!(
                "a previous run did not stop cleanly: the sysctl originals it recorded in {} \
                 will be restored at stop",
                journal.display()
            );
        }
        let mut daemon = Self {
            config_path,
            config,
            netlink,
            datapath,
            sysctls,
            rules: Vec::new(),
            tunnels: Vec::new(),
            watches: Vec::new(),
            started: Instant::now(),
            control: None,
            ike_sockets: HashMap::new(),
            sa_changes,
        };
        for warning in &daemon.config.warnings {
            warn!("config {}:{warning}", daemon.config_path.display());
        }
        daemon.remove_leftovers().await;
        if let Err(e) = daemon.apply_config().await {
            daemon.stop().await;
            return Err(e);
        }
        match control_socket::Server::bind(&daemon.config.gateway.control_socket) {
            Ok(server) => daemon.control = Some(server),
            Err(e) => {
                daemon.stop().await;
                return Err(e);
            }
        }
        notify_systemd("READY=1");
        info!(
            "v6gate running: {} tunnel(s), control socket {}",
            daemon.tunnels.len(),
            daemon.config.gateway.control_socket.display()
        );
        Ok(daemon)
    }

    /// Gateway-wide settings, then every enabled tunnel; on failure everything done is undone.
    async fn apply_config(&mut self) -> anyhow::Result<()> {
        let plan = control::plan(&self.config, |_, _| 0);
        for change in &plan.sysctls {
            self.sysctls
                .set(&change.key, &change.value)
                .with_context(|| format!("setting sysctl {} ([gateway])", change.key))?;
            info!("sysctl {} = {}", change.key, change.value);
        }
        let tunnels: Vec<Tunnel> = self
            .config
            .tunnels
            .iter()
            .filter(|t| t.enabled)
            .cloned()
            .collect();
        for tunnel in tunnels {
            self.add_tunnel(tunnel).await?;
        }
        for w in self.config.watches.clone() {
            self.add_watch(w)?;
        }
        Ok(())
    }

    fn add_watch(&mut self, w: control::Watch) -> anyhow::Result<()> {
        let name = w.name.clone();
        info!(
            watch = %name,
            "probing {} through {} every {:?}",
            w.target,
            w.device,
            w.health.interval
        );
        let task =
            WatchTask::start(w, self.netlink.clone()).with_context(|| format!("watch {name}"))?;
        self.watches.push(task);
        Ok(())
    }

    async fn remove_watch(&mut self, name: &str) {
        if let Some(pos) = self.watches.iter().position(|w| w.name == name) {
            self.watches.remove(pos).stop().await;
            info!(watch = name, "stopped");
        }
    }

    async fn serve(&mut self) -> anyhow::Result<()> {
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sighup = signal(SignalKind::hangup())?;
        let mut changes = sys::netlink::watch_changes().context("watching route changes")?;
        let (ctl_tx, mut ctl_rx) = mpsc::channel::<(Request, oneshot::Sender<Response>)>(8);
        if let Some(server) = self.control.as_mut() {
            server.start(ctl_tx);
        }
        loop {
            tokio::select! {
                _ = sigterm.recv() => { info!("SIGTERM: stopping"); return Ok(()); }
                _ = sigint.recv() => { info!("SIGINT: stopping"); return Ok(()); }
                _ = sighup.recv() => {
                    info!("SIGHUP: reloading {}", self.config_path.display());
                    match self.reload().await {
                        Ok(summary) => info!("reloaded: {summary}"),
                        Err(e) => error!("reload failed, running config kept: {e:#}"),
                    }
                }
                Some((request, reply)) = ctl_rx.recv() => {
                    let response = self.handle_request(request).await;
                    let _ = reply.send(response);
                }
                Some(_) = changes.recv() => {
                    // Changes come in bursts (a link going down withdraws many routes):
                    // settle, then look once.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    while changes.try_recv().is_ok() {}
                    self.repin().await;
                }
            }
        }
    }

    async fn handle_request(&mut self, request: Request) -> Response {
        match request {
            Request::Status => match self.status().await {
                Ok(status) => Response::Status(status),
                Err(e) => Response::Error {
                    message: format!("{e:#}"),
                },
            },
            Request::Reload => match self.reload().await {
                Ok(summary) => Response::Reloaded { summary },
                Err(e) => Response::Error {
                    message: format!("{e:#}"),
                },
            },
        }
    }

    async fn status(&self) -> anyhow::Result<GatewayStatus> {
        let snapshot = self.datapath.snapshot().await?;
        let esp_by_id: HashMap<_, _> = snapshot.esp.into_iter().map(|s| (s.id, s)).collect();
        let by_id: HashMap<_, _> = snapshot.tunnels.into_iter().map(|s| (s.id, s)).collect();
        let mut tunnels = Vec::new();
        for t in &self.tunnels {
            let snap = by_id.get(&t.id);
            let esp = esp_by_id.get(&t.id);
            let active = match esp {
                Some(e) => e.active_path,
                None => snap.and_then(|s| s.active_path).map_or(0, |p| p.index()),
            };
            let paths: Vec<PathStatus> = t
                .config
                .paths
                .iter()
                .zip(&t.paths)
                .enumerate()
                .map(|(i, (cfg, rt))| {
                    let stats = match esp {
                        Some(e) => e.paths.get(i).map(|p| &p.stats),
                        None => snap.and_then(|s| s.paths.get(i)),
                    };
                    PathStatus {
                        name: cfg.name.clone(),
                        local: cfg.local.to_string(),
                        remote: cfg.remote.to_string(),
                        cost: cfg.cost,
                        probe: cfg.probe.as_str().to_string(),
                        active: i == active,
                        state: stats.map_or("unknown".into(), |s| s.state.to_string()),
                        srtt_ms: stats.and_then(|s| s.srtt).map(|d| d.as_secs_f64() * 1000.0),
                        loss_percent: stats.map_or(0.0, |s| s.loss.percent()),
                        last_change_secs_ago: stats
                            .and_then(|s| s.last_change)
                            .map(|at| at.elapsed().as_secs()),
                        path_mtu: stats.map_or(t.mtu, |s| s.path_mtu),
                        tx_packets: stats.map_or(0, |s| s.tx_packets),
                        rx_packets: stats.map_or(0, |s| s.rx_packets),
                        probes_sent: stats.map_or(0, |s| s.probes_sent),
                        probes_answered: stats.map_or(0, |s| s.probes_answered),
                        pinned_route: pinned_route(rt),
                    }
                })
                .collect();
            let active_rt = &t.paths[active.min(t.paths.len() - 1)];
            let active_cfg = &t.config.paths[active.min(t.paths.len() - 1)];
            let active_path = match active_rt.pin {
                Pin::Via { oif, gateway } => {
                    let gw = gateway.map(|g| format!(" via {g}")).unwrap_or_default();
                    format!(
                        "{} ({}{gw} dev {})",
                        active_cfg.name,
                        if active_rt.remote.is_ipv6() {
                            "ipv6"
                        } else {
                            "ipv4"
                        },
                        link_name(oif).unwrap_or_else(|| format!("if{oif}"))
                    )
                }
                Pin::Blackhole => format!("{} (underlay route lost)", active_cfg.name),
            };
            // The IKE SA of the path that carries the traffic; every path has its own.
            let ipsec = t
                .ipsec
                .get(active)
                .or(t.ipsec.first())
                .map(IpsecTunnel::status);
            let up = t.paths.iter().any(|p| p.pin.is_up())
                && if t.ipsec.is_empty() {
                    paths.iter().any(|p| p.state != "down")
                } else {
                    t.ipsec
                        .iter()
                        .map(IpsecTunnel::status)
                        .any(|s| s.ike_state == "established" && !s.children.is_empty())
                };
            let mut status = TunnelStatus {
                name: t.config.name.clone(),
                device: t.config.device.clone(),
                mode: t.config.mode.to_string(),
                state: if up { "up" } else { "down" }.to_string(),
                active_path,
                local: active_cfg.local.to_string(),
                remote: active_cfg.remote.to_string(),
                mtu: t.mtu,
                path_mtu: t.mtu,
                encap_limit: t.config.encap_limit,
                pinned_route: pinned_route(active_rt),
                paths,
                ipsec,
                ..TunnelStatus::default()
            };
            if let Some(s) = esp {
                // The active path's, lowered while a router reports a smaller link.
                if let Some(p) = s.paths.get(s.active_path) {
                    status.path_mtu = p.stats.path_mtu;
                }
                status.tx_packets = s.stats.tx_packets;
                status.tx_bytes = s.stats.tx_bytes;
                status.rx_packets = s.stats.rx_packets;
                status.rx_bytes = s.stats.rx_bytes;
                status.mss_clamped = s.stats.mss_clamped;
                status.icmp_sent = s.stats.icmp_sent;
                status.send_errors = s.shell.send_errors;
                status.udp_trains_sent = s.shell.udp_trains_sent;
                status.udp_trains_received = s.shell.udp_trains_received;
                status.drops = s
                    .stats
                    .iter_drops()
                    .filter(|(_, n)| *n > 0)
                    .map(|(reason, n)| (reason.to_string(), n))
                    .collect();
                if let Some(ipsec) = status.ipsec.as_mut()
                    && let Some(p) = s.paths.get(active)
                {
                    ipsec.active_spi_out = p.active_outbound.map(|spi| format!("{spi:08x}"));
                    ipsec.inbound_sas = p.inbound_sas;
                    ipsec.keepalives_sent = p.keepalives_sent;
                }
            }
            if let Some(s) = snap {
                status.tx_packets = s.stats.tx_packets;
                status.tx_bytes = s.stats.tx_bytes;
                status.rx_packets = s.stats.rx_packets;
                status.rx_bytes = s.stats.rx_bytes;
                status.mss_clamped = s.stats.mss_clamped;
                status.icmp_sent = s.stats.icmp_sent;
                status.path_mtu = s.stats.path_mtu;
                status.send_errors = s.shell.send_errors;
                status.underlay_gro_packets = s.stats.outer_gro_packets;
                status.drops = s
                    .stats
                    .drops
                    .iter()
                    .map(|(reason, n)| (reason.to_string(), n))
                    .collect();
            }
            tunnels.push(status);
        }
        Ok(GatewayStatus {
            config: self.config_path.display().to_string(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            tunnels,
            watches: self.watches.iter().map(WatchTask::status).collect(),
        })
    }

    /// Re-reads the config and applies the difference tunnel by tunnel. A config that fails
    /// validation changes nothing; one that fails to apply is rolled back to the old one.
    async fn reload(&mut self) -> anyhow::Result<String> {
        let new = Config::load(&self.config_path)?;
        if new.gateway != self.config.gateway {
            // Pin table, rule priority and forwarding affect every tunnel: rebuild all.
            let old = std::mem::replace(&mut self.config, new);
            self.remove_all().await;
            if let Err(e) = self.apply_config().await {
                self.remove_all().await;
                self.config = old;
                self.apply_config()
                    .await
                    .context("restoring the previous config after a failed reload")?;
                return Err(e.context("applying the new [gateway] settings"));
            }
            return Ok(format!(
                "gateway settings changed: all {} tunnel(s) rebuilt",
                self.tunnels.len()
            ));
        }
        let diff = control::diff(&self.config, &new);
        let find = |cfg: &Config, name: &str| cfg.tunnels.iter().find(|t| t.name == name).cloned();
        let mut removed_old = Vec::new();
        for name in diff.removed.iter().chain(diff.changed.iter()) {
            if let Some(old) = find(&self.config, name) {
                self.remove_tunnel(name).await;
                removed_old.push(old);
            }
        }
        let mut added: Vec<String> = Vec::new();
        for name in diff.added.iter().chain(diff.changed.iter()) {
            let Some(tunnel) = find(&new, name) else {
                continue;
            };
            if !tunnel.enabled {
                continue;
            }
            if let Err(e) = self.add_tunnel(tunnel).await {
                for name in &added {
                    self.remove_tunnel(name).await;
                }
                for old in removed_old {
                    if old.enabled {
                        if let Err(e) = self.add_tunnel(old.clone()).await {
                            error!("could not restore tunnel {}: {e:#}", old.name);
                        }
                    }
                }
                return Err(e.context("applying the new config"));
            }
            added.push(name.to_string());
        }
        for name in diff
            .watches_removed
            .iter()
            .chain(diff.watches_changed.iter())
        {
            self.remove_watch(name).await;
        }
        for name in diff.watches_added.iter().chain(diff.watches_changed.iter()) {
            if let Some(w) = new.watch(name).cloned() {
                if let Err(e) = self.add_watch(w) {
                    error!("{e:#}");
                }
            }
        }
        for warning in &new.warnings {
            warn!("config {}:{warning}", self.config_path.display());
        }
        self.config = new;
        Ok(format!(
            "{} added, {} removed, {} changed, {} unchanged; watches: {} added, {} removed, {} changed",
            diff.added.len(),
            diff.removed.len(),
            diff.changed.len(),
            diff.unchanged.len(),
            diff.watches_added.len(),
            diff.watches_removed.len(),
            diff.watches_changed.len()
        ))
    }

    fn own_devices(&self) -> Vec<u32> {
        self.tunnels
            .iter()
            .flat_map(|t| t.ifindexes.iter().copied())
            .collect()
    }

    async fn decide_pin(&self, remote: IpAddr) -> anyhow::Result<Decision> {
        let lookup = self.netlink.route_get(remote, Some(LOOKUP_MARK)).await.ok();
        let family = family_of(remote);
        let main_routes = self
            .netlink
            .routes(family, Some(MAIN_TABLE), None)
            .await
            .context("reading the main routing table")?;
        Ok(pin::decide(
            remote,
            &Facts {
                lookup: lookup.as_ref(),
                main_routes: &main_routes,
                own_devices: &self.own_devices(),
            },
        ))
    }

    async fn add_tunnel(&mut self, tunnel: Tunnel) -> anyhow::Result<()> {
        let mut undo = Undo::default();
        match self.try_add_tunnel(&tunnel, &mut undo).await {
            Ok(runtime) => {
                let paths: Vec<String> = tunnel
                    .paths
                    .iter()
                    .map(|p| format!("{} {} -> {} cost {}", p.name, p.local, p.remote, p.cost))
                    .collect();
                info!(
                    tunnel = %tunnel.name,
                    "up: {} on {}, mtu {}, {} route(s); path(s): {}",
                    tunnel.mode,
                    tunnel.devices().join(", "),
                    runtime.mtu,
                    runtime.routes.len(),
                    paths.join("; ")
                );
                self.tunnels.push(runtime);
                Ok(())
            }
            Err(e) => {
                undo.run(&self.netlink).await;
                self.drop_unused_rules().await;
                Err(e.context(format!("tunnel {}", tunnel.name)))
            }
        }
    }

    async fn try_add_tunnel(
        &mut self,
        t: &Tunnel,
        undo: &mut Undo,
    ) -> anyhow::Result<TunnelRuntime> {
        let gateway = self.config.gateway.clone();
        let mut paths = Vec::new();
        let mut underlay_mtus = HashMap::new();
        for path in &t.paths {
            wait_for_local_address(path.local)
                .await
                .with_context(|| format!("path {}", path.name))?;
            let remote = path.remote;
            let pin = match self.decide_pin(remote).await? {
                Decision::Pin(pin) => pin,
                Decision::Loop { through } => bail!(
                    "path {}: routing loop: the remote endpoint {remote} is reachable only \
                     through v6gate tunnel device {}; it must be reachable over the underlay \
                     (check the routes of the other tunnels and the main table)",
                    path.name,
                    link_name(through).unwrap_or_else(|| through.to_string())
                ),
            };
            if pin == Pin::Blackhole {
                warn!(
                    tunnel = %t.name,
                    path = %path.name,
                    "no underlay route to {remote} yet: endpoint blackholed until one appears"
                );
            }
            let pin_route = pin::route(remote, pin, gateway.pin_table, ROUTE_PROTOCOL);
            self.netlink
                .route_replace(&pin_route)
                .await
                .with_context(|| format!("pinning {remote} in table {}", gateway.pin_table))?;
            undo.routes.push(pin_route.clone());
            self.ensure_rule(family_of(remote)).await?;
            let underlay_mtu = match pin {
                Pin::Via { oif, .. } => self
                    .netlink
                    .link_mtu(oif)
                    .await
                    .ok()
                    .and_then(|m| u16::try_from(m).ok())
                    .unwrap_or(1500),
                Pin::Blackhole => 1500,
            };
            underlay_mtus.insert(path.name.clone(), underlay_mtu);
            paths.push(PathRuntime {
                remote,
                pin,
                pin_route,
            });
        }
        let plan = control::tunnel_plan(&gateway, t, |p| {
            underlay_mtus.get(&p.name).copied().unwrap_or(1500)
        });

        let mut devices = Vec::new();
        let mut ifindexes = Vec::new();
        let mut routes = Vec::new();
        let mut mtu = u16::MAX;
        for device in &plan.devices {
            // Offloads let one read carry up to 64 KiB of a TCP flow (the packet thread splits
            // it) instead of one packet per system call.
            let tun = TunDevice::create_with(&device.name, tun_options())
                .with_context(|| format!("creating TUN device {}", device.name))?;
            let ifindex = tun.index();
            self.configure_device(device, ifindex).await?;
            mtu = mtu.min(device.mtu);
            for planned in &device.routes {
                let route = Route {
                    dst: planned.dst,
                    table: planned.table,
                    protocol: ROUTE_PROTOCOL,
                    metric: Some(planned.metric),
                    oif: Some(ifindex),
                    gateway: None,
                    kind: RouteKind::Unicast,
                };
                self.netlink.route_add(&route).await.with_context(|| {
                    format!(
                        "adding route {} dev {} table {} (routes)",
                        planned.dst, device.name, planned.table
                    )
                })?;
                undo.routes.push(route.clone());
                routes.push(route);
            }
            // With a device per path, each device carries exactly its path.
            let path = if t.device_per_path {
                plan.paths
                    .iter()
                    .position(|p| p.device == device.name)
                    .and_then(|i| u8::try_from(i).ok())
                    .map(dataplane::PathId)
            } else {
                None
            };
            ifindexes.push(ifindex);
            devices.push(TunnelDevice { path, tun });
        }

        let dp_config = self.dataplane_config(t, mtu).await;
        let (id, ipsec) = if t.ipsec.is_some() {
            let [device] = <[TunnelDevice; 1]>::try_from(devices).map_err(|d| {
                anyhow::anyhow!("an ipsec tunnel runs one device, the plan has {}", d.len())
            })?;
            self.start_ipsec(t, dp_config, device.tun).await?
        } else {
            (
                self.datapath.add_tunnel(dp_config, devices).await?,
                Vec::new(),
            )
        };
        Ok(TunnelRuntime {
            config: t.clone(),
            id,
            ifindexes,
            paths,
            routes,
            mtu,
            ipsec,
        })
    }

    /// The ipsec tunnel's ESP cores in the packet thread, then one IKE task per path. Nothing
    /// may be awaited between starting the tasks and handing the cores over: the first SA
    /// change must find the cores there.
    async fn start_ipsec(
        &mut self,
        t: &Tunnel,
        dp: dataplane::TunnelConfig,
        tun: TunDevice,
    ) -> anyhow::Result<(dataplane::TunnelId, Vec<IpsecTunnel>)> {
        if t.paths.is_empty() {
            bail!("an ipsec tunnel needs its local and remote");
        }
        let mut sockets = Vec::new();
        for path in &t.paths {
            let s = match self.ike_sockets.get(&path.local) {
                Some(s) => s.clone(),
                None => {
                    let s = IkeSockets::bind(path.local).await?;
                    self.ike_sockets.insert(path.local, s.clone());
                    s
                }
            };
            sockets.push(s);
        }
        let paths: Vec<dataplane::esp::EspPathConfig> = t
            .paths
            .iter()
            .map(|path| dataplane::esp::EspPathConfig {
                name: path.name.clone(),
                cost: path.cost,
                probed: path.probe != control::Probe::None,
                esp: dataplane::esp::EspTunnelConfig {
                    local: path.local,
                    remote: path.remote,
                    local_subnets: t.local_subnets.clone(),
                    routes: t.routes.clone(),
                    allowed_sources: dp.allowed_sources.clone(),
                    mtu: dp.mtu,
                    mss_clamp: dp.mss_clamp,
                    hop_limit: dp.hop_limit,
                    icmp_source_v4: dp.icmp_source_v4,
                    icmp_source_v6: dp.icmp_source_v6,
                },
            })
            .collect();
        let mut ikes: Vec<IpsecTunnel> = Vec::new();
        let mut links = Vec::new();
        for (i, s) in sockets.iter().enumerate() {
            match IpsecTunnel::start(t, i, s, self.sa_changes.clone()) {
                Ok(ike) => {
                    links.push(EspLinks {
                        udp: s.esp_socket(),
                        ike: s.ike_from_4500(),
                        liveness: ike.liveness(),
                    });
                    ikes.push(ike);
                }
                Err(e) => {
                    for ike in ikes {
                        ike.stop().await;
                    }
                    return Err(e);
                }
            }
        }
        match self
            .datapath
            .add_esp_tunnel(&t.name, dp.health, paths, tun, links)
            .await
        {
            Ok(id) => Ok((id, ikes)),
            Err(e) => {
                for ike in ikes {
                    ike.stop().await;
                }
                Err(e)
            }
        }
    }

    async fn configure_device(
        &mut self,
        plan: &control::DevicePlan,
        ifindex: u32,
    ) -> anyhow::Result<()> {
        let dev = &plan.name;
        // Per-device sysctls vanish with the device, so they need no journal.
        for change in &plan.sysctls {
            sys::sysctl::write(&change.key, &change.value)
                .with_context(|| format!("setting sysctl {} on {dev}", change.key))?;
        }
        self.netlink
            .link_set_mtu(ifindex, u32::from(plan.mtu))
            .await
            .with_context(|| format!("setting mtu {} on {dev}", plan.mtu))?;
        // The kernel drops what the packet thread has not read once this queue is full; at
        // Linux's default of 500 a single TCP flow loses packets to every scheduling hiccup
        // (1,434 retransmits in 4 s in the lab), at 1,000 none.
        self.netlink
            .link_set_txqueuelen(ifindex, TUN_TXQUEUELEN)
            .await
            .with_context(|| format!("setting txqueuelen on {dev}"))?;
        for address in &plan.addresses {
            self.netlink
                .address_add(ifindex, *address)
                .await
                .with_context(|| format!("adding address {address} to {dev} (address)"))?;
        }
        self.netlink
            .link_set_up(ifindex)
            .await
            .with_context(|| format!("bringing {dev} up"))?;
        Ok(())
    }

    /// Source addresses for the ICMP errors the core generates toward LAN hosts: the tunnel's
    /// own address if it has one, else the address the kernel would pick toward the tunnel.
    async fn dataplane_config(&self, t: &Tunnel, mtu: u16) -> dataplane::TunnelConfig {
        let mut icmp_v4 = t.addresses.iter().find_map(|a| match a.addr() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        });
        let mut icmp_v6 = t.addresses.iter().find_map(|a| match a.addr() {
            IpAddr::V6(v6) if !v6.is_unicast_link_local() => Some(v6),
            _ => None,
        });
        for route in &t.routes {
            let probe = probe_address(route);
            let Ok(lookup) = self.netlink.route_get(probe, None).await else {
                continue;
            };
            match lookup.prefsrc {
                Some(IpAddr::V4(src)) if icmp_v4.is_none() => icmp_v4 = Some(src),
                Some(IpAddr::V6(src)) if icmp_v6.is_none() => icmp_v6 = Some(src),
                _ => {}
            }
        }
        convert::dataplane_config(t, mtu, icmp_v4, icmp_v6)
    }

    async fn ensure_rule(&mut self, family: Family) -> anyhow::Result<()> {
        if self.rules.iter().any(|r| r.family == family) {
            return Ok(());
        }
        let rule = self.pin_rule(family);
        self.netlink.rule_add(&rule).await.with_context(|| {
            format!(
                "adding rule `not fwmark {LOOKUP_MARK:#x} lookup {}` at priority {}",
                rule.table, rule.priority
            )
        })?;
        self.rules.push(rule);
        Ok(())
    }

    fn pin_rule(&self, family: Family) -> Rule {
        Rule {
            family,
            priority: self.config.gateway.pin_rule_priority,
            table: self.config.gateway.pin_table,
            fwmark: Some(LOOKUP_MARK),
            fwmask: Some(u32::MAX),
            invert: true,
            suppress_prefixlen: None,
        }
    }

    async fn drop_unused_rules(&mut self) {
        let in_use: Vec<Family> = self
            .tunnels
            .iter()
            .flat_map(|t| t.paths.iter().map(|p| family_of(p.remote)))
            .collect();
        let mut keep = Vec::new();
        for rule in std::mem::take(&mut self.rules) {
            if in_use.contains(&rule.family) {
                keep.push(rule);
            } else if let Err(e) = self.netlink.rule_del(&rule).await {
                warn!("removing pin rule: {e:#}");
            }
        }
        self.rules = keep;
    }

    async fn remove_tunnel(&mut self, name: &str) {
        let Some(pos) = self.tunnels.iter().position(|t| t.config.name == name) else {
            return;
        };
        let mut t = self.tunnels.remove(pos);
        for ike in std::mem::take(&mut t.ipsec) {
            ike.stop().await;
        }
        if let Err(e) = self.datapath.remove_tunnel(t.id).await {
            warn!(tunnel = name, "{e:#}");
        }
        let undo = Undo {
            routes: t
                .paths
                .into_iter()
                .map(|p| p.pin_route)
                .chain(t.routes)
                .collect(),
        };
        undo.run(&self.netlink).await;
        self.drop_unused_rules().await;
        info!(tunnel = name, "removed");
    }

    async fn remove_all(&mut self) {
        let watches: Vec<String> = self.watches.iter().map(|w| w.name.clone()).collect();
        for name in &watches {
            self.remove_watch(name).await;
        }
        let names: Vec<String> = self.tunnels.iter().map(|t| t.config.name.clone()).collect();
        for name in names.iter().rev() {
            self.remove_tunnel(name).await;
        }
        self.drop_unused_rules().await;
        for e in self.sysctls.restore() {
            warn!("restoring sysctl: {e}");
        }
    }

    async fn stop(&mut self) {
        if let Some(server) = self.control.take() {
            server.close();
        }
        self.remove_all().await;
        self.datapath.shutdown();
        info!("stopped; everything v6gate installed has been removed");
    }

    /// Re-checks every pin after the host's routes or links changed.
    async fn repin(&mut self) {
        for i in 0..self.tunnels.len() {
            for j in 0..self.tunnels[i].paths.len() {
                let remote = self.tunnels[i].paths[j].remote;
                let decision = match self.decide_pin(remote).await {
                    Ok(d) => d,
                    Err(e) => {
                        warn!("re-checking pins: {e:#}");
                        return;
                    }
                };
                let wanted = match decision {
                    Decision::Pin(pin) => pin,
                    Decision::Loop { .. } => Pin::Blackhole,
                };
                let name = self.tunnels[i].config.name.clone();
                let current = self.tunnels[i].paths[j].pin;
                if wanted == current {
                    continue;
                }
                let route = pin::route(
                    remote,
                    wanted,
                    self.config.gateway.pin_table,
                    ROUTE_PROTOCOL,
                );
                if let Err(e) = self.netlink.route_replace(&route).await {
                    warn!(tunnel = %name, "re-pinning {remote}: {e:#}");
                    continue;
                }
                info!(
                    tunnel = %name,
                    "underlay changed: endpoint {remote} re-pinned {} -> {}",
                    describe_pin(current),
                    describe_pin(wanted)
                );
                let p = &mut self.tunnels[i].paths[j];
                p.pin = wanted;
                p.pin_route = route;
            }
        }
    }

    /// A crash leaves pin routes and rules behind (TUN devices and their routes vanish with the
    /// process). Remove them before installing anything.
    async fn remove_leftovers(&mut self) {
        let gateway = self.config.gateway.clone();
        for family in [Family::V4, Family::V6] {
            if let Ok(routes) = self
                .netlink
                .routes(family, None, Some(ROUTE_PROTOCOL))
                .await
            {
                for route in routes {
                    debug!("removing leftover route {}", route.dst);
                    let _ = self.netlink.route_del(&route).await;
                }
            }
            if let Ok(rules) = self.netlink.rules(family).await {
                for rule in rules.into_iter().filter(|r| {
                    r.priority == gateway.pin_rule_priority && r.table == gateway.pin_table
                }) {
                    info!("removing leftover pin rule at priority {}", rule.priority);
                    let _ = self.netlink.rule_del(&rule).await;
                }
            }
        }
    }
}

/// Routes to remove, newest first.
#[derive(Default)]
struct Undo {
    routes: Vec<Route>,
}

impl Undo {
    async fn run(self, netlink: &Netlink) {
        for route in self.routes.iter().rev() {
            if let Err(e) = netlink.route_del(route).await {
                warn!("removing route {}: {e:#}", route.dst);
            }
        }
    }
}

fn describe_pin(pin: Pin) -> String {
    match pin {
        Pin::Via { oif, gateway } => {
            let dev = link_name(oif).unwrap_or_else(|| format!("if{oif}"));
            match gateway {
                Some(gw) => format!("via {gw} dev {dev}"),
                None => format!("dev {dev}"),
            }
        }
        Pin::Blackhole => "blackhole".to_string(),
    }
}

fn family_of(addr: IpAddr) -> Family {
    match addr {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}

/// An address inside `route` to ask the kernel about (the network address itself is not
/// routable for 0.0.0.0/0 and ::/0).
fn probe_address(route: &IpNet) -> IpAddr {
    match route {
        IpNet::V4(n) if n.prefix_len() == 0 => IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
        IpNet::V6(n) if n.prefix_len() == 0 => {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))
        }
        IpNet::V4(n) => IpAddr::V4(n.network()),
        IpNet::V6(n) => IpAddr::V6(n.network()),
    }
}

/// The kernel refuses to bind or send from an address that is not (yet) assigned; a fresh
/// IPv6 address is tentative for a moment during DAD, so wait briefly before giving up.
async fn wait_for_local_address(local: IpAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match UdpSocket::bind(SocketAddr::new(local, 0)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                debug!("local address {local} not usable yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                bail!("local address {local} (local) is not assigned to any interface here: {e}")
            }
        }
    }
}

fn notify_systemd(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    if let Err(e) = socket.send_to(state.as_bytes(), &path) {
        debug!("sd_notify: {e}");
    }
}

mod convert {
    //! control's validated config -> dataplane's tunnel config. Probe, MSS clamp and traffic
    //! class are the dataplane's own types in both; what is left is the tunnel kind and the
    //! values the host decides (MTU, ICMP sources).
    use std::net::{Ipv4Addr, Ipv6Addr};

    use control::Tunnel;

    pub(super) fn dataplane_config(
        t: &Tunnel,
        mtu: u16,
        icmp_source_v4: Option<Ipv4Addr>,
        icmp_source_v6: Option<Ipv6Addr>,
    ) -> dataplane::TunnelConfig {
        let paths = t
            .paths
            .iter()
            .map(|p| dataplane::PathConfig {
                name: p.name.clone(),
                local: p.local,
                remote: p.remote,
                cost: p.cost,
                probe: p.probe,
            })
            .collect();
        dataplane::TunnelConfig {
            name: t.name.clone(),
            mode: match t.mode {
                control::Mode::Ipip6 => dataplane::Mode::Ipip6,
                control::Mode::Ip6ip6 => dataplane::Mode::Ip6ip6,
                control::Mode::Any => dataplane::Mode::Any,
                // Refused before this point: ESP tunnels have their own core.
                control::Mode::Ipsec => dataplane::Mode::Any,
            },
            paths,
            encap_limit: match t.encap_limit {
                None => dataplane::EncapLimit::None,
                Some(n) => dataplane::EncapLimit::Limit(n),
            },
            mtu,
            hop_limit: t.hop_limit,
            traffic_class: t.tclass,
            routes: t.routes.clone(),
            allowed_sources: t.allowed_sources.clone(),
            allow_ipv4: t.inner_families.ipv4,
            allow_ipv6: t.inner_families.ipv6,
            mss_clamp: t.mss_clamp,
            icmp_source_v4,
            icmp_source_v6,
            health: super::watch::health_config(&t.health),
            device_per_path: t.device_per_path,
        }
    }
}

/// Interface name for an index, for log lines and status (the namespace's own sysfs).
fn link_name(index: u32) -> Option<String> {
    let entries = std::fs::read_dir("/sys/class/net").ok()?;
    entries.flatten().find_map(|entry| {
        let ifindex = std::fs::read_to_string(entry.path().join("ifindex")).ok()?;
        (ifindex.trim().parse::<u32>().ok()? == index)
            .then(|| entry.file_name().to_string_lossy().into_owned())
    })
}

/// Interface index for a name (the namespace's own sysfs).
fn link_index(name: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn pinned_route(path: &PathRuntime) -> PinnedRoute {
    let (device, gateway) = match path.pin {
        Pin::Via { oif, gateway } => (
            Some(link_name(oif).unwrap_or_else(|| format!("if{oif}"))),
            gateway.map(|g| g.to_string()),
        ),
        Pin::Blackhole => (None, None),
    };
    PinnedRoute {
        destination: path.pin_route.dst.to_string(),
        kind: if path.pin.is_up() { "via" } else { "blackhole" }.to_string(),
        gateway,
        device,
        table: path.pin_route.table,
    }
}

fn tun_options() -> sys::tun::TunOptions {
    sys::tun::TunOptions {
        vnet_hdr: true,
        offloads: sys::tun::Offloads::ALL,
        multi_queue: false,
    }
}
