//! The one logger of what the cores report about paths, for tunnels of every kind, and what
//! of it the owner hears.

use dataplane::esp::EspPathEvent;
use dataplane::health::HealthReason;
use dataplane::{Event, HealthState, PathMtuReason, SwitchReason};
use tracing::{debug, info};

use super::PathChange;

/// What a core reported about one tunnel's paths, paths by index.
pub(super) enum PathNews {
    State {
        path: usize,
        state: HealthState,
        reason: HealthReason,
    },
    Active {
        from: usize,
        to: usize,
        reason: SwitchReason,
    },
    Mtu {
        path: usize,
        mtu: u16,
        reason: PathMtuReason,
    },
}

impl PathNews {
    /// What the owner hears of `self`, news of `tunnel`: a new active path or path MTU (a
    /// path's health alone changes nothing outside the core).
    pub(super) fn change(&self, tunnel: dataplane::TunnelId) -> Option<PathChange> {
        match *self {
            Self::Active { to, .. } => Some(PathChange::Active { tunnel, to }),
            Self::Mtu { path, mtu, .. } => Some(PathChange::Mtu { tunnel, path, mtu }),
            Self::State { .. } => None,
        }
    }
}

impl From<EspPathEvent> for PathNews {
    fn from(event: EspPathEvent) -> Self {
        match event {
            EspPathEvent::StateChanged {
                path,
                state,
                reason,
            } => Self::State {
                path,
                state,
                reason,
            },
            EspPathEvent::ActivePathChanged { from, to, reason } => {
                Self::Active { from, to, reason }
            }
            EspPathEvent::PathMtuChanged { path, mtu, reason } => Self::Mtu { path, mtu, reason },
        }
    }
}

/// The RFC 2473 core's event as news of its tunnel; `None` (logged at debug) for events that
/// are not about paths.
pub(super) fn rfc2473_news(event: Event) -> Option<(dataplane::TunnelId, PathNews)> {
    match event {
        Event::PathMtuChanged {
            tunnel,
            path,
            mtu,
            reason,
        } => Some((
            tunnel,
            PathNews::Mtu {
                path: path.index(),
                mtu,
                reason,
            },
        )),
        Event::PathStateChanged {
            tunnel,
            path,
            state,
            reason,
        } => Some((
            tunnel,
            PathNews::State {
                path: path.index(),
                state,
                reason,
            },
        )),
        Event::ActivePathChanged {
            tunnel,
            from,
            to,
            reason,
        } => Some((
            tunnel,
            PathNews::Active {
                from: from.index(),
                to: to.index(),
                reason,
            },
        )),
        #[allow(unreachable_patterns)]
        other => {
            debug!("dataplane event: {other:?}");
            None
        }
    }
}

/// Logs `news` of `tunnel`, naming paths with `path_name`.
pub(super) fn path_news(tunnel: &str, path_name: impl Fn(usize) -> String, news: PathNews) {
    match news {
        PathNews::State {
            path,
            state,
            reason,
        } => info!(tunnel = %tunnel, path = %path_name(path), "path {state} ({reason})"),
        PathNews::Active { from, to, reason } => info!(
            tunnel = %tunnel,
            "traffic moved from path {} to path {} ({reason})",
            path_name(from),
            path_name(to)
        ),
        PathNews::Mtu { path, mtu, reason } => info!(
            tunnel = %tunnel,
            path = %path_name(path),
            "path MTU now {mtu} ({reason:?})"
        ),
    }
}

#[cfg(test)]
mod tests {
    use dataplane::{PathId, TunnelId};

    use super::*;

    fn change(event: Event) -> Option<PathChange> {
        let (tunnel, news) = rfc2473_news(event)?;
        news.change(tunnel)
    }

    #[test]
    fn a_switch_and_a_path_mtu_reach_the_owner_a_health_change_does_not() {
        let tunnel = TunnelId(7);
        assert_eq!(
            change(Event::ActivePathChanged {
                tunnel,
                from: PathId(0),
                to: PathId(1),
                reason: SwitchReason::ActiveDown,
            }),
            Some(PathChange::Active { tunnel, to: 1 })
        );
        assert_eq!(
            change(Event::PathMtuChanged {
                tunnel,
                path: PathId(2),
                mtu: 1360,
                reason: PathMtuReason::Expired,
            }),
            Some(PathChange::Mtu {
                tunnel,
                path: 2,
                mtu: 1360
            })
        );
        assert_eq!(
            change(Event::PathStateChanged {
                tunnel,
                path: PathId(0),
                state: HealthState::Down,
                reason: HealthReason::ProbesLost(3),
            }),
            None
        );
    }
}
