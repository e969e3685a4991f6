//! A board with the gateway (`quiltd`) for system tests: the boot config
//! that brings up quilt-net and quiltd as uid 900, client keys, the boot
//! that learns the board's pin from quiltd's `event=listening` line, and
//! `quilt call` from the host. Shared by `tests/tests/gateway.rs`,
//! `tests/tests/gateway_load.rs` and `benches/gateway.rs`; the in-process
//! client for many concurrent callers is the CLI's own
//! (`quilt::gateway::Board`).

use crate::build::host_binary;
use crate::{HarnessError, ImageBuilder, Result, Vm, VmOpts};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// quiltd's port in the guest (forwarded to a free host port).
pub const GATEWAY_PORT: u16 = 8443;

/// The services of a board with the gateway: `net` (quilt-net, DHCP on
/// QEMU's user network), `prep` (a root one-shot that makes quiltd's state
/// directory, and copies the scrape token in when `metrics_token`) and
/// `quiltd` as uid 900 with the `control` grant. `extra` is appended (more
/// services, `[bundles]`).
pub fn gateway_config(control: &[&str], metrics_token: bool, extra: &str) -> String {
    let (copy, flag) = if metrics_token {
        (
            " && cp /etc/quilt/metrics-token /run/quiltd/ && chmod 600 /run/quiltd/metrics-token",
            r#", "--metrics-token-file", "/run/quiltd/metrics-token""#,
        )
    } else {
        ("", "")
    };
    let grant: Vec<String> = control.iter().map(|c| format!("\"{c}\"")).collect();
    format!(
        r#"modules = ["virtio_mmio", "virtio_net"]

[[service]]
name = "net"
exec = ["/usr/lib/quilt/quilt-net", "dhcp", "eth0", "--ready-fd", "3"]
ready = {{ fd = 3 }}

[[service]]
name = "prep"
exec = ["/bin/sh", "-c", "mkdir -p /run/quiltd{copy} && chown -R 900:900 /run/quiltd"]
restart = "never"

[[service]]
name = "quiltd"
exec = ["/usr/bin/quiltd", "serve", "--state-dir", "/run/quiltd"{flag}]
env = ["GLIBC_TUNABLES=glibc.malloc.arena_max=1"]
uid = 900
gid = 900
after = ["net", "prep"]
control = [{}]
{extra}"#,
        grant.join(", ")
    )
}

/// An image with what every gateway board has: busybox, the virtio-net
/// modules, the Bun runtime layer, quiltd, and the `authorized-clients`
/// file. Add bundles, files and the config ([`gateway_config`]).
pub fn gateway_image(authorized_clients: &str) -> Result<ImageBuilder> {
    Ok(ImageBuilder::new()
        .busybox()
        .modules(&["virtio_mmio", "virtio_net"])
        .bun_runtime()
        .file(
            "/usr/bin/quiltd",
            crate::guest_binary("quiltd", "quiltd")?,
            0o755,
        )
        .bytes(
            "/etc/quilt/trust/authorized-clients",
            authorized_clients,
            0o644,
        ))
}

/// A gateway client key made by the host's `quilt key gen --client`:
/// (secret key file, the public line's key).
pub fn client_key(dir: &Path, name: &str) -> Result<(PathBuf, String)> {
    let base = dir.join(name);
    let out = Command::new(host_binary("quilt", "quilt")?)
        .args(["key", "gen", "--client", "--out"])
        .arg(&base)
        .output()
        .map_err(|source| HarnessError::Spawn {
            program: "quilt key gen".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(HarnessError::Setup {
            what: format!("quilt key gen --client --out {}", base.display()),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let public_path = base.with_extension("pub");
    let public =
        std::fs::read_to_string(&public_path).map_err(HarnessError::io("reading", &public_path))?;
    Ok((base.with_extension("key"), public.trim().to_owned()))
}

/// `quilt call` against the board: (exit code, JSON reply, stderr).
pub fn quilt_call(
    url: &str,
    key: &Path,
    pin: &str,
    args: &[&str],
) -> Result<(i32, serde_json::Value, String)> {
    let out = Command::new(host_binary("quilt", "quilt")?)
        .args(["call", "--board", url, "--board-key", pin, "--key"])
        .arg(key)
        .args(args)
        .output()
        .map_err(|source| HarnessError::Spawn {
            program: "quilt call".into(),
            source,
        })?;
    Ok((
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A booted board whose quiltd listens: the VM, the URL of its forwarded
/// port on the host, and the board key's fingerprint to pin.
pub struct Gateway {
    /// The guest.
    pub vm: Vm,
    /// `https://127.0.0.1:<host port>`.
    pub url: String,
    /// `SHA256:…`, from quiltd's `event=listening` line on the console.
    pub pin: String,
}

impl Gateway {
    /// Boots `image` with quiltd's port forwarded and waits (up to
    /// `timeout`) for quiltd's `event=listening`. QEMU accepts on the host
    /// side before the guest listens, so the first call may still need a
    /// retry ([`Self::wait_answers`]).
    pub fn boot(image: &Path, opts: VmOpts, timeout: Duration) -> Result<Gateway> {
        let mut vm = Vm::boot(image, opts.user_net(&[GATEWAY_PORT]))?;
        let listening = vm.wait_for_console("event=listening", timeout)?;
        let pin = listening
            .split_whitespace()
            .find_map(|w| w.strip_prefix("board-key="))
            .ok_or_else(|| HarnessError::Setup {
                what: "reading the board key".into(),
                detail: format!("no board-key= in {listening:?}"),
            })?
            .to_owned();
        let port = vm
            .host_port(GATEWAY_PORT)
            .ok_or_else(|| HarnessError::Setup {
                what: "forwarding quiltd's port".into(),
                detail: "no host port for 8443".into(),
            })?;
        Ok(Gateway {
            vm,
            url: format!("https://127.0.0.1:{port}"),
            pin,
        })
    }

    /// `quilt call … GET PATH` with `key` until it succeeds (up to
    /// `timeout`); its JSON reply.
    pub fn wait_answers(
        &self,
        key: &Path,
        path: &str,
        timeout: Duration,
    ) -> Result<serde_json::Value> {
        let until = std::time::Instant::now() + timeout;
        loop {
            let (code, v, err) = quilt_call(&self.url, key, &self.pin, &["GET", path])?;
            if code == 0 {
                return Ok(v);
            }
            if std::time::Instant::now() > until {
                return Err(HarnessError::Timeout {
                    waited_for: format!("quiltd to answer GET {path}"),
                    after: timeout,
                    tail: err,
                });
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// `n` client keys made in this process (for many agents at once; `quilt
/// key gen --client` writes the same files): `dir/<prefix><i>.key`, mode
/// 0600, and the public key text of each.
pub fn client_keys(dir: &Path, prefix: &str, n: usize) -> Result<Vec<(PathBuf, String)>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut rng =
        std::fs::File::open("/dev/urandom").map_err(HarnessError::io("opening", "/dev/urandom"))?;
    (0..n)
        .map(|i| {
            let mut seed = [0u8; 32];
            rng.read_exact(&mut seed)
                .map_err(HarnessError::io("reading", "/dev/urandom"))?;
            let path = dir.join(format!("{prefix}{i}.key"));
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| {
                    std::io::Write::write_all(
                        &mut f,
                        quilt_gateway_auth::keys::secret_file(&seed).as_bytes(),
                    )
                })
                .map_err(HarnessError::io("writing", &path))?;
            let public =
                quilt_gateway_auth::keys::public_text(&quilt_gateway_auth::keys::public_of(&seed));
            Ok((path, public))
        })
        .collect()
}
