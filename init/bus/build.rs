//! Declares `cfg(loom)` so the model-checked build does not warn.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom)");
}
