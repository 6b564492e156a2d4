//! The MSS clamping of the tunnels on the kernel path, as one host-state object: the
//! instance's own nftables table (`v6gate_mss_<instance>`, see
//! `control::firewall::kernel_mss`), under an owner name of its own. The firewall's table is
//! not touched, so two instances in one namespace clamp side by side, and one without
//! `[firewall]` creates no `inet v6gate`.

use control::firewall::kernel_mss::{KernelMss, kernel_mss_table};
use tracing::debug;

use super::Daemon;
use super::host::Object;
use super::host::table::Table;

/// Host-state owner name of the clamping table.
pub(super) const KERNEL_MSS: &str = "kernel path mss";

impl Daemon {
    /// Makes the clamping table hold the tunnels on the kernel path now, with `joining` in
    /// place of its tunnel's current clamping (a tunnel about to join, or to change its
    /// prefixes); no table when nothing clamps.
    pub(super) async fn set_kernel_mss(
        &mut self,
        joining: Option<KernelMss>,
    ) -> anyhow::Result<()> {
        let name = super::instance::mss_table(&self.config);
        let objects = kernel_mss_table(&name, &self.kernel_mss(joining))
            .map(|r| Object::Table(Table::new(r)))
            .into_iter()
            .collect();
        let changes = self.host.set(KERNEL_MSS, objects).await?;
        if !changes.is_empty() {
            debug!("kernel path MSS clamping: {}", changes.describe());
        }
        Ok(())
    }
}
