//! The subscription table against the spec's matching rules (§4.7), checked by a naive
//! matcher written straight from the spec, on random filters and topics; shared groups taking
//! turns; the table shrinking as subscriptions go; and a million subscriptions.

use std::collections::BTreeSet;
use std::time::Instant;

use girder_mqtt::codec::subscribe::check_filter;
use girder_mqtt::topic::Subscriptions;
use proptest::prelude::*;

mod common;
use common::spec_matches;

fn matched(subs: &Subscriptions<u32, ()>, topic: &str) -> BTreeSet<(u32, String)> {
    let mut got = BTreeSet::new();
    subs.matches(topic, |who, _| {
        got.insert((*who, String::new()));
    });
    got
}

proptest! {
    #[test]
    fn the_trie_matches_exactly_what_the_spec_says(
        filters in proptest::collection::vec("(\\$s|a|b|\\+)(/(a|b|c|\\+)){0,3}(/#)?|#", 1..30),
        topics in proptest::collection::vec("(\\$s|a|b|c)(/(a|b|c)){0,4}", 1..20),
    ) {
        let mut subs = Subscriptions::new();
        let mut kept = Vec::new();
        for (i, f) in filters.iter().enumerate() {
            if check_filter(f).is_ok() {
                subs.subscribe(f, i as u32, ());
                kept.push((i as u32, f.clone()));
            }
        }
        for t in &topics {
            let want: BTreeSet<(u32, String)> = kept
                .iter()
                .filter(|(_, f)| spec_matches(f, t))
                .map(|(i, _)| (*i, String::new()))
                .collect();
            prop_assert_eq!(matched(&subs, t), want, "topic {}", t);
        }
        // Unsubscribing everything leaves an empty table.
        for (i, f) in &kept {
            prop_assert!(subs.unsubscribe(f, i));
        }
        prop_assert!(subs.is_empty());
    }
}

#[test]
fn hash_matches_its_parent_level_and_plus_one_level_only() {
    let mut subs = Subscriptions::new();
    subs.subscribe("sport/tennis/#", 1u32, ());
    subs.subscribe("sport/+", 2, ());
    subs.subscribe("+/+", 3, ());
    subs.subscribe("/finance", 4, ());
    let who = |t: &str| {
        matched(&subs, t)
            .into_iter()
            .map(|(w, _)| w)
            .collect::<Vec<_>>()
    };
    assert_eq!(who("sport/tennis"), vec![1, 2, 3]);
    assert_eq!(who("sport/tennis/player1/ranking"), vec![1]);
    assert_eq!(who("sport"), Vec::<u32>::new());
    assert_eq!(who("sport/"), vec![2, 3], "an empty level is a level");
    assert_eq!(who("/finance"), vec![3, 4]);
}

#[test]
fn shared_groups_take_turns_and_plain_subscribers_get_everything() {
    let mut subs = Subscriptions::new();
    subs.subscribe("$share/workers/jobs/+", "w1", ());
    subs.subscribe("$share/workers/jobs/+", "w2", ());
    subs.subscribe("$share/audit/jobs/#", "a1", ());
    subs.subscribe("jobs/+", "watcher", ());
    let mut counts = std::collections::HashMap::new();
    for i in 0..100 {
        subs.matches(&format!("jobs/{i}"), |who, _| {
            *counts.entry(*who).or_insert(0) += 1
        });
    }
    assert_eq!(counts["w1"], 50);
    assert_eq!(counts["w2"], 50);
    assert_eq!(counts["a1"], 100, "a group of one gets all");
    assert_eq!(counts["watcher"], 100);
    // A member leaving: the other takes everything.
    assert!(subs.unsubscribe("$share/workers/jobs/+", &"w1"));
    let mut got = Vec::new();
    subs.matches("jobs/x", |who, _| got.push(*who));
    got.sort();
    assert_eq!(got, vec!["a1", "w2", "watcher"]);
    assert!(!subs.unsubscribe("$share/nobody/jobs/+", &"w2"));
}

#[test]
fn a_million_subscriptions_match_in_microseconds_and_go_away() {
    let mut subs = Subscriptions::new();
    let t = Instant::now();
    for i in 0..1_000_000u32 {
        subs.subscribe(&format!("devices/{i}/+"), i, ());
    }
    let built = t.elapsed();
    assert_eq!(subs.len(), 1_000_000);
    subs.subscribe("devices/#", u32::MAX, ());
    let t = Instant::now();
    let mut got = Vec::new();
    for _ in 0..1000 {
        got.clear();
        subs.matches("devices/424242/temperature", |who, _| got.push(*who));
    }
    let per_match = t.elapsed() / 1000;
    got.sort();
    assert_eq!(got, vec![424_242, u32::MAX]);
    eprintln!("1,000,000 subscriptions built in {built:?}; a match takes {per_match:?}");
    // Generous: a match walks three levels whatever the table's size.
    assert!(per_match.as_millis() < 5, "{per_match:?}");
    for i in 0..1_000_000u32 {
        assert!(subs.unsubscribe(&format!("devices/{i}/+"), &i));
    }
    assert_eq!(subs.len(), 1);
}

#[test]
fn a_shared_group_alternates_between_its_preferred_members_and_falls_back_to_any() {
    let mut subs = Subscriptions::new();
    for (who, ready) in [("a", true), ("b", false), ("c", true)] {
        subs.subscribe("$share/g/t", who, ready);
    }
    let mut picked = Vec::new();
    for _ in 0..6 {
        subs.matches_preferring("t", |ready| *ready, |who, _| picked.push(*who));
    }
    assert_eq!(picked, ["a", "c", "a", "c", "a", "c"]);
    // With none preferred, the turn goes round them all.
    let mut picked = Vec::new();
    for _ in 0..3 {
        subs.matches_preferring("t", |_| false, |who, _| picked.push(*who));
    }
    picked.sort();
    assert_eq!(picked, ["a", "b", "c"]);
}
