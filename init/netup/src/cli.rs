//! The command line, parsed by a pure function into a [`Command`] (no
//! clap: the binary stays small, and the grammar is a handful of words).

use std::net::Ipv4Addr;

/// Where DNS servers go unless `--resolv` says otherwise.
pub const RESOLV_CONF: &str = "/run/quilt/resolv.conf";

pub const USAGE: &str = "\
usage: quilt-net dhcp IFACE [--ready-fd N] [--resolv PATH]
       quilt-net static IFACE ADDR/PREFIX [--gateway IP] [--dns IP]... [--ready-fd N] [--resolv PATH] [--once]

Brings `lo` and IFACE up and gives IFACE an IPv4 address, a default route
and DNS servers (written to /run/quilt/resolv.conf). Run it as a service
from the boot config, never by hand on a running board:

  [[service]]
  name = \"net\"
  exec = [\"/usr/lib/quilt/quilt-net\", \"dhcp\", \"eth0\", \"--ready-fd\", \"3\"]
  ready = { fd = 3 }

dhcp      asks a DHCPv4 server, then stays up to renew the lease (at T1;
          rebinds at T2; starts over when it expires or the server says NAK)
static    sets ADDR/PREFIX (e.g. 10.0.2.15/24), and --gateway as the default
          route; stays up (so restart = \"always\" does not loop) unless --once
--ready-fd N   write a line to fd N once the address is up (ready = { fd = N })
--resolv PATH  where DNS servers go (default /run/quilt/resolv.conf)

Each state change is one `event=net-... key=value` line on stdout.
Exit status: 0 done (--once), 1 the network could not be set up, 2 bad usage.";

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Dhcp(Common),
    Static {
        common: Common,
        addr: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
        dns: Vec<Ipv4Addr>,
        once: bool,
    },
}

/// Options both modes take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    pub iface: String,
    pub ready_fd: Option<i32>,
    pub resolv: String,
}

/// Why a command line was refused (printed with [`USAGE`], exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("no mode given: `dhcp` or `static`")]
    NoMode,
    #[error("unknown mode {0:?}: `dhcp` or `static`")]
    UnknownMode(String),
    #[error("no interface given")]
    NoInterface,
    #[error("interface name {0:?} is not 1-15 bytes of letters, digits, '.', '-' or '_'")]
    BadInterface(String),
    #[error("`static` needs an address as ADDR/PREFIX, e.g. 10.0.2.15/24")]
    NoAddress,
    #[error("{0:?} is not an IPv4 address with a prefix length 0-32 (e.g. 10.0.2.15/24)")]
    BadCidr(String),
    #[error("{flag} needs {what}, got {got:?}")]
    BadValue {
        flag: &'static str,
        what: &'static str,
        got: String,
    },
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    #[error("unknown argument {0:?}")]
    Unknown(String),
    #[error("{0} is only for `static`")]
    StaticOnly(&'static str),
    #[error("at most 3 --dns servers (resolv.conf's limit)")]
    TooManyDns,
}

/// A Linux interface name: 1–15 bytes (IFNAMSIZ less the NUL), no `/`,
/// whitespace or NUL; kept to the characters boards actually use.
pub fn valid_iface(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && name != "."
        && name != ".."
}

/// `a.b.c.d/n` with n in 0..=32.
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, prefix) = s.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    // Digits only: "+24" and " 24" are refused.
    if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let prefix: u8 = prefix.parse().ok()?;
    (prefix <= 32).then_some((addr, prefix))
}

/// The netmask of a prefix length (0..=32).
pub fn netmask(prefix: u8) -> Ipv4Addr {
    let bits = u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0);
    Ipv4Addr::from(bits)
}

/// The prefix length of a netmask, if it is one (contiguous ones).
pub fn prefix_of(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// Parse the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, UsageError> {
    let mut it = args.iter().map(String::as_str);
    let mode = match it.next() {
        None => return Err(UsageError::NoMode),
        Some("-h" | "--help" | "help") => return Ok(Command::Help),
        Some(m @ ("dhcp" | "static")) => m,
        Some(other) => return Err(UsageError::UnknownMode(other.to_owned())),
    };
    let iface = match it.next() {
        None => return Err(UsageError::NoInterface),
        Some("-h" | "--help") => return Ok(Command::Help),
        Some(i) if valid_iface(i) => i.to_owned(),
        Some(i) => return Err(UsageError::BadInterface(i.to_owned())),
    };
    let mut cidr = None;
    if mode == "static" {
        match it.next() {
            Some("-h" | "--help") => return Ok(Command::Help),
            Some(s) if !s.starts_with('-') => {
                cidr = Some(parse_cidr(s).ok_or_else(|| UsageError::BadCidr(s.to_owned()))?)
            }
            _ => return Err(UsageError::NoAddress),
        }
    }
    let mut common = Common {
        iface,
        ready_fd: None,
        resolv: RESOLV_CONF.to_owned(),
    };
    let (mut gateway, mut dns, mut once) = (None, Vec::new(), false);
    let ip = |flag: &'static str, v: Option<&str>| -> Result<Ipv4Addr, UsageError> {
        let v = v.ok_or(UsageError::MissingValue(flag))?;
        v.parse().map_err(|_| UsageError::BadValue {
            flag,
            what: "an IPv4 address",
            got: v.to_owned(),
        })
    };
    while let Some(arg) = it.next() {
        match arg {
            "-h" | "--help" => return Ok(Command::Help),
            "--ready-fd" => {
                let v = it.next().ok_or(UsageError::MissingValue("--ready-fd"))?;
                let fd = v
                    .parse::<i32>()
                    .ok()
                    .filter(|fd| (3..=9).contains(fd))
                    .ok_or_else(|| UsageError::BadValue {
                        flag: "--ready-fd",
                        what: "a descriptor 3-9",
                        got: v.to_owned(),
                    })?;
                common.ready_fd = Some(fd);
            }
            "--resolv" => {
                let v = it.next().ok_or(UsageError::MissingValue("--resolv"))?;
                if !v.starts_with('/') {
                    return Err(UsageError::BadValue {
                        flag: "--resolv",
                        what: "an absolute path",
                        got: v.to_owned(),
                    });
                }
                common.resolv = v.to_owned();
            }
            "--gateway" if mode == "static" => gateway = Some(ip("--gateway", it.next())?),
            "--dns" if mode == "static" => {
                if dns.len() == 3 {
                    return Err(UsageError::TooManyDns);
                }
                dns.push(ip("--dns", it.next())?);
            }
            "--once" if mode == "static" => once = true,
            "--gateway" => return Err(UsageError::StaticOnly("--gateway")),
            "--dns" => return Err(UsageError::StaticOnly("--dns")),
            "--once" => return Err(UsageError::StaticOnly("--once")),
            other => return Err(UsageError::Unknown(other.to_owned())),
        }
    }
    Ok(match cidr {
        None => Command::Dhcp(common),
        Some((addr, prefix)) => Command::Static {
            common,
            addr,
            prefix,
            gateway,
            dns,
            once,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn dhcp_and_static_parse() {
        assert_eq!(
            parse(&args("dhcp eth0 --ready-fd 3")),
            Ok(Command::Dhcp(Common {
                iface: "eth0".into(),
                ready_fd: Some(3),
                resolv: RESOLV_CONF.into()
            }))
        );
        let Ok(Command::Static {
            addr,
            prefix,
            gateway,
            dns,
            once,
            ..
        }) = parse(&args(
            "static eth0 10.0.2.15/24 --gateway 10.0.2.2 --dns 10.0.2.3 --once",
        ))
        else {
            panic!("static did not parse");
        };
        assert_eq!(addr, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(prefix, 24);
        assert_eq!(gateway, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(dns, vec![Ipv4Addr::new(10, 0, 2, 3)]);
        assert!(once);
        assert_eq!(parse(&args("--help")), Ok(Command::Help));
    }

    #[test]
    fn bad_input_is_refused_with_its_reason() {
        assert_eq!(parse(&[]), Err(UsageError::NoMode));
        assert_eq!(
            parse(&args("ppp eth0")),
            Err(UsageError::UnknownMode("ppp".into()))
        );
        assert_eq!(parse(&args("dhcp")), Err(UsageError::NoInterface));
        assert_eq!(
            parse(&args("dhcp ../etc")),
            Err(UsageError::BadInterface("../etc".into()))
        );
        assert_eq!(
            parse(&args("dhcp abcdefghijklmnop")),
            Err(UsageError::BadInterface("abcdefghijklmnop".into()))
        );
        assert_eq!(parse(&args("static eth0")), Err(UsageError::NoAddress));
        for bad in [
            "10.0.2.300/24",
            "10.0.2.15",
            "10.0.2.15/33",
            "10.0.2.15/+4",
            "x/24",
        ] {
            assert_eq!(
                parse(&args(&format!("static eth0 {bad}"))),
                Err(UsageError::BadCidr(bad.into()))
            );
        }
        assert_eq!(
            parse(&args("dhcp eth0 --gateway 10.0.2.2")),
            Err(UsageError::StaticOnly("--gateway"))
        );
        assert!(matches!(
            parse(&args("dhcp eth0 --ready-fd 1")),
            Err(UsageError::BadValue { .. })
        ));
        assert_eq!(
            parse(&args("dhcp eth0 --ready-fd")),
            Err(UsageError::MissingValue("--ready-fd"))
        );
        assert_eq!(
            parse(&args(
                "static eth0 1.2.3.4/8 --dns 1.1.1.1 --dns 1.1.1.2 --dns 1.1.1.3 --dns 1.1.1.4"
            )),
            Err(UsageError::TooManyDns)
        );
    }

    #[test]
    fn masks_and_prefixes_round_trip() {
        for p in 0..=32u8 {
            assert_eq!(prefix_of(netmask(p)), Some(p));
        }
        assert_eq!(netmask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(prefix_of(Ipv4Addr::new(255, 0, 255, 0)), None);
    }
}
