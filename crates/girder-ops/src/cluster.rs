//! Alarms visible across the cluster: each node serves its active alarms to the others (an
//! exported server registered as [`SERVICE`]); `/api/alarms?scope=cluster` asks every connected
//! node and merges the answers, naming which node each alarm is on.
//!
//! The service runs under the node's supervisor of Girder's services
//! ([`DistNode::services`], OTP's `kernel_sup`), as a transient child: killed or crashed (an
//! admin kill through the API, say), it is started again under its name and exported again,
//! serving the same alarm manager; stopped with its [`Ops`](crate::Ops) handle, it stays
//! stopped.

use std::time::Duration;

use girder::supervisor::{ChildSpec, ChildStart, Restart, SupervisorError};
use girder::{ExitReason, Flow, ReplyTo, Server, ServerContext};
use girder_dist::{DistNode, Wire};
use serde::{Deserialize, Serialize};

use crate::{Alarm, AlarmManager};

/// The registered name of every node's alarm service.
pub const SERVICE: &str = "girder.alarms";

/// Asks a node for its active alarms; the reply is its [`AlarmList`].
#[derive(Serialize, Deserialize)]
pub struct ActiveAlarms(pub ReplyTo<AlarmList>);

impl Wire for ActiveAlarms {
    // v2: the request carries its reply handle.
    const NAME: &'static str = "girder.alarms.active.v2";
}

/// A node's active alarms.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AlarmList(pub Vec<Alarm>);

/// The server answering [`ActiveAlarms`] from this node's manager.
pub struct AlarmService(pub AlarmManager);

impl Server for AlarmService {
    type Call = ActiveAlarms;
    type Cast = ();
    type Info = ();

    async fn handle_call(
        &mut self,
        ActiveAlarms(from): ActiveAlarms,
        _: &mut ServerContext<Self>,
    ) -> Flow {
        from.reply(AlarmList(self.0.active()));
        Flow::Continue
    }
}

/// Starts this node's alarm service under the node's supervisor of Girder's services, and
/// exports it (again on every restart). False if it could not start (another `Ops` with a
/// distribution runs on this node): this node's alarms then stay local.
pub(crate) async fn serve(dist: &DistNode, alarms: &AlarmManager) -> bool {
    let (d, a) = (dist.clone(), alarms.clone());
    let spec = ChildSpec::new(SERVICE, move |s: ChildStart| {
        let (dist, alarms) = (d.clone(), a.clone());
        async move {
            let server = girder::server::start_with(
                &s.node,
                AlarmService(alarms),
                s.spawn_options(),
                s.name.as_deref(),
            )
            .await?;
            dist.export_server(&server);
            Ok(server.pid())
        }
    })
    .named(SERVICE)
    .restart(Restart::Transient);
    let services = dist.services();
    let mut started = services.start_child(spec.clone()).await;
    // What the last handle left (it stops the service as it goes, and leaves its spec):
    // forgotten now, so this handle's service starts.
    let stale = match &started {
        Err(SupervisorError::AlreadyPresent(_)) => true,
        Err(SupervisorError::AlreadyStarted { pid, .. }) => {
            !dist.node().is_alive(*pid) || dist.node().is_exiting(*pid)
        }
        _ => false,
    };
    if stale {
        let _ = services.terminate_child(SERVICE).await;
        let _ = services.delete_child(SERVICE).await;
        started = services.start_child(spec).await;
    }
    match started {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, "alarm service not started; this node's alarms stay local");
            false
        }
    }
}

/// Stops this node's alarm service for good: it is transient, so a `Shutdown` exit is not
/// restarted. Its spec stays under the supervisor, not running, until another handle's
/// [`serve`] forgets it: forgetting it here would take a call to the supervisor from a task,
/// which may run while the node's schedulers shut down (a dropped handle at the end of a
/// program), and a call cut short there can spin for good (its reply's waker drops the
/// waiting task in the middle of the reply).
pub(crate) fn stop(dist: &DistNode) {
    if let Some(pid) = dist.node().whereis(SERVICE) {
        dist.node().exit(pid, ExitReason::Shutdown);
    }
}

/// Each connected node's active alarms (a node that does not answer within a second is listed
/// with `error`).
pub(crate) async fn gather(dist: &DistNode) -> Vec<serde_json::Value> {
    let asks = dist.connected().into_iter().map(|node| async move {
        let answer = async {
            let pid = dist
                .whereis(&node, SERVICE)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "no alarm service".to_string())?;
            dist.remote_server::<AlarmService>(&node, pid)
                .call_timeout(ActiveAlarms, Duration::from_secs(1))
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(Duration::from_secs(2), answer).await {
            Ok(Ok(AlarmList(active))) => {
                serde_json::json!({ "node": node.to_string(), "active": active })
            }
            Ok(Err(e)) => serde_json::json!({ "node": node.to_string(), "error": e }),
            Err(_) => {
                serde_json::json!({ "node": node.to_string(), "error": "no answer within 2 s" })
            }
        }
    });
    futures_util::future::join_all(asks).await
}
