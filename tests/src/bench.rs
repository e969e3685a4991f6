//! Figures the benches (`benches/boot.rs`, `benches/kernel.rs`,
//! `benches/gateway.rs`) and the gateway load test read the same way.

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

/// The `q`-quantile (0–1, nearest rank) of sorted values; 0 when empty.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    let rank = (sorted.len() as f64 * q).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1))
        .copied()
        .unwrap_or_default()
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
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(
            (quantile(&v, 0.5), quantile(&v, 0.99), quantile(&v, 1.0)),
            (50, 99, 100)
        );
        assert_eq!(quantile(&[7], 0.99), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }
}
