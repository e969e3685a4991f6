//! The example tools in `examples/`, on the host: each is packed (plain
//! `examples/hello`, the low-level protocol) or built (the SDK projects:
//! `quilt build`) by the real `quilt` CLI, signed with a freshly generated
//! key, verified against a trust dir holding only that key, and then run
//! under the pinned Bun (`tools/fetch-bun.sh`) with its output checked: the
//! plain tool's signed entry as is, an SDK project's module with the SDK's
//! request on stdin. `quilt test` runs each SDK project's own `bun test`
//! and calls its built tools through the envelope.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use quilt_system_tests::{
    bun_binary, example_dir, is_sdk_project, quilt, quilt_bun, signed_bundle, SignedBundle,
};

/// Build or pack, sign and verify `examples/<name>`; check the signed
/// header names it and its entry (`index.js` for an SDK project, whose
/// manifest lists `tools`), and return the bundle and the module to run on
/// the host (an SDK project's source entry, under its `node_modules`).
fn signed(name: &str, tools: &[&str]) -> (SignedBundle, PathBuf) {
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
    let json: serde_json::Value = serde_json::from_str(
        &quilt(&[
            "bundle".as_ref(),
            "inspect".as_ref(),
            "--json".as_ref(),
            b.qb.as_os_str(),
        ])
        .unwrap(),
    )
    .unwrap();
    let listed: Vec<&str> = json["tools"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(listed, tools, "the signed tool list: {json}");
    if !is_sdk_project(&dir) {
        return (b, dir.join(entry));
    }
    assert_eq!(entry, "index.js", "quilt build's entry: {text}");
    for t in json["tools"].as_array().unwrap() {
        assert_eq!(t["input"]["type"], "object", "{t}");
        assert!(t["description"].as_str().is_some_and(|d| !d.is_empty()));
    }
    let toml = std::fs::read_to_string(dir.join("quilt.toml")).unwrap();
    let source = toml
        .lines()
        .find_map(|l| l.strip_prefix("entry = \""))
        .and_then(|l| l.split('"').next())
        .unwrap_or_else(|| panic!("no entry in {name}/quilt.toml"));
    (b, dir.join(source))
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
    let (_, entry) = signed("json-transform", &["transform"]);
    let input = r#"{"tool":"transform","input":{"items":[
        {"name":"pear","category":"fruit","price":2,"qty":3},
        {"name":"apple","category":"fruit","price":1.5,"qty":4},
        {"name":"soap","category":"home","price":3.25,"qty":1},
        {"name":"kiwi","price":0.5}]}}"#;
    let (code, out, err) = run_bun(&entry, input);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(
        out.trim_end(),
        concat!(
            r#"{"result":{"count":4,"total":15.75,"categories":["#,
            r#"{"category":"fruit","count":2,"qty":7,"total":12},"#,
            r#"{"category":"home","count":1,"qty":1,"total":3.25},"#,
            r#"{"category":"uncategorized","count":1,"qty":1,"total":0.5}],"#,
            r#""items":[{"name":"apple","category":"fruit","price":1.5,"qty":4,"total":6},"#,
            r#"{"name":"pear","category":"fruit","price":2,"qty":3,"total":6},"#,
            r#"{"name":"soap","category":"home","price":3.25,"qty":1,"total":3.25},"#,
            r#"{"name":"kiwi","category":"uncategorized","price":0.5,"qty":1,"total":0.5}]}}"#
        )
    );
    // `tool` may be left out: the module has one.
    let (code, out, _) = run_bun(
        &entry,
        r#"{"input":{"sort":"name","items":[{"name":"b","price":1},{"name":"a","price":9}]}}"#,
    );
    assert_eq!(code, 0);
    assert!(
        out.contains(r#""items":[{"name":"a","#),
        "sort by name: {out}"
    );
}

#[test]
fn json_transform_refuses_bad_input_with_a_json_error() {
    let (_, entry) = signed("json-transform", &["transform"]);
    for (input, code_want, want) in [
        (r#"{"items": ["#, "bad_request", "the request is not JSON"),
        ("[1, 2]", "bad_request", "must be an object"),
        (
            r#"{"tool":"transform","input":{"items":[{"name":"x","price":"1"}]}}"#,
            "invalid_input",
            "input/items/0/price",
        ),
        (
            r#"{"tool":"transform","input":{"items":[],"sort":"size"}}"#,
            "invalid_input",
            "input/sort",
        ),
    ] {
        let (code, out, err) = run_bun(&entry, input);
        assert_eq!(code, 2, "{input}: {out} {err}");
        let env: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(env["error"]["code"], code_want, "{input}: {out}");
        assert!(
            env["error"]["message"].as_str().unwrap().contains(want),
            "{input}: {out}"
        );
        assert_eq!(out.lines().count(), 1, "one JSON line: {out}");
    }
}

#[test]
fn bun_apis_round_trips_through_tmp_hashes_and_waits() {
    let (_, entry) = signed("bun-apis", &["roundtrip"]);
    let started = std::time::Instant::now();
    let (code, out, err) = run_bun(
        &entry,
        r#"{"tool":"roundtrip","input":{"text":"hello","delay_ms":150}}"#,
    );
    assert_eq!(code, 0, "stderr: {err}");
    assert!(
        started.elapsed().as_millis() >= 150,
        "the timer did not wait"
    );
    assert!(out.starts_with(r#"{"result":{"#), "{out}");
    for want in [
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
    // ctx.log goes to stderr, never into the envelope.
    assert!(err.contains("round trip through"), "{err}");
    let (code, out, _) = run_bun(&entry, r#"{"tool":"roundtrip","input":{"text": 5}}"#);
    assert_eq!(code, 2);
    assert!(
        out.starts_with(r#"{"error":{"code":"invalid_input","#),
        "{out}"
    );
}

/// Each SDK example passes `quilt test`: its own `bun test`, then every
/// tool of the built module called through the envelope with its examples.
#[test]
fn sdk_examples_pass_quilt_test() {
    for (name, tools) in [("json-transform", 1), ("bun-apis", 1), ("bus-client", 1)] {
        let dir = example_dir(name);
        let out = quilt_bun(&["test".as_ref(), dir.as_os_str()])
            .unwrap_or_else(|e| panic!("quilt test examples/{name}: {e:?}"));
        assert!(
            out.contains(&format!(
                "bun test passed; {tools} tool(s) answered {tools} call(s)"
            )),
            "{name}: {out}"
        );
        assert!(!out.contains("FAIL"), "{name}: {out}");
    }
}

#[test]
fn hello_greets_its_input() {
    let (_, entry) = signed("hello", &[]);
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
    let (b, _) = signed("hello", &[]);
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
