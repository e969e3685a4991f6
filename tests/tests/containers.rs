//! Bun tools in quilt-init's own containers, end to end: real kernel, real
//! Bun, real signatures. Bundles are packed and signed at test time with a
//! fresh key (never committed); the image carries the trust dir and the
//! `.qb` files, quilt-init installs what the trust store accepts, and a
//! probe service drives runs through the `quilt` CLI on the control socket.

use quilt_system_tests::{
    guest_binary, host_binary, is_sdk_project, pack_or_build, repo_root, work_dir, ImageBuilder,
    Vm, VmOpts,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(240);

/// A key pair and a trust dir holding its public half.
struct Signer {
    key: PathBuf,
    trust: PathBuf,
}

fn quilt(args: &[&str]) -> String {
    let bin = host_binary("quilt", "quilt").unwrap();
    let out = Command::new(&bin).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "quilt {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn signer(name: &str) -> Signer {
    let dir = work_dir().unwrap().join(format!("keys-{name}"));
    let trust = dir.join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    let base = dir.join(name);
    if !base.with_extension("key").exists() {
        quilt(&["key", "gen", "--out", base.to_str().unwrap()]);
    }
    std::fs::copy(
        base.with_extension("pub"),
        trust.join(format!("{name}.pub")),
    )
    .unwrap();
    Signer {
        key: base.with_extension("key"),
        trust,
    }
}

fn trusted() -> &'static Signer {
    static S: OnceLock<Signer> = OnceLock::new();
    S.get_or_init(|| signer("device-root"))
}

fn tool_dir(name: &str) -> PathBuf {
    let fixtures = repo_root().join("tests/fixtures/tools").join(name);
    if fixtures.exists() {
        fixtures
    } else {
        repo_root().join("examples").join(name)
    }
}

/// Pack a tool directory (optionally edited first) and sign it. An SDK
/// example (`examples/json-transform`) is built with `quilt build` where it
/// is: its `package.json` names the SDK by a relative path.
fn bundle(name: &str, edit: Option<&dyn Fn(&Path)>, key: Option<&Path>) -> PathBuf {
    let src = tool_dir(name);
    if is_sdk_project(&src) {
        assert!(
            edit.is_none(),
            "{name}: edit a copy of a plain tool instead"
        );
        let qb = work_dir()
            .unwrap()
            .join(format!("{name}-{}.qb", rand_suffix()));
        pack_or_build(&src, &qb).unwrap();
        if let Some(k) = key {
            quilt(&[
                "bundle",
                "sign",
                qb.to_str().unwrap(),
                "--key",
                k.to_str().unwrap(),
            ]);
        }
        return qb;
    }
    let dir = work_dir()
        .unwrap()
        .join(format!("src-{name}-{}", rand_suffix()));
    copy_dir(&src, &dir);
    if let Some(f) = edit {
        f(&dir);
    }
    let qb = dir.with_extension("qb");
    quilt(&[
        "bundle",
        "pack",
        dir.to_str().unwrap(),
        "--out",
        qb.to_str().unwrap(),
    ]);
    if let Some(k) = key {
        quilt(&[
            "bundle",
            "sign",
            qb.to_str().unwrap(),
            "--key",
            k.to_str().unwrap(),
        ]);
    }
    qb
}

fn signed(name: &str) -> PathBuf {
    bundle(name, None, Some(&trusted().key))
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// An image with Bun, the quilt CLI, the trust dir and these bundles.
fn image(bundles: &[(&str, PathBuf)], config: &str, files: &[(&str, &[u8])]) -> PathBuf {
    image_with_modules(bundles, config, files, &[])
}

/// [`image`] with kernel modules (and their dependencies) in it.
fn image_with_modules(
    bundles: &[(&str, PathBuf)],
    config: &str,
    files: &[(&str, &[u8])],
    modules: &[&str],
) -> PathBuf {
    let cli = guest_binary("quilt", "quilt").unwrap();
    let mut b = ImageBuilder::new()
        .busybox()
        .modules(modules)
        .bun_runtime()
        .file("/bin/quilt", &cli, 0o755)
        .config_toml(config);
    for e in std::fs::read_dir(&trusted().trust).unwrap() {
        let e = e.unwrap();
        b = b.file(
            &format!("/etc/quilt/trust/{}", e.file_name().to_string_lossy()),
            e.path(),
            0o644,
        );
    }
    for (name, qb) in bundles {
        b = b.file(&format!("/usr/share/quilt/bundles/{name}.qb"), qb, 0o644);
    }
    for (path, data) in files {
        b = b.bytes(path, data.to_vec(), 0o755);
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

/// The agent and the bundles its tokens let it spawn.
fn agent_family() -> Vec<(&'static str, PathBuf)> {
    ["agent", "json-transform", "ticker", "grower"]
        .into_iter()
        .map(|b| (b, signed(b)))
        .collect()
}

fn json_line(ch: &str, prefix: &str) -> serde_json::Value {
    let line = ch
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line on the channel:\n{ch}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{prefix}{line}: {e}"))
}

#[test]
fn a_tool_runs_from_a_signed_bundle_and_leaves_nothing_behind() {
    let probe = br#"#!/bin/sh
echo '{"items":[{"name":"b","category":"x","price":2.5,"qty":2},{"name":"a","category":"x","price":1,"qty":5}]}' > /tmp/in.json
before_mounts=$(wc -l < /proc/mounts)
out=$(quilt run examples/json-transform transform --input /tmp/in.json)
echo "status=$?" > /dev/ttyS1
echo "result=$out" > /dev/ttyS1
echo "runs_left=$(ls /sys/fs/cgroup/quilt/runs | grep -c '^[0-9]')" > /dev/ttyS1
echo "mounts_delta=$(( $(wc -l < /proc/mounts) - before_mounts ))" > /dev/ttyS1
echo "json=$(quilt run checker --json)" > /dev/ttyS1
"#;
    let img = image(
        &[
            ("json-transform", signed("json-transform")),
            ("checker", signed("checker")),
        ],
        PROBE,
        &[("/bin/probe.sh", probe)],
    );
    let (vm, ch) = Vm::run_to_poweroff(&img, 1024, BOOT);
    assert!(ch.contains("status=0"), "{ch}");
    assert!(
        ch.contains("runs_left=0"),
        "a run's cgroup was left behind:\n{ch}"
    );
    assert!(
        ch.contains("mounts_delta=0"),
        "a run left a mount behind:\n{ch}"
    );
    // The SDK's envelope: a result, not an error.
    let envelope = json_line(&ch, "result=");
    let result = &envelope["result"];
    assert_eq!(result["total"], 10, "{envelope}");
    assert_eq!(
        result["items"][0]["name"], "a",
        "ties sort by name: {envelope}"
    );
    // The checker's own verdict, check by check, so a failure names the promise.
    let run = json_line(&ch, "json=");
    let inner: serde_json::Value = serde_json::from_str(run["stdout"].as_str().unwrap()).unwrap();
    for (name, ok) in inner["checks"].as_object().unwrap() {
        assert_eq!(
            ok, true,
            "container check {name} failed: {inner}\nstderr: {}",
            run["stderr_tail"]
        );
    }
    assert_eq!(run["status"], 0);
    let ev = vm.events();
    assert_eq!(
        ev.iter()
            .filter(|e| e.name() == Some("bundle-installed"))
            .count(),
        2
    );
}

/// Every example tool still runs in its container under the allow-listed
/// seccomp filter (issue 14), each called with the input its manifest
/// gives as an example: the plain-protocol hello, both SDK tools of
/// text-tools, and bun-apis (Bun.write/Bun.file on /tmp, Bun.hash,
/// CryptoHasher, timers). json-transform and the bus demo run in the tests
/// above and in bus.rs.
#[test]
fn every_example_tool_runs_under_the_allow_list() {
    let probe = br#"#!/bin/sh
echo '{"n":1}' > /tmp/hello.json
echo '{"text":"a b a","top":1}' > /tmp/count.json
echo '{"title":"Hello, World"}' > /tmp/slug.json
echo '{"text":"hello","delay_ms":20}' > /tmp/apis.json
echo "hello=$(quilt run examples/hello --input /tmp/hello.json)" > /dev/ttyS1
echo "count=$(quilt run examples/text-tools count --input /tmp/count.json)" > /dev/ttyS1
echo "slug=$(quilt run examples/text-tools slug --input /tmp/slug.json)" > /dev/ttyS1
echo "apis=$(quilt run examples/bun-apis roundtrip --input /tmp/apis.json)" > /dev/ttyS1
"#;
    let img = image(
        &[
            ("hello", signed("hello")),
            ("text-tools", signed("text-tools")),
            ("bun-apis", signed("bun-apis")),
        ],
        PROBE,
        &[("/bin/probe.sh", probe)],
    );
    let (vm, ch) = Vm::run_to_poweroff(&img, 1024, BOOT);
    let seen = |k: &str| -> serde_json::Value {
        let v = json_line(&ch, &format!("{k}="));
        assert!(v.get("error").is_none(), "{k}: {v}\n{}", vm.console_text());
        v
    };
    assert_eq!(
        seen("hello"),
        serde_json::json!({"hello": "quilt", "input": {"n": 1}})
    );
    assert_eq!(
        seen("count")["result"],
        serde_json::json!({"words": 3, "lines": 1, "chars": 5, "top": [{"word": "a", "count": 2}]})
    );
    assert_eq!(seen("slug")["result"], "hello-world");
    let apis = &seen("apis")["result"];
    assert_eq!(apis["roundtrip"], true, "{apis}");
    assert_eq!(apis["removed"], true, "{apis}");
    assert_eq!(apis["timer_ok"], true, "{apis}");
    // SHA-256("hello"): the hash ran, through Bun's own crypto.
    assert_eq!(
        apis["sha256"], "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        "{apis}"
    );
}

#[test]
fn signed_tokens_grant_a_user_namespace_a_capability_an_overlay_and_io_limits() {
    // `granted` carries userns, cap:net_bind_service, write:data and
    // io limits; `checker` carries none and must keep all of them shut.
    let probe = br#"#!/bin/sh
quilt run granted --json > /tmp/granted.json 2>&1 &
for i in $(seq 1 100); do
    io=$(cat /sys/fs/cgroup/quilt/runs/*/io.max 2>/dev/null)
    [ -n "$io" ] && break
    sleep 0.1
done
echo "iomax=$io" > /dev/ttyS1
wait
echo "granted=$(cat /tmp/granted.json)" > /dev/ttyS1
echo "checker=$(quilt run checker --json)" > /dev/ttyS1
echo "upper_left=$(ls /run/quilt/scratch | wc -l)" > /dev/ttyS1
"#;
    let config = format!("modules = [\"overlay\", \"virtio_mmio\", \"virtio_blk\"]\n{PROBE}");
    let img = image_with_modules(
        &[
            ("granted", signed("granted")),
            ("checker", signed("checker")),
        ],
        &config,
        &[("/bin/probe.sh", probe)],
        &["overlay", "virtio_mmio", "virtio_blk"],
    );
    let disk = work_dir()
        .unwrap()
        .join(format!("disk-{}.img", rand_suffix()));
    std::fs::write(&disk, vec![0u8; 8 << 20]).unwrap();
    let mut vm = Vm::boot(
        &img,
        VmOpts {
            mem_mb: 1024,
            timeout: BOOT,
            extra_args: vec![
                "-drive".into(),
                format!("id=d0,file={},format=raw,if=none", disk.display()),
                "-device".into(),
                "virtio-blk-device,drive=d0".into(),
            ],
            ..VmOpts::default()
        },
    )
    .unwrap();
    let exit = vm.wait_exit(BOOT).unwrap();
    assert!(exit.powered_off(), "{exit:?}");
    let ch = vm.channel_text();
    let io = ch
        .lines()
        .find_map(|l| l.strip_prefix("iomax="))
        .unwrap_or_default();
    let want =
        regex::Regex::new(r"^\d+:\d+ rbps=8388608 wbps=8388608 riops=500 wiops=500$").unwrap();
    assert!(
        io.lines().any(|l| want.is_match(l.trim())),
        "no io.max line from the manifest's io limits on the block device:\n{ch}\n{}",
        vm.console_text()
    );
    for name in ["granted", "checker"] {
        let run = json_line(&ch, &format!("{name}="));
        let inner: serde_json::Value = serde_json::from_str(run["stdout"].as_str().unwrap_or(""))
            .unwrap_or_else(|e| panic!("{name}: {e}: {run}"));
        for (check, ok) in inner["checks"].as_object().unwrap() {
            assert_eq!(
                ok.as_bool(),
                Some(true),
                "{name}: check {check} failed: {inner}\nstderr: {}",
                run["stderr_tail"]
            );
        }
        assert_eq!(run["status"], 0, "{name}: {run}");
    }
    assert!(ch.contains("upper_left=0"), "{ch}");
}

#[test]
fn an_agent_spawns_waits_for_and_stops_children_bounded_by_its_own_limits() {
    // `agent` holds spawn tokens for json-transform, ticker and grower; it
    // drives them over its own control socket (tests/fixtures/tools/agent).
    let probe = br#"#!/bin/sh
echo '{"mode":"family"}' > /tmp/family.json
echo "family=$(quilt run agent --json --timeout-ms 120000 --input /tmp/family.json)" > /dev/ttyS1
echo "runs_after_family=$(ls /sys/fs/cgroup/quilt/runs | grep -c '^[0-9]')" > /dev/ttyS1
echo '{"mode":"linger"}' > /tmp/linger.json
quilt run agent --json --timeout-ms 120000 --input /tmp/linger.json > /tmp/linger.out 2>&1 &
for i in $(seq 1 300); do
    kids=$(ls -d /sys/fs/cgroup/quilt/runs/*/kids/*/ 2>/dev/null | wc -l)
    [ "$kids" -ge 3 ] && break
    sleep 0.1
done
echo "kids_before=$kids" > /dev/ttyS1
sleep 1
kill -9 $(cat /sys/fs/cgroup/quilt/runs/*/main/cgroup.procs)
wait
echo "linger=$(cat /tmp/linger.out)" > /dev/ttyS1
for i in $(seq 1 100); do
    left=$(ls /sys/fs/cgroup/quilt/runs | grep -c '^[0-9]')
    [ "$left" -eq 0 ] && break
    sleep 0.1
done
echo "runs_after_kill=$left" > /dev/ttyS1
echo "checker=$(quilt run checker --json)" > /dev/ttyS1
"#;
    let img = image(
        &agent_family()
            .into_iter()
            .chain([("checker", signed("checker"))])
            .collect::<Vec<_>>(),
        PROBE,
        &[("/bin/probe.sh", probe)],
    );
    let (vm, ch) = Vm::run_to_poweroff(&img, 2048, BOOT);
    let family = json_line(&ch, "family=");
    assert_eq!(family["status"], 0, "{family}\n{}", vm.console_text());
    // The OOM kill was its child's, not the agent's.
    assert_eq!(family["oom_killed"], false, "{family}");
    let out: serde_json::Value =
        serde_json::from_str(family["stdout"].as_str().unwrap_or("")).unwrap();
    assert_eq!(out["ids_distinct"], true, "{out}");
    assert_eq!(out["transform_status"], 0, "{out}");
    assert_eq!(out["transform_total"], 5, "{out}");
    // A ticker never ends by itself: 137 without a timeout is the stop.
    assert_eq!(out["ticker_status"], 137, "{out}");
    // The grower may take 1 GiB by its own manifest; the agent's 160 MiB
    // bounds the family, so the OOM killer stops it there.
    assert_eq!(out["grower_oom_killed"], true, "{out}");
    assert_eq!(out["grower_status"], 137, "{out}");
    assert_eq!(out["forbidden"], "denied", "{out}");
    assert_eq!(out["collected_twice"], "not-found", "{out}");
    assert!(ch.contains("runs_after_family=0"), "{ch}");
    assert!(ch.contains("kids_before=3"), "{ch}");
    let linger = json_line(&ch, "linger=");
    assert_eq!(linger["status"], 137, "{linger}");
    assert!(
        ch.contains("runs_after_kill=0"),
        "children or cgroups outlived their parent:\n{ch}\n{}",
        vm.console_text()
    );
    // Without a spawn token a tool gets no control socket at all.
    let checker = json_line(&ch, "checker=");
    let inner: serde_json::Value =
        serde_json::from_str(checker["stdout"].as_str().unwrap_or("")).unwrap();
    assert_eq!(inner["checks"]["no_control_socket"], true, "{inner}");
    let ev = vm.events();
    assert!(
        ev.iter()
            .any(|e| e.name() == Some("spawn-refused") && e.get("child") == Some("checker")),
        "no spawn-refused event"
    );
}

#[test]
fn the_operator_installs_upgrades_and_removes_bundles_on_a_running_board() {
    let v2_edit = |dir: &Path| {
        let toml = std::fs::read_to_string(dir.join("quilt.toml")).unwrap();
        std::fs::write(
            dir.join("quilt.toml"),
            toml.replace("version = 1", "version = 2"),
        )
        .unwrap();
        let ts = std::fs::read_to_string(dir.join("hello.ts")).unwrap();
        std::fs::write(
            dir.join("hello.ts"),
            ts.replace("hello: \"quilt\"", "hello: \"quilt v2\""),
        )
        .unwrap();
    };
    let v3_edit = |dir: &Path| {
        let toml = std::fs::read_to_string(dir.join("quilt.toml")).unwrap();
        std::fs::write(
            dir.join("quilt.toml"),
            toml.replace("version = 1", "version = 3"),
        )
        .unwrap();
    };
    let v1 = signed("hello");
    let v2 = bundle("hello", Some(&v2_edit), Some(&trusted().key));
    let v3 = bundle("hello", Some(&v3_edit), Some(&trusted().key));
    let flip_last = |qb: &Path| {
        let mut b = std::fs::read(qb).unwrap();
        let last = b.len() - 1;
        b[last] ^= 0x20;
        b
    };
    let tampered = flip_last(&v3);
    let tampered_v2 = flip_last(&v2);
    let probe = br#"#!/bin/sh
out=/dev/ttyS1
echo "list=$(quilt bundles --json | tr -d ' \n')" > $out
echo "v1_run=$(quilt run examples/hello)" > $out
# A stream: spooled into a sealed memfd by the CLI, passed as an fd.
echo "install_v2=$(cat /root/v2.qb | quilt install -)" > $out
quilt install - < /dev/null 2> /tmp/err; echo "empty=$? $(cat /tmp/err)" > $out
echo "v2_run=$(quilt run examples/hello)" > $out
quilt install /root/v1.qb 2> /tmp/err; echo "replay=$? $(cat /tmp/err)" > $out
cat /root/tampered.qb | quilt install - 2> /tmp/err; echo "tampered=$? $(cat /tmp/err)" > $out
echo "again=$(quilt install /root/tampered-v2.qb)" > $out
echo "still_v2=$(quilt run examples/hello)" > $out
echo "remove=$(quilt remove examples/hello)" > $out
quilt run examples/hello 2> /tmp/err; echo "gone=$? $(cat /tmp/err)" > $out
"#;
    let img = image(
        &[("hello", v1.clone())],
        PROBE,
        &[
            ("/bin/probe.sh", probe),
            ("/root/v1.qb", &std::fs::read(&v1).unwrap()),
            ("/root/v2.qb", &std::fs::read(&v2).unwrap()),
            ("/root/tampered.qb", &tampered),
            ("/root/tampered-v2.qb", &tampered_v2),
        ],
    );
    let (_vm, ch) = Vm::run_to_poweroff(&img, 1024, BOOT);
    let get = |k: &str| -> String {
        ch.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k}= line:\n{ch}"))
            .to_owned()
    };
    let list: serde_json::Value = serde_json::from_str(&get("list")).unwrap();
    assert_eq!(list["bundles"][0]["name"], "examples/hello", "{list}");
    assert_eq!(list["bundles"][0]["version"], 1, "{list}");
    assert_eq!(
        list["trust"]["keys"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );
    assert!(
        list["trust"]["policy"]
            .as_str()
            .unwrap()
            .contains("root-threshold"),
        "{list}"
    );
    assert!(get("v1_run").contains(r#""hello":"quilt""#), "{ch}");
    assert!(
        get("install_v2").starts_with("installed examples/hello version 2"),
        "{ch}"
    );
    assert!(get("v2_run").contains(r#""hello":"quilt v2""#), "{ch}");
    let empty = get("empty");
    assert!(
        empty.starts_with("1 ") && empty.contains("standard input was empty"),
        "{empty}"
    );
    let replay = get("replay");
    assert!(
        replay.starts_with("3 "),
        "an older version was not refused: {replay}"
    );
    let tampered = get("tampered");
    assert!(
        tampered.starts_with("3 ") && tampered.contains("does not hash"),
        "{tampered}"
    );
    // The same signed bundle again: its header and manifest match what is
    // installed, so its content is not read, and the CLI says so.
    assert!(
        get("again").contains("version 2 is already installed"),
        "{ch}"
    );
    assert!(get("still_v2").contains(r#""hello":"quilt v2""#), "{ch}");
    assert_eq!(get("remove"), "removed examples/hello", "{ch}");
    let gone = get("gone");
    assert!(
        gone.starts_with("3 ") && gone.contains("not installed"),
        "{gone}"
    );
}

#[test]
fn counted_tokens_queue_and_the_request_closing_a_deadlock_is_refused() {
    let config = format!(
        "[[resource]]\nname = \"llm:gpt\"\ncapacity = 1\n\n[[resource]]\nname = \"llm:db\"\ncapacity = 1\n{PROBE}"
    );
    let probe = br#"#!/bin/sh
echo '{"mode":"lock","first":"llm:gpt","second":"llm:db","hold_ms":3000}' > /tmp/a.json
echo '{"mode":"lock","first":"llm:db","second":"llm:gpt","hold_ms":6000}' > /tmp/b.json
quilt run agent --json --timeout-ms 120000 --input /tmp/a.json > /tmp/a.out 2>&1 &
quilt run agent --json --timeout-ms 120000 --input /tmp/b.json > /tmp/b.out 2>&1 &
wait
echo "a=$(cat /tmp/a.out)" > /dev/ttyS1
echo "b=$(cat /tmp/b.out)" > /dev/ttyS1
echo "after=$(quilt tokens --json | tr -d ' \n')" > /dev/ttyS1
"#;
    let img = image(
        &[("agent", signed("agent"))],
        &config,
        &[("/bin/probe.sh", probe)],
    );
    let (vm, ch) = Vm::run_to_poweroff(&img, 1024, BOOT);
    let tool = |k: &str| -> serde_json::Value {
        let run = json_line(&ch, k);
        serde_json::from_str(run["stdout"].as_str().unwrap_or(""))
            .unwrap_or_else(|e| panic!("{k} {e}: {run}\n{}", vm.console_text()))
    };
    let (a, b) = (tool("a="), tool("b="));
    // A holds gpt and waits for db (held by B); B asking for gpt would
    // close the cycle: B is refused, gives db back, and A gets it.
    assert_eq!(a["first"], "ok", "{a}");
    assert_eq!(b["first"], "ok", "{b}");
    assert_eq!(b["second"], "deadlock", "{b}");
    assert_eq!(a["second"], "ok", "{a}");
    assert!(
        a["waited_ms"].as_u64().unwrap() >= 1000,
        "A did not wait: {a}"
    );
    // Tokens name what a container may take; nothing else.
    assert_eq!(a["unowned"], "denied", "{a}");
    let after: serde_json::Value =
        serde_json::from_str(ch.lines().find_map(|l| l.strip_prefix("after=")).unwrap()).unwrap();
    for r in after["resources"].as_array().unwrap() {
        assert_eq!(r["used"], 0, "{after}");
        assert_eq!(r["waiting"], 0, "{after}");
    }
    let ev = vm.events();
    assert!(
        ev.iter().any(|e| e.name() == Some("deadlock-refused")),
        "no deadlock-refused event"
    );
}

#[test]
fn exec_starts_a_process_inside_a_running_container_only_with_its_token() {
    let config = format!(
        "[[service]]\nname = \"tick\"\nbundle = \"ticker\"\nrestart = \"always\"\n\n{}",
        PROBE.replace(
            "restart = \"never\"",
            "after = [\"tick\"]\nrestart = \"never\""
        )
    );
    let probe = br#"#!/bin/sh
echo '{"mode":"exec"}' > /tmp/e.json
echo "agent=$(quilt run agent --json --timeout-ms 120000 --input /tmp/e.json)" > /dev/ttyS1
echo "operator=$(quilt exec tick --json -- /bin/bun -e 'console.log(require("node:os").hostname())')" > /dev/ttyS1
quilt exec probe -- /bin/true 2> /tmp/err; echo "not_container=$? $(cat /tmp/err)" > /dev/ttyS1
echo "left=$(ls /sys/fs/cgroup/quilt/tick | grep -c '^exec-')" > /dev/ttyS1
"#;
    let img = image(
        &[("agent", signed("agent")), ("ticker", signed("ticker"))],
        &config,
        &[("/bin/probe.sh", probe)],
    );
    let (vm, ch) = Vm::run_to_poweroff(&img, 1024, BOOT);
    let agent = json_line(&ch, "agent=");
    let out: serde_json::Value = serde_json::from_str(agent["stdout"].as_str().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {agent}\n{}", vm.console_text()));
    let setup: Vec<String> = vm
        .console_text()
        .lines()
        .filter(|l| l.contains("event=exec"))
        .map(str::to_owned)
        .collect();
    assert_eq!(out["status"], 0, "{out}\n{setup:?}");
    let inside = &out["inside"];
    // The target's UTS, PID and mount namespaces: its hostname, its Bun as
    // PID 1, its /app.
    assert_eq!(inside["hostname"], "tick", "{out}");
    assert!(
        inside["pid1"].as_str().unwrap().contains("/app/index.ts"),
        "{out}"
    );
    assert_eq!(inside["app"], true, "{out}");
    // And what every container process gets.
    // The target's identity (its own uid, crate::ids in quilt-init), not
    // the caller's and not root.
    assert_eq!(inside["uid"], inside["target_uid"], "{out}");
    assert!(inside["uid"].as_u64().unwrap_or(0) >= 200_000, "{out}");
    assert_eq!(inside["cap_eff"], "0000000000000000", "{out}");
    assert_eq!(inside["seccomp"], "2", "{out}");
    assert_eq!(inside["no_new_privs"], "1", "{out}");
    // In a cgroup of its own below the target's (the cgroup namespace
    // shows the target's as the root).
    assert!(
        inside["cgroup"].as_str().unwrap().starts_with("0::/exec-"),
        "{out}"
    );
    assert_eq!(out["other"], "denied", "{out}");
    let op = json_line(&ch, "operator=");
    assert_eq!(op["status"], 0, "{op}");
    assert_eq!(op["stdout"], "tick\n", "{op}");
    let nc = ch
        .lines()
        .find_map(|l| l.strip_prefix("not_container="))
        .unwrap();
    assert!(
        nc.starts_with("3 ") && nc.contains("not a container"),
        "{nc}"
    );
    assert!(
        ch.contains("left=0"),
        "an exec cgroup was left behind:\n{ch}"
    );
    assert!(vm
        .events()
        .iter()
        .any(|e| e.name() == Some("exec-refused") && e.get("target") == Some("calc")));
}

#[test]
fn a_pod_shares_network_ipc_and_volumes_and_stops_as_one() {
    let config = r#"
[[pod]]
name = "duo"
services = ["web", "peer"]
volumes = ["shared"]
pid = true

[[service]]
name = "web"
bundle = "pod-web"
restart = "always"

[[service]]
name = "peer"
bundle = "pod-peer"
restart = "always"

[[service]]
name = "alone"
bundle = "pod-peer2"
restart = "always"

[[service]]
name = "probe"
exec = ["/bin/probe.sh"]
after = ["web", "peer"]
restart = "never"
on_exit = "poweroff"
"#;
    let check = r#"
const fs = require("node:fs");
const note = fs.readFileSync("/run/volumes/shared/note", "utf8");
let ro = false;
try { fs.writeFileSync("/run/volumes/shared/x", "x"); } catch { ro = true; }
const net = fs.readFileSync("/proc/net/tcp", "utf8").includes(":1F90");
const all = fs.readdirSync("/proc").filter((n) => /^[0-9]+$/.test(n));
const pids = all.length;
// The neighbour: web's Bun, in the same PID namespace, found by its
// cgroup (world-readable; ours is below peer's). It must be out of reach:
// its memory, its environment, a signal.
const uidOf = (p) => Number((fs.readFileSync(`/proc/${p}/status`, "utf8").match(/^Uid:\s+(\d+)/m) || [])[1]);
const me = process.getuid();
const web = all.map(Number).find((p) => {
  try {
    return /\/web(\/|$)/m.test(fs.readFileSync(`/proc/${p}/cgroup`, "utf8")) &&
      fs.readFileSync(`/proc/${p}/cmdline`, "utf8").includes("/app/index.ts");
  } catch { return false; }
});
const code = (f) => { try { f(); return "allowed"; } catch (e) { return e.code || String(e); } };
const neighbour = web === undefined ? { found: false } : {
  found: true,
  uid_differs: uidOf(web) !== me,
  mem: code(() => fs.closeSync(fs.openSync(`/proc/${web}/mem`, "r"))),
  environ: code(() => fs.readFileSync(`/proc/${web}/environ`)),
  kill: code(() => process.kill(web, 0)),
};
fetch("http://127.0.0.1:8080/").then((r) => r.text()).then((http) =>
  console.log(JSON.stringify({ note, http, ro, listening: net, pids, neighbour }))
).catch((e) => console.log(JSON.stringify({ note, http: String(e), ro, listening: net, pids, neighbour })));
"#;
    let probe = format!(
        r#"#!/bin/sh
for i in $(seq 1 100); do
    quilt ps | grep -q '^web .*running' && quilt ps | grep -q '^peer .*running' && break
    sleep 0.2
done
sleep 2
cat > /tmp/check.js <<'JS'
{check}
JS
echo "peer=$(quilt exec peer --json -- /bin/bun -e "$(cat /tmp/check.js)")" > /dev/ttyS1
echo "alone=$(quilt exec alone --json -- /bin/bun -e "fetch('http://127.0.0.1:8080/').then(r=>r.text()).then(console.log).catch(e=>console.log('refused'))")" > /dev/ttyS1
echo "pods=$(quilt pods --json | tr -d ' \n')" > /dev/ttyS1
out=$(quilt slots 2>&1)
echo "slots=$? $out" > /dev/ttyS1
# The first member alone restarts: it and the peer still share a loopback.
quilt restart web > /dev/null
sleep 1
echo "again=$(quilt exec peer --json -- /bin/bun -e "(async()=>{{for(let i=0;i<60;i++){{try{{return await (await fetch('http://127.0.0.1:8080/')).text()}}catch{{await Bun.sleep(250)}}}}return 'refused'}})().then(console.log)")" > /dev/ttyS1
echo "stop=$(quilt stop duo)" > /dev/ttyS1
for i in $(seq 1 50); do
    quilt ps | grep -q '^web .*stopped' && quilt ps | grep -q '^peer .*stopped' && break
    sleep 0.2
done
echo "after=$(quilt ps | grep -E '^(web|peer|alone) ' | tr -s ' ' | cut -d' ' -f1,2 | tr '\n' ,)" > /dev/ttyS1
"#
    );
    let img = image(
        &[
            ("pod-web", signed("pod-web")),
            ("pod-peer", signed("pod-peer")),
            (
                "pod-peer2",
                bundle(
                    "pod-peer",
                    Some(&|d: &Path| {
                        let t = std::fs::read_to_string(d.join("quilt.toml")).unwrap();
                        std::fs::write(
                            d.join("quilt.toml"),
                            t.replace("name = \"pod-peer\"", "name = \"pod-peer2\"")
                                .replace("tokens = [\"fs:shared:ro\"]", "tokens = []"),
                        )
                        .unwrap();
                    }),
                    Some(&trusted().key),
                ),
            ),
        ],
        config,
        &[("/bin/probe.sh", probe.as_bytes())],
    );
    let (vm, ch) = Vm::run_to_poweroff(&img, 1536, BOOT);
    let peer = json_line(&ch, "peer=");
    let out: serde_json::Value = serde_json::from_str(peer["stdout"].as_str().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {peer}\n{}", vm.console_text()));
    // The peer reads what web wrote in the pod volume, may not write it,
    // and reaches web's server on the loopback they share.
    assert!(
        out["note"]
            .as_str()
            .unwrap()
            .starts_with("written by pod-web"),
        "{out}"
    );
    assert_eq!(out["ro"], true, "{out}");
    assert_eq!(out["http"], out["note"], "{out}");
    assert_eq!(
        out["listening"], true,
        "port 8080 not in the peer's netns: {out}"
    );
    // `pid = true`: the pod's holder (PID 1 inside), web's and peer's Bun
    // and this exec are all in one PID namespace; a container alone sees
    // itself and its exec only.
    assert!(out["pids"].as_u64().unwrap() >= 4, "{out}");
    // Yet each member is someone else: from the peer, web's Bun (same PID
    // namespace) has another uid, and its memory, its environment and a
    // signal to it are all refused.
    let n = &out["neighbour"];
    assert_eq!(n["found"], true, "no neighbour seen: {out}");
    assert_eq!(
        n["mem"], "EACCES",
        "a pod member read another's memory: {out}"
    );
    assert_eq!(n["environ"], "EACCES", "{out}");
    assert_eq!(n["kill"], "EPERM", "{out}");
    assert_eq!(n["uid_differs"], true, "{out}");
    // A service outside the pod has a loopback of its own.
    let again = json_line(&ch, "again=");
    assert!(
        again["stdout"]
            .as_str()
            .unwrap_or("")
            .starts_with("written by pod-web"),
        "the peer lost the restarted first member: {again}"
    );
    let alone = json_line(&ch, "alone=");
    assert_eq!(alone["stdout"], "refused\n", "{alone}");
    assert_eq!(
        ch.lines().find_map(|l| l.strip_prefix("stop=")),
        Some("duo: stopping"),
        "{ch}"
    );
    let pods: serde_json::Value =
        serde_json::from_str(ch.lines().find_map(|l| l.strip_prefix("pods=")).unwrap()).unwrap();
    assert_eq!(pods[0]["name"], "duo", "{pods}");
    assert_eq!(pods[0]["members"][1]["name"], "peer", "{pods}");
    assert_eq!(pods[0]["members"][1]["state"], "running", "{pods}");
    assert_eq!(pods[0]["volumes"][0], "shared", "{pods}");
    // A board without A/B slots says so, with the refusal's exit status.
    assert!(
        ch.contains("slots=3 quilt: refused (NotFound): this board has no A/B slots"),
        "{ch}"
    );
    let after = ch.lines().find_map(|l| l.strip_prefix("after=")).unwrap();
    assert!(
        after.contains("web stopped")
            && after.contains("peer stopped")
            && after.contains("alone running"),
        "{after}"
    );
}

#[test]
fn net_tokens_reach_exactly_their_destinations_through_pid1s_relay() {
    // `api` plays the outside world in the host's namespace: two web
    // servers, one on 127.0.0.1:9000 and one on 10.9.8.7:9001.
    let config = r#"
[[net]]
to = "127.0.0.1:9000"

[[net]]
to = "10.9.8.7:9001"

[[service]]
name = "api"
exec = ["/bin/api.sh"]

[[service]]
name = "netsvc"
bundle = "net-client"
after = ["api"]
restart = "never"

[[service]]
name = "probe"
exec = ["/bin/probe.sh"]
after = ["api"]
restart = "never"
on_exit = "poweroff"
"#;
    let api = br#"#!/bin/sh
ip link set lo up
ip addr add 10.9.8.7/32 dev lo
mkdir -p /www/a /www/b
echo from-a > /www/a/hello.txt
echo from-b > /www/b/hello.txt
seq 1 150000 > /www/b/big.txt
busybox httpd -p 127.0.0.1:9000 -h /www/a
busybox httpd -p 10.9.8.7:9001 -h /www/b
busybox httpd -p 127.0.0.1:9002 -h /www/a
exec sleep 100000
"#;
    let probe = br#"#!/bin/sh
for i in $(seq 1 300); do
    quilt ps | grep -q '^netsvc .*done' && break
    sleep 0.2
done
echo "svc=$(quilt logs netsvc | grep '^{' | head -n 1)" > /dev/ttyS1
fds0=$(ls /proc/1/fd | wc -l)
echo "run=$(quilt run net-client --json | tr -d '\n')" > /dev/ttyS1
echo "run2=$(quilt run net-client --json | tr -d '\n')" > /dev/ttyS1
quilt run net-denied > /tmp/denied 2>&1
st=$?
echo "denied=$(tr -d '\n' < /tmp/denied) status=$st" > /dev/ttyS1
sleep 0.5
echo "fds=$fds0 $(ls /proc/1/fd | wc -l)" > /dev/ttyS1
"#;
    let denied = bundle(
        "net-client",
        Some(&|d: &Path| {
            let t = std::fs::read_to_string(d.join("quilt.toml")).unwrap();
            std::fs::write(
                d.join("quilt.toml"),
                t.replace("name = \"net-client\"", "name = \"net-denied\"")
                    .replace("net:10.9.8.7:9001", "net:10.9.8.7:9999"),
            )
            .unwrap();
        }),
        Some(&trusted().key),
    );
    let img = image(
        &[("net-client", signed("net-client")), ("net-denied", denied)],
        config,
        &[("/bin/api.sh", api), ("/bin/probe.sh", probe)],
    );
    let (vm, ch) = Vm::run_to_poweroff(&img, 1024, BOOT);
    let fail = |what: &str| -> String { format!("{what}\n{ch}\n{}", vm.console_text()) };
    let check = |out: &serde_json::Value| {
        assert_eq!(out["a"], "from-a", "{}", fail(&out.to_string()));
        assert_eq!(out["b"], "from-b", "{out}");
        assert_eq!(out["big_bytes"], 938_895, "{out}");
        assert_eq!(out["big_ok"], true, "{out}");
        // Granted address, other port: nothing listens in the container's
        // namespace (refused), though the host has a server there.
        assert_eq!(out["other_port"], "error:ECONNREFUSED", "{out}");
        // Another host: loopback only, no route.
        assert_eq!(out["other_host"], "error:ENETUNREACH", "{out}");
    };
    // As a supervised service.
    let svc = ch
        .lines()
        .find_map(|l| l.strip_prefix("svc="))
        .unwrap_or_else(|| panic!("{}", fail("no svc line")));
    check(&serde_json::from_str(svc).unwrap_or_else(|e| panic!("{e}: {}", fail(svc))));
    // As ephemeral runs, twice (listeners are per container).
    for key in ["run=", "run2="] {
        let run = json_line(&ch, key);
        let out: serde_json::Value = serde_json::from_str(run["stdout"].as_str().unwrap_or(""))
            .unwrap_or_else(|e| panic!("{e}: {}", fail(&run.to_string())));
        check(&out);
    }
    // A destination the board does not allow: refused before it starts.
    let denied = ch.lines().find_map(|l| l.strip_prefix("denied=")).unwrap();
    assert!(
        denied.contains("net:10.9.8.7:9999")
            && denied.contains("[[net]]")
            && !denied.ends_with("status=0"),
        "{denied}"
    );
    // Every listener and relayed connection went with its container.
    let fds = ch.lines().find_map(|l| l.strip_prefix("fds=")).unwrap();
    let (before, after) = fds.split_once(' ').unwrap();
    assert_eq!(before, after, "PID 1 kept fds: {fds}");
    let ev = vm.events();
    let opened = ev
        .iter()
        .filter(|e| e.name() == Some("net-relay-open"))
        .count();
    let closed = ev
        .iter()
        .filter(|e| e.name() == Some("net-relay-closed"))
        .count();
    assert!(opened >= 9, "{opened} relayed connections");
    assert_eq!(opened, closed, "relays left open");
}

#[test]
fn a_supervised_service_spawns_children_under_its_own_cgroup_too() {
    let config = r#"
[[service]]
name = "agentd"
bundle = "agent"
input = "/etc/family.json"
console = true
restart = "never"

[[service]]
name = "probe"
exec = ["/bin/probe.sh"]
restart = "never"
on_exit = "poweroff"
"#;
    let probe = br#"#!/bin/sh
for i in $(seq 1 600); do
    quilt ps | grep -q '^agentd .*done' && break
    ls -d /sys/fs/cgroup/quilt/agentd/kids/*/ > /dev/null 2>&1 && echo "nested=yes" > /dev/ttyS1
    sleep 0.2
done
echo "state=$(quilt ps | grep '^agentd' | tr -s ' ' | cut -d' ' -f2)" > /dev/ttyS1
echo "kids_left=$(ls -d /sys/fs/cgroup/quilt/agentd/kids/*/ 2>/dev/null | wc -l)" > /dev/ttyS1
"#;
    let img = image(
        &agent_family(),
        config,
        &[
            ("/bin/probe.sh", probe),
            ("/etc/family.json", br#"{"mode":"family"}"#),
        ],
    );
    let (vm, ch) = Vm::run_to_poweroff(&img, 2048, BOOT);
    let console = vm.console_text();
    let line = console
        .lines()
        .find_map(|l| l.split_once("[agentd] ").map(|(_, j)| j))
        .unwrap_or_else(|| panic!("no agent output:\n{console}"));
    let out: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(out["transform_total"], 5, "{out}");
    assert_eq!(out["ticker_status"], 137, "{out}");
    // The service's own 160 MiB bound the child allowed 1 GiB.
    assert_eq!(out["grower_oom_killed"], true, "{out}");
    assert_eq!(out["forbidden"], "denied", "{out}");
    assert!(
        ch.contains("nested=yes"),
        "children were not under the service's cgroup:\n{ch}"
    );
    assert!(ch.contains("state=done"), "{ch}");
    assert!(ch.contains("kids_left=0"), "{ch}");
}

#[test]
fn a_client_that_hangs_up_mid_run_has_its_run_stopped() {
    let probe = br#"#!/bin/sh
quilt run ticker --timeout-ms 120000 > /dev/null 2>&1 &
cli=$!
for i in $(seq 1 100); do
    [ "$(ls /sys/fs/cgroup/quilt/runs | grep -c '^[0-9]')" -ge 1 ] && break
    sleep 0.1
done
echo "running=$(ls /sys/fs/cgroup/quilt/runs | grep -c '^[0-9]')" > /dev/ttyS1
sleep 1
kill -9 $cli
for i in $(seq 1 100); do
    [ "$(ls /sys/fs/cgroup/quilt/runs | grep -c '^[0-9]')" -eq 0 ] && break
    sleep 0.1
done
echo "left=$(ls /sys/fs/cgroup/quilt/runs | grep -c '^[0-9]')" > /dev/ttyS1
echo "ping=$(quilt ping)" > /dev/ttyS1
"#;
    let img = image(
        &[("ticker", signed("ticker"))],
        PROBE,
        &[("/bin/probe.sh", probe)],
    );
    let (vm, ch) = Vm::run_to_poweroff(&img, 1024, BOOT);
    assert!(ch.contains("running=1"), "{ch}");
    // The CLI's socket closed mid-request: PID 1 killed the run and
    // removed its cgroup, and answers the next client.
    assert!(ch.contains("left=0"), "{ch}\n{}", vm.console_text());
    assert!(ch.contains("ping=quilt-init "), "{ch}");
}

#[test]
fn memory_hogs_and_fork_bombs_are_contained() {
    let probe = br#"#!/bin/sh
sleep 1
quilt run hog --json > /tmp/hog.json; echo "hog=$(cat /tmp/hog.json)" > /dev/ttyS1
quilt run forkbomb --json --timeout-ms 60000 > /tmp/fb.json; echo "forkbomb=$(cat /tmp/fb.json)" > /dev/ttyS1
echo '{"mode":"hog"}' > /tmp/uh.in; echo '{"mode":"fork"}' > /tmp/uf.in
quilt run unbounded --json --timeout-ms 60000 --input /tmp/uh.in > /tmp/uh.json; echo "unbounded_hog=$(cat /tmp/uh.json)" > /dev/ttyS1
quilt run unbounded --json --timeout-ms 60000 --input /tmp/uf.in > /tmp/uf.json; echo "unbounded_fork=$(cat /tmp/uf.json)" > /dev/ttyS1
echo "runs_bounds=$(cat /sys/fs/cgroup/quilt/runs/memory.max) $(cat /sys/fs/cgroup/quilt/runs/pids.max) $(cat /sys/fs/cgroup/quilt/runs/cpu.max)" > /dev/ttyS1
quilt ping > /dev/ttyS1
t1=$(quilt ps | awk '$1=="ticker"{print $2, $4}')
echo "ticker=$t1" > /dev/ttyS1
"#;
    let config = format!("{PROBE}\n[[service]]\nname = \"ticker\"\nbundle = \"ticker\"\n");
    let img = image(
        &[
            ("hog", signed("hog")),
            ("forkbomb", signed("forkbomb")),
            ("unbounded", signed("unbounded")),
            ("ticker", signed("ticker")),
        ],
        &config,
        &[("/bin/probe.sh", probe)],
    );
    let (vm, ch) = Vm::run_to_poweroff(&img, 1024, BOOT);
    let hog = json_line(&ch, "hog=");
    assert_eq!(hog["oom_killed"], true, "hog not OOM-killed: {hog}");
    assert_eq!(hog["status"], 137, "{hog}");
    let fb = json_line(&ch, "forkbomb=");
    assert_eq!(fb["timed_out"], false, "{fb}");
    // It got some children going, then the kernel refused more (pids.max),
    // or Bun itself could not get another thread and died.
    let out: serde_json::Value =
        serde_json::from_str(fb["stdout"].as_str().unwrap_or("{}")).unwrap_or_default();
    let stopped_by_limit = out["refused"].as_u64().unwrap_or(0) > 0 || fb["status"] != 0;
    assert!(
        out["started"].as_u64().unwrap_or(0) >= 1 || fb["status"] != 0,
        "nothing spawned at all: {fb}"
    );
    assert!(
        stopped_by_limit && out["started"].as_u64().unwrap_or(0) < 200,
        "fork bomb not stopped: {fb}"
    );
    if let Some(e) = out["firstError"].as_str().filter(|e| !e.is_empty()) {
        assert!(
            e.contains("EAGAIN") || e.contains("resource"),
            "refused for another reason: {e}"
        );
    }
    // A bundle that declares no limits at all gets the board's defaults
    // ([containers]: 256 MiB, 64 tasks), never none.
    let uh = json_line(&ch, "unbounded_hog=");
    assert_eq!(uh["oom_killed"], true, "limitless hog not OOM-killed: {uh}");
    assert_eq!(uh["status"], 137, "{uh}");
    let uf = json_line(&ch, "unbounded_fork=");
    let out: serde_json::Value =
        serde_json::from_str(uf["stdout"].as_str().unwrap_or("{}")).unwrap_or_default();
    assert_eq!(out["pids_max"], "64", "{uf}");
    let started = out["started"].as_u64().unwrap_or(0);
    assert!(
        (1..64).contains(&started) && !out["refused"].as_str().unwrap_or("").is_empty()
            || uf["status"] != 0,
        "limitless fork bomb not stopped by the default: {uf}"
    );
    // All runs together sit under one bounded cgroup (half of 1 GiB less
    // the kernel's share; 1024 tasks; every CPU but a quarter of one).
    let bounds = ch
        .lines()
        .find_map(|l| l.strip_prefix("runs_bounds="))
        .unwrap_or_else(|| panic!("no runs_bounds line:\n{ch}"));
    let f: Vec<&str> = bounds.split_whitespace().collect();
    let mem: u64 = f[0]
        .parse()
        .unwrap_or_else(|_| panic!("runs memory.max {bounds:?}"));
    assert!((256 << 20..=512 << 20).contains(&mem), "{bounds}");
    assert_eq!(f[1], "1024", "{bounds}");
    assert_ne!(f[2], "max", "{bounds}");
    // PID 1 answered after all of them, and the neighbour never restarted.
    assert!(ch.contains("quilt-init "), "{ch}");
    assert!(
        ch.contains("ticker=running 0"),
        "neighbour disturbed:\n{ch}"
    );
    let con = vm.console_text();
    assert!(
        con.matches("[ticker] tick").count() >= 10,
        "neighbour stopped ticking"
    );
    assert!(con.contains("event=run-done") && con.contains("oom_killed=1"));
}

#[test]
fn tampered_unsigned_foreign_and_untrusted_bundles_are_refused() {
    let tampered = signed("json-transform");
    let mut bytes = std::fs::read(&tampered).unwrap();
    let at = bytes.len() - 40;
    bytes[at] ^= 0x01;
    std::fs::write(&tampered, &bytes).unwrap();
    let unsigned = bundle("checker", None, None);
    let arm_only = bundle(
        "hog",
        Some(&|d: &Path| {
            let t = std::fs::read_to_string(d.join("quilt.toml")).unwrap();
            std::fs::write(d.join("quilt.toml"), format!("arch = [\"aarch64\"]\n{t}")).unwrap();
        }),
        Some(&trusted().key),
    );
    let stranger = signer("stranger");
    let untrusted = bundle("ticker", None, Some(&stranger.key));
    let probe = br#"#!/bin/sh
for t in examples/json-transform checker hog ticker; do quilt run $t > /dev/null 2>&1; echo "$t=$?" > /dev/ttyS1; done
quilt run forkbomb --timeout-ms 1 > /dev/null 2>&1; echo "good=$?" > /dev/ttyS1
"#;
    let img = image(
        &[
            ("json-transform", tampered),
            ("checker", unsigned),
            ("hog", arm_only),
            ("ticker", untrusted),
            ("forkbomb", signed("forkbomb")),
        ],
        PROBE,
        &[("/bin/probe.sh", probe)],
    );
    let (vm, ch) = Vm::run_to_poweroff(&img, 1024, BOOT);
    for t in ["examples/json-transform", "checker", "hog", "ticker"] {
        assert!(ch.contains(&format!("{t}=3")), "{t} was not refused:\n{ch}");
    }
    // The good bundle next to them still installed and ran (killed at 1 ms).
    assert!(!ch.contains("good=3"), "{ch}");
    let ev = vm.events();
    let refused: Vec<_> = ev
        .iter()
        .filter(|e| e.name() == Some("bundle-refused"))
        .collect();
    assert_eq!(refused.len(), 4, "{refused:#?}");
    let why = |file: &str| {
        refused
            .iter()
            .find(|e| e.get("file").is_some_and(|f| f.ends_with(file)))
            .and_then(|e| e.get("reason"))
            .unwrap_or_else(|| panic!("no refusal for {file}"))
            .to_lowercase()
    };
    // Each refusal says what failed and what to do about it.
    for (file, says) in [
        ("json-transform.qb", "modified or corrupted"),
        ("checker.qb", "not signed"),
        ("hog.qb", "not built for architecture"),
        ("ticker.qb", "unknown key"),
    ] {
        assert!(why(file).contains(says), "{file}: {}", why(file));
    }
    assert_eq!(
        ev.iter()
            .filter(|e| e.name() == Some("bundle-installed"))
            .count(),
        1
    );
}

#[test]
fn a_thousand_runs_leave_no_trace_in_pid1() {
    // Warm up first (the bundle's container plan is built on first use),
    // then measure PID 1 before and after 1000 runs from inside the guest.
    let probe = br#"#!/bin/sh
fds() { ls /proc/1/fd | wc -l; }
rss() { awk '/^VmRSS/ { print $2 }' /proc/1/status; }
echo '{"n":1}' > /tmp/in.json
for i in $(seq 10); do quilt run examples/hello --input /tmp/in.json > /dev/null; done
echo "before fds=$(fds) rss_kb=$(rss) mounts=$(wc -l < /proc/mounts)" > /dev/ttyS1
fail=0
i=0
start=$(cut -d' ' -f1 /proc/uptime)
while [ $i -lt 1000 ]; do
	out=$(quilt run examples/hello --input /tmp/in.json) || fail=$((fail + 1))
	case "$out" in *'"input":{"n":1}'*) ;; *) fail=$((fail + 1)) ;; esac
	i=$((i + 1))
done
end=$(cut -d' ' -f1 /proc/uptime)
z=0
for f in /proc/[0-9]*/stat; do
	read -r pid comm state rest < "$f" 2>/dev/null || continue
	[ "$state" = Z ] && z=$((z + 1))
done
echo "after fds=$(fds) rss_kb=$(rss) mounts=$(wc -l < /proc/mounts) runs_left=$(ls /sys/fs/cgroup/quilt/runs | grep -c '^[0-9]') zombies=$z failures=$fail secs=$start..$end" > /dev/ttyS1
"#;
    let img = image(
        &[("hello", signed("hello"))],
        PROBE,
        &[("/bin/probe.sh", probe)],
    );
    let long = Duration::from_secs(1500);
    let (vm, ch) = Vm::run_to_poweroff(&img, 1024, long);
    let field = |line: &str, k: &str| -> i64 {
        let l = ch
            .lines()
            .find(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("no {line} line:\n{ch}"));
        l.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {l}"))
    };
    eprintln!(
        "1000 runs: {}",
        ch.lines()
            .filter(|l| l.starts_with("before") || l.starts_with("after"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    assert_eq!(field("after", "failures"), 0, "{ch}");
    assert_eq!(field("after", "zombies"), 0, "{ch}");
    assert_eq!(field("after", "runs_left"), 0, "{ch}");
    assert_eq!(field("after", "mounts"), field("before", "mounts"), "{ch}");
    assert_eq!(
        field("after", "fds"),
        field("before", "fds"),
        "PID 1 leaked fds: {ch}"
    );
    let grew = field("after", "rss_kb") - field("before", "rss_kb");
    assert!(
        grew <= 256,
        "PID 1's RSS grew by {grew} KiB over 1000 runs: {ch}"
    );
    let done = vm
        .events()
        .iter()
        .filter(|e| e.name() == Some("run-done"))
        .count();
    assert_eq!(done, 1010);
}

#[test]
fn a_warm_pool_skips_start_up_and_never_reuses_a_process() {
    // The same tool under two names: one with a warm pool, one cold.
    let cold = bundle(
        "hello",
        Some(&|d: &Path| {
            let t = std::fs::read_to_string(d.join("quilt.toml")).unwrap();
            std::fs::write(
                d.join("quilt.toml"),
                t.replace("examples/hello", "examples/hello-cold"),
            )
            .unwrap();
        }),
        Some(&trusted().key),
    );
    let probe = br#"#!/bin/sh
sleep 4
echo "ps=$(quilt ps --json | tr -d ' \n')" > /dev/ttyS1
for i in $(seq 12); do
	echo "{\"i\":$i}" > /tmp/in.json
	echo "warm=$(quilt run examples/hello --input /tmp/in.json --json)" > /dev/ttyS1
	echo "cold=$(quilt run examples/hello-cold --input /tmp/in.json --json)" > /dev/ttyS1
	sleep 0.5
done
"#;
    let config =
        format!("{PROBE}\n[bundles]\nwarm = [{{ bundle = \"examples/hello\", count = 2 }}]\n");
    let img = image(
        &[("hello", signed("hello")), ("hello-cold", cold)],
        &config,
        &[("/bin/probe.sh", probe)],
    );
    let mut vm = Vm::boot(
        &img,
        VmOpts {
            mem_mb: 1024,
            timeout: BOOT,
            ..VmOpts::default()
        }
        .cmdline("clocksource=tsc tsc=reliable"),
    )
    .unwrap();
    let exit = vm.wait_exit(BOOT).unwrap();
    assert!(exit.powered_off(), "{exit:?}");
    let ch = vm.channel_text();
    let runs = |prefix: &str| -> Vec<serde_json::Value> {
        ch.lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    // `ps` lists the parked containers with their bundle and cgroup
    // figures.
    let ps: serde_json::Value =
        serde_json::from_str(ch.lines().find_map(|l| l.strip_prefix("ps=")).unwrap()).unwrap();
    let parked: Vec<&serde_json::Value> = ps
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["state"] == "warm")
        .collect();
    assert_eq!(parked.len(), 2, "{ps}");
    for p in &parked {
        assert!(p["name"].as_str().unwrap().starts_with("run-"), "{ps}");
        assert_eq!(p["bundle"], "examples/hello", "{ps}");
        assert!(p["pid"].as_i64().unwrap() > 1, "{ps}");
        assert!(p["memory_bytes"].as_u64().unwrap() > 1 << 20, "{ps}");
        assert!(p["cpu_usec"].as_u64().unwrap() > 0, "{ps}");
        assert!(p["pids"].as_u64().unwrap() >= 1, "{ps}");
    }
    let (warm, cold) = (runs("warm="), runs("cold="));
    assert_eq!((warm.len(), cold.len()), (12, 12), "{ch}");
    for (k, r) in warm.iter().chain(cold.iter()).enumerate() {
        assert_eq!(r["status"], 0, "{r}");
        let out: serde_json::Value = serde_json::from_str(r["stdout"].as_str().unwrap()).unwrap();
        assert_eq!(
            out["input"]["i"],
            (k % 12) + 1,
            "wrong input reached the tool: {r}"
        );
    }
    let ev = vm.events();
    let starts: Vec<_> = ev
        .iter()
        .filter(|e| e.name() == Some("run-start") && e.get("bundle") == Some("examples/hello"))
        .collect();
    let warm_starts = starts.iter().filter(|e| e.get("warm") == Some("1")).count();
    assert!(
        warm_starts >= 10,
        "only {warm_starts} of {} hello runs were served warm",
        starts.len()
    );
    // One process per request: every run of the pooled bundle had its own pid.
    let ids: std::collections::HashSet<&str> = starts.iter().filter_map(|e| e.get("id")).collect();
    let pids: Vec<&str> = ev
        .iter()
        .filter(|e| e.name() == Some("run-done") && e.get("id").is_some_and(|id| ids.contains(id)))
        .filter_map(|e| e.get("pid"))
        .collect();
    let unique: std::collections::HashSet<&&str> = pids.iter().collect();
    assert_eq!(
        unique.len(),
        pids.len(),
        "a process served two requests: {pids:?}"
    );
    let median = |v: &[serde_json::Value]| {
        let mut us: Vec<u64> = v.iter().map(|r| r["micros"].as_u64().unwrap()).collect();
        us.sort();
        us[us.len() / 2]
    };
    let (w, c) = (median(&warm), median(&cold));
    eprintln!(
        "hello.ts request to result (guest, quilt-init's clock): warm p50 {w} us, cold p50 {c} us"
    );
    assert!(w < c, "warm ({w} us) not faster than cold ({c} us)");
}
