//! One tokio task that keeps every `[[ddns]]` entry's record current.
//!
//! Address changes arrive as netlink notifications (RTM_NEWADDR/RTM_DELADDR through
//! `sys::netlink::watch_changes`), so an update starts within moments of a change instead of
//! at the next poll. Each entry's decisions are its `control::ddns::schedule::Updater`'s; each
//! update runs as a task of its own, so a slow provider holds up no other entry.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use control::ddns::schedule::{LastResult, Outcome, Policy, Updater};
use control::ddns::select::{HostAddress, select};
use control::ddns::{AddressSource, Ddns, Family, Provider, Server};
use serde::{Deserialize, Serialize};
use sys::address::{AddressReader, DeviceAddress};
use sys::netlink::Change;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::http::Http;
use super::provider::{self, Response, cloudflare, dyndns2, template, value_domain};
use super::rfc2136;
use super::secret::Secret;
use super::state::{Accepted, Store};

/// Notifications arriving within this long of each other are read as one change: a prefix
/// change brings several addresses and routes at once.
const SETTLE: Duration = Duration::from_millis(100);

/// One entry in `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DdnsStatus {
    pub name: String,
    pub provider: String,
    pub hostname: String,
    /// `ipv4` or `ipv6`; empty while a path's family is not known yet.
    pub family: String,
    /// The address the provider last accepted.
    pub published: Option<IpAddr>,
    pub published_secs_ago: Option<u64>,
    /// The address the device has now, if one can be published.
    pub current: Option<IpAddr>,
    /// `accepted …`, `will retry: …`, `stopped until reload: …`.
    pub last_result: Option<String>,
    /// Seconds until the next update may leave; `None`: nothing to send.
    pub next_attempt_secs: Option<u64>,
    pub failures: u32,
    /// An authentication or account error stopped the entry until reload.
    pub stopped: bool,
}

/// One line for people: `www (value-domain, AAAA www.example.jp): published 2001:db8::1 5s
/// ago; accepted 2001:db8::1; next in 86395s`.
impl std::fmt::Display for DdnsStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let record = match self.family.as_str() {
            "ipv4" => "A",
            "ipv6" => "AAAA",
            _ => "address of",
        };
        write!(
            f,
            "{} ({}, {record} {}): ",
            self.name, self.provider, self.hostname
        )?;
        match (self.published, self.published_secs_ago) {
            (Some(a), Some(ago)) => write!(f, "published {a} {ago}s ago")?,
            (Some(a), None) => write!(f, "published {a}")?,
            (None, _) => f.write_str("nothing published")?,
        }
        if let Some(result) = &self.last_result {
            write!(f, "; {result}")?;
        }
        match self.next_attempt_secs {
            Some(0) => f.write_str("; update due"),
            Some(s) => write!(f, "; next in {s}s"),
            None if self.stopped => f.write_str("; stopped"),
            None => Ok(()),
        }
    }
}

enum Command {
    /// The entries of a reloaded config: unchanged ones keep their state (what they
    /// published, a backoff), changed, new and stopped ones start afresh, the rest go.
    Entries(Vec<Ddns>),
    PathAddress {
        tunnel: String,
        path: String,
        addr: Option<IpAddr>,
    },
}

/// Handle of the running task. Dropping it stops the task.
pub struct DdnsRunner {
    commands: mpsc::Sender<Command>,
    status: Arc<Mutex<Vec<DdnsStatus>>>,
    task: JoinHandle<()>,
}

impl DdnsRunner {
    /// Starts the runner on the current tokio runtime, in the calling thread's network
    /// namespace, keeping state in `state_dir` (normally [`super::state::DEFAULT_DIR`]).
    pub fn start(entries: Vec<Ddns>, state_dir: &Path) -> anyhow::Result<Self> {
        let store = Store::open(state_dir)?;
        let changes = sys::netlink::watch_changes()?;
        let reader = AddressReader::new()?;
        let now = Instant::now();
        let entries: Vec<Entry> = entries
            .into_iter()
            .enumerate()
            .map(|(id, e)| Entry::new(e, id as u64, now))
            .collect();
        let next_id = entries.len() as u64;
        let status = Arc::new(Mutex::new(Vec::new()));
        let (commands, receiver) = mpsc::channel(64);
        let mut run = Run {
            entries,
            store,
            reader,
            status: status.clone(),
            paths: HashMap::new(),
            next_id,
        };
        run.restore();
        run.publish_status();
        let task = tokio::spawn(async move { run.run(changes, receiver).await });
        Ok(Self {
            commands,
            status,
            task,
        })
    }

    /// The current local address of a tunnel path (`None` when it has none), for entries with
    /// `address = { tunnel, path }`.
    pub async fn set_path_address(&self, tunnel: &str, path: &str, addr: Option<IpAddr>) {
        let _ = self
            .commands
            .send(Command::PathAddress {
                tunnel: tunnel.to_owned(),
                path: path.to_owned(),
                addr,
            })
            .await;
    }

    /// Replaces the entries with a reloaded config's, keeping the state of those unchanged.
    pub async fn reconfigure(&self, entries: Vec<Ddns>) {
        let _ = self.commands.send(Command::Entries(entries)).await;
    }

    /// Every entry, in config order.
    pub fn status(&self) -> Vec<DdnsStatus> {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops the task; an update in flight is abandoned (its result would be sent again).
    pub async fn stop(mut self) {
        self.task.abort();
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = task.await;
    }
}

impl Drop for DdnsRunner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Entry {
    /// Tells an update's result which entry it belongs to, across reloads.
    id: u64,
    config: Ddns,
    /// Known for device addresses at once, for path addresses once the path has one.
    family: Option<Family>,
    updater: Updater,
    http: Option<Http>,
    cloudflare: Option<cloudflare::Session>,
}

impl Entry {
    fn new(config: Ddns, id: u64, now: Instant) -> Self {
        use rand_core::RngCore;
        let policy = Policy::new(config.min_interval);
        Self {
            id,
            family: config.family(),
            updater: Updater::new(policy, rand_core::OsRng.next_u64(), now),
            http: None,
            cloudflare: None,
            config,
        }
    }
}

struct Run {
    entries: Vec<Entry>,
    store: Store,
    reader: AddressReader,
    status: Arc<Mutex<Vec<DdnsStatus>>>,
    paths: HashMap<(String, String), IpAddr>,
    next_id: u64,
}

/// What an update task hands back.
struct Done {
    id: u64,
    outcome: Outcome,
    http: Option<Http>,
    cloudflare: Option<cloudflare::Session>,
}

impl Run {
    async fn run(
        &mut self,
        mut changes: mpsc::Receiver<Change>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let (done_tx, mut done_rx) = mpsc::channel::<Done>(64);
        let mut watching = true;
        self.read_addresses().await;
        loop {
            self.start_due(&done_tx);
            self.publish_status();
            let next = self
                .entries
                .iter()
                .filter_map(|e| e.updater.poll_timeout())
                .min();
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                change = changes.recv(), if watching => {
                    match change {
                        Some(Change::Address { .. } | Change::Link { .. } | Change::Resync) => {
                            tokio::time::sleep(SETTLE).await;
                            while changes.try_recv().is_ok() {}
                            self.read_addresses().await;
                        }
                        Some(Change::Route { .. } | Change::Rule { .. }) => {}
                        None => {
                            error!("ddns: netlink notifications ended; addresses are no longer followed");
                            watching = false;
                        }
                    }
                }
                Some(command) = commands.recv() => match command {
                    Command::PathAddress { tunnel, path, addr } => {
                        match addr {
                            Some(a) => self.paths.insert((tunnel, path), a),
                            None => self.paths.remove(&(tunnel, path)),
                        };
                        self.apply_path_addresses();
                    }
                    Command::Entries(configs) => {
                        self.reconfigure(configs);
                        self.read_addresses().await;
                        self.apply_path_addresses();
                    }
                },
                Some(done) = done_rx.recv() => self.finish(done),
                () = sleep => {}
            }
        }
    }

    fn reconfigure(&mut self, configs: Vec<Ddns>) {
        let now = Instant::now();
        let mut old = std::mem::take(&mut self.entries);
        for config in configs {
            // A stopped entry waits for a reload, whatever else changed: its credentials file
            // is read at each update and may hold a new secret now.
            let kept = old.iter().position(|e| {
                e.config == config
                    && !matches!(
                        e.updater.status().last_result,
                        Some(LastResult::Stopped { .. })
                    )
            });
            match kept {
                Some(pos) => self.entries.push(old.swap_remove(pos)),
                None => {
                    info!("ddns {}: entry (re)started", config.name);
                    let mut entry = Entry::new(config, self.next_id, now);
                    self.next_id += 1;
                    restore(&self.store, &mut entry);
                    self.entries.push(entry);
                }
            }
        }
        for gone in old {
            info!("ddns {}: entry removed", gone.config.name);
        }
    }

    /// Loads what each entry last published.
    fn restore(&mut self) {
        for entry in &mut self.entries {
            restore(&self.store, entry);
        }
    }

    async fn read_addresses(&mut self) {
        let mut by_device: HashMap<String, Vec<DeviceAddress>> = HashMap::new();
        for entry in &self.entries {
            if let AddressSource::Device { device, .. } = &entry.config.address
                && !by_device.contains_key(device)
            {
                let list = match self.reader.link_index(device).await {
                    Ok(Some(index)) => self.reader.addresses(index).await.unwrap_or_else(|e| {
                        warn!("ddns: reading addresses of {device}: {e}");
                        Vec::new()
                    }),
                    Ok(None) => Vec::new(),
                    Err(e) => {
                        warn!("ddns: looking up {device}: {e}");
                        Vec::new()
                    }
                };
                by_device.insert(device.clone(), list);
            }
        }
        for entry in &mut self.entries {
            if let AddressSource::Device {
                device,
                family,
                select: how,
            } = &entry.config.address
            {
                let list: Vec<HostAddress> = by_device
                    .get(device)
                    .map(|l| l.iter().map(host_address).collect())
                    .unwrap_or_default();
                entry.updater.handle_address(select(&list, *family, *how));
            }
        }
    }

    fn apply_path_addresses(&mut self) {
        for entry in &mut self.entries {
            if let AddressSource::Path { tunnel, path } = &entry.config.address {
                let addr = self.paths.get(&(tunnel.clone(), path.clone())).copied();
                if entry.family.is_none()
                    && let Some(a) = addr
                {
                    entry.family = Some(Family::of(a));
                    restore(&self.store, entry);
                }
                entry.updater.handle_address(addr);
            }
        }
    }

    fn start_due(&mut self, done: &mpsc::Sender<Done>) {
        let now = Instant::now();
        for entry in &mut self.entries {
            let Some(family) = entry.family else { continue };
            let Some(addr) = entry.updater.poll_update(now) else {
                continue;
            };
            info!(
                "ddns {}: publishing {addr} as the {} record of {} ({})",
                entry.config.name,
                family.record_type(),
                entry.config.hostname,
                entry.config.provider
            );
            let config = entry.config.clone();
            let http = entry.http.take();
            let session = entry.cloudflare.take();
            let done = done.clone();
            let id = entry.id;
            tokio::spawn(async move {
                let (outcome, http, cloudflare) =
                    publish(&config, family, addr, http, session).await;
                let _ = done
                    .send(Done {
                        id,
                        outcome,
                        http,
                        cloudflare,
                    })
                    .await;
            });
        }
    }

    fn finish(&mut self, done: Done) {
        // An entry removed or changed by a reload since: its result is stale.
        let Some(entry) = self.entries.iter_mut().find(|e| e.id == done.id) else {
            return;
        };
        entry.http = done.http;
        entry.cloudflare = done.cloudflare;
        let name = entry.config.name.clone();
        match &done.outcome {
            Outcome::Accepted => {}
            Outcome::Retry { reason, .. } => {
                warn!("ddns {name}: update failed, will retry: {reason}")
            }
            Outcome::Stop { reason } => error!(
                "ddns {name}: update refused; this entry sends nothing more until reload: {reason}"
            ),
        }
        let now = Instant::now();
        if let Some(addr) = entry.updater.handle_outcome(now, done.outcome) {
            info!(
                "ddns {name}: {} now publishes {addr}",
                entry.config.hostname
            );
            if let Some(family) = entry.family
                && let Err(e) = self.store.record(&name, family, Accepted::now(addr))
            {
                warn!("ddns {name}: could not record the publication: {e:#}");
            }
        }
    }

    fn publish_status(&self) {
        let now = Instant::now();
        let list = self
            .entries
            .iter()
            .map(|e| {
                let s = e.updater.status();
                DdnsStatus {
                    name: e.config.name.clone(),
                    provider: e.config.provider.to_string(),
                    hostname: e.config.hostname.clone(),
                    family: e.family.map(|f| f.to_string()).unwrap_or_default(),
                    published: s.published.map(|(a, _)| a),
                    published_secs_ago: s
                        .published
                        .map(|(_, at)| now.saturating_duration_since(at).as_secs()),
                    current: s.current,
                    last_result: s.last_result.as_ref().map(ToString::to_string),
                    next_attempt_secs: s
                        .next_attempt
                        .map(|at| at.saturating_duration_since(now).as_secs()),
                    failures: s.failures,
                    stopped: matches!(s.last_result, Some(LastResult::Stopped { .. })),
                }
            })
            .collect();
        if let Ok(mut status) = self.status.lock() {
            *status = list;
        }
    }
}

/// Loads what `entry` last published for its family, once the family is known.
fn restore(store: &Store, entry: &mut Entry) {
    let Some(family) = entry.family else { return };
    match store.accepted(&entry.config.name, family) {
        Ok(Some(accepted)) => {
            let now = Instant::now();
            let at = now.checked_sub(accepted.age()).unwrap_or(now);
            entry.updater.restore(accepted.address, at);
        }
        Ok(None) => {}
        Err(e) => warn!("ddns {}: {e:#}", entry.config.name),
    }
}

/// The flags `select` needs of a device address.
pub(crate) fn host_address(a: &DeviceAddress) -> HostAddress {
    HostAddress {
        addr: a.addr,
        prefix_len: a.prefix_len,
        global: a.global,
        temporary: a.temporary,
        deprecated: a.deprecated,
        tentative: a.tentative,
        preferred: a.preferred,
        created: a.created,
    }
}

/// Sends one update; hands back the HTTP client and Cloudflare ids for the next one.
async fn publish(
    config: &Ddns,
    family: Family,
    addr: IpAddr,
    http: Option<Http>,
    mut session: Option<cloudflare::Session>,
) -> (Outcome, Option<Http>, Option<cloudflare::Session>) {
    let secret = match Secret::read(&config.credentials_file) {
        Ok(s) => s,
        Err(e) => {
            let outcome = Outcome::Stop {
                reason: format!("{e:#}"),
            };
            return (outcome, http, session);
        }
    };
    let url = match &config.server {
        Server::Dns(server) => {
            let zone = rfc2136::zone_of(&config.hostname, config.zone.as_deref());
            let outcome = rfc2136::send(*server, &zone, &config.hostname, &secret, addr).await;
            return (outcome, http, session);
        }
        Server::Https(url) => url.clone(),
    };
    let http = match http {
        Some(h) => h,
        None => match Http::new(family, config.ca_file.as_deref()) {
            Ok(h) => h,
            Err(e) => {
                let outcome = Outcome::Stop {
                    reason: format!("{e:#}"),
                };
                return (outcome, None, session);
            }
        },
    };
    let outcome = match config.provider {
        Provider::ValueDomain => {
            let request = value_domain::request(
                &url,
                &config.hostname,
                config.zone.as_deref(),
                &secret,
                addr,
            );
            exchange(&http, &request, value_domain::outcome).await
        }
        Provider::Dyndns2 => match secret.user_password() {
            Ok((user, password)) => {
                let request = dyndns2::request(&url, &config.hostname, user, password, addr);
                exchange(&http, &request, dyndns2::outcome).await
            }
            Err(e) => Outcome::Stop {
                reason: e.to_string(),
            },
        },
        Provider::Url => {
            let request = template::request(&url, &config.hostname, &secret, addr);
            exchange(&http, &request, template::outcome).await
        }
        Provider::Cloudflare => {
            let s = session.get_or_insert_with(|| {
                cloudflare::Session::new(&url, config.zone.as_deref(), &config.hostname, family)
            });
            let mut outcome = None;
            for _ in 0..cloudflare::MAX_STEPS {
                let request = s.request(&secret, addr);
                match http.send(&request).await {
                    Ok(response) => {
                        if let Some(o) = s.handle(&response) {
                            outcome = Some(o);
                            break;
                        }
                    }
                    Err(e) => {
                        outcome = Some(transport(e));
                        break;
                    }
                }
            }
            outcome.unwrap_or_else(|| Outcome::Retry {
                reason: "Cloudflare lookups did not finish".into(),
                at_least: None,
            })
        }
        Provider::Rfc2136 => Outcome::Stop {
            reason: "rfc2136 needs a name server address as `server`".into(),
        },
    };
    (outcome, Some(http), session)
}

async fn exchange(
    http: &Http,
    request: &provider::Request,
    read: fn(&Response) -> Outcome,
) -> Outcome {
    match http.send(request).await {
        Ok(response) => read(&response),
        Err(e) => transport(e),
    }
}

fn transport(error: String) -> Outcome {
    Outcome::Retry {
        reason: error,
        at_least: None,
    }
}

/// `; N ddns entr(y/ies): name, …` for `v6gate check`, empty without entries.
pub fn check_summary(config: &control::Config) -> String {
    if config.ddns.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = config.ddns.iter().map(|d| d.name.as_str()).collect();
    format!("; {} ddns entr(y/ies): {}", names.len(), names.join(", "))
}
