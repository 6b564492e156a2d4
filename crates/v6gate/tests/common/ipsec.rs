//! Shared by the ipsec end-to-end tests (IKEv2 and IKEv1): the tunnel's status, waiting for
//! its CHILD SA, strongSwan in site B, and a responder restarted under 10 ms pings.

use std::net::IpAddr;
use std::path::Path;
use std::thread;
use std::time::Duration;

use v6gate_lab::strongswan::{Charon, StrongswanConfig};
use v6gate_lab::{Gateway, Lab, Node};

use super::{BIN, wait_until};

/// The ipsec tunnel of every ipsec test.
pub const TUNNEL: &str = "ab";

pub fn ipsec_status(gateway: &Gateway) -> serde_json::Value {
    let tunnel = gateway
        .tunnel_status(TUNNEL)
        .unwrap_or_else(|e| panic!("status in {}: {e}", gateway.node()));
    assert_eq!(tunnel["mode"], "ipsec", "{tunnel}");
    tunnel
}

/// Waits until the gateway reports an established IKE SA with a CHILD SA.
pub fn wait_established(gateway: &Gateway, timeout: Duration) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let up = wait_until(timeout, || {
        last = ipsec_status(gateway);
        last["state"] == "up"
    });
    assert!(
        up,
        "no CHILD SA in {} after {timeout:?}: {last}\n--- log ---\n{}",
        gateway.node(),
        gateway.log()
    );
    last
}

pub fn start_charon(lab: &Lab, config: &StrongswanConfig) -> Charon {
    Charon::start(lab, Node::SiteB, config)
        .unwrap_or_else(|e| panic!("cannot start charon in siteB: {e}"))
}

/// SIGKILLs `gateway` (site A, the responder) under 10 ms pings from host B to `host_a`
/// and starts it again from `config` with control socket `socket`; checks that the new
/// daemon started IKE itself, that traffic was back within 2 s of the SIGKILL (the
/// daemon's own start included), and that charon kept one IKE SA. Returns the new gateway.
pub fn restart_responder_under_pings(
    lab: &Lab,
    gateway: Gateway,
    charon: &Charon,
    host_a: IpAddr,
    socket: &Path,
    what: &str,
) -> Gateway {
    let config = gateway.config_path().to_owned();
    let (gateway, outage) = ping_across(
        lab,
        Node::HostB,
        host_a,
        600,
        Duration::from_secs(1),
        || {
            gateway.kill().unwrap();
            lab.start_gateway_with(BIN.as_ref(), Node::SiteA, &config, socket)
                .unwrap_or_else(|e| panic!("restart after SIGKILL: {e}"))
        },
    );
    eprintln!("{what} responder SIGKILL + start under 10 ms pings: {outage:?}");
    assert!(
        gateway.log().contains("starting IKE with INITIAL_CONTACT"),
        "the new gateway did not start IKE itself:\n{}",
        gateway.log()
    );
    assert!(
        outage.back_after < Duration::from_secs(2) && outage.lost < outage.sent,
        "{outage:?}\n--- v6gate ---\n{}\n--- charon ---\n{}",
        gateway.log(),
        charon.log()
    );
    let sas = charon.ike_sas().unwrap();
    assert_eq!(
        sas.len(),
        1,
        "INITIAL_CONTACT retired the stale SA: {sas:?}"
    );
    gateway
}

/// What 10 ms pings saw of an interruption.
#[derive(Debug)]
pub struct Outage {
    pub sent: u64,
    pub lost: u64,
    /// From the event's start to the first reply after it.
    pub back_after: Duration,
    /// From the last reply before the event to the first one after it.
    pub gap: Duration,
    /// The longest time between two replies over the whole run (a later blip shows here).
    pub longest_gap: Duration,
}

/// Pings `to` from `from` every 10 ms, `count` times, and runs `event` once `after` has
/// passed; returns what `event` returned and how long the replies stopped.
pub fn ping_across<T: Send>(
    lab: &Lab,
    from: Node,
    to: IpAddr,
    count: u32,
    after: Duration,
    event: impl FnOnce() -> T + Send,
) -> (T, Outage) {
    let epoch = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
    };
    let (value, start, output) = thread::scope(|s| {
        let pings = s.spawn(|| lab.ping_output(from, to, count, &["-i", "0.01", "-D"]));
        thread::sleep(after);
        let start = epoch();
        let value = event();
        (value, start, pings.join().expect("ping thread"))
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (sent, received) = super::ping_counts(&stdout);
    // `-D` starts each reply with `[seconds.micros]`.
    let replies: Vec<f64> = stdout
        .lines()
        .filter(|l| l.contains("icmp_seq="))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect();
    let last_before = replies
        .iter()
        .copied()
        .filter(|t| *t <= start)
        .reduce(f64::max)
        .unwrap_or(start);
    // Replies already on their way when the event began do not count as back.
    let first_after = replies
        .iter()
        .copied()
        .find(|t| *t > start + 0.05)
        .unwrap_or(f64::INFINITY);
    let longest = replies.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    let secs = |x: f64| Duration::try_from_secs_f64(x.max(0.0)).unwrap_or(Duration::MAX);
    let outage = Outage {
        sent,
        lost: sent - received,
        back_after: secs(first_after - start),
        gap: secs(first_after - last_before),
        longest_gap: secs(longest),
    };
    (value, outage)
}
