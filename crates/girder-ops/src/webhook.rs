//! A notification sink that POSTs each notice as JSON to a URL, with retries and back-off, and
//! never blocks the node.
//!
//! Notices wait in a bounded queue ([`WebhookConfig::queue`]); when it is full the oldest is
//! dropped and counted (a receiver that is down for hours should not take the node's memory with
//! it). The head of the queue is retried, in order, with exponential back-off up to
//! [`WebhookConfig::max_backoff`], until the receiver takes it (any 2xx answer).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use girder::{Node, OwnedTask};
use tokio::sync::broadcast::error::RecvError;

use crate::{AlarmManager, Notice};

/// Where and how notices are posted.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// The receiver's URL (`http://` or `https://`).
    pub url: String,
    /// Notices held while the receiver is slow or down; past this the oldest is dropped.
    pub queue: usize,
    /// The first retry's delay; each retry doubles it.
    pub first_backoff: Duration,
    /// The longest delay between retries.
    pub max_backoff: Duration,
    /// How long one POST may take.
    pub timeout: Duration,
}

impl WebhookConfig {
    /// Defaults: 1024 queued notices, back-off from 200 ms to 30 s, 5 s per POST.
    pub fn new(url: impl Into<String>) -> Self {
        WebhookConfig {
            url: url.into(),
            queue: 1024,
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
        }
    }
}

/// What a webhook sink has done.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Notices the receiver took.
    pub delivered: AtomicU64,
    /// POSTs that failed (each retry counts).
    pub failed_attempts: AtomicU64,
    /// Notices dropped because the queue was full (or the sink fell behind the notices).
    pub dropped: AtomicU64,
}

/// A running webhook sink; stops when dropped (what it has not delivered yet is lost).
pub struct Webhook {
    stats: Arc<WebhookStats>,
    _task: OwnedTask,
}

impl Webhook {
    /// Posts every notice of `alarms` from now on to `cfg.url`, from a task of `node`.
    pub fn start(node: &Node, alarms: &AlarmManager, cfg: WebhookConfig) -> Webhook {
        let stats = Arc::new(WebhookStats::default());
        let mut notices = alarms.subscribe();
        let st = stats.clone();
        let task = node.spawn_owned(async move {
            let client = reqwest::Client::builder()
                .timeout(cfg.timeout)
                .build()
                .expect("an HTTP client with default settings builds");
            let mut queue: VecDeque<Notice> = VecDeque::new();
            let mut backoff = cfg.first_backoff;
            loop {
                // Take in whatever has arrived, without waiting when there is work.
                let incoming = if queue.is_empty() {
                    Some(notices.recv().await)
                } else {
                    match notices.try_recv() {
                        Ok(n) => Some(Ok(n)),
                        Err(tokio::sync::broadcast::error::TryRecvError::Empty) => None,
                        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(k)) => {
                            Some(Err(RecvError::Lagged(k)))
                        }
                        Err(tokio::sync::broadcast::error::TryRecvError::Closed) => {
                            Some(Err(RecvError::Closed))
                        }
                    }
                };
                match incoming {
                    Some(Ok(n)) => {
                        if queue.len() == cfg.queue.max(1) {
                            queue.pop_front();
                            st.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        queue.push_back(n);
                        continue;
                    }
                    Some(Err(RecvError::Lagged(k))) => {
                        st.dropped.fetch_add(k, Ordering::Relaxed);
                        continue;
                    }
                    Some(Err(RecvError::Closed)) if queue.is_empty() => return,
                    _ => {}
                }
                let Some(head) = queue.front() else { continue };
                let ok = match client.post(&cfg.url).json(head).send().await {
                    Ok(r) => r.status().is_success(),
                    Err(_) => false,
                };
                if ok {
                    queue.pop_front();
                    st.delivered.fetch_add(1, Ordering::Relaxed);
                    backoff = cfg.first_backoff;
                } else {
                    st.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(cfg.max_backoff);
                }
            }
        });
        Webhook { stats, _task: task }
    }

    /// What the sink has done so far.
    pub fn stats(&self) -> &WebhookStats {
        &self.stats
    }
}
