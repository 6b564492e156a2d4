//! A peer by name against a real authoritative server (Knot DNS): resolved at start, and once
//! the peer is declared gone, asked again every 5 s until its AAAA record (TTL 5 s) changes.

mod common;
mod ddns_support;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::lab;
use control::ddns::Family;
use ddns_support::Knot;
use v6gate::peer_name::{Moved, PeerName, PeerNameStatus};
use v6gate_lab::{Lab, LabOptions, Node, addr, enter_netns};

const KEY: &str = "hmac-sha256:ddns-key:c2VjcmV0LWtleS1mb3ItdGVzdHMtMDEyMzQ1Njc4OWFiY2RlZg==";

/// A `PeerName` task in a lab namespace; its events and commands cross threads by channels.
struct Resolver {
    moved: Receiver<Moved>,
    alive: Sender<bool>,
    status: Arc<Mutex<PeerNameStatus>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Resolver {
    fn start(lab: &Lab, node: Node, name: &str, server: SocketAddr) -> Self {
        let namespace = lab.namespace(node).to_owned();
        let name = name.to_owned();
        let (moved_tx, moved) = channel();
        let (alive, alive_rx) = channel::<bool>();
        let status = Arc::new(Mutex::new(PeerNameStatus::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (status, stop) = (status.clone(), stop.clone());
            std::thread::spawn(move || {
                enter_netns(&namespace).unwrap();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
                    let peer = PeerName::start(&name, Family::Ipv6, Some(&[server]), tx).unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        while let Ok(m) = rx.try_recv() {
                            let _ = moved_tx.send(m);
                        }
                        while let Ok(up) = alive_rx.try_recv() {
                            peer.peer_alive(up);
                        }
                        *status.lock().unwrap() = peer.status();
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                });
            })
        };
        Self {
            moved,
            alive,
            status,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_gone_peer_is_asked_for_every_5_s_until_its_address_changes() {
    let lab = lab(LabOptions::default());
    let knot = Knot::start(&lab, Node::SiteB, KEY);
    let server = SocketAddr::new(IpAddr::from(addr::SITE_B_WAN6), 53);
    let first: IpAddr = "2001:db8:b::1".parse().unwrap();
    let second: IpAddr = "2001:db8:b::2".parse().unwrap();
    knot.update(&lab, KEY, "peer.example.jp", "AAAA", first);

    let resolver = Resolver::start(&lab, Node::SiteA, "peer.example.jp", server);
    let m = resolver
        .moved
        .recv_timeout(Duration::from_secs(5))
        .expect("first answer");
    assert_eq!(m.address, first);
    // The task copies its status after it forwards the event; give that copy a moment.
    let settled = common::wait_until(Duration::from_secs(2), || {
        resolver.status.lock().unwrap().address == Some(first)
    });
    let status = resolver.status.lock().unwrap().clone();
    assert!(settled, "{status:?}");
    assert!(status.resolved_at.is_some());

    // While the peer answers, a TTL of 5 s is stretched to 30 s: a change goes unnoticed.
    knot.update(&lab, KEY, "peer.example.jp", "AAAA", second);
    assert!(resolver.moved.recv_timeout(Duration::from_secs(3)).is_err());
    knot.update(&lab, KEY, "peer.example.jp", "AAAA", first);

    // Declared gone: asked at once (still the same answer) and then every 5 s, so a change
    // made after that is seen by the next question.
    resolver.alive.send(false).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        resolver.moved.try_recv().is_err(),
        "the answer did not change"
    );
    let changed = Instant::now();
    knot.update(&lab, KEY, "peer.example.jp", "AAAA", second);
    let m = resolver
        .moved
        .recv_timeout(Duration::from_secs(7))
        .unwrap_or_else(|_| {
            panic!(
                "no new address: {:?}\n{}",
                resolver.status.lock().unwrap(),
                knot.log()
            )
        });
    assert_eq!(m.address, second);
    // The task copies its status after it forwards the event; give that copy a moment.
    let settled = common::wait_until(Duration::from_secs(2), || {
        resolver.status.lock().unwrap().address == Some(second)
    });
    assert!(settled, "{:?}", resolver.status.lock().unwrap());
    eprintln!(
        "new peer address seen {} ms after the record changed",
        changed.elapsed().as_millis()
    );
}
