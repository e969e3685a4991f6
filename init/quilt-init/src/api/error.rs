//! Why a control request failed: one variant per kind of failure, wrapping
//! the typed error of the part of PID 1 that refused it, mapped to a wire
//! [`ErrorCode`] in one place ([`ApiError::code`]) and to the client's
//! [`Reply::Error`] in one place ([`ApiError::reply`]). `Display` is the
//! message the client reads; nothing decides on that text.

use super::authorize::Denied;
use crate::ledger::{Holder, Refusal};
use crate::refusal::TargetRefusal;
use crate::runs::RunError;
use crate::supervisor::OperateError;
use quilt_proto::{ErrorCode, FrameError, Reply};

/// Why a control request failed.
#[derive(Debug)]
pub enum ApiError {
    /// The message did not decode (the control socket logged it).
    Malformed(FrameError),
    /// The caller may not do this.
    Denied(Denied),
    /// A run or spawn did not start, or a `Wait` or `Stop` found nothing.
    Run(RunError),
    /// An exec's process did not start.
    Exec(RunError),
    /// An exec's service has no container to enter.
    ExecTarget(TargetRefusal),
    /// A service's start, stop or restart was refused.
    Operate(OperateError),
    /// An `Acquire` was refused.
    Acquire(Refusal),
    /// Waiting for `resource` would close `cycle` (the runs `holder` would
    /// wait for, in order, back to itself).
    Deadlock {
        holder: Holder,
        resource: String,
        cycle: Vec<Holder>,
    },
    /// A `Release` was refused.
    Release(Refusal),
    /// `Logs` of a service that has none (or no such service).
    NoLog { name: String },
    /// `Slots` on a board without A/B slots.
    NoSlots,
    /// The boot state could not be read.
    SlotState(crate::slots::StateError),
    /// A bundle request on a board without a trust store.
    NoTrustStore,
    /// `Install` of a path that is not absolute.
    RelativePath,
    /// `InstallFd` that came without an fd.
    NoFd,
    /// `Remove` of a bundle a service or run uses.
    BundleInUse { name: String },
    /// The install queue is full.
    InstallQueue(crate::installs::QueueFull),
}

impl ApiError {
    /// The wire code the client gets.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Malformed(e) => e.code(),
            ApiError::Denied(_) | ApiError::Acquire(_) => ErrorCode::Denied,
            ApiError::Run(e) => e.code(),
            ApiError::Exec(_)
            | ApiError::ExecTarget(_)
            | ApiError::SlotState(_)
            | ApiError::RelativePath
            | ApiError::NoFd => ErrorCode::Failed,
            ApiError::Operate(_)
            | ApiError::Release(_)
            | ApiError::NoLog { .. }
            | ApiError::NoSlots
            | ApiError::NoTrustStore => ErrorCode::NotFound,
            ApiError::Deadlock { .. } => ErrorCode::Deadlock,
            ApiError::BundleInUse { .. } | ApiError::InstallQueue(_) => ErrorCode::Busy,
        }
    }

    /// The error reply the client gets.
    pub fn reply(&self) -> Reply {
        Reply::Error {
            code: self.code(),
            message: self.to_string(),
        }
    }
}

impl core::fmt::Display for ApiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ApiError::Malformed(e) => write!(f, "{e}"),
            ApiError::Denied(e) => write!(f, "{e}"),
            ApiError::Run(e) | ApiError::Exec(e) => write!(f, "{e}"),
            ApiError::ExecTarget(e) => write!(f, "{e}"),
            ApiError::Operate(e) => write!(f, "{e}"),
            ApiError::Acquire(e) | ApiError::Release(e) => write!(f, "{e}"),
            ApiError::Deadlock {
                holder,
                resource,
                cycle,
            } => {
                write!(
                    f,
                    "waiting for {resource} would deadlock: run {holder} waits for run {}, which waits (through runs ",
                    cycle.first().copied().unwrap_or(0)
                )?;
                for (i, h) in cycle.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" > ")?;
                    }
                    write!(f, "{h}")?;
                }
                write!(
                    f,
                    ") for run {holder}; release what you hold and retry"
                )
            }
            ApiError::NoLog { name } => write!(
                f,
                "no service named {name:?} with output; `quilt ps` lists them"
            ),
            ApiError::NoSlots => {
                f.write_str("this board has no A/B slots (its boot config has no [slots])")
            }
            ApiError::SlotState(e) => write!(f, "{e}"),
            ApiError::NoTrustStore => {
                f.write_str("this board has no trust store (/etc/quilt/trust), so no bundles")
            }
            ApiError::RelativePath => f.write_str("give the bundle's absolute path on the board"),
            ApiError::NoFd => f.write_str(
                "InstallFd came without an fd: pass the bundle's open fd with the message (SCM_RIGHTS)",
            ),
            ApiError::BundleInUse { name } => write!(
                f,
                "bundle {name:?} is in use (a service or a run); stop it first"
            ),
            ApiError::InstallQueue(e) => write!(f, "{e}"),
        }
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> ApiError {
        ApiError::Denied(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal() -> Refusal {
        Refusal::HoldsNone {
            name: "llm:gpt".into(),
        }
    }

    #[test]
    fn each_failure_maps_to_the_code_clients_always_got() {
        let cases = [
            (ApiError::Malformed(FrameError::Body), ErrorCode::Malformed),
            (
                ApiError::Malformed(FrameError::TooLarge(70_000)),
                ErrorCode::TooLarge,
            ),
            (
                ApiError::Malformed(FrameError::Version(9)),
                ErrorCode::Version,
            ),
            (ApiError::Denied(Denied::NotRoot), ErrorCode::Denied),
            (ApiError::Denied(Denied::OperatorOnly), ErrorCode::Denied),
            (
                ApiError::Run(RunError::NotWaitable { id: 1 }),
                ErrorCode::NotFound,
            ),
            (ApiError::Run(RunError::Full), ErrorCode::Busy),
            (
                ApiError::Run(RunError::TooDeep { run: 1 }),
                ErrorCode::Denied,
            ),
            // An exec's failures were all `Failed`, a full table included.
            (ApiError::Exec(RunError::Full), ErrorCode::Failed),
            (
                ApiError::ExecTarget(TargetRefusal::NotRunning { name: "s".into() }),
                ErrorCode::Failed,
            ),
            // Every refused start, stop or restart was `NotFound`.
            (
                ApiError::Operate(OperateError::ShuttingDown),
                ErrorCode::NotFound,
            ),
            (
                ApiError::Operate(OperateError::AlreadyStarted("s".into())),
                ErrorCode::NotFound,
            ),
            (ApiError::Acquire(refusal()), ErrorCode::Denied),
            (ApiError::Release(refusal()), ErrorCode::NotFound),
            (
                ApiError::Deadlock {
                    holder: 1,
                    resource: "llm:gpt".into(),
                    cycle: vec![2, 1],
                },
                ErrorCode::Deadlock,
            ),
            (ApiError::NoLog { name: "s".into() }, ErrorCode::NotFound),
            (ApiError::NoSlots, ErrorCode::NotFound),
            (
                ApiError::SlotState(crate::slots::StateError::Read {
                    device: "/dev/vdb".into(),
                    err: std::io::Error::from_raw_os_error(5),
                }),
                ErrorCode::Failed,
            ),
            (ApiError::NoTrustStore, ErrorCode::NotFound),
            (ApiError::RelativePath, ErrorCode::Failed),
            (ApiError::NoFd, ErrorCode::Failed),
            (ApiError::BundleInUse { name: "b".into() }, ErrorCode::Busy),
            (
                ApiError::InstallQueue(crate::installs::QueueFull),
                ErrorCode::Busy,
            ),
        ];
        for (e, code) in cases {
            assert_eq!(e.code(), code, "{e:?}");
            assert!(
                matches!(e.reply(), Reply::Error { code: c, .. } if c == code),
                "{e:?}"
            );
        }
    }

    #[test]
    fn the_reply_carries_the_message() {
        let e = ApiError::Denied(Denied::NoExecToken {
            run: 4,
            bundle: "agent".into(),
            service: "calc".into(),
        });
        assert_eq!(
            e.reply(),
            Reply::Error {
                code: ErrorCode::Denied,
                message: "bundle \"agent\" holds no `exec:calc` token".into(),
            }
        );
    }

    #[test]
    fn a_deadlock_names_the_cycle() {
        let e = ApiError::Deadlock {
            holder: 3,
            resource: "llm:gpt".into(),
            cycle: vec![5, 7, 3],
        };
        assert_eq!(
            e.to_string(),
            "waiting for llm:gpt would deadlock: run 3 waits for run 5, which waits (through runs 5 > 7 > 3) for run 3; release what you hold and retry"
        );
    }
}
