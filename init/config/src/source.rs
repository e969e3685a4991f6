//! Host side: TOML in, checked binary config out.

use crate::codec::encode;
use crate::model::BootConfig;
use crate::validate::ConfigError;
use std::fmt;

/// Why a TOML config does not compile.
#[derive(Debug)]
pub enum CompileError {
    /// Not TOML, an unknown key, a wrong type or over a capacity; the
    /// message carries the line and column.
    Parse(toml::de::Error),
    /// Parsed, but inconsistent.
    Invalid(ConfigError),
    /// Compiled form over the size init will read.
    TooLarge,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::Parse(e) => write!(f, "{e}"),
            CompileError::Invalid(e) => write!(f, "{e}"),
            CompileError::TooLarge => write!(f, "compiled config exceeds {MAX_COMPILED} bytes"),
        }
    }
}

impl std::error::Error for CompileError {}

/// Largest compiled config init reads.
pub const MAX_COMPILED: usize = 64 * 1024;

/// Parse and validate TOML, then encode it.
pub fn compile(text: &str) -> Result<Vec<u8>, CompileError> {
    let cfg: BootConfig = toml::from_str(text).map_err(CompileError::Parse)?;
    cfg.validate().map_err(CompileError::Invalid)?;
    let mut buf = vec![0u8; MAX_COMPILED];
    let n = encode(&cfg, &mut buf)
        .map_err(|_| CompileError::TooLarge)?
        .len();
    buf.truncate(n);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, PowerAction, Ready, Restart};

    const GOOD: &str = r#"
hostname = "edge"
modules = ["virtio_mmio"]
ctrl_alt_del = "poweroff"

[[service]]
name = "db"
exec = ["/bin/db", "--fast"]
ready = { fd = 3 }

[[service]]
name = "api"
exec = ["/bin/api"]
after = ["db"]
restart = "on-failure"
limits = { memory_max = 1048576, pids_max = 16, io_bps = 1048576 }

[[bus]]
topic = "calc.req"
slots = 128
mode = "drop-oldest"
"#;

    #[test]
    fn compiles_and_decodes() {
        let bin = compile(GOOD).unwrap();
        let cfg = decode(&bin).unwrap();
        assert_eq!(cfg.hostname.as_deref(), Some("edge"));
        assert_eq!(cfg.ctrl_alt_del, PowerAction::Poweroff);
        assert_eq!(cfg.services[0].ready, Ready::Fd(3));
        assert_eq!(cfg.services[1].restart, Restart::OnFailure);
        assert_eq!(cfg.services[1].limits.pids_max, Some(16));
        assert_eq!(cfg.services[1].limits.io_bps, Some(1 << 20));
        let c = &cfg.channels[0];
        assert_eq!(
            (
                c.topic.as_str(),
                c.slots,
                c.slot_size,
                c.mode,
                c.subscribers
            ),
            ("calc.req", 128, 4096, crate::model::BusMode::DropOldest, 4)
        );
        assert_eq!(crate::start_order(&cfg).unwrap().as_slice(), &[0, 1]);
    }

    #[test]
    fn errors_name_the_problem() {
        let unknown = compile("hostnme = \"x\"").unwrap_err().to_string();
        assert!(unknown.contains("hostnme"), "{unknown}");
        let cyc = r#"
[[service]]
name = "a"
exec = ["/a"]
after = ["b"]
[[service]]
name = "b"
exec = ["/b"]
after = ["a"]
"#;
        assert!(compile(cyc).unwrap_err().to_string().contains("cycle"));
        let huge = "[[bus]]\ntopic = \"t\"\nslots = 65536\nslot_size = 4096\n";
        let e = compile(huge).unwrap_err().to_string();
        assert!(e.contains("at most 64 MiB"), "{e}");
        let twice = "[[bus]]\ntopic = \"t\"\n[[bus]]\ntopic = \"t\"\n";
        let e = compile(twice).unwrap_err().to_string();
        assert!(e.contains("declared once"), "{e}");
        let io0 = "[[service]]\nname = \"a\"\nexec = [\"/a\"]\nlimits = { io_iops = 0 }\n";
        assert!(compile(io0).unwrap_err().to_string().contains("limit of 0"));
        let missing = "[[service]]\nname = \"a\"\nexec = [\"/a\"]\nafter = [\"zz\"]\n";
        let m = compile(missing).unwrap_err().to_string();
        assert!(m.contains("\"zz\"") && m.contains("not defined"), "{m}");
        let long = format!(
            "[[service]]\nname = \"{}\"\nexec = [\"/a\"]\n",
            "x".repeat(40)
        );
        assert!(compile(&long).is_err());
        let rel = "[[service]]\nname = \"a\"\nexec = [\"a\"]\n";
        assert!(compile(rel).unwrap_err().to_string().contains("absolute"));
    }

    #[test]
    fn net_destinations_are_canonical_ipv4() {
        let ok = compile("[[net]]\nto = \"10.0.2.2:8080\"\n").unwrap();
        assert_eq!(decode(&ok).unwrap().net[0].to.as_str(), "10.0.2.2:8080");
        for bad in [
            "api:80",
            "10.0.2.2",
            "10.0.2.2:0",
            "10.0.2.2:080",
            "[::1]:80",
        ] {
            let e = compile(&format!("[[net]]\nto = \"{bad}\"\n")).unwrap_err();
            assert!(e.to_string().contains("a.b.c.d:port"), "{bad}: {e}");
        }
        let twice = "[[net]]\nto = \"1.2.3.4:5\"\n[[net]]\nto = \"1.2.3.4:5\"\n";
        assert!(compile(twice).is_err());
    }

    #[test]
    fn container_ceilings_default_and_refuse_unlimited() {
        let c = decode(&compile("").unwrap()).unwrap().containers;
        assert_eq!((c.default_memory_mib, c.max_memory_mib), (256, 1024));
        assert_eq!((c.runs_memory_mib, c.runs_tasks), (None, 1024));
        let set = compile("[containers]\nmax_memory_mib = 512\nruns_memory_mib = 300\n").unwrap();
        let c = decode(&set).unwrap().containers;
        assert_eq!((c.max_memory_mib, c.runs_memory_mib), (512, Some(300)));
        for bad in [
            "[containers]\ndefault_memory_mib = 2048\n",
            "[containers]\nmax_tasks = 0\ndefault_tasks = 0\n",
            "[containers]\nruns_memory_mib = 0\n",
        ] {
            let e = compile(bad).unwrap_err().to_string();
            assert!(
                e.contains("[containers]") && e.contains("unlimited"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn usb_section_defaults_and_checks() {
        assert_eq!(decode(&compile("").unwrap()).unwrap().usb, None);
        let on = decode(&compile("[usb]\n").unwrap()).unwrap().usb.unwrap();
        assert!(on.enabled);
        assert_eq!(on.mountpoint.as_str(), "/run/quilt/usb");
        let types: Vec<&str> = on.fstypes.iter().map(|t| t.as_str()).collect();
        assert_eq!(types, ["vfat", "ext4"]);
        let t = "[usb]\nenabled = false\nfstypes = [\"exfat\"]\nmountpoint = \"/mnt/stick\"\n";
        let u = decode(&compile(t).unwrap()).unwrap().usb.unwrap();
        assert!(!u.enabled);
        assert_eq!(u.fstypes[0].as_str(), "exfat");
        assert_eq!(u.mountpoint.as_str(), "/mnt/stick");
        for bad in [
            "[usb]\nfstypes = []\n",
            "[usb]\nfstypes = [\"vfat\", \"vfat\"]\n",
            "[usb]\nfstypes = [\"vfat,ro\"]\n",
            "[usb]\nmountpoint = \"run/usb\"\n",
            "[usb]\nmountpoint = \"/\"\n",
            "[usb]\nmountpoint = \"/run/../etc\"\n",
        ] {
            let e = compile(bad).unwrap_err().to_string();
            assert!(e.contains("[usb]"), "{bad}: {e}");
        }
        let nine =
            "[usb]\nfstypes = [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\", \"g\", \"h\", \"i\"]\n";
        assert!(compile(nine).is_err());
    }

    #[test]
    fn order_puts_dependencies_first() {
        let t = r#"
[[service]]
name = "c"
exec = ["/c"]
after = ["b", "a"]
[[service]]
name = "b"
exec = ["/b"]
after = ["a"]
[[service]]
name = "a"
exec = ["/a"]
"#;
        let cfg = decode(&compile(t).unwrap()).unwrap();
        assert_eq!(crate::start_order(&cfg).unwrap().as_slice(), &[2, 1, 0]);
    }

    #[test]
    fn a_plain_service_may_get_a_control_socket_with_named_verbs() {
        let t = "[[service]]\nname = \"gw\"\nexec = [\"/gw\"]\ncontrol = [\"list\", \"run\", \"logs\"]\n";
        let cfg = decode(&compile(t).unwrap()).unwrap();
        assert_eq!(
            cfg.services[0].control.as_slice(),
            [crate::Verb::List, crate::Verb::Run, crate::Verb::Logs]
        );
        let none = "[[service]]\nname = \"s\"\nexec = [\"/s\"]\n";
        assert!(decode(&compile(none).unwrap()).unwrap().services[0]
            .control
            .is_empty());
        for bad in [
            "[[service]]\nname = \"gw\"\nexec = [\"/gw\"]\ncontrol = [\"run\", \"run\"]\n",
            "[[service]]\nname = \"gw\"\nbundle = \"b\"\ncontrol = [\"run\"]\n",
        ] {
            assert!(
                matches!(
                    compile(bad),
                    Err(CompileError::Invalid(crate::ConfigError::BadControl(_)))
                ),
                "{bad}"
            );
        }
        let unknown = "[[service]]\nname = \"gw\"\nexec = [\"/gw\"]\ncontrol = [\"root\"]\n";
        assert!(matches!(compile(unknown), Err(CompileError::Parse(_))));
    }
}
