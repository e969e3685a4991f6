//! Loading kernel modules named in the boot config, dependencies first,
//! from the `modules.dep` the kernel build wrote. No modprobe needed.

use crate::event;
use std::io::{BufRead, BufReader};

/// Longest `modules.dep` line considered (longer ones are skipped).
const MAX_LINE: usize = 4096;
/// Most modules one request may pull in.
const MAX_CHAIN: usize = 32;

type ModPath = heapless::String<256>;

/// Kernel module names treat `-` and `_` alike.
fn same_name(path: &str, name: &str) -> bool {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    stem.len() == name.len()
        && stem.bytes().zip(name.bytes()).all(|(a, b)| {
            let norm = |c: u8| if c == b'-' { b'_' } else { c };
            norm(a) == norm(b)
        })
}

/// Find `name` in a `modules.dep` text: its path, then its dependencies in
/// load order (the file lists them so that loading from the end works).
pub fn resolve<R: BufRead>(dep: R, name: &str) -> Option<heapless::Vec<ModPath, MAX_CHAIN>> {
    let mut reader = dep;
    let mut line = String::with_capacity(MAX_LINE);
    loop {
        line.clear();
        // `take` bounds each line so a corrupt file cannot grow `line`.
        let n = std::io::Read::take(&mut reader, MAX_LINE as u64)
            .read_line(&mut line)
            .ok()?;
        if n == 0 {
            return None;
        }
        let Some((module, deps)) = line.trim_end().split_once(':') else {
            continue;
        };
        if !same_name(module, name) {
            continue;
        }
        let mut chain = heapless::Vec::new();
        for d in deps
            .split_ascii_whitespace()
            .rev()
            .chain(core::iter::once(module))
        {
            let mut p = ModPath::new();
            if p.push_str(d).is_err() || chain.push(p).is_err() {
                return None;
            }
        }
        return Some(chain);
    }
}

/// Load each named module and its dependencies. Failures are logged; a
/// module that is built in or already loaded counts as loaded.
pub fn load_all<'a>(names: impl Iterator<Item = &'a str>) -> usize {
    let uname = rustix::system::uname();
    let release = uname.release().to_str().unwrap_or("");
    let mut root: heapless::String<96> = heapless::String::new();
    let _ = root.push_str("/lib/modules/");
    let _ = root.push_str(release);
    let mut dep_path = root.clone();
    let _ = dep_path.push_str("/modules.dep");
    let mut loaded = 0;
    for name in names {
        let chain = std::fs::File::open(dep_path.as_str())
            .ok()
            .and_then(|f| resolve(BufReader::new(f), name));
        let Some(chain) = chain else {
            event!("event=module-missing name={} dep={}", name, dep_path);
            continue;
        };
        let mut ok = true;
        for rel in &chain {
            let mut full: heapless::String<384> = heapless::String::new();
            let _ = full.push_str(&root);
            let _ = full.push('/');
            let _ = full.push_str(rel);
            if let Err(e) = load_one(&full) {
                ok = false;
                event!(
                    "event=module-failed name={} file={} error={}",
                    name,
                    full,
                    e
                );
                break;
            }
        }
        if ok {
            loaded += 1;
            event!("event=module-loaded name={} files={}", name, chain.len());
        }
    }
    loaded
}

fn load_one(path: &str) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    // MODULE_INIT_COMPRESSED_FILE: let the kernel decompress .ko.xz/.zst.
    let flags = if path.ends_with(".ko") { 0 } else { 4 };
    match rustix::system::finit_module(&fd, c"", flags) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n\
kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko\n\
kernel/drivers/virtio/virtio.ko:\n\
kernel/drivers/watchdog/i6300esb.ko.xz:\n\
kernel/fs/overlayfs/overlay.ko:\n";

    #[test]
    fn dependencies_load_first() {
        let chain = resolve(DEP.as_bytes(), "virtio_mmio").unwrap();
        let v: Vec<&str> = chain.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            v,
            [
                "kernel/drivers/virtio/virtio.ko",
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/drivers/virtio/virtio_mmio.ko"
            ]
        );
    }

    #[test]
    fn names_match_across_dash_and_underscore_and_suffix() {
        assert_eq!(resolve(DEP.as_bytes(), "virtio-mmio").unwrap().len(), 3);
        assert_eq!(resolve(DEP.as_bytes(), "i6300esb").unwrap().len(), 1);
        assert!(resolve(DEP.as_bytes(), "virtio_mm").is_none());
        assert!(resolve(DEP.as_bytes(), "overlay").is_some());
        assert!(resolve("".as_bytes(), "overlay").is_none());
    }

    #[test]
    fn overlong_lines_are_bounded() {
        let long = format!("kernel/x.ko: {}\nkernel/y.ko:\n", "a ".repeat(10_000));
        // Must not allocate the whole line, and must still find later lines.
        let _ = resolve(long.as_bytes(), "x");
        let _ = resolve(long.as_bytes(), "y");
    }
}
