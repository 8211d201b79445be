//! Process identifiers.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The identity of a process: which node it lives on and which process it is there.
///
/// A `Pid` is plain data (`Copy`, hashable, serialisable) so it can be stored, compared and,
/// later, sent to another node. Like Erlang's pids it is made of three parts:
///
/// * `node`: the index of the node in the holder's table of known nodes; `0` is the local node.
///   Distribution translates this index at the node boundary, so a remote pid fits the same type.
/// * `creation`: the incarnation of that node. A node that restarts gets a new creation, so a pid
///   of the old incarnation is never mistaken for a live process of the new one.
/// * `id`: unique per node incarnation, never reused.
///
/// Serialised, a pid is `(node, creation, id)`; inside a message that crosses to another node the
/// distribution layer swaps the index for the node's name (see [`crate::remote`]), so a pid
/// sent to another node still names the same process there.
///
/// ```
/// use girder::Pid;
/// let pid = Pid::new(0, 1, 42);
/// assert_eq!(pid.id(), 42);
/// assert!(pid.is_local());
/// assert_eq!(pid.to_string(), "<0.42.1>");
/// ```
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pid {
    node: u32,
    creation: u32,
    id: u64,
}

impl Pid {
    /// Builds a pid from its parts. Normally pids come from `spawn`; this exists for tests and for
    /// the distribution layer.
    pub const fn new(node: u32, creation: u32, id: u64) -> Self {
        Pid { node, creation, id }
    }

    /// The node index (`0` is the local node).
    pub const fn node(&self) -> u32 {
        self.node
    }

    /// The incarnation of the node the process lives on.
    pub const fn creation(&self) -> u32 {
        self.creation
    }

    /// The per-node process number.
    pub const fn id(&self) -> u64 {
        self.id
    }

    /// True when the process lives on the local node.
    pub const fn is_local(&self) -> bool {
        self.node == 0
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}.{}.{}>", self.node, self.id, self.creation)
    }
}

impl fmt::Debug for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Pid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match crate::remote::translation() {
            None => (self.node, self.creation, self.id).serialize(s),
            Some(t) => {
                let name = t.node_name(self.node).ok_or_else(|| {
                    serde::ser::Error::custom(format!("pid {self} names an unknown node"))
                })?;
                (&*name, self.creation, self.id).serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Pid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match crate::remote::translation() {
            None => {
                let (node, creation, id) = <(u32, u32, u64)>::deserialize(d)?;
                Ok(Pid { node, creation, id })
            }
            Some(t) => {
                let (name, creation, id) =
                    <(std::borrow::Cow<'de, str>, u32, u64)>::deserialize(d)?;
                Ok(Pid {
                    node: t.node_index(&name),
                    creation,
                    id,
                })
            }
        }
    }
}
