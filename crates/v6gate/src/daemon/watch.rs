//! `[[watch]]`: probe a target through one uplink and keep a route installed only while it
//! answers (scenario S4's IX `watch-group`, OpenWrt's mwan3). When the probes stop, the route
//! is withdrawn so a backup route with a higher metric takes over, and the `on_down` hook runs
//! (the LED in S4); on recovery the route comes back and `on_up` runs.
//!
//! The up/down decision is [`dataplane::health::Tracker`]'s, the same hysteresis the tunnel
//! paths use; this module only sends echoes, says which route it wants, and runs hooks. The
//! route itself is an object of the daemon's host state, so it is journalled, repaired while
//! wanted, and removed at stop like every other.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use dataplane::health::{HealthState, Tracker, Transition};
use sys::netlink::{Family, Route, RouteKind};
use sys::ping::PingSocket;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::ROUTE_PROTOCOL;
use crate::status::WatchStatus;

/// What a watch wants on the host now: its route (while up) or nothing, tagged with the
/// watch's name and the generation of its task, so a wish of a stopped task is ignored.
#[derive(Debug)]
pub struct RouteWish {
    pub name: String,
    pub generation: u64,
    pub route: Option<Route>,
}

/// A hook that hangs must not hold up the next transition's hook forever.
const HOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// A running watch; the daemon withdraws its route when it stops it.
pub struct WatchTask {
    pub name: String,
    pub generation: u64,
    status: Arc<Mutex<WatchStatus>>,
    last_change: Arc<Mutex<Option<Instant>>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl WatchTask {
    pub fn start(
        config: control::Watch,
        generation: u64,
        wishes: mpsc::UnboundedSender<RouteWish>,
    ) -> anyhow::Result<Self> {
        let family = match config.target {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        };
        let socket = PingSocket::open(family, Some(&config.device), config.source)
            .with_context(|| format!("watch {}: opening the probe socket", config.name))?;
        let socket = sys::reactor::register(socket)
            .with_context(|| format!("watch {}: registering the probe socket", config.name))?;
        let route = watch_route(&config.route)?;
        let status = Arc::new(Mutex::new(WatchStatus {
            name: config.name.clone(),
            state: HealthState::Unknown.into(),
            target: config.target.to_string(),
            device: config.device.clone(),
            route: describe(&config.route),
            ..WatchStatus::default()
        }));
        let last_change = Arc::new(Mutex::new(None));
        let (stop, stopped) = watch::channel(false);
        let runner = Runner {
            tracker: Tracker::new(config.health),
            config,
            generation,
            wishes,
            socket,
            route,
            installed: false,
            seq: 0,
            status: status.clone(),
            last_change: last_change.clone(),
        };
        let name = runner.config.name.clone();
        let task = tokio::spawn(runner.run(stopped));
        Ok(Self {
            name,
            generation,
            status,
            last_change,
            stop,
            task,
        })
    }

    pub fn status(&self) -> WatchStatus {
        let mut status = self.status.lock().map(|s| s.clone()).unwrap_or_default();
        status.last_change_secs_ago = self
            .last_change
            .lock()
            .ok()
            .and_then(|c| *c)
            .map(|at| at.elapsed().as_secs());
        status
    }

    /// Ends the task.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .is_err()
        {
            warn!(watch = %self.name, "did not stop within 5 s");
        }
    }
}

fn watch_route(r: &control::WatchRoute) -> anyhow::Result<Route> {
    let oif = match &r.device {
        Some(dev) => Some(
            super::link_index(dev)
                .with_context(|| format!("watch route device {dev} does not exist"))?,
        ),
        None => None,
    };
    Ok(Route {
        dst: r.dst,
        table: r.table,
        protocol: ROUTE_PROTOCOL,
        metric: Some(r.metric),
        oif,
        gateway: r.via,
        kind: RouteKind::Unicast,
        mtu: None,
        prefsrc: None,
        realm: None,
    })
}

fn describe(r: &control::WatchRoute) -> String {
    let mut s = r.dst.to_string();
    if let Some(via) = r.via {
        s.push_str(&format!(" via {via}"));
    }
    if let Some(dev) = &r.device {
        s.push_str(&format!(" dev {dev}"));
    }
    s.push_str(&format!(" table {} metric {}", r.table, r.metric));
    s
}

struct Runner {
    config: control::Watch,
    tracker: Tracker,
    generation: u64,
    wishes: mpsc::UnboundedSender<RouteWish>,
    socket: AsyncFd<PingSocket>,
    route: Route,
    installed: bool,
    seq: u16,
    status: Arc<Mutex<WatchStatus>>,
    last_change: Arc<Mutex<Option<Instant>>>,
}

impl Runner {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let mut buf = vec![0u8; 2048];
        loop {
            let now = Instant::now();
            if self.tracker.probe_due(now) {
                self.seq = self.seq.wrapping_add(1);
                // A send error (uplink down: ENETUNREACH, ENOBUFS) is just a probe that will
                // not be answered; the tracker counts it lost when its timeout runs out.
                let _ =
                    self.socket
                        .get_ref()
                        .send_echo(self.config.target, self.seq, b"v6gate-watch");
                self.tracker.on_probe_sent(now, u32::from(self.seq));
            }
            self.tracker.handle_timeout(now);
            self.apply_transitions().await;
            self.publish();

            let wake = [self.tracker.poll_timeout(), self.tracker.next_probe()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(now + Duration::from_secs(1));
            tokio::select! {
                _ = stopped.changed() => break,
                _ = tokio::time::sleep_until(wake.into()) => {}
                readable = self.socket.readable() => {
                    let Ok(mut guard) = readable else { continue };
                    loop {
                        match guard.get_inner().recv_reply(&mut buf) {
                            Ok(reply) => {
                                if reply.from == self.config.target {
                                    self.tracker.on_reply(Instant::now(), u32::from(reply.seq));
                                }
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                guard.clear_ready();
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                }
            }
        }
    }

    fn wish(&self, route: Option<Route>) {
        // The daemon is gone when this fails; it took the route with it.
        let _ = self.wishes.send(RouteWish {
            name: self.config.name.clone(),
            generation: self.generation,
            route,
        });
    }

    async fn apply_transitions(&mut self) {
        while let Some(t) = self.tracker.poll_transition() {
            self.transition(t).await;
        }
    }

    async fn transition(&mut self, t: Transition) {
        let name = &self.config.name;
        info!(
            watch = %name,
            "{} -> {} ({}); target {} via {}",
            t.from, t.to, t.reason, self.config.target, self.config.device
        );
        if let Ok(mut c) = self.last_change.lock() {
            *c = Some(t.at);
        }
        if let Ok(mut s) = self.status.lock() {
            s.transitions += 1;
        }
        match t.to {
            HealthState::Up if !self.installed => {
                self.wish(Some(self.route.clone()));
                self.installed = true;
                info!(watch = %name, "route {} restored", describe(&self.config.route));
            }
            HealthState::Down if self.installed => {
                self.wish(None);
                self.installed = false;
                info!(
                    watch = %name,
                    "route {} withdrawn: backup routes take over",
                    describe(&self.config.route)
                );
            }
            _ => {}
        }
        let hook = match t.to {
            HealthState::Up => self.config.on_up.clone(),
            HealthState::Down => self.config.on_down.clone(),
            HealthState::Unknown => None,
        };
        if let Some(hook) = hook {
            let name = name.clone();
            let state = t.to.to_string();
            let reason = t.reason.to_string();
            // Hooks run beside the watch so a slow LED script cannot delay the next probe.
            tokio::spawn(async move { run_hook(&name, &hook, &state, &reason).await });
        }
    }

    fn publish(&self) {
        if let Ok(mut s) = self.status.lock() {
            s.state = self.tracker.state().into();
            s.route_installed = self.installed;
            s.srtt_ms = self.tracker.srtt().map(|d| d.as_secs_f64() * 1000.0);
            s.loss_percent = self.tracker.loss().percent();
        }
    }
}

async fn run_hook(watch: &str, hook: &control::Hook, state: &str, reason: &str) {
    let mut command = tokio::process::Command::new(&hook.program);
    command
        .args(&hook.args)
        .env(control::HOOK_ENV_WATCH, watch)
        .env(control::HOOK_ENV_STATE, state)
        .env(control::HOOK_ENV_REASON, reason)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            warn!(
                watch,
                "hook {} failed to start: {e}",
                hook.program.display()
            );
            return;
        }
    };
    match tokio::time::timeout(HOOK_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => {
            info!(watch, "hook {} ({state}) ok", hook.program.display());
        }
        Ok(Ok(out)) => warn!(
            watch,
            "hook {} ({state}) exited with {}: {}",
            hook.program.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Ok(Err(e)) => warn!(watch, "hook {}: {e}", hook.program.display()),
        Err(_) => warn!(
            watch,
            "hook {} ({state}) still running after {HOOK_TIMEOUT:?}: killed",
            hook.program.display()
        ),
    }
}
