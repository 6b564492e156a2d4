//! The one owner of the host state a daemon instance installs.
//!
//! Every feature hands the owner the objects it wants, under an owner name ("gateway",
//! "tunnel ab"); [`HostState::set`] diffs them against what that name holds, applies the
//! difference in order and undoes its own steps when one fails. An object two names want (the
//! pin rule of a family) is installed once and removed when the last name lets go. Before
//! every change the journal is rewritten, so a crash leaves a record of exactly what this
//! instance put on the host; [`HostState::repair`] puts back whatever someone else removed or
//! changed; [`HostState::clear`] takes everything off and restores the sysctls.

pub mod journal;
mod kernel;
pub mod object;
pub mod program;
pub mod table;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::Write as _;
use std::net::IpAddr;

use anyhow::Context;
use sys::runtime_dir::RuntimeDir;
use tracing::{debug, info, warn};

pub use journal::{Accept, Journal};
pub use kernel::Host;
pub use object::{Identity, Object, Observed, Presence};

/// One installed object and the names that want it.
#[derive(Debug)]
struct Installed {
    object: Object,
    owners: Vec<String>,
}

/// What one [`HostState::set`] changed on the host, as readable lines.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    pub fn extend(&mut self, other: Self) {
        self.added.extend(other.added);
        self.removed.extend(other.removed);
        self.changed.extend(other.changed);
    }

    /// "+route …; -route …; ~route … -> …"
    pub fn describe(&self) -> String {
        let lines: Vec<String> = self
            .added
            .iter()
            .map(|a| format!("+{a}"))
            .chain(self.removed.iter().map(|r| format!("-{r}")))
            .chain(self.changed.iter().map(|c| format!("~{c}")))
            .collect();
        lines.join("; ")
    }
}

/// A step of one `set`, kept to undo it.
enum Step {
    Added(Identity),
    Joined(Identity),
    Replaced(Identity, Object),
}

/// The owner, over the kernel (`H` is the kernel's interface; tests use a recording one).
pub struct HostState<H: Host> {
    host: H,
    dir: RuntimeDir,
    journal_file: String,
    instance: String,
    originals: Vec<(String, String)>,
    /// Installed objects by installation order, and where each identity is.
    installed: BTreeMap<u64, Installed>,
    index: HashMap<Identity, u64>,
    next: u64,
    /// The journal, open for appending once it has been written whole.
    log: Option<File>,
    /// Lines appended since the journal was last written whole.
    appended: usize,
    /// Objects the last repair could not put back (reported once).
    failing: HashSet<Identity>,
}

impl<H: Host> HostState<H> {
    /// An owner with nothing installed yet, journalling to `journal_file` in `dir`.
    pub fn new(host: H, dir: RuntimeDir, journal_file: String, instance: String) -> Self {
        Self {
            host,
            dir,
            journal_file,
            instance,
            originals: Vec::new(),
            installed: BTreeMap::new(),
            index: HashMap::new(),
            next: 0,
            log: None,
            appended: 0,
            failing: HashSet::new(),
        }
    }

    /// Reads this instance's journal, left by a run that did not stop cleanly: removes the
    /// routes and rules it lists and takes over its sysctl originals, so the clean stop
    /// restores the values from before that run. Only entries `accept` allows are used; a
    /// journal we may not trust (not ours, writable by others, a symlink) is an error.
    pub async fn take_over(&mut self, accept: &Accept) -> anyhow::Result<()> {
        self.dir
            .check(&self.journal_file)
            .context("the journal of this instance")?;
        let Some(text) = self
            .dir
            .read(&self.journal_file)
            .context("reading the journal of this instance")?
        else {
            return self.save();
        };
        let (left, refused) = Journal::parse(&text, accept);
        for line in &refused {
            warn!("journal {}: ignored {line}", self.journal_file);
        }
        info!(
            "a previous run of this instance did not stop cleanly: removing the {} object(s) \
             its journal lists; {} sysctl original(s) will be restored at stop",
            left.objects.len(),
            left.originals.len()
        );
        for object in left.objects.iter().rev() {
            match object {
                // Their values are overwritten by the config and their originals kept.
                Object::Sysctl { .. } => {}
                // They went with the crashed run's devices.
                Object::Link { .. } | Object::Address { .. } => {}
                // Replaced in one transaction when this config has one too, so the host is
                // never without a firewall between the two runs.
                Object::Table(t) if accept.keep_table && t.name() == table::NAME => {}
                // A crashed run's `clsact` filters stay on their device until removed here,
                // whether or not this config still uses it.
                Object::Route(_) | Object::Rule(_) | Object::Table(_) | Object::Program(_) => {
                    if let Err(e) = self.host.remove(object, None).await {
                        debug!("leftover {object}: {e:#}");
                    } else {
                        info!("removed leftover {object}");
                    }
                }
            }
        }
        self.originals = left.originals;
        self.save()
    }

    /// Makes `owner` hold exactly `desired`: adds what is new, replaces what changed, removes
    /// what it no longer wants (unless another owner still does). On failure, this call's own
    /// steps are undone and the host is as before.
    pub async fn set(&mut self, owner: &str, desired: Vec<Object>) -> anyhow::Result<Changes> {
        let mut changes = Changes::default();
        let mut steps = Vec::new();
        for object in &desired {
            if let Err(e) = self.want(owner, object, &mut steps, &mut changes).await {
                self.undo(owner, steps).await;
                return Err(e);
            }
        }
        let keep: HashSet<Identity> = desired.iter().map(Object::identity).collect();
        let dropped: Vec<Identity> = self
            .installed
            .values()
            .filter(|i| i.owners.iter().any(|o| o == owner))
            .map(|i| i.object.identity())
            .filter(|id| !keep.contains(id))
            .collect();
        for id in dropped.iter().rev() {
            if let Some(gone) = self.release(owner, id).await {
                changes.removed.push(gone);
            }
        }
        self.compact()?;
        Ok(changes)
    }

    async fn want(
        &mut self,
        owner: &str,
        object: &Object,
        steps: &mut Vec<Step>,
        changes: &mut Changes,
    ) -> anyhow::Result<()> {
        let id = object.identity();
        let Some(&seq) = self.index.get(&id) else {
            if let Object::Sysctl { key, .. } = object
                && !self.originals.iter().any(|(k, _)| k == key)
            {
                let original = self.host.read_sysctl(key)?;
                self.record(&journal::original_line(key, &original))?;
                self.originals.push((key.clone(), original));
            }
            // Journal first: a crash right after the kernel took it still finds it recorded.
            self.record(&journal::line(object))?;
            if let Err(e) = self.host.apply(object).await {
                self.record(&format!("-{}", journal::line(object)))?;
                return Err(e);
            }
            let seq = self.next;
            self.next += 1;
            self.installed.insert(
                seq,
                Installed {
                    object: object.clone(),
                    owners: vec![owner.to_owned()],
                },
            );
            self.index.insert(id.clone(), seq);
            steps.push(Step::Added(id));
            changes.added.push(object.to_string());
            return Ok(());
        };
        let Some(entry) = self.installed.get_mut(&seq) else {
            return Ok(());
        };
        if !entry.owners.iter().any(|o| o == owner) {
            entry.owners.push(owner.to_owned());
            steps.push(Step::Joined(id.clone()));
        }
        if entry.object == *object {
            return Ok(());
        }
        let old = entry.object.clone();
        self.record(&journal::line(object))?;
        if let Err(e) = self.host.apply(object).await {
            self.record(&journal::line(&old))?;
            return Err(e);
        }
        if let Some(entry) = self.installed.get_mut(&seq) {
            entry.object = object.clone();
        }
        changes.changed.push(format!("{old} -> {object}"));
        steps.push(Step::Replaced(id, old));
        Ok(())
    }

    async fn undo(&mut self, owner: &str, steps: Vec<Step>) {
        for step in steps.into_iter().rev() {
            match step {
                Step::Added(id) | Step::Joined(id) => {
                    self.release(owner, &id).await;
                }
                Step::Replaced(id, old) => {
                    let Some(&seq) = self.index.get(&id) else {
                        continue;
                    };
                    if let Err(e) = self.host.apply(&old).await {
                        warn!("undoing a change: {e:#}");
                    }
                    if let Err(e) = self.record(&journal::line(&old)) {
                        warn!("{e:#}");
                    }
                    if let Some(entry) = self.installed.get_mut(&seq) {
                        entry.object = old;
                    }
                }
            }
        }
    }

    /// `owner` lets go of `id`; the object leaves the host if no one else holds it. Returns
    /// its description when it left.
    async fn release(&mut self, owner: &str, id: &Identity) -> Option<String> {
        let seq = *self.index.get(id)?;
        let entry = self.installed.get_mut(&seq)?;
        entry.owners.retain(|o| o != owner);
        if !entry.owners.is_empty() {
            return None;
        }
        let entry = self.installed.remove(&seq)?;
        self.index.remove(id);
        let original = self.original(&entry.object);
        if let Err(e) = self.host.remove(&entry.object, original.as_deref()).await {
            warn!("{e:#}");
        }
        let mut lines = format!("-{}", journal::line(&entry.object));
        if let Object::Sysctl { key, .. } = &entry.object {
            if let Some(value) = &original {
                lines.push_str(&format!("-{}", journal::original_line(key, value)));
            }
            self.originals.retain(|(k, _)| k != key);
        }
        if let Err(e) = self.record(&lines) {
            warn!("{e:#}");
        }
        Some(entry.object.to_string())
    }

    /// Takes everything off the host, newest first, restores every journalled sysctl and
    /// deletes the journal. Failures are logged, and the rest still runs.
    pub async fn clear(&mut self) {
        self.index.clear();
        while let Some((_, entry)) = self.installed.pop_last() {
            let original = self.original(&entry.object);
            if let Err(e) = self.host.remove(&entry.object, original.as_deref()).await {
                warn!("{e:#}");
            }
            if let Object::Sysctl { key, .. } = &entry.object {
                self.originals.retain(|(k, _)| k != key);
            }
        }
        // Originals taken over from a crashed run whose keys this run never set.
        for (key, value) in std::mem::take(&mut self.originals).into_iter().rev() {
            let sysctl = Object::Sysctl {
                key,
                value: String::new(),
            };
            if let Err(e) = self.host.remove(&sysctl, Some(&value)).await {
                warn!("{e:#}");
            }
        }
        self.log = None;
        if let Err(e) = self.dir.remove(&self.journal_file) {
            warn!("removing the journal: {e}");
        }
    }

    /// Puts back every object that is missing or changed on the host and says what it found.
    /// With `sysctls_only`, checks sysctls and kernel-path programs alone (neither sends a
    /// notification the daemon listens to, so they are polled).
    pub async fn repair(&mut self, sysctls_only: bool) -> Vec<String> {
        self.repair_where(sysctls_only, |o| {
            !sysctls_only || matches!(o, Object::Sysctl { .. } | Object::Program(_))
        })
        .await
    }

    /// Like [`HostState::repair`], for the nftables table alone (after an nftables change).
    pub async fn repair_table(&mut self) -> Vec<String> {
        self.repair_where(true, |o| matches!(o, Object::Table(_)))
            .await
    }

    /// `partial`: the check covers some kinds only, so failures seen before are kept.
    async fn repair_where(
        &mut self,
        partial: bool,
        wanted: impl Fn(&Object) -> bool,
    ) -> Vec<String> {
        let sysctls_only = partial;
        let objects: Vec<&Object> = self
            .installed
            .values()
            .map(|i| &i.object)
            .filter(|o| wanted(o))
            .collect();
        if objects.is_empty() {
            return Vec::new();
        }
        let seen = match self.host.observe(&objects).await {
            Ok(seen) => seen,
            Err(e) => {
                warn!("checking host state: {e:#}");
                return Vec::new();
            }
        };
        let mut outcomes = Vec::new();
        for object in objects {
            let what = match object.check(&seen) {
                Presence::Present => continue,
                Presence::Missing => format!("{object}: was removed"),
                Presence::Differs(now) => format!("{object}: host had {now}"),
            };
            let outcome = match self.host.apply(object).await {
                Ok(()) => Ok(format!("restored {what}")),
                Err(e) => Err(format!("could not restore {what}: {e:#}")),
            };
            outcomes.push((object.identity(), outcome));
        }
        let mut repaired = Vec::new();
        let mut failing = HashSet::new();
        for (id, outcome) in outcomes {
            match outcome {
                Ok(line) => repaired.push(line),
                // Said once, not at every check while the kernel keeps refusing.
                Err(line) => {
                    if !self.failing.contains(&id) {
                        repaired.push(line);
                    }
                    failing.insert(id);
                }
            }
        }
        if !sysctls_only {
            self.failing = failing;
        } else {
            self.failing.extend(failing);
        }
        repaired
    }

    /// Every address installed on the host, whoever holds it: what v6gate itself put there,
    /// never the host's own choice of source address.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.installed.values().filter_map(|i| match &i.object {
            Object::Address { net, .. } => Some(net.addr()),
            _ => None,
        })
    }

    /// Objects held by `owner`, in the order installed.
    pub fn objects_of<'a>(&'a self, owner: &'a str) -> impl Iterator<Item = &'a Object> + 'a {
        self.installed
            .values()
            .filter(move |i| i.owners.iter().any(|o| o == owner))
            .map(|i| &i.object)
    }

    fn original(&self, object: &Object) -> Option<String> {
        match object {
            Object::Sysctl { key, .. } => self
                .originals
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone()),
            _ => None,
        }
    }

    /// Appends `lines` to the journal.
    fn record(&mut self, lines: &str) -> anyhow::Result<()> {
        if self.log.is_none() {
            self.save()?;
        }
        let Some(log) = self.log.as_mut() else {
            anyhow::bail!("the journal is not open");
        };
        log.write_all(lines.as_bytes())
            .context("appending to the journal")?;
        self.appended += lines.matches('\n').count();
        Ok(())
    }

    /// Rewrites the journal whole when the appended lines outgrow what it describes.
    fn compact(&mut self) -> anyhow::Result<()> {
        if self.appended > 2 * (self.installed.len() + self.originals.len()) + 64 {
            self.save()?;
        }
        Ok(())
    }

    /// Writes the journal whole (aside, then renamed into place) and reopens it to append.
    fn save(&mut self) -> anyhow::Result<()> {
        let journal = Journal {
            originals: self.originals.clone(),
            objects: self.installed.values().map(|i| i.object.clone()).collect(),
        };
        self.log = None;
        self.dir
            .write(&self.journal_file, &journal.render(&self.instance))
            .context("writing the journal")?;
        self.log = Some(
            self.dir
                .append(&self.journal_file)
                .context("opening the journal")?,
        );
        self.appended = 0;
        Ok(())
    }
}
