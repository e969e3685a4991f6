//! Board-wide bounds on what a bundle's manifest asks for (`[containers]`
//! in the boot config): a limit left unset (0) gets the board's default,
//! one above the board's ceiling is cut to it, so no container runs
//! unbounded; and the bounds of the cgroup all runs share. Pure: the
//! numbers in, the numbers out.

use quilt_bundle::header::Limits;
use quilt_config::Containers;

/// `asked` as this board grants it. io limits are left as asked (0: no
/// cap), as a block device's speed is not the board's to promise.
pub fn bound(asked: &Limits, c: &Containers) -> Limits {
    let pick = |asked: u32, default: u32, max: u32| match asked {
        0 => default.min(max),
        n => n.min(max),
    };
    Limits {
        memory_mib: pick(asked.memory_mib, c.default_memory_mib, c.max_memory_mib),
        cpu_percent: u16::try_from(pick(
            u32::from(asked.cpu_percent),
            c.default_cpu_percent,
            c.max_cpu_percent,
        ))
        .unwrap_or(u16::MAX),
        tasks: pick(asked.tasks, c.default_tasks, c.max_tasks),
        open_files: pick(asked.open_files, c.default_open_files, c.max_open_files),
        io_mib_s: asked.io_mib_s,
        io_iops: asked.io_iops,
    }
}

/// The limits of the cgroup every run lives under, for a board with
/// `ram_bytes` of memory and `cpus` CPUs: the configured ones, else half
/// the RAM and every CPU but a quarter of one.
pub fn runs(c: &Containers, ram_bytes: u64, cpus: u32) -> quilt_config::Limits {
    let memory = match c.runs_memory_mib {
        Some(m) => u64::from(m) << 20,
        None => (ram_bytes / 2).max(64 << 20),
    };
    let cpu_percent = c
        .runs_cpu_percent
        .unwrap_or_else(|| (cpus.max(1) * 100).saturating_sub(25).max(50));
    quilt_config::Limits {
        memory_max: Some(memory),
        cpu_quota_us: Some(cpu_percent.saturating_mul(1000)),
        cpu_period_us: Some(100_000),
        pids_max: Some(c.runs_tasks),
        io_bps: None,
        io_iops: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(memory_mib: u32, tasks: u32) -> Limits {
        Limits {
            memory_mib,
            cpu_percent: 0,
            tasks,
            open_files: 0,
            io_mib_s: 0,
            io_iops: 0,
        }
    }

    #[test]
    fn unset_gets_the_default_and_too_much_the_ceiling() {
        let c = Containers::default();
        let l = bound(&asked(0, 0), &c);
        assert_eq!((l.memory_mib, l.tasks), (256, 64));
        assert_eq!((l.cpu_percent, l.open_files), (100, 1024));
        let l = bound(&asked(1 << 20, 1 << 30), &c);
        assert_eq!((l.memory_mib, l.tasks), (1024, 512));
        // What fits is kept.
        assert_eq!(bound(&asked(96, 48), &c).memory_mib, 96);
    }

    #[test]
    fn a_default_above_a_lowered_ceiling_is_cut_too() {
        let c = Containers {
            max_memory_mib: 128,
            ..Containers::default()
        };
        assert_eq!(bound(&asked(0, 0), &c).memory_mib, 128);
    }

    #[test]
    fn runs_share_half_the_ram_and_leave_cpu_for_the_rest() {
        let c = Containers::default();
        let l = runs(&c, 1 << 30, 2);
        assert_eq!(l.memory_max, Some(512 << 20));
        assert_eq!(l.cpu_quota_us, Some(175_000));
        assert_eq!(l.pids_max, Some(1024));
        let one = runs(&c, 1 << 30, 1);
        assert_eq!(one.cpu_quota_us, Some(75_000));
        let set = Containers {
            runs_memory_mib: Some(300),
            runs_cpu_percent: Some(150),
            ..Containers::default()
        };
        let l = runs(&set, 1 << 30, 4);
        assert_eq!(l.memory_max, Some(300 << 20));
        assert_eq!(l.cpu_quota_us, Some(150_000));
    }
}
