//! quilt-init's counters since boot and its own figures, for the control
//! API's `Stats` (quiltd turns them into metrics): how runs and install
//! jobs ended, and this process's resident memory and open fds. Counting
//! is a few additions; the figures are two small reads of `/proc/self`.

use quilt_proto::installer::{RefusalReason, Report, StoreUsage};
use quilt_proto::RunResult;

/// How a run ended, as counted.
const RUN_OUTCOMES: [&str; 4] = ["ok", "failed", "oom", "timeout"];

/// Runs that ended, by outcome.
#[derive(Debug, Default)]
pub struct RunCounts([u64; RUN_OUTCOMES.len()]);

impl RunCounts {
    /// Count a run that ended with `r`.
    pub fn add(&mut self, r: &RunResult) {
        let i = if r.oom_killed {
            2
        } else if r.timed_out {
            3
        } else if r.status != 0 {
            1
        } else {
            0
        };
        if let Some(n) = self.0.get_mut(i) {
            *n += 1;
        }
    }

    /// (outcome, count), every outcome.
    pub fn list(&self) -> Vec<(String, u64)> {
        RUN_OUTCOMES
            .iter()
            .zip(self.0)
            .map(|(o, n)| ((*o).to_owned(), n))
            .collect()
    }
}

/// Install jobs' reports, by outcome, and the store's size they last
/// reported.
#[derive(Debug, Default)]
pub struct InstallCounts {
    installed: u64,
    unchanged: u64,
    removed: u64,
    refused: [u64; RefusalReason::ALL.len()],
    store: Option<StoreUsage>,
}

impl InstallCounts {
    /// Count one report of a finished job (staging reports are not
    /// installs and are not counted).
    pub fn add(&mut self, r: &Report) {
        match r {
            Report::Installed {
                already_installed: false,
                ..
            } => self.installed += 1,
            Report::Installed { .. } => self.unchanged += 1,
            Report::Removed { .. } => self.removed += 1,
            Report::Refused { reason, .. } => {
                if let Some(n) = self.refused.get_mut(reason.index()) {
                    *n += 1;
                }
            }
            Report::Store(u) => self.store = Some(*u),
            Report::Pending { .. } | Report::Staged { .. } => {}
        }
    }

    /// (outcome, count): the three kinds of success and refusals.
    pub fn list(&self) -> Vec<(String, u64)> {
        vec![
            ("installed".to_owned(), self.installed),
            ("unchanged".to_owned(), self.unchanged),
            ("removed".to_owned(), self.removed),
            ("refused".to_owned(), self.refused.iter().sum()),
        ]
    }

    /// (reason, count) for each reason that occurred.
    pub fn refusals(&self) -> Vec<(String, u64)> {
        RefusalReason::ALL
            .iter()
            .zip(self.refused)
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (r.label().to_owned(), n))
            .collect()
    }

    /// What the store held after the last job that reported it.
    pub fn store(&self) -> Option<StoreUsage> {
        self.store
    }
}

/// This process's resident memory in bytes (`VmRSS`), 0 if unreadable.
pub fn own_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// This process's open file descriptors (entries of `/proc/self/fd`, less
/// the one reading it), 0 if unreadable.
pub fn own_fds() -> u32 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            u32::try_from(d.count())
                .unwrap_or(u32::MAX)
                .saturating_sub(1)
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran(status: i32, oom_killed: bool, timed_out: bool) -> RunResult {
        RunResult {
            status,
            oom_killed,
            timed_out,
            stdout: Vec::new(),
            stdout_truncated: false,
            stderr_tail: Vec::new(),
            micros: 0,
        }
    }

    #[test]
    fn runs_are_counted_by_how_they_ended() {
        let mut c = RunCounts::default();
        for r in [
            ran(0, false, false),
            ran(0, false, false),
            ran(1, false, false),
            ran(137, true, false),
            ran(137, false, true),
        ] {
            c.add(&r);
        }
        let l = c.list();
        assert_eq!(
            l,
            vec![
                ("ok".to_owned(), 2),
                ("failed".to_owned(), 1),
                ("oom".to_owned(), 1),
                ("timeout".to_owned(), 1)
            ]
        );
    }

    #[test]
    fn installs_are_counted_by_outcome_and_refusals_by_reason() {
        let mut c = InstallCounts::default();
        let installed = |already| Report::Installed {
            name: "b".into(),
            version: 1,
            chunks: 1,
            chunks_written: 1,
            already_installed: already,
        };
        c.add(&installed(false));
        c.add(&installed(true));
        c.add(&Report::Removed { name: "b".into() });
        for reason in [
            RefusalReason::UnknownSigner,
            RefusalReason::UnknownSigner,
            RefusalReason::Tampered,
        ] {
            c.add(&Report::Refused {
                code: quilt_proto::ErrorCode::Failed,
                reason,
                message: String::new(),
            });
        }
        c.add(&Report::Pending { name: "fw".into() });
        assert_eq!(c.store(), None);
        for bytes in [10, 7] {
            c.add(&Report::Store(StoreUsage { chunks: 1, bytes }));
        }
        assert_eq!(
            c.store(),
            Some(StoreUsage {
                chunks: 1,
                bytes: 7
            })
        );
        assert_eq!(
            c.refusals(),
            vec![("unknown-signer".to_owned(), 2), ("tampered".to_owned(), 1)]
        );
        let l = c.list();
        assert_eq!(
            l,
            vec![
                ("installed".to_owned(), 1),
                ("unchanged".to_owned(), 1),
                ("removed".to_owned(), 1),
                ("refused".to_owned(), 3)
            ]
        );
    }

    #[test]
    fn own_figures_are_read_from_proc() {
        assert!(own_rss_bytes() > 0);
        let before = own_fds();
        let f = std::fs::File::open("/proc/self/status").unwrap();
        assert_eq!(own_fds(), before + 1);
        drop(f);
    }
}
