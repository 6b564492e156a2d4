//! The decisions that turn the daemon's facts into states, in one place, so `status`, metrics
//! and `doctor` cannot disagree about what "up" means.

use super::{IpsecStatus, PathState, PathStatus, TunnelState};

/// What the daemon knows about one tunnel when it is asked for its state.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// Some path's endpoint has an underlay route (not the blackhole).
    pub pinned: bool,
    /// Taken out of service by `v6gate down`.
    pub held_down: bool,
    pub paths: &'a [PathStatus],
    /// One per path of an ipsec tunnel, empty otherwise.
    pub ipsec: &'a [IpsecStatus],
}

/// Up when the tunnel can carry traffic now: not held down, some endpoint routed, and then
/// for ipsec an IKE SA with a CHILD SA on some path, otherwise some path not known dead (a
/// path without a probe has no verdict and counts as alive).
pub fn tunnel_state(f: Facts<'_>) -> TunnelState {
    let alive = if f.ipsec.is_empty() {
        f.paths.iter().any(|p| p.state != PathState::Down)
    } else {
        f.ipsec.iter().any(IpsecStatus::carries)
    };
    if !f.held_down && f.pinned && alive {
        TunnelState::Up
    } else {
        TunnelState::Down
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{ChildStatus, IkeState};

    fn path(state: PathState) -> PathStatus {
        PathStatus {
            state,
            ..PathStatus::default()
        }
    }

    fn facts<'a>(paths: &'a [PathStatus], ipsec: &'a [IpsecStatus]) -> Facts<'a> {
        Facts {
            pinned: true,
            held_down: false,
            paths,
            ipsec,
        }
    }

    #[test]
    fn a_plain_tunnel_is_up_until_every_path_is_known_dead() {
        let unprobed = [path(PathState::Unknown)];
        assert_eq!(tunnel_state(facts(&unprobed, &[])), TunnelState::Up);
        let one_dead = [path(PathState::Down), path(PathState::Up)];
        assert_eq!(tunnel_state(facts(&one_dead, &[])), TunnelState::Up);
        let all_dead = [path(PathState::Down), path(PathState::Down)];
        assert_eq!(tunnel_state(facts(&all_dead, &[])), TunnelState::Down);
    }

    #[test]
    fn no_route_or_held_down_is_down_whatever_the_probes_say() {
        let up = [path(PathState::Up)];
        let mut f = facts(&up, &[]);
        f.pinned = false;
        assert_eq!(tunnel_state(f), TunnelState::Down);
        let mut f = facts(&up, &[]);
        f.held_down = true;
        assert_eq!(tunnel_state(f), TunnelState::Down);
    }

    #[test]
    fn an_ipsec_tunnel_needs_a_child_sa() {
        let up = [path(PathState::Up)];
        let bare = IpsecStatus {
            ike_state: IkeState::Established,
            ..IpsecStatus::default()
        };
        assert_eq!(
            tunnel_state(facts(&up, std::slice::from_ref(&bare))),
            TunnelState::Down
        );
        let with_child = IpsecStatus {
            children: vec![ChildStatus {
                spi_in: "c0000001".into(),
                spi_out: "c0000002".into(),
                suite: "aes128gcm16".into(),
                age_secs: 1,
                rekey_in_secs: 100,
            }],
            ..bare.clone()
        };
        assert_eq!(
            tunnel_state(facts(&up, &[bare, with_child])),
            TunnelState::Up
        );
    }
}
