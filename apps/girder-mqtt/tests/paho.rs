//! MQTT 5.0 features driven end to end by Eclipse paho-mqtt (Python, 2.x): user properties,
//! request/response, message expiry, subscription identifiers, no local, retain as
//! published, retain handling, topic aliases, session expiry, receive maximum, server keep
//! alive, QoS 1 redelivery and QoS 2 exactly once across reconnects, the client's maximum
//! packet size, PUBACK's "no matching subscribers"; and UNSUBSCRIBE, will delay and shared
//! subscriptions.
//!
//! Each test starts a broker and runs one scenario of `tests/paho/scenarios.py` against it;
//! the script says what failed. Skipped, saying so, only where python3 or paho-mqtt is
//! missing (`python3 -m pip install 'paho-mqtt>=2,<3'`, which `.ci/run` does).

#[path = "common/harness.rs"]
mod harness;

use std::time::Duration;

use girder_mqtt::config::Config;
use harness::{found, run, TestBroker};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/paho/scenarios.py");

async fn paho() -> bool {
    if !found("python3", "apt install python3") {
        return false;
    }
    let out = run(
        "python3",
        &[
            "-c",
            "import paho.mqtt; assert paho.mqtt.__version__.startswith('2.')",
        ],
        Duration::from_secs(30),
    )
    .await;
    if out.code() != Some(0) {
        eprintln!(
            "SKIPPED: paho-mqtt 2.x is not installed for python3 (python3 -m pip install \
             'paho-mqtt>=2,<3'); this test needs it: {}",
            out.stderr.trim()
        );
        return false;
    }
    true
}

/// Runs `scenario` against a broker started with the test settings changed by `edit`.
async fn scenario_with(scenario: &str, edit: impl FnOnce(&mut Config)) {
    if !paho().await {
        return;
    }
    let b: TestBroker = harness::start_with(|c, _| edit(c)).await;
    let port = b.port.to_string();
    let out = run(
        "python3",
        &[SCRIPT, &port, scenario],
        Duration::from_secs(60),
    )
    .await;
    assert!(
        out.code() == Some(0) && out.stdout.contains(&format!("PASS {scenario}")),
        "paho scenario {scenario} failed ({:?}):\n{}",
        out.status,
        out.all()
    );
    b.stop().await;
}

async fn scenario(name: &str) {
    scenario_with(name, |_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_properties_content_type_and_payload_format_are_forwarded_in_order() {
    scenario("user_properties").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_topic_and_correlation_data_carry_a_request_and_its_reply() {
    scenario("request_response").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_expires_while_its_subscriber_is_away_is_not_delivered() {
    scenario("message_expiry").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_identifiers_come_back_with_the_messages_they_matched() {
    scenario("subscription_identifiers").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_local_keeps_a_clients_own_messages_from_it() {
    scenario("no_local").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_as_published_keeps_the_retain_flag_for_the_subscriptions_that_ask() {
    scenario("retain_as_published").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_handling_sends_retained_messages_always_on_new_subscriptions_or_never() {
    scenario("retain_handling").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_alias_from_the_client_stands_for_its_topic_until_remapped() {
    scenario("topic_alias").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_survives_a_disconnect_within_its_expiry_and_is_gone_after() {
    scenario("session_expiry").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_than_the_receive_maximum_is_in_flight_to_a_client() {
    scenario("receive_maximum").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_above_the_maximum_is_lowered_by_server_keep_alive() {
    scenario_with("server_keep_alive", |c| c.max_keepalive = 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_2_from_a_publisher_that_reconnects_before_pubrec_is_delivered_once() {
    scenario("qos2_publisher_reconnects_before_pubrec").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_2_to_a_subscriber_that_reconnects_before_pubcomp_is_delivered_once() {
    scenario("qos2_subscriber_reconnects_before_pubcomp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_qos_1_message_comes_again_with_dup_after_a_reconnect() {
    scenario("qos1_redelivered_after_reconnect").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_clients_maximum_packet_size_is_not_sent_to_it() {
    scenario("maximum_packet_size").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_says_which_subscriptions_existed_and_ends_delivery() {
    scenario("unsubscribe").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_with_a_delay_waits_for_it_and_a_client_back_in_time_cancels_it() {
    scenario("will_delay").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_of_a_shared_subscription_take_turns() {
    scenario("shared_subscription").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puback_says_no_matching_subscribers() {
    scenario("puback_no_matching_subscribers").await;
}
