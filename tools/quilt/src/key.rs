//! `quilt key …`: ed25519 signing keys as small text files.
//!
//! `BASE.key` holds the secret seed and is created 0600; `BASE.pub` holds the
//! public key and goes into a board's trust dir (`/etc/quilt/trust/`).

use anyhow::{bail, Context};
use clap::Subcommand;
use quilt_bundle::{PublicKey, SecretKey};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum KeyCmd {
    /// Generate a new ed25519 signing key pair.
    ///
    /// Writes BASE.key (the secret, mode 0600, never leaves your machine) and
    /// BASE.pub (the public key: copy it into a board's trust dir so bundles
    /// you sign are accepted there). Refuses to overwrite existing files.
    #[command(verbatim_doc_comment)]
    Gen {
        /// Path prefix for the two files, e.g. `keys/release-1`.
        #[arg(long, value_name = "BASE")]
        out: PathBuf,
    },
    /// Print the id and public key of a .key or .pub file.
    Show {
        /// A BASE.key or BASE.pub file.
        file: PathBuf,
    },
}

pub fn run(cmd: KeyCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        KeyCmd::Gen { out } => gen(&out),
        KeyCmd::Show { file } => {
            let pk = if file.extension().is_some_and(|e| e == "key") {
                read_secret(&file)?.public()
            } else {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                PublicKey::from_file(&text).with_context(|| file.display().to_string())?
            };
            println!("id {}\npublic {}", pk.id(), pk.to_hex());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn with_ext(base: &Path, ext: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn gen(base: &Path) -> anyhow::Result<ExitCode> {
    let seed = ed25519_compact::Seed::generate();
    let sk = SecretKey::from_seed(*seed);
    let key_path = with_ext(base, "key");
    let pub_path = with_ext(base, "pub");
    for p in [&key_path, &pub_path] {
        if p.exists() {
            bail!(
                "{} already exists; refusing to overwrite a key (pick another --out)",
                p.display()
            );
        }
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .with_context(|| format!("creating {}", key_path.display()))?;
    f.write_all(sk.to_file().as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", key_path.display()))?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&pub_path)
        .with_context(|| format!("creating {}", pub_path.display()))?;
    f.write_all(sk.public().to_file().as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", pub_path.display()))?;
    println!(
        "wrote {} (secret, 0600) and {} (public); key id {}",
        key_path.display(),
        pub_path.display(),
        sk.public().id()
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads a secret key, refusing one that anyone but its owner can read.
pub fn read_secret(path: &Path) -> anyhow::Result<SecretKey> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "secret key {} has mode {mode:03o} and others can read it; run `chmod 600 {}` (and consider the key leaked)",
            path.display(),
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    SecretKey::from_file(&text).with_context(|| path.display().to_string())
}
