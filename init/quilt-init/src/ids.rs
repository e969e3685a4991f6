//! Who each container is on the host. Every container gets a uid and gid
//! of its own from ranges PID 1 owns, so no container can ptrace, take
//! fds from (`pidfd_getfd`) or read the memory (`/proc/<pid>/mem`) of
//! another, even in a pod that shares a PID namespace: the kernel's
//! ptrace check wants the same uid, and none is shared.
//!
//! - a service's container: [`SERVICES`] + its index in the boot config
//!   (the same ids across restarts);
//! - a run (a `quilt run`, a child container): [`RUNS`] + its slot in the
//!   run table (a slot is reused only once its container, and so every
//!   process with those ids, is gone);
//! - a pod member's gid is its pod's ([`PODS`] + the pod's index), the
//!   group that owns the pod's volumes, so members share files but not a
//!   uid;
//! - a container with its own user namespace keeps ids 0..65535 inside
//!   and maps them to a host range of its own ([`USERNS`] + 65536 × its
//!   number), owned by no host file.

use quilt_container::{IdMap, Identity};

/// First uid/gid of the services' range.
pub const SERVICES: u32 = 200_000;
/// First uid/gid of the runs' range.
pub const RUNS: u32 = 201_000;
/// First gid of the pods' range.
pub const PODS: u32 = 202_000;
/// First host id of the user-namespace ranges.
pub const USERNS: u32 = 1 << 20;
/// Ids a user namespace maps.
const USERNS_SPAN: u32 = 65_536;
/// Room for this many services before the runs' user-namespace ranges.
const MAX_SERVICE_NUMBER: u32 = 256;

/// Whose container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// Service `index` of the boot config, in pod `pod` if any.
    Service { index: usize, pod: Option<usize> },
    /// The run in table slot `slot`.
    Run { slot: usize },
}

/// The identity of `who`'s container: host ids, or for one with a user
/// namespace (`userns`), the host range its namespace maps.
pub fn of(who: Who, userns: bool) -> Identity {
    let n = |x: usize| u32::try_from(x).unwrap_or(u32::MAX / 2);
    let (base, number, pod) = match who {
        Who::Service { index, pod } => (SERVICES, n(index), pod),
        Who::Run { slot } => (RUNS, n(slot), None),
    };
    if userns {
        let k = match who {
            Who::Service { .. } => number,
            Who::Run { .. } => MAX_SERVICE_NUMBER + number,
        };
        return Identity::Mapped(IdMap {
            host: USERNS.saturating_add(k.saturating_mul(USERNS_SPAN)),
            count: USERNS_SPAN,
        });
    }
    let uid = base + number;
    Identity::Ids {
        uid,
        gid: pod.map_or(uid, |p| PODS + n(p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(i: Identity) -> u32 {
        match i {
            Identity::Ids { uid, .. } => uid,
            Identity::Mapped(m) => m.host,
        }
    }

    // The ranges hold every container.
    const _: () = assert!(quilt_config::MAX_SERVICES as u32 <= MAX_SERVICE_NUMBER);
    const _: () = assert!(SERVICES + MAX_SERVICE_NUMBER <= RUNS);
    const _: () = assert!(RUNS + crate::runs::MAX_RUNS as u32 <= PODS);

    #[test]
    fn no_two_containers_share_a_uid() {
        let mut seen = std::collections::BTreeSet::new();
        for index in 0..quilt_config::MAX_SERVICES {
            assert!(seen.insert(uid(of(Who::Service { index, pod: None }, false))));
        }
        for slot in 0..crate::runs::MAX_RUNS {
            assert!(seen.insert(uid(of(Who::Run { slot }, false))));
        }
        assert!(seen.iter().all(|u| (SERVICES..PODS).contains(u)));
    }

    #[test]
    fn pod_members_share_a_group_not_a_uid() {
        let a = of(
            Who::Service {
                index: 1,
                pod: Some(0),
            },
            false,
        );
        let b = of(
            Who::Service {
                index: 2,
                pod: Some(0),
            },
            false,
        );
        match (a, b) {
            (Identity::Ids { uid: ua, gid: ga }, Identity::Ids { uid: ub, gid: gb }) => {
                assert_ne!(ua, ub);
                assert_eq!((ga, gb), (PODS, PODS));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn user_namespaces_map_disjoint_ranges() {
        let mut ranges: Vec<(u32, u32)> = (0..quilt_config::MAX_SERVICES)
            .map(|index| of(Who::Service { index, pod: None }, true))
            .chain((0..crate::runs::MAX_RUNS).map(|slot| of(Who::Run { slot }, true)))
            .map(|i| match i {
                Identity::Mapped(m) => (m.host, m.host + m.count),
                other => panic!("{other:?}"),
            })
            .collect();
        ranges.sort();
        assert!(ranges.windows(2).all(|w| w[0].1 <= w[1].0), "{ranges:?}");
        // Above every plain container's ids.
        assert!(ranges[0].0 > PODS + 1000);
    }
}
