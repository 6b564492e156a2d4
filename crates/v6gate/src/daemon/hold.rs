//! `v6gate down|up|initiate TUNNEL`: one tunnel taken out of service and back, or its IKE
//! started now, while the daemon runs.
//!
//! `down` removes the tunnel the way a reload that disables it would (IKE SAs deleted with
//! the peer told, routes and addresses withdrawn, devices closed), so nothing is sent or
//! accepted on it; the hold lasts until `up`, a restart, or a reload that changes or removes
//! the tunnel (the file then says what it should be).

use tracing::info;

use super::Daemon;
use crate::status::{TunnelState, TunnelStatus};

impl Daemon {
    /// The enabled tunnel `name` of the running config, or why there is none.
    fn configured(&self, name: &str) -> Result<control::Tunnel, String> {
        match self.config.tunnel(name) {
            Some(t) if t.enabled => Ok(t.clone()),
            Some(_) => Err(format!(
                "tunnel {name:?} has enabled = false in {}",
                self.config_path.display()
            )),
            None => Err(format!(
                "no tunnel {name:?} in {} (tunnels: {})",
                self.config_path.display(),
                self.config
                    .tunnels
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    fn running(&self, name: &str) -> bool {
        self.tunnels.iter().any(|t| t.config.name == name)
    }

    pub(super) async fn hold_down(&mut self, name: &str) -> Result<String, String> {
        self.configured(name)?;
        if !self.running(name) {
            return Ok(format!("tunnel {name} is down already"));
        }
        self.remove_tunnel(name).await;
        self.held.insert(name.to_owned());
        info!(tunnel = name, "held down by `v6gate down`");
        Ok(format!(
            "tunnel {name} down: routes withdrawn, device closed, SAs deleted; `v6gate up {name}` \
             brings it back"
        ))
    }

    pub(super) async fn release(&mut self, name: &str) -> Result<String, String> {
        let tunnel = self.configured(name)?;
        self.held.remove(name);
        if self.running(name) {
            return Ok(format!("tunnel {name} is up already"));
        }
        self.add_tunnel(tunnel)
            .await
            .map_err(|e| format!("{e:#}"))?;
        info!(tunnel = name, "back up by `v6gate up`");
        Ok(format!("tunnel {name} up"))
    }

    pub(super) fn initiate(&mut self, name: &str) -> Result<String, String> {
        let tunnel = self.configured(name)?;
        if tunnel.ipsec.is_none() {
            return Err(format!(
                "tunnel {name} is {}: it has no IKE to start",
                tunnel.mode
            ));
        }
        let Some(t) = self.tunnels.iter().find(|t| t.config.name == name) else {
            return Err(format!(
                "tunnel {name} is held down; `v6gate up {name}` first"
            ));
        };
        for ike in &t.ipsec {
            ike.initiate_now();
        }
        Ok(format!(
            "tunnel {name}: IKE_SA_INIT sent on {} path(s); `v6gate status` shows the outcome",
            t.ipsec.len()
        ))
    }

    /// Held tunnels that are still configured and not running, as `status` lists them.
    pub(super) fn held_status(&self) -> Vec<TunnelStatus> {
        self.held
            .iter()
            .filter(|name| !self.running(name))
            .filter_map(|name| self.config.tunnel(name).filter(|t| t.enabled))
            .map(|t| TunnelStatus {
                name: t.name.clone(),
                device: t.device.clone(),
                mode: t.mode.to_string(),
                state: TunnelState::Down,
                held_down: true,
                active_path: "none (held down)".to_owned(),
                ..TunnelStatus::default()
            })
            .collect()
    }
}
