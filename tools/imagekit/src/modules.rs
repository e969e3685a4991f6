//! Kernel-module closure: which `.ko` files an image needs so that PID 1 can
//! load the requested modules with `finit_module`, in an order that satisfies
//! every dependency.
//!
//! Input is a kernel's `lib/modules/<version>` tree with the `modules.dep`
//! that `depmod` wrote. Output is the closure in load order and an image
//! layout: each module at `/lib/modules/<version>/<same relative path>.ko`
//! (decompressed if the tree ships `.ko.xz`/`.ko.zst`/`.ko.gz`) and a trimmed
//! `modules.dep` listing only those modules, one line each, **in load order**
//! and in depmod's syntax, so the guest can either load lines top to bottom or
//! resolve one module's line the way modprobe does (dependencies right to
//! left).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{ImageError, Initramfs};

/// Why a module closure could not be computed or copied.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// `modules.dep` is missing or unreadable.
    #[error("reading {}; run depmod on the tree (qemu/fetch-kernel.sh does)", path.display())]
    ReadDep {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A `modules.dep` line is not `path: dep dep ...`.
    #[error("{}:{line}: malformed modules.dep line", path.display())]
    Malformed { path: PathBuf, line: usize },
    /// No module of that name, built in or loadable.
    #[error("no kernel module named {name:?} in {}", root.display())]
    Unknown { name: String, root: PathBuf },
    /// `modules.dep` names a dependency it has no line for.
    #[error("module {module} depends on {dep}, which modules.dep does not list")]
    MissingDep { module: String, dep: String },
    /// A dependency cycle (depmod refuses these; a hand-edited tree may not).
    #[error("dependency cycle through {0}")]
    Cycle(String),
    /// A compressed module could not be decompressed.
    #[error("decompressing {} with {tool}", path.display())]
    Decompress {
        path: PathBuf,
        tool: &'static str,
        #[source]
        source: io::Error,
    },
    /// Adding a module to the image failed.
    #[error(transparent)]
    Image(#[from] ImageError),
}

/// How a module file in the tree is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Xz,
    Zstd,
    Gzip,
}

impl Compression {
    const SUFFIXES: [(&'static str, Compression); 4] = [
        (".ko", Compression::None),
        (".ko.xz", Compression::Xz),
        (".ko.zst", Compression::Zstd),
        (".ko.gz", Compression::Gzip),
    ];

    fn of(path: &str) -> Option<(Compression, &str)> {
        Self::SUFFIXES
            .iter()
            .find_map(|(suf, c)| path.strip_suffix(suf).map(|stem| (*c, stem)))
    }

    fn tool(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Xz => Some("xz"),
            Compression::Zstd => Some("zstd"),
            Compression::Gzip => Some("gzip"),
        }
    }
}

/// One module of a closure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Canonical module name (`-` folded to `_`), e.g. `virtio_mmio`.
    pub name: String,
    /// The file in the host tree.
    pub source: PathBuf,
    /// Path relative to `lib/modules/<version>`, always ending in `.ko`.
    pub rel_path: String,
    /// Compression of `source`; the image always gets a plain `.ko`.
    pub compression: Compression,
    /// Direct and indirect dependencies, as `rel_path`s, in depmod's order.
    pub deps: Vec<String>,
}

/// The modules to put in an image, dependencies first.
#[derive(Debug, Clone)]
pub struct ModuleClosure {
    /// Kernel release, e.g. `6.1.0-56-amd64`.
    pub version: String,
    /// Load order: every module comes after all of its dependencies.
    pub modules: Vec<Module>,
    /// Requested names that are built into this kernel (nothing to load).
    pub builtin: Vec<String>,
}

/// A parsed `lib/modules/<version>` tree.
#[derive(Debug, Clone)]
pub struct ModuleTree {
    root: PathBuf,
    version: String,
    // rel path (as in modules.dep, maybe compressed) -> deps (same form)
    deps: BTreeMap<String, Vec<String>>,
    // canonical name -> rel path
    by_name: HashMap<String, String>,
    builtin: BTreeSet<String>,
}

fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

/// Module name of a `modules.dep`/`modules.builtin` path.
fn name_of(rel: &str) -> Option<String> {
    let base = rel.rsplit('/').next().unwrap_or(rel);
    Compression::of(base).map(|(_, stem)| canonical(stem))
}

impl ModuleTree {
    /// Parse `root/modules.dep` (and `modules.builtin` if present). `version`
    /// is the kernel release the tree belongs to: it names the directory in
    /// the image.
    pub fn open(root: &Path, version: &str) -> Result<Self, ModuleError> {
        let dep_path = root.join("modules.dep");
        let text = std::fs::read_to_string(&dep_path).map_err(|source| ModuleError::ReadDep {
            path: dep_path.clone(),
            source,
        })?;
        let builtin_text =
            std::fs::read_to_string(root.join("modules.builtin")).unwrap_or_default();
        Self::parse(root, version, &text, &builtin_text).map_err(|line| ModuleError::Malformed {
            path: dep_path,
            line,
        })
    }

    /// Parse from text; `Err(line)` names the first malformed line (1-based).
    fn parse(root: &Path, version: &str, dep: &str, builtin: &str) -> Result<Self, usize> {
        let mut deps = BTreeMap::new();
        let mut by_name = HashMap::new();
        for (i, line) in dep.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (module, rest) = line.split_once(':').ok_or(i + 1)?;
            let module = module.trim();
            let name = name_of(module).ok_or(i + 1)?;
            let list: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
            if list.iter().any(|d| name_of(d).is_none()) {
                return Err(i + 1);
            }
            by_name.insert(name, module.to_owned());
            deps.insert(module.to_owned(), list);
        }
        let builtin = builtin.lines().filter_map(|l| name_of(l.trim())).collect();
        Ok(Self {
            root: root.to_owned(),
            version: version.to_owned(),
            deps,
            by_name,
            builtin,
        })
    }

    /// Kernel release of this tree.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The requested modules and everything they depend on, in load order.
    /// Names may use `-` or `_`. Built-in names are reported, not an error.
    pub fn closure(&self, names: &[&str]) -> Result<ModuleClosure, ModuleError> {
        let mut order: Vec<String> = Vec::new();
        let mut done = BTreeSet::new();
        let mut builtin = Vec::new();
        for name in names {
            let name = canonical(name);
            match self.by_name.get(&name) {
                Some(rel) => self.visit(rel, &mut done, &mut BTreeSet::new(), &mut order)?,
                None if self.builtin.contains(&name) => builtin.push(name),
                None => {
                    return Err(ModuleError::Unknown {
                        name,
                        root: self.root.clone(),
                    })
                }
            }
        }
        let modules = order
            .into_iter()
            .map(|rel| self.module(&rel))
            .collect::<Result<_, _>>()?;
        Ok(ModuleClosure {
            version: self.version.clone(),
            modules,
            builtin,
        })
    }

    /// Depth-first, dependencies before the module. depmod lists a module's
    /// dependencies so that modprobe loads them last to first; we visit them
    /// in that order too, so the result matches modprobe's order.
    fn visit(
        &self,
        rel: &str,
        done: &mut BTreeSet<String>,
        active: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) -> Result<(), ModuleError> {
        if done.contains(rel) {
            return Ok(());
        }
        if !active.insert(rel.to_owned()) {
            return Err(ModuleError::Cycle(rel.to_owned()));
        }
        let deps = self.deps.get(rel).ok_or_else(|| ModuleError::MissingDep {
            module: rel.to_owned(),
            dep: rel.to_owned(),
        })?;
        for dep in deps.iter().rev() {
            if !self.deps.contains_key(dep) {
                return Err(ModuleError::MissingDep {
                    module: rel.to_owned(),
                    dep: dep.clone(),
                });
            }
            self.visit(dep, done, active, order)?;
        }
        active.remove(rel);
        done.insert(rel.to_owned());
        order.push(rel.to_owned());
        Ok(())
    }

    fn module(&self, rel: &str) -> Result<Module, ModuleError> {
        let base = rel.rsplit('/').next().unwrap_or(rel);
        let (compression, _) = Compression::of(base).unwrap_or((Compression::None, base));
        let plain = |p: &str| match Compression::of(p) {
            Some((_, stem)) => format!("{stem}.ko"),
            None => p.to_owned(),
        };
        Ok(Module {
            name: name_of(rel).unwrap_or_else(|| rel.to_owned()),
            source: self.root.join(rel),
            rel_path: plain(rel),
            compression,
            deps: self
                .deps
                .get(rel)
                .map(|d| d.iter().map(|p| plain(p)).collect())
                .unwrap_or_default(),
        })
    }
}

impl ModuleClosure {
    /// Directory of the modules inside the image: `/lib/modules/<version>`.
    pub fn image_dir(&self) -> String {
        format!("/lib/modules/{}", self.version)
    }

    /// The trimmed `modules.dep`: one line per module of the closure, in load
    /// order, depmod syntax, plain `.ko` paths.
    pub fn modules_dep(&self) -> String {
        let mut out = String::new();
        for m in &self.modules {
            out.push_str(&m.rel_path);
            out.push(':');
            for d in &m.deps {
                out.push(' ');
                out.push_str(d);
            }
            out.push('\n');
        }
        out
    }

    /// Copy the modules (decompressed) and the trimmed `modules.dep` into an
    /// image under [`Self::image_dir`].
    pub fn add_to(&self, image: &mut Initramfs) -> Result<(), ModuleError> {
        let dir = self.image_dir();
        for m in &self.modules {
            let dst = format!("{dir}/{}", m.rel_path);
            match m.compression.tool() {
                None => {
                    image.file(&dst, &m.source, 0o644)?;
                }
                Some(tool) => {
                    image.bytes(&dst, decompress(tool, &m.source)?, 0o644)?;
                }
            }
        }
        image.bytes(&format!("{dir}/modules.dep"), self.modules_dep(), 0o644)?;
        Ok(())
    }
}

/// Decompress with the system tool (xz, zstd, gzip: tools/setup.sh installs
/// them) rather than pulling three codecs into the build.
fn decompress(tool: &'static str, path: &Path) -> Result<Vec<u8>, ModuleError> {
    let err = |source| ModuleError::Decompress {
        path: path.to_owned(),
        tool,
        source,
    };
    let out = Command::new(tool)
        .args(["-d", "-c"])
        .arg(path)
        .output()
        .map_err(err)?;
    if !out.status.success() {
        return Err(err(io::Error::other(format!(
            "{tool} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const DEP: &str = "\
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/watchdog/watchdog.ko:
kernel/drivers/watchdog/i6300esb.ko.xz: kernel/drivers/watchdog/watchdog.ko
";

    fn tree() -> ModuleTree {
        ModuleTree::parse(
            Path::new("/m"),
            "6.1.0-test",
            DEP,
            "kernel/fs/ext4/ext4.ko\n",
        )
        .unwrap()
    }

    fn names(c: &ModuleClosure) -> Vec<&str> {
        c.modules.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn closure_is_in_modprobe_load_order() {
        let c = tree().closure(&["virtio_net"]).unwrap();
        assert_eq!(
            names(&c),
            [
                "virtio_ring",
                "virtio",
                "failover",
                "net_failover",
                "virtio_net"
            ]
        );
    }

    #[test]
    fn shared_dependencies_appear_once() {
        let c = tree().closure(&["virtio-mmio", "virtio_net"]).unwrap();
        assert_eq!(
            names(&c),
            [
                "virtio_ring",
                "virtio",
                "virtio_mmio",
                "failover",
                "net_failover",
                "virtio_net"
            ]
        );
    }

    #[test]
    fn builtin_and_unknown_names() {
        let c = tree().closure(&["ext4"]).unwrap();
        assert!(c.modules.is_empty());
        assert_eq!(c.builtin, ["ext4"]);
        assert!(matches!(
            tree().closure(&["nope"]),
            Err(ModuleError::Unknown { .. })
        ));
    }

    #[test]
    fn compressed_modules_become_plain_ko_in_the_image() {
        let c = tree().closure(&["i6300esb"]).unwrap();
        let esb = c.modules.last().unwrap();
        assert_eq!(esb.compression, Compression::Xz);
        assert_eq!(esb.rel_path, "kernel/drivers/watchdog/i6300esb.ko");
        assert_eq!(
            esb.source,
            Path::new("/m/kernel/drivers/watchdog/i6300esb.ko.xz")
        );
        assert_eq!(
            c.modules_dep(),
            "kernel/drivers/watchdog/watchdog.ko:\n\
             kernel/drivers/watchdog/i6300esb.ko: kernel/drivers/watchdog/watchdog.ko\n"
        );
    }

    #[test]
    fn malformed_and_dangling_dep_files_are_refused() {
        assert_eq!(
            ModuleTree::parse(Path::new("/m"), "v", "a.ko\n", "").unwrap_err(),
            1
        );
        let t = ModuleTree::parse(Path::new("/m"), "v", "a.ko: b.ko\n", "").unwrap();
        assert!(matches!(
            t.closure(&["a"]),
            Err(ModuleError::MissingDep { .. })
        ));
        let t = ModuleTree::parse(Path::new("/m"), "v", "a.ko: b.ko\nb.ko: a.ko\n", "").unwrap();
        assert!(matches!(t.closure(&["a"]), Err(ModuleError::Cycle(_))));
    }

    #[test]
    fn add_to_lays_out_modules_and_dep_file() {
        let dir = std::env::temp_dir().join(format!("quilt-imagekit-mod-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("kernel/w")).unwrap();
        std::fs::write(dir.join("kernel/w/a.ko"), b"A").unwrap();
        std::fs::write(dir.join("modules.dep"), "kernel/w/a.ko:\n").unwrap();
        let c = ModuleTree::open(&dir, "9.9")
            .unwrap()
            .closure(&["a"])
            .unwrap();
        let mut img = Initramfs::new();
        c.add_to(&mut img).unwrap();
        assert!(img.contains("/lib/modules/9.9/kernel/w/a.ko"));
        assert!(img.contains("/lib/modules/9.9/modules.dep"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
