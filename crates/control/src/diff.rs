//! Tunnel- and watch-level difference between two configs, for reload.

use crate::model::{Config, Gateway};

/// What a reload must do, by tunnel name. Only enabled tunnels count: disabling a tunnel
/// removes it, enabling one adds it. A changed tunnel is removed and added again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// Up under the old config, not under the new one (old order).
    pub removed: Vec<String>,
    /// Up under the new config only (new order).
    pub added: Vec<String>,
    /// Up under both, with any setting changed (old order).
    pub changed: Vec<String>,
    /// Up under both and identical (old order).
    pub unchanged: Vec<String>,
    /// Any `[gateway]` setting differs. When one that shapes tunnel routes or pins differs
    /// (`pin_table`, `pin_rule_priority`, `route_metric`) every kept tunnel is in `changed`.
    pub gateway_changed: bool,
    /// Watches by name, like tunnels: in the old config only (old order).
    pub watches_removed: Vec<String>,
    /// In the new config only (new order).
    pub watches_added: Vec<String>,
    /// In both, with any setting changed (old order); removed and added again.
    pub watches_changed: Vec<String>,
    /// In both and identical (old order).
    pub watches_unchanged: Vec<String>,
}

impl ConfigDiff {
    /// Whether the reload has nothing to do.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty()
            && self.added.is_empty()
            && self.changed.is_empty()
            && !self.gateway_changed
            && self.watches_removed.is_empty()
            && self.watches_added.is_empty()
            && self.watches_changed.is_empty()
    }
}

/// What changes from `old` to `new`.
pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let reshapes_tunnels = shapes_tunnels(&old.gateway) != shapes_tunnels(&new.gateway);
    let mut out = ConfigDiff {
        gateway_changed: old.gateway != new.gateway,
        ..ConfigDiff::default()
    };
    let find_enabled =
        |config: &Config, name: &str| config.enabled_tunnels().find(|t| t.name == name).cloned();
    for old_tunnel in old.enabled_tunnels() {
        let name = old_tunnel.name.clone();
        match find_enabled(new, &name) {
            None => out.removed.push(name),
            Some(new_tunnel) if new_tunnel != *old_tunnel || reshapes_tunnels => {
                out.changed.push(name);
            }
            Some(_) => out.unchanged.push(name),
        }
    }
    for new_tunnel in new.enabled_tunnels() {
        if find_enabled(old, &new_tunnel.name).is_none() {
            out.added.push(new_tunnel.name.clone());
        }
    }
    // A watch route's metric defaults to `route_metric`, but the default is already filled in,
    // so comparing the watches themselves sees that change too.
    for old_watch in &old.watches {
        let name = old_watch.name.clone();
        match new.watch(&name) {
            None => out.watches_removed.push(name),
            Some(new_watch) if new_watch != old_watch => out.watches_changed.push(name),
            Some(_) => out.watches_unchanged.push(name),
        }
    }
    for new_watch in &new.watches {
        if old.watch(&new_watch.name).is_none() {
            out.watches_added.push(new_watch.name.clone());
        }
    }
    out
}

fn shapes_tunnels(g: &Gateway) -> (u32, u32, u32) {
    (g.pin_table, g.pin_rule_priority, g.route_metric)
}
