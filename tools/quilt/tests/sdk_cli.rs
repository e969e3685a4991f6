//! `quilt new`, `quilt build`, `quilt test` and `quilt run BUNDLE TOOL`
//! through the real binary, in the cases that need no Bun: what they
//! write, and how they refuse. (With Bun, the builds themselves are
//! tested in tests/tests/sdk.rs.)

use std::path::Path;
use std::process::{Command, Output};

fn quilt(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quilt"))
        .args(args)
        .current_dir(cwd)
        .env_remove("QUILT_BUN")
        .output()
        .unwrap()
}

fn fails(args: &[&str], cwd: &Path) -> String {
    let out = quilt(args, cwd);
    assert!(!out.status.success(), "quilt {args:?} should have failed");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn new_writes_a_project_that_names_its_next_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let out = quilt(&["new", "weather", "--no-install"], tmp.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("bun install"), "{text}");
    assert!(
        text.contains("quilt build weather --out weather.qb"),
        "{text}"
    );
    let p = tmp.path().join("weather");
    let toml = std::fs::read_to_string(p.join("quilt.toml")).unwrap();
    assert!(toml.contains("name = \"weather\""), "{toml}");
    assert!(toml.contains("entry = \"src/index.ts\""), "{toml}");
    let pkg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.join("package.json")).unwrap()).unwrap();
    assert_eq!(
        pkg["dependencies"]["@quilt/tool"],
        "file:./vendor/quilt-tool"
    );
    let index = std::fs::read_to_string(p.join("src/index.ts")).unwrap();
    assert!(index.contains("@tool({"), "{index}");
    assert!(index.contains("await serve(Greeter)"), "{index}");
    assert!(std::fs::read_to_string(p.join("src/index.test.ts"))
        .unwrap()
        .contains("bun:test"));
    // The SDK vendored is the one this CLI was built with.
    assert_eq!(
        std::fs::read_to_string(p.join("vendor/quilt-tool/index.ts")).unwrap(),
        include_str!("../../../init/tool-sdk/index.ts")
    );
    serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(p.join("tsconfig.json")).unwrap(),
    )
    .unwrap();

    // The agent template asks for the spawn token.
    let out = quilt(
        &["new", "planner", "--template", "agent", "--no-install"],
        tmp.path(),
    );
    assert!(out.status.success());
    let toml = std::fs::read_to_string(tmp.path().join("planner/quilt.toml")).unwrap();
    assert!(toml.contains("tokens = [\"spawn\"]"), "{toml}");
    assert!(
        std::fs::read_to_string(tmp.path().join("planner/src/index.ts"))
            .unwrap()
            .contains("ctx.callTool(")
    );
}

#[test]
fn new_refuses_bad_names_and_existing_projects() {
    let tmp = tempfile::tempdir().unwrap();
    let err = fails(&["new", "Weather Tool", "--no-install"], tmp.path());
    assert!(err.contains("1-64 of a-z 0-9 - _"), "{err}");
    std::fs::create_dir(tmp.path().join("taken")).unwrap();
    std::fs::write(tmp.path().join("taken/file"), "x").unwrap();
    let err = fails(&["new", "taken", "--no-install"], tmp.path());
    assert!(err.contains("exists and is not empty"), "{err}");
}

#[test]
fn build_says_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(quilt(&["new", "w", "--no-install"], tmp.path())
        .status
        .success());
    let err = fails(&["build", "w", "--out", "w.qb"], tmp.path());
    assert!(
        err.contains("no bun.lock; run `bun install` there once"),
        "{err}"
    );
    let err = fails(
        &[
            "build",
            "w",
            "--out",
            "w.qb",
            "--no-install",
            "--bun",
            "/nonexistent/bun",
        ],
        tmp.path(),
    );
    assert!(err.contains("pass --bun PATH or set QUILT_BUN"), "{err}");
    std::fs::remove_file(tmp.path().join("w/src/index.ts")).unwrap();
    let err = fails(&["build", "w", "--out", "w.qb"], tmp.path());
    assert!(
        err.contains("entry \"src/index.ts\" is not a file"),
        "{err}"
    );
    let err = fails(&["build", "nowhere", "--out", "w.qb"], tmp.path());
    assert!(err.contains("opening nowhere"), "{err}");
}

#[test]
fn run_takes_a_tool_or_lists_tools_but_not_both() {
    let tmp = tempfile::tempdir().unwrap();
    let err = fails(&["run", "greeter", "greet", "--tools"], tmp.path());
    assert!(err.contains("cannot be used with"), "{err}");
    let sock = tmp.path().join("none.sock");
    let err = fails(
        &[
            "run",
            "greeter",
            "greet",
            "--socket",
            sock.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(err.contains("is this a Quilt board"), "{err}");
    let help = String::from_utf8(quilt(&["run", "--help"], tmp.path()).stdout).unwrap();
    assert!(help.contains("{\"tool\": TOOL, \"input\": ...}"), "{help}");
}
