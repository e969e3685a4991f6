//! dm-verity devices for root slots, made by stage 1 through the
//! device-mapper ioctls (`/dev/mapper/control`, `<linux/dm-ioctl.h>`), as
//! `veritysetup open` would, without its libraries.
//!
//! [`open_verity`] creates a read-only device whose table is one `verity`
//! target over the slot: the first `data_blocks` 4 KiB blocks are data,
//! the hash tree follows them (no superblock, no salt; the layout
//! `quilt_imagekit::verity` writes), checked against the root hash from
//! the boot state. Every read of a block that does not hash up to that
//! root fails with EIO, so a slot altered on the medium does not mount.
//! [`corrupted`] asks the target whether it has seen such a block, so the
//! fallback can say why. The ioctl buffers are byte arrays written at the
//! header's fixed offsets; one `unsafe` call hands one to the kernel.

use quilt_slots::Verity;
use rustix::fd::{AsRawFd, OwnedFd};

/// `sizeof(struct dm_ioctl)`.
const HEADER: usize = 312;
/// `sizeof(struct dm_target_spec)`.
const SPEC: usize = 40;
/// `DM_VERSION_MAJOR` (minor and patch 0: any 4.x kernel takes it).
const VERSION_MAJOR: u32 = 4;
/// `DM_READONLY_FLAG`.
const READONLY: u32 = 1;
/// `DM_BUFFER_FULL_FLAG`.
const BUFFER_FULL: u32 = 1 << 8;
/// `DM_NAME_LEN`.
const NAME_LEN: usize = 128;
/// The ioctl commands used (`DM_*_CMD`).
const DEV_CREATE: u8 = 3;
const DEV_REMOVE: u8 = 4;
const DEV_SUSPEND: u8 = 6;
const TABLE_LOAD: u8 = 9;
const TABLE_STATUS: u8 = 12;
/// Bytes of one ioctl buffer: the header, one target and its parameters
/// (or its status).
const BUF: usize = 1024;

/// Why a verity device could not be made.
#[derive(Debug)]
pub enum DmError {
    /// `/dev/mapper/control` did not open (dm-mod not loaded?).
    Control(rustix::io::Errno),
    /// An ioctl was refused.
    Ioctl {
        /// Which.
        what: &'static str,
        /// The kernel's answer.
        errno: rustix::io::Errno,
    },
    /// The table's parameters do not fit one buffer (a very long path).
    TooLong,
    /// The device node did not appear.
    NoNode(String),
}

impl core::fmt::Display for DmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DmError::Control(e) => write!(
                f,
                "opening /dev/mapper/control: {e} (is dm_verity in the boot config's modules?)"
            ),
            DmError::Ioctl { what, errno } => write!(f, "device-mapper {what}: {errno}"),
            DmError::TooLong => f.write_str("the verity table does not fit one ioctl buffer"),
            DmError::NoNode(p) => write!(f, "{p} did not appear"),
        }
    }
}

/// One ioctl buffer, aligned as `struct dm_ioctl` is.
#[repr(C, align(8))]
struct Buf([u8; BUF]);

impl Buf {
    /// A header for the device `name` with `flags`, data starting right
    /// after it.
    fn new(name: &str, flags: u32) -> Buf {
        let mut b = Buf([0; BUF]);
        b.put(0, &VERSION_MAJOR.to_ne_bytes());
        b.put(12, &(BUF as u32).to_ne_bytes());
        b.put(16, &(HEADER as u32).to_ne_bytes());
        b.put(28, &flags.to_ne_bytes());
        let n = name.as_bytes();
        b.put(48, n.get(..n.len().min(NAME_LEN - 1)).unwrap_or(&[]));
        b
    }

    fn put(&mut self, at: usize, bytes: &[u8]) {
        if let Some(dst) = self.0.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }

    fn u32_at(&self, at: usize) -> u32 {
        let mut w = [0u8; 4];
        w.copy_from_slice(self.0.get(at..at + 4).unwrap_or(&[0; 4]));
        u32::from_ne_bytes(w)
    }

    fn u64_at(&self, at: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(self.0.get(at..at + 8).unwrap_or(&[0; 8]));
        u64::from_ne_bytes(w)
    }

    /// `_IOWR(DM_IOCTL, cmd, struct dm_ioctl)` on `ctl`.
    fn ioctl(&mut self, ctl: &OwnedFd, cmd: u8, what: &'static str) -> Result<(), DmError> {
        let request = (3u32 << 30) | ((HEADER as u32) << 16) | (0xfd << 8) | u32::from(cmd);
        // SAFETY: the buffer is a live, 8-aligned `struct dm_ioctl` of
        // BUF bytes whose data_size says BUF, so the kernel reads and
        // writes only inside it; the fd is open for the whole call.
        let r = unsafe {
            libc::ioctl(
                ctl.as_raw_fd(),
                request as libc::c_ulong as _,
                self.0.as_mut_ptr(),
            )
        };
        if r < 0 {
            return Err(DmError::Ioctl {
                what,
                errno: rustix::io::Errno::from_raw_os_error(
                    std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
                ),
            });
        }
        Ok(())
    }
}

fn control() -> Result<OwnedFd, DmError> {
    use rustix::fs::{Mode, OFlags};
    // devtmpfs makes the node when dm-mod registers it.
    let mut last = rustix::io::Errno::NOENT;
    for _ in 0..50 {
        match rustix::fs::open(
            "/dev/mapper/control",
            OFlags::RDWR | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => return Ok(fd),
            Err(e) => last = e,
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(DmError::Control(last))
}

/// The verity target's parameters for `dev` (format 1, 4 KiB blocks, the
/// tree right after the data, SHA-256, no salt).
fn verity_params(dev: &str, v: &Verity) -> String {
    format!(
        "1 {dev} {dev} 4096 4096 {n} {n} sha256 {} -",
        quilt_bundle::hex::encode(&v.root),
        n = v.data_blocks
    )
}

/// Create the read-only verity device `name` over `dev`; its node
/// (`/dev/dm-N`).
pub fn open_verity(name: &str, dev: &str, v: &Verity) -> Result<String, DmError> {
    let ctl = control()?;
    let mut b = Buf::new(name, 0);
    b.ioctl(&ctl, DEV_CREATE, "create")?;
    // The kernel's dev_t encoding: minor bits 0-7 and 20-39.
    let d = b.u64_at(40);
    let minor = (d & 0xff) | ((d >> 12) & 0xfff_ff00);
    let made = load_and_resume(&ctl, name, dev, v);
    if let Err(e) = made {
        let _ = Buf::new(name, 0).ioctl(&ctl, DEV_REMOVE, "remove");
        return Err(e);
    }
    let node = format!("/dev/dm-{minor}");
    for _ in 0..100 {
        if std::path::Path::new(&node).exists() {
            return Ok(node);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(DmError::NoNode(node))
}

fn load_and_resume(ctl: &OwnedFd, name: &str, dev: &str, v: &Verity) -> Result<(), DmError> {
    let mut b = Buf::new(name, READONLY);
    b.put(20, &1u32.to_ne_bytes());
    // struct dm_target_spec: start, length in 512-byte sectors, type.
    b.put(HEADER, &0u64.to_ne_bytes());
    b.put(HEADER + 8, &(v.data_blocks * 8).to_ne_bytes());
    b.put(HEADER + 24, b"verity");
    let params = verity_params(dev, v);
    // The parameters and their NUL must fit.
    if HEADER + SPEC + params.len() + 1 > BUF {
        return Err(DmError::TooLong);
    }
    b.put(HEADER + SPEC, params.as_bytes());
    b.ioctl(ctl, TABLE_LOAD, "table load")?;
    // Resume (no suspend flag): the loaded table goes live.
    Buf::new(name, 0).ioctl(ctl, DEV_SUSPEND, "resume")
}

/// Whether the verity device `name` has seen a block that does not match
/// its root hash (its status is `C`); `None` when it cannot tell.
pub fn corrupted(name: &str) -> Option<bool> {
    let ctl = control().ok()?;
    let mut b = Buf::new(name, 0);
    b.ioctl(&ctl, TABLE_STATUS, "status").ok()?;
    if b.u32_at(28) & BUFFER_FULL != 0 || b.u32_at(20) == 0 {
        return None;
    }
    let start = usize::try_from(b.u32_at(16)).ok()?;
    match b.0.get(start + SPEC)? {
        b'C' => Some(true),
        b'V' => Some(false),
        _ => None,
    }
}

/// Remove the device `name` (a slot that failed to mount).
pub fn remove(name: &str) {
    if let Ok(ctl) = control() {
        let _ = Buf::new(name, 0).ioctl(&ctl, DEV_REMOVE, "remove");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_what_veritysetup_would_load() {
        let v = Verity {
            data_blocks: 1234,
            root: [0xab; 32],
        };
        assert_eq!(
            verity_params("/dev/vda3", &v),
            format!(
                "1 /dev/vda3 /dev/vda3 4096 4096 1234 1234 sha256 {} -",
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn the_header_sits_at_the_kernels_offsets() {
        let b = Buf::new("quilt-slot-b", READONLY);
        assert_eq!(b.u32_at(0), 4);
        assert_eq!(b.u32_at(12), BUF as u32);
        assert_eq!(b.u32_at(16), HEADER as u32);
        assert_eq!(b.u32_at(28), READONLY);
        assert_eq!(&b.0[48..60], b"quilt-slot-b");
        assert_eq!(b.0[60], 0);
        // A name longer than DM_NAME_LEN keeps its NUL.
        let long = "x".repeat(300);
        let b = Buf::new(&long, 0);
        assert_eq!(b.0[48 + NAME_LEN - 1], 0);
    }
}
