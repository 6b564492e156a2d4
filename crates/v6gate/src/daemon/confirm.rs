//! `reload --confirm`: apply a config and go back to the one before unless `confirm` comes in
//! time (Junos `commit confirmed`, netplan `try`).
//!
//! The config to go back to is the one that ran before the first unconfirmed reload: a second
//! `reload --confirm` while one is pending moves the deadline, not the way back. A plain
//! reload while one is pending keeps what it applies, as a confirmation would. The config file
//! is not rewritten on revert; the log says so, since the next reload reads the file again.
//! The management ports are accepted first in every ruleset, so the session that confirms is
//! never cut off by the change it confirms.

use std::time::{Duration, Instant};

use control::Config;
use tracing::{error, info, warn};

use super::Daemon;

/// A reload waiting for confirmation.
pub(super) struct Pending {
    previous: Config,
    pub deadline: Instant,
}

impl Daemon {
    /// Applies the config file, to be reverted after `timeout` unless confirmed.
    pub(super) async fn reload_confirmed(&mut self, timeout: Duration) -> anyhow::Result<String> {
        let previous = match self.pending.take() {
            Some(pending) => pending.previous,
            None => self.config.clone(),
        };
        match self.reload().await {
            Ok(summary) => {
                self.pending = Some(Pending {
                    previous,
                    deadline: Instant::now() + timeout,
                });
                info!(
                    "reloaded; reverting in {} s unless `v6gate confirm`",
                    timeout.as_secs()
                );
                Ok(format!(
                    "{summary}\nreverts to the previous config in {} s unless `v6gate confirm`",
                    timeout.as_secs()
                ))
            }
            Err(e) => {
                // Nothing changed; a confirmation still pending keeps its way back.
                if previous != self.config {
                    self.pending = Some(Pending {
                        previous,
                        deadline: Instant::now() + timeout,
                    });
                }
                Err(e)
            }
        }
    }

    /// Keeps the running config.
    pub(super) fn confirm(&mut self) -> anyhow::Result<String> {
        match self.pending.take() {
            Some(_) => {
                info!("configuration confirmed");
                Ok("confirmed: the running config stays".into())
            }
            None => anyhow::bail!("nothing to confirm: no `reload --confirm` is pending"),
        }
    }

    /// The deadline passed: back to the config from before.
    pub(super) async fn revert(&mut self) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        warn!("no confirmation in time: reverting to the previous config");
        match self.reload_to(pending.previous).await {
            Ok(summary) => warn!(
                "reverted: {summary}\nthe config file still holds the unconfirmed config; fix it \
                 before the next reload"
            ),
            Err(e) => error!("reverting to the previous config failed: {e:#}"),
        }
    }

    /// Seconds left before a pending revert.
    pub(super) fn revert_in(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| {
            p.deadline
                .saturating_duration_since(Instant::now())
                .as_secs()
        })
    }
}

/// Waits for the deadline of `pending`, or forever without one.
pub(super) async fn deadline(pending: Option<Instant>) {
    match pending {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
