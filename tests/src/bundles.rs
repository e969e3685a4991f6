//! Signed bundles made at test time with the real `quilt` CLI.
//!
//! One ed25519 key is generated per test process in the scratch dir
//! ([`work_dir`]), never in the source tree, so no secret key is ever
//! committed; its public half goes into a trust dir in the format
//! `quilt bundle verify --trust` and `quilt_store::trustdir::load` read
//! (`*.pub` plus a `policy` with every threshold at 1). Each tool directory
//! is packed and signed once per process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::build::{host_binary, repo_root, unique_dir, work_dir};
use crate::{HarnessError, Result};

/// Trust policy of the test trust dir: one signature from the test key.
const POLICY: &str = "# Test trust dir: one key, every threshold 1 (docs/trust.md).\n\
root-threshold 1\n\
default 1\n\
max-version-step 1000\n";

/// A tool directory packed and signed by the test key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBundle {
    /// The signed `.qb`.
    pub qb: PathBuf,
    /// The trust dir that accepts it (shared by all bundles of the process).
    pub trust: PathBuf,
    /// The secret key that signed it (`BASE.key`, mode 0600), for tests
    /// that re-sign or tamper.
    pub key: PathBuf,
}

/// A tool project at `dir` named `name` that prints `{"big": N}`, the size
/// of the `len` incompressible bytes (from `seed`) it carries in
/// `data.bin`: a bundle whose install hashes and writes every chunk.
pub fn data_tool(dir: &Path, name: &str, len: usize, seed: u64) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let io = |e: std::io::Error| HarnessError::io("writing", dir)(e);
    std::fs::create_dir_all(dir).map_err(&io)?;
    std::fs::write(
        dir.join("quilt.toml"),
        format!("name = \"{name}\"\nversion = 1\nentry = \"index.ts\"\nruntime = \"bun\"\n"),
    )
    .map_err(&io)?;
    std::fs::write(
        dir.join("index.ts"),
        "console.log(JSON.stringify({ big: require(\"node:fs\").statSync(import.meta.dir + \"/data.bin\").size }));\n",
    )
    .map_err(&io)?;
    std::fs::write(dir.join("data.bin"), noise(len, seed)).map_err(&io)?;
    Ok(())
}

/// `len` incompressible bytes from an xorshift generator started at `seed`
/// (never 0): payload for tools whose transfers must take a while.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `examples/<name>` in the repository.
pub fn example_dir(name: &str) -> PathBuf {
    repo_root().join("examples").join(name)
}

/// The `quilt` CLI (debug build of this workspace).
pub fn quilt_cli() -> Result<PathBuf> {
    host_binary("quilt", "quilt")
}

/// `quilt send --quiet --timeout SECS --port PORT QB` from the host: its
/// exit code and everything it printed (stdout, then stderr).
pub fn quilt_send(port: &Path, qb: &Path, timeout_s: u32) -> Result<(i32, String)> {
    let cli = quilt_cli()?;
    let out = Command::new(&cli)
        .args([
            "send",
            "--quiet",
            "--timeout",
            &timeout_s.to_string(),
            "--port",
        ])
        .arg(port)
        .arg(qb)
        .output()
        .map_err(HarnessError::io("running", &cli))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.code().unwrap_or(-1), text))
}

/// Run the `quilt` CLI; its stdout on success.
pub fn quilt(args: &[&std::ffi::OsStr]) -> Result<String> {
    quilt_in(args, false)
}

/// Run the `quilt` CLI with `QUILT_BUN` set to the pinned Bun
/// ([`crate::bun_binary`]): for `quilt new`, `build` and `test`. Its
/// stdout on success.
pub fn quilt_bun(args: &[&std::ffi::OsStr]) -> Result<String> {
    quilt_in(args, true)
}

fn quilt_in(args: &[&std::ffi::OsStr], bun: bool) -> Result<String> {
    let cli = quilt_cli()?;
    let mut cmd = Command::new(&cli);
    cmd.args(args);
    if bun {
        cmd.env("QUILT_BUN", crate::bun_binary()?);
    }
    let out = cmd.output().map_err(HarnessError::io("running", &cli))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(HarnessError::Setup {
            what: format!("quilt {}", join(args)),
            detail: format!(
                "exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            ),
        })
    }
}

fn join(args: &[&std::ffi::OsStr]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The process's signing key and the trust dir holding its public half:
/// `(BASE.key, trust dir)`. Generated on first use.
pub fn test_key() -> Result<(PathBuf, PathBuf)> {
    static KEY: OnceLock<std::result::Result<(PathBuf, PathBuf), String>> = OnceLock::new();
    KEY.get_or_init(|| {
        let make = || -> Result<(PathBuf, PathBuf)> {
            let dir = work_dir()?.join("keys");
            let trust = work_dir()?.join("trust");
            for d in [&dir, &trust] {
                std::fs::create_dir_all(d).map_err(HarnessError::io("creating", d))?;
            }
            let base = dir.join("test-signer");
            quilt(&[
                "key".as_ref(),
                "gen".as_ref(),
                "--out".as_ref(),
                base.as_os_str(),
            ])?;
            let public = base.with_extension("pub");
            let in_trust = trust.join("test-signer.pub");
            std::fs::copy(&public, &in_trust).map_err(HarnessError::io("copying", &public))?;
            let policy = trust.join("policy");
            std::fs::write(&policy, POLICY).map_err(HarnessError::io("writing", &policy))?;
            Ok((base.with_extension("key"), trust))
        };
        make().map_err(|e| e.to_string())
    })
    .clone()
    .map_err(|detail| HarnessError::Setup {
        what: "making the test signing key (quilt key gen)".into(),
        detail,
    })
}

/// `dir` is an SDK project (`quilt new`'s layout: a `package.json` next to
/// its `quilt.toml`), built with `quilt build` rather than packed as is.
pub fn is_sdk_project(dir: &Path) -> bool {
    dir.join("package.json").is_file()
}

/// Build `dir` into `qb`: `quilt build` for an SDK project
/// ([`is_sdk_project`]), `quilt bundle pack` for a plain tool directory.
pub fn pack_or_build(dir: &Path, qb: &Path) -> Result<()> {
    if is_sdk_project(dir) {
        // One build at a time: each runs `bun install` in the project's own
        // node_modules, which tests running in parallel threads share.
        static BUILDING: Mutex<()> = Mutex::new(());
        let _one = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
        quilt_bun(&[
            "build".as_ref(),
            dir.as_os_str(),
            "--out".as_ref(),
            qb.as_os_str(),
        ])?;
    } else {
        quilt(&[
            "bundle".as_ref(),
            "pack".as_ref(),
            dir.as_os_str(),
            "--out".as_ref(),
            qb.as_os_str(),
        ])?;
    }
    Ok(())
}

/// Pack `dir` (a tool directory with `quilt.toml`; an SDK project is built,
/// see [`pack_or_build`]), sign it with the test key and check it with
/// `quilt bundle verify` against the test trust dir. Once per directory per
/// process.
pub fn signed_bundle(dir: &Path) -> Result<SignedBundle> {
    type Cache = Mutex<HashMap<PathBuf, std::result::Result<SignedBundle, String>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let (key, trust) = test_key()?;
    let mut map = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    map.entry(dir.to_path_buf())
        .or_insert_with(|| {
            let make = || -> Result<SignedBundle> {
                let stem = dir
                    .file_name()
                    .map_or_else(|| "bundle".into(), |n| n.to_string_lossy().into_owned());
                let qb = unique_dir("bundle")?.join(format!("{stem}.qb"));
                pack_or_build(dir, &qb)?;
                quilt(&[
                    "bundle".as_ref(),
                    "sign".as_ref(),
                    qb.as_os_str(),
                    "--key".as_ref(),
                    key.as_os_str(),
                ])?;
                quilt(&[
                    "bundle".as_ref(),
                    "verify".as_ref(),
                    qb.as_os_str(),
                    "--trust".as_ref(),
                    trust.as_os_str(),
                ])?;
                Ok(SignedBundle {
                    qb,
                    trust: trust.clone(),
                    key: key.clone(),
                })
            };
            make().map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|detail| HarnessError::Setup {
            what: format!("packing and signing {}", dir.display()),
            detail,
        })
}

/// `examples/<name>` packed, signed and verified: `(the .qb, the trust
/// dir with the test key's .pub and a policy)`.
pub fn signed_example(name: &str) -> Result<(PathBuf, PathBuf)> {
    let b = signed_bundle(&example_dir(name))?;
    Ok((b.qb, b.trust))
}
