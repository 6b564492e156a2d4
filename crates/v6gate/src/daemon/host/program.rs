//! One program of a tunnel's kernel path, attached to one hook of one underlay device, as a
//! host-state object.
//!
//! tcx links close with the process that holds them, however it ends; `clsact` filters
//! (kernels before 6.6) stay on the device. Journalled like every object, a crashed run's
//! filters are known to the next start, which removes them (by the program's name) whether
//! or not its config still uses the device. A program the kernel no longer lists on its hook
//! is missing, and the repair attaches it again.

use std::fmt;
use std::sync::{Arc, Mutex};

use kpath::{Hook, KernelPath};

/// A program on a device's hook.
#[derive(Clone)]
pub struct Program {
    pub tunnel: String,
    pub device: String,
    pub hook: Hook,
    /// A `clsact` filter, which outlives the process, rather than a tcx link.
    pub clsact: bool,
    /// The loaded programs; `None` for an attachment known only from a crashed run's
    /// journal, which is only removed.
    pub path: Option<Arc<Mutex<KernelPath>>>,
}

impl Program {
    /// The attachment a crashed run's journal names, to be removed.
    pub fn leftover(tunnel: String, device: String, hook: Hook, clsact: bool) -> Self {
        Self {
            tunnel,
            device,
            hook,
            clsact,
            path: None,
        }
    }

    /// Attaches the program (again, when the kernel lost it).
    pub fn apply(&self) -> anyhow::Result<()> {
        let Some(path) = &self.path else {
            anyhow::bail!("the programs of a previous run are only removed");
        };
        lock(path).attach_hook(&self.device, self.hook)?;
        Ok(())
    }

    /// Detaches the program; a crashed run's `clsact` filter is removed by name.
    pub fn remove(&self) -> anyhow::Result<()> {
        match &self.path {
            Some(path) => lock(path).detach_hook(self.hook)?,
            None if self.clsact => {
                KernelPath::detach_leftover(&self.device, self.hook)?;
            }
            // A tcx link went with the process that held it.
            None => {}
        }
        Ok(())
    }

    /// The kernel's id of the program, as the device's hook lists it when attached.
    pub fn id(&self) -> Option<u32> {
        self.path
            .as_ref()
            .and_then(|path| lock(path).program_id(self.hook).ok())
    }
}

fn lock(path: &Mutex<KernelPath>) -> std::sync::MutexGuard<'_, KernelPath> {
    path.lock().unwrap_or_else(|e| e.into_inner())
}

/// Equal when they name the same attachment of the same loaded programs.
impl PartialEq for Program {
    fn eq(&self, other: &Self) -> bool {
        (&self.tunnel, &self.device, self.hook, self.clsact)
            == (&other.tunnel, &other.device, other.hook, other.clsact)
            && match (&self.path, &other.path) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}

impl Eq for Program {}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Program({self})")
    }
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "program {} on {} {} ({}, tunnel {})",
            self.hook.program(),
            self.device,
            self.hook,
            if self.clsact { "clsact" } else { "tcx" },
            self.tunnel
        )
    }
}
