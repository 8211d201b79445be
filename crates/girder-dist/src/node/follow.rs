//! A distribution node following a membership: members' addresses become dialable, their
//! failures disconnect them, and two live members with one name do not take turns.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::DistNode;
use crate::{MemberEvent, NodeName};

impl DistNode {
    /// Takes node addresses and failures from a membership: members' addresses become
    /// dialable (a member's TCP listener shares its membership address), a member that
    /// membership declares down is disconnected at once, even if its TCP connection still looks
    /// alive (a frozen or partitioned node), and a member that membership forgets (down for
    /// [`MembershipConfig::forget_after`](crate::MembershipConfig::forget_after)) is
    /// [forgotten](Self::forget) here too. Connections stay on demand.
    ///
    /// Membership knows members by address, so a second process started with the name of a
    /// live node is a second member. The node keeps dialling the address it is connected to
    /// (the newcomer is refused by the handshake, [`Refusal::NameInUse`](crate::handshake::Refusal::NameInUse)),
    /// logs the newcomer once, and when one of the two goes down only that one is
    /// disconnected.
    pub fn follow(&self, membership: &crate::Membership) {
        let mut live = Live::default();
        for m in membership.members() {
            live.up(self, m.name, m.addr);
        }
        let mut events = membership.subscribe();
        let me = Arc::downgrade(&self.inner);
        self.inner.node.spawn_task(async move {
            loop {
                let event = match events.recv().await {
                    Ok(e) => e,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                let Some(inner) = me.upgrade() else { return };
                let dist = DistNode { inner };
                match event {
                    MemberEvent::Up(m) => live.up(&dist, m.name, m.addr),
                    MemberEvent::Down(m) => live.down(&dist, &m.name, m.addr),
                    MemberEvent::Replaced { old, new } => {
                        live.down(&dist, &old.name, old.addr);
                        live.up(&dist, new.name, new.addr);
                    }
                    MemberEvent::Forgotten(m) => {
                        live.0.remove(&m.name);
                        dist.forget(&m.name);
                    }
                }
            }
        });
    }
}

/// The addresses of the live members of each name (usually one), oldest first.
#[derive(Default)]
struct Live(HashMap<NodeName, Vec<SocketAddr>>);

impl Live {
    fn up(&mut self, dist: &DistNode, name: NodeName, addr: SocketAddr) {
        let addrs = self.0.entry(name.clone()).or_default();
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
        let current = dist.inner.addresses.get(&name).map(|a| *a);
        match current {
            Some(at) if at != addr && dist.connected().contains(&name) => {
                tracing::warn!(
                    node = %dist.name(),
                    member = %name,
                    %addr,
                    connected_at = %at,
                    "a second member has the name of a connected node; the connected one keeps it"
                );
            }
            _ => dist.add_address(name, addr),
        }
    }

    fn down(&mut self, dist: &DistNode, name: &NodeName, addr: SocketAddr) {
        let rest = match self.0.get_mut(name) {
            Some(addrs) => {
                addrs.retain(|a| *a != addr);
                addrs.last().copied()
            }
            None => None,
        };
        if rest.is_none() {
            self.0.remove(name);
        }
        let current = dist.inner.addresses.get(name).map(|a| *a);
        if current.is_some_and(|at| at != addr) {
            // The other one of two with this name went down: the one in use is not touched.
            return;
        }
        dist.inner.addresses.remove(name);
        dist.disconnect(name);
        if let Some(other) = rest {
            dist.add_address(name.clone(), other);
        }
    }
}
