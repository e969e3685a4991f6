//! The `quilt.*` parameters of the kernel command line: a pure function over
//! the text of `/proc/cmdline`, so it is tested without booting.

use quilt_config::PowerAction;

/// Most unknown `quilt.*` keys reported back.
const MAX_UNKNOWN: usize = 8;

/// What the command line asks of init. Absent keys stay `None`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cmdline<'a> {
    /// `quilt.config=PATH`: the compiled boot config (default `/etc/quilt/boot.bin`).
    pub config: Option<&'a str>,
    /// `quilt.hostname=NAME`: overrides the config.
    pub hostname: Option<&'a str>,
    /// `quilt.fatal=reboot|poweroff|halt|ignore`: overrides the config.
    pub fatal: Option<PowerAction>,
    /// `quilt.fatal_delay=SECONDS`.
    pub fatal_delay_s: Option<u32>,
    /// `quilt.debug.hang_after=SECONDS`: test hook that wedges the event
    /// loop, to prove the hardware watchdog then resets the board.
    pub hang_after_s: Option<u32>,
    /// `quilt.slot=a|b`: the root slot whose kernel the boot loader started
    /// (its entry says so; see bootcount.rs).
    pub slot: Option<&'a str>,
    /// `quilt.*` keys this build does not know (logged, then ignored).
    pub unknown: heapless::Vec<&'a str, MAX_UNKNOWN>,
    /// `quilt.*` keys whose value did not parse.
    pub invalid: heapless::Vec<&'a str, MAX_UNKNOWN>,
}

/// Split like the kernel does: on spaces, except inside double quotes.
fn words(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text.trim_start();
    core::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut quoted = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    quoted = !quoted;
                }
                c.is_ascii_whitespace() && !quoted
            })
            .map_or(rest.len(), |(i, _)| i);
        let (word, tail) = rest.split_at(end);
        rest = tail.trim_start();
        Some(word)
    })
}

fn power_action(v: &str) -> Option<PowerAction> {
    match v {
        "reboot" => Some(PowerAction::Reboot),
        "poweroff" => Some(PowerAction::Poweroff),
        "halt" => Some(PowerAction::Halt),
        "ignore" => Some(PowerAction::Ignore),
        _ => None,
    }
}

/// Parse the `quilt.*` parameters out of a kernel command line.
pub fn parse(text: &str) -> Cmdline<'_> {
    let mut c = Cmdline::default();
    for word in words(text) {
        let Some(param) = word.strip_prefix("quilt.") else {
            continue;
        };
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        let value = value.trim_matches('"');
        let ok = match key {
            "config" => set(&mut c.config, value),
            "hostname" => set(&mut c.hostname, value),
            "slot" => set(&mut c.slot, value),
            "fatal" => power_action(value).map(|a| c.fatal = Some(a)).is_some(),
            "fatal_delay" => value.parse().map(|v| c.fatal_delay_s = Some(v)).is_ok(),
            "debug.hang_after" => value.parse().map(|v| c.hang_after_s = Some(v)).is_ok(),
            _ => {
                let _ = c.unknown.push(word);
                continue;
            }
        };
        if !ok {
            let _ = c.invalid.push(word);
        }
    }
    c
}

fn set<'a>(slot: &mut Option<&'a str>, value: &'a str) -> bool {
    if value.is_empty() {
        return false;
    }
    *slot = Some(value);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_quilt_keys_and_ignores_the_rest() {
        let c = parse(
            "console=ttyS0 quiet quilt.config=/etc/x.bin quilt.hostname=\"edge 1\" \
             panic=-1 quilt.fatal=poweroff quilt.fatal_delay=3",
        );
        assert_eq!(c.config, Some("/etc/x.bin"));
        assert_eq!(c.hostname, Some("edge 1"));
        assert_eq!(c.fatal, Some(PowerAction::Poweroff));
        assert_eq!(c.fatal_delay_s, Some(3));
        assert!(c.unknown.is_empty() && c.invalid.is_empty());
    }

    #[test]
    fn reports_unknown_and_invalid_keys() {
        let c = parse("quilt.bogus=1 quilt.fatal=explode quilt.fatal_delay=x quilt.config=");
        assert_eq!(c.unknown.as_slice(), &["quilt.bogus=1"]);
        assert_eq!(
            c.invalid.as_slice(),
            &[
                "quilt.fatal=explode",
                "quilt.fatal_delay=x",
                "quilt.config="
            ]
        );
        assert_eq!(c.fatal, None);
        assert_eq!(c.config, None);
    }

    #[test]
    fn empty_and_hostile_lines_do_not_panic() {
        assert_eq!(parse(""), Cmdline::default());
        let many = "quilt.x ".repeat(1000);
        assert_eq!(parse(&many).unknown.len(), MAX_UNKNOWN);
        let _ = parse("\"unterminated quilt.config=/a");
        let _ = parse("quilt.=\u{0} quilt.hostname=\"\" ===");
    }

    #[test]
    fn last_value_wins() {
        let c = parse("quilt.hostname=a quilt.hostname=b\n");
        assert_eq!(c.hostname, Some("b"));
    }
}
