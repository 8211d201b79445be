//! The core's remote signals (link, unlink, exit, monitor, demonitor, down), turned into
//! packets to the peer that holds the other end.

use std::sync::Weak;

use girder::remote::Distribution;
use girder::{ExitReason, Pid};

use super::Inner;
use crate::wire::{Packet, WirePid};

/// The core's remote signals, turned into packets.
pub(super) struct Hooks(pub(super) Weak<Inner>);

impl Distribution for Hooks {
    fn link(&self, local: Pid, remote: Pid) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let p = Packet::Link {
            from: WirePid::of(local),
            to: WirePid::of(remote),
        };
        inner.signal(remote, local.id(), &p, || {
            inner
                .node
                .remote_exit(remote, local, ExitReason::NoConnection, true)
        });
    }

    fn unlink(&self, local: Pid, remote: Pid) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let p = Packet::Unlink {
            from: WirePid::of(local),
            to: WirePid::of(remote),
        };
        inner.signal(remote, local.id(), &p, || {});
    }

    fn exit(&self, from: Pid, to: Pid, reason: ExitReason, via_link: bool) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let p = Packet::Exit {
            from: WirePid::of(from),
            to: WirePid::of(to),
            reason,
            via_link,
        };
        inner.signal(to, from.id(), &p, || {});
    }

    fn monitor(&self, watcher: Pid, target: Pid, id: u64) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let p = Packet::Monitor {
            watcher: WirePid::of(watcher),
            target: WirePid::of(target),
            id,
        };
        inner.signal(target, watcher.id(), &p, || {
            inner
                .node
                .remote_down(target, watcher, id, ExitReason::NoConnection)
        });
    }

    fn demonitor(&self, watcher: Pid, target: Pid, id: u64) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let p = Packet::Demonitor {
            watcher: WirePid::of(watcher),
            target: WirePid::of(target),
            id,
        };
        inner.signal(target, watcher.id(), &p, || {});
    }

    fn down(&self, target: Pid, watcher: Pid, id: u64, reason: ExitReason) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let p = Packet::Down {
            target: WirePid::of(target),
            watcher: WirePid::of(watcher),
            id,
            reason,
        };
        inner.signal(watcher, target.id(), &p, || {});
    }
}
