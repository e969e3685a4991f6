//! Counted resource tokens (`llm:<name>` and the like): a board declares
//! each resource with a capacity; a container whose bundle holds the token
//! acquires and releases units over its control socket. Waiters queue in
//! order; a wait-for graph refuses the request that would close a cycle
//! (A holds what B waits for while B holds what A would wait for), so
//! containers never deadlock on them. Pure bookkeeping: no I/O, bounded
//! tables.

use std::collections::VecDeque;

/// Most resources a board declares.
pub const MAX_RESOURCES: usize = 16;
/// Most waiters queued on one resource.
pub const MAX_WAITERS: usize = 32;

/// Who holds or waits: a run id.
pub type Holder = u64;

struct Resource {
    name: String,
    capacity: u32,
    held: Vec<(Holder, u32)>,
    /// (holder, units, client to answer) in arrival order.
    waiting: VecDeque<(Holder, u32, usize)>,
}

impl Resource {
    fn used(&self) -> u32 {
        self.held.iter().map(|(_, n)| n).sum()
    }
}

/// What became of an `acquire`.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Granted now.
    Granted,
    /// Queued; [`Ledger::release`] or [`Ledger::forget`] grants it later.
    Queued,
    /// Waiting would close a cycle through these holders.
    Deadlock(Vec<Holder>),
    /// Not possible at all.
    Refused(Refusal),
}

/// Why an `acquire` or `release` is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The boot config declares no such resource.
    NoResource { name: String },
    /// 0 units, or more than the resource has at all.
    OverCapacity {
        name: String,
        capacity: u32,
        asked: u32,
    },
    /// The holder already waits for it.
    AlreadyWaiting { name: String },
    /// Its queue is full.
    QueueFull { name: String },
    /// The holder holds none of it.
    HoldsNone { name: String },
    /// The holder holds fewer units than it gives back.
    HoldsFewer { name: String, have: u32, asked: u32 },
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Refusal::NoResource { name } => write!(f, "this board declares no resource {name:?}"),
            Refusal::OverCapacity {
                name,
                capacity,
                asked,
            } => write!(f, "{name} has capacity {capacity}; asked for {asked}"),
            Refusal::AlreadyWaiting { name } => write!(f, "already waiting for {name}"),
            Refusal::QueueFull { name } => write!(f, "{MAX_WAITERS} already wait for {name}"),
            Refusal::HoldsNone { name } => write!(f, "holds no {name}"),
            Refusal::HoldsFewer { name, have, asked } => {
                write!(f, "holds {have} of {name}, not {asked}")
            }
        }
    }
}

/// A grant made to a queued waiter: answer `client`.
#[derive(Debug, PartialEq, Eq)]
pub struct Grant {
    pub client: usize,
    pub holder: Holder,
    pub resource: String,
    pub units: u32,
}

/// Every counted resource of the board.
#[derive(Default)]
pub struct Ledger {
    res: Vec<Resource>,
}

impl Ledger {
    /// Resources from the boot config: (token name, capacity).
    pub fn new<'a>(decl: impl IntoIterator<Item = (&'a str, u32)>) -> Ledger {
        Ledger {
            res: decl
                .into_iter()
                .take(MAX_RESOURCES)
                .map(|(name, capacity)| Resource {
                    name: name.to_owned(),
                    capacity,
                    held: Vec::new(),
                    waiting: VecDeque::new(),
                })
                .collect(),
        }
    }

    /// `holder` asks for `units` of `name` on behalf of control client
    /// `client`.
    pub fn acquire(&mut self, holder: Holder, name: &str, units: u32, client: usize) -> Outcome {
        let name_ = || name.to_owned();
        let Some((r, res)) = self.res.iter().enumerate().find(|(_, r)| r.name == name) else {
            return Outcome::Refused(Refusal::NoResource { name: name_() });
        };
        if units == 0 || units > res.capacity {
            return Outcome::Refused(Refusal::OverCapacity {
                name: name_(),
                capacity: res.capacity,
                asked: units,
            });
        }
        if res.waiting.iter().any(|(h, _, _)| *h == holder) {
            return Outcome::Refused(Refusal::AlreadyWaiting { name: name_() });
        }
        if res.waiting.is_empty() && res.used() + units <= res.capacity {
            if let Some(res) = self.res.get_mut(r) {
                add(&mut res.held, holder, units);
            }
            return Outcome::Granted;
        }
        if res.waiting.len() >= MAX_WAITERS {
            return Outcome::Refused(Refusal::QueueFull { name: name_() });
        }
        // Waiting on `r` means waiting for its holders (and those queued
        // ahead). A path from any of them back to `holder` is a cycle.
        let blockers: Vec<Holder> = res
            .held
            .iter()
            .map(|(h, _)| *h)
            .chain(res.waiting.iter().map(|(h, _, _)| *h))
            .filter(|h| *h != holder)
            .collect();
        if let Some(cycle) = self.path_to(&blockers, holder) {
            return Outcome::Deadlock(cycle);
        }
        if let Some(res) = self.res.get_mut(r) {
            res.waiting.push_back((holder, units, client));
        }
        Outcome::Queued
    }

    /// Holders `from` lead, through what they wait for, to `target`:
    /// the path, if one exists.
    fn path_to(&self, from: &[Holder], target: Holder) -> Option<Vec<Holder>> {
        let mut stack: Vec<(Holder, Vec<Holder>)> = from.iter().map(|&h| (h, vec![h])).collect();
        let mut seen: Vec<Holder> = Vec::new();
        while let Some((h, path)) = stack.pop() {
            if h == target {
                return Some(path);
            }
            if seen.contains(&h) {
                continue;
            }
            seen.push(h);
            for res in &self.res {
                if res.waiting.iter().any(|(w, _, _)| *w == h) {
                    for next in res
                        .held
                        .iter()
                        .map(|(x, _)| *x)
                        .chain(res.waiting.iter().map(|(x, _, _)| *x))
                        .filter(|x| *x != h)
                    {
                        let mut p = path.clone();
                        p.push(next);
                        stack.push((next, p));
                    }
                }
            }
        }
        None
    }

    /// `holder` gives back `units` of `name`; waiters that now fit are
    /// granted in order.
    pub fn release(
        &mut self,
        holder: Holder,
        name: &str,
        units: u32,
    ) -> Result<Vec<Grant>, Refusal> {
        let name_ = || name.to_owned();
        let res = self
            .res
            .iter_mut()
            .find(|r| r.name == name)
            .ok_or_else(|| Refusal::NoResource { name: name_() })?;
        let Some(k) = res.held.iter().position(|(h, _)| *h == holder) else {
            return Err(Refusal::HoldsNone { name: name_() });
        };
        let have = res.held.get(k).map_or(0, |(_, n)| *n);
        if units > have {
            return Err(Refusal::HoldsFewer {
                name: name_(),
                have,
                asked: units,
            });
        }
        if units == have {
            res.held.remove(k);
        } else if let Some(e) = res.held.get_mut(k) {
            e.1 -= units;
        }
        Ok(self.grant_waiters())
    }

    /// A holder is gone: everything it held is released, its waits dropped.
    pub fn forget(&mut self, holder: Holder) -> Vec<Grant> {
        for r in &mut self.res {
            r.held.retain(|(h, _)| *h != holder);
            r.waiting.retain(|(h, _, _)| *h != holder);
        }
        self.grant_waiters()
    }

    fn grant_waiters(&mut self) -> Vec<Grant> {
        let mut out = Vec::new();
        for r in &mut self.res {
            while let Some(&(h, n, client)) = r.waiting.front() {
                if r.used() + n > r.capacity {
                    break;
                }
                r.waiting.pop_front();
                add(&mut r.held, h, n);
                out.push(Grant {
                    client,
                    holder: h,
                    resource: r.name.clone(),
                    units: n,
                });
            }
        }
        out
    }

    /// (name, capacity, units in use, waiters) per resource.
    pub fn status(&self) -> Vec<(String, u32, u32, usize)> {
        self.res
            .iter()
            .map(|r| (r.name.clone(), r.capacity, r.used(), r.waiting.len()))
            .collect()
    }
}

fn add(held: &mut Vec<(Holder, u32)>, holder: Holder, units: u32) {
    match held.iter_mut().find(|(h, _)| *h == holder) {
        Some(e) => e.1 += units,
        None => held.push((holder, units)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> Ledger {
        Ledger::new([("llm:gpt", 1), ("llm:db", 1), ("llm:pool", 3)])
    }

    #[test]
    fn grants_queue_and_release_in_order() {
        let mut l = ledger();
        assert_eq!(l.acquire(1, "llm:pool", 2, 10), Outcome::Granted);
        assert_eq!(l.acquire(2, "llm:pool", 2, 20), Outcome::Queued);
        assert_eq!(l.acquire(3, "llm:pool", 1, 30), Outcome::Queued);
        // First come, first served: 3 would fit, but 2 is ahead.
        let g = l.release(1, "llm:pool", 1).unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!((g[0].holder, g[0].units), (2, 2));
        let g = l.forget(1);
        assert_eq!(g.iter().map(|g| g.holder).collect::<Vec<_>>(), vec![3]);
        let pool = || "llm:pool".to_string();
        assert_eq!(
            l.acquire(4, "llm:pool", 4, 40),
            Outcome::Refused(Refusal::OverCapacity {
                name: pool(),
                capacity: 3,
                asked: 4
            })
        );
        assert_eq!(
            l.acquire(4, "nope", 1, 40),
            Outcome::Refused(Refusal::NoResource {
                name: "nope".into()
            })
        );
        assert_eq!(
            l.release(4, "llm:pool", 1),
            Err(Refusal::HoldsNone { name: pool() })
        );
        assert_eq!(
            l.release(3, "llm:pool", 9),
            Err(Refusal::HoldsFewer {
                name: pool(),
                have: 1,
                asked: 9
            })
        );
    }

    #[test]
    fn the_request_that_would_close_a_cycle_is_refused() {
        let mut l = ledger();
        assert_eq!(l.acquire(1, "llm:gpt", 1, 10), Outcome::Granted);
        assert_eq!(l.acquire(2, "llm:db", 1, 20), Outcome::Granted);
        // 1 waits for 2 (db): no cycle yet.
        assert_eq!(l.acquire(1, "llm:db", 1, 10), Outcome::Queued);
        // 2 waiting for 1 (gpt) would close 2 -> 1 -> 2.
        assert_eq!(
            l.acquire(2, "llm:gpt", 1, 20),
            Outcome::Deadlock(vec![1, 2])
        );
        // 2 gives up db: 1 gets it.
        let g = l.forget(2);
        assert_eq!(g.len(), 1);
        assert_eq!(
            (g[0].holder, g[0].resource.as_str(), g[0].client),
            (1, "llm:db", 10)
        );
    }

    #[test]
    fn longer_cycles_are_found_and_independent_waits_are_not_refused() {
        let mut l = Ledger::new([("a", 1), ("b", 1), ("c", 1)]);
        assert_eq!(l.acquire(1, "a", 1, 0), Outcome::Granted);
        assert_eq!(l.acquire(2, "b", 1, 0), Outcome::Granted);
        assert_eq!(l.acquire(3, "c", 1, 0), Outcome::Granted);
        assert_eq!(l.acquire(1, "b", 1, 0), Outcome::Queued);
        assert_eq!(l.acquire(2, "c", 1, 0), Outcome::Queued);
        // A fourth waiting on a is fine: nobody it waits for waits on it.
        assert_eq!(l.acquire(4, "a", 1, 0), Outcome::Queued);
        assert!(
            matches!(l.acquire(3, "a", 1, 0), Outcome::Deadlock(p) if p.contains(&1) && p.contains(&2))
        );
    }
}
