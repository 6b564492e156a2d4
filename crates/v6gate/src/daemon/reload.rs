//! Reload: the new config's difference, applied through the host state.
//!
//! A tunnel whose routes or allowed sources changed is changed in place: its devices, SAs,
//! counters and traffic stay, and only the routes that differ are added or removed. Other
//! changes rebuild that tunnel alone; untouched tunnels are not touched. The summary names
//! every tunnel and object that changed. A config that fails validation changes nothing; one
//! that fails to apply is rolled back to the old one. New `[gateway] resolvers` restart the
//! name tasks; a tunnel is rebuilt only if the new servers answer differently.

use anyhow::{Context, bail};
use control::{Config, Tunnel};
use tracing::{error, warn};

use super::firewall::FIREWALL;
use super::{Daemon, GATEWAY, gateway_objects};

/// A step of a reload, kept to roll it back.
enum Done {
    Added(String),
    Removed(Tunnel),
    Updated(Tunnel),
}

impl Daemon {
    pub(super) async fn reload(&mut self) -> anyhow::Result<String> {
        let new = Config::load(&self.config_path)?;
        self.reload_to(new).await
    }

    /// Makes `new` the running config.
    pub(super) async fn reload_to(&mut self, new: Config) -> anyhow::Result<String> {
        if new.gateway.control_socket != self.config.gateway.control_socket {
            bail!(
                "control_socket names this instance and cannot change on reload; restart \
                 v6gate to move it"
            );
        }
        let old_gateway = &self.config.gateway;
        let reshaped = (
            old_gateway.pin_table,
            old_gateway.pin_rule_priority,
            old_gateway.route_metric,
        ) != (
            new.gateway.pin_table,
            new.gateway.pin_rule_priority,
            new.gateway.route_metric,
        );
        if reshaped {
            return self.rebuild_all(new).await;
        }
        // Rendered and checked by the kernel before anything changes.
        let firewall = self.firewall_plan(&new).await.check()?;
        let diff = control::diff(&self.config, &new);
        let mut lines = Vec::new();
        let gateway = self
            .host
            .set(GATEWAY, gateway_objects(&new))
            .await
            .context("applying [gateway]")?;
        if !gateway.is_empty() {
            lines.push(format!("gateway: {}", gateway.describe()));
        }
        let mut done = Vec::new();
        let applied = match self.set_firewall(firewall).await {
            Ok(changes) => {
                if !changes.is_empty() {
                    lines.push(format!("firewall: {}", changes.describe()));
                }
                self.apply_diff(&new, &diff, &mut done, &mut lines).await
            }
            Err(e) => Err(e.context("applying [firewall], [[table]] and [[rule]]")),
        };
        if let Err(e) = applied {
            self.roll_back(done).await;
            let old = gateway_objects(&self.config);
            if let Err(undo) = self.host.set(GATEWAY, old).await {
                warn!("restoring [gateway]: {undo:#}");
            }
            let old = self.firewall_plan(&self.config).await;
            if let Err(undo) = self.set_firewall(old).await {
                warn!("restoring {FIREWALL}: {undo:#}");
            }
            return Err(e.context("applying the new config"));
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
        if let Some(line) = self.reload_ddns(&new).await {
            lines.push(line);
        }
        let resolvers_changed = new.gateway.resolvers != self.config.gateway.resolvers;
        self.config = new;
        self.prune_names();
        if resolvers_changed {
            self.restart_names();
            lines.push("gateway: resolvers changed: every followed name is asked again".into());
        }
        self.reload_softwires().await;
        self.feed_ddns_paths().await;
        let mut summary = format!(
            "{} added, {} removed, {} changed, {} unchanged; watches: {} added, {} removed, {} \
             changed",
            diff.added.len(),
            diff.removed.len(),
            diff.changed.len(),
            diff.unchanged.len(),
            diff.watches_added.len(),
            diff.watches_removed.len(),
            diff.watches_changed.len()
        );
        for line in lines {
            summary.push('\n');
            summary.push_str(&line);
        }
        Ok(summary)
    }

    async fn apply_diff(
        &mut self,
        new: &Config,
        diff: &control::ConfigDiff,
        done: &mut Vec<Done>,
        lines: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let find = |cfg: &Config, name: &str| cfg.tunnels.iter().find(|t| t.name == name).cloned();
        for name in &diff.removed {
            if let Some(old) = find(&self.config, name) {
                self.remove_tunnel(name).await;
                lines.push(format!("tunnel {name}: removed"));
                done.push(Done::Removed(old));
            }
        }
        for name in &diff.changed {
            let (Some(old), Some(tunnel)) = (find(&self.config, name), find(new, name)) else {
                continue;
            };
            match self.update_tunnel(&tunnel).await {
                Some(Ok(changes)) => {
                    let what = if changes.is_empty() {
                        "no host state changed".to_owned()
                    } else {
                        changes.describe()
                    };
                    lines.push(format!("tunnel {name}: changed in place: {what}"));
                    done.push(Done::Updated(old));
                }
                Some(Err(e)) => return Err(e.context(format!("tunnel {name}"))),
                None => {
                    self.remove_tunnel(name).await;
                    done.push(Done::Removed(old));
                    self.add_tunnel(tunnel).await?;
                    done.push(Done::Added(name.clone()));
                    lines.push(format!(
                        "tunnel {name}: rebuilt (its devices were re-created)"
                    ));
                }
            }
        }
        for name in &diff.added {
            if let Some(tunnel) = find(new, name) {
                self.add_tunnel(tunnel).await?;
                done.push(Done::Added(name.clone()));
                lines.push(format!("tunnel {name}: added"));
            }
        }
        Ok(())
    }

    async fn roll_back(&mut self, done: Vec<Done>) {
        for step in done.into_iter().rev() {
            match step {
                Done::Added(name) => self.remove_tunnel(&name).await,
                Done::Removed(old) => {
                    if let Err(e) = self.add_tunnel(old.clone()).await {
                        error!("could not restore tunnel {}: {e:#}", old.name);
                    }
                }
                Done::Updated(old) => match self.update_tunnel(&old).await {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => error!("could not restore tunnel {}: {e:#}", old.name),
                    None => error!("could not restore tunnel {} in place", old.name),
                },
            }
        }
    }

    /// Pin table, rule priority or route metric shape every tunnel: rebuild all.
    async fn rebuild_all(&mut self, new: Config) -> anyhow::Result<String> {
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
        self.prune_names();
        self.reload_softwires().await;
        let names: Vec<&str> = self
            .tunnels
            .iter()
            .map(|t| t.config.name.as_str())
            .collect();
        Ok(format!(
            "gateway settings changed: all {} tunnel(s) rebuilt: {}",
            names.len(),
            names.join(", ")
        ))
    }
}
