//! The example tools in `examples/`, on the host: each is packed by the real
//! `quilt` CLI, signed with a freshly generated key, verified against a trust
//! dir holding only that key, and then its signed entry point runs under the
//! pinned Bun (`tools/fetch-bun.sh`) with its output checked.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use quilt_system_tests::{bun_binary, example_dir, quilt, signed_bundle, SignedBundle};

/// Pack, sign and verify `examples/<name>`; check the signed header names
/// it and its entry, and return the bundle and the entry path on the host.
fn signed(name: &str) -> (SignedBundle, std::path::PathBuf) {
    let dir = example_dir(name);
    let b = signed_bundle(&dir).unwrap();
    let text = quilt(&["bundle".as_ref(), "inspect".as_ref(), b.qb.as_os_str()]).unwrap();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("no {k:?} line in:\n{text}"))
    };
    assert_eq!(
        field("bundle "),
        format!("examples/{name} version 1"),
        "{text}"
    );
    assert_eq!(field("signatures "), "1", "{text}");
    assert_eq!(field("arch "), "x86_64, aarch64", "{text}");
    let run = field("run ");
    let entry = run
        .strip_prefix("bun ")
        .unwrap_or_else(|| panic!("runtime is not bun: {run}"));
    (b, dir.join(entry))
}

/// Run `bun entry` with `stdin`; (exit code, stdout, stderr).
fn run_bun(entry: &Path, stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(bun_binary().unwrap())
        .arg(entry)
        .env("TMPDIR", std::env::temp_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn json_transform_sorts_and_aggregates() {
    let (_, entry) = signed("json-transform");
    let input = r#"{"items":[
        {"name":"pear","category":"fruit","price":2,"qty":3},
        {"name":"apple","category":"fruit","price":1.5,"qty":4},
        {"name":"soap","category":"home","price":3.25,"qty":1},
        {"name":"kiwi","price":0.5}]}"#;
    let (code, out, err) = run_bun(&entry, input);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(
        out.trim_end(),
        concat!(
            r#"{"ok":true,"count":4,"total":15.75,"categories":["#,
            r#"{"category":"fruit","count":2,"qty":7,"total":12},"#,
            r#"{"category":"home","count":1,"qty":1,"total":3.25},"#,
            r#"{"category":"uncategorized","count":1,"qty":1,"total":0.5}],"#,
            r#""items":[{"name":"apple","category":"fruit","price":1.5,"qty":4,"total":6},"#,
            r#"{"name":"pear","category":"fruit","price":2,"qty":3,"total":6},"#,
            r#"{"name":"soap","category":"home","price":3.25,"qty":1,"total":3.25},"#,
            r#"{"name":"kiwi","category":"uncategorized","price":0.5,"qty":1,"total":0.5}]}"#
        )
    );
    let (code, out, _) = run_bun(
        &entry,
        r#"{"sort":"name","items":[{"name":"b","price":1},{"name":"a","price":9}]}"#,
    );
    assert_eq!(code, 0);
    assert!(
        out.contains(r#""items":[{"name":"a","#),
        "sort by name: {out}"
    );
}

#[test]
fn json_transform_refuses_bad_input_with_a_json_error() {
    let (_, entry) = signed("json-transform");
    for (input, want) in [
        (r#"{"items": ["#, "input is not JSON"),
        ("[1, 2]", "must be a JSON object"),
        (r#"{"items":[{"name":"x","price":"1"}]}"#, "items[0].price"),
        (r#"{"items":[],"sort":"size"}"#, "\\\"sort\\\""),
    ] {
        let (code, out, err) = run_bun(&entry, input);
        assert_eq!(code, 2, "{input}: {out} {err}");
        assert!(
            out.starts_with(r#"{"ok":false,"error":"#) && out.contains(want),
            "{input}: {out}"
        );
        assert_eq!(out.lines().count(), 1, "one JSON line: {out}");
    }
}

#[test]
fn bun_apis_round_trips_through_tmp_hashes_and_waits() {
    let (_, entry) = signed("bun-apis");
    let started = std::time::Instant::now();
    let (code, out, err) = run_bun(&entry, r#"{"text":"hello","delay_ms":150}"#);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(
        started.elapsed().as_millis() >= 150,
        "the timer did not wait"
    );
    for want in [
        r#""ok":true"#,
        r#""bytes":5"#,
        r#""size":5"#,
        r#""roundtrip":true"#,
        r#""removed":true"#,
        // Bun.hash is wyhash with seed 0.
        r#""wyhash":"0e24bbd9f93f532d""#,
        // SHA-256("hello"), as `sha256sum` gives it.
        r#""sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824""#,
        r#""delay_ms":150"#,
        r#""timer_ok":true"#,
        r#""bun":"1.4.5""#,
    ] {
        assert!(out.contains(want), "lacks {want}: {out}");
    }
    let (code, out, _) = run_bun(&entry, r#"{"text": 5}"#);
    assert_eq!(code, 2);
    assert!(out.starts_with(r#"{"ok":false,"#), "{out}");
}

#[test]
fn hello_greets_its_input() {
    let (_, entry) = signed("hello");
    let (code, out, err) = run_bun(&entry, r#"{"who":"ci"}"#);
    assert_eq!(
        (code, out.as_str()),
        (0, "{\"hello\":\"quilt\",\"input\":{\"who\":\"ci\"}}\n"),
        "{err}"
    );
    let (code, out, _) = run_bun(&entry, "");
    assert_eq!(
        (code, out.as_str()),
        (0, "{\"hello\":\"quilt\",\"input\":null}\n")
    );
}

/// The trust dir the helper writes is what makes verification pass: the
/// same bundle against a trust dir holding another key is refused, naming
/// the unknown signer.
#[test]
fn signed_examples_verify_only_against_their_trust_dir() {
    let (b, _) = signed("hello");
    let other = quilt_system_tests::work_dir().unwrap().join("other-trust");
    std::fs::create_dir_all(&other).unwrap();
    let base = other.join("stranger");
    if !base.with_extension("pub").exists() {
        quilt(&[
            "key".as_ref(),
            "gen".as_ref(),
            "--out".as_ref(),
            base.as_os_str(),
        ])
        .unwrap();
        std::fs::remove_file(base.with_extension("key")).unwrap();
    }
    let err = quilt(&[
        "bundle".as_ref(),
        "verify".as_ref(),
        b.qb.as_os_str(),
        "--trust".as_ref(),
        other.as_os_str(),
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown key"), "{err}");
    // The secret key stays in the scratch dir, never in the source tree,
    // and only its owner can read it.
    assert!(
        b.key.starts_with(quilt_system_tests::work_dir().unwrap()),
        "{}",
        b.key.display()
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&b.key).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "secret key readable by others");
}

/// `ImageBuilder::signed_example` puts the bundle and its trust dir where
/// quilt-init's `[bundles]` defaults look.
#[test]
fn image_builder_installs_a_signed_example_and_its_trust_dir() {
    let image = quilt_system_tests::ImageBuilder::empty()
        .signed_example("hello")
        .build()
        .unwrap();
    let out = Command::new("cpio")
        .args(["-it", "--quiet"])
        .stdin(std::fs::File::open(&image).unwrap())
        .output()
        .expect("cpio (tools/setup.sh installs it)");
    assert!(out.status.success());
    let names = String::from_utf8(out.stdout).unwrap();
    for want in [
        "usr/share/quilt/bundles/hello.qb",
        "etc/quilt/trust/test-signer.pub",
        "etc/quilt/trust/policy",
    ] {
        assert!(names.lines().any(|l| l == want), "no {want} in:\n{names}");
    }
    assert!(
        !names.contains(".key"),
        "a secret key went into the image:\n{names}"
    );
}
