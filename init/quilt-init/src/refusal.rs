//! Why a bundle's container cannot be planned, a bus grant made or an exec
//! target found: one enum per kind of failure, whose `Display` is the
//! message the event log and the client see. Callers decide on the
//! variant, never on the text (issue 15: typed errors).

use core::fmt;

/// Why a bundle's bus tokens cannot be granted (crate::bus).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusRefusal {
    /// A token names a channel the boot config does not declare.
    NoChannel { topic: String },
    /// Its tokens need more fds than a container is handed.
    TooManyFds { need: usize, max: usize },
    /// Every subscriber region of the channel is held.
    SubscribersFull { topic: String, slots: usize },
}

impl fmt::Display for BusRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusRefusal::NoChannel { topic } => write!(
                f,
                "this board has no bus channel {topic:?} (declare it in a [[bus]] table of the boot config)"
            ),
            BusRefusal::TooManyFds { need, max } => write!(
                f,
                "its bus tokens need {need} fds, more than a container gets ({max})"
            ),
            BusRefusal::SubscribersFull { topic, slots } => write!(
                f,
                "bus channel {topic:?} has all its {slots} subscriber slots taken"
            ),
        }
    }
}

/// Why a bundle's container cannot be planned (crate::supervisor's
/// `container_plan`): the bundle is refused, it never runs with less
/// isolation or more power than it was signed for.
#[derive(Debug, PartialEq, Eq)]
pub enum PlanRefusal {
    /// The board has no trust store, so no bundle is trusted.
    NoTrustStore,
    /// The bundle is not installed (refused at install, or absent).
    NotInstalled { bundle: String },
    /// It wants a runtime this board does not have.
    Runtime { bundle: String, runtime: String },
    /// Its bus tokens cannot be granted.
    Bus { bundle: String, why: BusRefusal },
    /// A token this firmware does not know.
    BadToken {
        bundle: String,
        why: quilt_bundle::Error,
    },
    /// `write:<dir>` names no directory of the bundle.
    NotADirectory { bundle: String, dir: String },
    /// A `net:` token the board's `[[net]]` list does not allow.
    NetNotAllowed {
        bundle: String,
        token: String,
        to: String,
    },
    /// `net:` tokens and its own user namespace together.
    NetWithUserns { bundle: String },
    /// A pod member lacks a `net:` token another member holds (`peer`:
    /// the member's bundle, `None` for a member that runs none).
    PodMemberLacksNet {
        bundle: String,
        token: String,
        peer: Option<String>,
    },
    /// Its own user namespace inside a pod.
    PodUserns { bundle: String },
    /// `fs:<vol>` while its service is in no pod with that volume.
    NoVolume {
        bundle: String,
        vol: String,
        service: String,
    },
    /// The container crate refused the plan itself.
    Container(quilt_container::PlanError),
}

impl fmt::Display for PlanRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanRefusal::NoTrustStore => {
                write!(f, "no trusted bundles on this board (trust store missing)")
            }
            PlanRefusal::NotInstalled { bundle } => write!(
                f,
                "bundle {bundle:?} is not installed (refused or absent; see bundle-refused lines)"
            ),
            PlanRefusal::Runtime { bundle, runtime } => write!(
                f,
                "bundle {bundle:?} wants runtime {runtime:?}; this board runs \"bun\""
            ),
            PlanRefusal::Bus { bundle, why } => write!(f, "bundle {bundle:?}: {why}"),
            PlanRefusal::BadToken { bundle, why } => write!(
                f,
                "bundle {bundle:?}: {why}; it is not run with other powers than it was signed for"
            ),
            PlanRefusal::NotADirectory { bundle, dir } => write!(
                f,
                "bundle {bundle:?} asks for `write:{dir}`, but {dir:?} is not a directory of the bundle"
            ),
            PlanRefusal::NetNotAllowed { bundle, token, to } => write!(
                f,
                "bundle {bundle:?} asks for `{token}`, but this board allows no such destination (add [[net]] to = \"{to}\" to its boot config if it should)"
            ),
            PlanRefusal::NetWithUserns { bundle } => write!(
                f,
                "bundle {bundle:?} asks for `net:` destinations and its own user namespace; a user namespace cannot join the namespace PID 1 prepares for the relay"
            ),
            PlanRefusal::PodMemberLacksNet {
                bundle,
                token,
                peer,
            } => {
                write!(
                    f,
                    "bundle {bundle:?} asks for `{token}`, but its pod shares one network with "
                )?;
                match peer {
                    Some(b) => write!(f, "bundle {b:?}")?,
                    None => write!(f, "a member that runs no bundle")?,
                }
                write!(
                    f,
                    ", which does not hold it; give every member the pod's `net:` tokens"
                )
            }
            PlanRefusal::PodUserns { bundle } => write!(
                f,
                "bundle {bundle:?} asks for its own user namespace, which cannot join its pod's namespaces"
            ),
            PlanRefusal::NoVolume {
                bundle,
                vol,
                service,
            } => write!(
                f,
                "bundle {bundle:?} asks for `fs:{vol}`, but service {service:?} is in no pod with a volume {vol:?}"
            ),
            PlanRefusal::Container(e) => write!(f, "{e}"),
        }
    }
}

/// Why a pod member cannot be given its pod's namespaces
/// (crate::supervisor's `pod_namespaces`).
#[derive(Debug)]
pub enum PodRefusal {
    /// The member names a pod the supervisor does not hold.
    NoSuchPod,
    /// Making the pod's namespaces (or copying their fds) failed.
    Make {
        pod: String,
        what: &'static str,
        err: std::io::Error,
    },
    /// The pod's network namespace came without its IPC namespace.
    NoIpc { pod: String },
}

impl fmt::Display for PodRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PodRefusal::NoSuchPod => write!(f, "no such pod"),
            PodRefusal::Make { pod, what, err } => write!(f, "making pod {pod:?}'s {what}: {err}"),
            PodRefusal::NoIpc { pod } => write!(f, "pod {pod:?} has no IPC namespace"),
        }
    }
}

/// Why an exec has no target (crate::supervisor's `container_target`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetRefusal {
    /// No service of that name.
    NoService { name: String },
    /// The service runs no bundle, so there is no container to enter.
    NotAContainer { name: String },
    /// The service is not running.
    NotRunning { name: String },
}

impl fmt::Display for TargetRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetRefusal::NoService { name } => {
                write!(f, "no service named {name:?}; `quilt ps` lists them")
            }
            TargetRefusal::NotAContainer { name } => write!(
                f,
                "service {name:?} is not a container (no bundle): nothing to enter"
            ),
            TargetRefusal::NotRunning { name } => write!(f, "service {name:?} is not running"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_and_what_to_do() {
        let peerless = PlanRefusal::PodMemberLacksNet {
            bundle: "web".into(),
            token: "net:10.0.2.2:80".into(),
            peer: None,
        };
        assert_eq!(
            peerless.to_string(),
            "bundle \"web\" asks for `net:10.0.2.2:80`, but its pod shares one network with a member that runs no bundle, which does not hold it; give every member the pod's `net:` tokens"
        );
        let bus = PlanRefusal::Bus {
            bundle: "b".into(),
            why: BusRefusal::NoChannel { topic: "t".into() },
        };
        assert_eq!(
            bus.to_string(),
            "bundle \"b\": this board has no bus channel \"t\" (declare it in a [[bus]] table of the boot config)"
        );
        assert_eq!(
            TargetRefusal::NotAContainer { name: "p".into() }.to_string(),
            "service \"p\" is not a container (no bundle): nothing to enter"
        );
    }
}
