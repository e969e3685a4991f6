//! What a container's signed tokens let it ask of PID 1 over a control
//! socket of its own (children, execs, counted resources), and the rule
//! that a child, an exec target or a pod neighbour never holds a power
//! its holder lacks.

/// The first of `child`'s tokens that `holder` does not hold, if any: a
/// container never gets through a child, an exec or a pod a power it
/// could not use itself. `spawn` covers every `spawn:<bundle>`; every
/// other token is covered only by itself.
pub fn uncovered_token<'a>(holder: &[String], child: &'a [String]) -> Option<&'a str> {
    child
        .iter()
        .find(|t| {
            let held = holder.iter().any(|h| h == *t);
            let spawn_any = t.starts_with("spawn:") && holder.iter().any(|h| h == "spawn");
            !(held || spawn_any)
        })
        .map(String::as_str)
}

/// What a bundle's tokens let its containers ask over a control socket
/// of their own: children (`spawn`, `spawn:<bundle>`) and counted
/// resources (`llm:<name>`). `None` when nothing: no socket at all.
pub fn control_grant(tokens: &[String]) -> Option<ControlGrant> {
    use quilt_bundle::tokens::Token;
    let mut g = ControlGrant {
        tokens: tokens.to_vec(),
        ..ControlGrant::default()
    };
    for t in tokens {
        match Token::parse(t) {
            Ok(Token::Spawn(None)) => g.spawn_any = true,
            Ok(Token::Spawn(Some(b))) => g.spawn_only.push(b.to_owned()),
            Ok(Token::Counted(r)) => g.counted.push(r.to_owned()),
            Ok(Token::Exec(s)) => g.exec.push(s.to_owned()),
            _ => {}
        }
    }
    (g.spawn_any || !g.spawn_only.is_empty() || !g.counted.is_empty() || !g.exec.is_empty())
        .then_some(g)
}

/// See [`control_grant`].
#[derive(Debug, Clone, Default)]
pub struct ControlGrant {
    /// Any installed bundle may be spawned.
    pub spawn_any: bool,
    /// These bundles may be spawned.
    pub spawn_only: Vec<String>,
    /// Counted resources it may acquire.
    pub counted: Vec<String>,
    /// Services it may exec into.
    pub exec: Vec<String>,
    /// Every token of its bundle: a child or an exec target may hold no
    /// other ([`uncovered_token`]).
    pub tokens: Vec<String>,
}

impl ControlGrant {
    /// Whether `bundle` may be spawned.
    pub fn may_spawn(&self, bundle: &str) -> bool {
        self.spawn_any || self.spawn_only.iter().any(|b| b == bundle)
    }

    /// Whether it may start processes in service `name`'s container.
    pub fn may_exec(&self, name: &str) -> bool {
        self.exec.iter().any(|s| s == name)
    }

    /// Whether it holds the token of resource `name`.
    pub fn may_acquire(&self, name: &str) -> bool {
        self.counted.iter().any(|r| r == name)
    }
}

#[cfg(test)]
mod tests {
    use super::uncovered_token;

    #[test]
    fn a_child_holds_only_what_its_holder_holds() {
        let v = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let parent = v(&["spawn", "bus:calc:sub", "net:10.0.2.2:80"]);
        assert_eq!(uncovered_token(&parent, &v(&[])), None);
        assert_eq!(
            uncovered_token(&parent, &v(&["bus:calc:sub", "spawn:x"])),
            None
        );
        assert_eq!(
            uncovered_token(&parent, &v(&["bus:calc:pub"])),
            Some("bus:calc:pub")
        );
        assert_eq!(uncovered_token(&parent, &v(&["userns"])), Some("userns"));
        assert_eq!(
            uncovered_token(&v(&["spawn:a"]), &v(&["spawn"])),
            Some("spawn"),
            "spawn:<one> does not cover spawn"
        );
        assert_eq!(
            uncovered_token(&v(&["spawn:a"]), &v(&["spawn:b"])),
            Some("spawn:b")
        );
    }
}
