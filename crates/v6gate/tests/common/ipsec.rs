//! Shared by the ipsec end-to-end tests (IKEv2 and IKEv1): the tunnel's status, waiting for
//! its CHILD SA, strongSwan in site B, and a responder restarted under 10 ms pings.

use std::net::IpAddr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use v6gate_lab::strongswan::{Charon, StrongswanConfig};
use v6gate_lab::{Gateway, Lab, Node};

use super::{BIN, child_spis, ping_counts, wait_until};

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

/// What pings every 10 ms from host A saw of the CHILD SAs rekeyed meanwhile.
pub struct UnderRekey {
    /// Inbound SPIs before and after.
    pub before: Vec<String>,
    pub after: Vec<String>,
    pub sent: u64,
    pub lost: u64,
    pub elapsed: Duration,
}

/// Sends `count` pings every 10 ms from host A to `host_b` (all of them, or the test fails)
/// and reports what `what`'s CHILD SAs went through meanwhile.
pub fn pings_under_rekey(
    lab: &Lab,
    gateway: &Gateway,
    host_b: IpAddr,
    count: u32,
    what: &str,
) -> UnderRekey {
    let before = child_spis(&ipsec_status(gateway));
    let started = Instant::now();
    let output = lab.ping_output(Node::HostA, host_b, count, &["-i", "0.01", "-W", "2"]);
    let elapsed = started.elapsed();
    let (sent, received) = ping_counts(&String::from_utf8_lossy(&output.stdout));
    let after = child_spis(&ipsec_status(gateway));
    let lost = sent - received;
    eprintln!(
        "{what} rekey under traffic: {sent} pings in {elapsed:?}, {lost} lost, SPIs {before:?} -> {after:?}"
    );
    assert_eq!(sent, u64::from(count), "{}", super::text(&output));
    UnderRekey {
        before,
        after,
        sent,
        lost,
        elapsed,
    }
}

/// Kills charon under an established tunnel and starts it again from `config` once the
/// gateway's DPD noticed; insists that traffic from host A to `host_b` comes back. Returns
/// the new charon and how long that took from its start.
pub fn dpd_restart(
    lab: &Lab,
    gateway: &Gateway,
    charon: Charon,
    config: &StrongswanConfig,
    host_b: IpAddr,
    what: &str,
) -> (Charon, Duration) {
    charon.kill().unwrap();
    let died = Instant::now();
    let mut last = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(20), || {
            last = ipsec_status(gateway);
            last["ipsec"]["ike_state"] != "established"
        }),
        "DPD did not notice the dead peer: {last}\n{}",
        gateway.log()
    );
    let noticed = died.elapsed();
    let charon = start_charon(lab, config);
    let back = Instant::now();
    wait_established(gateway, Duration::from_secs(30));
    assert!(
        super::wait_ping(lab, Node::HostA, host_b, Duration::from_secs(10)),
        "no traffic after the peer came back\n{}",
        gateway.log()
    );
    let back = back.elapsed();
    eprintln!(
        "{what} DPD: dead peer noticed after {noticed:?}, traffic back {back:?} after the restart"
    );
    (charon, back)
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
    let (sent, received) = ping_counts(&stdout);
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
