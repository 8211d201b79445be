//! Mosquitto's `acl_file` syntax and rules: who reads and writes what, deny winning, patterns
//! with %c and %u that a client cannot widen by its own name, and subscriptions granted only
//! when a readable rule covers the whole filter.

use girder_mqtt::acl::{Access, Acl, AclError};

const FILE: &str = "
# anonymous clients
topic read public/#
topic $SYS/broker/uptime

user alice
topic readwrite alice/#
topic deny alice/secrets/#
topic read shared/+/news

user bob
topic write bob/in

pattern read devices/%c/cmd
pattern write devices/%c/status
pattern readwrite users/%u/#
";

#[test]
fn users_anonymous_clients_and_patterns_get_what_the_file_says() {
    let acl = Acl::parse(FILE).unwrap();
    let alice = Some("alice");
    assert!(acl.allows(alice, "a1", "alice/x/y", Access::Write));
    assert!(
        acl.allows(alice, "a1", "alice", Access::Read),
        "a/# covers a"
    );
    assert!(
        !acl.allows(alice, "a1", "alice/secrets/k", Access::Read),
        "deny wins"
    );
    assert!(!acl.allows(alice, "a1", "alice/secrets/k", Access::Write));
    assert!(acl.allows(alice, "a1", "shared/x/news", Access::Read));
    assert!(
        !acl.allows(alice, "a1", "shared/x/news", Access::Write),
        "read only"
    );
    assert!(
        !acl.allows(alice, "a1", "public/x", Access::Read),
        "anonymous rules are not alice's"
    );
    assert!(acl.allows(None, "anon", "public/x", Access::Read));
    assert!(!acl.allows(None, "anon", "public/x", Access::Write));
    assert!(
        acl.allows(None, "anon", "$SYS/broker/uptime", Access::Write),
        "no word: readwrite"
    );
    assert!(acl.allows(Some("bob"), "b", "bob/in", Access::Write));
    assert!(!acl.allows(Some("bob"), "b", "bob/in", Access::Read));
    assert!(
        !acl.allows(Some("mallory"), "m", "alice/x", Access::Read),
        "an unknown user gets patterns only"
    );
    // Patterns, for everyone.
    assert!(acl.allows(Some("bob"), "dev7", "devices/dev7/cmd", Access::Read));
    assert!(acl.allows(None, "dev7", "devices/dev7/status", Access::Write));
    assert!(!acl.allows(None, "dev7", "devices/dev8/status", Access::Write));
    assert!(acl.allows(Some("bob"), "b", "users/bob/a/b", Access::Write));
    assert!(
        !acl.allows(None, "b", "users/bob/a", Access::Write),
        "%u needs a user name"
    );
}

#[test]
fn a_client_cannot_widen_a_pattern_with_its_own_name() {
    let acl = Acl::parse(FILE).unwrap();
    for sneaky in ["+", "#", "x/y", ""] {
        assert!(
            !acl.allows(None, sneaky, "devices/+/status", Access::Write),
            "{sneaky:?}"
        );
        assert!(!acl.may_subscribe(None, sneaky, "devices/#"), "{sneaky:?}");
        assert!(
            !acl.allows(Some(sneaky), "c", "users/x/y", Access::Write),
            "{sneaky:?}"
        );
    }
}

#[test]
fn a_subscription_needs_a_readable_rule_covering_its_whole_filter() {
    let acl = Acl::parse(FILE).unwrap();
    let alice = Some("alice");
    assert!(acl.may_subscribe(alice, "a1", "alice/#"));
    assert!(acl.may_subscribe(alice, "a1", "alice/+/inbox"));
    assert!(acl.may_subscribe(alice, "a1", "shared/+/news"));
    assert!(
        !acl.may_subscribe(alice, "a1", "shared/#"),
        "wider than the rule"
    );
    assert!(!acl.may_subscribe(alice, "a1", "#"));
    assert!(
        !acl.may_subscribe(alice, "a1", "alice/secrets/#"),
        "a deny covers it"
    );
    assert!(!acl.may_subscribe(Some("bob"), "b", "bob/in"), "write only");
    assert!(acl.may_subscribe(None, "anon", "public/+"));
    assert!(acl.may_subscribe(None, "anon", "$SYS/broker/uptime"));
    // A `#` rule does not reach `$` topics.
    let all = Acl::parse("topic read #\n").unwrap();
    assert!(all.may_subscribe(None, "c", "a/b/#"));
    assert!(!all.may_subscribe(None, "c", "$SYS/#"));
    assert!(!all.allows(None, "c", "$SYS/x", Access::Read));
}

#[test]
fn bad_lines_name_their_line() {
    for (text, line) in [
        ("topic\n", 1),
        ("\n\nuser\n", 3),
        ("topic read a/#/b\n", 1),
        ("allow everything\n", 1),
    ] {
        match Acl::parse(text) {
            Err(AclError::BadLine { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
            other => panic!("{text:?}: {other:?}"),
        }
    }
    // As Mosquitto reads it: a lone word after `topic` is the topic, granted read and write.
    let acl = Acl::parse("topic write\n").unwrap();
    assert!(acl.allows(None, "c", "write", Access::Write));
}

#[test]
fn a_deny_rule_inside_a_granted_filter_marks_that_filter_for_checks_per_message() {
    let acl = Acl::parse(
        "topic read a/#\ntopic deny a/+/secret\nuser bob\ntopic read b/#\npattern deny b/%c/private\n",
    )
    .unwrap();
    for (user, id, filter, checked) in [
        (None, "c", "a/#", true),
        (None, "c", "a/x/+", true),
        (None, "c", "a/x/secret", true),
        (None, "c", "a/x/open", false),
        (None, "c", "a/x", false),
        (Some("bob"), "c1", "b/#", true),
        (Some("bob"), "c1", "b/c2/private", false),
        (Some("bob"), "c1", "b/c1/+", true),
    ] {
        assert_eq!(
            acl.denies_within(user, id, filter),
            checked,
            "{user:?} {id} {filter}"
        );
    }
    // Granted as a whole, denied topic by topic.
    assert!(acl.may_subscribe(None, "c", "a/#"));
    assert!(!acl.allows(None, "c", "a/x/secret", Access::Read));
    assert!(acl.allows(None, "c", "a/x/open", Access::Read));
}
