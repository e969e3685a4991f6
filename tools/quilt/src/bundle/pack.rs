//! `quilt bundle pack` and `quilt bundle sign`.

use crate::key::read_secret;
use anyhow::{bail, Context as _};
use quilt_bundle::header::Limits;
use quilt_bundle::pack::{add_signature, Builder, HeaderFields};
use quilt_bundle::{BundleReader, CHUNK_MAX, MAX_HEADER, MAX_SIGNATURES};
use serde::Deserialize;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `DIR/quilt.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolToml {
    name: String,
    version: u64,
    entry: String,
    runtime: Option<String>,
    #[serde(default)]
    arch: Vec<String>,
    #[serde(default)]
    boards: Vec<String>,
    #[serde(default)]
    tokens: Vec<String>,
    not_before: Option<u64>,
    expires: Option<u64>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    limits: LimitsToml,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsToml {
    memory_mib: Option<u32>,
    cpu_percent: Option<u16>,
    tasks: Option<u32>,
    open_files: Option<u32>,
    io_mib_s: Option<u32>,
    io_iops: Option<u32>,
}

/// Reads `DIR/quilt.toml` into header fields and the exclude list.
pub(crate) fn read_tool_toml(dir: &Path) -> anyhow::Result<(HeaderFields, Vec<String>)> {
    let path = dir.join("quilt.toml");
    let text = fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {}; a tool directory needs a quilt.toml with name, version and entry",
            path.display()
        )
    })?;
    let t: ToolToml = toml::from_str(&text).map_err(|e| {
        let line = e.span().map_or(0, |s| {
            text.get(..s.start).unwrap_or("").matches('\n').count() + 1
        });
        anyhow::anyhow!("{} line {line}: {}", path.display(), e.message().trim())
    })?;
    for token in &t.tokens {
        quilt_bundle::tokens::Token::parse(token)
            .with_context(|| format!("{}: tokens", path.display()))?;
    }
    let d = Limits::default();
    let fields = HeaderFields {
        name: t.name,
        version: t.version,
        arch: t.arch,
        boards: t.boards,
        entry: t.entry,
        runtime: t.runtime.unwrap_or_else(|| "bun".into()),
        limits: Limits {
            memory_mib: t.limits.memory_mib.unwrap_or(d.memory_mib),
            cpu_percent: t.limits.cpu_percent.unwrap_or(d.cpu_percent),
            tasks: t.limits.tasks.unwrap_or(d.tasks),
            open_files: t.limits.open_files.unwrap_or(d.open_files),
            io_mib_s: t.limits.io_mib_s.unwrap_or(d.io_mib_s),
            io_iops: t.limits.io_iops.unwrap_or(d.io_iops),
        },
        tokens: t.tokens,
        not_before: t.not_before,
        expires: t.expires,
    };
    let mut exclude = t.exclude;
    exclude.push(".git".into());
    Ok((fields, exclude))
}

fn excluded(rel: &str, exclude: &[String]) -> bool {
    exclude.iter().any(|e| {
        let e = e.trim_end_matches('/');
        rel == e || rel.strip_prefix(e).is_some_and(|r| r.starts_with('/'))
    })
}

fn walk(root: &Path, rel: &str, b: &mut Builder, exclude: &[String]) -> anyhow::Result<()> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let mut names = Vec::new();
    for e in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        names.push(
            e.with_context(|| format!("listing {}", dir.display()))?
                .file_name(),
        );
    }
    names.sort();
    for name in names {
        let Some(name) = name.to_str() else {
            bail!(
                "refusing to pack {:?} in {}: name is not valid UTF-8",
                name,
                dir.display()
            );
        };
        let rel = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        if excluded(&rel, exclude) {
            continue;
        }
        let path = root.join(&rel);
        let meta =
            fs::symlink_metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        let ft = meta.file_type();
        let mode = meta.permissions().mode();
        if mode & 0o7000 != 0 && !ft.is_symlink() {
            bail!(
                "refusing to pack {rel}: mode {:o} has setuid, setgid or sticky bits; clear them with chmod",
                mode & 0o7777
            );
        }
        let perm = u16::try_from(mode & 0o777).unwrap_or(0);
        if ft.is_dir() {
            b.dir(&rel, perm);
            walk(root, &rel, b, exclude)?;
        } else if ft.is_file() {
            let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            b.file(&rel, perm, &data);
        } else if ft.is_symlink() {
            let target =
                fs::read_link(&path).with_context(|| format!("reading link {}", path.display()))?;
            let Some(target) = target.to_str() else {
                bail!("refusing to pack symlink {rel}: target is not valid UTF-8");
            };
            b.symlink(&rel, target);
        } else {
            bail!("refusing to pack {rel}: device nodes, fifos and sockets cannot go in a bundle");
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` via a temp file and rename.
pub(crate) fn write_replace(
    path: &Path,
    parts: &mut dyn FnMut(&mut File) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    parts(&mut f)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

pub fn pack(dir: &Path, out: &Path) -> anyhow::Result<ExitCode> {
    let (fields, exclude) = read_tool_toml(dir)?;
    let mut b = Builder::new();
    walk(dir, "", &mut b, &exclude)?;
    let packed = b
        .finish(fields)
        .map_err(|e| anyhow::anyhow!("packing {}: {e}", dir.display()))?;
    let qb = packed.to_qb(&[])?;
    write_replace(out, &mut |f| f.write_all(&qb))?;
    let h = &packed.header;
    println!(
        "packed {} version {}: {} files, {} bytes in {} chunks, root {}",
        h.name, h.version, h.files, h.total_size, h.chunk_count, h.root
    );
    println!(
        "wrote {} ({} bytes, unsigned); next: quilt bundle sign {} --key KEY.key",
        out.display(),
        qb.len(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn sign(file: &Path, key: &Path) -> anyhow::Result<ExitCode> {
    let sk = read_secret(key)?;
    // Only an intact bundle is worth a signature.
    {
        let mut src = super::source(file)?;
        let checked = BundleReader::open_unverified(&mut src).and_then(|mut r| {
            let mut buf = vec![0u8; CHUNK_MAX as usize];
            r.verify_rest(&mut buf)
        });
        if let Err(e) = checked {
            return Err(super::fail(file, &src, e).context("refusing to sign"));
        }
    }
    let max_prefix = 8 + 4 + MAX_HEADER as usize + 1 + usize::from(MAX_SIGNATURES) * 96;
    let mut f = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut prefix = Vec::with_capacity(max_prefix);
    (&mut f)
        .take(max_prefix as u64)
        .read_to_end(&mut prefix)
        .with_context(|| format!("reading {}", file.display()))?;
    let (env, old_len) =
        add_signature(&prefix, &sk).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let count = quilt_bundle::reader::parse_envelope(&env).map_or(0, |(e, _)| e.sigs.len());
    f.seek(SeekFrom::Start(old_len as u64))?;
    write_replace(file, &mut |out| {
        out.write_all(&env)?;
        std::io::copy(&mut f, out).map(|_| ())
    })?;
    println!(
        "signed {} with key {}; it now carries {count} signature(s)",
        file.display(),
        sk.public().id()
    );
    Ok(ExitCode::SUCCESS)
}
