//! `quilt key …`: ed25519 signing keys as small text files.
//!
//! `BASE.key` holds the secret seed and is created 0600; `BASE.pub` holds the
//! public key and goes into a board's trust dir (`/etc/quilt/trust/`).

use anyhow::{bail, Context};
use clap::Subcommand;
use quilt_bundle::envelope::{Envelope, MAGIC_PERMIT, MAGIC_TRUST};
use quilt_bundle::sig;
use quilt_bundle::trust::{DowngradePermit, TrustUpdate};
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
    ///
    /// With --client: a gateway client key instead (for `quilt call`):
    /// BASE.key (0600) and BASE.pub (`ed25519:<hex>`, for a line of a
    /// board's authorized-clients file). The two kinds have different tags,
    /// so neither is taken for the other.
    #[command(verbatim_doc_comment)]
    Gen {
        /// Path prefix for the two files, e.g. `keys/release-1`.
        #[arg(long, value_name = "BASE")]
        out: PathBuf,
        /// Make a gateway client key, not a bundle signing key.
        #[arg(long)]
        client: bool,
    },
    /// Print the id and public key of a .key or .pub file.
    Show {
        /// A BASE.key or BASE.pub file.
        file: PathBuf,
    },
    /// Write an unsigned key-rotation (trust update) document.
    ///
    /// NEW_TRUST is a trust dir (*.pub and optional policy) describing the
    /// keys and policy after rotation. Boards accept the document only when
    /// it carries root-threshold signatures of their CURRENT root keys and
    /// root-threshold signatures of the NEW keys, and its sequence is above
    /// the last one they applied. Collect signatures with `quilt key cosign`.
    #[command(verbatim_doc_comment)]
    Rotate {
        /// Trust dir holding the new keys and policy.
        new_trust: PathBuf,
        /// Must exceed the sequence of the last rotation (the image's is 0).
        #[arg(long)]
        sequence: u64,
        /// Refuse the document from this UNIX time on (boards with a clock).
        #[arg(long)]
        expires: Option<u64>,
        /// Where to write the document.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Write an unsigned downgrade permit: lets boards install VERSION of
    /// NAME although a newer version was installed. Needs root-threshold
    /// signatures (`quilt key cosign`); each permit works once per board.
    #[command(verbatim_doc_comment)]
    Permit {
        /// Bundle name, e.g. firmware.
        #[arg(long)]
        name: String,
        /// The older version to allow.
        #[arg(long)]
        version: u64,
        /// Per-name counter, above any permit used before for this name.
        #[arg(long)]
        sequence: u64,
        /// Refuse the permit from this UNIX time on (boards with a clock).
        #[arg(long)]
        expires: Option<u64>,
        /// Where to write the permit.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Add your signature to a trust update or downgrade permit, in place.
    Cosign {
        /// The document from `quilt key rotate` or `quilt key permit`.
        file: PathBuf,
        /// Your secret key (BASE.key).
        #[arg(long, value_name = "BASE.key")]
        key: PathBuf,
    },
}

pub fn run(cmd: KeyCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        KeyCmd::Gen { out, client: false } => gen(&out),
        KeyCmd::Gen { out, client: true } => gen_client(&out),
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
        KeyCmd::Rotate {
            new_trust,
            sequence,
            expires,
            out,
        } => {
            let t = quilt_store::trustdir::load(&new_trust).map_err(|e| anyhow::anyhow!("{e}"))?;
            let doc = TrustUpdate {
                format: 1,
                sequence,
                keys: t.keys.clone(),
                policy: t.policy,
                expires,
            }
            .sign(&[])?;
            write_new(&out, &doc)?;
            println!(
                "wrote {} (trust update, sequence {sequence}, {} keys, unsigned); collect signatures with `quilt key cosign {} --key KEY.key`",
                out.display(),
                t.keys.len(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        KeyCmd::Permit {
            name,
            version,
            sequence,
            expires,
            out,
        } => {
            quilt_bundle::header::check_name(&name)?;
            let doc = DowngradePermit {
                format: 1,
                name,
                version,
                sequence,
                expires,
            }
            .sign(&[])?;
            write_new(&out, &doc)?;
            println!(
                "wrote {} (downgrade permit, unsigned); collect signatures with `quilt key cosign {} --key KEY.key`",
                out.display(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        KeyCmd::Cosign { file, key } => cosign(&file, &key),
    }
}

fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {} (refusing to overwrite)", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn cosign(file: &Path, key: &Path) -> anyhow::Result<ExitCode> {
    let sk = read_secret(key)?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let magic = bytes.get(..8).unwrap_or_default();
    let (magic, domain, what) = if magic == MAGIC_TRUST {
        (MAGIC_TRUST, sig::DOMAIN_TRUST, "trust update")
    } else if magic == MAGIC_PERMIT {
        (MAGIC_PERMIT, sig::DOMAIN_PERMIT, "downgrade permit")
    } else {
        bail!("{} is not a trust update or downgrade permit (bad magic); bundles are signed with `quilt bundle sign`", file.display());
    };
    let mut env =
        Envelope::parse_exact(&magic, what, &bytes).with_context(|| file.display().to_string())?;
    // Only a well-formed document is worth a signature.
    if magic == MAGIC_TRUST {
        TrustUpdate::decode(&env.body).with_context(|| file.display().to_string())?;
    } else {
        DowngradePermit::decode(&env.body).with_context(|| file.display().to_string())?;
    }
    let s = sk.sign(domain, &env.body);
    if env.sigs.iter().any(|e| e.key == s.key) {
        bail!(
            "{}: key {} already signed this {what}",
            file.display(),
            s.key.id()
        );
    }
    env.sigs.push(s);
    let mut out = Vec::with_capacity(env.encoded_len());
    env.encode_into(&magic, &mut out)
        .with_context(|| file.display().to_string())?;
    crate::bundle::write_replace(file, &out)?;
    println!(
        "signed {} ({what}) with key {}; it now carries {} signature(s)",
        file.display(),
        sk.public().id(),
        env.sigs.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn with_ext(base: &Path, ext: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Creates `path` with `text`, never overwriting, with `mode`.
fn create(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {} (refusing to overwrite)", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// `BASE.key` and `BASE.pub`, neither of which may exist yet.
fn fresh_pair(base: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
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
    Ok((key_path, pub_path))
}

fn gen_client(base: &Path) -> anyhow::Result<ExitCode> {
    use quilt_gateway_auth::keys;
    let seed = *ed25519_compact::Seed::generate();
    let public = keys::public_of(&seed);
    let (key_path, pub_path) = fresh_pair(base)?;
    create(&key_path, &keys::secret_file(&seed), 0o600)?;
    create(
        &pub_path,
        &format!("{}\n", keys::public_text(&public)),
        0o644,
    )?;
    let name = base
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| {
            n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
        .unwrap_or("NAME");
    println!(
        "wrote {} (client secret, 0600) and {} (public); key id {}\nauthorize it on a board with this line in /etc/quilt/trust/authorized-clients (role agent or operator):\noperator {name} {}",
        key_path.display(),
        pub_path.display(),
        quilt_gateway_auth::fingerprint::Fingerprint::of_ed25519(&public),
        keys::public_text(&public)
    );
    Ok(ExitCode::SUCCESS)
}

fn gen(base: &Path) -> anyhow::Result<ExitCode> {
    let seed = ed25519_compact::Seed::generate();
    let sk = SecretKey::from_seed(*seed);
    let (key_path, pub_path) = fresh_pair(base)?;
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
