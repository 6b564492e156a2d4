//! systemd integration of `v6gate run`: the watchdog.
//!
//! The daemon says READY=1 once it serves its control socket. With `WatchdogSec=` set, the
//! pings come from [`Watchdog`], which asks the daemon for its status over that socket every
//! half interval and pings only when the answer came: a status answer travels through the
//! daemon's main loop and the packet thread's snapshot, so a hung loop or packet thread stops
//! the pings and systemd restarts the service. A timer in the main loop would only prove the
//! loop.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::status::{self, Request, Response};

/// Pings the systemd watchdog while the daemon answers; stops when dropped.
pub struct Watchdog {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Starts pinging if systemd asked for a watchdog (`WATCHDOG_USEC` for this pid);
    /// `None` otherwise.
    pub fn start(control_socket: PathBuf) -> Option<Self> {
        let timeout = sd_notify::watchdog_enabled()?;
        let every = ping_interval(timeout);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    if answers(&control_socket) {
                        let _ = sd_notify::notify(&[NotifyState::Watchdog]);
                    }
                    sleep_unless(&stopping, every);
                }
            })
            .ok()?;
        Some(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Half the watchdog timeout, as sd_watchdog_enabled(3) advises, and at least 100 ms so a
/// tiny setting cannot turn into a busy loop.
pub fn ping_interval(timeout: Duration) -> Duration {
    (timeout / 2).max(Duration::from_millis(100))
}

fn answers(control_socket: &std::path::Path) -> bool {
    matches!(
        status::query(control_socket, &Request::Status),
        Ok(Response::Status(_))
    )
}

/// Sleeps `total` in short steps so that a stop is seen within 100 ms.
fn sleep_unless(stop: &AtomicBool, total: Duration) {
    let step = Duration::from_millis(100);
    let mut slept = Duration::ZERO;
    while slept < total && !stop.load(Ordering::Relaxed) {
        thread::sleep(step.min(total - slept));
        slept += step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_twice_per_timeout() {
        assert_eq!(
            ping_interval(Duration::from_secs(30)),
            Duration::from_secs(15)
        );
        assert_eq!(
            ping_interval(Duration::from_millis(10)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn no_daemon_no_ping() {
        assert!(!answers(std::path::Path::new("/nonexistent/v6gate.sock")));
    }
}
