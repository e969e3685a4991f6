//! The trust boundary on the board (docs/trust.md, "Threat model"): what a
//! signer below the threshold, a tool, a serial peer or a stick sends can
//! reach no further than the signatures name. Real kernel, real quilt-init,
//! real Bun, real signatures; each test failed on the tree before the fixes
//! it covers (issue 13).

use quilt_bundle::pack::{Builder, HeaderFields};
use quilt_bundle::SecretKey;
use quilt_system_tests::{
    guest_binary, noise, quilt_send, repo_root, signed_bundle, test_key, work_dir, Event,
    ImageBuilder, Vm, VmOpts,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(300);

/// A tool directory made at test time: `quilt.toml` lines and `index.ts`.
fn tool(dir_name: &str, toml: &str, code: &str) -> PathBuf {
    let dir = work_dir().unwrap().join("trust-tools").join(dir_name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("quilt.toml"), toml).unwrap();
    std::fs::write(dir.join("index.ts"), code).unwrap();
    dir
}

/// A bundle signed by the test key whose header says what `edit` sets,
/// tokens included: made with the format library, since `quilt bundle
/// pack` refuses tokens this firmware does not grant.
fn crafted(file: &str, files: &[(&str, &[u8])], edit: impl FnOnce(&mut HeaderFields)) -> PathBuf {
    let (key, _) = test_key().unwrap();
    let key = SecretKey::from_file(&std::fs::read_to_string(key).unwrap()).unwrap();
    let mut b = Builder::new();
    for (path, data) in files {
        b.file(path, 0o644, data);
    }
    let mut h = HeaderFields::new("placeholder", 1, "index.ts");
    edit(&mut h);
    let qb = b.finish(h).unwrap().to_qb(&[&key]).unwrap();
    let out = work_dir().unwrap().join("trust-tools").join(file);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, qb).unwrap();
    out
}

/// An image with Bun, the CLI, the test trust dir, these bundles, files
/// and config.
fn image(bundles: &[(&str, PathBuf)], files: &[(&str, Vec<u8>, u32)], config: &str) -> PathBuf {
    let cli = guest_binary("quilt", "quilt").unwrap();
    let (_, trust) = test_key().unwrap();
    let mut b = ImageBuilder::new()
        .busybox()
        .bun_runtime()
        .file("/bin/quilt", &cli, 0o755)
        .tree("/etc/quilt/trust", &trust)
        .config_toml(config);
    for (name, qb) in bundles {
        b = b.file(&format!("/usr/share/quilt/bundles/{name}.qb"), qb, 0o644);
    }
    for (path, data, mode) in files {
        b = b.bytes(path, data.clone(), *mode);
    }
    b.build().unwrap()
}

const PROBE: &str = r#"
[[service]]
name = "probe"
exec = ["/bin/probe.sh"]
restart = "never"
on_exit = "poweroff"
"#;

fn boot(img: &Path, extra: Vec<String>) -> Vm {
    Vm::boot(
        img,
        VmOpts {
            mem_mb: 1024,
            timeout: BOOT,
            extra_args: extra,
            ..VmOpts::default()
        },
    )
    .unwrap()
}

/// The JSON a `quilt run --json` printed after `key=` on the channel, and
/// the tool's own stdout parsed.
fn run_line(ch: &str, key: &str) -> (serde_json::Value, serde_json::Value) {
    let line = ch
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} line:\n{ch}"));
    let run: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let out = serde_json::from_str(run["stdout"].as_str().unwrap_or("").trim())
        .unwrap_or(serde_json::Value::Null);
    (run, out)
}

fn refused<'a>(ev: &'a [Event], needle: &str) -> Option<&'a Event> {
    ev.iter().find(|e| {
        e.name() == Some("bundle-refused") && e.get("reason").is_some_and(|r| r.contains(needle))
    })
}

/// Items 1, 2, 4 and 6 of issue 13 on one board: firmware by the board's
/// naming only, one tree and one record per name, no capability token
/// that undoes another guarantee, a private seed file.
#[test]
fn the_board_refuses_what_no_signature_grants() {
    let whoami = |name: &str| {
        format!(
            "const s = require(\"node:fs\").readFileSync(\"/proc/self/status\", \"utf8\");\n\
             const cap = (s.split(\"\\n\").find((l) => l.startsWith(\"CapEff:\")) || \"\").slice(7).trim();\n\
             console.log(JSON.stringify({{ me: \"{name}\", cap_eff: cap }}));\n"
        )
    };
    // Two legal names the old lossy encoding ('/' → "__") merged.
    let tx = signed_bundle(&tool(
        "t-x",
        "name = \"t/x\"\nversion = 1\nentry = \"index.ts\"\n",
        &whoami("t/x"),
    ))
    .unwrap();
    let t_x = signed_bundle(&tool(
        "t__x",
        "name = \"t__x\"\nversion = 1\nentry = \"index.ts\"\n",
        &whoami("t__x"),
    ))
    .unwrap();
    // Same files, so the same Merkle root, under two names: one without
    // tokens, one keeping a capability.
    let same = whoami("same");
    let plain = crafted("same-a.qb", &[("index.ts", same.as_bytes())], |h| {
        h.name = "same/a".into();
    });
    let rich = crafted("same-b.qb", &[("index.ts", same.as_bytes())], |h| {
        h.name = "same/b".into();
        h.tokens = vec!["cap:net_bind_service".into()];
    });
    // A root image under a name the board does not take as firmware.
    let fw_dir = tool(
        "fw-evil",
        "name = \"agents/fw\"\nversion = 1\nentry = \"root.img\"\nruntime = \"firmware\"\n",
        "",
    );
    std::fs::write(fw_dir.join("root.img"), vec![0u8; 4096]).unwrap();
    let fw = signed_bundle(&fw_dir).unwrap();
    // Capabilities that undo other guarantees, as an older firmware took
    // them; the first would open /proc/sysrq-trigger.
    let sysrq = "try { require(\"node:fs\").writeFileSync(\"/proc/sysrq-trigger\", \"h\"); console.log(JSON.stringify({ sysrq: \"written\" })); } catch (e) { console.log(JSON.stringify({ sysrq: String(e) })); }\n";
    let caps = [
        "dac_override",
        "chown",
        "fowner",
        "sys_nice",
        "sys_resource",
    ];
    let mut bundles: Vec<(String, PathBuf)> = vec![
        ("tx".into(), tx.qb),
        ("t__x".into(), t_x.qb),
        ("same-a".into(), plain),
        ("same-b".into(), rich),
        ("fw".into(), fw.qb),
    ];
    for cap in caps {
        let name = format!("cap-{}", cap.replace('_', "-"));
        let qb = crafted(
            &format!("{name}.qb"),
            &[("index.ts", sysrq.as_bytes())],
            |h| {
                h.name = name.clone();
                h.tokens = vec![format!("cap:{cap}")];
            },
        );
        bundles.push((name, qb));
    }
    let probe = br#"#!/bin/sh
quilt bundles > /tmp/b 2>&1
sed 's/^/bundles: /' /tmp/b > /dev/ttyS1
for b in t/x t__x same/a same/b cap-dac-override; do
    echo "run $b=$(quilt run $b --json 2>&1 | tr -d '\n')" > /dev/ttyS1
done
echo "seed=$(ls -ln /var/lib/quilt/random-seed)" > /dev/ttyS1
quilt logs nonroot > /tmp/l 2>&1
echo "nonroot=$(tr '\n' '|' < /tmp/l)" > /dev/ttyS1
"#;
    // A local non-root user on the control socket.
    let config = format!(
        "[[service]]\nname = \"nonroot\"\nexec = [\"/bin/quilt\", \"ping\"]\nuid = 1000\ngid = 1000\nrestart = \"never\"\n{PROBE}"
    );
    let refs: Vec<(&str, PathBuf)> = bundles
        .iter()
        .map(|(n, q)| (n.as_str(), q.clone()))
        .collect();
    let img = image(
        &refs,
        &[
            ("/bin/probe.sh", probe.to_vec(), 0o755),
            ("/var/lib/quilt/random-seed", vec![7u8; 512], 0o644),
        ],
        &config,
    );
    let mut vm = boot(&img, Vec::new());
    let exit = vm.wait_exit(BOOT).unwrap();
    assert!(exit.powered_off(), "{exit:?}");
    let ch = vm.channel_text();
    let ev = vm.events();
    let con = vm.console_text();

    // 1. Firmware is what the board names: refused, nothing installed.
    let r = refused(&ev, "agents/fw").unwrap_or_else(|| panic!("firmware not refused:\n{con}"));
    assert!(
        r.get("reason")
            .unwrap()
            .contains("declares runtime `firmware`"),
        "{r:?}"
    );
    assert!(!ch.contains("bundles: agents/fw"), "{ch}");

    // 2. Each name runs its own code, with its own signed header.
    let (_, out) = run_line(&ch, "run t/x=");
    assert_eq!(out["me"], "t/x", "{ch}");
    let (_, out) = run_line(&ch, "run t__x=");
    assert_eq!(out["me"], "t__x", "{ch}");
    let (_, a) = run_line(&ch, "run same/a=");
    let (_, b) = run_line(&ch, "run same/b=");
    assert_eq!(
        a["cap_eff"], "0000000000000000",
        "same/a ran with same/b's tokens: {ch}"
    );
    assert_eq!(b["cap_eff"], "0000000000000400", "{ch}");

    // 4. Capabilities that undo other guarantees are refused at install,
    // each with its reason; none of them runs.
    for cap in caps {
        let r = refused(&ev, &format!("`cap:{cap}`"))
            .unwrap_or_else(|| panic!("cap:{cap} not refused:\n{con}"));
        assert!(r.get("reason").unwrap().contains("was removed"), "{r:?}");
    }
    let sysrq = ch
        .lines()
        .find_map(|l| l.strip_prefix("run cap-dac-override="))
        .unwrap_or_else(|| panic!("{ch}"));
    assert!(
        sysrq.contains("is not installed") && !sysrq.contains("written"),
        "{sysrq}"
    );
    assert!(
        !con.contains("sysrq: HELP"),
        "a tool reached /proc/sysrq-trigger"
    );

    // 6. The replaced seed is root's alone.
    let seed = ch
        .lines()
        .find_map(|l| l.strip_prefix("seed="))
        .unwrap_or_else(|| panic!("{ch}"));
    assert!(seed.starts_with("-rw------- "), "seed file: {seed}");
    // A local non-root user gets nothing from quilt-init.
    let nonroot = ch
        .lines()
        .find_map(|l| l.strip_prefix("nonroot="))
        .unwrap_or_else(|| panic!("{ch}"));
    assert!(
        !nonroot.contains("quilt-init ")
            && (nonroot.contains("only root") || nonroot.contains("ermission denied")),
        "a non-root caller: {nonroot}"
    );
}

/// Item 5 and the run quota: a container never gets through a child, an
/// exec or a pod a token it does not hold, and one family holds at most a
/// quarter of the board's run slots.
#[test]
fn children_execs_and_pods_never_hold_more_than_their_holder() {
    let fixtures = repo_root().join("tests/fixtures/tools");
    let agent_dir = work_dir().unwrap().join("trust-tools/agent-any");
    let _ = std::fs::remove_dir_all(&agent_dir);
    std::fs::create_dir_all(&agent_dir).unwrap();
    for f in ["index.ts", "control.ts"] {
        std::fs::copy(fixtures.join("agent").join(f), agent_dir.join(f)).unwrap();
    }
    std::fs::write(
        agent_dir.join("quilt.toml"),
        "name = \"agent-any\"\nversion = 1\nentry = \"index.ts\"\ntokens = [\"spawn\", \"exec:held\"]\nlimits = { memory_mib = 512, tasks = 256 }\n",
    )
    .unwrap();
    let agent = signed_bundle(&agent_dir).unwrap();
    // Holds a capability the agent does not.
    let rich = signed_bundle(&tool(
        "rich",
        "name = \"rich\"\nversion = 1\nentry = \"index.ts\"\ntokens = [\"cap:net_bind_service\"]\n",
        "setInterval(() => {}, 1000);\n",
    ))
    .unwrap();
    let ticker = signed_bundle(&fixtures.join("ticker")).unwrap();
    let netty = signed_bundle(&tool(
        "netty",
        "name = \"netty\"\nversion = 1\nentry = \"index.ts\"\ntokens = [\"net:10.0.2.2:9\"]\n",
        "setInterval(() => {}, 1000);\n",
    ))
    .unwrap();
    // Opens 20 relayed connections at once and holds them.
    let hoarder = signed_bundle(&tool(
        "hoarder",
        "name = \"hoarder\"\nversion = 1\nentry = \"index.ts\"\ntokens = [\"net:127.0.0.1:9000\"]\n",
        r#"let closed = 0;
let opened = 0;
for (let i = 0; i < 20; i++) {
  try {
    await Bun.connect({
      hostname: "127.0.0.1",
      port: 9000,
      socket: { data() {}, close() { closed++; }, error() {} },
    });
    opened++;
  } catch {
    closed++;
  }
}
await Bun.sleep(3000);
console.log(JSON.stringify({ opened, still_open: 20 - closed }));
process.exit(0);
"#,
    ))
    .unwrap();
    let config = format!(
        r#"
[[net]]
to = "10.0.2.2:9"

[[net]]
to = "127.0.0.1:9000"

[[service]]
name = "api"
exec = ["/bin/sh", "-c", "ip link set lo up; exec busybox httpd -f -p 127.0.0.1:9000 -h /tmp"]

[[service]]
name = "held"
bundle = "rich"
restart = "always"

[[service]]
name = "pweb"
bundle = "netty"
restart = "never"

[[service]]
name = "ppeer"
bundle = "ticker"
restart = "never"

[[pod]]
name = "duo"
services = ["pweb", "ppeer"]
{}"#,
        PROBE.replace(
            "restart = \"never\"",
            "after = [\"held\", \"api\"]\nrestart = \"never\""
        )
    );
    let probe = br#"#!/bin/sh
echo '{"mode":"bounds"}' > /tmp/in.json
echo "agent=$(quilt run agent-any --json --timeout-ms 200000 --input /tmp/in.json)" > /dev/ttyS1
echo "hoard=$(quilt run hoarder --json)" > /dev/ttyS1
"#;
    let img = image(
        &[
            ("agent-any", agent.qb),
            ("rich", rich.qb),
            ("ticker", ticker.qb),
            ("netty", netty.qb),
            ("hoarder", hoarder.qb),
        ],
        &[("/bin/probe.sh", probe.to_vec(), 0o755)],
        &config,
    );
    let mut vm = boot(&img, Vec::new());
    let exit = vm.wait_exit(BOOT).unwrap();
    assert!(exit.powered_off(), "{exit:?}");
    let ch = vm.channel_text();
    let con = vm.console_text();
    let (run, out) = run_line(&ch, "agent=");
    assert_eq!(run["status"], 0, "{run}\n{con}");
    // A child holding a token its parent lacks.
    let richer = out["richer"].as_str().unwrap();
    assert!(
        richer.starts_with("denied") && richer.contains("never holds more than its parent"),
        "{out}"
    );
    // The family quota: 16 run slots, a quarter per family.
    assert_eq!(out["spawned"], 4, "{out}");
    assert!(out["quota"].as_str().unwrap().starts_with("busy"), "{out}");
    // An exec into a service whose bundle holds more than the caller.
    let execd = out["execd"].as_str().unwrap();
    assert!(
        execd.starts_with("denied") && execd.contains("does not hold"),
        "{out}"
    );
    // One container holds at most 16 relayed connections; the rest are
    // closed at once.
    let (run, hoard) = run_line(&ch, "hoard=");
    assert_eq!(hoard["still_open"], 16, "{run}\n{con}");
    // A pod member's net: token its pod-mate does not hold: not started,
    // so no relay exists in the shared network.
    let ev = vm.events();
    let failed = ev
        .iter()
        .find(|e| e.name() == Some("service-start-failed") && e.get("name") == Some("pweb"))
        .unwrap_or_else(|| panic!("pweb started with a relay its pod-mate could use:\n{con}"));
    // (The whole line: the error quotes bundle names, which the event
    // field parser does not unescape.)
    assert!(
        failed
            .line
            .contains("its pod shares one network with bundle"),
        "{failed:?}"
    );
    assert!(
        !ev.iter()
            .any(|e| e.name() == Some("service-start") && e.get("name") == Some("pweb")),
        "{con}"
    );
}

fn send(port: &Path, qb: &Path) -> (i32, String) {
    quilt_send(port, qb, 30).unwrap()
}

/// Item 3: a serial peer offering an installed bundle again changes
/// nothing (the tree containers run from keeps its inode); `quilt fsck
/// --repair` drops a rotted chunk, and the next offer fetches exactly it.
#[test]
fn a_reoffer_touches_no_tree_and_a_repair_refetches_only_the_rotten_chunk() {
    let dir = tool(
        "reoffer",
        "name = \"reoffer\"\nversion = 1\nentry = \"index.ts\"\n",
        "console.log(JSON.stringify({ ok: true }));\n",
    );
    let data = noise(300_000, 0x2545_f491_4f6c_dd1d);
    std::fs::write(dir.join("data.bin"), data).unwrap();
    let qb = signed_bundle(&dir).unwrap().qb;
    let config = format!(
        "modules = [\"virtio_mmio\", \"virtio_console\"]\n\n[update]\nport = \"/dev/vport0p1\"\n{PROBE}"
    );
    // Steps are driven by the host through `quilt send`; the probe waits
    // for each one's kernel log line.
    let probe = br#"#!/bin/sh
tree=/run/quilt/bundles/reoffer@1
# quilt-init's events from now on (the kernel log rate-limits them).
quilt events > /tmp/ev 2>&1 &
sleep 1
echo "listening" > /dev/ttyS1
# wait_log PATTERN N: until N events matching PATTERN were seen.
wait_log() {
    for i in $(seq 1 1200); do
        [ "$(grep -c "$1" /tmp/ev)" -ge "$2" ] && return 0
        sleep 0.25
    done
    return 1
}
ino() { ls -i "$tree/index.ts" | awk '{print $1}'; }
installed='event=bundle-installed name=reoffer version=1 .*already=false'
wait_log "$installed" 1 || echo "never installed" > /dev/ttyS1
echo "ino1=$(ino)" > /dev/ttyS1
wait_log 'name=reoffer version=1 chunks_written=0 already=true' 1 || echo "never re-offered" > /dev/ttyS1
echo "ino2=$(ino) files=$(ls $tree | wc -l)" > /dev/ttyS1
big=$(ls -l /var/lib/quilt/store/chunks/*/* | sort -n -k5 | tail -1 | awk '{print $NF}')
printf 'X' | dd of="$big" bs=1 seek=100 conv=notrunc 2>/dev/null
quilt fsck > /tmp/f1; echo "fsck1=$? $(head -1 /tmp/f1)" > /dev/ttyS1
quilt fsck --repair > /tmp/f2; echo "repair=$? $(tr '\n' '|' < /tmp/f2)" > /dev/ttyS1
wait_log "$installed" 2 || echo "never healed" > /dev/ttyS1
quilt fsck > /tmp/f3; echo "fsck2=$? $(head -1 /tmp/f3)" > /dev/ttyS1
echo "ino3=$(ino)" > /dev/ttyS1
"#;
    let img = ImageBuilder::new()
        .busybox()
        .bun_runtime()
        .modules(&["virtio_mmio", "virtio_console"])
        .file("/bin/quilt", guest_binary("quilt", "quilt").unwrap(), 0o755)
        .bytes("/bin/probe.sh", probe.to_vec(), 0o755)
        .tree("/etc/quilt/trust", test_key().unwrap().1)
        .config_toml(&config)
        .build()
        .unwrap();
    let sock = work_dir()
        .unwrap()
        .join(format!("trust-update-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let mut vm = boot(
        &img,
        vec![
            "-device".into(),
            "virtio-serial-device".into(),
            "-chardev".into(),
            format!("socket,id=upd,path={},server=on,wait=off", sock.display()),
            "-device".into(),
            "virtserialport,chardev=upd,name=quilt.update".into(),
        ],
    );
    vm.wait_for_console("event=update-port-open", Duration::from_secs(120))
        .unwrap();
    vm.wait_for_channel("listening", Duration::from_secs(120))
        .unwrap();
    let (code, first) = send(&sock, &qb);
    assert_eq!(code, 0, "{first}");
    vm.wait_for_channel("ino1=", Duration::from_secs(120))
        .unwrap();
    let (code, again) = send(&sock, &qb);
    assert_eq!(code, 0, "{again}");
    assert!(again.contains("already installed"), "{again}");
    vm.wait_for_channel("repair=", Duration::from_secs(120))
        .unwrap();
    let (code, heal) = send(&sock, &qb);
    assert_eq!(code, 0, "{heal}");
    let exit = vm.wait_exit(BOOT).unwrap();
    assert!(exit.powered_off(), "{exit:?}");
    let ch = vm.channel_text();
    let get = |k: &str| {
        ch.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k}:\n{ch}\n{}", vm.console_text()))
            .to_string()
    };
    let ino1 = get("ino1=");
    let ino2 = get("ino2=");
    assert!(!ino1.is_empty(), "{ch}");
    // The re-offer rewrote nothing: same file, all files still there.
    assert_eq!(ino2, format!("{ino1} files=3"), "{ch}");
    assert!(get("fsck1=").starts_with("1 "), "{ch}");
    let repair = get("repair=");
    assert!(
        repair.starts_with("0 ")
            && repair.contains("dropped 1 damaged chunk")
            && repair.contains("offer again: reoffer"),
        "{repair}"
    );
    assert!(get("fsck2=").starts_with("0 "), "{ch}");
    // The heal fetched the one dropped chunk, not the bundle.
    assert!(
        heal.contains("installed reoffer version 1") && heal.contains("the board already held"),
        "{heal}"
    );
    assert_eq!(get("ino3="), ino1, "{ch}");
    assert!(!ch.contains("never"), "{ch}");
}
