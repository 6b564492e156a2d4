//! The notification socket behind [`super::watch_changes`].

use std::io;
use std::os::fd::AsRawFd;

use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::constants::{
    RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_ROUTE, RTMGRP_LINK,
};
use rtnetlink::packet_core::{NetlinkBuffer, NetlinkMessage, NetlinkPayload};
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use super::{Change, Family, route_table};

/// Kernel receive buffer for notifications: a full table flap must fit.
const RECEIVE_BUFFER: i32 = 4 << 20;
/// Legacy bind masks for RTNLGRP_IPV4_RULE (8) and RTNLGRP_IPV6_RULE (19): group N is bit
/// N - 1.
const RULE_GROUPS: u32 = (1 << (8 - 1)) | (1 << (19 - 1));
/// One read; the kernel never sends a notification datagram larger than this.
const DATAGRAM: usize = 64 << 10;

pub(super) fn open() -> io::Result<AsyncFd<Socket>> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    let groups = RTMGRP_LINK
        | RTMGRP_IPV4_IFADDR
        | RTMGRP_IPV4_ROUTE
        | RTMGRP_IPV6_IFADDR
        | RTMGRP_IPV6_ROUTE
        | RULE_GROUPS;
    socket.bind(&SocketAddr::new(0, groups))?;
    let fd = socket.as_raw_fd();
    if crate::fd::set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RECEIVE_BUFFER)
        .is_err()
    {
        crate::fd::set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, RECEIVE_BUFFER)?;
    }
    socket.set_non_blocking(true)?;
    // SAFETY: `Socket` owns its descriptor and closes it only when dropped, which happens
    // after the `AsyncFd` deregisters it; nothing replaces the descriptor meanwhile.
    Ok(unsafe { AsyncFd::register(socket) }?)
}

/// Legacy bind mask of NFNLGRP_NFTABLES (7).
const NFTABLES_GROUP: u32 = 1 << (7 - 1);

pub(super) fn open_nftables() -> io::Result<AsyncFd<Socket>> {
    let mut socket = Socket::new(rtnetlink::sys::protocols::NETLINK_NETFILTER)?;
    socket.bind(&SocketAddr::new(0, NFTABLES_GROUP))?;
    socket.set_non_blocking(true)?;
    // SAFETY: as in `open`: the socket outlives its registration.
    Ok(unsafe { AsyncFd::register(socket) }?)
}

pub(super) async fn run_nftables(socket: AsyncFd<Socket>, sender: mpsc::Sender<()>) {
    let mut buffer = Vec::with_capacity(DATAGRAM);
    loop {
        let received = tokio::select! {
            () = sender.closed() => return,
            ready = socket.readable() => {
                let Ok(mut guard) = ready else { return };
                buffer.clear();
                match guard.try_io(|socket| socket.get_ref().recv(&mut buffer, 0)) {
                    Ok(result) => result,
                    Err(_would_block) => continue,
                }
            }
        };
        match received {
            // A lost notification (ENOBUFS) is a change too: look again.
            Ok(_) => {}
            Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                tracing::warn!("nftables change notifications stopped: {error}");
                return;
            }
        }
        // Full means a wake-up is already pending, which covers this change.
        if let Err(mpsc::error::TrySendError::Closed(())) = sender.try_send(()) {
            return;
        }
    }
}

pub(super) async fn run(socket: AsyncFd<Socket>, sender: mpsc::Sender<Change>) {
    let mut buffer = Vec::with_capacity(DATAGRAM);
    loop {
        let received = tokio::select! {
            () = sender.closed() => return,
            ready = socket.readable() => {
                let Ok(mut guard) = ready else { return };
                buffer.clear();
                match guard.try_io(|socket| socket.get_ref().recv(&mut buffer, 0)) {
                    Ok(result) => result,
                    Err(_would_block) => continue,
                }
            }
        };
        let changes = match received {
            Ok(_) => decode(&buffer),
            Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                vec![Change::Resync]
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                tracing::warn!("netlink change notifications stopped: {error}");
                let _ = sender.send(Change::Resync).await;
                return;
            }
        };
        for change in changes {
            if sender.send(change).await.is_err() {
                return;
            }
        }
    }
}

/// Decodes one datagram of notifications. Anything unreadable turns into one
/// [`Change::Resync`], since a missed change is worse than a spurious full re-read.
pub(super) fn decode(mut datagram: &[u8]) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut resync = false;
    while !datagram.is_empty() {
        let Ok(buffer) = NetlinkBuffer::new_checked(datagram) else {
            resync = true;
            break;
        };
        let len = usize::try_from(buffer.length()).unwrap_or(usize::MAX);
        let Some(message) = datagram.get(..len) else {
            resync = true;
            break;
        };
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(message) {
            Ok(message) => match message.payload {
                NetlinkPayload::InnerMessage(inner) => changes.extend(change_of(inner)),
                NetlinkPayload::Overrun(_) => resync = true,
                _ => {}
            },
            Err(_) => resync = true,
        }
        // Messages are padded to 4 bytes.
        let next = len.div_ceil(4) * 4;
        datagram = datagram.get(next.max(4)..).unwrap_or(&[]);
    }
    if resync {
        changes.push(Change::Resync);
    }
    changes
}

fn change_of(message: RouteNetlinkMessage) -> Option<Change> {
    let (removed, message) = match message {
        RouteNetlinkMessage::DelRoute(route) => (true, RouteNetlinkMessage::NewRoute(route)),
        RouteNetlinkMessage::DelLink(link) => (true, RouteNetlinkMessage::NewLink(link)),
        RouteNetlinkMessage::DelAddress(addr) => (true, RouteNetlinkMessage::NewAddress(addr)),
        RouteNetlinkMessage::DelRule(rule) => (true, RouteNetlinkMessage::NewRule(rule)),
        other => (false, other),
    };
    match message {
        RouteNetlinkMessage::NewRoute(route) => Some(Change::Route {
            family: Family::from_address_family(route.header.address_family)?,
            table: route_table(&route),
            removed,
        }),
        RouteNetlinkMessage::NewLink(link) => Some(Change::Link {
            index: link.header.index,
            removed,
        }),
        RouteNetlinkMessage::NewRule(rule) => Some(Change::Rule {
            family: Family::from_address_family(rule.header.family)?,
            removed,
        }),
        RouteNetlinkMessage::NewAddress(address) => Some(Change::Address {
            family: Family::from_address_family(address.header.family)?,
            index: address.header.index,
            removed,
        }),
        _ => None,
    }
}
