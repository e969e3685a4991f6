//! The one place that decides who may do what over a control socket.
//!
//! [`authorize`] turns a caller's decoded request into the [`Call`] the
//! handler acts on, or says why not ([`Denied`]): root on the host may do
//! everything; another uid nothing ([`admit`]; the control socket asks
//! the same `Caller::admitted` before it even decodes their bytes); a service on its own socket what
//! its boot config's `control` verbs name, as root would, and firmware it
//! installs is staged only with `firmware`; a container only what its
//! bundle's tokens name (`spawn`/`spawn:<bundle>`, `exec:<service>`,
//! counted resources), and never the operator's verbs. [`exec_within`] is the one
//! check that needs the board's state (the exec target's tokens), so the
//! handler asks it once it has them. Pure: no I/O, no logging (a refusal's
//! event line is [`Denied::log`], written by the API as it refuses).

use super::Call;
use crate::caller::{Caller, Parent};
use crate::event;
use quilt_config::Verb;
use quilt_proto::Request;
use rustix::fd::OwnedFd;

/// Why a caller may not do what it asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// A host process that is not root.
    NotRoot,
    /// A container asked for an operator's verb.
    OperatorOnly,
    /// A container (run `run` of `bundle`) asked to run `child` without a
    /// token for it.
    NoSpawnToken {
        run: u64,
        bundle: String,
        child: String,
    },
    /// A container asked to exec into `service` without its token.
    NoExecToken {
        run: u64,
        bundle: String,
        service: String,
    },
    /// A container asked for a counted resource without its token.
    NoResourceToken { bundle: String, resource: String },
    /// A host process asked for a counted resource (only containers hold
    /// their tokens).
    HostAcquire,
    /// The exec target `service` holds `token`, which the asking container
    /// does not.
    ExceedsCaller { service: String, token: String },
    /// A service asked over its own socket for a verb its boot config's
    /// `control` grant does not name.
    NotGranted { service: String, verb: Verb },
}

impl core::fmt::Display for Denied {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Denied::NotRoot => f.write_str("only root may drive quilt-init over this socket"),
            Denied::OperatorOnly => f.write_str(
                "services, logs, events, bundles, pods, slots and resources are the operator's",
            ),
            Denied::NoSpawnToken { bundle, child, .. } => write!(
                f,
                "bundle {bundle:?} holds no `spawn` or `spawn:{child}` token"
            ),
            Denied::NoExecToken {
                bundle, service, ..
            } => write!(f, "bundle {bundle:?} holds no `exec:{service}` token"),
            Denied::NoResourceToken { bundle, resource } => {
                write!(f, "bundle {bundle:?} holds no `{resource}` token")
            }
            Denied::HostAcquire => f.write_str(
                "counted resources are acquired by containers holding their token",
            ),
            Denied::ExceedsCaller { service, token } => write!(
                f,
                "service {service:?} runs with `{token}`, which the asking container does not hold: an exec never holds more than its caller"
            ),
            Denied::NotGranted { service, verb } => write!(
                f,
                "service {service:?} may not `{}` here: its boot config's `control` list does not name it",
                verb.name()
            ),
        }
    }
}

impl Denied {
    /// Write the refusal's event line, for those that have one.
    pub fn log(&self) {
        match self {
            Denied::NoSpawnToken { run, bundle, child } => event!(
                "event=spawn-refused run={} bundle={} child={} reason=no-token",
                run,
                bundle,
                child
            ),
            Denied::NoExecToken {
                run,
                bundle,
                service,
            } => event!(
                "event=exec-refused run={} bundle={} target={} reason=no-token",
                run,
                bundle,
                service
            ),
            Denied::ExceedsCaller { service, token } => event!(
                "event=exec-refused target={} reason=exceeds-caller token={}",
                service,
                token
            ),
            Denied::NotGranted { service, verb } => {
                event!("event=control-denied name={} verb={}", service, verb.name())
            }
            Denied::NotRoot
            | Denied::OperatorOnly
            | Denied::NoResourceToken { .. }
            | Denied::HostAcquire => {}
        }
    }
}

/// Whether `caller` may use the socket at all. The control socket asks
/// before decoding a message, so a refused caller's bytes are never parsed.
pub fn admit(caller: &Caller) -> Result<(), Denied> {
    match caller.admitted() {
        true => Ok(()),
        false => Err(Denied::NotRoot),
    }
}

/// What `caller` may do of `request` (`fd`: the one that came with it,
/// kept only for `InstallFd`).
pub fn authorize(caller: &Caller, request: Request, fd: Option<OwnedFd>) -> Result<Call, Denied> {
    admit(caller)?;
    // A service may do what its grant names, as the operator would.
    if let (Caller::Service(g), Some(verb)) = (caller, verb_of(&request)) {
        if !g.verbs.contains(&verb) {
            return Err(Denied::NotGranted {
                service: g.name.clone(),
                verb,
            });
        }
    }
    let container = match caller {
        Caller::Container(s) => Some(&**s),
        Caller::Host { .. } | Caller::Service(_) => None,
    };
    // Firmware it installs is staged for root only, or for a service
    // granted `firmware`.
    let firmware = match caller {
        Caller::Host { .. } => true,
        Caller::Service(g) => g.verbs.contains(&Verb::Firmware),
        Caller::Container(_) => false,
    };
    match request {
        Request::Ping => Ok(Call::Ping),
        Request::List
        | Request::Service { .. }
        | Request::Logs { .. }
        | Request::Events
        | Request::Install { .. }
        | Request::InstallFd
        | Request::Remove { .. }
        | Request::Bundles
        | Request::Pods
        | Request::Slots
        | Request::Resources
        | Request::Stats
            if container.is_some() =>
        {
            Err(Denied::OperatorOnly)
        }
        Request::List => Ok(Call::List),
        Request::Service { name, verb } => Ok(Call::Service { name, verb }),
        Request::Logs { name, follow } => Ok(Call::Logs { name, follow }),
        Request::Events => Ok(Call::Events),
        Request::Install { path } => Ok(Call::Install { path, firmware }),
        Request::InstallFd => Ok(Call::InstallFd { fd, firmware }),
        Request::Remove { name } => Ok(Call::Remove { name }),
        Request::Bundles => Ok(Call::Bundles),
        Request::Pods => Ok(Call::Pods),
        Request::Slots => Ok(Call::Slots),
        Request::Resources => Ok(Call::Resources),
        Request::Stats => Ok(Call::Stats),
        Request::Run {
            bundle,
            input,
            timeout_ms,
        } => run(container, bundle, input, timeout_ms, false),
        Request::Spawn {
            bundle,
            input,
            timeout_ms,
        } => run(container, bundle, input, timeout_ms, true),
        Request::Wait { id } => Ok(Call::Wait { id }),
        Request::Stop { id } => Ok(Call::Stop { id }),
        Request::Exec {
            service,
            argv,
            input,
            timeout_ms,
        } => match container {
            Some(s) if !s.grant.may_exec(&service) => Err(Denied::NoExecToken {
                run: s.run,
                bundle: s.bundle.clone(),
                service,
            }),
            _ => Ok(Call::Exec {
                service,
                argv,
                input,
                timeout_ms,
                holder: container.map(|s| s.grant.tokens.clone()),
            }),
        },
        Request::Acquire { resource, units } => {
            let holder = counted(container, &resource)?;
            Ok(Call::Acquire {
                holder,
                resource,
                units,
            })
        }
        Request::Release { resource, units } => {
            let holder = counted(container, &resource)?;
            Ok(Call::Release {
                holder,
                resource,
                units,
            })
        }
    }
}

/// The verb a service's grant must name for `request`; `None` for a ping
/// (anyone may) and for counted resources (only containers may, by token).
fn verb_of(request: &Request) -> Option<Verb> {
    Some(match request {
        Request::Ping | Request::Acquire { .. } | Request::Release { .. } => return None,
        Request::List | Request::Pods | Request::Resources | Request::Stats => Verb::List,
        Request::Run { .. }
        | Request::Spawn { .. }
        | Request::Wait { .. }
        | Request::Stop { .. } => Verb::Run,
        Request::Logs { .. } => Verb::Logs,
        Request::Events => Verb::Events,
        Request::Service { .. } => Verb::Services,
        Request::Bundles => Verb::Bundles,
        Request::Install { .. } | Request::InstallFd | Request::Remove { .. } => Verb::Install,
        Request::Slots => Verb::Slots,
        Request::Exec { .. } => Verb::Exec,
    })
}

/// `Run` or `Spawn`: the host's runs are top-level; a container's are its
/// children, of the bundles its tokens name.
fn run(
    container: Option<&crate::caller::Spawner>,
    bundle: String,
    input: Vec<u8>,
    timeout_ms: u32,
    detached: bool,
) -> Result<Call, Denied> {
    let parent = match container {
        None => None,
        Some(s) if s.grant.may_spawn(&bundle) => Some(Parent {
            run: s.run,
            cgroup: s.cgroup.clone(),
            depth: s.depth,
            tokens: s.grant.tokens.clone(),
        }),
        Some(s) => {
            return Err(Denied::NoSpawnToken {
                run: s.run,
                bundle: s.bundle.clone(),
                child: bundle,
            })
        }
    };
    Ok(Call::Run {
        bundle,
        input,
        timeout_ms,
        detached,
        parent,
    })
}

/// `Acquire` or `Release`: the holder is the container holding the
/// resource's token.
fn counted(container: Option<&crate::caller::Spawner>, resource: &str) -> Result<u64, Denied> {
    match container {
        Some(s) if s.grant.may_acquire(resource) => Ok(s.run),
        Some(s) => Err(Denied::NoResourceToken {
            bundle: s.bundle.clone(),
            resource: resource.to_owned(),
        }),
        None => Err(Denied::HostAcquire),
    }
}

/// An exec into `service`, whose bundle holds `target` tokens, asked by a
/// container holding `holder` (`None`: the operator): the process may hold
/// no token beyond its caller's.
pub fn exec_within(
    service: &str,
    holder: Option<&[String]>,
    target: &[String],
) -> Result<(), Denied> {
    let Some(holder) = holder else {
        return Ok(());
    };
    match crate::grants::uncovered_token(holder, target) {
        Some(token) => Err(Denied::ExceedsCaller {
            service: service.to_owned(),
            token: token.to_owned(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caller::Spawner;
    use crate::grants::ControlGrant;
    use quilt_proto::ServiceVerb;

    fn container(grant: ControlGrant) -> Caller {
        Caller::Container(Box::new(Spawner {
            run: 7,
            bundle: "agent".into(),
            grant,
            cgroup: "runs/7".into(),
            depth: 1,
        }))
    }

    /// The five kinds of caller, in the order [`each`] answers for them.
    fn callers() -> [Caller; 5] {
        let matching = ControlGrant {
            spawn_any: false,
            spawn_only: vec!["tool".into()],
            counted: vec!["llm:gpt".into()],
            exec: vec!["calc".into()],
            tokens: vec!["spawn:tool".into(), "llm:gpt".into(), "exec:calc".into()],
        };
        let other = ControlGrant {
            spawn_any: false,
            spawn_only: vec!["other".into()],
            counted: vec!["llm:other".into()],
            exec: vec!["other".into()],
            tokens: vec![
                "spawn:other".into(),
                "llm:other".into(),
                "exec:other".into(),
            ],
        };
        [
            Caller::Host { uid: 0 },
            Caller::Host { uid: 1000 },
            container(ControlGrant::default()),
            container(matching),
            container(other),
        ]
    }

    struct Each {
        root: Result<Call, Denied>,
        user: Result<Call, Denied>,
        bare: Result<Call, Denied>,
        matching: Result<Call, Denied>,
        other: Result<Call, Denied>,
    }

    /// `request` from root, another uid, a container without tokens, one
    /// holding the token it needs and one holding others.
    fn each(request: Request) -> Each {
        let [root, user, bare, matching, other] =
            callers().map(|c| authorize(&c, request.clone(), None));
        Each {
            root,
            user,
            bare,
            matching,
            other,
        }
    }

    /// An operator's verb: root gets `call`, nobody else.
    fn operator_only(request: Request, call: impl Fn(&Call) -> bool) {
        let e = each(request);
        assert!(matches!(&e.root, Ok(c) if call(c)), "{:?}", e.root);
        assert!(matches!(e.user, Err(Denied::NotRoot)), "{:?}", e.user);
        for r in [e.bare, e.matching, e.other] {
            assert!(matches!(r, Err(Denied::OperatorOnly)), "{r:?}");
        }
    }

    /// Everyone admitted gets `call`.
    fn everyone(request: Request, call: impl Fn(&Call) -> bool) {
        let e = each(request);
        assert!(matches!(e.user, Err(Denied::NotRoot)), "{:?}", e.user);
        for r in [e.root, e.bare, e.matching, e.other] {
            assert!(matches!(&r, Ok(c) if call(c)), "{r:?}");
        }
    }

    #[test]
    fn ping_is_anyones_admitted() {
        everyone(Request::Ping, |c| matches!(c, Call::Ping));
    }

    #[test]
    fn wait_and_stop_are_anyones_admitted() {
        everyone(Request::Wait { id: 3 }, |c| {
            matches!(c, Call::Wait { id: 3 })
        });
        everyone(Request::Stop { id: 3 }, |c| {
            matches!(c, Call::Stop { id: 3 })
        });
    }

    #[test]
    fn list_is_the_operators() {
        operator_only(Request::List, |c| matches!(c, Call::List));
        operator_only(Request::Stats, |c| matches!(c, Call::Stats));
    }

    #[test]
    fn service_verbs_are_the_operators() {
        operator_only(
            Request::Service {
                name: "web".into(),
                verb: ServiceVerb::Restart,
            },
            |c| matches!(c, Call::Service { name, verb: ServiceVerb::Restart } if name == "web"),
        );
    }

    #[test]
    fn logs_are_the_operators() {
        operator_only(
            Request::Logs {
                name: "web".into(),
                follow: true,
            },
            |c| matches!(c, Call::Logs { name, follow: true } if name == "web"),
        );
    }

    #[test]
    fn events_are_the_operators() {
        operator_only(Request::Events, |c| matches!(c, Call::Events));
    }

    #[test]
    fn installs_removals_and_the_bundle_list_are_the_operators() {
        operator_only(
            Request::Install {
                path: "/tmp/a.qb".into(),
            },
            |c| matches!(c, Call::Install { path, firmware: true } if path == "/tmp/a.qb"),
        );
        operator_only(Request::InstallFd, |c| {
            matches!(
                c,
                Call::InstallFd {
                    fd: None,
                    firmware: true
                }
            )
        });
        operator_only(
            Request::Remove { name: "a".into() },
            |c| matches!(c, Call::Remove { name } if name == "a"),
        );
        operator_only(Request::Bundles, |c| matches!(c, Call::Bundles));
    }

    #[test]
    fn pods_slots_and_resources_are_the_operators() {
        operator_only(Request::Pods, |c| matches!(c, Call::Pods));
        operator_only(Request::Slots, |c| matches!(c, Call::Slots));
        operator_only(Request::Resources, |c| matches!(c, Call::Resources));
    }

    #[test]
    fn install_fd_keeps_the_fd_that_came_with_it() {
        let (r, _w) = rustix::pipe::pipe().unwrap();
        let call = authorize(&Caller::Host { uid: 0 }, Request::InstallFd, Some(r));
        assert!(matches!(
            call,
            Ok(Call::InstallFd {
                fd: Some(_),
                firmware: true
            })
        ));
        let (r, _w) = rustix::pipe::pipe().unwrap();
        let call = authorize(&Caller::Host { uid: 1000 }, Request::InstallFd, Some(r));
        assert!(matches!(call, Err(Denied::NotRoot)));
    }

    fn runs(detached: bool) {
        let (bundle, input, timeout_ms) = ("tool".to_string(), b"{}".to_vec(), 5);
        let request = if detached {
            Request::Spawn {
                bundle,
                input,
                timeout_ms,
            }
        } else {
            Request::Run {
                bundle,
                input,
                timeout_ms,
            }
        };
        let e = each(request);
        assert!(
            matches!(&e.root, Ok(Call::Run { bundle, parent: None, detached: d, timeout_ms: 5, .. }) if bundle == "tool" && *d == detached),
            "{:?}",
            e.root
        );
        assert!(matches!(e.user, Err(Denied::NotRoot)), "{:?}", e.user);
        for r in [e.bare, e.other] {
            assert!(
                matches!(&r, Err(Denied::NoSpawnToken { run: 7, bundle, child }) if bundle == "agent" && child == "tool"),
                "{r:?}"
            );
        }
        assert!(
            matches!(&e.matching, Ok(Call::Run { detached: d, parent: Some(p), .. })
                if *d == detached && p.run == 7 && p.depth == 1 && p.cgroup == "runs/7"
                    && p.tokens.iter().any(|t| t == "spawn:tool")),
            "{:?}",
            e.matching
        );
    }

    #[test]
    fn a_run_is_a_child_of_a_container_holding_its_spawn_token() {
        runs(false);
    }

    #[test]
    fn a_spawn_is_a_child_of_a_container_holding_its_spawn_token() {
        runs(true);
    }

    #[test]
    fn spawn_covers_every_bundle() {
        let any = container(ControlGrant {
            spawn_any: true,
            ..ControlGrant::default()
        });
        let call = authorize(
            &any,
            Request::Spawn {
                bundle: "whatever".into(),
                input: Vec::new(),
                timeout_ms: 0,
            },
            None,
        );
        assert!(matches!(
            call,
            Ok(Call::Run {
                detached: true,
                parent: Some(_),
                ..
            })
        ));
    }

    #[test]
    fn exec_needs_the_services_token_in_a_container() {
        let e = each(Request::Exec {
            service: "calc".into(),
            argv: vec!["/bin/true".into()],
            input: Vec::new(),
            timeout_ms: 0,
        });
        assert!(
            matches!(&e.root, Ok(Call::Exec { service, holder: None, .. }) if service == "calc"),
            "{:?}",
            e.root
        );
        assert!(matches!(e.user, Err(Denied::NotRoot)), "{:?}", e.user);
        for r in [e.bare, e.other] {
            assert!(
                matches!(&r, Err(Denied::NoExecToken { run: 7, bundle, service }) if bundle == "agent" && service == "calc"),
                "{r:?}"
            );
        }
        assert!(
            matches!(&e.matching, Ok(Call::Exec { service, holder: Some(h), .. })
                if service == "calc" && h.iter().any(|t| t == "exec:calc")),
            "{:?}",
            e.matching
        );
    }

    fn counted(acquire: bool) {
        let (resource, units) = ("llm:gpt".to_string(), 2);
        let request = if acquire {
            Request::Acquire { resource, units }
        } else {
            Request::Release { resource, units }
        };
        let e = each(request);
        assert!(matches!(e.root, Err(Denied::HostAcquire)), "{:?}", e.root);
        assert!(matches!(e.user, Err(Denied::NotRoot)), "{:?}", e.user);
        for r in [e.bare, e.other] {
            assert!(
                matches!(&r, Err(Denied::NoResourceToken { bundle, resource }) if bundle == "agent" && resource == "llm:gpt"),
                "{r:?}"
            );
        }
        let granted = match &e.matching {
            Ok(Call::Acquire {
                holder: 7,
                resource,
                units: 2,
            }) => acquire && resource == "llm:gpt",
            Ok(Call::Release {
                holder: 7,
                resource,
                units: 2,
            }) => !acquire && resource == "llm:gpt",
            _ => false,
        };
        assert!(granted, "{:?}", e.matching);
    }

    #[test]
    fn acquire_needs_the_resources_token_and_a_container() {
        counted(true);
    }

    #[test]
    fn release_needs_the_resources_token_and_a_container() {
        counted(false);
    }

    #[test]
    fn only_root_is_admitted_from_the_host() {
        assert!(admit(&Caller::Host { uid: 0 }).is_ok());
        assert!(matches!(
            admit(&Caller::Host { uid: 1 }),
            Err(Denied::NotRoot)
        ));
        assert!(admit(&container(ControlGrant::default())).is_ok());
    }

    #[test]
    fn an_exec_holds_no_token_beyond_its_caller() {
        let target = ["net:10.0.2.2:80".to_string(), "spawn:tool".to_string()];
        assert!(exec_within("calc", None, &target).is_ok());
        let caller = ["exec:calc".to_string(), "spawn".to_string()];
        assert!(matches!(
            exec_within("calc", Some(&caller), &target),
            Err(Denied::ExceedsCaller { service, token }) if service == "calc" && token == "net:10.0.2.2:80"
        ));
        let caller = ["net:10.0.2.2:80".to_string(), "spawn".to_string()];
        assert!(exec_within("calc", Some(&caller), &target).is_ok());
    }

    fn service(verbs: &[Verb]) -> Caller {
        Caller::Service(Box::new(crate::caller::Granted {
            name: "gw".into(),
            verbs: verbs.iter().copied().collect(),
        }))
    }

    #[test]
    fn a_service_may_ask_for_what_its_grant_names_and_nothing_else() {
        let gw = service(&[Verb::List, Verb::Run, Verb::Install]);
        let ask = |r: Request| authorize(&gw, r, None);
        assert!(matches!(ask(Request::Ping), Ok(Call::Ping)));
        assert!(matches!(ask(Request::List), Ok(Call::List)));
        assert!(matches!(ask(Request::Stats), Ok(Call::Stats)));
        assert!(matches!(ask(Request::Pods), Ok(Call::Pods)));
        assert!(matches!(
            ask(Request::Run {
                bundle: "tool".into(),
                input: vec![],
                timeout_ms: 0
            }),
            Ok(Call::Run { parent: None, .. })
        ));
        assert!(matches!(
            ask(Request::Wait { id: 1 }),
            Ok(Call::Wait { id: 1 })
        ));
        // Installed, but its firmware is not staged: no `firmware` verb.
        assert!(matches!(
            ask(Request::Install {
                path: "/b.qb".into()
            }),
            Ok(Call::Install {
                firmware: false,
                ..
            })
        ));
        for (request, verb) in [
            (Request::Slots, Verb::Slots),
            (Request::Events, Verb::Events),
            (Request::Bundles, Verb::Bundles),
            (
                Request::Logs {
                    name: "x".into(),
                    follow: false,
                },
                Verb::Logs,
            ),
            (
                Request::Service {
                    name: "x".into(),
                    verb: ServiceVerb::Stop,
                },
                Verb::Services,
            ),
            (
                Request::Exec {
                    service: "x".into(),
                    argv: vec![],
                    input: vec![],
                    timeout_ms: 0,
                },
                Verb::Exec,
            ),
        ] {
            assert_eq!(
                ask(request).err(),
                Some(Denied::NotGranted {
                    service: "gw".into(),
                    verb
                })
            );
        }
        // Counted resources are a container's, by token, whatever a
        // grant says.
        assert_eq!(
            ask(Request::Acquire {
                resource: "llm:x".into(),
                units: 1
            })
            .err(),
            Some(Denied::HostAcquire)
        );
    }

    #[test]
    fn firmware_is_staged_for_root_and_for_a_service_granted_it() {
        let install = || Request::Install {
            path: "/f.qb".into(),
        };
        let staged = |c: &Caller| {
            matches!(
                authorize(c, install(), None),
                Ok(Call::Install { firmware: true, .. })
            )
        };
        assert!(staged(&Caller::Host { uid: 0 }));
        assert!(staged(&service(&[Verb::Install, Verb::Firmware])));
        assert!(!staged(&service(&[Verb::Install])));
        assert!(service(&[]).admitted(), "an empty grant still pings");
    }
}
