//! Event sources: streams a behaviour owns (a socket's read half framed into packets, a channel,
//! any [`Stream`]) whose items arrive as events of its own loop, beside its mailbox. No helper
//! process copies them over: the behaviour's task polls its sources itself, and takes an item
//! only when it is about to handle it, so an item is never taken and then dropped when the
//! behaviour stops (what is still in the stream stays there, and goes with it).
//!
//! The loop alternates which it looks at first, the mailbox or the sources, so neither starves
//! the other; the system lane (exit signals, stop requests) always comes first.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;

/// Identifies one source of a behaviour (see `ServerContext::add_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceId(u64);

/// One source: a stream mapped into the behaviour's info messages, with its end announced once.
trait Source<I>: Send {
    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<I>>;
    /// The type of the stream inside, and whether it has ended.
    fn stream_type(&self) -> (std::any::TypeId, bool);
    /// The stream inside, as a `Pin<Box<St>>`.
    fn into_stream(self: Box<Self>) -> Box<dyn std::any::Any>;
}

struct Mapped<St, F> {
    stream: Pin<Box<St>>,
    wrap: F,
    ended: bool,
}

impl<St, F, I> Source<I> for Mapped<St, F>
where
    St: Stream + Send + 'static,
    F: FnMut(Option<St::Item>) -> I + Send,
{
    fn stream_type(&self) -> (std::any::TypeId, bool) {
        (std::any::TypeId::of::<St>(), self.ended)
    }

    fn into_stream(self: Box<Self>) -> Box<dyn std::any::Any> {
        Box::new(self.stream)
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<I>> {
        let this = self;
        if this.ended {
            return Poll::Ready(None);
        }
        match this.stream.as_mut().poll_next(cx) {
            Poll::Ready(Some(item)) => Poll::Ready(Some((this.wrap)(Some(item)))),
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(Some((this.wrap)(None)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A behaviour's sources, in the order added.
pub(crate) struct Sources<I> {
    list: Vec<(SourceId, Box<dyn Source<I>>)>,
    next_id: u64,
    /// Where the next round of polling starts, so a busy source does not starve the others.
    cursor: usize,
    /// Whether the mailbox or the sources go first next time.
    sources_first: bool,
    /// Items taken in a row without the task yielding: an always-ready source must not keep
    /// the thread from every other process on it.
    budget: u32,
}

/// Items a behaviour takes from its sources in a row before it lets other tasks run.
const BUDGET: u32 = 128;

// SAFETY: a shared `&Sources` reaches no source (only the list's length and counters); every
// method that polls, adds or removes a source takes `&mut self`. So the streams, which need only
// be `Send`, are never touched from two threads at once.
unsafe impl<I> Sync for Sources<I> {}

impl<I: Send + 'static> Sources<I> {
    pub(crate) fn new() -> Self {
        Sources {
            list: Vec::new(),
            next_id: 1,
            cursor: 0,
            sources_first: false,
            budget: BUDGET,
        }
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(crate) fn add<St, F>(&mut self, stream: St, wrap: F) -> SourceId
    where
        St: Stream + Send + 'static,
        F: FnMut(Option<St::Item>) -> I + Send + 'static,
    {
        let id = SourceId(self.next_id);
        self.next_id += 1;
        let source = Mapped {
            stream: Box::pin(stream),
            wrap,
            ended: false,
        };
        self.list.push((id, Box::new(source)));
        id
    }

    /// Removes a source (its stream is dropped, with what it still holds). False if it had
    /// ended or was removed already.
    pub(crate) fn remove(&mut self, id: SourceId) -> bool {
        match self.list.iter().position(|(s, _)| *s == id) {
            Some(i) => {
                self.list.remove(i);
                if self.cursor > i {
                    self.cursor -= 1;
                }
                true
            }
            None => false,
        }
    }

    /// Takes a source's stream back out, unpolled from then on (what it buffered goes with
    /// it). `None` if there is no such source, it has ended, or its stream is not an `St`.
    pub(crate) fn take<St: Stream + Unpin + 'static>(&mut self, id: SourceId) -> Option<St> {
        let i = self.list.iter().position(|(s, source)| {
            *s == id && source.stream_type() == (std::any::TypeId::of::<St>(), false)
        })?;
        let (_, source) = self.list.remove(i);
        if self.cursor > i {
            self.cursor -= 1;
        }
        let stream = source.into_stream().downcast::<Pin<Box<St>>>().ok()?;
        Some(*Pin::into_inner(*stream))
    }

    /// How many sources were ever added (to tell whether any was added since).
    pub(crate) fn added(&self) -> u64 {
        self.next_id
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// The next item of any source, round robin; a source that has ended (after its end item)
    /// is removed.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<I> {
        if self.budget == 0 {
            self.budget = BUDGET;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let n = self.list.len();
        for step in 0..n {
            let i = (self.cursor + step) % n;
            let Some((_, source)) = self.list.get_mut(i) else {
                break;
            };
            match source.poll_item(cx) {
                Poll::Ready(Some(item)) => {
                    self.cursor = (i + 1) % n;
                    self.budget -= 1;
                    return Poll::Ready(item);
                }
                Poll::Ready(None) => {
                    self.list.remove(i);
                    // Restart the round: indices moved.
                    self.cursor = 0;
                    return self.poll_next(cx);
                }
                Poll::Pending => {}
            }
        }
        self.budget = BUDGET;
        Poll::Pending
    }

    /// Whether this round looks at the sources before the mailbox (and flips it for the next).
    #[inline]
    pub(crate) fn take_turn(&mut self) -> bool {
        self.sources_first = !self.sources_first;
        !self.sources_first
    }
}
