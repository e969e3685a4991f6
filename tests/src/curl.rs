//! `curl` against a board's gateway, with the board's key pinned and
//! requests signed by hand (RFC 9421 with the shared profile): what a
//! client that is not `quilt` sends, including the bad requests a test
//! wants refused (unsigned, a stranger's key, a signature that does not
//! match its keyid, stale, a spent nonce).

use crate::{HarnessError, Result};
use quilt_gateway_auth::fingerprint::Fingerprint;
use quilt_gateway_auth::keys::{parse_secret, public_of};
use quilt_gateway_auth::profile::{sign_request, Outgoing};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A board as curl reaches it.
pub struct Curl {
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// curl's `--pinnedpubkey` argument, `sha256//<base64>`.
    pin: String,
    /// Where request bodies are written for `--data-binary @file`.
    dir: PathBuf,
}

/// A client key as curl signs with it.
#[derive(Clone, Copy)]
pub struct Signer {
    seed: [u8; 32],
}

impl Signer {
    /// The key in a client key file (`quilt key gen --client`).
    pub fn load(key_file: &Path) -> Result<Signer> {
        let text = std::fs::read_to_string(key_file).map_err(|source| HarnessError::Io {
            op: "reading",
            path: key_file.to_path_buf(),
            source,
        })?;
        let seed = parse_secret(&text).map_err(|e| HarnessError::Setup {
            what: format!("reading the client key {}", key_file.display()),
            detail: e.to_string(),
        })?;
        Ok(Signer { seed })
    }

    /// Its `keyid` (the key's fingerprint, as the board lists it).
    pub fn keyid(&self) -> String {
        Fingerprint::of_ed25519(&public_of(&self.seed)).to_string()
    }
}

/// One signed request: who signs, and what may be wrong with it.
pub struct Signed<'a> {
    /// The key that makes the signature.
    pub by: Signer,
    /// The `keyid` the signature claims, if not `by`'s own (a signature
    /// that does not match the key it names).
    pub claims: Option<String>,
    /// UNIX seconds it claims to be made at.
    pub created: i64,
    /// Its nonce (16..=64 characters).
    pub nonce: &'a str,
}

/// UNIX seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Curl {
    /// The board at `url`, pinned to `fingerprint` (`SHA256:<base64>`).
    pub fn new(url: &str, fingerprint: &str, dir: &Path) -> Result<Curl> {
        let b64 = fingerprint
            .strip_prefix("SHA256:")
            .ok_or_else(|| HarnessError::Setup {
                what: "pinning the board for curl".into(),
                detail: format!("{fingerprint:?} is not SHA256:<base64>"),
            })?;
        std::fs::create_dir_all(dir).map_err(|source| HarnessError::Io {
            op: "creating",
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Curl {
            url: url.to_owned(),
            pin: format!("sha256//{b64}"),
            dir: dir.to_path_buf(),
        })
    }

    /// `curl` with the board pinned (`-k` turns off name and CA checks;
    /// the pin is then the only trust), `args` before the URL of `path`
    /// (which may carry a query): (HTTP status, JSON body or Null). curl
    /// still prints the status when `--max-time` cuts a stream short.
    pub fn get(&self, args: &[&str], path: &str) -> Result<(u16, serde_json::Value)> {
        let out = Command::new("curl")
            .args(["-sS", "-k", "--pinnedpubkey", &self.pin])
            .args(["-o", "-", "-w", "\n%{http_code}"])
            .args(args)
            .arg(format!("{}{path}", self.url))
            .output()
            .map_err(|source| HarnessError::Spawn {
                program: "curl".into(),
                source,
            })?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
        Ok((
            status.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        ))
    }

    /// `method path` with `body`, signed as `s` says.
    pub fn signed(
        &self,
        s: &Signed<'_>,
        method: &str,
        path: &str,
        body: &[u8],
        extra: &[&str],
    ) -> Result<(u16, serde_json::Value)> {
        let (bare, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let h = sign_request(
            &s.by.seed,
            &Outgoing {
                method,
                path: bare,
                query,
                body,
                created: s.created,
                nonce: s.nonce,
            },
        )
        .map_err(|e| HarnessError::Setup {
            what: format!("signing {method} {path}"),
            detail: e.to_string(),
        })?;
        let input = match &s.claims {
            Some(other) => h.signature_input.replace(&s.by.keyid(), other),
            None => h.signature_input,
        };
        let hs = [
            format!("content-digest: {}", h.content_digest),
            format!("signature-input: {input}"),
            format!("signature: {}", h.signature),
        ];
        let file = self.dir.join(format!("body-{}", s.nonce));
        std::fs::write(&file, body).map_err(|source| HarnessError::Io {
            op: "writing",
            path: file.clone(),
            source,
        })?;
        let data = format!("@{}", file.display());
        let mut args = vec!["-X", method, "-H", "content-type: application/json"];
        for x in &hs {
            args.extend(["-H", x.as_str()]);
        }
        if !body.is_empty() {
            args.extend(["--data-binary", data.as_str()]);
        }
        args.extend_from_slice(extra);
        self.get(&args, path)
    }
}
