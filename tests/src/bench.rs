//! Figures the boot benches (`benches/boot.rs`, `benches/kernel.rs`) read
//! the same way.

/// The kernel's timestamp (seconds since its clock started) on its
/// `reboot: Power down` console line.
pub fn power_down_t(console: &str) -> Option<f64> {
    let line = console.lines().find(|l| l.contains("reboot: Power down"))?;
    let inner = line.split('[').nth(1)?.split(']').next()?;
    inner.trim().parse().ok()
}

/// Boots per kernel or init: `QUILT_BOOTS`, else 5.
pub fn boots() -> usize {
    std::env::var("QUILT_BOOTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
}

/// The median of `v` (the upper one for an even count). Panics on an empty
/// `v`: a bench without samples has nothing to report.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_power_down_stamp_and_medians() {
        let con = "[    1.5] foo\n[    7.082139] reboot: Power down\n";
        assert_eq!(power_down_t(con), Some(7.082139));
        assert_eq!(power_down_t("[ 1.0] reboot: Restarting"), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 3.0);
    }
}
