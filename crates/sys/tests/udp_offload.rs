//! UDP segmentation and receive offload against the kernel: a train sent with one
//! `UDP_SEGMENT` send arrives whole at a socket with `UDP_GRO`, and as separate datagrams at
//! one without. Each test runs in a namespace of its own (see `netns.rs`); documentation
//! prefixes only.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use sys::netlink::Netlink;

mod common;

use common::{PeerNetns, in_netns, recv_soon};

/// `count` datagrams of `size` bytes, then one of `tail` bytes, each filled with its index
/// so that order and boundaries can be checked.
fn train(count: usize, size: usize, tail: usize) -> Vec<u8> {
    let mut payload = Vec::new();
    for i in 0..count {
        payload.extend(std::iter::repeat_n(i as u8, size));
    }
    payload.extend(std::iter::repeat_n(count as u8, tail));
    payload
}

/// Receives until `want` datagrams came in (or the socket stays empty for two seconds);
/// returns them and how many receives it took.
async fn receive_datagrams(socket: &UdpSocket, want: usize) -> (Vec<Vec<u8>>, usize, SocketAddr) {
    let mut buf = vec![0u8; 96 * 1024];
    let mut datagrams = Vec::new();
    let mut receives = 0;
    let mut from = None;
    while datagrams.len() < want {
        let received = recv_soon(|| sys::udp::recv(socket, &mut buf))
            .await
            .expect("the train arrives");
        assert!(!received.truncated, "96 KiB holds any train");
        receives += 1;
        from = Some(received.src);
        datagrams.extend(received.datagrams(&buf).map(<[u8]>::to_vec));
    }
    (datagrams, receives, from.expect("received something"))
}

fn check_boundaries(datagrams: &[Vec<u8>], count: usize, size: usize, tail: usize) {
    assert_eq!(datagrams.len(), count + 1);
    for (i, d) in datagrams.iter().enumerate() {
        let expected = if i == count { tail } else { size };
        assert_eq!(d.len(), expected, "datagram {i}");
        assert!(d.iter().all(|&b| b == i as u8), "datagram {i} out of order");
    }
}

#[test]
fn a_train_over_loopback_arrives_whole_with_gro() {
    in_netns(|_netlink: Netlink| async move {
        let receiver = UdpSocket::bind("[::1]:0").unwrap();
        receiver.set_nonblocking(true).unwrap();
        sys::udp::enable_gro(&receiver).expect("UDP_GRO (Linux 5.0)");
        let sender = UdpSocket::bind("[::1]:0").unwrap();
        let (count, size, tail) = (20, 1200, 333);
        let payload = train(count, size, tail);
        let sent = sys::udp::send_segments(&sender, receiver.local_addr().unwrap(), &payload, size)
            .expect("UDP_SEGMENT (Linux 4.18)");
        assert_eq!(sent, payload.len());
        let (datagrams, receives, from) = receive_datagrams(&receiver, count + 1).await;
        check_boundaries(&datagrams, count, size, tail);
        assert_eq!(from, sender.local_addr().unwrap());
        // Loopback passes the train up unsegmented: one receive for 21 datagrams.
        assert_eq!(receives, 1);
    });
}

#[test]
fn a_socket_without_gro_gets_the_datagrams_one_by_one() {
    in_netns(|_netlink: Netlink| async move {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver.set_nonblocking(true).unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (count, size, tail) = (5, 1000, 1000);
        let payload = train(count, size, tail);
        sys::udp::send_segments(&sender, receiver.local_addr().unwrap(), &payload, size).unwrap();
        let (datagrams, receives, _) = receive_datagrams(&receiver, count + 1).await;
        check_boundaries(&datagrams, count, size, tail);
        assert_eq!(receives, count + 1);
    });
}

#[test]
fn a_train_crosses_a_veth_into_another_namespace() {
    in_netns(|netlink: Netlink| async move {
        let peer = PeerNetns::new();
        peer.veth("v6gu0", "v6gu1", &["2001:db8:77::2/64"]);
        let index = netlink.link_index("v6gu0").await.unwrap().unwrap();
        common::ip("addr add 2001:db8:77::1/64 dev v6gu0 nodad");
        netlink.link_set_up(index).await.unwrap();
        let receiver = peer.enter(|| {
            let socket = UdpSocket::bind("[2001:db8:77::2]:4500").unwrap();
            socket.set_nonblocking(true).unwrap();
            sys::udp::enable_gro(&socket).unwrap();
            socket
        });
        let sender = UdpSocket::bind("[2001:db8:77::1]:4500").unwrap();
        let (count, size, tail) = (40, 1400, 52);
        let payload = train(count, size, tail);
        // The first send may meet an unresolved neighbour; the kernel queues it.
        sys::udp::send_segments(&sender, receiver.local_addr().unwrap(), &payload, size)
            .expect("a veth takes UDP GSO");
        let (datagrams, _, from) = tokio::time::timeout(
            Duration::from_secs(5),
            receive_datagrams(&receiver, count + 1),
        )
        .await
        .expect("the train crosses the veth");
        check_boundaries(&datagrams, count, size, tail);
        assert_eq!(from, sender.local_addr().unwrap());
    });
}

#[test]
fn segments_larger_than_the_mtu_are_refused_not_unsupported() {
    in_netns(|_netlink: Netlink| async move {
        common::ip("link set lo mtu 1500");
        let receiver = UdpSocket::bind("[::1]:0").unwrap();
        let sender = UdpSocket::bind("[::1]:0").unwrap();
        let payload = vec![7u8; 4000];
        let error =
            sys::udp::send_segments(&sender, receiver.local_addr().unwrap(), &payload, 2000)
                .expect_err("2000-byte segments do not fit a 1500-byte MTU");
        assert!(
            matches!(error.raw_os_error(), Some(libc::EMSGSIZE | libc::EINVAL)),
            "{error}"
        );
        assert!(!sys::udp::is_unsupported(&error));
    });
}

#[test]
fn this_kernel_says_it_segments() {
    in_netns(|_netlink: Netlink| async move {
        let socket = UdpSocket::bind("[::1]:0").unwrap();
        // The probe reads the option back: a kernel without it (before 4.18) would answer
        // ENOPROTOOPT and ignore the control message, sending one oversized datagram.
        assert!(sys::udp::segmentation_supported(&socket));
    });
}
