//! Reply handles across nodes. A request carries its [`ReplyTo`]; when the request crosses to
//! another node, the handle cannot: the caller's node keeps it, and the callee's node gets a
//! handle that sends the outcome back. A distribution layer does both with the two halves here,
//! around encoding and decoding a call's request with serde (its own codec):
//!
//! * the caller's node encodes the request with [`OutgoingCall::encode`] and keeps the
//!   [`OutgoingCall`] until the reply (or a failure) comes, which it hands over with
//!   [`OutgoingCall::reply`] or [`OutgoingCall::fail`];
//! * the callee's node decodes the request inside [`decode_call`], giving the [`ReplySink`]
//!   its reply handle will send through.
//!
//! A reply handle anywhere else (in a cast, or outside these two) refuses to encode or decode,
//! with an error that says so. Values cross as `erased_serde` trait objects, so the core knows
//! no codec.

use std::any::Any;
use std::cell::Cell;
use std::ptr::NonNull;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::reply::{Outcome, ReplyTo};
use crate::ExitReason;

/// Where the outcome of a call that came from another node goes: implemented by a distribution
/// layer, which sends it back to the caller's node.
pub trait ReplySink: Send + Sync + 'static {
    /// The call ended: a reply to encode, or why there is none.
    fn send(self: Box<Self>, outcome: Outcome<&dyn erased_serde::Serialize>);
}

/// What an exported handle's type does, for a pointer that no longer knows its type.
struct HandleOps {
    reply: unsafe fn(NonNull<()>, &mut dyn erased_serde::Deserializer<'_>) -> Result<(), String>,
    fail: unsafe fn(NonNull<()>, ExitReason),
    overloaded: unsafe fn(NonNull<()>),
    is_closed: unsafe fn(NonNull<()>) -> bool,
}

/// # Safety
///
/// `at` points at a live `ReplyTo<R>` that nothing else uses meanwhile.
unsafe fn reply_as<R: DeserializeOwned + Send + 'static>(
    at: NonNull<()>,
    body: &mut dyn erased_serde::Deserializer<'_>,
) -> Result<(), String> {
    // SAFETY: the caller's contract.
    let handle = unsafe { &mut *at.cast::<ReplyTo<R>>().as_ptr() };
    let taken = std::mem::replace(handle, ReplyTo::none());
    match erased_serde::deserialize::<R>(body) {
        Ok(r) => {
            taken.reply(r);
            Ok(())
        }
        Err(e) => {
            let why = format!("a reply that does not decode: {e}");
            taken.fail(ExitReason::error(why.clone()));
            Err(why)
        }
    }
}

/// # Safety
///
/// As [`reply_as`].
unsafe fn fail_as<R: Send + 'static>(at: NonNull<()>, reason: ExitReason) {
    // SAFETY: the caller's contract.
    let handle = unsafe { &mut *at.cast::<ReplyTo<R>>().as_ptr() };
    std::mem::replace(handle, ReplyTo::none()).fail(reason);
}

/// # Safety
///
/// As [`reply_as`].
unsafe fn overloaded_as<R: Send + 'static>(at: NonNull<()>) {
    // SAFETY: the caller's contract.
    let handle = unsafe { &mut *at.cast::<ReplyTo<R>>().as_ptr() };
    std::mem::replace(handle, ReplyTo::none()).overloaded();
}

/// # Safety
///
/// As [`reply_as`].
unsafe fn is_closed_as<R: Send + 'static>(at: NonNull<()>) -> bool {
    // SAFETY: the caller's contract.
    unsafe { &*at.cast::<ReplyTo<R>>().as_ptr() }.is_closed()
}

struct Ops<R>(std::marker::PhantomData<R>);

impl<R: DeserializeOwned + Send + 'static> Ops<R> {
    const OPS: HandleOps = HandleOps {
        reply: reply_as::<R>,
        fail: fail_as::<R>,
        overloaded: overloaded_as::<R>,
        is_closed: is_closed_as::<R>,
    };
}

/// The request being encoded: where it lives, and the reply handle found in it.
struct Export {
    start: usize,
    end: usize,
    found: Option<(NonNull<()>, &'static HandleOps)>,
    /// A handle outside the request's own memory, or a second one.
    refused: Option<&'static str>,
}

thread_local! {
    static EXPORT: Cell<*mut Export> = const { Cell::new(std::ptr::null_mut()) };
    static IMPORT: Cell<*mut Import> = const { Cell::new(std::ptr::null_mut()) };
}

/// A call's request sent to another node: the caller's node keeps it until the call ends. It
/// owns the request, so the reply handle inside stays where it was found.
pub struct OutgoingCall {
    request: Box<dyn Any + Send>,
    handle: Option<(NonNull<()>, &'static HandleOps)>,
}

// SAFETY: the pointer is into `request`, which is `Send`, and only used through `&mut self` or
// `self`.
unsafe impl Send for OutgoingCall {}
// SAFETY: `&OutgoingCall` only reads (`is_closed`), as `&ReplyTo` may.
unsafe impl Sync for OutgoingCall {}

impl OutgoingCall {
    /// Encodes `request` with `encode` (which serializes it with the layer's codec), noting the
    /// reply handle inside it. On an error (the codec's, or a reply handle that is not the
    /// request's own) the call fails at once with it, and the error is returned.
    pub fn encode<Q, T, E>(
        request: Q,
        encode: impl FnOnce(&Q) -> Result<T, E>,
    ) -> Result<(T, OutgoingCall), String>
    where
        Q: Send + 'static,
        E: std::fmt::Display,
    {
        let request = Box::new(request);
        let start = &*request as *const Q as usize;
        let mut export = Export {
            start,
            end: start + std::mem::size_of::<Q>(),
            found: None,
            refused: None,
        };
        let outer = EXPORT.replace(&mut export);
        let encoded = encode(&request);
        EXPORT.set(outer);
        let call = OutgoingCall {
            request,
            handle: export.found,
        };
        let why = match (encoded, export.refused) {
            (Ok(bytes), None) => return Ok((bytes, call)),
            (_, Some(refused)) => refused.to_string(),
            (Err(e), None) => e.to_string(),
        };
        call.fail(ExitReason::error(why.clone()));
        Err(why)
    }

    /// The reply came: decodes it into the handle's type and answers the caller (a reply that
    /// does not decode fails the call, and says why).
    pub fn reply(mut self, body: &mut dyn erased_serde::Deserializer<'_>) -> Result<(), String> {
        match self.handle.take() {
            // SAFETY: the pointer is into `self.request`, alive and used by nothing else.
            Some((at, ops)) => unsafe { (ops.reply)(at, body) },
            None => Ok(()),
        }
    }

    /// The call failed (the callee exited, or its node is unreachable).
    pub fn fail(mut self, reason: ExitReason) {
        if let Some((at, ops)) = self.handle.take() {
            // SAFETY: as in `reply`.
            unsafe { (ops.fail)(at, reason) }
        }
    }

    /// The callee refused the call unhandled: the caller gets
    /// [`CallError::Overloaded`](crate::CallError::Overloaded).
    pub fn overloaded(mut self) {
        if let Some((at, ops)) = self.handle.take() {
            // SAFETY: as in `reply`.
            unsafe { (ops.overloaded)(at) }
        }
    }

    /// True once the caller no longer waits (it timed out): the call may be forgotten.
    pub fn is_closed(&self) -> bool {
        match &self.handle {
            // SAFETY: as in `reply`, reading only.
            Some((at, ops)) => unsafe { (ops.is_closed)(*at) },
            None => true,
        }
    }

    /// The request back, unsent (a full connection hands it back to its sender to wait).
    pub fn into_request<Q: 'static>(self) -> Option<Q> {
        self.request.downcast::<Q>().ok().map(|b| *b)
    }
}

/// What a request being decoded gives the reply handle inside it.
struct Import {
    sink: Option<Box<dyn ReplySink>>,
    deadline: Option<crate::timer::Deadline>,
}

/// Decodes a call's request that came from another node with `decode` (the layer's codec);
/// the reply handle inside it sends the call's outcome through `sink`, and knows the call's
/// `deadline` (when its caller stops waiting, on this node's clock; see
/// [`ReplyTo::time_left`]). A request without one drops `sink` unused (its caller hears
/// nothing until it times out, as a cast would).
pub fn decode_call<Q, E>(
    sink: Box<dyn ReplySink>,
    deadline: Option<std::time::Instant>,
    decode: impl FnOnce() -> Result<Q, E>,
) -> Result<Q, E> {
    let mut slot = Import {
        sink: Some(sink),
        deadline: deadline.map(crate::timer::Deadline::at),
    };
    let outer = IMPORT.replace(&mut slot);
    let decoded = decode();
    IMPORT.set(outer);
    decoded
}

impl<R: DeserializeOwned + Send + 'static> Serialize for ReplyTo<R> {
    /// Only inside [`OutgoingCall::encode`], as the request's own handle: the caller's node
    /// keeps it and only a marker crosses.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ctx = EXPORT.get();
        // SAFETY: set by `OutgoingCall::encode` to its own `Export` for the length of the
        // encode, on this thread.
        let Some(export) = (unsafe { ctx.as_mut() }) else {
            return Err(serde::ser::Error::custom(
                "a reply handle crosses nodes only inside the call it answers",
            ));
        };
        let at = self as *const Self as usize;
        let inside = at >= export.start && at + std::mem::size_of::<Self>() <= export.end;
        if !inside || export.found.is_some() {
            let why = if inside {
                "a request carries one reply handle"
            } else {
                "a reply handle must be held in the request itself (not behind a pointer)"
            };
            export.refused = Some(why);
            return Err(serde::ser::Error::custom(why));
        }
        let at = NonNull::from(self).cast::<()>();
        export.found = Some((at, &Ops::<R>::OPS));
        s.serialize_unit()
    }
}

impl<'de, R: Serialize + Send + 'static> Deserialize<'de> for ReplyTo<R> {
    /// Only inside [`decode_call`]: a handle that sends the outcome back to the caller's node.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d)?;
        let ctx = IMPORT.get();
        // SAFETY: set by `decode_call` to its own slot for the length of the decode, on this
        // thread.
        let import = unsafe { ctx.as_mut() };
        let deadline = import.as_ref().and_then(|i| i.deadline);
        let sink = import.and_then(|i| i.sink.take()).ok_or_else(|| {
            serde::de::Error::custom(
                "a reply handle crosses nodes only inside the call it answers, once",
            )
        })?;
        let mut from = ReplyTo::forward(move |outcome: Outcome<R>| {
            let outcome = match &outcome {
                Outcome::Replied(r) => Outcome::Replied(r as &dyn erased_serde::Serialize),
                Outcome::Dropped => Outcome::Dropped,
                Outcome::Panicking => Outcome::Panicking,
                Outcome::Failed(reason) => Outcome::Failed(reason.clone()),
                Outcome::Overloaded => Outcome::Overloaded,
            };
            sink.send(outcome);
        });
        from.deadline = deadline;
        Ok(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Serialize, Deserialize)]
    enum Req {
        Get(String, ReplyTo<u32>),
        Nothing,
    }

    struct Collect(Arc<Mutex<Vec<String>>>);

    impl ReplySink for Collect {
        fn send(self: Box<Self>, outcome: Outcome<&dyn erased_serde::Serialize>) {
            let text = match outcome {
                Outcome::Replied(r) => serde_json::to_string(r).unwrap(),
                Outcome::Dropped => "dropped".into(),
                Outcome::Panicking => "panicking".into(),
                Outcome::Failed(reason) => format!("failed: {reason}"),
                Outcome::Overloaded => "overloaded".into(),
            };
            self.0.lock().unwrap().push(text);
        }
    }

    #[test]
    fn a_request_crosses_and_its_reply_comes_back() {
        let (from, rx) = ReplyTo::<u32>::pair();
        let (json, call) =
            OutgoingCall::encode(Req::Get("k".into(), from), serde_json::to_string).unwrap();
        assert!(!call.is_closed());
        // The callee's node.
        let out = Arc::new(Mutex::new(Vec::new()));
        let req: Req = decode_call(Box::new(Collect(out.clone())), None, || {
            serde_json::from_str(&json)
        })
        .unwrap();
        let Req::Get(key, handle) = req else { panic!() };
        assert_eq!(key, "k");
        handle.reply(7);
        let reply = out.lock().unwrap().pop().unwrap();
        assert_eq!(reply, "7");
        // Back on the caller's node.
        let mut de = serde_json::Deserializer::from_str(&reply);
        call.reply(&mut <dyn erased_serde::Deserializer>::erase(&mut de))
            .unwrap();
        assert_eq!(rx.blocking_recv(), Ok(7));
    }

    #[test]
    fn a_dropped_handle_and_a_failed_call_say_so() {
        let out = Arc::new(Mutex::new(Vec::new()));
        let (from, _rx) = ReplyTo::<u32>::pair();
        let (json, _call) =
            OutgoingCall::encode(Req::Get("k".into(), from), serde_json::to_string).unwrap();
        let req: Req = decode_call(Box::new(Collect(out.clone())), None, || {
            serde_json::from_str(&json)
        })
        .unwrap();
        drop(req);
        assert_eq!(out.lock().unwrap().pop().unwrap(), "dropped");

        let (tx, rx) = std::sync::mpsc::channel();
        let from = ReplyTo::forward(move |o: Outcome<u32>| tx.send(o).unwrap());
        let (_, call) =
            OutgoingCall::encode(Req::Get("k".into(), from), serde_json::to_string).unwrap();
        call.fail(ExitReason::NoConnection);
        assert_eq!(
            rx.recv().unwrap(),
            Outcome::Failed(ExitReason::NoConnection)
        );
    }

    #[test]
    fn handles_elsewhere_are_refused_with_a_reason() {
        // Outside a call.
        let (from, _rx) = ReplyTo::<u32>::pair();
        let err = serde_json::to_string(&from).unwrap_err().to_string();
        assert!(err.contains("only inside the call"), "{err}");
        let err = serde_json::from_str::<ReplyTo<u32>>("null")
            .unwrap_err()
            .to_string();
        assert!(err.contains("only inside the call"), "{err}");
        // Two handles in one request: the call fails at once.
        let (tx, rx) = std::sync::mpsc::channel();
        let a = ReplyTo::forward(move |o: Outcome<u32>| tx.send(o).unwrap());
        let (b, _rb) = ReplyTo::<u32>::pair();
        let err = OutgoingCall::encode((a, b), serde_json::to_string)
            .err()
            .unwrap();
        assert!(err.contains("one reply handle"), "{err}");
        assert!(matches!(rx.recv().unwrap(), Outcome::Failed(_)));
        // Behind a pointer.
        let (c, _rc) = ReplyTo::<u32>::pair();
        let err = OutgoingCall::encode(Box::new(c), serde_json::to_string)
            .err()
            .unwrap();
        assert!(err.contains("not behind a pointer"), "{err}");
        // A request without a handle encodes fine; nothing to answer.
        let (json, call) = OutgoingCall::encode(Req::Nothing, serde_json::to_string).unwrap();
        assert!(call.is_closed());
        assert_eq!(call.into_request::<Req>().map(|_| ()), Some(()));
        assert_eq!(json, "\"Nothing\"");
    }
}
