//! Pods: which services share a pod and its volumes (from the boot
//! config), and the pod's network, IPC and PID namespaces, made when its
//! first member starts and held for the boot so a member that restarts
//! joins them again.

use crate::event;
use crate::refusal::PodRefusal;
use quilt_config::BootConfig;
use rustix::fd::OwnedFd;

/// Where pods' volumes live on the host (tmpfs `/run`: they last a boot).
pub const PODS: &str = "/run/quilt/pods";

/// A service's place in its pod.
#[derive(Debug, Clone)]
pub struct PodRole {
    /// The pod (index in the config).
    pub pod: usize,
    /// (volume name, host directory).
    pub volumes: Vec<(String, std::path::PathBuf)>,
    /// The bundles of the other members (`None`: a member that runs no
    /// bundle), whose tokens bound what the shared network may reach.
    pub peers: Vec<Option<String>>,
}

/// The pod service `name` belongs to, if any.
pub fn pod_role(cfg: &BootConfig, name: &str) -> Option<PodRole> {
    let (pod, p) = cfg
        .pods
        .iter()
        .enumerate()
        .find(|(_, p)| p.services.iter().any(|s| s == name))?;
    Some(PodRole {
        pod,
        volumes: p
            .volumes
            .iter()
            .map(|v| {
                (
                    v.to_string(),
                    std::path::Path::new(PODS)
                        .join(p.name.as_str())
                        .join(v.as_str()),
                )
            })
            .collect(),
        peers: p
            .services
            .iter()
            .filter(|s| *s != name)
            .map(|s| {
                cfg.services
                    .iter()
                    .find(|x| x.name == *s)
                    .and_then(|x| x.bundle.as_ref().map(|b| b.to_string()))
            })
            .collect(),
    })
}

/// A pod's namespaces, held for the boot.
struct Held {
    net: quilt_container::netns::NetNs,
    /// The PID namespace's holder (host pid) and the namespace, when the
    /// pod shares one.
    pid: Option<(i32, OwnedFd)>,
}

/// A pod's namespaces for one member's start (duplicated fds).
pub struct PodFds {
    pub net: OwnedFd,
    pub ipc: OwnedFd,
    pub pid: Option<OwnedFd>,
}

/// Every pod's namespaces, by config index.
pub struct Pods {
    held: Vec<Option<Held>>,
}

impl Pods {
    /// No namespaces yet.
    pub fn new(cfg: &BootConfig) -> Pods {
        Pods {
            held: (0..cfg.pods.len()).map(|_| None).collect(),
        }
    }

    /// Pod `p`'s namespaces (net, IPC, and PID when it shares one), made
    /// on first use.
    pub fn namespaces(&mut self, cfg: &BootConfig, p: usize) -> Result<PodFds, PodRefusal> {
        let (pod, share_pid) = cfg
            .pods
            .get(p)
            .map_or(("?", false), |p| (p.name.as_str(), p.pid));
        let slot = self.held.get_mut(p).ok_or(PodRefusal::NoSuchPod)?;
        let failed = |what, err| PodRefusal::Make {
            pod: pod.to_owned(),
            what,
            err,
        };
        if slot.is_none() {
            let net = quilt_container::netns::prepare(None, true, &[])
                .map_err(|e| failed("network and IPC namespaces", e))?;
            let pid = match share_pid {
                true => Some(
                    quilt_container::netns::pid_holder().map_err(|e| failed("PID namespace", e))?,
                ),
                false => None,
            };
            event!(
                "event=pod-namespaces pod={} pid_holder={}",
                pod,
                pid.as_ref().map_or(0, |(h, _)| *h)
            );
            *slot = Some(Held { net, pid });
        }
        let ns = slot.as_ref().ok_or(PodRefusal::NoSuchPod)?;
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| failed("namespace fd copies", e));
        let ipc = ns.net.ipc.as_ref().ok_or_else(|| PodRefusal::NoIpc {
            pod: pod.to_owned(),
        })?;
        Ok(PodFds {
            net: dup(&ns.net.ns)?,
            ipc: dup(ipc)?,
            pid: ns.pid.as_ref().map(|(_, fd)| dup(fd)).transpose()?,
        })
    }

    /// Make pod volumes' directories: the pod's group's, setgid, so what
    /// a member makes in them stays the pod's (members have uids of their
    /// own and the pod's group, crate::ids).
    pub fn make_volumes(role: &PodRole) {
        use std::os::unix::fs::PermissionsExt;
        for (_, dir) in &role.volumes {
            if std::fs::create_dir_all(dir).is_ok() {
                let gid = crate::ids::PODS + role.pod as u32;
                let _ = std::os::unix::fs::chown(dir, Some(0), Some(gid));
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o2770));
            }
        }
    }
}
