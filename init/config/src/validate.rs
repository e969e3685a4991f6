//! Semantic checks shared by the compiler and by init, and the start order.

use crate::model::{BootConfig, Name, Ready, Service, MAX_SERVICES};
use core::fmt;
use heapless::Vec;

/// Service indices in an order where every service comes after its `after`s.
pub type StartOrder = Vec<u8, MAX_SERVICES>;

/// A config that decodes but cannot be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// Empty, or characters outside `[a-z0-9_-]`.
    BadName(Name),
    /// Two services share a name.
    DuplicateName(Name),
    /// `exec` is empty.
    EmptyExec(Name),
    /// `exec[0]` or `cwd` is not an absolute path.
    RelativePath(Name),
    /// An `env` entry has no `=`.
    BadEnv(Name),
    /// `after` names a service that does not exist.
    UnknownDependency { service: Name, dependency: Name },
    /// `after` forms a cycle through this service.
    Cycle(Name),
    /// `backoff_ms` is 0 or above `backoff_max_ms`.
    BadBackoff(Name),
    /// `ready = { fd = N }` outside 3..=9.
    BadReadyFd(Name),
    /// A limit of zero would stop the service from ever running.
    ZeroLimit(Name),
    /// A module name with characters outside `[A-Za-z0-9_-]`.
    BadModule(Name),
    /// A warm pool of 0 or more than 4 containers.
    BadWarmCount,
    /// A bus topic outside `[a-z0-9._-]{1,48}`, or declared twice.
    BadTopic(heapless::String<48>),
    /// A bus channel whose size is out of bounds.
    BadChannelSize(heapless::String<48>),
    /// A resource whose name is not `llm:<name>`, declared twice, or with
    /// a capacity outside 1..=1024.
    BadResource(heapless::String<64>),
    /// `[slots]` with a relative path, the same partition for A and B, 0
    /// tries or deadline, or a health service that is not defined.
    BadSlots,
    /// A `[[net]]` destination that is not `a.b.c.d:port`, or repeated.
    BadNet(heapless::String<24>),
    /// A pod with a bad name, no members, a member that is not a bundle
    /// service, or a service in two pods.
    BadPod(Name),
    /// `[usb]` with no filesystem type, a type that is not a type name or
    /// listed twice, or a mountpoint that is not a plain absolute path.
    BadUsb,
    /// `[containers]` with a 0, or a default above its ceiling.
    BadContainers(&'static str),
    /// `control` on a bundle service, or a verb listed twice.
    BadControl(Name),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::BadName(n) => {
                write!(
                    f,
                    "service name {n:?} must be 1-32 characters of a-z, 0-9, _ or -"
                )
            }
            ConfigError::DuplicateName(n) => write!(f, "two services are named {n:?}"),
            ConfigError::EmptyExec(n) => {
                write!(f, "service {n:?} needs an exec or a bundle")
            }
            ConfigError::RelativePath(n) => {
                write!(
                    f,
                    "service {n:?}: exec[0], cwd and input must be absolute paths"
                )
            }
            ConfigError::BadEnv(n) => write!(f, "service {n:?}: env entries must be KEY=value"),
            ConfigError::UnknownDependency {
                service,
                dependency,
            } => write!(
                f,
                "service {service:?} is after {dependency:?}, which is not defined"
            ),
            ConfigError::Cycle(n) => write!(f, "services form an `after` cycle through {n:?}"),
            ConfigError::BadBackoff(n) => write!(
                f,
                "service {n:?}: backoff_ms must be at least 1 and at most backoff_max_ms"
            ),
            ConfigError::BadReadyFd(n) => {
                write!(f, "service {n:?}: ready fd must be between 3 and 9")
            }
            ConfigError::ZeroLimit(n) => {
                write!(f, "service {n:?}: a limit of 0 would never let it run")
            }
            ConfigError::BadModule(n) => write!(f, "module name {n:?} is not a module name"),
            ConfigError::BadWarmCount => write!(f, "a warm pool holds 1 to 4 containers"),
            ConfigError::BadTopic(t) => write!(
                f,
                "bus topic {t:?} must be 1-48 characters of a-z, 0-9, ., _ or - and declared once"
            ),
            ConfigError::BadPod(p) => write!(
                f,
                "pod {p:?} needs a name of a-z, 0-9, _ or - (not a service's), bundle services as members, each in one pod only, and volume names of a-z, 0-9, _ or -"
            ),
            ConfigError::BadNet(n) => write!(
                f,
                "net destination {n:?} must be written a.b.c.d:port (port 1-65535, no leading zeros), once"
            ),
            ConfigError::BadSlots => write!(
                f,
                "[slots] needs absolute paths (state, a, b, data, data_mount, init), different partitions for a and b, tries and health_deadline_s above 0, a health service that is defined, and firmware names that are bundle names (`firmware/board`)"
            ),
            ConfigError::BadContainers(what) => write!(
                f,
                "[containers] {what}: every value must be above 0 (unset never means unlimited) and each default_* at most its max_*"
            ),
            ConfigError::BadControl(n) => write!(
                f,
                "service {n:?}: `control` lists each verb once, and only plain services have one (a bundle's container gets its powers from its signed tokens)"
            ),
            ConfigError::BadUsb => write!(
                f,
                "[usb] needs 1-8 distinct fstypes of a-z and 0-9 (e.g. \"vfat\", \"ext4\") and a mountpoint that is an absolute path without . or .. parts"
            ),
            ConfigError::BadResource(r) => write!(
                f,
                "resource {r:?} must be named llm:<a-z0-9._-> once, with a capacity of 1 to 1024"
            ),
            ConfigError::BadChannelSize(t) => write!(
                f,
                "bus channel {t:?}: slots must be 1-65536, slot_size a multiple of 8 from 8 to 16 MiB, slots x slot_size at most 64 MiB, subscribers 1-16"
            ),
        }
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn check_service(s: &Service) -> Result<(), ConfigError> {
    let err = |f: fn(Name) -> ConfigError| Err(f(s.name.clone()));
    if !valid_name(&s.name) {
        return err(ConfigError::BadName);
    }
    match s.exec.first() {
        // A bundle service runs the bundle's entry; exec is optional extra args.
        _ if s.bundle.is_some() => {}
        None => return err(ConfigError::EmptyExec),
        Some(p) if !p.starts_with('/') => return err(ConfigError::RelativePath),
        Some(_) => {}
    }
    if s.input.as_ref().is_some_and(|c| !c.starts_with('/')) {
        return err(ConfigError::RelativePath);
    }
    if s.cwd.as_ref().is_some_and(|c| !c.starts_with('/')) {
        return err(ConfigError::RelativePath);
    }
    if s.env.iter().any(|e| !e.contains('=') || e.starts_with('=')) {
        return err(ConfigError::BadEnv);
    }
    if s.backoff_ms == 0 || s.backoff_ms > s.backoff_max_ms {
        return err(ConfigError::BadBackoff);
    }
    if let Ready::Fd(fd) = s.ready {
        if !(3..=9).contains(&fd) {
            return err(ConfigError::BadReadyFd);
        }
    }
    let l = &s.limits;
    if l.memory_max == Some(0)
        || l.pids_max == Some(0)
        || l.cpu_quota_us == Some(0)
        || l.cpu_period_us == Some(0)
        || l.io_bps == Some(0)
        || l.io_iops == Some(0)
    {
        return err(ConfigError::ZeroLimit);
    }
    Ok(())
}

impl BootConfig {
    /// Check everything init relies on; run by the compiler and by init.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for s in &self.services {
            let repeated = s
                .control
                .iter()
                .enumerate()
                .any(|(i, v)| s.control.iter().take(i).any(|w| w == v));
            if repeated || (s.bundle.is_some() && !s.control.is_empty()) {
                return Err(ConfigError::BadControl(s.name.clone()));
            }
        }
        for m in &self.modules {
            let ok = !m.is_empty()
                && m.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                return Err(ConfigError::BadModule(m.clone()));
            }
        }
        if self
            .bundles
            .warm
            .iter()
            .any(|w| !(1..=4).contains(&w.count))
        {
            return Err(ConfigError::BadWarmCount);
        }
        let c = &self.containers;
        for (what, default, max) in [
            ("memory", c.default_memory_mib, c.max_memory_mib),
            ("tasks", c.default_tasks, c.max_tasks),
            ("cpu_percent", c.default_cpu_percent, c.max_cpu_percent),
            ("open_files", c.default_open_files, c.max_open_files),
            ("runs", c.runs_tasks, u32::MAX),
            ("runs", c.runs_memory_mib.unwrap_or(1), u32::MAX),
            ("runs", c.runs_cpu_percent.unwrap_or(1), u32::MAX),
        ] {
            if default == 0 || default > max {
                return Err(ConfigError::BadContainers(what));
            }
        }
        for (i, c) in self.channels.iter().enumerate() {
            let t = &c.topic;
            let name_ok = !t.is_empty()
                && t.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                });
            if !name_ok || self.channels.iter().take(i).any(|o| o.topic == *t) {
                return Err(ConfigError::BadTopic(t.clone()));
            }
            let bytes = u64::from(c.slots) * u64::from(c.slot_size);
            if !(1..=65_536).contains(&c.slots)
                || !(8..=16 << 20).contains(&c.slot_size)
                || !c.slot_size.is_multiple_of(8)
                || bytes > crate::model::MAX_CHANNEL_BYTES
                || !(1..=16).contains(&c.subscribers)
            {
                return Err(ConfigError::BadChannelSize(t.clone()));
            }
        }
        for (i, n) in self.net.iter().enumerate() {
            let canonical = n.to.parse::<core::net::SocketAddrV4>().is_ok_and(|a| {
                let mut text = heapless::String::<24>::new();
                a.port() != 0
                    && fmt::Write::write_fmt(&mut text, format_args!("{a}")).is_ok()
                    && text == n.to
            });
            if !canonical || self.net.iter().take(i).any(|o| o.to == n.to) {
                return Err(ConfigError::BadNet(n.to.clone()));
            }
        }
        for (i, r) in self.resources.iter().enumerate() {
            let ok = r.name.strip_prefix("llm:").is_some_and(|n| {
                !n.is_empty()
                    && n.len() <= 48
                    && n.bytes().all(|b| {
                        b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || matches!(b, b'.' | b'_' | b'-')
                    })
            }) && (1..=1024).contains(&r.capacity)
                && !self.resources.iter().take(i).any(|o| o.name == r.name);
            if !ok {
                return Err(ConfigError::BadResource(r.name.clone()));
            }
        }
        for (i, p) in self.pods.iter().enumerate() {
            let members_ok = !p.services.is_empty()
                && p.services.iter().all(|m| {
                    self.services
                        .iter()
                        .any(|s| s.name == *m && s.bundle.is_some())
                        && self
                            .pods
                            .iter()
                            .map(|o| o.services.iter().filter(|x| *x == m).count())
                            .sum::<usize>()
                            == 1
                });
            let ok = valid_name(&p.name)
                && self.service_index(&p.name).is_none()
                && !self.pods.iter().take(i).any(|o| o.name == p.name)
                && members_ok
                && p.volumes.iter().all(|v| valid_name(v));
            if !ok {
                return Err(ConfigError::BadPod(p.name.clone()));
            }
        }
        if let Some(u) = &self.usb {
            let types_ok = !u.fstypes.is_empty()
                && u.fstypes.iter().enumerate().all(|(i, t)| {
                    !t.is_empty()
                        && t.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                        && !u.fstypes.iter().take(i).any(|o| o == t)
                });
            let m = u.mountpoint.as_str();
            let mount_ok = m.len() > 1
                && m.starts_with('/')
                && m.as_bytes()
                    .split(|&b| b == b'/')
                    .skip(1)
                    .all(|p| !p.is_empty() && p != b"." && p != b"..");
            if !types_ok || !mount_ok {
                return Err(ConfigError::BadUsb);
            }
        }
        if let Some(sl) = &self.slots {
            let abs = |p: &str| p.starts_with('/') && !p.split('/').any(|c| c == "..");
            let ok = [&sl.state, &sl.a, &sl.b, &sl.data_mount, &sl.init]
                .iter()
                .all(|p| abs(p))
                && sl.data.as_ref().is_none_or(|d| abs(d))
                && sl.a != sl.b
                && sl.firmware.iter().all(|n| bundle_name_like(n))
                && sl.tries > 0
                && sl.health_deadline_s > 0
                && sl
                    .health
                    .as_ref()
                    .is_none_or(|h| self.services.iter().any(|s| s.name == *h));
            if !ok {
                return Err(ConfigError::BadSlots);
            }
        }
        for (i, s) in self.services.iter().enumerate() {
            check_service(s)?;
            if self.services.iter().take(i).any(|o| o.name == s.name) {
                return Err(ConfigError::DuplicateName(s.name.clone()));
            }
        }
        start_order(self).map(|_| ())
    }

    /// Index of the service with this name.
    pub fn service_index(&self, name: &str) -> Option<usize> {
        self.services.iter().position(|s| s.name == name)
    }
}

/// Kahn's algorithm over fixed arrays: dependencies first, ties by
/// declaration order, so the order is stable and shutdown can reverse it.
pub fn start_order(cfg: &BootConfig) -> Result<StartOrder, ConfigError> {
    let n = cfg.services.len();
    let mut placed = [false; MAX_SERVICES];
    let mut order = StartOrder::new();
    for s in &cfg.services {
        for d in &s.after {
            if cfg.service_index(d).is_none() {
                return Err(ConfigError::UnknownDependency {
                    service: s.name.clone(),
                    dependency: d.clone(),
                });
            }
        }
    }
    while order.len() < n {
        let next = cfg.services.iter().enumerate().position(|(i, s)| {
            !placed.get(i).copied().unwrap_or(true)
                && s.after.iter().all(|d| {
                    cfg.service_index(d)
                        .and_then(|j| placed.get(j).copied())
                        .unwrap_or(false)
                })
        });
        match next {
            Some(i) => {
                if let Some(p) = placed.get_mut(i) {
                    *p = true;
                }
                // i < MAX_SERVICES, and order has room for MAX_SERVICES.
                let _ = order.push(i as u8);
            }
            None => {
                let stuck = cfg
                    .services
                    .iter()
                    .enumerate()
                    .find(|(i, _)| !placed.get(*i).copied().unwrap_or(true))
                    .map(|(_, s)| s.name.clone())
                    .unwrap_or_default();
                return Err(ConfigError::Cycle(stuck));
            }
        }
    }
    Ok(order)
}

#[cfg(feature = "std")]
impl std::error::Error for ConfigError {}

/// A bundle name as `quilt_bundle::header::check_name` takes it:
/// `[a-z0-9._-]` parts joined by `/`, none empty or starting with `.`.
fn bundle_name_like(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.'))
        })
}
