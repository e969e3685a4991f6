//! Image assembly helpers (initramfs cpio, kernel module closure).
