//! Kernel uevents as they come off a `NETLINK_KOBJECT_UEVENT` socket:
//! `ACTION@DEVPATH`, then `KEY=VALUE` fields, each ended by a NUL. Pure
//! parsing over a borrowed buffer, no allocation and no I/O, so it is unit
//! tested here and fuzzed (`fuzz/fuzz_targets/uevent.rs` includes this
//! file as it is: it must keep depending on `core` only).

/// Largest message read; the kernel's own limit is 2 KiB of fields
/// (`UEVENT_BUFFER_SIZE`) plus the header.
pub const MAX_MESSAGE: usize = 8192;

/// Most fields looked at in one message.
const MAX_FIELDS: usize = 64;

/// What happened to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The device appeared.
    Add,
    /// The device is gone.
    Remove,
    /// Anything else (`change`, `move`, `bind`, `unbind`, `online`, ...).
    Other,
}

impl Action {
    fn from_str(s: &str) -> Action {
        match s {
            "add" => Action::Add,
            "remove" => Action::Remove,
            _ => Action::Other,
        }
    }
}

/// The fields of one uevent that quilt-init acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uevent<'a> {
    /// From the header, and `ACTION=` agrees.
    pub action: Action,
    /// The sysfs path below `/sys`, e.g. `/devices/.../block/sda/sda1`.
    pub devpath: &'a str,
    /// `SUBSYSTEM=`, e.g. `block`.
    pub subsystem: Option<&'a str>,
    /// `DEVNAME=`: the node below `/dev`, e.g. `sda1`.
    pub devname: Option<&'a str>,
    /// `DEVTYPE=`: `disk` or `partition` for block devices.
    pub devtype: Option<&'a str>,
}

/// Parse one kernel uevent. `None` for anything else: a message that is
/// too long, a udev (`libudev`) message, a header without `@` or a path
/// that is not absolute, an `ACTION=` or `DEVPATH=` that contradicts the
/// header, or a field that is not UTF-8. Unknown fields are ignored.
pub fn parse(msg: &[u8]) -> Option<Uevent<'_>> {
    if msg.len() > MAX_MESSAGE {
        return None;
    }
    let mut fields = msg.split(|&b| b == 0);
    let head = core::str::from_utf8(fields.next()?).ok()?;
    let (action, devpath) = head.split_once('@')?;
    if !devpath.starts_with('/') {
        return None;
    }
    let mut ev = Uevent {
        action: Action::from_str(action),
        devpath,
        subsystem: None,
        devname: None,
        devtype: None,
    };
    for raw in fields.take(MAX_FIELDS) {
        if raw.is_empty() {
            continue;
        }
        let field = core::str::from_utf8(raw).ok()?;
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        match key {
            "ACTION" if value != action => return None,
            "DEVPATH" if value != devpath => return None,
            "SUBSYSTEM" => ev.subsystem = Some(value),
            "DEVNAME" => ev.devname = Some(value),
            "DEVTYPE" => ev.devtype = Some(value),
            _ => {}
        }
    }
    Some(ev)
}

/// Whether the sysfs path runs through a USB bus (a `usbN` segment, the
/// root hub of bus N): a stick on a hub, a card reader on USB.
pub fn on_usb(devpath: &str) -> bool {
    devpath.as_bytes().split(|&b| b == b'/').any(|seg| {
        seg.strip_prefix(b"usb")
            .is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
    })
}

/// A device node name safe to put after `/dev/`: 1-32 bytes of
/// `[A-Za-z0-9_.-]`, not starting with a dot (so no `..`, no `/`).
pub fn safe_devname(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADD_PART: &[u8] = b"add@/devices/pci0000:00/0000:00:01.0/usb1/1-1/1-1:1.0/host0/target0:0:0/0:0:0:0/block/sda/sda1\0\
ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:01.0/usb1/1-1/1-1:1.0/host0/target0:0:0/0:0:0:0/block/sda/sda1\0\
SUBSYSTEM=block\0MAJOR=8\0MINOR=1\0DEVNAME=sda1\0DEVTYPE=partition\0DISKSEQ=2\0PARTN=1\0SEQNUM=1234\0";

    #[test]
    fn a_partition_add_from_the_kernel() {
        let ev = parse(ADD_PART).unwrap();
        assert_eq!(ev.action, Action::Add);
        assert_eq!(ev.subsystem, Some("block"));
        assert_eq!(ev.devname, Some("sda1"));
        assert_eq!(ev.devtype, Some("partition"));
        assert!(ev.devpath.ends_with("/block/sda/sda1"));
        assert!(on_usb(ev.devpath));
    }

    #[test]
    fn remove_and_other_actions() {
        let ev = parse(b"remove@/devices/virtual/block/loop0\0ACTION=remove\0SUBSYSTEM=block\0DEVNAME=loop0\0DEVTYPE=disk\0").unwrap();
        assert_eq!(ev.action, Action::Remove);
        assert!(!on_usb(ev.devpath));
        let ev = parse(b"change@/devices/virtual/block/loop0\0ACTION=change\0").unwrap();
        assert_eq!(ev.action, Action::Other);
        assert_eq!(ev.subsystem, None);
        // No trailing NUL, no fields at all: still a header.
        assert_eq!(
            parse(b"bind@/devices/x").map(|e| (e.action, e.devpath)),
            Some((Action::Other, "/devices/x"))
        );
    }

    #[test]
    fn anything_else_is_refused() {
        // udev's re-broadcast (group 2) starts with its own magic.
        assert_eq!(parse(b"libudev\0\xfe\xed\xca\xfe"), None);
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"add@relative/path\0"), None);
        assert_eq!(parse(b"no-at-sign\0ACTION=add\0"), None);
        // Fields that contradict the header.
        assert_eq!(parse(b"add@/devices/a\0ACTION=remove\0"), None);
        assert_eq!(parse(b"add@/devices/a\0DEVPATH=/devices/b\0"), None);
        // Not UTF-8, in the header or a field.
        assert_eq!(parse(b"add@/devices/\xff\0"), None);
        assert_eq!(parse(b"add@/devices/a\0DEVNAME=\xc3\0"), None);
        let long = [b'a'; MAX_MESSAGE + 1];
        assert_eq!(parse(&long), None);
    }

    #[test]
    fn fields_past_the_limit_are_not_read() {
        let mut msg = b"add@/devices/a\0".to_vec();
        for _ in 0..MAX_FIELDS {
            msg.extend_from_slice(b"X=1\0");
        }
        msg.extend_from_slice(b"DEVNAME=late\0");
        assert_eq!(parse(&msg).unwrap().devname, None);
    }

    #[test]
    fn usb_paths_and_device_names() {
        assert!(on_usb("/devices/platform/soc/fe980000.usb/usb3/3-1/3-1:1.0/host1/target1:0:0/1:0:0:0/block/sdb"));
        assert!(!on_usb(
            "/devices/pci0000:00/0000:00:04.0/virtio1/block/vda"
        ));
        assert!(!on_usb("/devices/platform/usbphy/block/x"));
        assert!(!on_usb("/devices/usb/block/x"));
        for ok in ["sda", "sda1", "mmcblk0p2", "nvme0n1p1", "dm-0"] {
            assert!(safe_devname(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../sda",
            "disk/by-id/x",
            "sd a",
            &"x".repeat(33),
        ] {
            assert!(!safe_devname(bad), "{bad}");
        }
    }
}
