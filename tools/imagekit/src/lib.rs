//! Image assembly helpers for the host: an initramfs (newc cpio) writer, a
//! kernel-module closure resolver, and flashable GPT disk images laid out
//! from a board's genimage config (`disk`, `genimage`).
//!
//! Used by the QEMU system tests and, later, by the board image tooling. It
//! fetches nothing: callers hand it a kernel's module tree and host files.
//! Output is deterministic (fixed mtimes, inode numbers assigned in path
//! order, root-owned) so the same inputs give byte-identical images.

mod disk;
pub mod genimage;
mod initramfs;
mod modules;
mod overlay;
mod runtime;
pub mod verity;

pub use disk::{derived_guid, ext4, squashfs, Disk, DiskError, DiskReport, FatImage, IMAGE_TIME};
pub use genimage::{Filesystem, Layout, LayoutError, Partition};
pub use initramfs::{ImageError, Initramfs};
pub use modules::{Compression, Module, ModuleClosure, ModuleError, ModuleTree};
pub use overlay::{add_busybox, add_tree, is_static_elf, OverlayError};
pub use runtime::tool_sdk_files;
pub use runtime::{
    BunLayer, ElfDeps, ElfError, LayerFile, LayerReport, LibClosure, Library, RuntimeError,
    BUN_LAYER_PREFIX, LAYER_MOUNT_POINTS,
};
