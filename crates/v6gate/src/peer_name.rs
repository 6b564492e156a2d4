//! Peers given by name: a tokio task per named path endpoint that keeps its address current.
//!
//! The schedule is `control::ddns::resolve::Resolution`'s (the record's TTL within 30 s .. 1 h
//! while the peer answers, every 5 s once probes or DPD declare it gone); this shell asks
//! hickory-resolver, without a cache so that every question reaches a server, and reports a
//! changed answer on a channel. The daemon then re-pins the endpoint, re-points the path and
//! re-initiates IKE.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use control::ddns::Family;
use control::ddns::resolve::Resolution;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{ResolveError, TokioResolver};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// How long one question may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// A named peer in `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNameStatus {
    pub name: String,
    pub family: String,
    pub address: Option<IpAddr>,
    /// Seconds since the Unix epoch of the last answer.
    pub resolved_at: Option<u64>,
    /// Why the last question failed, while none has succeeded since.
    pub error: Option<String>,
}

/// A changed answer: the path's remote is now `address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub name: String,
    pub address: IpAddr,
}

/// Handle of one name's task; dropping it stops the task.
pub struct PeerName {
    alive: mpsc::Sender<bool>,
    status: Arc<Mutex<PeerNameStatus>>,
    task: JoinHandle<()>,
}

impl PeerName {
    /// Starts resolving `name` (A for IPv4 paths, AAAA for IPv6 ones) on the current runtime.
    /// `servers`: ask these instead of the system's resolvers. Every new answer, the first
    /// included, is sent on `moved`.
    pub fn start(
        name: &str,
        family: Family,
        servers: Option<&[SocketAddr]>,
        moved: mpsc::Sender<Moved>,
    ) -> anyhow::Result<Self> {
        let resolver = resolver(servers)?;
        let status = Arc::new(Mutex::new(PeerNameStatus {
            name: name.to_owned(),
            family: family.to_string(),
            ..PeerNameStatus::default()
        }));
        let (alive, alive_rx) = mpsc::channel(8);
        let task = tokio::spawn(run(
            name.to_owned(),
            family,
            resolver,
            moved,
            alive_rx,
            status.clone(),
        ));
        Ok(Self {
            alive,
            status,
            task,
        })
    }

    /// Path probes or DPD declared the peer gone (`false`) or back (`true`).
    pub fn peer_alive(&self, alive: bool) {
        let _ = self.alive.try_send(alive);
    }

    pub fn status(&self) -> PeerNameStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for PeerName {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn resolver(servers: Option<&[SocketAddr]>) -> anyhow::Result<TokioResolver> {
    let mut builder = match servers {
        Some(list) => {
            let mut group = NameServerConfigGroup::new();
            for server in list {
                group.merge(NameServerConfigGroup::from_ips_clear(
                    &[server.ip()],
                    server.port(),
                    true,
                ));
            }
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), group),
                TokioConnectionProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio()?,
    };
    let options = builder.options_mut();
    // Every question must reach a server: a cached answer would hide a moved peer.
    options.cache_size = 0;
    options.timeout = QUERY_TIMEOUT;
    options.attempts = 1;
    Ok(builder.build())
}

async fn run(
    name: String,
    family: Family,
    resolver: TokioResolver,
    moved: mpsc::Sender<Moved>,
    mut alive: mpsc::Receiver<bool>,
    status: Arc<Mutex<PeerNameStatus>>,
) {
    let mut schedule = Resolution::new(Instant::now());
    loop {
        let now = Instant::now();
        if schedule.poll_query(now) {
            let answer = lookup(&resolver, &name, family).await;
            let now = Instant::now();
            let changed = match answer {
                Ok((records, ttl)) => schedule.handle_answer(now, &records, ttl),
                Err(why) => {
                    warn!("peer {name}: {why}");
                    schedule.handle_failure(now, &why)
                }
            };
            if let Ok(mut s) = status.lock() {
                s.address = schedule.answer();
                s.error = schedule.last_error().map(str::to_owned);
                if schedule.resolved_at() == Some(now) {
                    s.resolved_at = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .ok()
                        .map(|d| d.as_secs());
                }
            }
            if let Some(address) = changed {
                info!("peer {name} is at {address}");
                let event = Moved {
                    name: name.clone(),
                    address,
                };
                if moved.send(event).await.is_err() {
                    return;
                }
            }
            continue;
        }
        let Some(next) = schedule.poll_timeout() else {
            continue;
        };
        tokio::select! {
            () = tokio::time::sleep_until(next.into()) => {}
            event = alive.recv() => match event {
                Some(up) => schedule.handle_peer(Instant::now(), up),
                None => return,
            },
        }
    }
}

/// The records of `family` for `name` and how long they may be kept.
async fn lookup(
    resolver: &TokioResolver,
    name: &str,
    family: Family,
) -> Result<(Vec<IpAddr>, Duration), String> {
    let fqdn = format!("{name}.");
    let describe = |e: ResolveError| format!("resolving {} {name}: {e}", family.record_type());
    let (records, valid_until): (Vec<IpAddr>, Instant) = match family {
        Family::Ipv6 => {
            let l = resolver.ipv6_lookup(fqdn).await.map_err(describe)?;
            (l.iter().map(|a| IpAddr::V6(a.0)).collect(), l.valid_until())
        }
        Family::Ipv4 => {
            let l = resolver.ipv4_lookup(fqdn).await.map_err(describe)?;
            (l.iter().map(|a| IpAddr::V4(a.0)).collect(), l.valid_until())
        }
    };
    Ok((
        records,
        valid_until.saturating_duration_since(Instant::now()),
    ))
}
