//! quilt-net in QEMU: a board's address from QEMU's user-mode DHCP server
//! and from a static configuration, the host reaching a guest TCP port
//! through a forwarded port, and bad input that ends quilt-net (with its
//! reason) while PID 1 goes on answering. quilt-net runs as an ordinary
//! service here, as on a board; PID 1 has no network code.

use quilt_system_tests::{guest_binary, ImageBuilder, Vm, VmOpts};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const ECHO_PORT: u16 = 7777;
const T: Duration = Duration::from_secs(240);

/// What every net image has: the NIC's modules, an echo server on
/// [`ECHO_PORT`] once the network is ready, and a probe that reports the
/// interface, routes and resolv.conf from inside.
fn config(net_exec: &str, extra: &str) -> String {
    format!(
        r#"
modules = ["virtio_mmio", "virtio_net"]

[[service]]
name = "net"
exec = {net_exec}
ready = {{ fd = 3 }}
console = true

[[service]]
name = "echo"
exec = ["/bin/nc", "-ll", "-p", "{ECHO_PORT}", "-e", "/bin/cat"]
after = ["net"]

[[service]]
name = "probe"
exec = ["/bin/probe.sh"]
after = ["net"]
restart = "never"
{extra}"#
    )
}

const PROBE: &str = r#"#!/bin/sh
out=/dev/ttyS1
echo "addr=$(ip -4 -o addr show dev eth0 | awk '{print $4}')" > $out
echo "route=$(ip -4 route show default | tr '\n' ' ')" > $out
echo "resolv=$(grep nameserver /run/quilt/resolv.conf | tr '\n' ' ')" > $out
echo "lo=$(ip -4 -o addr show dev lo | awk '{print $4}')" > $out
# After the bad services have had time to fail.
[ -x /bin/quilt ] && sleep 2 && echo "ping=$(quilt ping 2>&1)" > $out
echo probe-done > $out
"#;

fn boot(config: &str, with_cli: bool) -> Vm {
    let mut img = ImageBuilder::new()
        .busybox()
        .modules(&["virtio_mmio", "virtio_net"])
        .bytes("/bin/probe.sh", PROBE, 0o755)
        .config_toml(config);
    if with_cli {
        img = img.file("/bin/quilt", guest_binary("quilt", "quilt").unwrap(), 0o755);
    }
    let img = img.build().unwrap();
    Vm::boot(
        &img,
        VmOpts {
            timeout: T,
            ..VmOpts::default()
        }
        .user_net(&[ECHO_PORT]),
    )
    .unwrap()
}

/// Bytes to the guest's echo service through the forwarded port and the
/// same bytes back. QEMU accepts on the host side before the guest
/// listens (and then hangs up), so this retries until the echo comes.
fn echo_through(vm: &Vm, payload: &[u8]) {
    let port = vm.host_port(ECHO_PORT).unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < until {
        let got = (|| -> std::io::Result<Vec<u8>> {
            let mut s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(payload)?;
            let mut buf = vec![0u8; payload.len()];
            s.read_exact(&mut buf)?;
            Ok(buf)
        })();
        match got {
            Ok(b) if b == payload => return,
            Ok(b) => last = format!("got {:?}", String::from_utf8_lossy(&b)),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("no echo through 127.0.0.1:{port} -> guest:{ECHO_PORT}: {last}");
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

fn assert_inside(vm: &mut Vm) -> String {
    vm.wait_for_channel("probe-done", T).unwrap();
    let ch = vm.channel_text();
    let has = |s: &str| assert!(ch.contains(s), "channel lacks {s:?}:\n{ch}");
    has("addr=10.0.2.15/24");
    has("route=default via 10.0.2.2 dev eth0");
    has("resolv=nameserver 10.0.2.3");
    has("lo=127.0.0.1/8");
    ch
}

#[test]
fn dhcp_from_qemus_server_and_the_host_reaches_a_guest_port() {
    let mut vm = boot(
        &config(
            r#"["/usr/lib/quilt/quilt-net", "dhcp", "eth0", "--ready-fd", "3"]"#,
            "",
        ),
        false,
    );
    let up = vm.wait_for_console("event=net-up", T).unwrap();
    for want in [
        "iface=eth0",
        "addr=10.0.2.15/24",
        "gw=10.0.2.2",
        "dns=10.0.2.3",
        "via=dhcp",
        "lease_s=86400",
        "server=10.0.2.2",
    ] {
        assert!(up.contains(want), "{want} missing from {up}");
    }
    let console = vm.console_text();
    assert!(
        console.contains("event=net-dhcp-offer iface=eth0 addr=10.0.2.15 server=10.0.2.2"),
        "{console}"
    );
    assert!(!console.contains("event=net-refused"), "{console}");
    // TCG here: the guest's own clock, DISCOVER to address set.
    let took: u64 = field(&up, "took_ms").unwrap().parse().unwrap();
    eprintln!("dhcp time-to-address: {took} ms ({:?})", vm.accel());
    assert!(took < 10_000, "{up}");
    assert_inside(&mut vm);
    echo_through(&vm, b"hello from the host\n");
    echo_through(&vm, &[b'x'; 3000]);
    // The lease is kept: quilt-net is still running, not restarted.
    let console = vm.console_text();
    assert_eq!(
        console.matches("event=net-dhcp-start").count(),
        1,
        "{console}"
    );
}

#[test]
fn a_static_configuration_works_too() {
    let mut vm = boot(
        &config(
            r#"["/usr/lib/quilt/quilt-net", "static", "eth0", "10.0.2.15/24", "--gateway", "10.0.2.2", "--dns", "10.0.2.3", "--ready-fd", "3"]"#,
            "",
        ),
        false,
    );
    let up = vm.wait_for_console("event=net-up", T).unwrap();
    assert!(
        up.contains("iface=eth0 addr=10.0.2.15/24 gw=10.0.2.2 dns=10.0.2.3 via=static"),
        "{up}"
    );
    assert_inside(&mut vm);
    echo_through(&vm, b"static works\n");
}

#[test]
fn bad_input_ends_quilt_net_with_its_reason_and_pid1_answers() {
    let extra = r#"
[[service]]
name = "nosuch"
exec = ["/usr/lib/quilt/quilt-net", "dhcp", "nosuch0"]
restart = "never"
console = true

[[service]]
name = "badaddr"
exec = ["/usr/lib/quilt/quilt-net", "static", "eth0", "10.0.2.300/24"]
restart = "never"
console = true

[[service]]
name = "badname"
exec = ["/usr/lib/quilt/quilt-net", "dhcp", "../../etc/passwd"]
restart = "never"
console = true
"#;
    let mut vm = boot(
        &config(
            r#"["/usr/lib/quilt/quilt-net", "dhcp", "eth0", "--ready-fd", "3"]"#,
            extra,
        ),
        true,
    );
    // The good one still comes up beside the bad ones.
    vm.wait_for_console("event=net-up iface=eth0", T).unwrap();
    let ch = assert_inside(&mut vm);
    let ping = ch.lines().find(|l| l.starts_with("ping=")).unwrap();
    assert!(
        ping.starts_with("ping=quilt-init "),
        "quilt ping failed: {ping}"
    );
    let console = vm.console_text();
    let has = |s: &str| assert!(console.contains(s), "console lacks {s:?}:\n{console}");
    has("event=net-failed iface=nosuch0 error=\"no interface nosuch0:");
    has("\"10.0.2.300/24\" is not an IPv4 address with a prefix length");
    has("interface name \"../../etc/passwd\" is not");
    let ev = vm.events();
    let exit_of = |name: &str| {
        ev.iter()
            .find(|e| e.name() == Some("service-exit") && e.get("name") == Some(name))
            .unwrap_or_else(|| panic!("no service-exit for {name}:\n{console}"))
            .line
            .clone()
    };
    assert!(
        exit_of("nosuch").contains("status=1"),
        "{}",
        exit_of("nosuch")
    );
    assert!(
        exit_of("badaddr").contains("status=2"),
        "{}",
        exit_of("badaddr")
    );
    // PID 1 went on: the host still reaches the guest, quilt-net was
    // started once and stays.
    echo_through(&vm, b"still here\n");
    assert_eq!(
        ev.iter()
            .filter(|e| e.name() == Some("service-start") && e.get("name") == Some("net"))
            .count(),
        1
    );
}
