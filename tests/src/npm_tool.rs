//! The tool with real npm dependencies that issue 18 compares in two forms:
//! built by `quilt build` into one file (and its source map), and the same
//! project packed with its `node_modules` as tools were before the SDK.
//! `tests/tests/sdk.rs` checks that both give the same result on the board;
//! `benches/sdk.rs` times them side by side in one guest.
//!
//! The tool uses `zod` 3.23.8 and `debug` 4.3.7 (which brings `ms`);
//! `bun add` fetches them from the npm registry once.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::unique_dir;
use crate::bundles::{quilt, quilt_bun, test_key};
use crate::{bun_binary, guest_binary, HarnessError, ImageBuilder, Result};

/// The tool's module: checks its input again with zod and says the deadline
/// in words with debug's `humanize` (ms).
pub const SOURCE: &str = r#"import { serve, tool } from "@quilt/tool";
import createDebug from "debug";
import { z } from "zod";

const Order = z.object({
  items: z.array(z.object({ sku: z.string().min(1), qty: z.number().int().positive() })),
  within_ms: z.number().int().nonnegative(),
});

export class Orders {
  @tool({
    description: "Totals an order (checked again with zod) and says its deadline in words (debug's ms).",
    input: {
      type: "object",
      properties: { items: { type: "array" }, within_ms: { type: "integer" } },
      required: ["items", "within_ms"],
    },
  })
  total(input: unknown) {
    const o = Order.parse(input);
    return {
      lines: o.items.length,
      qty: o.items.reduce((a, i) => a + i.qty, 0),
      within: createDebug.humanize(o.within_ms),
    };
  }
}

await serve(Orders);
"#;

/// Shell lines for a guest probe: write the input for the built bundle
/// (`/tmp/in.json`, called as `quilt run deps total`) and the raw request
/// for the packed one (`/tmp/req.json`: its manifest lists no tools, so it
/// gets the SDK's request as is).
pub const PROBE_INPUTS: &str = r#"echo '{"items":[{"sku":"a","qty":2},{"sku":"b","qty":5}],"within_ms":90000}' > /tmp/in.json
echo '{"tool":"total","input":{"items":[{"sku":"a","qty":2},{"sku":"b","qty":5}],"within_ms":90000}}' > /tmp/req.json
"#;

/// The command that runs the built bundle once (`--json`: one line with the
/// status, stdout and quilt-init's `micros`).
pub const RUN_BUILT: &str = "quilt run deps total --input /tmp/in.json --json";
/// The command that runs the packed bundle once.
pub const RUN_PACKED: &str = "quilt run deps-packed --input /tmp/req.json --json";

/// The envelope both forms must print for [`PROBE_INPUTS`].
pub fn want() -> serde_json::Value {
    serde_json::json!({"result": {"lines": 2, "qty": 7, "within": "2m"}})
}

/// The two signed bundles of the tool and the trust dir that accepts them.
#[derive(Debug, Clone)]
pub struct NpmTool {
    /// `quilt build`: `index.js` and `index.js.map`; bundle name `deps`.
    pub built: PathBuf,
    /// `quilt bundle pack` of the project with its `node_modules`; bundle
    /// name `deps-packed`.
    pub packed: PathBuf,
    /// The test trust dir ([`test_key`]).
    pub trust: PathBuf,
    /// The test signing key, for more bundles in the same image.
    pub key: PathBuf,
}

fn os(args: &[&str]) -> Vec<std::ffi::OsString> {
    args.iter().map(Into::into).collect()
}

fn run_quilt(args: &[&str], bun: bool) -> Result<String> {
    let owned = os(args);
    let refs: Vec<&std::ffi::OsStr> = owned.iter().map(|a| a.as_os_str()).collect();
    if bun {
        quilt_bun(&refs)
    } else {
        quilt(&refs)
    }
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().ok_or_else(|| HarnessError::Setup {
        what: "using a scratch path".into(),
        detail: format!("{} is not UTF-8", p.display()),
    })
}

fn command(what: &str, cmd: &mut Command) -> Result<()> {
    let out = cmd.output().map_err(|source| HarnessError::Spawn {
        program: what.into(),
        source,
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(HarnessError::Setup {
            what: what.into(),
            detail: format!(
                "exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            ),
        })
    }
}

impl NpmTool {
    /// Scaffold the project with `quilt new`, add the two npm packages,
    /// then build, copy and pack it, and sign both bundles with the test key.
    pub fn make() -> Result<Self> {
        let project = unique_dir("npm-tool")?.join("deps");
        let project_s = path_str(&project)?;
        run_quilt(&["new", project_s], true)?;
        command(
            "bun add zod@3.23.8 debug@4.3.7",
            Command::new(bun_binary()?)
                .args(["add", "zod@3.23.8", "debug@4.3.7"])
                .current_dir(&project),
        )?;
        let index = project.join("src/index.ts");
        std::fs::write(&index, SOURCE).map_err(HarnessError::io("writing", &index))?;
        let (key, trust) = test_key()?;
        let key_s = path_str(&key)?.to_owned();
        let sign = |qb: &Path| -> Result<()> {
            run_quilt(&["bundle", "sign", path_str(qb)?, "--key", &key_s], false).map(|_| ())
        };

        // quilt build: one file and its source map.
        let built = project.with_extension("built.qb");
        run_quilt(&["build", project_s, "--out", path_str(&built)?], true)?;
        sign(&built)?;

        // As before the SDK: the source and its node_modules, packed.
        let packed_dir = unique_dir("npm-tool-packed")?.join("deps-packed");
        command(
            "cp -a (the project, to pack it with its node_modules)",
            Command::new("cp").arg("-a").arg(&project).arg(&packed_dir),
        )?;
        let toml = packed_dir.join("quilt.toml");
        let text = std::fs::read_to_string(&toml).map_err(HarnessError::io("reading", &toml))?;
        let edited = text
            .replace("name = \"deps\"", "name = \"deps-packed\"")
            .replace(
                "tokens = []",
                "tokens = []\nexclude = [\"vendor\", \"bun.lock\"]",
            );
        if edited == text {
            return Err(HarnessError::Setup {
                what: "renaming the packed copy".into(),
                detail: format!("quilt new's quilt.toml changed shape:\n{text}"),
            });
        }
        std::fs::write(&toml, edited).map_err(HarnessError::io("writing", &toml))?;
        let packed = packed_dir.with_extension("qb");
        run_quilt(
            &[
                "bundle",
                "pack",
                path_str(&packed_dir)?,
                "--out",
                path_str(&packed)?,
            ],
            false,
        )?;
        sign(&packed)?;
        Ok(Self {
            built,
            packed,
            trust,
            key,
        })
    }

    /// An x86_64 image with Bun, the SDK in the runtime layer, the guest
    /// `quilt` CLI, both bundles (`deps`, `deps-packed`), `extra` bundles
    /// (`(name, .qb)`), the trust dir, and `probe` as a service whose exit
    /// powers the guest off.
    pub fn image(&self, probe: &str, extra: &[(&str, &Path)]) -> Result<PathBuf> {
        let config = r#"
[[service]]
name = "probe"
exec = ["/bin/probe.sh"]
restart = "never"
on_exit = "poweroff"
"#;
        let mut b = ImageBuilder::new()
            .busybox()
            .bun_runtime()
            .tool_sdk()
            .file("/bin/quilt", guest_binary("quilt", "quilt")?, 0o755)
            .config_toml(config)
            .bytes("/bin/probe.sh", probe.as_bytes().to_vec(), 0o755)
            .file("/usr/share/quilt/bundles/deps.qb", &self.built, 0o644)
            .file(
                "/usr/share/quilt/bundles/deps-packed.qb",
                &self.packed,
                0o644,
            )
            .tree("/etc/quilt/trust", &self.trust);
        for (name, qb) in extra {
            b = b.file(&format!("/usr/share/quilt/bundles/{name}.qb"), qb, 0o644);
        }
        b.build()
    }
}

/// `(bytes, files)` of a bundle: its size on disk and the file count its
/// manifest lists (`quilt bundle inspect --json`).
pub fn size_and_files(qb: &Path) -> Result<(u64, u64)> {
    let size = std::fs::metadata(qb)
        .map_err(HarnessError::io("reading", qb))?
        .len();
    let text = run_quilt(&["bundle", "inspect", "--json", path_str(qb)?], false)?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| HarnessError::Setup {
        what: format!("reading quilt bundle inspect --json {}", qb.display()),
        detail: e.to_string(),
    })?;
    let files = v["files"].as_u64().ok_or_else(|| HarnessError::Setup {
        what: format!("reading quilt bundle inspect --json {}", qb.display()),
        detail: format!("no \"files\" count in {v}"),
    })?;
    Ok((size, files))
}
