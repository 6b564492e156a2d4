//! The packet thread: one mio loop that moves bytes between TUN devices, raw sockets and the
//! sans-IO cores. It holds no protocol logic; every decision is a core's.
//!
//! The rooms, one job each:
//! - `mod.rs` (here): the owner's handle ([`Datapath`]), the commands and their errors, and
//!   what a snapshot holds;
//! - `kind.rs`: what a tunnel kind must do for the loop ([`kind::Kind`]), the strategy that
//!   RFC 2473 (`rfc2473.rs`) and ESP (`esp.rs`) implement;
//! - `run.rs`: the loop: poll, dispatch by token, commands, timers, and the one `drain_tun`
//!   that reads a device into its tunnel's kind;
//! - `tun.rs`: the TUN side: every device of every kind, splitting reads, coalesced writes;
//! - `rx.rs`: the receive slots of batched underlay reads;
//! - `underlay.rs`: the underlay side: batched receives and the ICMP errors about our packets;
//! - `send.rs`: the one flush (raw sockets, connected path sockets, UDP trains, the host's
//!   stack, the TUN coalescers);
//! - `log.rs`: the one logger of path events, and what of them the owner hears
//!   ([`PathChange`], on the channel [`Datapath::take_path_changes`] hands out).
//!
//! ESP arrives raw (protocol 50, one socket per family) or in UDP on the port 4500 socket of
//! the tunnel's local address, which this thread reads itself so that ESP never crosses a
//! channel; the rare IKE datagram on 4500 is handed back to the IKE shell. ESP tunnels are
//! found by the peer's address, which control keeps unique per tunnel. The IKE shell hands
//! ready SAs straight in through an [`SaInbox`].

mod esp;
mod kind;
mod log;
mod rfc2473;
mod run;
mod rx;
mod send;
mod tun;
mod underlay;

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::Context;
use dataplane::esp::{EspPathConfig, EspStats, InboundSa, OutboundSa};
use dataplane::{PathId, PathStats, TunnelConfig, TunnelId};
use mio::{Poll, Token, Waker};
use sys::tun::TunDevice;
use tokio::sync::{mpsc as async_mpsc, oneshot};
use tracing::warn;

const WAKER: Token = Token(0);

/// One IKE datagram, without the non-ESP marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub payload: Vec<u8>,
}

/// ESP from a configured peer on an SPI no SA of ours knows: the peer lost its state or we
/// lost ours. The packet thread reports it to the path's IKE task at most once a second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownSpi {
    pub tunnel: String,
    /// Index of the tunnel's path the ESP came by.
    pub path: usize,
    pub peer: IpAddr,
    pub spi: u32,
}

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
    /// ESP from addresses that are no configured peer, dropped before any SA lookup.
    pub esp_not_peer: u64,
}

/// What the packet thread needs to run one path of an ipsec tunnel besides its core.
pub struct EspLinks {
    /// The UDP 4500 socket of the path's local address (shared by the paths using it).
    pub udp: Arc<UdpSocket>,
    /// Where IKE datagrams read from that socket go.
    pub ike: async_mpsc::Sender<Datagram>,
    /// Where the inbound SPIs of authenticated ESP go (the liveness of the path's IKE task).
    pub liveness: async_mpsc::UnboundedSender<u32>,
    /// Where ESP from the path's peer on an SPI no SA knows is reported (rate-limited).
    pub unknown_spi: async_mpsc::UnboundedSender<UnknownSpi>,
}

/// A TUN device handed to the packet thread: the tunnel's own, or one path's when the
/// tunnel has a device per path.
pub struct TunnelDevice {
    pub path: Option<PathId>,
    pub tun: TunDevice,
}

/// What the RFC 2473 core decided about a tunnel's paths, sent to the owner as it happens,
/// so that what follows the core outside this thread (the kernel path's programs and routes)
/// needs no polling to learn of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathChange {
    /// Traffic of `tunnel` now leaves on path `to` (index).
    Active { tunnel: TunnelId, to: usize },
    /// The MTU of the path `path` (index) of `tunnel` is now `mtu`.
    Mtu {
        tunnel: TunnelId,
        path: usize,
        mtu: u16,
    },
}

impl PathChange {
    pub fn tunnel(&self) -> TunnelId {
        match *self {
            Self::Active { tunnel, .. } | Self::Mtu { tunnel, .. } => tunnel,
        }
    }
}

/// How many path changes wait for the owner before the packet thread drops new ones. The
/// owner reads the cores' state once it drains them, so a dropped change is never lost: the
/// state it announced is read by that look at the latest.
const PATH_CHANGES: usize = 64;

/// Why the packet thread refused a command.
#[derive(Debug)]
pub enum PacketError {
    /// A TUN device could not be made non-blocking.
    Nonblocking {
        device: String,
        error: sys::SysError,
    },
    /// A device or socket could not be registered with the poller.
    Register { what: String, error: io::Error },
    /// The RFC 2473 core refused the tunnel's config.
    Core(dataplane::ConfigError),
    /// An ipsec tunnel came with no paths, too many, or not one set of sockets per path.
    EspPaths { paths: usize, links: usize },
    /// Another ipsec tunnel already runs to this peer.
    PeerTaken(IpAddr),
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Nonblocking { device, error } => {
                write!(f, "setting {device} non-blocking: {error}")
            }
            Self::Register { what, error } => {
                write!(f, "registering {what} with the poller: {error}")
            }
            Self::Core(e) => write!(f, "{e}"),
            Self::EspPaths { paths, links } => write!(
                f,
                "an ipsec tunnel needs 1 to 256 paths, each with its sockets; got {paths} \
                 path(s) and {links} set(s) of sockets"
            ),
            Self::PeerTaken(peer) => write!(f, "an ipsec tunnel to {peer} is running already"),
        }
    }
}

impl std::error::Error for PacketError {}

/// What the packet thread does to one path's ESP SAs, already keyed: IKE derived them.
pub enum SaChange {
    /// Opens ESP on a new SPI; `done` answers once it does, so that the IKE message that lets
    /// the peer use it leaves after.
    Inbound {
        sa: Box<InboundSa>,
        done: Option<oneshot::Sender<()>>,
    },
    /// From now on seals with this SA, in UDP to the peer's `udp_port` when it is `Some`;
    /// `spi_in` names the inbound half, open already.
    Outbound {
        spi_in: u32,
        sa: Box<OutboundSa>,
        udp_port: Option<u16>,
    },
    /// Removes the CHILD SA with these SPIs.
    Remove { spi_in: u32, spi_out: u32 },
    /// The path's IKE SA is gone: removes every SA of the path.
    Clear,
}

/// An [`SaChange`] for the path `path` (index) of the ipsec tunnel named `tunnel`.
pub struct SaCommand {
    pub tunnel: String,
    pub path: usize,
    pub change: SaChange,
}

/// An ipsec tunnel for the packet thread: its device, an ESP core per path, no SA yet.
struct NewEspTunnel {
    name: String,
    health: dataplane::HealthConfig,
    paths: Vec<EspPathConfig>,
    /// The tunnel's device, or one per path.
    tuns: Vec<TunnelDevice>,
    /// One per path.
    links: Vec<EspLinks>,
}

enum Command {
    Add {
        config: Box<TunnelConfig>,
        devices: Vec<TunnelDevice>,
        reply: oneshot::Sender<Result<TunnelId, PacketError>>,
    },
    AddEsp {
        tunnel: Box<NewEspTunnel>,
        reply: oneshot::Sender<Result<TunnelId, PacketError>>,
    },
    Sa(SaCommand),
    Update {
        id: TunnelId,
        config: Box<TunnelConfig>,
        reply: oneshot::Sender<Result<(), PacketError>>,
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
    path_changes: Option<async_mpsc::Receiver<PathChange>>,
}

impl Datapath {
    pub fn spawn() -> anyhow::Result<Self> {
        let poll = Poll::new().context("creating the packet thread's poller")?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).context("creating a waker")?);
        let (tx, rx) = mpsc::channel();
        let (changes, path_changes) = async_mpsc::channel(PATH_CHANGES);
        let mut looper = run::Loop::open(poll, rx, changes)?;
        let thread = std::thread::Builder::new()
            .name("v6gate-packets".into())
            .spawn(move || looper.run())
            .context("spawning the packet thread")?;
        Ok(Self {
            commands: tx,
            waker,
            thread: Some(thread),
            path_changes: Some(path_changes),
        })
    }

    /// The RFC 2473 tunnels' path changes, in the order the core made them; `None` once
    /// taken.
    pub fn take_path_changes(&mut self) -> Option<async_mpsc::Receiver<PathChange>> {
        self.path_changes.take()
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
        Ok(answer
            .await
            .context("the packet thread dropped the request")??)
    }

    /// Hands an ipsec tunnel's TUN device to the packet thread with an ESP core per path and
    /// no SA yet (inner packets are dropped as `no_sa` until IKE installs one). `links` has
    /// one entry per path.
    pub async fn add_esp_tunnel(
        &self,
        name: &str,
        health: dataplane::HealthConfig,
        paths: Vec<EspPathConfig>,
        tuns: Vec<TunnelDevice>,
        links: Vec<EspLinks>,
    ) -> anyhow::Result<TunnelId> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::AddEsp {
            tunnel: Box::new(NewEspTunnel {
                name: name.to_string(),
                health,
                paths,
                tuns,
                links,
            }),
            reply,
        })?;
        Ok(answer
            .await
            .context("the packet thread dropped the request")??)
    }

    /// Where the IKE shell puts ready SAs; the packet thread applies them in the order put.
    pub fn sa_inbox(&self) -> SaInbox {
        SaInbox {
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
        Ok(answer
            .await
            .context("the packet thread dropped the request")??)
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

impl Drop for Datapath {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The IKE shell's way into the packet thread, usable from any thread or task.
#[derive(Clone)]
pub struct SaInbox {
    commands: mpsc::Sender<Command>,
    waker: Arc<Waker>,
}

impl SaInbox {
    /// False once the packet thread has stopped.
    pub fn put(&self, command: SaCommand) -> bool {
        self.commands.send(Command::Sa(command)).is_ok() && self.waker.wake().is_ok()
    }
}
