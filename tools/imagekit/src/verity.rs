//! dm-verity hash trees for root slot images, made offline.
//!
//! [`append_hash_tree`] pads an image (a squashfs) to whole 4 KiB blocks
//! and appends its SHA-256 hash tree in the kernel's format 1 with no
//! salt and no superblock: the layout `veritysetup format --no-superblock
//! --salt=- --hash-offset=<image size>` writes, and what the kernel's
//! `verity` target checks (Documentation/admin-guide/device-mapper/
//! verity.rst). The levels are stored top level first, each padded to
//! whole blocks; a block's hash is SHA-256 of its 4 KiB; the root hash is
//! the hash of the top level's one block. quilt-init gets the data block
//! count and the root hash from the boot state and builds the table from
//! them, so no superblock is needed (`quilt_slots::Verity`).

use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Data and hash block size (the page size the kernel checks in).
pub const BLOCK: u64 = 4096;
/// Hashes in one hash block.
const FANOUT: u64 = BLOCK / 32;

/// What [`append_hash_tree`] made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerityTree {
    /// 4 KiB blocks of data (the image, padded); the tree starts after.
    pub data_blocks: u64,
    /// The root hash.
    pub root: [u8; 32],
    /// Blocks of hash tree appended.
    pub hash_blocks: u64,
}

/// Why a hash tree could not be made.
#[derive(Debug, thiserror::Error)]
pub enum VerityError {
    /// Reading or writing the image failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The image.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An empty image has nothing to check.
    #[error("{}: an empty image has no hash tree", path.display())]
    Empty {
        /// The image.
        path: PathBuf,
    },
}

/// Blocks of each level, bottom (hashes of data blocks) first, as the
/// kernel counts them: levels are added until one block holds a level.
fn level_blocks(data_blocks: u64) -> Vec<u64> {
    let mut levels = Vec::new();
    let mut n = data_blocks;
    while n > 1 {
        n = n.div_ceil(FANOUT);
        levels.push(n);
    }
    levels
}

/// Pad `path` to whole blocks and append its hash tree; the tree's
/// geometry and root hash.
pub fn append_hash_tree(path: &Path) -> Result<VerityTree, VerityError> {
    let io = |what: &'static str| {
        let path = path.to_owned();
        move |source| VerityError::Io { what, path, source }
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io("opening"))?;
    let len = f.metadata().map_err(io("reading"))?.len();
    if len == 0 {
        return Err(VerityError::Empty {
            path: path.to_owned(),
        });
    }
    let data_blocks = len.div_ceil(BLOCK);
    f.set_len(data_blocks * BLOCK).map_err(io("padding"))?;
    // Bottom level: the hash of every data block.
    let mut level = Vec::with_capacity(usize::try_from(data_blocks * 32).unwrap_or(0));
    let mut block = vec![0u8; BLOCK as usize];
    f.seek(SeekFrom::Start(0)).map_err(io("reading"))?;
    let mut r = std::io::BufReader::with_capacity(1 << 20, &mut f);
    for _ in 0..data_blocks {
        r.read_exact(&mut block).map_err(io("reading"))?;
        level.extend_from_slice(&Sha256::digest(&block));
    }
    drop(r);
    if data_blocks == 1 {
        // No tree: the root is the one data block's hash.
        let root: [u8; 32] = level.as_slice().try_into().unwrap_or([0; 32]);
        return Ok(VerityTree {
            data_blocks,
            root,
            hash_blocks: 0,
        });
    }
    // Each level padded to whole blocks, and hashed into the next.
    let mut levels: Vec<Vec<u8>> = Vec::new();
    for blocks in level_blocks(data_blocks) {
        level.resize((blocks * BLOCK) as usize, 0);
        let next: Vec<u8> = level
            .chunks(BLOCK as usize)
            .flat_map(|b| Sha256::digest(b).to_vec())
            .collect();
        levels.push(core::mem::replace(&mut level, next));
    }
    // `level` is now the hash of the top level's one block: the root.
    let root: [u8; 32] = level.as_slice().try_into().unwrap_or([0; 32]);
    f.seek(SeekFrom::End(0)).map_err(io("writing"))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut f);
    let mut hash_blocks = 0;
    for l in levels.iter().rev() {
        w.write_all(l).map_err(io("writing"))?;
        hash_blocks += l.len() as u64 / BLOCK;
    }
    w.flush().map_err(io("writing"))?;
    drop(w);
    f.sync_all().map_err(io("syncing"))?;
    Ok(VerityTree {
        data_blocks,
        root,
        hash_blocks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("quilt-verity-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&d);
        d
    }

    #[test]
    fn levels_are_counted_as_the_kernel_counts_them() {
        assert_eq!(level_blocks(1), Vec::<u64>::new());
        assert_eq!(level_blocks(2), vec![1]);
        assert_eq!(level_blocks(128), vec![1]);
        assert_eq!(level_blocks(129), vec![2, 1]);
        assert_eq!(level_blocks(128 * 128 + 1), vec![129, 2, 1]);
    }

    /// The tree and root hash are what cryptsetup's own `veritysetup`
    /// accepts, for sizes with one, two and three levels (a partial last
    /// block included), and it refuses the image once a byte is flipped.
    #[test]
    fn veritysetup_verifies_the_tree_and_refuses_a_flipped_byte() {
        for (i, len) in [4096u64 * 3 + 100, 4096 * 129, 4096 * (128 * 128 + 2)]
            .into_iter()
            .enumerate()
        {
            let path = scratch(&format!("img{i}"));
            let data: Vec<u8> = (0..len).map(|k| ((k * 2654435761) >> 13) as u8).collect();
            std::fs::write(&path, &data).unwrap();
            let t = append_hash_tree(&path).unwrap();
            assert_eq!(t.data_blocks, len.div_ceil(BLOCK));
            let total = std::fs::metadata(&path).unwrap().len();
            assert_eq!(total, (t.data_blocks + t.hash_blocks) * BLOCK);
            let verify = |p: &Path| {
                Command::new("veritysetup")
                    .args(["verify", "--no-superblock", "--salt=-"])
                    .arg(format!("--data-blocks={}", t.data_blocks))
                    .arg(format!("--hash-offset={}", t.data_blocks * BLOCK))
                    .arg(p)
                    .arg(p)
                    .arg(hex(&t.root))
                    .output()
                    .expect("veritysetup (cryptsetup-bin; tools/setup.sh installs it)")
            };
            let ok = verify(&path);
            assert!(ok.status.success(), "len {len}: {ok:?}");
            let mut bad = std::fs::read(&path).unwrap();
            bad[(len / 2) as usize] ^= 1;
            std::fs::write(&path, &bad).unwrap();
            assert!(
                !verify(&path).status.success(),
                "len {len}: flipped byte accepted"
            );
            std::fs::remove_file(&path).unwrap();
        }
    }
}
