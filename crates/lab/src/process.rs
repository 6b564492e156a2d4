//! Background processes inside lab namespaces, terminated when their handle or the lab goes.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::LabError;

/// How long a process gets between SIGTERM and SIGKILL when the lab tears it down.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(3);

/// Sends `signal` to `pid`.
fn send_signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    sys::process::signal(pid, signal)
}

pub(crate) struct ProcessSlot {
    child: Child,
    status: Option<ExitStatus>,
}

impl ProcessSlot {
    fn poll(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// Signals the child unless it has already been reaped (its pid may be reused then).
    fn signal(&mut self, signal: libc::c_int) -> io::Result<()> {
        if self.poll()?.is_some() {
            return Ok(());
        }
        send_signal(self.child.id(), signal)
    }

    fn wait_until(&mut self, deadline: Instant) -> io::Result<Option<ExitStatus>> {
        loop {
            if let Some(status) = self.poll()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub(crate) fn terminate(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        self.signal(libc::SIGTERM)?;
        if let Some(status) = self.wait_until(Instant::now() + grace)? {
            return Ok(status);
        }
        self.signal(libc::SIGKILL)?;
        let status = self.child.wait()?;
        self.status = Some(status);
        Ok(status)
    }
}

/// Starts `args` in the background inside the namespace `namespace`, stdout and stderr to
/// `dir/LABEL.out` and `.err`.
pub(crate) fn spawn_in(
    namespace: &str,
    dir: &Path,
    label: String,
    args: &[&str],
) -> Result<Process, LabError> {
    let stdout = dir.join(format!("{label}.out"));
    let stderr = dir.join(format!("{label}.err"));
    let open = |path: &Path| {
        fs::File::create(path).map_err(|e| LabError::io(format!("creating {}", path.display()), e))
    };
    let child = Command::new("ip")
        .args(["netns", "exec", namespace])
        .args(args)
        .stdin(Stdio::null())
        .stdout(open(&stdout)?)
        .stderr(open(&stderr)?)
        .spawn()
        .map_err(|e| LabError::io(format!("cannot start `{}`", args.join(" ")), e))?;
    let pid = child.id();
    let slot = Arc::new(Mutex::new(ProcessSlot {
        child,
        status: None,
    }));
    Ok(Process {
        slot,
        pid,
        label,
        stdout,
        stderr,
    })
}

/// A background process inside a lab namespace. Dropping it terminates it (SIGTERM, then
/// SIGKILL after [`TERMINATE_GRACE`]); so does dropping the lab.
pub struct Process {
    pub(crate) slot: Arc<Mutex<ProcessSlot>>,
    pid: u32,
    label: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProcessSlot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a signal unless the process has already exited.
    pub fn signal(&self, signal: libc::c_int) -> io::Result<()> {
        self.lock().signal(signal)
    }

    /// The exit status if it has exited.
    pub fn exit_status(&self) -> io::Result<Option<ExitStatus>> {
        self.lock().poll()
    }

    /// Waits for exit up to `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        self.lock().wait_until(Instant::now() + timeout)
    }

    /// SIGTERM, then SIGKILL after `grace`; returns how it ended.
    pub fn terminate(&self, grace: Duration) -> io::Result<ExitStatus> {
        self.lock().terminate(grace)
    }

    /// SIGKILL and reap.
    pub fn kill(&self) -> io::Result<ExitStatus> {
        let mut slot = self.lock();
        slot.signal(libc::SIGKILL)?;
        let status = slot.child.wait()?;
        slot.status = Some(status);
        Ok(status)
    }

    /// What it wrote to stdout so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn stdout_path(&self) -> &Path {
        &self.stdout
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.lock().terminate(TERMINATE_GRACE);
    }
}
