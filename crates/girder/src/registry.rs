//! Local names: a process registered under a name can be found by it.

use std::sync::Arc;

use crate::{Addr, LookupError, Node, Pid};

/// Why a name could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// Another live process holds the name.
    #[error("name {name:?} is already registered to {owner}")]
    NameTaken {
        /// The name asked for.
        name: String,
        /// Its current owner.
        owner: Pid,
    },
    /// The process already has a (different) name.
    #[error("process {pid} is already registered as {name:?}")]
    AlreadyNamed {
        /// The process.
        pid: Pid,
        /// Its current name.
        name: String,
    },
    /// The process is not alive.
    #[error("process {0} is not alive")]
    NoProc(Pid),
    /// The empty string is not a name.
    #[error("a registered name must not be empty")]
    EmptyName,
}

impl Node {
    /// Registers `pid` under `name`. The name is freed when the process exits, so a name never
    /// points at a dead process.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use girder::{Event, ExitReason, Node};
    /// let node = Node::new("docs");
    /// let addr = node.spawn(|mut ctx| async move {
    ///     let _: Event<()> = ctx.recv().await;
    ///     ExitReason::Normal
    /// });
    /// node.register("logger", addr.pid()).unwrap();
    /// assert_eq!(node.whereis("logger"), Some(addr.pid()));
    /// addr.send(()).unwrap();
    /// addr.wait_exit().await;
    /// assert_eq!(node.whereis("logger"), None);
    /// # }
    /// ```
    pub fn register(&self, name: &str, pid: Pid) -> Result<(), RegisterError> {
        if name.is_empty() {
            return Err(RegisterError::EmptyName);
        }
        let p = self.lookup_any(pid).ok_or(RegisterError::NoProc(pid))?;
        // The process's own lock is held across the insert, so its exit cannot slip between the
        // liveness check and the insert and leave a name pointing at a dead process.
        let mut meta = p.header().meta.lock();
        if meta.has_exited() {
            return Err(RegisterError::NoProc(pid));
        }
        if let Some(existing) = meta.name() {
            if &**existing == name {
                return Ok(());
            }
            return Err(RegisterError::AlreadyNamed {
                pid,
                name: existing.to_string(),
            });
        }
        let key: Arc<str> = Arc::from(name);
        match self.inner.names.entry(key.clone()) {
            dashmap::Entry::Occupied(e) => Err(RegisterError::NameTaken {
                name: name.to_string(),
                owner: *e.get(),
            }),
            dashmap::Entry::Vacant(v) => {
                v.insert(pid);
                meta.extra().name = Some(key);
                Ok(())
            }
        }
    }

    /// Frees `name`; true if it was registered.
    pub fn unregister(&self, name: &str) -> bool {
        let Some((_, pid)) = self.inner.names.remove(name) else {
            return false;
        };
        if let Some(p) = self.lookup_any(pid) {
            let mut meta = p.header().meta.lock();
            if meta.name().map(|n| &**n) == Some(name) {
                meta.extra().name = None;
            }
        }
        true
    }

    /// The pid registered under `name`, if any.
    pub fn whereis(&self, name: &str) -> Option<Pid> {
        self.inner.names.get(name).map(|e| *e.value())
    }

    /// A typed handle to the process registered under `name`.
    pub fn lookup<M: Send + 'static>(&self, name: &str) -> Result<Addr<M>, LookupError> {
        let pid = self
            .whereis(name)
            .ok_or_else(|| LookupError::NotRegistered(name.to_string()))?;
        self.addr(pid)
    }

    /// Every registered name with its pid, sorted by name.
    pub fn registered(&self) -> Vec<(String, Pid)> {
        let mut all: Vec<_> = self
            .inner
            .names
            .iter()
            .map(|e| (e.key().to_string(), *e.value()))
            .collect();
        all.sort();
        all
    }
}
