//! Pure supervision decisions: restart or not, how long to back off, which
//! services may be stopped now. No syscalls, so every rule is unit-tested.

use quilt_config::{BootConfig, Restart};

/// A run at least this long counts as healthy and resets the backoff.
pub const HEALTHY_RUN_MS: u64 = 10_000;

/// How a process ended: exit code, or `128 + signal` like a shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitCode(pub i32);

impl ExitCode {
    /// From a raw `waitpid` status.
    pub fn from_wait(status: rustix::process::WaitStatus) -> ExitCode {
        if let Some(code) = status.exit_status() {
            ExitCode(code)
        } else if let Some(sig) = status.terminating_signal() {
            ExitCode(128 + sig)
        } else {
            ExitCode(255)
        }
    }

    /// Zero.
    pub fn success(self) -> bool {
        self.0 == 0
    }
}

/// Whether the policy restarts a service that ended with `code`.
pub fn should_restart(policy: Restart, code: ExitCode) -> bool {
    match policy {
        Restart::Always => true,
        Restart::OnFailure => !code.success(),
        Restart::Never => false,
    }
}

/// Restart delay after `failures` consecutive quick exits (1-based):
/// `initial · 2^(failures-1)`, capped at `max`.
pub fn backoff_ms(initial: u32, max: u32, failures: u32) -> u64 {
    let shift = failures.saturating_sub(1).min(32);
    let d = u64::from(initial).checked_shl(shift).unwrap_or(u64::MAX);
    d.min(u64::from(max))
}

/// Consecutive-failure count after a run of `ran_ms`.
pub fn next_failures(prev: u32, ran_ms: u64) -> u32 {
    if ran_ms >= HEALTHY_RUN_MS {
        1
    } else {
        prev.saturating_add(1)
    }
}

/// At shutdown, service `i` may be told to stop once nothing that starts
/// after it (lists it in `after`) is still alive: the reverse of start order.
pub fn may_stop(cfg: &BootConfig, i: usize, alive: &[bool]) -> bool {
    let Some(name) = cfg.services.get(i).map(|s| &s.name) else {
        return true;
    };
    !cfg.services.iter().enumerate().any(|(j, s)| {
        j != i && alive.get(j).copied().unwrap_or(false) && s.after.iter().any(|d| d == name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let v: Vec<u64> = (1..=8).map(|f| backoff_ms(100, 1000, f)).collect();
        assert_eq!(v, [100, 200, 400, 800, 1000, 1000, 1000, 1000]);
        assert_eq!(backoff_ms(100, 30_000, 1000), 30_000);
        assert_eq!(
            backoff_ms(u32::MAX, u32::MAX, u32::MAX),
            u64::from(u32::MAX)
        );
    }

    #[test]
    fn a_healthy_run_resets_the_count() {
        assert_eq!(next_failures(5, 50), 6);
        assert_eq!(next_failures(5, HEALTHY_RUN_MS), 1);
        assert_eq!(next_failures(u32::MAX, 0), u32::MAX);
    }

    #[test]
    fn restart_policies() {
        assert!(should_restart(Restart::Always, ExitCode(0)));
        assert!(!should_restart(Restart::OnFailure, ExitCode(0)));
        assert!(should_restart(Restart::OnFailure, ExitCode(137)));
        assert!(!should_restart(Restart::Never, ExitCode(1)));
    }

    #[test]
    fn shutdown_goes_in_reverse_dependency_order() {
        let cfg = quilt_config::decode(&quilt_config_test_bytes(
            r#"
[[service]]
name = "db"
exec = ["/db"]
[[service]]
name = "api"
exec = ["/api"]
after = ["db"]
[[service]]
name = "web"
exec = ["/web"]
after = ["api"]
[[service]]
name = "lone"
exec = ["/lone"]
"#,
        ))
        .unwrap();
        let all = [true, true, true, true];
        assert!(!may_stop(&cfg, 0, &all), "db waits for api");
        assert!(!may_stop(&cfg, 1, &all), "api waits for web");
        assert!(may_stop(&cfg, 2, &all));
        assert!(may_stop(&cfg, 3, &all));
        assert!(may_stop(&cfg, 1, &[true, true, false, true]));
        assert!(may_stop(&cfg, 0, &[true, false, false, false]));
    }

    fn quilt_config_test_bytes(toml: &str) -> Vec<u8> {
        quilt_config::compile(toml).unwrap()
    }
}
