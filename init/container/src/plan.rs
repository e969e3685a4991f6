//! Turning a container description into everything the child needs,
//! prepared before the clone: C strings, pointer arrays, mount operations,
//! the seccomp program.

use crate::seccomp;
use std::ffi::CString;
use std::path::Path;

/// A host path bound into the container.
#[derive(Debug, Clone, Copy)]
pub struct Bind<'a> {
    /// Host path.
    pub src: &'a Path,
    /// Absolute path inside the container; must exist in the layer.
    pub dst: &'a str,
    /// Read-write instead of read-only.
    pub writable: bool,
}

/// A writable overlay over a read-only directory inside the container;
/// writes land in a tmpfs private to the container.
#[derive(Debug, Clone, Copy)]
pub struct Overlay<'a> {
    /// Host directory that is the read-only lower layer.
    pub lower: &'a Path,
    /// Absolute path inside the container where the merged tree appears.
    pub dst: &'a str,
}

/// A host directory shared by a pod's members, at `/run/volumes/<name>`.
#[derive(Debug, Clone, Copy)]
pub struct Volume<'a> {
    /// Host directory.
    pub src: &'a Path,
    /// Name under `/run/volumes`.
    pub name: &'a str,
    /// Writable (`fs:<name>:rw`) or read-only.
    pub writable: bool,
}

/// A user namespace: ids `0..count` inside are host ids `host..host+count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    /// First host uid and gid of the range.
    pub host: u32,
    /// How many ids are mapped.
    pub count: u32,
}

/// Who a container is on the host: see [`Plan::set_identity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// Runs as these host ids (no user namespace).
    Ids { uid: u32, gid: u32 },
    /// Its user namespace maps this host range.
    Mapped(IdMap),
}

/// What a container is.
#[derive(Debug, Clone, Copy)]
pub struct Spec<'a> {
    /// Hostname inside (UTS namespace).
    pub hostname: &'a str,
    /// The runtime layer, bound read-only as `/`. It must hold the mount
    /// points `tmp`, `dev`, `proc` and every bind's `dst`.
    pub layer: &'a Path,
    /// Extra binds (the bundle at `/app`, volumes).
    pub binds: &'a [Bind<'a>],
    /// Size cap of the `/tmp` tmpfs in bytes.
    pub tmp_bytes: u64,
    /// argv; `argv[0]` is a path inside the container.
    pub argv: &'a [&'a str],
    /// `KEY=value` environment.
    pub env: &'a [&'a str],
    /// Working directory inside.
    pub cwd: &'a str,
    /// Credentials inside; root (0) is refused.
    pub uid: u32,
    /// Group id inside.
    pub gid: u32,
    /// A network namespace of its own (loopback only).
    pub new_net: bool,
    /// `RLIMIT_NOFILE`.
    pub nofile: u64,
    /// An empty host directory used as the mount point of the new root
    /// (one is enough for every container: mounts are per namespace).
    pub staging: &'a Path,
    /// Run in a user namespace of its own with this id map (`None`: no
    /// user namespace, the tool's uid is a host uid).
    pub userns: Option<IdMap>,
    /// Capabilities (bit = number) the tool keeps; 0 for none.
    pub caps: u64,
    /// Writable overlays (the `write:<dir>` tokens).
    pub overlays: &'a [Overlay<'a>],
    /// An empty host directory where the overlays' scratch tmpfs is
    /// mounted (in the container's namespace only). Size: `tmp_bytes`.
    pub scratch: &'a Path,
    /// Pod volumes.
    pub volumes: &'a [Volume<'a>],
}

/// Why a spec cannot become a plan.
#[derive(Debug, PartialEq, Eq)]
pub enum PlanError {
    /// A string holds a NUL byte.
    Nul(&'static str),
    /// A container path is not absolute or climbs with `..`.
    BadPath(String),
    /// uid 0 inside would keep root's powers over files.
    Root,
    /// No argv.
    EmptyArgv,
    /// The seccomp program could not be built.
    Seccomp(String),
    /// Host ids for a plan with a user namespace, or a map for one without.
    IdentityKind,
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::Nul(what) => write!(f, "{what} contains a NUL byte"),
            PlanError::BadPath(p) => {
                write!(f, "container path {p:?} must be absolute and free of `..`")
            }
            PlanError::Root => write!(f, "containers never run as uid/gid 0"),
            PlanError::EmptyArgv => write!(f, "empty argv"),
            PlanError::IdentityKind => write!(
                f,
                "a container with a user namespace takes a host range, one without takes host ids"
            ),
            PlanError::Seccomp(e) => write!(f, "building the seccomp filter: {e}"),
        }
    }
}

impl std::error::Error for PlanError {}

/// One filesystem step in the child, on host paths under `staging`.
#[derive(Debug)]
pub(crate) enum Op {
    Mount {
        src: Option<CString>,
        dst: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    Mknod {
        path: CString,
        mode: libc::mode_t,
        dev: libc::dev_t,
    },
    Mkdir {
        path: CString,
        mode: libc::mode_t,
    },
    Symlink {
        target: CString,
        path: CString,
    },
    /// An empty regular file (a mount point for a bound device node).
    Touch {
        path: CString,
    },
    Chown {
        path: CString,
        uid: u32,
        gid: u32,
    },
    /// Hide a kernel interface, if this kernel has it: a directory gets an
    /// empty read-only tmpfs over it, anything else `empty` (a root-owned
    /// empty regular file) bound over it read-only, so it reads empty and
    /// a write is refused (EACCES/EROFS) rather than swallowed as
    /// /dev/null would.
    Mask {
        path: CString,
        empty: CString,
    },
    /// Make a kernel interface read-only, if this kernel has it: bound
    /// over itself, then remounted read-only.
    ReadOnly {
        path: CString,
    },
}

/// What runc and crun hide from a container by default (their
/// `maskedPaths`), and the SysRq trigger (issue 14): kernel memory, keys,
/// timers, the scheduler's and hardware internals.
pub(crate) const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/sysrq-trigger",
];

/// What runc and crun leave readable but not writable (`readonlyPaths`).
pub(crate) const READ_ONLY: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"];

/// Everything prepared; the child reads it and allocates nothing.
pub struct Plan {
    pub(crate) ops: Vec<Op>,
    pub(crate) staging: CString,
    pub(crate) hostname: CString,
    pub(crate) cwd: CString,
    _argv: Vec<CString>,
    pub(crate) argv_ptrs: Vec<*const libc::c_char>,
    _env: Vec<CString>,
    pub(crate) env_ptrs: Vec<*const libc::c_char>,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) new_net: bool,
    pub(crate) nofile: u64,
    pub(crate) userns: Option<IdMap>,
    pub(crate) caps: u64,
    /// Seccomp filters, installed in this order.
    pub(crate) bpf: Vec<seccompiler::BpfProgram>,
    descriptions: Vec<String>,
}

fn cstr(s: &str, what: &'static str) -> Result<CString, PlanError> {
    CString::new(s).map_err(|_| PlanError::Nul(what))
}

fn host(p: &Path, what: &'static str) -> Result<CString, PlanError> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).map_err(|_| PlanError::Nul(what))
}

fn inside(staging: &Path, p: &str) -> Result<CString, PlanError> {
    if !p.starts_with('/') || p.split('/').any(|c| c == "..") {
        return Err(PlanError::BadPath(p.to_owned()));
    }
    host(&staging.join(p.trim_start_matches('/')), "path")
}

/// Bind `src` at `dst` (`extra` flags, e.g. `MS_REC`), then remount it
/// read-only, or nosuid/nodev only when `writable`: a bind's flags can
/// only be set by a remount. `names` = (what the bind step says, what the
/// remount step says).
fn bind_ops(
    src: CString,
    dst: CString,
    extra: libc::c_ulong,
    writable: bool,
    names: (&str, &str),
) -> [(Op, String); 2] {
    let ro = if writable { 0 } else { libc::MS_RDONLY };
    [
        (
            Op::Mount {
                src: Some(src),
                dst: dst.clone(),
                fstype: None,
                flags: libc::MS_BIND | extra,
                data: None,
            },
            format!("bind {}", names.0),
        ),
        (
            Op::Mount {
                src: None,
                dst,
                fstype: None,
                flags: libc::MS_REMOUNT | libc::MS_BIND | ro | NOSUID | NODEV,
                data: None,
            },
            format!(
                "remount {} {}",
                names.1,
                if writable { "nosuid" } else { "read-only" }
            ),
        ),
    ]
}

const NOSUID: libc::c_ulong = libc::MS_NOSUID;
/// `CAP_NET_RAW` (linux/capability.h; not in the libc crate).
const CAP_NET_RAW: u64 = 13;
const NODEV: libc::c_ulong = libc::MS_NODEV;
const NOEXEC: libc::c_ulong = libc::MS_NOEXEC;

impl Plan {
    /// Prepare a spec. Fails on anything the child could only fail on later.
    pub fn new(spec: &Spec<'_>) -> Result<Plan, PlanError> {
        if spec.uid == 0 || spec.gid == 0 {
            return Err(PlanError::Root);
        }
        if spec.argv.is_empty() {
            return Err(PlanError::EmptyArgv);
        }
        let st = spec.staging;
        let mut ops = Vec::new();
        let mut descriptions = Vec::new();
        let mut push = |op: Op, what: String| {
            ops.push(op);
            descriptions.push(what);
        };
        push(
            Op::Mount {
                src: None,
                dst: cstr("/", "root")?,
                fstype: None,
                flags: libc::MS_REC | libc::MS_PRIVATE,
                data: None,
            },
            "make / private".into(),
        );
        push(
            Op::Mount {
                src: Some(host(spec.layer, "layer")?),
                dst: host(st, "staging")?,
                fstype: None,
                flags: libc::MS_BIND | libc::MS_REC,
                data: None,
            },
            format!("bind runtime layer {}", spec.layer.display()),
        );
        for b in spec.binds {
            let [bind, remount] = bind_ops(
                host(b.src, "bind source")?,
                inside(st, b.dst)?,
                libc::MS_REC,
                b.writable,
                (&format!("{} at {}", b.src.display(), b.dst), b.dst),
            );
            push(bind.0, bind.1);
            push(remount.0, remount.1);
        }
        if !spec.overlays.is_empty() {
            let scratch = host(spec.scratch, "scratch")?;
            push(
                Op::Mount {
                    src: Some(cstr("tmpfs", "scratch")?),
                    dst: scratch,
                    fstype: Some(cstr("tmpfs", "scratch")?),
                    flags: NOSUID | NODEV,
                    data: Some(cstr(
                        &format!("size={},mode=700", spec.tmp_bytes.max(4096)),
                        "scratch",
                    )?),
                },
                "tmpfs for writable overlays".into(),
            );
        }
        for (i, o) in spec.overlays.iter().enumerate() {
            let upper = spec.scratch.join(format!("u{i}"));
            let work = spec.scratch.join(format!("w{i}"));
            for d in [&upper, &work] {
                push(
                    Op::Mkdir {
                        path: host(d, "scratch")?,
                        mode: 0o755,
                    },
                    format!("mkdir {}", d.display()),
                );
            }
            // The upper directory is the overlay's root inode: owning it
            // is what lets the tool create and replace files there.
            push(
                Op::Chown {
                    path: host(&upper, "scratch")?,
                    uid: spec.uid,
                    gid: spec.gid,
                },
                format!("chown {}", upper.display()),
            );
            let lower = o.lower.display().to_string();
            if [&lower, &upper.display().to_string()]
                .iter()
                .any(|p| p.contains([',', ':', '\\']))
            {
                return Err(PlanError::BadPath(lower));
            }
            push(
                Op::Mount {
                    src: Some(cstr("overlay", "overlay")?),
                    dst: inside(st, o.dst)?,
                    fstype: Some(cstr("overlay", "overlay")?),
                    flags: NOSUID | NODEV,
                    data: Some(cstr(
                        &format!(
                            "lowerdir={lower},upperdir={},workdir={}",
                            upper.display(),
                            work.display()
                        ),
                        "overlay",
                    )?),
                },
                format!("writable overlay at {}", o.dst),
            );
        }
        if !spec.volumes.is_empty() {
            push(
                Op::Mount {
                    src: Some(cstr("tmpfs", "run")?),
                    dst: inside(st, "/run")?,
                    fstype: Some(cstr("tmpfs", "run")?),
                    flags: NOSUID | NODEV | NOEXEC,
                    data: Some(cstr("size=64k,mode=755", "run")?),
                },
                "tmpfs at /run".into(),
            );
            push(
                Op::Mkdir {
                    path: inside(st, "/run/volumes")?,
                    mode: 0o755,
                },
                "mkdir /run/volumes".into(),
            );
        }
        for v in spec.volumes {
            if v.name.is_empty() || v.name.contains('/') || v.name == ".." || v.name == "." {
                return Err(PlanError::BadPath(v.name.to_owned()));
            }
            let dst = inside(st, &format!("/run/volumes/{}", v.name))?;
            push(
                Op::Mkdir {
                    path: dst.clone(),
                    mode: 0o755,
                },
                format!("mkdir /run/volumes/{}", v.name),
            );
            let name = format!("volume {}", v.name);
            let [bind, remount] =
                bind_ops(host(v.src, "volume")?, dst, 0, v.writable, (&name, &name));
            push(bind.0, bind.1);
            push(remount.0, remount.1);
        }
        push(
            Op::Mount {
                src: Some(cstr("tmpfs", "tmp")?),
                dst: inside(st, "/tmp")?,
                fstype: Some(cstr("tmpfs", "tmp")?),
                flags: NOSUID | NODEV,
                data: Some(cstr(
                    &format!("size={},mode=1777", spec.tmp_bytes.max(4096)),
                    "tmp",
                )?),
            },
            "tmpfs at /tmp".into(),
        );
        push(
            Op::Mount {
                src: Some(cstr("tmpfs", "dev")?),
                dst: inside(st, "/dev")?,
                fstype: Some(cstr("tmpfs", "dev")?),
                flags: NOSUID | NOEXEC,
                data: Some(cstr("size=64k,mode=755", "dev")?),
            },
            "tmpfs at /dev".into(),
        );
        for (name, major, minor) in [
            ("null", 1, 3),
            ("zero", 1, 5),
            ("full", 1, 7),
            ("random", 1, 8),
            ("urandom", 1, 9),
            ("tty", 5, 0),
        ] {
            let path = inside(st, &format!("/dev/{name}"))?;
            if spec.userns.is_some() {
                // A user namespace may not mknod: bind the host's node
                // over an empty file instead (what rootless runc does).
                push(
                    Op::Touch { path: path.clone() },
                    format!("create /dev/{name}"),
                );
                push(
                    Op::Mount {
                        src: Some(cstr(&format!("/dev/{name}"), "dev")?),
                        dst: path,
                        fstype: None,
                        flags: libc::MS_BIND,
                        data: None,
                    },
                    format!("bind host /dev/{name}"),
                );
            } else {
                push(
                    Op::Mknod {
                        path,
                        mode: libc::S_IFCHR | 0o666,
                        dev: libc::makedev(major, minor),
                    },
                    format!("mknod /dev/{name}"),
                );
            }
        }
        for d in ["/dev/pts", "/dev/shm"] {
            push(
                Op::Mkdir {
                    path: inside(st, d)?,
                    mode: 0o755,
                },
                format!("mkdir {d}"),
            );
        }
        push(
            Op::Mount {
                src: Some(cstr("devpts", "pts")?),
                dst: inside(st, "/dev/pts")?,
                fstype: Some(cstr("devpts", "pts")?),
                flags: NOSUID | NOEXEC,
                data: Some(cstr("newinstance,ptmxmode=0666,mode=0620", "pts")?),
            },
            "devpts at /dev/pts".into(),
        );
        for (target, link) in [
            ("pts/ptmx", "/dev/ptmx"),
            ("/proc/self/fd", "/dev/fd"),
            ("/proc/self/fd/0", "/dev/stdin"),
            ("/proc/self/fd/1", "/dev/stdout"),
            ("/proc/self/fd/2", "/dev/stderr"),
        ] {
            push(
                Op::Symlink {
                    target: cstr(target, "link")?,
                    path: inside(st, link)?,
                },
                format!("symlink {link}"),
            );
        }
        push(
            Op::Mount {
                src: Some(cstr("proc", "proc")?),
                dst: inside(st, "/proc")?,
                fstype: Some(cstr("proc", "proc")?),
                flags: NOSUID | NODEV | NOEXEC,
                data: None,
            },
            "proc at /proc".into(),
        );
        // The masks' source: one empty root-owned file on a tiny tmpfs at
        // /sys, which the /sys view below then covers, so the tool never
        // sees it under any name but the masked ones.
        push(
            Op::Mount {
                src: Some(cstr("masks", "masks")?),
                dst: inside(st, "/sys")?,
                fstype: Some(cstr("tmpfs", "tmpfs")?),
                flags: NOSUID | NODEV | NOEXEC,
                data: Some(cstr("size=4k,mode=0755", "tmpfs")?),
            },
            "tmpfs for the masks' empty file".into(),
        );
        let empty = inside(st, "/sys/empty")?;
        push(
            Op::Touch {
                path: empty.clone(),
            },
            "create the masks' empty file".into(),
        );
        for p in MASKED {
            push(
                Op::Mask {
                    path: inside(st, p)?,
                    empty: empty.clone(),
                },
                format!("mask {p}"),
            );
        }
        for p in READ_ONLY {
            push(
                Op::ReadOnly {
                    path: inside(st, p)?,
                },
                format!("{p} read-only"),
            );
        }
        // A read-only view of its own cgroup (the container's cgroup
        // namespace makes that the mount's root), so a runtime can read its
        // memory and CPU limits; nothing else of /sys.
        push(
            Op::Mount {
                src: Some(cstr("sys", "sys")?),
                dst: inside(st, "/sys")?,
                fstype: Some(cstr("tmpfs", "tmpfs")?),
                flags: NOSUID | NODEV | NOEXEC,
                data: Some(cstr("size=16k,mode=0755", "tmpfs")?),
            },
            "tmpfs at /sys".into(),
        );
        for d in ["/sys/fs", "/sys/fs/cgroup"] {
            push(
                Op::Mkdir {
                    path: inside(st, d)?,
                    mode: 0o755,
                },
                format!("mkdir {d}"),
            );
        }
        push(
            Op::Mount {
                src: Some(cstr("cgroup2", "cgroup2")?),
                dst: inside(st, "/sys/fs/cgroup")?,
                fstype: Some(cstr("cgroup2", "cgroup2")?),
                flags: libc::MS_RDONLY | NOSUID | NODEV | NOEXEC,
                data: None,
            },
            "its cgroup read-only at /sys/fs/cgroup".into(),
        );
        push(
            Op::Mount {
                src: None,
                dst: inside(st, "/sys")?,
                fstype: None,
                flags: libc::MS_REMOUNT | libc::MS_RDONLY | NOSUID | NODEV | NOEXEC,
                data: None,
            },
            "remount /sys read-only".into(),
        );
        // Last: the root itself read-only (its submounts keep their own flags).
        push(
            Op::Mount {
                src: None,
                dst: host(st, "staging")?,
                fstype: None,
                flags: libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | NOSUID | NODEV,
                data: None,
            },
            "remount / read-only".into(),
        );
        let argv: Vec<CString> = spec
            .argv
            .iter()
            .map(|a| cstr(a, "argv"))
            .collect::<Result<_, _>>()?;
        let env: Vec<CString> = spec
            .env
            .iter()
            .map(|e| cstr(e, "env"))
            .collect::<Result<_, _>>()?;
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(core::ptr::null());
        let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
        env_ptrs.push(core::ptr::null());
        // CAP_NET_RAW is only worth its token if raw sockets get past seccomp.
        let raw_sockets = spec.caps & (1 << CAP_NET_RAW) != 0;
        let bpf = seccomp::filters(raw_sockets).map_err(|e| PlanError::Seccomp(e.to_string()))?;
        if !spec.cwd.starts_with('/') {
            return Err(PlanError::BadPath(spec.cwd.to_owned()));
        }
        Ok(Plan {
            ops,
            staging: host(st, "staging")?,
            hostname: cstr(spec.hostname, "hostname")?,
            cwd: cstr(spec.cwd, "cwd")?,
            _argv: argv,
            argv_ptrs,
            _env: env,
            env_ptrs,
            uid: spec.uid,
            gid: spec.gid,
            new_net: spec.new_net,
            nofile: spec.nofile,
            userns: spec.userns,
            caps: spec.caps,
            bpf,
            descriptions,
        })
    }

    /// Give the container another identity than its spec named, so one
    /// plan can serve many containers, each with ids of its own: for a plan
    /// without a user namespace the host uid and gid it runs as
    /// ([`Identity::Ids`]; the overlay's upper root follows), for one with
    /// a user namespace the host range that namespace maps
    /// ([`Identity::Mapped`]; its ids inside stay as planned). Refused
    /// like a spec with root ids, or a kind that does not fit the plan.
    pub fn set_identity(&mut self, id: Identity) -> Result<(), PlanError> {
        match (self.userns, id) {
            (Some(_), Identity::Mapped(m)) if m.host != 0 && m.count > 0 => {
                self.userns = Some(m);
            }
            (None, Identity::Ids { uid, gid }) if uid != 0 && gid != 0 => {
                let old = (self.uid, self.gid);
                for op in &mut self.ops {
                    if let Op::Chown {
                        uid: op_uid,
                        gid: op_gid,
                        ..
                    } = op
                    {
                        if (*op_uid, *op_gid) == old {
                            (*op_uid, *op_gid) = (uid, gid);
                        }
                    }
                }
                self.uid = uid;
                self.gid = gid;
            }
            (Some(_), Identity::Mapped(_)) | (None, Identity::Ids { .. }) => {
                return Err(PlanError::Root)
            }
            _ => return Err(PlanError::IdentityKind),
        }
        Ok(())
    }

    /// The ids it runs as (inside its user namespace, if it has one) and
    /// that namespace's map.
    pub fn identity(&self) -> (u32, u32, Option<IdMap>) {
        (self.uid, self.gid, self.userns)
    }

    /// Human description of setup step `i` (for failure reports).
    pub fn describe(&self, i: usize) -> &str {
        self.descriptions.get(i).map_or("setup", String::as_str)
    }

    /// Which filesystem step a failure report names, or "" for the
    /// stages that are one step.
    pub fn step(&self, stage: crate::Stage) -> &str {
        match stage {
            crate::Stage::Mount(k) => self.describe(usize::from(k)),
            _ => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(binds: &'a [Bind<'a>]) -> Spec<'a> {
        Spec {
            hostname: "t",
            layer: Path::new("/layer"),
            binds,
            tmp_bytes: 1 << 20,
            argv: &["/bin/bun", "/app/index.ts"],
            env: &["PATH=/bin"],
            cwd: "/app",
            uid: 1000,
            gid: 1000,
            new_net: true,
            nofile: 1024,
            staging: Path::new("/run/quilt/root"),
            userns: None,
            caps: 0,
            overlays: &[],
            scratch: Path::new("/run/quilt/scratch"),
            volumes: &[],
        }
    }

    #[test]
    fn plans_binds_under_the_staging_root() {
        let binds = [Bind {
            src: Path::new("/run/quilt/bundles/hello"),
            dst: "/app",
            writable: false,
        }];
        let p = Plan::new(&spec(&binds)).unwrap();
        assert!(p
            .descriptions
            .iter()
            .any(|d| d == "bind /run/quilt/bundles/hello at /app"));
        assert!(p.ops.iter().any(
            |o| matches!(o, Op::Mount { dst, .. } if dst.as_bytes() == b"/run/quilt/root/app")
        ));
        assert_eq!(
            p.descriptions.last().map(String::as_str),
            Some("remount / read-only")
        );
        assert_eq!(p.argv_ptrs.len(), 3);
    }

    #[test]
    fn one_plan_takes_each_containers_own_identity() {
        let overlays = [Overlay {
            lower: Path::new("/run/quilt/bundles/t/data"),
            dst: "/app/data",
        }];
        let mut s = spec(&[]);
        s.overlays = &overlays;
        let mut p = Plan::new(&s).unwrap();
        p.set_identity(Identity::Ids {
            uid: 200_007,
            gid: 200_007,
        })
        .unwrap();
        assert_eq!(p.identity(), (200_007, 200_007, None));
        // The overlay's upper root belongs to the new owner.
        assert!(p.ops.iter().any(|o| matches!(
            o,
            Op::Chown {
                uid: 200_007,
                gid: 200_007,
                ..
            }
        )));
        assert!(!p
            .ops
            .iter()
            .any(|o| matches!(o, Op::Chown { uid: 1000, .. })));
        assert_eq!(
            p.set_identity(Identity::Ids { uid: 0, gid: 5 }),
            Err(PlanError::Root)
        );
        let map = IdMap {
            host: 1_065_536,
            count: 65_536,
        };
        assert_eq!(
            p.set_identity(Identity::Mapped(map)),
            Err(PlanError::IdentityKind)
        );
        s.userns = Some(IdMap {
            host: 100_000,
            count: 65_536,
        });
        let mut p = Plan::new(&s).unwrap();
        p.set_identity(Identity::Mapped(map)).unwrap();
        // Inside, it is still the planned 1000.
        assert_eq!(p.identity(), (1000, 1000, Some(map)));
    }

    #[test]
    fn masks_and_a_read_only_cgroup_view() {
        let p = Plan::new(&spec(&[])).unwrap();
        let d = &p.descriptions;
        for want in [
            "mask /proc/kcore",
            "/proc/sys read-only",
            "tmpfs at /sys",
            "its cgroup read-only at /sys/fs/cgroup",
            "remount /sys read-only",
        ] {
            assert!(d.iter().any(|x| x == want), "{want} missing from {d:?}");
        }
        assert!(
            p.ops
                .iter()
                .any(|o| matches!(o, Op::Mount { dst, flags, .. }
            if dst.as_bytes() == b"/run/quilt/root/sys/fs/cgroup" && flags & libc::MS_RDONLY != 0))
        );
    }

    #[test]
    fn refuses_root_escapes_and_nul() {
        let bad = [Bind {
            src: Path::new("/x"),
            dst: "/app/../../etc",
            writable: false,
        }];
        assert!(matches!(Plan::new(&spec(&bad)), Err(PlanError::BadPath(_))));
        let rel = [Bind {
            src: Path::new("/x"),
            dst: "app",
            writable: false,
        }];
        assert!(matches!(Plan::new(&spec(&rel)), Err(PlanError::BadPath(_))));
        let mut s = spec(&[]);
        s.uid = 0;
        assert_eq!(Plan::new(&s).err(), Some(PlanError::Root));
        let mut s = spec(&[]);
        s.argv = &["/bin/\0x"];
        assert_eq!(Plan::new(&s).err(), Some(PlanError::Nul("argv")));
    }
}
