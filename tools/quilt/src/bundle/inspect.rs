//! `quilt bundle inspect`.

use quilt_bundle::{BundleReader, Node, CHUNK_MAX};
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;

fn mode_string(kind: char, mode: u16) -> String {
    let mut s = String::from(kind);
    for shift in [6u16, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

pub fn inspect(file: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let file_len = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let mut src = super::source(file)?;
    let mut r = match BundleReader::open_unverified(&mut src) {
        Ok(r) => r,
        Err(e) => return Err(super::fail(file, &src, e)),
    };
    let mut buf = vec![0u8; CHUNK_MAX as usize];
    let content = r.verify_rest(&mut buf);
    let h = r.header().clone();
    let sigs: Vec<String> = r.envelope().sigs.iter().map(|s| s.key.to_hex()).collect();
    let m = r.manifest().clone();
    let manifest_len = r.manifest_bytes().len();
    drop(r);
    if as_json {
        let entries: Vec<_> = m
            .entries
            .iter()
            .map(|e| match &e.node {
                Node::Dir { mode } => json!({"path": e.path, "kind": "dir", "mode": format!("{mode:o}")}),
                Node::File { mode, size, chunks } => json!({
                    "path": e.path, "kind": "file", "mode": format!("{mode:o}"), "size": size,
                    "chunks": chunks.iter().map(|c| json!({"id": c.id.to_string(), "len": c.len})).collect::<Vec<_>>(),
                }),
                Node::Symlink { target } => json!({"path": e.path, "kind": "symlink", "target": target}),
            })
            .collect();
        let v = json!({
            "name": h.name, "version": h.version, "root": h.root.to_string(),
            "format": h.format, "runtime": h.runtime, "entry": h.entry,
            "arch": h.arch, "boards": h.boards, "tokens": h.tokens,
            "limits": {"memory_mib": h.limits.memory_mib, "cpu_percent": h.limits.cpu_percent,
                       "tasks": h.limits.tasks, "open_files": h.limits.open_files,
                       "io_mib_s": h.limits.io_mib_s, "io_iops": h.limits.io_iops},
            "not_before": h.not_before, "expires": h.expires,
            "files": h.files, "total_size": h.total_size, "chunk_count": h.chunk_count,
            "content_len": h.content_len, "manifest_len": manifest_len, "file_len": file_len,
            "signatures": sigs,
            "content_intact": content.is_ok(),
            "content_error": content.as_ref().err().map(ToString::to_string),
            "entries": entries,
            "tools": m.tools.iter().map(|t| {
                let schema = |s: &str| serde_json::from_str::<serde_json::Value>(s)
                    .unwrap_or_else(|_| serde_json::Value::String(s.into()));
                json!({"name": t.name, "description": t.description,
                       "input": schema(&t.input), "output": t.output.as_deref().map(schema)})
            }).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let list = |l: &[String]| {
            if l.is_empty() {
                "any".to_string()
            } else {
                l.join(", ")
            }
        };
        println!("bundle      {} version {}", h.name, h.version);
        println!("root        {}", h.root);
        println!("run         {} {}", h.runtime, h.entry);
        println!("arch        {}", list(&h.arch));
        println!("boards      {}", list(&h.boards));
        let io = |v: u32, unit: &str| {
            if v == 0 {
                "no cap".to_string()
            } else {
                format!("{v} {unit}")
            }
        };
        println!(
            "limits      memory {} MiB, cpu {}%, tasks {}, open files {}, io {}, {}",
            h.limits.memory_mib,
            h.limits.cpu_percent,
            h.limits.tasks,
            h.limits.open_files,
            io(h.limits.io_mib_s, "MiB/s"),
            io(h.limits.io_iops, "IOPS")
        );
        println!(
            "tokens      {}",
            if h.tokens.is_empty() {
                "none".into()
            } else {
                h.tokens.join(", ")
            }
        );
        let when = |t: Option<u64>| t.map_or("-".to_string(), |t| t.to_string());
        println!(
            "valid       not before {} / expires {}",
            when(h.not_before),
            when(h.expires)
        );
        println!(
            "size        {} files, {} bytes; {} distinct chunks, {} content bytes; manifest {} bytes; file {} bytes",
            h.files, h.total_size, h.chunk_count, h.content_len, manifest_len, file_len
        );
        println!("signatures  {}", sigs.len());
        for s in &sigs {
            println!("  {s}");
        }
        if !m.tools.is_empty() {
            println!("tools       {}", m.tools.len());
            for t in &m.tools {
                let first = t.description.lines().next().unwrap_or("");
                println!("  {:<20} {first}", t.name);
                println!("  {:<20} input {}", "", t.input);
                if let Some(o) = &t.output {
                    println!("  {:<20} output {o}", "");
                }
            }
        }
        println!("entries     {}", m.entries.len());
        for e in &m.entries {
            match &e.node {
                Node::Dir { mode } => {
                    println!("  {} {:>12} {}/", mode_string('d', *mode), "-", e.path)
                }
                Node::File { mode, size, chunks } => println!(
                    "  {} {:>12} {} ({} chunk{})",
                    mode_string('-', *mode),
                    size,
                    e.path,
                    chunks.len(),
                    if chunks.len() == 1 { "" } else { "s" }
                ),
                Node::Symlink { target } => {
                    println!("  lrwxrwxrwx {:>12} {} -> {}", "-", e.path, target)
                }
            }
        }
        match &content {
            Ok(()) => println!("content     intact (every chunk matches the root); signers not checked: use `quilt bundle verify`"),
            Err(e) => println!("content     BROKEN: {e}"),
        }
    }
    match content {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(super::fail(file, &src, e)),
    }
}
