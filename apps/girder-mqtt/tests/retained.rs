//! Retained messages against the spec's matching (§4.7) on random topics and filters, topics
//! with empty levels, and the trie shrinking as messages are removed.

use std::collections::BTreeSet;

use girder_mqtt::codec::subscribe::check_filter;
use girder_mqtt::retained::Retained;
use proptest::prelude::*;

mod common;
use common::spec_matches;

proptest! {
    #[test]
    fn a_filter_finds_exactly_the_retained_topics_the_spec_matches(
        topics in proptest::collection::btree_set("(\\$s|a|b|)(/(a|b|c|)){0,3}", 1..30),
        filters in proptest::collection::vec("(\\$s|a|b|\\+|)(/(a|b|c|\\+|)){0,3}(/#)?|#", 1..20),
    ) {
        let mut r = Retained::new();
        for t in &topics {
            r.set(t, t.clone());
        }
        prop_assert_eq!(r.len(), topics.len());
        for f in filters.iter().filter(|f| check_filter(f).is_ok()) {
            let want: BTreeSet<String> = topics.iter().filter(|t| spec_matches(f, t)).cloned().collect();
            let mut got = BTreeSet::new();
            r.matching(f, |topic, m| {
                assert_eq!(topic, m, "the path it reports is the topic");
                got.insert(topic.to_string());
            });
            prop_assert_eq!(got, want, "filter {}", f);
        }
        for t in &topics {
            prop_assert_eq!(r.remove(t), Some(t.clone()));
        }
        prop_assert!(r.is_empty());
    }
}

#[test]
fn topics_with_empty_levels_keep_their_slashes() {
    let mut r = Retained::new();
    r.set("/finance", 1);
    r.set("a//b", 2);
    let mut got = Vec::new();
    r.matching("#", |t, m| got.push((t.to_string(), *m)));
    got.sort();
    assert_eq!(
        got,
        vec![("/finance".to_string(), 1), ("a//b".to_string(), 2)]
    );
    assert_eq!(
        r.set("/finance", 3),
        Some(1),
        "a new retained message replaces the old"
    );
}
