//! Air-gapped installs over a serial line, end to end: `quilt send` on the
//! host, quilt-init's receiver on a virtio serial port of the guest (QEMU
//! chardev socket), the real store and trust checks. A proxy between the
//! two cuts the link mid-transfer or flips bytes on it.

use quilt_system_tests::{
    noise, quilt_send, repo_root, signed_bundle, work_dir, ImageBuilder, Vm, VmOpts,
};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(300);

/// How the proxy treats host → board bytes.
#[derive(Clone, Copy)]
enum Link {
    /// Close both ends after this many bytes.
    Cut(usize),
    /// Flip one bit in every this many bytes.
    Flip(usize),
}

/// Serve one connection on `front`, relaying to the guest's socket `back`.
fn proxy(front: &Path, back: &Path, link: Link) -> std::thread::JoinHandle<()> {
    let _ = std::fs::remove_file(front);
    let listener = UnixListener::bind(front).unwrap();
    let back = back.to_path_buf();
    std::thread::spawn(move || {
        let (host, _) = listener.accept().unwrap();
        let board = UnixStream::connect(&back).unwrap();
        let (mut host_r, mut board_w) = (host.try_clone().unwrap(), board.try_clone().unwrap());
        let (mut board_r, mut host_w) = (board, host);
        let up = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut total = 0usize;
            loop {
                let n = match host_r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let chunk = &mut buf[..n];
                match link {
                    Link::Cut(at) if total + n >= at => {
                        let _ = board_w.write_all(&chunk[..at - total]);
                        let _ = host_r.shutdown(std::net::Shutdown::Both);
                        let _ = board_w.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    Link::Flip(every) => {
                        for (i, b) in chunk.iter_mut().enumerate() {
                            if (total + i) % every == every - 1 {
                                *b ^= 0x10;
                            }
                        }
                    }
                    _ => {}
                }
                total += n;
                if board_w.write_all(chunk).is_err() {
                    break;
                }
            }
            let _ = board_w.shutdown(std::net::Shutdown::Both);
        });
        let mut buf = [0u8; 4096];
        loop {
            match board_r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if host_w.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = host_w.shutdown(std::net::Shutdown::Both);
        let _ = up.join();
    })
}

fn send(port: &Path, qb: &Path) -> (i32, String) {
    quilt_send(port, qb, 20).unwrap()
}

/// A tool with 1 MiB of incompressible data, so a transfer takes a while
/// and has many chunks; `salt` makes versions differ.
fn big_tool(version: u64, salt: u8) -> PathBuf {
    let dir = work_dir()
        .unwrap()
        .join(format!("bigtool-v{version}-{salt}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let hello = repo_root().join("examples/hello/hello.ts");
    std::fs::copy(hello, dir.join("hello.ts")).unwrap();
    std::fs::write(
        dir.join("quilt.toml"),
        format!("name = \"bigtool\"\nversion = {version}\nentry = \"hello.ts\"\n"),
    )
    .unwrap();
    let data = noise(1 << 20, 0x9e37_79b9_7f4a_7c15 ^ u64::from(salt));
    std::fs::write(dir.join("data.bin"), data).unwrap();
    dir
}

#[test]
fn quilt_send_installs_over_serial_resuming_after_cuts_and_corruption() {
    let good = signed_bundle(&big_tool(1, 1)).unwrap();
    // Other content than `good`: the tampered transfer's intact chunks are
    // kept (each was verified), and would otherwise make `good` a no-op.
    let other = signed_bundle(&big_tool(1, 2)).unwrap();
    let mut tampered = std::fs::read(&other.qb).unwrap();
    let n = tampered.len();
    tampered[n - 5000] ^= 0x01;
    let tampered_qb = work_dir().unwrap().join("bigtool-tampered.qb");
    std::fs::write(&tampered_qb, &tampered).unwrap();
    let cli = quilt_system_tests::guest_binary("quilt", "quilt").unwrap();
    let config = r#"
modules = ["virtio_mmio", "virtio_console"]

[update]
port = "/dev/vport0p1"

[[service]]
name = "probe"
exec = ["/bin/probe.sh"]
restart = "never"
on_exit = "poweroff"
"#;
    let probe = r#"#!/bin/sh
for i in $(seq 1 1200); do
    quilt bundles | grep -q '^bigtool ' && break
    sleep 0.25
done
echo "run=$(quilt run bigtool --json)" > /dev/ttyS1
"#;
    let img = ImageBuilder::new()
        .busybox()
        .bun_runtime()
        .modules(&["virtio_mmio", "virtio_console"])
        .file("/bin/quilt", &cli, 0o755)
        .bytes("/bin/probe.sh", probe, 0o755)
        .tree("/etc/quilt/trust", &good.trust)
        .config_toml(config)
        .build()
        .unwrap();
    let dir = work_dir().unwrap();
    let sock = dir.join(format!("update-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let mut vm = Vm::boot(
        &img,
        VmOpts {
            mem_mb: 1024,
            timeout: BOOT,
            extra_args: vec![
                "-device".into(),
                "virtio-serial-device".into(),
                "-chardev".into(),
                format!("socket,id=upd,path={},server=on,wait=off", sock.display()),
                "-device".into(),
                "virtserialport,chardev=upd,name=quilt.update".into(),
            ],
            ..VmOpts::default()
        },
    )
    .unwrap();
    vm.wait_for_console("event=update-port-open", Duration::from_secs(120))
        .unwrap();

    // A tampered bundle travels, fails its chunk check, and nothing of it
    // is installed.
    let (code, text) = send(&sock, &tampered_qb);
    assert_eq!(code, 3, "tampered bundle not refused: {text}");
    assert!(text.contains("refused"), "{text}");

    // Cut after 300 KB, then resume: the rest only.
    let front = dir.join(format!("update-proxy-{}.sock", std::process::id()));
    let p = proxy(&front, &sock, Link::Cut(300_000));
    let (code, text) = send(&front, &good.qb);
    p.join().unwrap();
    assert_ne!(code, 0, "the cut transfer cannot have finished: {text}");
    // Resume through a line that flips a bit every 20 000 bytes.
    let p = proxy(&front, &sock, Link::Flip(20_000));
    let (code, text) = send(&front, &good.qb);
    p.join().unwrap();
    assert_eq!(code, 0, "resume over a noisy line failed: {text}");
    assert!(text.contains("installed bigtool version 1"), "{text}");
    assert!(
        text.contains("the board already held"),
        "nothing was resumed: {text}"
    );
    eprintln!("resumed send: {text}");
    // A clean line at full speed (QEMU's virtio port): the rate and the
    // share of payload on the line, for the record.
    let v2 = signed_bundle(&big_tool(2, 3)).unwrap();
    let (code, text) = send(&sock, &v2.qb);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("installed bigtool version 2"), "{text}");
    eprintln!("clean send: {text}");

    let exit = vm.wait_exit(BOOT).unwrap();
    assert!(exit.powered_off(), "{exit:?}");
    let ev = vm.events();
    let refused: Vec<_> = ev
        .iter()
        .filter(|e| e.name() == Some("bundle-refused") && e.get("via") == Some("serial"))
        .collect();
    assert_eq!(refused.len(), 1, "{}", vm.console_text());
    assert!(
        refused[0].get("reason").is_some_and(
            |r| r.contains("corrupt or tampered") && r.contains("nothing was installed")
        ),
        "{:?}",
        refused[0]
    );
    let installed: Vec<_> = ev
        .iter()
        .filter(|e| e.name() == Some("bundle-installed") && e.get("via") == Some("serial"))
        .collect();
    assert_eq!(installed.len(), 2, "{}", vm.console_text());
    let crc: u64 = installed[0].get("crc_errors").unwrap().parse().unwrap();
    assert!(
        crc > 0,
        "the noisy line corrupted nothing? {:?}",
        installed[0]
    );
    // The installed tool runs.
    let ch = vm.channel_text();
    let run = ch.lines().find_map(|l| l.strip_prefix("run=")).unwrap();
    let run: serde_json::Value = serde_json::from_str(run).unwrap();
    assert_eq!(run["status"], 0, "{run}");
    assert!(run["stdout"]
        .as_str()
        .unwrap()
        .contains("\"hello\":\"quilt\""));
}
