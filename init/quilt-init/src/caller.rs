//! Who is on the other end of a control socket: a host process by its
//! `SO_PEERCRED` uid, or a container by the socket PID 1 made for it, with
//! what its bundle's tokens let it ask for ([`Spawner`]), and where a run
//! a container asked for goes ([`Parent`]).
//!
//! Plain data, apart from both its users: the control socket stores a
//! caller per client (and reports a container's run id when its socket
//! closes), the API decides from it (`api::authorize`), and runs and the
//! supervisor make a [`Spawner`] when they start a container that holds
//! tokens. Identity is which socket a request came in on, never anything
//! the caller says.

/// Who is on the other end of a client socket.
#[derive(Debug)]
pub enum Caller {
    /// A host process, by `SO_PEERCRED` uid.
    Host { uid: u32 },
    /// A container, by the socket PID 1 gave it.
    Container(Box<Spawner>),
    /// A plain service, by the socket its boot config's `control` grant
    /// made for it (`/run/quilt/control.d/<name>.sock`).
    Service(Box<Granted>),
}

/// What a service's boot config lets it ask over its own socket.
#[derive(Debug, Clone)]
pub struct Granted {
    /// The service.
    pub name: String,
    /// Its verbs, and no others.
    pub verbs: heapless::Vec<quilt_config::Verb, { quilt_config::MAX_VERBS }>,
}

impl Caller {
    /// Whether it may use the control socket at all: root and containers
    /// (which only get a socket of their own when their tokens grant
    /// one). The socket asks before decoding, so a refused caller's bytes
    /// are never parsed; `api::authorize` asks again for every request.
    pub fn admitted(&self) -> bool {
        match self {
            Caller::Host { uid } => *uid == 0,
            Caller::Container(_) | Caller::Service(_) => true,
        }
    }
}

/// What a container may ask for, fixed when PID 1 made its socket.
#[derive(Debug, Clone)]
pub struct Spawner {
    /// Its run id.
    pub run: u64,
    /// Its bundle.
    pub bundle: String,
    /// What its tokens let it ask for.
    pub grant: crate::grants::ControlGrant,
    /// Its cgroup (children go under `<cgroup>/kids`).
    pub cgroup: String,
    /// How deep it is in a spawn tree (a top-level run is 0).
    pub depth: u8,
}

/// Where a run's container goes when a container asked for it.
#[derive(Debug, Clone)]
pub struct Parent {
    /// The asking container's run id.
    pub run: u64,
    /// Its cgroup.
    pub cgroup: String,
    /// Its depth.
    pub depth: u8,
    /// Its bundle's tokens: the child's must be among them.
    pub tokens: Vec<String>,
}
