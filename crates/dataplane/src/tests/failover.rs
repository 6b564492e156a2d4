//! Failover measured on the simulated network: how long a dead path takes to
//! be noticed and left, as a function of the health settings; that a
//! flapping path cannot drag traffic along; that traffic comes back once a
//! path has proved itself; and that nothing piles up meanwhile.

use std::ops::Range;
use std::time::Duration;

use proptest::prelude::*;

use super::sim::{Foreign, Link, Node, Side, Sim};
use super::*;
use crate::health::HealthConfig;
use crate::probe::{Keepalive, Kind};
use crate::{Event, PathId, SwitchReason};

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);

/// Our side of a two-path tunnel (IPv6 "ipoe" cost 10, IPv4 "pppoe" cost
/// 100) that carries anything, probed with keepalives.
fn ours(health: HealthConfig) -> TunnelConfig {
    let mut c = two_paths(Mode::Any);
    c.routes = vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()];
    c.allowed_sources = c.routes.clone();
    c.health = health;
    for path in &mut c.paths {
        path.probe = Probe::Keepalive;
    }
    c
}

fn pair(health: HealthConfig, links: Vec<Link>) -> Sim {
    Sim::cores(ours(health), mirrored(ours(health)), links)
}

/// Both links healthy except the primary, which drops everything from `cut`.
fn cut_primary(latency: Duration, cut: Duration) -> Vec<Link> {
    vec![
        Link::down_during(latency, vec![cut..Duration::MAX]),
        Link::healthy(latency),
    ]
}

/// The first time after `after` that `side` saw `path` go down.
fn went_down(sim: &Sim, side: Side, path: PathId, after: Duration) -> Duration {
    sim.transitions(side, path)
        .into_iter()
        .find(|&(t, state)| t >= after && state == HealthState::Down)
        .unwrap_or_else(|| panic!("{side:?} never saw {path} go down"))
        .0
}

/// Where a probe lost from the start of an outage at `cut` is noticed: the
/// first probe lost is one sent at most one latency before the cut (its
/// reply leaves after it) and at most one interval after that; `down_after - 1`
/// more follow, and the last one's timeout runs out.
fn detection_window(
    health: &HealthConfig,
    cut: Duration,
    latency: Duration,
) -> (Duration, Duration) {
    let first_lost = cut - latency;
    let rest = health.interval * (health.down_after - 1) + health.timeout;
    (first_lost + rest, first_lost + health.interval + rest)
}

#[test]
fn detection_and_switch_time_follow_the_health_settings() {
    let settings = [
        HealthConfig::default(),
        HealthConfig {
            interval: 50 * MS,
            timeout: 150 * MS,
            ..HealthConfig::default()
        },
        HealthConfig {
            interval: 200 * MS,
            timeout: 200 * MS,
            down_after: 2,
            ..HealthConfig::default()
        },
        HealthConfig {
            interval: 100 * MS,
            timeout: 500 * MS,
            down_after: 5,
            ..HealthConfig::default()
        },
    ];
    let latency = 10 * MS;
    let cut = 3 * SECOND + 37 * MS;
    for health in settings {
        let mut sim = pair(health, cut_primary(latency, cut));
        sim.run_until(cut + 3 * SECOND);
        let (earliest, latest) = detection_window(&health, cut, latency);
        for side in [Side::A, Side::B] {
            let down = went_down(&sim, side, PathId(0), cut);
            assert!(
                earliest <= down && down < latest,
                "{side:?} {health:?}: down at {down:?}, expected in {earliest:?}..{latest:?}"
            );
            assert!(down - cut <= health.worst_detection());
            // The switch is part of the same step as the verdict.
            let switches = sim.switches(side);
            assert_eq!(switches, vec![(down, PathId(0), PathId(1))], "{side:?}");
            let (_, core_id) = sim.core(side);
            assert_eq!(sim.core(side).0.active_path(core_id), Some(PathId(1)));
        }
    }
}

#[test]
fn the_defaults_move_traffic_within_a_second() {
    let cut = 10 * SECOND;
    let mut sim = pair(HealthConfig::default(), cut_primary(5 * MS, cut));
    sim.run_until(cut + 2 * SECOND);
    let (at, _, _) = sim.switches(Side::A)[0];
    assert!(at - cut < SECOND, "{:?}", at - cut);
}

#[test]
fn silent_loss_in_one_direction_is_found_from_both_ends() {
    let health = HealthConfig::default();
    let latency = 20 * MS;
    let cut = 2 * SECOND;
    for a_to_b in [true, false] {
        let drop = move |t: Duration| t >= cut;
        let mut primary = Link::healthy(latency);
        if a_to_b {
            primary.drop_a_to_b = Box::new(drop);
        } else {
            primary.drop_b_to_a = Box::new(drop);
        }
        let mut sim = pair(health, vec![primary, Link::healthy(latency)]);
        sim.run_until(cut + 3 * SECOND);
        // A request lost on the way out is lost at once; a reply lost on the
        // way back was sent one latency after its request.
        let (sender, replier) = if a_to_b {
            (Side::A, Side::B)
        } else {
            (Side::B, Side::A)
        };
        let (earliest, latest) = detection_window(&health, cut, Duration::ZERO);
        let down = went_down(&sim, sender, PathId(0), cut);
        assert!(earliest <= down && down < latest, "{sender:?}: {down:?}");
        let (earliest, latest) = detection_window(&health, cut, latency);
        let down = went_down(&sim, replier, PathId(0), cut);
        assert!(earliest <= down && down < latest, "{replier:?}: {down:?}");
        for side in [Side::A, Side::B] {
            assert_eq!(sim.switches(side).len(), 1, "{side:?}");
        }
    }
}

/// A UDP datagram from A's LAN with a counter in it.
fn datagram(n: u32) -> Vec<u8> {
    let mut packet = udp4(NEAR4, FAR4, 8, true);
    packet[28..32].copy_from_slice(&n.to_be_bytes());
    let mut udp = UdpPacket::new_unchecked(&mut packet[20..]);
    udp.fill_checksum_v4(&NEAR4, &FAR4);
    packet
}

#[test]
fn traffic_follows_the_active_path_untouched() {
    let latency = 10 * MS;
    let cut = 2 * SECOND;
    let mut sim = pair(HealthConfig::default(), cut_primary(latency, cut));
    let mut sent = Vec::new();
    for n in 0..80u32 {
        sim.run_until(n * 50 * MS);
        let packet = datagram(n);
        assert_eq!(sim.send_inner(Side::A, &packet), Verdict::Forwarded);
        sent.push((sim.elapsed(), packet));
    }
    sim.run_until(5 * SECOND);
    let (switch, _, _) = sim.switches(Side::A)[0];
    let arrived: Vec<_> = sim
        .delivered
        .iter()
        .filter(|(_, side, _, _)| *side == Side::B)
        .collect();
    for (t, packet) in &sent {
        let arrival = arrived.iter().find(|(_, _, _, p)| p == packet);
        if *t < cut {
            assert_eq!(arrival.map(|a| a.2), Some(Some(0)), "sent at {t:?}");
        } else if *t >= switch {
            // Same inner bytes, other outer path.
            assert_eq!(arrival.map(|a| a.2), Some(Some(1)), "sent at {t:?}");
        } else {
            assert!(arrival.is_none(), "sent into the dead path at {t:?}");
        }
    }
    let lost = sent
        .iter()
        .filter(|(t, _)| *t >= cut && *t < switch)
        .count();
    assert!(lost <= 12, "{lost} datagrams lost while detecting");
}

/// Deterministic loss: a hash of the send time picks about one packet in
/// `one_in`.
fn lossy(one_in: u128, salt: u128) -> Box<dyn Fn(Duration) -> bool> {
    Box::new(move |t| {
        let x = (t.as_nanos() ^ salt).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        (x >> 64) % one_in == 0
    })
}

#[test]
fn a_slow_lossy_but_healthy_link_never_goes_down() {
    // 120 ms each way (240 ms round trip, under the 300 ms timeout) and
    // about 1 % loss each way.
    let links = (0..2)
        .map(|i| Link {
            latency: 120 * MS,
            drop_a_to_b: lossy(100, i),
            drop_b_to_a: lossy(100, i + 7),
        })
        .collect();
    let mut sim = pair(HealthConfig::default(), links);
    sim.run_until(300 * SECOND);
    for side in [Side::A, Side::B] {
        for path in [PathId(0), PathId(1)] {
            let states: Vec<_> = sim.transitions(side, path).iter().map(|t| t.1).collect();
            assert_eq!(states, vec![HealthState::Up], "{side:?} {path}");
            let (dp, id) = sim.core(side);
            let stats = dp.path_stats(id, path).unwrap();
            let srtt = stats.srtt.unwrap();
            assert!(srtt.abs_diff(240 * MS) <= MS, "{srtt:?}");
            assert!(stats.loss.percent() < 6.0, "{:?}", stats.loss);
            assert!(stats.probes_answered > 2900);
            assert!(stats.probes_sent - stats.probes_answered >= 10, "{stats:?}");
        }
        assert!(sim.switches(side).is_empty());
    }
}

#[test]
fn a_flapping_path_cannot_drag_traffic_along() {
    let health = HealthConfig {
        up_after: 5,
        ..HealthConfig::default()
    };
    // Down one second in three, for a minute.
    let flaps: Vec<_> = (0..20u32)
        .map(|k| (3 * k + 1) * SECOND..(3 * k + 2) * SECOND)
        .collect();
    let links = vec![Link::down_during(10 * MS, flaps), Link::healthy(10 * MS)];
    let mut sim = pair(health, links);
    sim.run_until(60 * SECOND);
    for side in [Side::A, Side::B] {
        let switches = sim.switches(side);
        let failbacks: Vec<_> = switches
            .windows(2)
            .filter(|w| w[1].2 == PathId(0))
            .map(|w| (w[0].0, w[1].0))
            .collect();
        assert!(!failbacks.is_empty(), "{side:?} never failed back");
        for (previous, failback) in &failbacks {
            assert!(
                *failback - *previous >= health.hold_down,
                "{side:?}: failback at {failback:?}, {previous:?} after the last switch"
            );
        }
        // Traffic moves back at most once per hold-down, and each failback
        // is followed by at most the failover of the next flap.
        assert!(failbacks.len() as u32 <= 60 / 5, "{side:?}: {switches:?}");
        assert!(switches.len() <= 2 * failbacks.len() + 1);
        // The path itself went down and up with every flap.
        let downs = sim
            .transitions(side, PathId(0))
            .iter()
            .filter(|t| t.1 == HealthState::Down)
            .count();
        assert_eq!(downs, 20, "{side:?}");
    }
}

#[test]
fn recovery_fails_back_after_up_after_and_the_hold_down() {
    let latency = 10 * MS;
    let (cut, back) = (2 * SECOND, 4 * SECOND);
    for hold_down in [5 * SECOND, SECOND] {
        let health = HealthConfig {
            hold_down,
            ..HealthConfig::default()
        };
        let links = vec![
            Link::down_during(latency, vec![cut..back]),
            Link::healthy(latency),
        ];
        let mut sim = pair(health, links);
        sim.run_until(12 * SECOND);
        let switches = sim.switches(Side::A);
        assert_eq!(switches.len(), 2, "{switches:?}");
        let (failover, failback) = (switches[0].0, switches[1].0);
        assert_eq!((switches[1].1, switches[1].2), (PathId(1), PathId(0)));
        let up = sim
            .transitions(Side::A, PathId(0))
            .into_iter()
            .find(|&(t, s)| t >= back && s == HealthState::Up)
            .unwrap()
            .0;
        // The first probe answered leaves at or after `back`; the 20th reply
        // comes 19 intervals and a round trip later.
        let first = back + 19 * health.interval + 2 * latency;
        assert!(first <= up && up < first + health.interval, "up at {up:?}");
        assert_eq!(
            failback,
            up.max(failover + hold_down),
            "hold-down {hold_down:?}"
        );
        let reason = sim
            .events_of(Side::A)
            .into_iter()
            .find_map(|(t, e)| match e {
                Event::ActivePathChanged { reason, .. } if t == failback => Some(reason),
                _ => None,
            });
        assert_eq!(reason, Some(SwitchReason::Failback));
    }
}

#[test]
fn with_no_path_up_traffic_stays_and_returns_to_the_first_that_comes_back() {
    let latency = 10 * MS;
    let links = vec![
        Link::down_during(latency, vec![2 * SECOND..4 * SECOND]),
        Link::down_during(latency, vec![3 * SECOND..Duration::MAX]),
    ];
    let mut sim = pair(HealthConfig::default(), links);
    sim.run_until(10 * SECOND);
    let switches = sim.switches(Side::A);
    // To the backup when the primary died; nowhere when the backup died too;
    // back to the primary as soon as it is up, since the active path is down.
    assert_eq!(switches.len(), 2, "{switches:?}");
    assert_eq!(switches[0].2, PathId(1));
    assert_eq!(switches[1].2, PathId(0));
    let up = sim
        .transitions(Side::A, PathId(0))
        .into_iter()
        .find(|&(t, s)| t >= 4 * SECOND && s == HealthState::Up)
        .unwrap()
        .0;
    assert_eq!(switches[1].0, up, "no hold-down when leaving a dead path");
    assert!(switches[1].0 - switches[0].0 < HealthConfig::default().hold_down);
    let reason = sim
        .events_of(Side::A)
        .into_iter()
        .rev()
        .find_map(|(_, e)| match e {
            Event::ActivePathChanged { reason, .. } => Some(reason),
            _ => None,
        });
    assert_eq!(reason, Some(SwitchReason::ActiveDown));
}

#[test]
fn keepalives_are_answered_on_the_path_they_probe() {
    let latency = 15 * MS;
    let mut sim = pair(
        HealthConfig::default(),
        vec![Link::healthy(latency), Link::healthy(latency)],
    );
    sim.run_until(3 * SECOND);
    let mut replies = 0;
    for (_, from, link, outer) in &sim.wire {
        let inner = if outer[0] >> 4 == 6 {
            receive(outer).1
        } else {
            Ipv4Packet::new_checked(&outer[..])
                .unwrap()
                .payload()
                .to_vec()
        };
        let keepalive = Keepalive::parse(&inner).expect("only keepalives on the wire");
        if keepalive.kind == Kind::Reply {
            replies += 1;
            // The requester's index of the path is the link it went out on.
            assert_eq!(usize::from(keepalive.path), *link, "reply from {from:?}");
        }
    }
    assert!(replies >= 4 * 29, "{replies}");
    for side in [Side::A, Side::B] {
        let (dp, id) = sim.core(side);
        for path in [PathId(0), PathId(1)] {
            let stats = dp.path_stats(id, path).unwrap();
            assert_eq!(stats.srtt, Some(2 * latency));
            assert_eq!(stats.loss.lost, 0);
            assert!(stats.keepalives_answered >= 29);
        }
    }
}

fn foreign_peer(answer_on: usize) -> Node {
    Node::Foreign(Foreign {
        paths: vec![
            (REMOTE.into(), LOCAL.into()),
            (REMOTE4.into(), LOCAL4.into()),
        ],
        addresses: vec![FAR4.into()],
        answer_on,
        answered: 0,
        ignored: 0,
    })
}

fn pinging_foreign(health: HealthConfig) -> TunnelConfig {
    let mut c = ours(health);
    for path in &mut c.paths {
        path.probe = Probe::Icmp {
            target: FAR4.into(),
            source: None,
        };
    }
    c
}

#[test]
fn icmp_probes_find_a_dead_path_to_a_foreign_peer() {
    let health = HealthConfig::default();
    let latency = 10 * MS;
    let cut = 3 * SECOND;
    // The router answers every ping over its PPPoE line.
    let mut sim = Sim::new(
        pinging_foreign(health),
        foreign_peer(1),
        cut_primary(latency, cut),
    );
    sim.run_until(cut + 3 * SECOND);
    // Before the cut both paths were up, the IPv6 one though its pings came
    // back over IPv4.
    for path in [PathId(0), PathId(1)] {
        assert_eq!(
            sim.transitions(Side::A, path).first().map(|t| t.1),
            Some(HealthState::Up),
            "{path}"
        );
    }
    let (earliest, latest) = detection_window(&health, cut, Duration::ZERO);
    let down = went_down(&sim, Side::A, PathId(0), cut);
    assert!(earliest <= down && down < latest, "{down:?}");
    assert_eq!(sim.switches(Side::A), vec![(down, PathId(0), PathId(1))]);
    let foreign = sim.foreign();
    assert!(foreign.answered > 80);
    assert_eq!(foreign.ignored, 0);
    let (dp, id) = sim.core(Side::A);
    let stats = dp.path_stats(id, PathId(1)).unwrap();
    assert_eq!(stats.srtt, Some(2 * latency));
    assert_eq!(
        dp.stats(id).unwrap().rx_packets,
        0,
        "replies never reach the TUN"
    );
}

#[test]
fn icmp_replies_count_whichever_path_brings_them() {
    // Nothing ever comes back over the PPPoE line, yet its pings are answered
    // over IPoE: the path works outbound, and that is what it is used for.
    let mut pppoe = Link::healthy(10 * MS);
    pppoe.drop_b_to_a = Box::new(|_| true);
    let mut sim = Sim::new(
        pinging_foreign(HealthConfig::default()),
        foreign_peer(0),
        vec![Link::healthy(10 * MS), pppoe],
    );
    sim.run_until(5 * SECOND);
    let states: Vec<_> = sim
        .transitions(Side::A, PathId(1))
        .iter()
        .map(|t| t.1)
        .collect();
    assert_eq!(states, vec![HealthState::Up]);
}

#[test]
fn keepalives_to_a_foreign_peer_are_dropped_harmlessly() {
    let mut sim = Sim::new(
        ours(HealthConfig::default()),
        foreign_peer(0),
        vec![Link::healthy(10 * MS), Link::healthy(10 * MS)],
    );
    sim.run_until(2 * SECOND);
    let foreign = sim.foreign();
    assert_eq!(foreign.answered, 0);
    assert!(foreign.ignored >= 38);
    for path in [PathId(0), PathId(1)] {
        let states: Vec<_> = sim.transitions(Side::A, path).iter().map(|t| t.1).collect();
        assert_eq!(states, vec![HealthState::Down]);
    }
    // No path up: traffic stays where it started.
    assert!(sim.switches(Side::A).is_empty());
    let (dp, id) = sim.core(Side::A);
    assert_eq!(dp.active_path(id), Some(PathId(0)));
}

#[test]
fn long_outages_leave_nothing_behind() {
    let health = HealthConfig::default();
    let links = vec![
        Link::down_during(10 * MS, vec![SECOND..Duration::MAX]),
        Link::down_during(10 * MS, vec![SECOND..Duration::MAX]),
    ];
    let mut sim = pair(health, links);
    sim.run_until(120 * SECOND);
    // Probes keep leaving every interval, and each is given up after its
    // timeout: at most timeout / interval + 1 per path wait at any time.
    let bound = 2 * (health.timeout.as_millis() / health.interval.as_millis() + 1) as usize;
    for side in [Side::A, Side::B] {
        let (dp, id) = sim.core(side);
        assert!(dp.probes_in_flight() <= bound, "{}", dp.probes_in_flight());
        let stats = dp.path_stats(id, PathId(0)).unwrap();
        assert!(stats.probes_sent >= 1190);
        assert_eq!(stats.loss.percent(), 100.0);
        // One event per change of mind, not per probe: each path up, then
        // down, and at most one switch if one path was given up first.
        let events = sim.events_of(side);
        let switches = sim.switches(side).len();
        assert!(switches <= 1, "{events:?}");
        assert_eq!(events.len(), 4 + switches, "{events:?}");
    }
    // The core asks to be woken once per interval, not in a spin.
    let (dp, _) = sim.core(Side::A);
    let next = dp.poll_timeout().unwrap();
    assert!(next > sim.now && next <= sim.now + health.interval);
}

fn outages() -> impl Strategy<Value = Vec<Range<Duration>>> {
    proptest::collection::vec((0u32..30_000, 1u32..5_000), 0..6).prop_map(|spans| {
        spans
            .into_iter()
            .map(|(start, len)| start * MS..(start + len) * MS)
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever the links do: traffic never stays on a dead path while
    /// another is up (once the core has had its say), and never fails back
    /// sooner than the hold-down after the previous switch.
    #[test]
    fn selection_rules_hold_under_any_outages(
        primary in outages(),
        backup in outages(),
        latency in 1u32..100,
    ) {
        let health = HealthConfig::default();
        let latency = latency * MS;
        let links = vec![
            Link::down_during(latency, primary),
            Link::down_during(latency, backup),
        ];
        let mut sim = pair(health, links);
        let mut t = Duration::ZERO;
        while t < 35 * SECOND {
            t += 50 * MS;
            sim.run_until(t);
            for side in [Side::A, Side::B] {
                let (dp, id) = sim.core(side);
                let active = dp.active_path(id).unwrap();
                let state = |p| dp.path_stats(id, p).unwrap().state;
                if state(active) == HealthState::Down {
                    let other = PathId(1 - active.0);
                    prop_assert_ne!(state(other), HealthState::Up, "{:?} at {:?}", side, t);
                }
            }
        }
        for side in [Side::A, Side::B] {
            let switches = sim.switches(side);
            for pair in switches.windows(2) {
                if pair[1].2 == PathId(0) {
                    // A move to the cheaper path is a failback unless the
                    // backup had died, which the events say.
                    let reason = sim.events_of(side).into_iter().find_map(|(at, e)| match e {
                        Event::ActivePathChanged { reason, .. } if at == pair[1].0 => Some(reason),
                        _ => None,
                    });
                    if reason == Some(SwitchReason::Failback) {
                        prop_assert!(pair[1].0 - pair[0].0 >= health.hold_down);
                    }
                }
            }
            prop_assert!(sim.core(side).0.probes_in_flight() <= 8);
        }
    }
}
