//! The services the demo supervises: a key-value store and pool workers.

use std::collections::HashMap;

use girder::{Flow, ReplyTo, Server, ServerContext};

/// A fault to inject through a service's own mailbox.
pub enum Fault {
    Panic,
}

/// A key-value store.
pub struct Kv(pub HashMap<String, u64>);

pub enum KvCall {
    Put(String, u64),
}

impl Server for Kv {
    type Call = (KvCall, ReplyTo<Option<u64>>);
    type Cast = Fault;
    type Info = ();

    async fn handle_call(
        &mut self,
        (req, from): (KvCall, ReplyTo<Option<u64>>),
        _: &mut ServerContext<Self>,
    ) -> Flow {
        match req {
            KvCall::Put(k, v) => from.reply(self.0.insert(k, v)),
        }
        Flow::Continue
    }

    async fn handle_cast(&mut self, Fault::Panic: Fault, _: &mut ServerContext<Self>) -> Flow {
        panic!("injected panic in kv");
    }
}

/// A pool worker.
pub struct Worker;

impl Server for Worker {
    type Call = (u64, ReplyTo<u64>);
    type Cast = Fault;
    type Info = ();

    async fn handle_call(
        &mut self,
        (n, from): (u64, ReplyTo<u64>),
        _: &mut ServerContext<Self>,
    ) -> Flow {
        from.reply(n * 2);
        Flow::Continue
    }

    async fn handle_cast(&mut self, Fault::Panic: Fault, _: &mut ServerContext<Self>) -> Flow {
        panic!("injected panic in worker");
    }
}
