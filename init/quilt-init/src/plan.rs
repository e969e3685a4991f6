//! How a bundle becomes a container: its signed tokens read into grants,
//! its manifest's limits merged with the boot config's, and the
//! `quilt_container::Plan` it runs from, for a service, a run or a child
//! alike ([`Role`] says which), or the reason it is refused.

use crate::bundles::Tools;
use crate::bus::Bus;
use crate::grants::control_grant;
use crate::pods::PodRole;
use crate::refusal::PlanRefusal;

/// Where every container's new root is mounted (in its own namespace).
pub const STAGING: &str = "/run/quilt/root";
/// Where a container's writable-overlay tmpfs is mounted (in its own
/// namespace; the host directory stays empty).
pub const SCRATCH: &str = "/run/quilt/scratch";
/// The uid/gid a tool runs as inside its own user namespace.
const INSIDE_ID: u32 = 1000;
/// /tmp of a tool when its manifest sets no memory limit.
const DEFAULT_TMP: u64 = 64 << 20;

/// A prepared container and the `net:` destinations it is allowed.
pub struct ContainerPlan {
    /// What the container is.
    pub plan: quilt_container::Plan,
    /// Where PID 1 relays its TCP connections to (empty: loopback only).
    pub net: Vec<std::net::SocketAddrV4>,
}

impl std::ops::Deref for ContainerPlan {
    type Target = quilt_container::Plan;
    fn deref(&self) -> &quilt_container::Plan {
        &self.plan
    }
}

/// Who a container is for: all that differs between a supervised
/// service, a run and a child container.
pub struct Role<'a> {
    /// Its hostname (and, for a service, the name refusals give).
    pub name: &'a str,
    /// Arguments after the bundle's entry.
    pub args: Vec<&'a str>,
    /// Environment after quilt's own.
    pub env: Vec<&'a str>,
    /// Host uid and gid the boot config names for a service, if any.
    pub ids: Option<(u32, u32)>,
    /// Whose ids it gets otherwise (crate::ids).
    pub who: crate::ids::Who,
}

impl<'a> Role<'a> {
    /// Service `svc`, number `index` of the boot config, in pod `pod`.
    pub fn service(svc: &'a quilt_config::Service, index: usize, pod: Option<usize>) -> Self {
        Role {
            name: &svc.name,
            args: svc.exec.iter().map(|a| a.as_str()).collect(),
            env: svc.env.iter().map(|e| e.as_str()).collect(),
            ids: (svc.uid != 0).then_some((svc.uid, if svc.gid == 0 { svc.uid } else { svc.gid })),
            who: crate::ids::Who::Service { index, pod },
        }
    }

    /// A run (or a child) in run-table slot `slot`, named `hostname`.
    pub fn run(hostname: &'a str, slot: usize) -> Self {
        Role {
            name: hostname,
            args: Vec::new(),
            env: Vec::new(),
            ids: None,
            who: crate::ids::Who::Run { slot },
        }
    }
}

/// Prepare the container of `bundle` for `role`, or say why it cannot run.
pub(crate) fn container_plan(
    role: &Role<'_>,
    bundle: &str,
    tools: Option<&Tools>,
    bus: &Bus,
    pod: Option<&PodRole>,
    net_allow: &[quilt_config::NetAllow],
) -> Result<ContainerPlan, PlanRefusal> {
    let tools = tools.ok_or(PlanRefusal::NoTrustStore)?;
    let tool = tools.get(bundle).ok_or_else(|| PlanRefusal::NotInstalled {
        bundle: bundle.to_owned(),
    })?;
    let h = &tool.header;
    if h.runtime != "bun" {
        return Err(PlanRefusal::Runtime {
            bundle: bundle.to_owned(),
            runtime: h.runtime.to_string(),
        });
    }
    let entry = format!("/app/{}", h.entry.trim_start_matches('/'));
    let mut argv: Vec<&str> = vec!["/bin/bun", "run", "--no-install", &entry];
    argv.extend(role.args.iter().copied());
    let (bus_env, bus_fds) =
        bus.env(&crate::bus::wants(&h.tokens))
            .map_err(|why| PlanRefusal::Bus {
                bundle: bundle.to_owned(),
                why,
            })?;
    // Containers of a bundle with spawn, llm: or exec: tokens get their
    // control socket next.
    let control_env = control_grant(&h.tokens).map(|_| format!("QUILT_CONTROL_FD={}", 3 + bus_fds));
    let mut env: Vec<&str> = vec!["PATH=/bin", "HOME=/tmp", "TMPDIR=/tmp", "NO_COLOR=1"];
    env.extend(bus_env.as_deref());
    env.extend(control_env.as_deref());
    env.extend(role.env.iter().copied());
    let binds = [quilt_container::Bind {
        src: &tool.tree,
        dst: "/app",
        writable: false,
    }];
    let grants = Grants::of(bundle, h, &tool.tree)?;
    let net = crate::net::targets(net_allow, bundle, &h.tokens)?;
    if !net.is_empty() && grants.userns {
        return Err(PlanRefusal::NetWithUserns {
            bundle: bundle.to_owned(),
        });
    }
    // Pod members share one network: a relay made for one member's
    // `net:` token is reachable by all, so every member must hold it.
    if let Some(p) = pod {
        for t in h.tokens.iter().filter(|t| t.starts_with("net:")) {
            let lacking = p.peers.iter().find(|peer| {
                !peer
                    .as_deref()
                    .and_then(|b| tools.get(b))
                    .is_some_and(|pt| pt.header.tokens.contains(t))
            });
            if let Some(peer) = lacking {
                return Err(PlanRefusal::PodMemberLacksNet {
                    bundle: bundle.to_owned(),
                    token: t.clone(),
                    peer: peer.as_deref().map(str::to_owned),
                });
            }
        }
    }
    if pod.is_some() && grants.userns {
        return Err(PlanRefusal::PodUserns {
            bundle: bundle.to_owned(),
        });
    }
    let mut volumes = Vec::new();
    for (vol, writable) in &grants.fs {
        match pod.and_then(|p| p.volumes.iter().find(|(v, _)| v == vol)) {
            Some((name, dir)) => volumes.push(quilt_container::Volume {
                src: dir,
                name,
                writable: *writable,
            }),
            None => {
                return Err(PlanRefusal::NoVolume {
                    bundle: bundle.to_owned(),
                    vol: vol.clone(),
                    service: role.name.to_string(),
                })
            }
        }
    }
    let overlays: Vec<quilt_container::Overlay<'_>> = grants
        .writable
        .iter()
        .map(|(lower, dst)| quilt_container::Overlay { lower, dst })
        .collect();
    // Its own ids (crate::ids); a uid the boot config names is the
    // operator's choice. With a user namespace, 1000 inside.
    let (uid, gid, userns) = match (role.ids, crate::ids::of(role.who, grants.userns)) {
        (Some((uid, gid)), _) => (uid, gid, None),
        (None, quilt_container::Identity::Ids { uid, gid }) => (uid, gid, None),
        (None, quilt_container::Identity::Mapped(map)) => (INSIDE_ID, INSIDE_ID, Some(map)),
    };
    let tmp_bytes = match h.limits.memory_mib {
        0 => DEFAULT_TMP,
        m => (u64::from(m) << 20) / 4,
    };
    let spec = quilt_container::Spec {
        hostname: role.name,
        layer: &tools.runtime,
        binds: &binds,
        tmp_bytes,
        argv: &argv,
        env: &env,
        cwd: "/app",
        uid,
        gid,
        new_net: true,
        nofile: match h.limits.open_files {
            0 => 1024,
            n => u64::from(n),
        },
        staging: std::path::Path::new(STAGING),
        userns,
        caps: grants.caps,
        overlays: &overlays,
        scratch: std::path::Path::new(SCRATCH),
        volumes: &volumes,
    };
    let plan = quilt_container::Plan::new(&spec).map_err(PlanRefusal::Container)?;
    Ok(ContainerPlan { plan, net })
}

/// What a bundle's signed tokens grant its containers.
struct Grants {
    userns: bool,
    caps: u64,
    /// (volume, writable) per `fs:` token.
    fs: Vec<(String, bool)>,
    /// (host lower dir, container path) per `write:<dir>`.
    writable: Vec<(std::path::PathBuf, String)>,
}

impl Grants {
    /// Every token must be one this firmware knows: a tool is never run
    /// with other powers than it was signed for.
    fn of(
        bundle: &str,
        h: &quilt_bundle::Header,
        tree: &std::path::Path,
    ) -> Result<Grants, PlanRefusal> {
        use quilt_bundle::tokens::Token;
        let mut g = Grants {
            userns: false,
            caps: 0,
            fs: Vec::new(),
            writable: Vec::new(),
        };
        for t in &h.tokens {
            match Token::parse(t) {
                Ok(Token::UserNs) => g.userns = true,
                Ok(Token::Cap(_, nr)) => g.caps |= 1u64 << nr,
                // Handed out per container by crate::bus and crate::runs.
                Ok(Token::Fs(vol, writable)) => g.fs.push((vol.to_owned(), writable)),
                Ok(
                    Token::Bus(..)
                    | Token::Spawn(_)
                    | Token::Counted(_)
                    | Token::Exec(_)
                    | Token::Net(_),
                ) => {}
                Ok(Token::Write(dir)) => {
                    let lower = tree.join(dir);
                    if !lower.is_dir() {
                        return Err(PlanRefusal::NotADirectory {
                            bundle: bundle.to_owned(),
                            dir: dir.to_owned(),
                        });
                    }
                    g.writable.push((lower, format!("/app/{dir}")));
                }
                Err(why) => {
                    return Err(PlanRefusal::BadToken {
                        bundle: bundle.to_owned(),
                        why,
                    })
                }
            }
        }
        Ok(g)
    }
}

/// The config's limits (`configured`: a service's; none for a run),
/// filled in from `bundle`'s manifest where the config leaves them open.
pub(crate) fn merged_limits(
    configured: &quilt_config::Limits,
    bundle: Option<&str>,
    tools: Option<&Tools>,
) -> quilt_config::Limits {
    let mut l = configured.clone();
    let Some(h) = bundle.and_then(|b| tools?.get(b)).map(|t| &t.header) else {
        return l;
    };
    if l.memory_max.is_none() && h.limits.memory_mib > 0 {
        l.memory_max = Some(u64::from(h.limits.memory_mib) << 20);
    }
    if l.pids_max.is_none() && h.limits.tasks > 0 {
        l.pids_max = Some(h.limits.tasks);
    }
    if l.cpu_quota_us.is_none() && h.limits.cpu_percent > 0 {
        l.cpu_quota_us = Some(u32::from(h.limits.cpu_percent) * 1000);
        l.cpu_period_us = Some(100_000);
    }
    if l.io_bps.is_none() && h.limits.io_mib_s > 0 {
        l.io_bps = Some(u64::from(h.limits.io_mib_s) << 20);
    }
    if l.io_iops.is_none() && h.limits.io_iops > 0 {
        l.io_iops = Some(h.limits.io_iops);
    }
    l
}

#[cfg(test)]
mod tests {
    use super::{Grants, PlanRefusal};

    fn header(tokens: &[&str]) -> quilt_bundle::Header {
        quilt_bundle::Header {
            format: 1,
            name: "t".into(),
            version: 1,
            root: quilt_bundle::hash::Hash([0; 32]),
            manifest_len: 1,
            chunk_count: 0,
            content_len: 0,
            files: 0,
            total_size: 0,
            arch: vec![],
            boards: vec![],
            entry: "main.ts".into(),
            runtime: "bun".into(),
            limits: quilt_bundle::header::Limits::default(),
            tokens: tokens.iter().map(|t| (*t).to_string()).collect(),
            not_before: None,
            expires: None,
        }
    }

    #[test]
    fn tokens_become_grants_and_unknown_ones_refuse_the_bundle() {
        let tree = std::env::temp_dir().join(format!("quilt-grants-{}", std::process::id()));
        std::fs::create_dir_all(tree.join("data")).unwrap();
        let g = Grants::of(
            "t",
            &header(&["userns", "cap:net_bind_service", "cap:kill", "write:data"]),
            &tree,
        )
        .unwrap();
        assert!(g.userns);
        assert_eq!(g.caps, (1 << 10) | (1 << 5));
        assert_eq!(
            g.writable,
            vec![(tree.join("data"), "/app/data".to_string())]
        );
        let none = Grants::of("t", &header(&[]), &tree).unwrap();
        assert!(!none.userns && none.caps == 0 && none.writable.is_empty());
        let e = Grants::of("t", &header(&["cap:sys_admin"]), &tree)
            .err()
            .unwrap();
        assert!(
            matches!(&e, PlanRefusal::BadToken {
                bundle,
                why: quilt_bundle::Error::BadToken { token, .. },
            } if bundle == "t" && token == "cap:sys_admin"),
            "{e}"
        );
        let e = Grants::of("t", &header(&["write:missing"]), &tree)
            .err()
            .unwrap();
        assert_eq!(
            e,
            PlanRefusal::NotADirectory {
                bundle: "t".into(),
                dir: "missing".into()
            }
        );
        std::fs::remove_dir_all(&tree).unwrap();
    }
}
