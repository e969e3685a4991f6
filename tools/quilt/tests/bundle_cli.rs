//! Runs the real `quilt` binary through the forms scripts rely on.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn quilt(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quilt"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn ok(args: &[&str], cwd: &Path) -> String {
    let out = quilt(args, cwd);
    assert!(
        out.status.success(),
        "quilt {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail with exactly one line on stderr; returns it.
fn fails(args: &[&str], cwd: &Path) -> String {
    let out = quilt(args, cwd);
    assert!(!out.status.success(), "quilt {args:?} should have failed");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "want one line, got: {err}");
    err
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        let tool = f.path("tool");
        std::fs::create_dir_all(tool.join("src")).unwrap();
        std::fs::write(
            tool.join("quilt.toml"),
            "name = \"agents/weather\"\nversion = 7\nentry = \"main.ts\"\n",
        )
        .unwrap();
        std::fs::write(tool.join("main.ts"), "import './src/a.ts';\n").unwrap();
        std::fs::write(tool.join("src/a.ts"), "console.log('weather');\n").unwrap();
        std::fs::write(tool.join("src/data.bin"), noise(400_000, 1)).unwrap();
        std::os::unix::fs::symlink("a.ts", tool.join("src/alias.ts")).unwrap();
        std::fs::create_dir(f.path("trust")).unwrap();
        f
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn root(&self) -> &Path {
        self.dir.path()
    }
    fn keys(&self, names: &[&str]) {
        for n in names {
            ok(&["key", "gen", "--out", n], self.root());
        }
    }
    fn trust(&self, names: &[&str]) {
        for n in names {
            std::fs::copy(
                self.path(&format!("{n}.pub")),
                self.path(&format!("trust/{n}.pub")),
            )
            .unwrap();
        }
    }
}

#[test]
fn key_gen_writes_a_private_secret_and_refuses_overwrite() {
    let f = Fixture::new();
    f.keys(&["k"]);
    let mode = |p: &str| std::fs::metadata(f.path(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("k.key"), 0o600);
    assert!(std::fs::read_to_string(f.path("k.pub"))
        .unwrap()
        .starts_with("quilt-ed25519-public "));
    let e = fails(&["key", "gen", "--out", "k"], f.root());
    assert!(e.contains("already exists"), "{e}");
    let show = ok(&["key", "show", "k.pub"], f.root());
    assert!(show.contains("public "));
}

#[test]
fn pack_sign_verify_round_trip_with_threshold_policy() {
    let f = Fixture::new();
    f.keys(&["a", "b", "c"]);
    f.trust(&["a", "b", "c"]);
    ok(&["bundle", "pack", "tool", "--out", "w.qb"], f.root());
    // Unsigned: refused, naming the check.
    let e = fails(&["bundle", "verify", "w.qb", "--trust", "trust"], f.root());
    assert!(e.contains("not signed"), "{e}");
    ok(&["bundle", "sign", "w.qb", "--key", "a.key"], f.root());
    let out = ok(&["bundle", "verify", "w.qb", "--trust", "trust"], f.root());
    assert!(out.starts_with("ok: agents/weather version 7"), "{out}");
    // Policy 2-of-3 for agents/*: one signature is not enough.
    std::fs::write(f.path("trust/policy"), "rule agents/* 2\n").unwrap();
    let e = fails(&["bundle", "verify", "w.qb", "--trust", "trust"], f.root());
    assert!(e.contains("policy needs 2"), "{e}");
    // Signing twice with the same key does not help.
    let e = fails(&["bundle", "sign", "w.qb", "--key", "a.key"], f.root());
    assert!(e.contains("signed twice"), "{e}");
    ok(&["bundle", "sign", "w.qb", "--key", "b.key"], f.root());
    ok(&["bundle", "verify", "w.qb", "--trust", "trust"], f.root());
}

#[test]
fn verify_names_the_failed_check() {
    let f = Fixture::new();
    f.keys(&["a", "stranger"]);
    f.trust(&["a"]);
    ok(&["bundle", "pack", "tool", "--out", "w.qb"], f.root());
    std::fs::copy(f.path("w.qb"), f.path("s.qb")).unwrap();
    ok(
        &["bundle", "sign", "s.qb", "--key", "stranger.key"],
        f.root(),
    );
    let e = fails(&["bundle", "verify", "s.qb", "--trust", "trust"], f.root());
    assert!(
        e.contains("unknown key") && e.contains("add its .pub to the trust dir"),
        "{e}"
    );

    ok(&["bundle", "sign", "w.qb", "--key", "a.key"], f.root());
    let good = std::fs::read(f.path("w.qb")).unwrap();
    let check = |bytes: &[u8], want: &str| {
        std::fs::write(f.path("bad.qb"), bytes).unwrap();
        let e = fails(
            &["bundle", "verify", "bad.qb", "--trust", "trust"],
            f.root(),
        );
        assert!(e.contains(want), "want {want:?}, got {e}");
    };
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"junk");
    check(&trailing, "trailing bytes");
    check(&good[..good.len() - 1], "ends early");
    let mut flipped = good.clone();
    let n = flipped.len() - 1000;
    flipped[n] ^= 0x01;
    check(&flipped, "does not hash");
    let mut hdr = good.clone();
    hdr[20] ^= 0x01;
    check(&hdr, "does not verify");
    check(b"PK\x03\x04 not a bundle", "bad magic");
}

#[test]
fn secret_keys_readable_by_others_are_refused() {
    let f = Fixture::new();
    f.keys(&["a"]);
    ok(&["bundle", "pack", "tool", "--out", "w.qb"], f.root());
    std::fs::set_permissions(f.path("a.key"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let e = fails(&["bundle", "sign", "w.qb", "--key", "a.key"], f.root());
    assert!(e.contains("chmod 600"), "{e}");
}

#[test]
fn packing_is_deterministic_and_refuses_hostile_trees() {
    let f = Fixture::new();
    ok(&["bundle", "pack", "tool", "--out", "1.qb"], f.root());
    ok(&["bundle", "pack", "tool", "--out", "2.qb"], f.root());
    assert_eq!(
        std::fs::read(f.path("1.qb")).unwrap(),
        std::fs::read(f.path("2.qb")).unwrap()
    );

    let tool = f.path("tool");
    std::os::unix::fs::symlink("../../etc/passwd", tool.join("src/evil")).unwrap();
    let e = fails(&["bundle", "pack", "tool", "--out", "x.qb"], f.root());
    assert!(e.contains("leaves the bundle"), "{e}");
    std::fs::remove_file(tool.join("src/evil")).unwrap();

    std::fs::set_permissions(
        tool.join("main.ts"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    let e = fails(&["bundle", "pack", "tool", "--out", "x.qb"], f.root());
    assert!(e.contains("setuid"), "{e}");
    std::fs::set_permissions(tool.join("main.ts"), std::fs::Permissions::from_mode(0o644)).unwrap();

    let fifo = tool.join("pipe");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let e = fails(&["bundle", "pack", "tool", "--out", "x.qb"], f.root());
    assert!(e.contains("fifos"), "{e}");
    std::fs::remove_file(&fifo).unwrap();

    std::fs::write(
        tool.join("quilt.toml"),
        "name = \"agents/w\"\nversion = 1\nentry = \"nope.ts\"\n",
    )
    .unwrap();
    let e = fails(&["bundle", "pack", "tool", "--out", "x.qb"], f.root());
    assert!(e.contains("entrypoint"), "{e}");
    std::fs::write(
        tool.join("quilt.toml"),
        "name = \"agents/w\"\nversion = 1\nentry = \"main.ts\"\ncolour = 1\n",
    )
    .unwrap();
    let e = fails(&["bundle", "pack", "tool", "--out", "x.qb"], f.root());
    assert!(e.contains("quilt.toml"), "{e}");
    std::fs::write(
        tool.join("quilt.toml"),
        "name = \"agents/w\"\nversion = 1\nentry = \"main.ts\"\ntokens = [\"cap:sys_admin\"]\n",
    )
    .unwrap();
    let e = fails(&["bundle", "pack", "tool", "--out", "x.qb"], f.root());
    assert!(
        e.contains("token `cap:sys_admin` names no capability a tool may keep"),
        "{e}"
    );
    std::fs::write(
        tool.join("quilt.toml"),
        "name = \"agents/w\"\nversion = 1\nentry = \"main.ts\"\ntokens = [\"userns\", \"cap:net_bind_service\", \"write:src\"]\n[limits]\nio_mib_s = 4\n",
    )
    .unwrap();
    ok(&["bundle", "pack", "tool", "--out", "t.qb"], f.root());
    let text = ok(&["bundle", "inspect", "t.qb"], f.root());
    assert!(text.contains("io 4 MiB/s, no cap"), "{text}");
    assert!(
        text.contains("userns, cap:net_bind_service, write:src"),
        "{text}"
    );
    std::fs::remove_file(tool.join("quilt.toml")).unwrap();
    let e = fails(&["bundle", "pack", "tool", "--out", "x.qb"], f.root());
    assert!(e.contains("needs a quilt.toml"), "{e}");
}

#[test]
fn inspect_and_diff_report_content_and_transfer() {
    let f = Fixture::new();
    f.keys(&["a"]);
    ok(&["bundle", "pack", "tool", "--out", "v7.qb"], f.root());
    ok(&["bundle", "sign", "v7.qb", "--key", "a.key"], f.root());
    let text = ok(&["bundle", "inspect", "v7.qb"], f.root());
    assert!(
        text.contains("agents/weather version 7") && text.contains("src/alias.ts -> a.ts"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["bundle", "inspect", "v7.qb", "--json"], f.root())).unwrap();
    assert_eq!(json["name"], "agents/weather");
    assert_eq!(json["version"], 7);
    assert_eq!(json["runtime"], "bun");
    assert_eq!(json["limits"]["memory_mib"], 128);
    assert_eq!(json["signatures"].as_array().unwrap().len(), 1);
    assert_eq!(json["content_intact"], true);

    let tool = f.path("tool");
    std::fs::write(
        tool.join("quilt.toml"),
        "name = \"agents/weather\"\nversion = 8\nentry = \"main.ts\"\n",
    )
    .unwrap();
    std::fs::write(tool.join("src/a.ts"), "console.log('weather v8');\n").unwrap();
    ok(&["bundle", "pack", "tool", "--out", "v8.qb"], f.root());
    let d: serde_json::Value = serde_json::from_str(&ok(
        &["bundle", "diff", "v7.qb", "v8.qb", "--json"],
        f.root(),
    ))
    .unwrap();
    let fetch = d["fetch_bytes"].as_u64().unwrap();
    // quilt.toml and src/a.ts changed; the 400 kB data file is shared.
    assert!(fetch < 1000, "{d}");
    assert!(d["shared_bytes"].as_u64().unwrap() >= 400_000);
    assert_eq!(d["changed"], serde_json::json!(["quilt.toml", "src/a.ts"]));
    let text = ok(&["bundle", "diff", "v7.qb", "v8.qb"], f.root());
    assert!(text.contains("transfer"), "{text}");
}

#[test]
fn every_verb_has_help() {
    let f = Fixture::new();
    for (verb, word) in [
        (vec!["key", "gen"], "0600"),
        (vec!["bundle", "pack"], "quilt.toml"),
        (vec!["bundle", "sign"], "once per signer"),
        (vec!["bundle", "verify"], "policy"),
        (vec!["bundle", "inspect"], "--json"),
        (vec!["bundle", "diff"], "fetch"),
        (vec!["bundle", "bench"], "openssl"),
    ] {
        let mut args = verb.clone();
        args.push("--help");
        let out = ok(&args, f.root());
        assert!(out.contains(word), "{verb:?} --help lacks {word:?}: {out}");
    }
}

#[test]
fn rotation_and_permit_documents_are_made_cosigned_and_accepted_by_the_store() {
    let f = Fixture::new();
    f.keys(&["a", "b", "c"]);
    f.trust(&["a", "b"]);
    std::fs::write(f.path("trust/policy"), "root-threshold 2\n").unwrap();
    std::fs::create_dir(f.path("next")).unwrap();
    for k in ["b", "c"] {
        std::fs::copy(
            f.path(&format!("{k}.pub")),
            f.path(&format!("next/{k}.pub")),
        )
        .unwrap();
    }
    std::fs::write(f.path("next/policy"), "root-threshold 2\n").unwrap();
    ok(
        &[
            "key",
            "rotate",
            "next",
            "--sequence",
            "1",
            "--out",
            "upd.bin",
        ],
        f.root(),
    );
    ok(&["key", "cosign", "upd.bin", "--key", "a.key"], f.root());
    ok(&["key", "cosign", "upd.bin", "--key", "b.key"], f.root());
    let e = fails(&["key", "cosign", "upd.bin", "--key", "b.key"], f.root());
    assert!(e.contains("already signed"), "{e}");

    let trust = quilt_store::trustdir::load(&f.path("trust")).unwrap();
    let store_dir = f.path("store");
    let mut store = quilt_store::Store::open(&store_dir, trust).unwrap();
    let ctx = quilt_bundle::Context::default();
    // Current threshold met (a, b) but only one new key (b): refused.
    let doc = std::fs::read(f.path("upd.bin")).unwrap();
    assert!(store.apply_trust_update(&doc, &ctx).is_err());
    ok(&["key", "cosign", "upd.bin", "--key", "c.key"], f.root());
    let doc = std::fs::read(f.path("upd.bin")).unwrap();
    store.apply_trust_update(&doc, &ctx).unwrap();
    assert_eq!(store.trust().sequence, 1);
    assert_eq!(store.trust().keys.len(), 2);

    ok(
        &[
            "key",
            "permit",
            "--name",
            "agents/weather",
            "--version",
            "3",
            "--sequence",
            "1",
            "--out",
            "p.bin",
        ],
        f.root(),
    );
    ok(&["key", "cosign", "p.bin", "--key", "b.key"], f.root());
    let p = std::fs::read(f.path("p.bin")).unwrap();
    assert!(
        store.trust().verify_permit(&p, &ctx).is_err(),
        "one signature is below threshold"
    );
    ok(&["key", "cosign", "p.bin", "--key", "c.key"], f.root());
    let p = std::fs::read(f.path("p.bin")).unwrap();
    let permit = store.trust().verify_permit(&p, &ctx).unwrap();
    assert_eq!(
        (permit.name.as_str(), permit.version),
        ("agents/weather", 3)
    );
    let e = fails(&["key", "cosign", "w.qb", "--key", "a.key"], f.root());
    assert!(
        e.contains("reading") || e.contains("not a trust update"),
        "{e}"
    );
}
