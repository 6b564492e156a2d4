//! Helpers shared by the kernel-facing test suites: a network namespace per test thread, a
//! named peer namespace for the far ends of veth pairs, and packet builders.

#![allow(dead_code)]

use std::future::Future;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ipnet::IpNet;
use sys::netlink::Netlink;

/// Runs `test` on a current-thread runtime in a new network namespace with `lo` up.
pub fn in_netns<F, Fut>(test: F)
where
    F: FnOnce(Netlink) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let thread = std::thread::spawn(move || {
        unshare_netns().expect("unshare(CLONE_NEWNET) needs root");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(async move {
            let netlink = Netlink::new().expect("netlink");
            let lo = netlink.link_index("lo").await.unwrap().expect("lo exists");
            netlink.link_set_up(lo).await.unwrap();
            tokio::time::timeout(Duration::from_secs(20), test(netlink))
                .await
                .expect("test timed out");
        });
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

#[allow(unsafe_code)]
fn unshare_netns() -> io::Result<()> {
    // SAFETY: unshare(CLONE_NEWNET) only changes the calling thread's namespace membership;
    // it touches no memory of ours.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

pub fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for chunk in chunks {
        for pair in chunk.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// IPv4 header (20 bytes) + UDP header with checksum 0 + payload.
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, port: u16, payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut packet = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
    packet[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    let sum = checksum(&[&packet]);
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
    packet.extend_from_slice(&40000u16.to_be_bytes());
    packet.extend_from_slice(&port.to_be_bytes());
    packet.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    packet
}

/// Waits until a non-blocking receive yields something other than `WouldBlock`.
pub async fn recv_soon<T>(mut recv: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    for _ in 0..200 {
        match recv() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
    Err(io::Error::from(io::ErrorKind::TimedOut))
}

/// Runs `ip` with `args` in the calling thread's network namespace (a child process inherits
/// the namespace of the thread that forks it) and returns what it printed; panics with its
/// complaint if it fails.
pub fn ip(args: &str) -> String {
    let output = Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .expect("iproute2's ip is installed");
    assert!(
        output.status.success(),
        "ip {args}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A named network namespace (`ip netns add`) for the far end of veth pairs: a neighbour
/// whose own kernel answers pings and receives tunnel packets. Deleted on drop, panics
/// included, which also removes the veth pairs reaching into it.
pub struct PeerNetns {
    name: String,
}

impl PeerNetns {
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "v6gs-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&format!("netns add {name}"));
        let peer = Self { name };
        peer.ip("link set lo up");
        peer
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <peer> args`.
    pub fn ip(&self, args: &str) -> String {
        ip(&format!("-n {} {args}", self.name))
    }

    /// Index of interface `name` in the peer namespace (`ip -o link` starts lines with it).
    pub fn link_index(&self, name: &str) -> u32 {
        let line = self.ip(&format!("-o link show dev {name}"));
        line.split(':')
            .next()
            .and_then(|index| index.trim().parse().ok())
            .unwrap_or_else(|| panic!("no index in {line:?}"))
    }

    /// Creates a veth pair from the calling thread's namespace: `local` stays here (down),
    /// `remote` goes into the peer, is brought up and given `addrs` (IPv6 without DAD).
    pub fn veth(&self, local: &str, remote: &str, addrs: &[&str]) {
        ip(&format!(
            "link add {local} type veth peer name {remote} netns {}",
            self.name
        ));
        self.ip(&format!("link set {remote} up"));
        for addr in addrs {
            let nodad = if addr.contains(':') { " nodad" } else { "" };
            self.ip(&format!("addr add {addr} dev {remote}{nodad}"));
        }
    }

    /// Runs `f` on a thread inside the peer namespace and returns its result; sockets opened
    /// there stay in the peer namespace wherever they are used afterwards.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let namespace = std::fs::File::open(&path).expect("peer namespace file");
            setns(&namespace).expect("setns into the peer namespace");
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl Drop for PeerNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

#[allow(unsafe_code)]
fn setns(namespace: &std::fs::File) -> io::Result<()> {
    // SAFETY: setns on an open namespace file only changes the calling thread's namespace
    // membership; it touches no memory of ours.
    if unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends every item with `send_batch`, which takes up to a batch at a time and must report
/// between one and a batch sent per call; then checks that an empty batch sends nothing.
pub fn send_in_batches<T>(items: &[T], mut send_batch: impl FnMut(&[T]) -> io::Result<usize>) {
    let mut sent = 0;
    while sent < items.len() {
        let n = send_batch(&items[sent..]).unwrap();
        assert!(n > 0 && n <= sys::raw::BATCH_SIZE, "{n}");
        sent += n;
    }
    assert_eq!(send_batch(&[]).unwrap(), 0);
}

/// Receives `count` datagrams with `recv_batch` into a batch of 256-byte buffers, handing
/// each to `check` with its index, its bytes (the length `len` reads from its metadata) and
/// its metadata, in order; then checks that nothing more is waiting.
pub async fn recv_in_batches<M: Clone>(
    count: usize,
    blank: M,
    mut recv_batch: impl FnMut(&mut [io::IoSliceMut<'_>], &mut [M]) -> io::Result<usize>,
    len: impl Fn(&M) -> usize,
    mut check: impl FnMut(usize, &[u8], &M),
) {
    let mut storage = vec![[0u8; 256]; sys::raw::BATCH_SIZE];
    let mut received = vec![blank; sys::raw::BATCH_SIZE];
    let mut next = 0;
    while next < count {
        let mut bufs: Vec<_> = storage.iter_mut().map(|b| io::IoSliceMut::new(b)).collect();
        let n = recv_soon(|| recv_batch(&mut bufs, &mut received))
            .await
            .unwrap();
        drop(bufs);
        for (buf, meta) in storage.iter().zip(&received).take(n) {
            check(next, &buf[..len(meta)], meta);
            next += 1;
        }
    }
    let mut bufs: Vec<_> = storage.iter_mut().map(|b| io::IoSliceMut::new(b)).collect();
    assert_eq!(
        recv_batch(&mut bufs, &mut received).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
}
