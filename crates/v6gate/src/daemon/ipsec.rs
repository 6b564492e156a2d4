//! The IKE shell of `mode = "ipsec"` tunnels: UDP sockets on ports 500 and 4500, one
//! [`ike::Peer`] per tunnel driven on tokio, which hands the SAs it negotiates, keyed and
//! ready (`sa.rs`), straight to the packet thread's [`dataplane::esp::EspTunnel`]s.
//!
//! ```text
//!  UDP 500 ──► IkeSockets task ──demux by remote──► tunnel task (ike::Peer) ──► SaInbox ──► packet thread
//!  UDP 4500 ─► packet thread: ESP ─► EspTunnel      ▲ IKE (non-ESP marker) ──┘ via IkeSockets::ike_from_4500
//! ```
//!
//! A new CHILD SA opens inbound before the IKE message that lets the peer use it leaves, and
//! seals outbound only after: otherwise the peer's first packets on it arrive before we know
//! the SPI, or ours before the peer does.
//!
//! Who reads UDP 4500 is a trade-off. Demultiplexing in this task and forwarding ESP by
//! channel costs every ESP packet a copy, a channel send and a wake-up of the packet thread,
//! and puts tokio's scheduler into the data path. The packet thread reading the socket itself
//! (batched, like its raw sockets) keeps ESP on one thread with no copy; the rare IKE datagram
//! on 4500 (after NAT detection, marked by four zero bytes, RFC 3948 §2.2) is then handed back
//! here through [`IkeSockets::ike_from_4500`]. The second is faster and is what this module
//! does: [`IkeSockets::esp_socket`] is the 4500 socket the packet thread reads, and this task
//! only ever sends on it.

mod sa;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::status::{ChildStatus, IkeState, IpsecStatus};
use anyhow::{Context, anyhow, bail};
use dataplane::esp::OutboundSa;
use ike::{ChildSaInfo, DownReason, Event, Peer, Reinitiation};
use ipnet::IpNet;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::packet::{Datagram, SaChange, SaCommand, SaInbox, UnknownSpi};

/// IKE's port (RFC 7296 §2).
pub const IKE_PORT: u16 = 500;
/// IKE and ESP after NAT detection (RFC 3948).
pub const NAT_T_PORT: u16 = 4500;
/// The four zero bytes in front of IKE on port 4500.
const NON_ESP_MARKER: [u8; 4] = [0; 4];
/// Largest IKE datagram read; IKE messages with certificates are fragmented well below this.
const MAX_DATAGRAM: usize = 65535;
/// Queue of datagrams waiting for one tunnel's task; beyond it, datagrams are dropped (IKE
/// retransmits).
const TUNNEL_QUEUE: usize = 64;

/// Routes IKE datagrams to the tunnel whose remote sent them.
#[derive(Debug, Default)]
pub struct Demux {
    tunnels: HashMap<IpAddr, mpsc::Sender<Datagram>>,
}

impl Demux {
    /// Registers the tunnel to `remote`; an error when another one has it already (control's
    /// validation refuses two tunnels between the same endpoints).
    pub fn insert(&mut self, remote: IpAddr, to: mpsc::Sender<Datagram>) -> anyhow::Result<()> {
        if self.tunnels.contains_key(&remote) {
            bail!("an ipsec tunnel to {remote} is running already");
        }
        self.tunnels.insert(remote, to);
        Ok(())
    }

    pub fn remove(&mut self, remote: IpAddr) {
        self.tunnels.remove(&remote);
    }

    /// Hands `datagram` to its tunnel. False when no tunnel has that remote, or its queue is
    /// full or closed: the datagram is dropped.
    pub fn route(&self, datagram: Datagram) -> bool {
        match self.tunnels.get(&datagram.remote.ip()) {
            Some(to) => to.try_send(datagram).is_ok(),
            None => false,
        }
    }
}

/// The IKE sockets of one local address, shared by every ipsec tunnel that uses it.
#[derive(Debug, Clone)]
pub struct IkeSockets {
    local: IpAddr,
    ike: Arc<UdpSocket>,
    esp: Arc<StdUdpSocket>,
    demux: Arc<Mutex<Demux>>,
    from_4500: mpsc::Sender<Datagram>,
}

impl IkeSockets {
    /// Binds UDP 500 and 4500 on `local` and starts the task that reads port 500 and the
    /// datagrams the packet thread hands back from 4500. Must run inside a tokio runtime.
    pub async fn bind(local: IpAddr) -> anyhow::Result<Self> {
        let ike = UdpSocket::bind(SocketAddr::new(local, IKE_PORT))
            .await
            .with_context(|| format!("binding UDP {local} port {IKE_PORT}"))?;
        let esp = StdUdpSocket::bind(SocketAddr::new(local, NAT_T_PORT))
            .with_context(|| format!("binding UDP {local} port {NAT_T_PORT}"))?;
        // This side only sends on it; a full send buffer drops an IKE message, which IKE
        // retransmits, rather than stalling the task.
        esp.set_nonblocking(true)?;
        // ESP-in-UDP arrives here at line rate; the default buffer overflows in bursts.
        sys::raw::enlarge_buffers(&esp)
            .with_context(|| format!("enlarging the buffers of UDP {local}:{NAT_T_PORT}"))?;
        let (from_4500, mut from_4500_rx) = mpsc::channel::<Datagram>(TUNNEL_QUEUE);
        let sockets = Self {
            local,
            ike: Arc::new(ike),
            esp: Arc::new(esp),
            demux: Arc::new(Mutex::new(Demux::default())),
            from_4500,
        };
        let reader = sockets.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            let local = SocketAddr::new(reader.local, IKE_PORT);
            loop {
                tokio::select! {
                    r = reader.ike.recv_from(&mut buf) => match r {
                        Ok((n, remote)) => {
                            let d = Datagram { local, remote, payload: buf[..n].to_vec() };
                            if !reader.demux().route(d) {
                                debug!("IKE datagram from {remote} for no running tunnel");
                            }
                        }
                        Err(e) => warn!("IKE socket {local}: {e}"),
                    },
                    d = from_4500_rx.recv() => match d {
                        Some(d) => {
                            let remote = d.remote;
                            if !reader.demux().route(d) {
                                debug!("IKE datagram on 4500 from {remote} for no running tunnel");
                            }
                        }
                        None => break,
                    },
                }
            }
        });
        Ok(sockets)
    }

    fn demux(&self) -> std::sync::MutexGuard<'_, Demux> {
        // A panic while holding the lock leaves the map consistent (single inserts/removes).
        self.demux.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The UDP 4500 socket, for the packet thread to read ESP from (and send ESP on).
    pub fn esp_socket(&self) -> Arc<StdUdpSocket> {
        Arc::clone(&self.esp)
    }

    /// Where the packet thread hands a 4500 datagram that carries IKE (marker removed).
    pub fn ike_from_4500(&self) -> mpsc::Sender<Datagram> {
        self.from_4500.clone()
    }

    async fn send(&self, t: &ike::Transmit) {
        let r = if t.local.port() == NAT_T_PORT {
            let mut buf = Vec::with_capacity(NON_ESP_MARKER.len() + t.payload.len());
            buf.extend_from_slice(&NON_ESP_MARKER);
            buf.extend_from_slice(&t.payload);
            self.esp.send_to(&buf, t.remote)
        } else {
            self.ike.send_to(&t.payload, t.remote).await
        };
        if let Err(e) = r {
            debug!("sending IKE to {}: {e}", t.remote);
        }
    }
}

/// The IKE side of one ipsec tunnel: a task driving its [`ike::Peer`].
#[derive(Debug)]
pub struct IpsecTunnel {
    name: String,
    remote: IpAddr,
    status: Arc<Mutex<IpsecStatus>>,
    esp_received: mpsc::UnboundedSender<u32>,
    unknown_spi: mpsc::UnboundedSender<UnknownSpi>,
    stop: mpsc::Sender<()>,
    /// `v6gate initiate`: start an IKE SA now.
    kick: mpsc::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    sockets: IkeSockets,
}

/// How long stopping a tunnel waits for its IKE task to send the DELETE and finish.
const STOP_WAIT: Duration = Duration::from_secs(2);

impl IpsecTunnel {
    /// Starts the IKE task of the tunnel's path `path_index` on `sockets` (bound to that
    /// path's local address); the SAs it negotiates go to `sas`.
    pub fn start(
        tunnel: &control::Tunnel,
        path_index: usize,
        sockets: &IkeSockets,
        sas: SaInbox,
    ) -> anyhow::Result<Self> {
        let ipsec = tunnel
            .ipsec
            .as_ref()
            .ok_or_else(|| anyhow!("tunnel {:?} is not an ipsec tunnel", tunnel.name))?;
        let path = tunnel
            .paths
            .get(path_index)
            .ok_or_else(|| anyhow!("tunnel {:?} has no path number {path_index}", tunnel.name))?;
        if path.local != sockets.local {
            bail!(
                "tunnel {:?} runs from {}, the IKE sockets are bound to {}",
                tunnel.name,
                path.local,
                sockets.local
            );
        }
        if ipsec.legacy {
            warn!(
                "tunnel {:?} allows legacy IPsec algorithms (3DES / SHA-1 / MODP-1024)",
                tunnel.name
            );
        }
        let config = ike_config(tunnel)?;
        let (tx, rx) = mpsc::channel(TUNNEL_QUEUE);
        sockets.demux().insert(path.remote, tx)?;
        let (esp_received, esp_rx) = mpsc::unbounded_channel();
        let (unknown_spi, unknown_rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = mpsc::channel(1);
        let (kick, kick_rx) = mpsc::channel(1);
        let status = Arc::new(Mutex::new(IpsecStatus {
            tunnel: tunnel.name.clone(),
            path: path.name.clone(),
            ike_state: IkeState::Waiting,
            ..IpsecStatus::default()
        }));
        let driver = Driver {
            name: tunnel.name.clone(),
            path: path_index,
            peer: Core::new(ipsec.version, config),
            local: SocketAddr::new(path.local, IKE_PORT),
            remote: SocketAddr::new(path.remote, IKE_PORT),
            auto: ipsec.start == control::IkeStart::Auto,
            force_udp: ipsec.encap == control::Encap::Udp,
            reinitiation: Reinitiation::default(),
            retry_at: None,
            udp_port: None,
            ike_up_at: None,
            children: HashMap::new(),
            down_log: crate::words::ReasonLog::default(),
            sockets: sockets.clone(),
            sas,
            status: Arc::clone(&status),
        };
        let task = tokio::spawn(driver.run(rx, esp_rx, unknown_rx, stop_rx, kick_rx));
        Ok(Self {
            name: tunnel.name.clone(),
            remote: path.remote,
            status,
            esp_received,
            unknown_spi,
            stop,
            kick,
            task,
            sockets: sockets.clone(),
        })
    }

    /// Where the packet thread reports authenticated ESP on an inbound SA (its SPI), which
    /// keeps DPD quiet while traffic flows.
    pub fn liveness(&self) -> mpsc::UnboundedSender<u32> {
        self.esp_received.clone()
    }

    /// Starts IKE now, whatever the backoff or `start` say (a second kick while one waits
    /// is the same kick).
    pub fn initiate_now(&self) {
        let _ = self.kick.try_send(());
    }

    /// Where the packet thread reports ESP from this path's peer on an SPI it does not know.
    pub fn unknown_spi(&self) -> mpsc::UnboundedSender<UnknownSpi> {
        self.unknown_spi.clone()
    }

    pub fn status(&self) -> IpsecStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Deletes the IKE SA (telling the peer) and ends the task, waiting at most
    /// [`STOP_WAIT`] for it; its last word clears the path's SAs in the packet thread.
    pub async fn stop(self) {
        let _ = self.stop.send(()).await;
        let mut task = self.task;
        if tokio::time::timeout(STOP_WAIT, &mut task).await.is_err() {
            warn!("tunnel {:?}: IKE task did not stop in time", self.name);
            task.abort();
        }
        self.sockets.demux().remove(self.remote);
    }
}

/// The peer's IKE configuration from a validated ipsec tunnel.
pub fn ike_config(tunnel: &control::Tunnel) -> anyhow::Result<ike::Config> {
    let ipsec = tunnel
        .ipsec
        .as_ref()
        .ok_or_else(|| anyhow!("tunnel {:?} is not an ipsec tunnel", tunnel.name))?;
    let psk = ipsec
        .psk
        .read()
        .with_context(|| format!("reading the pre-shared key of tunnel {:?}", tunnel.name))?;
    let selectors = |nets: &[IpNet]| -> Vec<wire::ike::TrafficSelector> {
        nets.iter()
            .map(|n| wire::ike::TrafficSelector::range(n.network(), n.broadcast()))
            .collect()
    };
    let mut config = ike::Config::new(
        &psk,
        selectors(&tunnel.local_subnets),
        selectors(&tunnel.routes),
    );
    config.local_id = ipsec.local_id.clone();
    config.remote_id = ipsec.remote_id.clone();
    for (id, key) in &ipsec.remote_psks {
        let key = key.read().with_context(|| {
            format!(
                "reading the pre-shared key of {id} in tunnel {:?}",
                tunnel.name
            )
        })?;
        config.remote_psks.push((id.clone(), key));
    }
    config.ike = ipsec.proposals.clone();
    config.esp = ipsec.esp_proposals.clone();
    config.dpd = Some(ike::Dpd {
        delay: ipsec.dpd_delay,
        timeout: ipsec.dpd_timeout,
        action: ipsec.dpd_action,
    });
    config.ike_lifetime = ipsec.ike_lifetime;
    config.child_lifetime = ipsec.child_lifetime;
    Ok(config)
}

/// The IKE core a tunnel speaks: IKEv2, or IKEv1 (`version = 1`) for peers that know
/// nothing newer. Both report with the same events.
enum Core {
    V2(Box<Peer>),
    V1(Box<ike::v1::Peer>),
}

macro_rules! each_core {
    ($core:expr, $p:ident => $body:expr) => {
        match $core {
            Core::V2($p) => $body,
            Core::V1($p) => $body,
        }
    };
}

impl Core {
    fn new(version: control::IkeVersion, config: ike::Config) -> Self {
        let rng = Box::new(rand_core::OsRng);
        match version {
            control::IkeVersion::V2 => Self::V2(Box::new(Peer::new(config, rng))),
            control::IkeVersion::V1 => Self::V1(Box::new(ike::v1::Peer::new(config, rng))),
        }
    }

    /// The core's configuration, whose policy (retries, rekey timing) the shell follows.
    fn config(&self) -> &ike::Config {
        each_core!(self, p => p.config())
    }

    fn initiate(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<(), ike::Error> {
        each_core!(self, p => p.initiate(now, local, remote))
    }

    fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), ike::Error> {
        each_core!(self, p => p.handle_datagram(now, local, remote, bytes))
    }

    fn handle_esp_received(&mut self, now: Instant, spi_in: u32) {
        each_core!(self, p => p.handle_esp_received(now, spi_in));
    }

    fn handle_timeout(&mut self, now: Instant) {
        each_core!(self, p => p.handle_timeout(now));
    }

    fn poll_timeout(&self) -> Option<Instant> {
        each_core!(self, p => p.poll_timeout())
    }

    fn poll_transmit(&mut self) -> Option<ike::Transmit> {
        each_core!(self, p => p.poll_transmit())
    }

    fn poll_event(&mut self) -> Option<Event> {
        each_core!(self, p => p.poll_event())
    }

    fn delete(&mut self, now: Instant) {
        each_core!(self, p => p.delete(now));
    }

    fn is_established(&self) -> bool {
        each_core!(self, p => p.is_established())
    }

    fn ike_sa_count(&self) -> usize {
        each_core!(self, p => p.ike_sa_count())
    }

    fn ike_spis(&self) -> Option<(u64, u64)> {
        each_core!(self, p => p.ike_spis())
    }

    fn handle_unknown_spi(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr) -> bool {
        each_core!(self, p => p.handle_unknown_spi(now, local, remote))
    }

    fn last_heard(&self) -> Option<Instant> {
        each_core!(self, p => p.last_heard())
    }
}

struct Driver {
    name: String,
    path: usize,
    peer: Core,
    local: SocketAddr,
    remote: SocketAddr,
    auto: bool,
    force_udp: bool,
    reinitiation: Reinitiation,
    retry_at: Option<Instant>,
    udp_port: Option<u16>,
    ike_up_at: Option<Instant>,
    /// Inbound SPI -> (outbound SPI, suite, installed at).
    children: HashMap<u32, (u32, String, Instant)>,
    /// Failures repeat every retry; the log says each reason once, then once in a while.
    down_log: crate::words::ReasonLog,
    sockets: IkeSockets,
    sas: SaInbox,
    status: Arc<Mutex<IpsecStatus>>,
}

impl Driver {
    async fn run(
        mut self,
        mut datagrams: mpsc::Receiver<Datagram>,
        mut esp: mpsc::UnboundedReceiver<u32>,
        mut unknown_spi: mpsc::UnboundedReceiver<UnknownSpi>,
        mut stop: mpsc::Receiver<()>,
        mut kick: mpsc::Receiver<()>,
    ) {
        if self.auto {
            self.initiate(Instant::now());
        }
        loop {
            self.flush().await;
            self.publish();
            let deadline = [self.peer.poll_timeout(), self.retry_at]
                .into_iter()
                .flatten()
                .min();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                d = datagrams.recv() => {
                    let Some(d) = d else { break };
                    let now = Instant::now();
                    if let Err(e) = self.peer.handle_datagram(now, d.local, d.remote, &d.payload) {
                        debug!("tunnel {:?}: IKE from {}: {}", self.name, d.remote, e.plain());
                    }
                }
                spi = esp.recv() => {
                    if let Some(spi) = spi {
                        self.peer.handle_esp_received(Instant::now(), spi);
                    }
                }
                Some(()) = kick.recv() => {
                    self.retry_at = None;
                    self.initiate(Instant::now());
                }
                report = unknown_spi.recv() => {
                    if let Some(report) = report {
                        self.unknown_spi(report);
                    }
                }
                _ = stop.recv() => {
                    self.peer.delete(Instant::now());
                    self.flush().await;
                    break;
                }
                () = sleep => {
                    let now = Instant::now();
                    if self.retry_at.is_some_and(|at| at <= now) {
                        self.retry_at = None;
                        self.initiate(now);
                    }
                    self.peer.handle_timeout(now);
                }
            }
        }
        self.put(SaChange::Clear);
    }

    fn put(&self, change: SaChange) -> bool {
        self.sas.put(SaCommand {
            tunnel: self.name.clone(),
            path: self.path,
            change,
        })
    }

    /// The peer sends ESP on an SPI we do not know: we lost our SAs (a restart) and it kept
    /// its own. The core starts a fresh IKE SA with INITIAL_CONTACT whatever `start` says,
    /// rate limited, so traffic is back after one exchange instead of the peer's DPD.
    fn unknown_spi(&mut self, report: UnknownSpi) {
        let local = SocketAddr::new(self.local.ip(), self.port());
        let remote = SocketAddr::new(self.remote.ip(), self.port());
        if self.peer.handle_unknown_spi(Instant::now(), local, remote) {
            info!(
                "tunnel {:?}: ESP from {} on unknown SPI {:08x} (path {}): we lost our SAs, \
                 starting IKE with INITIAL_CONTACT",
                report.tunnel, report.peer, report.spi, report.path
            );
        } else {
            debug!(
                "tunnel {:?}: ESP from {} on unknown SPI {:08x} (path {})",
                report.tunnel, report.peer, report.spi, report.path
            );
        }
    }

    fn initiate(&mut self, now: Instant) {
        let local = SocketAddr::new(self.local.ip(), self.port());
        let remote = SocketAddr::new(self.remote.ip(), self.port());
        if let Err(e) = self.peer.initiate(now, local, remote) {
            warn!("tunnel {:?}: cannot initiate IKE: {}", self.name, e.plain());
        }
    }

    /// `encap = "udp"` starts IKE on 4500 right away (RFC 7296 §2.23 allows it), so ESP
    /// follows there without NAT detection.
    fn port(&self) -> u16 {
        if self.force_udp { NAT_T_PORT } else { IKE_PORT }
    }

    /// Sends what the core wrote and acts on what it reported, in the order that loses no
    /// ESP: new inbound SAs open first, then the messages leave, then the rest.
    async fn flush(&mut self) {
        let events: Vec<Event> = std::iter::from_fn(|| self.peer.poll_event()).collect();
        let mut outbound = VecDeque::new();
        for event in &events {
            if let Event::ChildSaEstablished(child) = event {
                let (sa, opened) = self.open_inbound(child);
                // An error means the packet thread does not run the tunnel (yet) or stopped.
                if let Some(opened) = opened {
                    let _ = opened.await;
                }
                outbound.push_back(sa);
            }
        }
        while let Some(t) = self.peer.poll_transmit() {
            self.sockets.send(&t).await;
        }
        for event in events {
            self.event(event, &mut outbound);
        }
    }

    /// Opens the inbound half of a new CHILD SA in the packet thread; returns the outbound
    /// half (`None` when the SA cannot be keyed) and what answers once the inbound one is open.
    fn open_inbound(
        &self,
        child: &ChildSaInfo,
    ) -> (Option<OutboundSa>, Option<oneshot::Receiver<()>>) {
        let (inbound, outbound) = match sa::sa_pair(child) {
            Ok(pair) => pair,
            Err(e) => {
                warn!("tunnel {:?}: cannot install the CHILD SA: {e}", self.name);
                return (None, None);
            }
        };
        let (done, opened) = oneshot::channel();
        let sent = self.put(SaChange::Inbound {
            sa: Box::new(inbound),
            done: Some(done),
        });
        (Some(outbound), sent.then_some(opened))
    }

    fn event(&mut self, event: Event, outbound: &mut VecDeque<Option<OutboundSa>>) {
        let now = Instant::now();
        let tunnel = self.name.clone();
        match event {
            Event::NatDetected { .. } => {
                self.udp_port = Some(NAT_T_PORT);
            }
            Event::IkeSaUp { suite, remote, .. } => {
                if let Core::V2(p) = &self.peer {
                    crate::keylog::ike(p);
                }
                info!("tunnel {tunnel:?}: IKE SA up with {remote} ({suite})");
                self.down_log.reset();
                self.reinitiation.up();
                self.ike_up_at = Some(now);
                let mut s = self.status_lock();
                s.ike_suite = Some(suite.to_string());
            }
            Event::IkeSaRekeyed { .. } => {
                if let Core::V2(p) = &self.peer {
                    crate::keylog::ike(p);
                }
                self.ike_up_at = Some(now);
                self.status_lock().ike_rekeys += 1;
            }
            Event::IkeSaDown { reason, .. } => {
                let words = reason.to_string();
                if self.down_log.should_log(&words, now) {
                    info!("tunnel {tunnel:?}: IKE SA down: {words}");
                } else {
                    debug!("tunnel {tunnel:?}: IKE SA down: {words}");
                }
                let replaced = reason == DownReason::Replaced;
                let mut s = self.status_lock();
                s.dpd_timeouts += u64::from(reason == DownReason::Timeout);
                s.last_down_reason = Some(words);
                drop(s);
                if replaced || self.peer.is_established() {
                    return;
                }
                self.ike_up_at = None;
                self.children.clear();
                self.put(SaChange::Clear);
                let restarted = self.peer.ike_sa_count() > 0;
                let config = self.peer.config();
                if let Some(at) = self
                    .reinitiation
                    .after_down(config, &reason, self.auto, restarted, now)
                {
                    self.retry_at = Some(at);
                }
            }
            Event::ChildSaEstablished(child) => {
                crate::keylog::child(&child);
                self.status_lock().child_rekeys += u64::from(child.replaces.is_some());
                let udp_port = (child.udp_encap || self.force_udp).then_some(child.remote.port());
                self.udp_port = udp_port;
                let Some(Some(sa)) = outbound.pop_front() else {
                    return;
                };
                self.children
                    .insert(child.spi_in, (child.spi_out, child.suite.to_string(), now));
                self.put(SaChange::Outbound {
                    spi_in: child.spi_in,
                    sa: Box::new(sa),
                    udp_port,
                });
            }
            Event::ChildSaDeleted { spi_in, spi_out } => {
                self.children.remove(&spi_in);
                self.put(SaChange::Remove { spi_in, spi_out });
            }
            Event::ChildSaFailed(e) => warn!("tunnel {tunnel:?}: CHILD SA failed: {}", e.plain()),
        }
    }

    fn status_lock(&self) -> std::sync::MutexGuard<'_, IpsecStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self) {
        let now = Instant::now();
        let secs = |t: Instant| now.saturating_duration_since(t).as_secs();
        let mut children: Vec<ChildStatus> = self
            .children
            .iter()
            .map(|(spi_in, (spi_out, suite, at))| ChildStatus {
                spi_in: format!("{spi_in:08x}"),
                spi_out: format!("{spi_out:08x}"),
                suite: suite.clone(),
                age_secs: secs(*at),
                rekey_in_secs: self
                    .peer
                    .config()
                    .child_rekey_in(now.saturating_duration_since(*at))
                    .as_secs(),
            })
            .collect();
        children.sort_by(|a, b| a.spi_in.cmp(&b.spi_in));
        let established = self.peer.is_established();
        let mut s = self.status_lock();
        s.ike_state = if established {
            IkeState::Established
        } else if self.peer.ike_sa_count() > 0 {
            IkeState::Connecting
        } else if self.auto {
            IkeState::Down
        } else {
            IkeState::Waiting
        };
        s.ike_spis = self
            .peer
            .ike_spis()
            .map(|(i, r)| (format!("{i:016x}"), format!("{r:016x}")));
        s.ike_age_secs = self.ike_up_at.map(secs);
        s.children = children;
        s.last_heard_secs = self.peer.last_heard().map(secs);
        s.udp_encap = self.udp_port.is_some();
        s.attempts = self.reinitiation.failures();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(remote: &str) -> Datagram {
        Datagram {
            local: "[2001:db8:a::2]:500".parse().unwrap(),
            remote: remote.parse().unwrap(),
            payload: vec![1, 2, 3],
        }
    }

    #[test]
    fn demux_routes_by_remote_address_whatever_the_port() {
        let mut demux = Demux::default();
        let (a_tx, mut a_rx) = mpsc::channel(4);
        let (b_tx, mut b_rx) = mpsc::channel(4);
        demux
            .insert("2001:db8:a::1".parse().unwrap(), a_tx)
            .unwrap();
        demux.insert("198.18.0.2".parse().unwrap(), b_tx).unwrap();
        assert!(demux.route(datagram("[2001:db8:a::1]:500")));
        assert!(demux.route(datagram("[2001:db8:a::1]:4500")));
        assert!(demux.route(datagram("198.18.0.2:31337")));
        assert!(!demux.route(datagram("[2001:db8:a::9]:500")));
        assert_eq!(a_rx.try_recv().unwrap().remote.port(), 500);
        assert_eq!(a_rx.try_recv().unwrap().remote.port(), 4500);
        assert!(a_rx.try_recv().is_err());
        assert_eq!(b_rx.try_recv().unwrap().remote.port(), 31337);
    }

    #[test]
    fn demux_refuses_a_second_tunnel_to_one_remote_and_drops_when_full() {
        let mut demux = Demux::default();
        let (tx, _rx) = mpsc::channel(1);
        let remote: IpAddr = "2001:db8:a::1".parse().unwrap();
        demux.insert(remote, tx.clone()).unwrap();
        assert!(demux.insert(remote, tx).is_err());
        assert!(demux.route(datagram("[2001:db8:a::1]:500")));
        assert!(!demux.route(datagram("[2001:db8:a::1]:500")), "queue full");
        demux.remove(remote);
        assert!(!demux.route(datagram("[2001:db8:a::1]:500")));
    }

    fn ipsec_tunnel(psk_file: &std::path::Path) -> control::Tunnel {
        let text = format!(
            "[[tunnel]]\nname = \"vps\"\nmode = \"ipsec\"\nlocal = \"2001:db8:a::2\"\n\
             remote = \"2001:db8:a::1\"\nlocal_subnets = [\"203.0.113.0/24\"]\n\
             routes = [\"198.51.100.0/25\", \"2001:db8:c::/48\"]\n[tunnel.ike]\n\
             psk_file = {:?}\nremote_id = \"fqdn:sitea.example\"\ndpd_delay = \"5s\"\n\
             dpd_timeout = \"20s\"\ndpd_action = \"clear\"\nchild_lifetime = \"8h\"\n",
            psk_file.display().to_string()
        );
        let config = control::Config::from_toml_str(&text, "test.toml").unwrap();
        config.tunnels[0].clone()
    }

    #[test]
    fn ike_config_carries_selectors_identities_and_timers() {
        let dir = std::env::temp_dir().join(format!("v6gate-ike-shell-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let psk = dir.join("vps.psk");
        std::fs::write(&psk, "s3cret\n").unwrap();
        let tunnel = ipsec_tunnel(&psk);
        let c = ike_config(&tunnel).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(c.psk, b"s3cret");
        let range = |a: &str, b: &str| {
            wire::ike::TrafficSelector::range(a.parse().unwrap(), b.parse().unwrap())
        };
        assert_eq!(c.local_ts, [range("203.0.113.0", "203.0.113.255")]);
        assert_eq!(
            c.remote_ts,
            [
                range("198.51.100.0", "198.51.100.127"),
                range("2001:db8:c::", "2001:db8:c:ffff:ffff:ffff:ffff:ffff"),
            ]
        );
        assert_eq!(
            c.remote_id,
            Some(ike::Identity::Fqdn("sitea.example".into()))
        );
        assert_eq!(c.local_id, None);
        let dpd = c.dpd.unwrap();
        assert_eq!(
            (dpd.delay, dpd.timeout, dpd.action),
            (
                Duration::from_secs(5),
                Duration::from_secs(20),
                ike::DpdAction::Clear
            )
        );
        assert_eq!(c.child_lifetime, Duration::from_secs(8 * 3600));
    }

    #[test]
    fn ike_config_names_an_unreadable_key() {
        let dir = std::env::temp_dir().join(format!("v6gate-ike-gone-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let psk = dir.join("vps.psk");
        std::fs::write(&psk, "x").unwrap();
        let tunnel = ipsec_tunnel(&psk);
        std::fs::remove_dir_all(&dir).unwrap();
        let e = ike_config(&tunnel).unwrap_err();
        assert!(
            format!("{e:#}").contains("pre-shared key of tunnel \"vps\""),
            "{e:#}"
        );
    }

    #[test]
    fn status_serializes_for_the_control_socket() {
        let s = IpsecStatus {
            tunnel: "vps".into(),
            ike_state: IkeState::Established,
            ike_spis: Some(("00000000000000aa".into(), "00000000000000bb".into())),
            children: vec![ChildStatus {
                spi_in: "c0000001".into(),
                spi_out: "c0000002".into(),
                suite: "aes128gcm16".into(),
                age_secs: 10,
                rekey_in_secs: 3000,
            }],
            ..IpsecStatus::default()
        };
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["ike_state"], "established");
        assert_eq!(json["children"][0]["spi_in"], "c0000001");
        assert_eq!(json["ike_spis"][1], "00000000000000bb");
    }
}
