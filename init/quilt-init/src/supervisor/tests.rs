//! The supervisor machine's transitions, one test per behaviour, driven
//! through a recording fake host: no process is started, no cgroup
//! touched. The QEMU tests (tests/tests/pid1.rs and others) prove the
//! real host's wiring.

use super::machine::{
    drive, Effect, Event, Host, Machine, Note, OperateError, Probe, State, POLL_MS,
    SHUTDOWN_SLACK_MS,
};
use crate::clock::Millis;
use crate::policy::{ExitCode, HEALTHY_RUN_MS};
use quilt_config::PowerAction;
use quilt_proto::ServiceVerb;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

/// Records every effect; answers starts with made-up pids.
#[derive(Default)]
struct Fake {
    log: Vec<Effect>,
    populated: BTreeSet<usize>,
    ready_files: BTreeSet<usize>,
    /// Starts that make no process at all.
    no_process: BTreeSet<usize>,
    /// Starts whose exec fails.
    exec_fails: BTreeSet<usize>,
    next_pid: i32,
    /// The newest pid of each service.
    pids: BTreeMap<usize, i32>,
    /// Setup reports to deliver once the machine is done with the event
    /// that started them (as the loop reads them in a later turn).
    reports: Vec<Event>,
}

impl Probe for Fake {
    fn populated(&self, service: usize) -> bool {
        self.populated.contains(&service)
    }
    fn ready_file(&self, service: usize) -> bool {
        self.ready_files.contains(&service)
    }
}

impl Host for Fake {
    fn apply(&mut self, effect: Effect) -> Option<Event> {
        self.log.push(effect);
        let Effect::Start(service) = effect else {
            return None;
        };
        if self.no_process.contains(&service) {
            return Some(Event::StartFailed { service });
        }
        self.next_pid += 1;
        let pid = 100 + self.next_pid;
        self.pids.insert(service, pid);
        self.reports.push(Event::SetupEnded {
            service,
            failed: self.exec_fails.contains(&service),
        });
        Some(Event::Spawned { service, pid })
    }
}

impl Fake {
    /// The effects since the last call.
    fn take(&mut self) -> Vec<Effect> {
        core::mem::take(&mut self.log)
    }
    fn pid(&self, service: usize) -> i32 {
        self.pids.get(&service).copied().unwrap_or(-1)
    }
}

fn starts(effects: &[Effect]) -> Vec<usize> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Start(i) => Some(*i),
            _ => None,
        })
        .collect()
}

fn notes(effects: &[Effect]) -> Vec<Note> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Note(n) => Some(*n),
            _ => None,
        })
        .collect()
}

fn machine(toml: &str) -> Machine {
    let bytes = quilt_config::compile(toml).unwrap();
    let cfg = quilt_config::decode(&bytes).unwrap();
    Machine::new(Rc::new(cfg))
}

fn at(ms: u64) -> Millis {
    Millis(ms)
}

/// Feed one event at `ms`, then the setup reports of what it started,
/// and return what the host was asked to do.
fn feed(m: &mut Machine, h: &mut Fake, ev: Event, ms: u64) -> Vec<Effect> {
    drive(m, h, ev, at(ms));
    while !h.reports.is_empty() {
        for report in core::mem::take(&mut h.reports) {
            drive(m, h, report, at(ms));
        }
    }
    h.take()
}

/// Service `service`'s newest process exits with `code` at `ms`.
fn reap(m: &mut Machine, h: &mut Fake, service: usize, code: i32, ms: u64) -> Vec<Effect> {
    let ev = Event::Exited {
        pid: h.pid(service),
        code: ExitCode(code),
        oom_killed: false,
    };
    feed(m, h, ev, ms)
}

const CHAIN: &str = r#"
shutdown_grace_ms = 1000
[[service]]
name = "db"
exec = ["/db"]
ready = { fd = 3 }
[[service]]
name = "api"
exec = ["/api"]
after = ["db"]
[[service]]
name = "web"
exec = ["/web"]
after = ["api"]
"#;
const DB: usize = 0;
const API: usize = 1;
const WEB: usize = 2;

#[test]
fn services_start_in_dependency_order_once_what_they_need_is_ready() {
    let (mut m, mut h) = (machine(CHAIN), Fake::default());
    let fx = feed(&mut m, &mut h, Event::Tick, 0);
    assert_eq!(starts(&fx), [DB], "api waits for db to say it is ready");
    assert!(matches!(
        m.state(DB),
        Some(State::Running { ready: false, .. })
    ));
    assert_eq!(starts(&feed(&mut m, &mut h, Event::Tick, 10)), []);

    let fx = feed(&mut m, &mut h, Event::Ready { service: DB }, 20);
    assert_eq!(notes(&fx), [Note::Ready(DB)]);
    assert!(fx.contains(&Effect::ForgetReadyPipe(DB)));
    // api is ready once exec'd, so web follows in the same turn.
    let fx = feed(&mut m, &mut h, Event::Tick, 30);
    assert_eq!(starts(&fx), [API, WEB]);
    assert_eq!(
        notes(&fx),
        [Note::Ready(API), Note::Ready(WEB)],
        "started services are ready at once"
    );
}

#[test]
fn a_second_ready_line_changes_nothing() {
    let (mut m, mut h) = (machine(CHAIN), Fake::default());
    feed(&mut m, &mut h, Event::Tick, 0);
    feed(&mut m, &mut h, Event::Ready { service: DB }, 1);
    let fx = feed(&mut m, &mut h, Event::Ready { service: DB }, 2);
    assert_eq!(notes(&fx), []);
}

#[test]
fn a_ready_file_is_polled_until_it_appears() {
    let mut m = machine(
        r#"
[[service]]
name = "s"
exec = ["/s"]
ready = { file = "/run/s.ready" }
[[service]]
name = "t"
exec = ["/t"]
after = ["s"]
"#,
    );
    let mut h = Fake::default();
    assert_eq!(starts(&feed(&mut m, &mut h, Event::Tick, 0)), [0]);
    assert_eq!(
        m.deadline(at(5)),
        Some(at(5 + POLL_MS)),
        "it polls for the file"
    );
    assert_eq!(feed(&mut m, &mut h, Event::Tick, 20), []);
    h.ready_files.insert(0);
    let fx = feed(&mut m, &mut h, Event::Tick, 40);
    assert_eq!(notes(&fx).first(), Some(&Note::Ready(0)));
    assert_eq!(starts(&fx), [1]);
}

#[test]
fn a_failed_exec_never_counts_as_ready_and_backs_off_when_it_exits() {
    let mut m = machine(&CHAIN.replace("ready = { fd = 3 }", ""));
    let mut h = Fake::default();
    h.exec_fails.insert(DB);
    let fx = feed(&mut m, &mut h, Event::Tick, 0);
    assert_eq!(starts(&fx), [DB], "api does not start after a failed exec");
    assert_eq!(notes(&fx), []);
    assert!(matches!(
        m.state(DB),
        Some(State::Running { ready: false, .. })
    ));
    let fx = reap(&mut m, &mut h, DB, 127, 5);
    assert_eq!(
        notes(&fx),
        [
            Note::Exit {
                service: DB,
                pid: h.pid(DB),
                status: 127,
                ran_ms: 5,
                oom_killed: false
            },
            Note::Backoff {
                service: DB,
                delay_ms: 100,
                failures: 1,
                restarts: 1
            }
        ]
    );
    assert!(
        fx.contains(&Effect::ExitTail(DB)),
        "a failure logs its last line"
    );
    assert!(fx.contains(&Effect::Sweep(DB)), "its leftovers are killed");
}

const CRASHER: &str = r#"
shutdown_grace_ms = 1000
[[service]]
name = "c"
exec = ["/c"]
restart = "always"
backoff_ms = 100
backoff_max_ms = 400
"#;

#[test]
fn a_crash_loop_backs_off_doubling_to_the_cap_and_a_healthy_run_resets_it() {
    let (mut m, mut h) = (machine(CRASHER), Fake::default());
    let mut now = 0;
    let mut delays = Vec::new();
    for round in 1..=5u32 {
        assert_eq!(starts(&feed(&mut m, &mut h, Event::Tick, now)), [0]);
        now += 50;
        let fx = reap(&mut m, &mut h, 0, 1, now);
        let Some(Note::Backoff {
            delay_ms,
            failures,
            restarts,
            ..
        }) = notes(&fx).last().copied()
        else {
            panic!("round {round}: no backoff in {fx:?}");
        };
        assert_eq!((failures, restarts), (round, round));
        assert_eq!(
            m.state(0),
            Some(State::Backoff {
                until: at(now + delay_ms)
            })
        );
        assert_eq!(m.deadline(at(now)), Some(at(now + delay_ms)));
        assert_eq!(
            starts(&feed(&mut m, &mut h, Event::Tick, now + delay_ms - 1)),
            [],
            "not before its time"
        );
        delays.push(delay_ms);
        now += delay_ms;
    }
    assert_eq!(delays, [100, 200, 400, 400, 400]);
    assert_eq!(m.restarts(0), 5);
    // A run as long as a healthy one starts the count again.
    feed(&mut m, &mut h, Event::Tick, now);
    now += HEALTHY_RUN_MS;
    let fx = reap(&mut m, &mut h, 0, 1, now);
    assert!(matches!(
        notes(&fx).last(),
        Some(Note::Backoff {
            delay_ms: 100,
            failures: 1,
            restarts: 6,
            ..
        })
    ));
}

#[test]
fn on_failure_restarts_only_failures_and_a_clean_exit_is_done() {
    let toml = r#"
[[service]]
name = "ok"
exec = ["/ok"]
restart = "on-failure"
[[service]]
name = "bad"
exec = ["/bad"]
restart = "on-failure"
"#;
    let (mut m, mut h) = (machine(toml), Fake::default());
    feed(&mut m, &mut h, Event::Tick, 0);
    assert_eq!(m.outcome("ok"), None);
    let fx = reap(&mut m, &mut h, 0, 0, 10);
    assert_eq!(m.state(0), Some(State::Done));
    assert!(notes(&fx).contains(&Note::Done {
        service: 0,
        status: 0
    }));
    assert!(
        !fx.contains(&Effect::ExitTail(0)),
        "a clean exit has no tail"
    );
    assert_eq!(m.outcome("ok"), Some(true));
    reap(&mut m, &mut h, 1, 3, 10);
    assert!(matches!(m.state(1), Some(State::Backoff { .. })));
    assert_eq!(m.outcome("bad"), None);
}

#[test]
fn a_one_shot_that_ends_with_an_on_exit_action_shuts_the_board_down() {
    let toml = r#"
[[service]]
name = "daemon"
exec = ["/d"]
[[service]]
name = "job"
exec = ["/job"]
restart = "never"
on_exit = "poweroff"
"#;
    let (mut m, mut h) = (machine(toml), Fake::default());
    feed(&mut m, &mut h, Event::Tick, 0);
    let fx = reap(&mut m, &mut h, 1, 2, 10);
    assert!(notes(&fx).contains(&Note::Done {
        service: 1,
        status: 2
    }));
    assert!(m.shutting_down());
    assert!(notes(&fx).contains(&Note::ShutdownBegin {
        action: PowerAction::Poweroff,
        orphans: 0
    }));
    assert!(fx.contains(&Effect::Term {
        service: 0,
        pid: h.pid(0)
    }));
    assert_eq!(m.finished(), None, "daemon still runs");
    reap(&mut m, &mut h, 0, 143, 20);
    feed(&mut m, &mut h, Event::Tick, 30);
    assert_eq!(m.finished(), Some(PowerAction::Poweroff));
}

#[test]
fn a_start_that_makes_no_process_backs_off_or_ends_for_good() {
    let (mut m, mut h) = (machine(CRASHER), Fake::default());
    h.no_process.insert(0);
    let fx = feed(&mut m, &mut h, Event::Tick, 0);
    assert!(matches!(
        notes(&fx).as_slice(),
        [Note::Backoff {
            delay_ms: 100,
            failures: 1,
            ..
        }]
    ));
    let toml = r#"
[[service]]
name = "once"
exec = ["/missing"]
restart = "never"
on_exit = "reboot"
"#;
    let (mut m, mut h) = (machine(toml), Fake::default());
    h.no_process.insert(0);
    let fx = feed(&mut m, &mut h, Event::Tick, 0);
    assert_eq!(
        notes(&fx),
        [
            Note::Done {
                service: 0,
                status: 127
            },
            Note::ShutdownBegin {
                action: PowerAction::Reboot,
                orphans: 0
            }
        ]
    );
    assert_eq!(m.finished(), Some(PowerAction::Reboot));
}

#[test]
fn a_backoff_that_ends_while_a_dependency_is_down_waits_for_it_again() {
    let (mut m, mut h) = (machine(CHAIN), Fake::default());
    feed(&mut m, &mut h, Event::Tick, 0);
    feed(&mut m, &mut h, Event::Ready { service: DB }, 1);
    feed(&mut m, &mut h, Event::Tick, 2);
    // api crashes, and db too before api's backoff ends.
    reap(&mut m, &mut h, API, 1, 10);
    reap(&mut m, &mut h, DB, 1, 11);
    let fx = feed(&mut m, &mut h, Event::Tick, 111);
    assert_eq!(
        starts(&fx),
        [DB],
        "db is due; api's dependency is not ready"
    );
    assert_eq!(m.state(API), Some(State::Waiting));
    feed(&mut m, &mut h, Event::Ready { service: DB }, 120);
    assert_eq!(starts(&feed(&mut m, &mut h, Event::Tick, 121)), [API]);
}

#[test]
fn the_operators_stop_terms_kills_after_the_grace_and_settles_when_the_cgroup_is_empty() {
    let (mut m, mut h) = (machine(CRASHER), Fake::default());
    feed(&mut m, &mut h, Event::Tick, 0);
    let pid = h.pid(0);
    let mut fx = Vec::new();
    assert_eq!(
        m.operate("c", ServiceVerb::Stop, at(100), &mut fx),
        Ok("stopping")
    );
    assert_eq!(
        fx,
        [
            Effect::Note(Note::Stop {
                service: 0,
                pid,
                operator: true
            }),
            Effect::Term { service: 0, pid }
        ]
    );
    assert_eq!(m.deadline(at(100)), Some(at(1100)), "the board's grace");
    assert_eq!(feed(&mut m, &mut h, Event::Tick, 1099), []);
    let fx = feed(&mut m, &mut h, Event::Tick, 1100);
    assert_eq!(
        fx,
        [
            Effect::Note(Note::GraceKill {
                service: 0,
                grace_ms: None
            }),
            Effect::Kill {
                service: 0,
                pid: Some(pid)
            }
        ]
    );
    h.populated.insert(0);
    let fx = reap(&mut m, &mut h, 0, 137, 1110);
    assert_eq!(
        notes(&fx),
        [Note::ExitWhileStopping {
            service: 0,
            pid,
            status: 137,
            shutdown: false
        }]
    );
    assert!(
        matches!(m.state(0), Some(State::Stopping { pid: None, .. })),
        "a stopped service is not restarted, whatever its policy"
    );
    assert_eq!(
        feed(&mut m, &mut h, Event::Tick, 1120),
        [],
        "a child is left"
    );
    h.populated.clear();
    let fx = feed(&mut m, &mut h, Event::Tick, 1140);
    assert_eq!(
        notes(&fx),
        [Note::Stopped {
            service: 0,
            after_ms: 1040,
            operator: true
        }]
    );
    assert_eq!(m.state(0), Some(State::Stopped));
    assert_eq!(starts(&feed(&mut m, &mut h, Event::Tick, 5000)), []);
}

#[test]
fn the_operators_restart_starts_it_again_once_stopped() {
    let (mut m, mut h) = (machine(CRASHER), Fake::default());
    feed(&mut m, &mut h, Event::Tick, 0);
    let mut fx = Vec::new();
    assert_eq!(
        m.operate("c", ServiceVerb::Restart, at(10), &mut fx),
        Ok("stopping")
    );
    reap(&mut m, &mut h, 0, 143, 20);
    let fx = feed(&mut m, &mut h, Event::Tick, 30);
    assert_eq!(
        starts(&fx),
        [0],
        "waiting again, and started in the same turn"
    );
    assert!(matches!(m.state(0), Some(State::Running { .. })));
    // A stop during the restart's stop cancels the start again.
    let mut fx = Vec::new();
    m.operate("c", ServiceVerb::Restart, at(40), &mut fx)
        .unwrap();
    m.operate("c", ServiceVerb::Stop, at(41), &mut fx).unwrap();
    reap(&mut m, &mut h, 0, 143, 50);
    assert_eq!(starts(&feed(&mut m, &mut h, Event::Tick, 60)), []);
    assert_eq!(m.state(0), Some(State::Stopped));
}

#[test]
fn the_operators_start_and_stop_of_idle_services() {
    let (mut m, mut h) = (machine(CHAIN), Fake::default());
    let mut fx = Vec::new();
    assert_eq!(
        m.operate("web", ServiceVerb::Start, at(0), &mut fx),
        Err(OperateError::AlreadyStarted("web".into())),
        "waiting counts as started"
    );
    assert_eq!(
        m.operate("nope", ServiceVerb::Stop, at(0), &mut fx),
        Err(OperateError::NoService("nope".into()))
    );
    assert_eq!(
        m.operate("web", ServiceVerb::Stop, at(0), &mut fx),
        Ok("stopped")
    );
    assert_eq!(fx, [Effect::Note(Note::StoppedIdle(WEB))]);
    assert_eq!(
        m.operate("web", ServiceVerb::Stop, at(0), &mut fx),
        Ok("stopped")
    );
    let mut fx = Vec::new();
    assert_eq!(
        m.operate("web", ServiceVerb::Start, at(1), &mut fx),
        Ok("waiting")
    );
    assert_eq!(fx, [Effect::Note(Note::OperatorStart(WEB))]);
    feed(&mut m, &mut h, Event::Shutdown(PowerAction::Halt), 2);
    assert_eq!(
        m.operate("web", ServiceVerb::Start, at(3), &mut fx),
        Err(OperateError::ShuttingDown)
    );
}

fn all_running(m: &mut Machine, h: &mut Fake) {
    feed(m, h, Event::Tick, 0);
    feed(m, h, Event::Ready { service: DB }, 1);
    feed(m, h, Event::Tick, 2);
    for i in [DB, API, WEB] {
        assert!(matches!(m.state(i), Some(State::Running { .. })), "{i}");
    }
}

fn terms(effects: &[Effect]) -> Vec<usize> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Term { service, .. } => Some(*service),
            _ => None,
        })
        .collect()
}

#[test]
fn shutdown_stops_services_in_reverse_dependency_order() {
    let (mut m, mut h) = (machine(CHAIN), Fake::default());
    all_running(&mut m, &mut h);
    let fx = feed(&mut m, &mut h, Event::Shutdown(PowerAction::Poweroff), 100);
    assert_eq!(terms(&fx), [WEB], "web first: nothing needs it");
    for (gone, next) in [(WEB, Some(API)), (API, Some(DB)), (DB, None)] {
        let fx = reap(&mut m, &mut h, gone, 143, 110);
        assert_eq!(
            notes(&fx),
            [Note::ExitWhileStopping {
                service: gone,
                pid: h.pid(gone),
                status: 143,
                shutdown: true
            }]
        );
        assert_eq!(m.finished(), None);
        let fx = feed(&mut m, &mut h, Event::Tick, 120);
        assert!(fx.contains(&Effect::RemoveCgroup(gone)));
        assert_eq!(terms(&fx), next.into_iter().collect::<Vec<_>>());
    }
    assert_eq!(m.finished(), Some(PowerAction::Poweroff));
}

#[test]
fn shutdown_kills_at_the_grace_and_gives_up_after_the_slack() {
    let (mut m, mut h) = (machine(CHAIN), Fake::default());
    all_running(&mut m, &mut h);
    feed(&mut m, &mut h, Event::Shutdown(PowerAction::Reboot), 0);
    let fx = feed(&mut m, &mut h, Event::Tick, 1000);
    assert_eq!(
        fx,
        [
            Effect::Note(Note::GraceKill {
                service: WEB,
                grace_ms: Some(1000)
            }),
            Effect::Kill {
                service: WEB,
                pid: Some(h.pid(WEB))
            }
        ]
    );
    // Killed, but never reaped (stuck in the kernel, say).
    assert_eq!(m.deadline(at(1001)), Some(at(1001 + POLL_MS)));
    assert_eq!(feed(&mut m, &mut h, Event::Tick, 1500), []);
    let fx = feed(&mut m, &mut h, Event::Tick, 1000 + SHUTDOWN_SLACK_MS);
    assert_eq!(notes(&fx), [DB, API, WEB].map(Note::Abandoned));
    assert_eq!(m.finished(), Some(PowerAction::Reboot));
}

#[test]
fn a_shutdown_stops_waiting_backing_off_and_done_services_at_once() {
    let (mut m, mut h) = (machine(CHAIN), Fake::default());
    feed(&mut m, &mut h, Event::Tick, 0);
    let fx = feed(&mut m, &mut h, Event::Shutdown(PowerAction::Halt), 1);
    // api and web never started; db is told to stop.
    assert!(fx.contains(&Effect::Sweep(WEB)) && fx.contains(&Effect::Sweep(API)));
    assert_eq!(terms(&fx), [DB]);
    assert_eq!(m.state(WEB), Some(State::Stopped));
    assert_eq!(
        starts(&feed(&mut m, &mut h, Event::Tick, 2)),
        [],
        "nothing starts once the board goes down"
    );
}

#[test]
fn orphans_are_counted_and_change_no_service() {
    let (mut m, mut h) = (machine(CRASHER), Fake::default());
    feed(&mut m, &mut h, Event::Tick, 0);
    let orphan = Event::Exited {
        pid: 4242,
        code: ExitCode(0),
        oom_killed: false,
    };
    assert_eq!(feed(&mut m, &mut h, orphan, 1), []);
    assert!(matches!(m.state(0), Some(State::Running { .. })));
    let fx = feed(&mut m, &mut h, Event::Shutdown(PowerAction::Halt), 2);
    assert_eq!(
        notes(&fx).first(),
        Some(&Note::ShutdownBegin {
            action: PowerAction::Halt,
            orphans: 1
        })
    );
}

#[test]
fn an_oom_kill_is_said_in_the_exit_note() {
    let (mut m, mut h) = (machine(CRASHER), Fake::default());
    feed(&mut m, &mut h, Event::Tick, 0);
    let ev = Event::Exited {
        pid: h.pid(0),
        code: ExitCode(137),
        oom_killed: true,
    };
    let fx = feed(&mut m, &mut h, ev, 1);
    assert!(matches!(
        notes(&fx).first(),
        Some(Note::Exit {
            oom_killed: true,
            status: 137,
            ..
        })
    ));
}

const POD: &str = r#"
[[pod]]
name = "duo"
services = ["web", "peer"]
volumes = ["shared"]

[[service]]
name = "peer"
bundle = "pod-peer"

[[service]]
name = "web"
bundle = "pod-web"
"#;
const PEER: usize = 0;
const POD_WEB: usize = 1;

#[test]
fn pod_members_start_after_its_first_and_go_as_one() {
    let (mut m, mut h) = (machine(POD), Fake::default());
    let fx = feed(&mut m, &mut h, Event::Tick, 0);
    assert_eq!(
        starts(&fx),
        [POD_WEB, PEER],
        "peer comes first in the config, but web leads the pod"
    );
    // A pod stops in reverse member order.
    let mut fx = Vec::new();
    assert_eq!(
        m.operate("duo", ServiceVerb::Stop, at(10), &mut fx),
        Ok("stopping")
    );
    assert_eq!(terms(&fx), [PEER, POD_WEB]);
    assert_eq!(
        notes(&fx).last(),
        Some(&Note::Pod {
            verb: ServiceVerb::Stop,
            pod: 0,
            members: 2
        })
    );
    reap(&mut m, &mut h, PEER, 143, 20);
    reap(&mut m, &mut h, POD_WEB, 143, 20);
    feed(&mut m, &mut h, Event::Tick, 30);
    let mut fx = Vec::new();
    assert_eq!(
        m.operate("duo", ServiceVerb::Start, at(40), &mut fx),
        Ok("waiting")
    );
    assert_eq!(
        starts(&feed(&mut m, &mut h, Event::Tick, 50)),
        [POD_WEB, PEER]
    );
    // Starting a pod whose members run already is no error.
    let mut fx = Vec::new();
    assert_eq!(
        m.operate("duo", ServiceVerb::Start, at(60), &mut fx),
        Ok("running")
    );
}

#[test]
fn nothing_is_operated_while_the_board_goes_down() {
    let (mut m, mut h) = (machine(POD), Fake::default());
    feed(&mut m, &mut h, Event::Tick, 0);
    feed(&mut m, &mut h, Event::Shutdown(PowerAction::Halt), 1);
    let mut fx = Vec::new();
    for name in ["duo", "web"] {
        assert_eq!(
            m.operate(name, ServiceVerb::Start, at(2), &mut fx),
            Err(OperateError::ShuttingDown)
        );
    }
    assert_eq!(fx, []);
}

#[test]
fn a_started_container_counts_as_ready_only_once_its_setup_reports() {
    let mut m = machine(&CHAIN.replace("ready = { fd = 3 }", ""));
    let mut h = Fake::default();
    drive(&mut m, &mut h, Event::Tick, at(0));
    assert_eq!(starts(&h.take()), [DB]);
    assert!(matches!(
        m.state(DB),
        Some(State::Running { ready: false, .. })
    ));
    drive(&mut m, &mut h, Event::Tick, at(1));
    assert_eq!(starts(&h.take()), [], "api waits for db's exec");
    let report = h.reports.remove(0);
    drive(&mut m, &mut h, report, at(2));
    let fx = h.take();
    assert_eq!(notes(&fx).first(), Some(&Note::Ready(DB)));
    assert_eq!(starts(&fx), [API], "the report's turn starts what waited");
}

#[test]
fn a_setup_report_that_comes_after_the_exit_changes_nothing() {
    let (mut m, mut h) = (machine(CRASHER), Fake::default());
    drive(&mut m, &mut h, Event::Tick, at(0));
    let report = h.reports.remove(0);
    let ev = Event::Exited {
        pid: h.pid(0),
        code: ExitCode(127),
        oom_killed: false,
    };
    drive(&mut m, &mut h, ev, at(1));
    h.take();
    drive(&mut m, &mut h, report, at(2));
    assert_eq!(h.take(), []);
    assert!(matches!(m.state(0), Some(State::Backoff { .. })));
}
