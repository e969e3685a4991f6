//! Starting a container from its plan: the one path that supervised
//! services, pod members, runs and child containers all take. It claims
//! the container's bus fds, makes its own control socket when its tokens
//! grant one, prepares the network namespace its `net:` tokens need
//! (inside its pod's, if it is in one), joins its pod's namespaces, and
//! spawns it into its cgroup. What differs per caller, its stdio and
//! cgroup before and its tables and events after, stays with the caller.

use crate::bus::Bus;
use crate::plan::ContainerPlan;
use crate::refusal::BusRefusal;
use core::fmt;
use quilt_bundle::tokens::BusRole;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};

/// A pod's namespaces, for a member to join.
pub struct PodJoin<'a> {
    pub net: BorrowedFd<'a>,
    pub ipc: BorrowedFd<'a>,
    pub pid: Option<BorrowedFd<'a>>,
}

/// Everything one start needs.
pub struct Launch<'a> {
    pub plan: &'a ContainerPlan,
    pub stdin: BorrowedFd<'a>,
    pub stdout: BorrowedFd<'a>,
    pub stderr: BorrowedFd<'a>,
    /// Its cgroup (an open cgroup v2 directory).
    pub cgroup: BorrowedFd<'a>,
    pub bus: &'a Bus,
    /// Who holds its bus subscriber regions (crate::bus).
    pub holder: u64,
    /// The bus channels its tokens name.
    pub wants: &'a [(&'a str, BusRole)],
    /// Whether its tokens grant it a control socket of its own.
    pub control: bool,
    pub pod: Option<PodJoin<'a>>,
}

/// A started container.
pub struct Launched {
    /// Its PID 1, as the host sees it.
    pub pid: i32,
    /// How its setup ends, read when its pipe is readable (a container
    /// whose setup fails exits at once).
    pub report: quilt_container::SetupReport,
    /// PID 1's end of its control socket, if it has one.
    pub control: Option<OwnedFd>,
    /// The relay's listeners for its `net:` destinations, when it has
    /// some (crate::net adopts them, and lets them go when it exits).
    pub relay: Option<(Vec<std::net::SocketAddrV4>, Vec<OwnedFd>)>,
}

/// Why a container could not be started. Nothing it claimed stays held.
#[derive(Debug)]
pub enum LaunchError {
    /// Its bus tokens could not be granted now.
    Bus(BusRefusal),
    /// Its control socket could not be made.
    Socketpair(rustix::io::Errno),
    /// The network namespace for its `net:` tokens could not be made.
    NetNamespace(std::io::Error),
    /// The spawn itself failed.
    Spawn(std::io::Error),
}

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaunchError::Bus(e) => write!(f, "{e}"),
            LaunchError::Socketpair(e) => write!(f, "control socketpair: {e}"),
            LaunchError::NetNamespace(e) => write!(f, "preparing its network namespace: {e}"),
            LaunchError::Spawn(e) => write!(f, "clone3: {e}"),
        }
    }
}

/// Start the container `l` describes.
pub fn launch(l: &Launch<'_>) -> Result<Launched, LaunchError> {
    let mut extra = l.bus.claim(l.holder, l.wants).map_err(LaunchError::Bus)?;
    let undo = |extra: Vec<BorrowedFd<'_>>| {
        drop(extra);
        l.bus.release(l.holder);
    };
    // Its end of its control socket goes in after the bus fds.
    let socket = match l.control {
        true => match rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::SEQPACKET,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        ) {
            Ok(pair) => Some(pair),
            Err(e) => {
                undo(extra);
                return Err(LaunchError::Socketpair(e));
            }
        },
        false => None,
    };
    extra.extend(socket.as_ref().map(|(_, theirs)| theirs.as_fd()));
    // `net:` destinations: listeners in a namespace made for it (inside
    // its pod's, if any), which it joins.
    let prepared = match l.plan.net.is_empty() {
        true => None,
        false => {
            match quilt_container::netns::prepare(l.pod.as_ref().map(|p| p.net), false, &l.plan.net)
            {
                Ok(p) => Some(p),
                Err(e) => {
                    undo(extra);
                    return Err(LaunchError::NetNamespace(e));
                }
            }
        }
    };
    let join = quilt_container::Join {
        net: prepared
            .as_ref()
            .map(|p| p.ns.as_fd())
            .or(l.pod.as_ref().map(|p| p.net)),
        ipc: l.pod.as_ref().map(|p| p.ipc),
        pid: l.pod.as_ref().and_then(|p| p.pid),
    };
    let stdio = quilt_container::Stdio {
        stdin: l.stdin,
        stdout: l.stdout,
        stderr: l.stderr,
        extra: &extra,
    };
    let spawned = quilt_container::start_in(l.plan, stdio, l.cgroup, join);
    let sp = match spawned {
        Ok(sp) => sp,
        Err(e) => {
            undo(extra);
            return Err(LaunchError::Spawn(e));
        }
    };
    drop(extra);
    let relay = prepared.map(|p| (l.plan.net.clone(), p.listeners));
    Ok(Launched {
        pid: sp.pid,
        report: sp.report,
        // Their end is the container's now; ours stays.
        control: socket.map(|(ours, _theirs)| ours),
        relay,
    })
}
