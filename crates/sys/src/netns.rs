//! Throwaway network namespaces: a thread of its own in a fresh namespace, which the kernel
//! frees when the thread ends. For trying host state (an nftables ruleset) without touching
//! the host's.

use std::io;
use std::thread;

/// Runs `f` on a new thread that first moves into a new, empty network namespace; processes
/// it starts (`nft`) live there too. The namespace goes away with the thread and its children.
pub fn in_private_netns<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    thread::Builder::new()
        .name("private-netns".into())
        .spawn(move || -> io::Result<T> {
            // SAFETY: unshare(2) takes a flag word and touches no memory of ours; CLONE_NEWNET
            // only moves this thread (which runs nothing else) into a new network namespace.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f())
        })?
        .join()
        .map_err(|_| io::Error::other("the private namespace thread panicked"))?
}

/// Moves the calling thread into the named network namespace `/run/netns/{name}` (as
/// `ip netns add` makes them).
///
/// Namespace membership is per thread, so call this only on a thread spawned for the purpose,
/// which then runs nothing else.
pub fn enter(name: &str) -> io::Result<()> {
    let file = std::fs::File::open(format!("/run/netns/{name}"))?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: `fd` is an open namespace file owned by `file`, which outlives the call;
    // setns(2) reads no memory of ours and only changes this thread's network namespace.
    let rc = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_is_new_and_private() {
        let here = std::fs::read_link("/proc/thread-self/ns/net").ok();
        match in_private_netns(|| std::fs::read_link("/proc/thread-self/ns/net").ok()) {
            Ok(there) => assert_ne!(here, there, "the thread stayed in the caller's namespace"),
            // Unprivileged runs cannot unshare; the e2e tests (as root) cover the real path.
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}"),
        }
    }
}
