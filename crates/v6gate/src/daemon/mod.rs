//! `v6gate run`: bring the configured tunnels up, keep their endpoints pinned, answer the
//! control socket, and on stop remove everything that was installed.
//!
//! Start-up order: the runtime directory (the control socket's, created root-only when
//! missing) and this instance's lock in it, before anything touches the host, so a second
//! daemon with the same socket refuses and changes nothing; then the journal of a run of this
//! instance that crashed, whose leftovers are removed; then the gateway's sysctls and every
//! tunnel (see `tunnels`); then the control socket. Everything put on the host is an object
//! of the one host state (`host`), which journals it, repairs it when someone else removes
//! or changes it, and takes it off at stop. Watches start after the tunnels and stop before
//! them.
//!
//! An ipsec tunnel takes the same steps up to its TUN device; then its packet path is an ESP
//! core per path in the packet thread instead of an RFC 2473 one, and its IKE tasks, one per
//! path, start last and stop first (so the peer hears a DELETE while the tunnel still stands).

mod confirm;
mod control_socket;
mod ddns;
mod firewall;
mod hold;
pub mod host;
mod instance;
mod ipsec;
mod kpath;
mod kpath_mss;
mod names;
mod packet;
pub mod pin;
mod reload;
mod report;
mod softwire;
mod tunnels;
mod watch;

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use control::{Config, Tunnel};
use ipnet::IpNet;
use sys::netlink::{Netlink, Route};
use sys::runtime_dir::InstanceLock;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::status::{Request, Response};
use host::{HostState, Object};
use ipsec::{IkeSockets, IpsecTunnel};
use packet::Datapath;
use pin::Pin;
use watch::{RouteWish, WatchTask};

/// Routing protocol number stamped on every route v6gate installs (`ip route show proto 118`).
pub const ROUTE_PROTOCOL: u8 = 118;

/// Firewall mark of v6gate's own route lookups. The pin rule is `not fwmark MARK`, so a lookup
/// with this mark sees the underlay behind the pin.
pub const LOOKUP_MARK: u32 = 0x7636;

const MAIN_TABLE: u32 = 254;

/// Packets the kernel queues on a TUN device for the packet thread.
const TUN_TXQUEUELEN: u32 = 1000;

/// How often sysctls, which send no notifications, are compared with what we set.
const SYSCTL_CHECK: Duration = Duration::from_millis(250);
/// How often the kernel path is compared with its core besides the core's path changes,
/// which the packet thread sends as they happen: a safety net for what no change announces
/// (the programs' first path at start against the core's, a reload's new core config).
const KERNEL_PATH_CHECK: Duration = Duration::from_secs(2);

/// Host-state owner name of the gateway-wide objects.
const GATEWAY: &str = "gateway";

pub fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    if let Some(dir) = &config.gateway.key_log {
        crate::keylog::open(dir).with_context(|| format!("key_log {}", dir.display()))?;
        warn!(
            "KEY LOG ON: every IKE and CHILD SA's keys go to {}; whoever reads it reads the \
             tunnels' traffic. Remove [gateway] key_log when the capture is done.",
            dir.display()
        );
    }
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
    /// Their MTUs, as made.
    device_mtus: Vec<u16>,
    paths: Vec<PathRuntime>,
    mtu: u16,
    /// The IKE side of an ipsec tunnel: one IKE SA per path, in the order of the paths.
    ipsec: Vec<IpsecTunnel>,
    /// The kernel path beside the TUN dataplane, or why not.
    dataplane: kpath::Chosen,
}

struct Daemon {
    config_path: PathBuf,
    config: Config,
    netlink: Netlink,
    datapath: Datapath,
    host: HostState<Netlink>,
    tunnels: Vec<TunnelRuntime>,
    watches: Vec<WatchTask>,
    /// What the watches want installed, applied by the main loop.
    wishes: mpsc::UnboundedSender<RouteWish>,
    wishes_rx: Option<mpsc::UnboundedReceiver<RouteWish>>,
    /// Generation of the next watch task started.
    next_watch: u64,
    started: Instant,
    control: Option<control_socket::Server>,
    /// UDP 500/4500 per local address of ipsec tunnels, bound at first use and kept.
    ike_sockets: HashMap<IpAddr, IkeSockets>,
    /// Tunnels taken down by `v6gate down`, until `v6gate up`.
    held: BTreeSet<String>,
    /// `[[table]]` routes waiting for their device.
    firewall_missing: BTreeSet<String>,
    /// A `reload --confirm` not yet confirmed.
    pending: Option<confirm::Pending>,
    /// The `[[ddns]]` entries' runner, while there are entries.
    ddns: Option<crate::ddns::DdnsRunner>,
    /// Tunnels whose ends are names or devices.
    names: names::Names,
    /// MAP-E and DS-Lite tunnels, lowered to RFC 2473 ones.
    softwires: softwire::Softwires,
    /// Held for the daemon's life: this instance's claim on its control socket.
    _lock: InstanceLock,
}

impl Daemon {
    async fn start(config_path: PathBuf, config: Config) -> anyhow::Result<Self> {
        let netlink = Netlink::new().context("opening rtnetlink")?;
        // Nothing on the host changes before this instance owns its name.
        let instance = instance::Instance::claim(&config, netlink.clone())?;
        let datapath = Datapath::spawn()?;
        let instance::Instance { lock, mut host } = instance;
        let (wishes, wishes_rx) = mpsc::unbounded_channel();
        host.take_over(&instance::accept(&config)).await?;
        let mut daemon = Self {
            config_path,
            config,
            netlink,
            datapath,
            host,
            tunnels: Vec::new(),
            watches: Vec::new(),
            wishes,
            wishes_rx: Some(wishes_rx),
            next_watch: 0,
            started: Instant::now(),
            control: None,
            ike_sockets: HashMap::new(),
            held: BTreeSet::new(),
            firewall_missing: BTreeSet::new(),
            pending: None,
            ddns: None,
            names: names::Names::new(),
            softwires: softwire::Softwires::default(),
            _lock: lock,
        };
        for warning in &daemon.config.warnings {
            warn!("config {}:{warning}", daemon.config_path.display());
        }
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

    /// Gateway-wide settings, then every enabled tunnel; on failure everything done is undone
    /// by the caller's stop.
    async fn apply_config(&mut self) -> anyhow::Result<()> {
        let changes = self
            .host
            .set(GATEWAY, gateway_objects(&self.config))
            .await
            .context("[gateway]")?;
        for line in &changes.added {
            info!("{line}");
        }
        let plan = self.firewall_plan(&self.config).await.check()?;
        let changes = self.set_firewall(plan).await.context("[firewall]")?;
        for line in &changes.added {
            info!("{line}");
        }
        // Softwires first: an ipsec tunnel whose `local` is a MAP-E shared address binds its
        // IKE sockets to an address the softwire puts on the host.
        self.start_softwires().await;
        let tunnels: Vec<Tunnel> = self.config.enabled_tunnels().cloned().collect();
        for tunnel in tunnels {
            self.add_tunnel(tunnel).await?;
        }
        for w in self.config.watches.clone() {
            self.add_watch(w)?;
        }
        self.start_ddns().await
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
        self.next_watch += 1;
        let task = WatchTask::start(w, self.next_watch, self.wishes.clone())
            .with_context(|| format!("watch {name}"))?;
        self.watches.push(task);
        Ok(())
    }

    async fn remove_watch(&mut self, name: &str) {
        if let Some(pos) = self.watches.iter().position(|w| w.name == name) {
            self.watches.remove(pos).stop().await;
            if let Err(e) = self.host.set(&watch_owner(name), Vec::new()).await {
                warn!(watch = name, "withdrawing its route: {e:#}");
            }
            info!(watch = name, "stopped");
        }
    }

    async fn serve(&mut self) -> anyhow::Result<()> {
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sighup = signal(SignalKind::hangup())?;
        let mut changes = sys::netlink::watch_changes().context("watching route changes")?;
        let mut nft_changes =
            sys::netlink::watch_nftables().context("watching nftables changes")?;
        let (ctl_tx, mut ctl_rx) = mpsc::channel::<(Request, oneshot::Sender<Response>)>(8);
        if let Some(server) = self.control.as_mut() {
            server.start(ctl_tx);
        }
        let (Some(mut wishes), Some(mut moved), Some(mut path_changes)) = (
            self.wishes_rx.take(),
            self.names.take_moved(),
            self.datapath.take_path_changes(),
        ) else {
            bail!("the daemon is already serving");
        };
        let mut sysctl_check = tokio::time::interval(SYSCTL_CHECK);
        sysctl_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut kernel_path_check = tokio::time::interval(KERNEL_PATH_CHECK);
        kernel_path_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Whatever changed between set-up and the subscription.
        self.repair(false).await;
        loop {
            tokio::select! {
                _ = sigterm.recv() => { info!("SIGTERM: stopping"); return Ok(()); }
                _ = sigint.recv() => { info!("SIGINT: stopping"); return Ok(()); }
                _ = sighup.recv() => {
                    info!("SIGHUP: reloading {}", self.config_path.display());
                    match self.reload().await {
                        Ok(summary) => info!("reloaded: {summary}"),
                        Err(e) => tracing::error!("reload failed, running config kept: {e:#}"),
                    }
                }
                Some((request, reply)) = ctl_rx.recv() => {
                    let response = self.handle_request(request).await;
                    let _ = reply.send(response);
                }
                Some(_) = changes.recv() => {
                    // Changes come in bursts (a link going down withdraws many routes, a flush
                    // deletes a table): settle, then look once.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    while changes.try_recv().is_ok() {}
                    self.repin().await;
                    self.repair(false).await;
                    self.refresh_firewall().await;
                    self.follow_devices().await;
                    self.follow_softwires().await;
                    // A re-pinned path takes the kernel path's routes along.
                    self.follow_kernel_paths().await;
                }
                Some(change) = path_changes.recv() => {
                    let mut changed = vec![change.tunnel()];
                    while let Ok(change) = path_changes.try_recv() {
                        changed.push(change.tunnel());
                    }
                    self.follow_path_changes(&changed).await;
                }
                Some(()) = nft_changes.recv() => {
                    // A ruleset load is one burst of notifications per object.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    while nft_changes.try_recv().is_ok() {}
                    for line in self.host.repair_table().await {
                        warn!("host state: {line}");
                    }
                }
                () = confirm::deadline(self.pending.as_ref().map(|p| p.deadline)) => {
                    self.revert().await;
                }
                _ = sysctl_check.tick() => {
                    self.repair(true).await;
                    self.tick_names().await;
                    self.retry_softwires().await;
                }
                _ = kernel_path_check.tick() => self.follow_kernel_paths().await,
                Some(_) = moved.recv() => {
                    while moved.try_recv().is_ok() {}
                    self.follow_names().await;
                }
                Some(wish) = wishes.recv() => self.grant(wish).await,
            }
        }
    }

    /// Installs or withdraws a watch's route, unless the watch has been stopped since.
    async fn grant(&mut self, wish: RouteWish) {
        let current = self
            .watches
            .iter()
            .any(|w| w.name == wish.name && w.generation == wish.generation);
        if !current {
            return;
        }
        let objects = wish.route.into_iter().map(Object::Route).collect();
        if let Err(e) = self.host.set(&watch_owner(&wish.name), objects).await {
            warn!(watch = %wish.name, "{e:#}");
        }
    }

    /// Puts back what someone else removed or changed, and says so.
    async fn repair(&mut self, sysctls_only: bool) {
        for line in self.host.repair(sysctls_only).await {
            warn!("host state: {line}");
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
                Ok(summary) => {
                    // What a plain reload applies is kept, as if confirmed.
                    self.pending = None;
                    Response::Reloaded { summary }
                }
                Err(e) => Response::Error {
                    message: format!("{e:#}"),
                },
            },
            Request::ReloadConfirm { seconds } => {
                match self.reload_confirmed(Duration::from_secs(seconds)).await {
                    Ok(summary) => Response::Reloaded { summary },
                    Err(e) => Response::Error {
                        message: format!("{e:#}"),
                    },
                }
            }
            Request::Confirm => match self.confirm() {
                Ok(summary) => Response::Confirmed { summary },
                Err(e) => Response::Error {
                    message: format!("{e:#}"),
                },
            },
            Request::Down { tunnel } => Response::done(self.hold_down(&tunnel).await),
            Request::Up { tunnel } => Response::done(self.release(&tunnel).await),
            Request::Initiate { tunnel } => Response::done(self.initiate(&tunnel)),
        }
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
    }

    async fn stop(&mut self) {
        if let Some(server) = self.control.take() {
            server.close();
        }
        self.stop_ddns().await;
        self.stop_softwires().await;
        self.names.clear();
        self.remove_all().await;
        self.host.clear().await;
        self.datapath.shutdown();
        info!("stopped; everything v6gate installed has been removed");
    }
}

/// The host-state owner name of a watch's route.
fn watch_owner(name: &str) -> String {
    format!("watch {name}")
}

/// The gateway-wide objects: the sysctls `[gateway]` sets.
fn gateway_objects(config: &Config) -> Vec<Object> {
    control::plan(config, |_, _| 0)
        .sysctls
        .into_iter()
        .map(|c| Object::Sysctl {
            key: c.key,
            value: c.value,
        })
        .collect()
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
    //! control's validated config -> dataplane's tunnel config. Mode, probe, health, MSS clamp
    //! and traffic class are the dataplane's own types in both; what is left is the layout of
    //! the config (paths, encap limit, inner families) and the values the host decides (MTU,
    //! ICMP sources).
    use std::net::{Ipv4Addr, Ipv6Addr};

    use control::Tunnel;

    /// What the kernel sends into the device: `routes`, and the tunnel link's own network,
    /// which the kernel routes there as soon as the device has its `address` (the peer's
    /// tunnel address, or a VPS answering the home router's ping, lives there).
    fn routed(t: &Tunnel) -> Vec<ipnet::IpNet> {
        let mut routes = t.routes.clone();
        for link in t.addresses.iter().map(ipnet::IpNet::trunc) {
            if !routes.iter().any(|r| r.contains(&link)) {
                routes.push(link);
            }
        }
        routes
    }

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
            mode: t.mode,
            paths,
            encap_limit: match t.encap_limit {
                None => dataplane::EncapLimit::None,
                Some(n) => dataplane::EncapLimit::Limit(n),
            },
            mtu,
            hop_limit: t.hop_limit,
            traffic_class: t.tclass,
            routes: routed(t),
            allowed_sources: t.allowed_sources.clone(),
            allow_ipv4: t.inner_families.ipv4,
            allow_ipv6: t.inner_families.ipv6,
            mss_clamp: t.mss_clamp,
            icmp_source_v4,
            icmp_source_v6,
            health: t.health,
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

fn tun_options() -> sys::tun::TunOptions {
    sys::tun::TunOptions {
        vnet_hdr: true,
        offloads: sys::tun::Offloads::ALL,
        multi_queue: false,
    }
}
