//! The daemon's `[[ddns]]` entries: one runner (see `crate::ddns::runner`) for all of them,
//! started with the tunnels, changed in place on reload, stopped before the tunnels.
//!
//! The runner follows device addresses through its own netlink subscription; what it cannot
//! see, the local address of a tunnel path (`address = { tunnel, path }`), the daemon hands it
//! whenever a tunnel is added, rebuilt or re-pointed.

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::Context;
use control::Config;
use control::ddns::{AddressSource, Ddns};
use tracing::info;

use super::Daemon;
use crate::ddns::{DdnsRunner, DdnsStatus};

impl Daemon {
    /// Starts the runner for the config's entries (the state directory is created root-only
    /// if missing), or hands a running one the current entries.
    pub(super) async fn start_ddns(&mut self) -> anyhow::Result<()> {
        let entries = self.config.ddns.clone();
        match &self.ddns {
            Some(runner) => runner.reconfigure(entries).await,
            None if entries.is_empty() => {}
            None => {
                let dir = &self.config.gateway.state_dir;
                let runner = DdnsRunner::start(entries, dir).with_context(|| {
                    format!(
                        "[[ddns]]: keeping state in {} (gateway.state_dir)",
                        dir.display()
                    )
                })?;
                info!(
                    "ddns: {} entr(y/ies), state in {}",
                    self.config.ddns.len(),
                    dir.display()
                );
                self.ddns = Some(runner);
            }
        }
        self.feed_ddns_paths().await;
        Ok(())
    }

    /// Applies `new`'s entries before it becomes the running config; returns the summary line.
    pub(super) async fn reload_ddns(&mut self, new: &Config) -> Option<String> {
        let old = &self.config.ddns;
        let same = *old == new.ddns && self.config.gateway.state_dir == new.gateway.state_dir;
        // Even unchanged entries hear of the reload: one stopped by an authentication error
        // starts again.
        let line = (!same).then(|| format!("ddns: {}", describe_change(old, &new.ddns)));
        let moved = self.config.gateway.state_dir != new.gateway.state_dir;
        if (moved || new.ddns.is_empty())
            && let Some(runner) = self.ddns.take()
        {
            runner.stop().await;
        }
        match &self.ddns {
            Some(runner) => runner.reconfigure(new.ddns.clone()).await,
            None if new.ddns.is_empty() => {}
            None => match DdnsRunner::start(new.ddns.clone(), &new.gateway.state_dir) {
                Ok(runner) => self.ddns = Some(runner),
                Err(e) => {
                    let message = format!(
                        "[[ddns]]: not started: keeping state in {}: {e:#}",
                        new.gateway.state_dir.display()
                    );
                    tracing::error!("{message}");
                    return Some(message);
                }
            },
        }
        line
    }

    pub(super) async fn stop_ddns(&mut self) {
        if let Some(runner) = self.ddns.take() {
            runner.stop().await;
        }
    }

    /// Tells the runner the local address of every tunnel path an entry publishes.
    pub(super) async fn feed_ddns_paths(&self) {
        let Some(runner) = &self.ddns else { return };
        for entry in &self.config.ddns {
            let AddressSource::Path { tunnel, path } = &entry.address else {
                continue;
            };
            runner
                .set_path_address(tunnel, path, self.path_local(tunnel, path))
                .await;
        }
    }

    /// The local address a running tunnel's path sends from now.
    fn path_local(&self, tunnel: &str, path: &str) -> Option<IpAddr> {
        let running = self.tunnels.iter().find(|t| t.config.name == tunnel)?;
        running
            .config
            .paths
            .iter()
            .find(|p| p.name == path)
            .map(|p| p.local)
            .filter(|a| !a.is_unspecified())
    }

    pub(super) fn ddns_status(&self) -> Vec<DdnsStatus> {
        self.ddns
            .as_ref()
            .map(DdnsRunner::status)
            .unwrap_or_default()
    }
}

/// `1 added (www), 1 removed (v4), 1 changed (home)`, or `state directory moved`.
fn describe_change(old: &[Ddns], new: &[Ddns]) -> String {
    let names = |list: &[Ddns]| list.iter().map(|d| d.name.clone()).collect::<BTreeSet<_>>();
    let (before, after) = (names(old), names(new));
    let added: Vec<&String> = after.difference(&before).collect();
    let removed: Vec<&String> = before.difference(&after).collect();
    let changed: Vec<&String> = after
        .intersection(&before)
        .filter(|n| {
            let find = |l: &[Ddns]| l.iter().find(|d| &d.name == *n).cloned();
            find(old) != find(new)
        })
        .collect();
    let part = |what: &str, list: &[&String]| {
        let names: Vec<&str> = list.iter().map(|s| s.as_str()).collect();
        format!("{} {what} ({})", list.len(), names.join(", "))
    };
    let parts: Vec<String> = [
        ("added", &added),
        ("removed", &removed),
        ("changed", &changed),
    ]
    .into_iter()
    .filter(|(_, l)| !l.is_empty())
    .map(|(what, l)| part(what, l))
    .collect();
    if parts.is_empty() {
        "state directory moved".to_owned()
    } else {
        parts.join(", ")
    }
}
