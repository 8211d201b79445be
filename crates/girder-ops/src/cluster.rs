//! Alarms visible across the cluster: each node serves its active alarms to the others (an
//! exported server registered as [`SERVICE`]); `/api/alarms?scope=cluster` asks every connected
//! node and merges the answers, naming which node each alarm is on.

use std::time::Duration;

use girder::{Flow, Pid, ReplyTo, Server, ServerContext, SpawnOptions};
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

/// Starts this node's alarm service and exports it; its pid, unless it could not start.
pub(crate) async fn serve(dist: &DistNode, alarms: &AlarmManager) -> Option<Pid> {
    match girder::server::start_with(
        dist.node(),
        AlarmService(alarms.clone()),
        SpawnOptions::new(),
        Some(SERVICE),
    )
    .await
    {
        Ok(s) => {
            dist.export_server(&s);
            Some(s.pid())
        }
        Err(e) => {
            tracing::warn!(error = %e, "alarm service not started; this node's alarms stay local");
            None
        }
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
