//! Filling an image from the host: a directory tree (the `rootfs/` overlay)
//! and a static busybox with its applet links.

use crate::initramfs::{ImageError, Initramfs};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why host content could not go into the image.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// Walking the host tree failed.
    #[error("reading {}", path.display())]
    Walk {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A name that is not UTF-8 cannot be a guest path here.
    #[error("{} has a name that is not UTF-8", path.display())]
    NotUtf8 { path: PathBuf },
    /// The guest has no libc: a dynamically linked binary cannot run there.
    #[error("{} is dynamically linked; the image has no libc (install busybox-static)", path.display())]
    Dynamic { path: PathBuf },
    /// `busybox --list` failed.
    #[error("running {} --list: {detail}", path.display())]
    Applets { path: PathBuf, detail: String },
    /// Adding an entry failed.
    #[error(transparent)]
    Image(#[from] ImageError),
}

/// Copy `host_dir` into the image under `/`, keeping permission bits and
/// symlinks; files are streamed when the archive is written. Returns the
/// number of entries added.
pub fn add_tree(image: &mut Initramfs, host_dir: &Path) -> Result<usize, OverlayError> {
    let mut count = 0;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = host_dir.join(&rel);
        let walk = |source| OverlayError::Walk {
            path: dir.clone(),
            source,
        };
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(walk)?
            .collect::<Result<_, _>>()
            .map_err(walk)?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let rel_child = rel.join(e.file_name());
            let host = host_dir.join(&rel_child);
            let guest = rel_child
                .to_str()
                .ok_or_else(|| OverlayError::NotUtf8 { path: host.clone() })?
                .to_owned();
            let meta = std::fs::symlink_metadata(&host).map_err(|source| OverlayError::Walk {
                path: host.clone(),
                source,
            })?;
            let mode = meta.permissions().mode();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&host).map_err(|source| OverlayError::Walk {
                    path: host.clone(),
                    source,
                })?;
                let target = target
                    .to_str()
                    .ok_or_else(|| OverlayError::NotUtf8 { path: host.clone() })?;
                image.symlink(&guest, target)?;
            } else if meta.is_dir() {
                image.dir_mode(&guest, mode)?;
                stack.push(rel_child);
            } else if meta.is_file() {
                image.file(&guest, host, mode)?;
            }
            count += 1;
        }
    }
    Ok(count)
}

/// Put a static busybox at `/bin/busybox` with a `/bin/<applet>` link for
/// each applet it lists. Returns the number of applets. A busybox of
/// another architecture cannot be asked for `--list`: an `applets` file
/// next to it (`qemu/fetch-busybox.sh aarch64` writes one) is read instead.
pub fn add_busybox(image: &mut Initramfs, host_busybox: &Path) -> Result<usize, OverlayError> {
    if !is_static_elf(host_busybox) {
        return Err(OverlayError::Dynamic {
            path: host_busybox.to_owned(),
        });
    }
    let list_file = host_busybox.with_file_name("applets");
    let list = if list_file.is_file() {
        std::fs::read_to_string(&list_file).map_err(|e| OverlayError::Applets {
            path: list_file.clone(),
            detail: e.to_string(),
        })?
    } else {
        let out = Command::new(host_busybox)
            .arg("--list")
            .output()
            .map_err(|e| OverlayError::Applets {
                path: host_busybox.to_owned(),
                detail: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(OverlayError::Applets {
                path: host_busybox.to_owned(),
                detail: format!("exited with {}", out.status),
            });
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    image.file("/bin/busybox", host_busybox, 0o755)?;
    let mut n = 0;
    for applet in list.lines().map(str::trim) {
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        image.symlink(&format!("/bin/{applet}"), "busybox")?;
        n += 1;
    }
    Ok(n)
}

/// Whether `path` is a 64-bit little-endian ELF with no `PT_INTERP`, i.e.
/// runs without a dynamic loader.
pub fn is_static_elf(path: &Path) -> bool {
    const PT_INTERP: u32 = 3;
    let Ok(data) = std::fs::read(path) else {
        return false;
    };
    let at = |o: usize, n: usize| data.get(o..o + n);
    let u16_at = |o| {
        at(o, 2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_le_bytes)
    };
    let u32_at = |o| {
        at(o, 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let u64_at = |o| {
        at(o, 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if data.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..usize::from(phnum))
        .all(|i| u32_at(phoff + i * usize::from(phentsize)).is_some_and(|t| t != PT_INTERP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_static_from_dynamic_elf() {
        // The test binary is dynamically linked (default gnu target).
        let me = std::env::current_exe().unwrap();
        assert!(!is_static_elf(&me));
        if Path::new("/bin/busybox").exists() && is_static_elf(Path::new("/bin/busybox")) {
            let mut img = Initramfs::new();
            assert!(add_busybox(&mut img, Path::new("/bin/busybox")).unwrap() > 50);
            assert!(img.contains("/bin/sh"));
        }
        assert!(!is_static_elf(Path::new("/nonexistent")));
        let mut img = Initramfs::new();
        assert!(matches!(
            add_busybox(&mut img, &me),
            Err(OverlayError::Dynamic { .. })
        ));
    }

    #[test]
    fn tree_keeps_modes_links_and_nesting() {
        let dir = std::env::temp_dir().join(format!("imagekit-tree-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc/quilt")).unwrap();
        std::fs::write(dir.join("etc/quilt/boot.toml"), "x").unwrap();
        std::fs::write(dir.join("run.sh"), "#!/bin/sh").unwrap();
        std::fs::set_permissions(dir.join("run.sh"), std::fs::Permissions::from_mode(0o750))
            .unwrap();
        std::os::unix::fs::symlink("etc/quilt", dir.join("q")).unwrap();
        let mut img = Initramfs::new();
        assert_eq!(add_tree(&mut img, &dir).unwrap(), 5);
        let mut out = Vec::new();
        img.write_to(&mut out).unwrap();
        let names: Vec<String> = img.paths().collect();
        for p in [
            "/etc",
            "/etc/quilt",
            "/etc/quilt/boot.toml",
            "/run.sh",
            "/q",
        ] {
            assert!(names.contains(&p.to_owned()), "{p} missing from {names:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
