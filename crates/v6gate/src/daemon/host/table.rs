//! One of v6gate's nftables tables as a host-state object: replaced whole in one transaction,
//! deleted whole, and checked by reading it back. There are two: the firewall's `inet v6gate`
//! and the instance's kernel-path clamping table (`control::firewall::kernel_mss`).
//!
//! What the kernel holds is not what we sent (nft normalises expressions, numbers handles),
//! so drift is measured against the table as read back right after our own replacement: any
//! difference from that (a rule added or deleted by hand, the table flushed or deleted) is
//! someone else's doing and is put back by the next replacement.

use std::fmt;
use std::sync::{Arc, Mutex};

use control::firewall::ruleset::Ruleset;
use sys::nft::Installed;

/// The name of the firewall's table, one per namespace.
pub use control::firewall::ruleset::TABLE as NAME;

/// The table and what the kernel showed after the last replacement.
#[derive(Clone)]
pub struct Table {
    name: String,
    /// `None` for a table known only from a crashed run's journal, which is only deleted.
    ruleset: Option<Arc<Ruleset>>,
    applied: Arc<Mutex<Option<Installed>>>,
}

impl Table {
    pub fn new(ruleset: Ruleset) -> Self {
        Self {
            name: ruleset.table.name.to_string(),
            ruleset: Some(Arc::new(ruleset)),
            applied: Arc::default(),
        }
    }

    /// The table `name` a crashed run left, to be deleted.
    pub fn leftover(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ruleset: None,
            applied: Arc::default(),
        }
    }

    /// The ruleset, unless this is a crashed run's table.
    pub fn ruleset(&self) -> Option<&Ruleset> {
        self.ruleset.as_deref()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn rule_count(&self) -> usize {
        self.ruleset.as_ref().map_or(0, |r| r.rule_count())
    }

    /// Replaces the kernel's table with ours and remembers how the kernel shows it.
    pub fn apply(&self) -> anyhow::Result<()> {
        let Some(ruleset) = &self.ruleset else {
            anyhow::bail!("the table of a previous run is only removed");
        };
        sys::nft::replace_table(&ruleset.table, &ruleset.content)?;
        let shown = sys::nft::installed(control::firewall::ruleset::FAMILY, &self.name)?;
        *self.applied.lock().unwrap_or_else(|e| e.into_inner()) = shown;
        Ok(())
    }

    /// Deletes the table; one that is not there is not an error.
    pub fn remove(&self) -> anyhow::Result<()> {
        sys::nft::delete_table(control::firewall::ruleset::FAMILY, &self.name)?;
        Ok(())
    }

    /// Reads the table back; `None` when it is gone.
    pub fn observe(&self) -> anyhow::Result<Option<Installed>> {
        Ok(sys::nft::installed(
            control::firewall::ruleset::FAMILY,
            &self.name,
        )?)
    }

    /// Whether `seen` is the table as we left it.
    pub fn matches(&self, seen: &Installed) -> bool {
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|applied| applied == seen)
    }
}

/// Two tables are the same object value when they hold the same ruleset.
impl PartialEq for Table {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.ruleset == other.ruleset
    }
}

impl Eq for Table {}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Table({self})")
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ruleset {
            Some(_) => write!(
                f,
                "nftables table inet {} ({} rules)",
                self.name,
                self.rule_count()
            ),
            None => write!(f, "nftables table inet {}", self.name),
        }
    }
}
