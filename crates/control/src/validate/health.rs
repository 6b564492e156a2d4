//! `[tunnel.health]` and `[watch.health]`: how probes turn into up and down.

use std::time::Duration;

use crate::file::{FileHealth, Int};
use crate::model::Health;

use super::*;

impl Checker {
    /// Probe timers and counts under `prefix` (`tunnel[0].health`, `watch[1]`).
    pub(super) fn health(
        &mut self,
        prefix: &str,
        file: FileHealth,
        defaults: Health,
    ) -> Option<Health> {
        let before = self.diagnostics.len();
        let key = |field: &str| format!("{prefix}.{field}");
        let interval = file.interval.as_ref().map_or(Some(defaults.interval), |v| {
            self.duration(&key("interval"), v, MIN_PROBE_TIME, MAX_TIMER)
        });
        let timeout = file.timeout.as_ref().map_or(Some(defaults.timeout), |v| {
            self.duration(&key("timeout"), v, MIN_PROBE_TIME, MAX_TIMER)
        });
        let hold_down = file
            .hold_down
            .as_ref()
            .map_or(Some(defaults.hold_down), |v| {
                self.duration(&key("hold_down"), v, Duration::ZERO, MAX_TIMER)
            });
        let mut count = |field: &str, value: Option<Int>, default: u32| match value {
            None => Some(default),
            Some(Int(n)) => self
                .int_in(&key(field), n, 1, MAX_PROBE_COUNT)
                .map(|n| n as u32),
        };
        let down_after = count("down_after", file.down_after, defaults.down_after);
        let up_after = count("up_after", file.up_after, defaults.up_after);
        if self.diagnostics.len() != before {
            return None;
        }
        Some(Health {
            interval: interval?,
            timeout: timeout?,
            down_after: down_after?,
            up_after: up_after?,
            hold_down: hold_down?,
        })
    }
}
