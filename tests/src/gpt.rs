//! Board disks for tests: a sparse file with a GPT written by `sfdisk`,
//! partitions named as Quilt boards name them (bootstate, rootfs-a, …).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Make `path` a `size_mib` MiB disk whose GPT has `parts`: (name, start
/// MiB, size MiB) each.
pub fn gpt_disk(path: &Path, size_mib: u64, parts: &[(&str, u64, u64)]) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size_mib << 20).unwrap();
    drop(f);
    let table: String = parts
        .iter()
        .map(|(n, start, size)| format!("start={}, size={}, name={n}\n", start * 2048, size * 2048))
        .collect();
    let mut sf = Command::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    sf.stdin
        .take()
        .unwrap()
        .write_all(format!("label: gpt\n{table}").as_bytes())
        .unwrap();
    assert!(sf.wait().unwrap().success(), "sfdisk on {}", path.display());
}
