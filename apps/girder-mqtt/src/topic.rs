//! The subscription table: topic filters in a trie, one level per node, matched against a
//! published topic name in time proportional to the levels it has, not to the number of
//! subscriptions (§4.7). Shared subscriptions (`$share/{group}/{filter}`, 5.0 §4.8.2) sit in the
//! trie beside the others, as groups whose members take turns.
//!
//! The rules it keeps:
//! * `+` matches exactly one level, `#` any number of levels including none (`a/#` matches `a`);
//! * a filter starting with a wildcard does not match a topic starting with `$` (§4.7.2), so
//!   `#` never delivers `$SYS/...`;
//! * a subscriber subscribes to a filter once: subscribing again replaces its options.
//!
//! ```
//! use girder_mqtt::topic::Subscriptions;
//! let mut subs = Subscriptions::new();
//! subs.subscribe("sport/+/score", "alice", 1);
//! subs.subscribe("sport/#", "bob", 0);
//! subs.subscribe("#", "carol", 0);
//! let mut got = Vec::new();
//! subs.matches("sport/tennis/score", |who, qos| got.push((*who, *qos)));
//! got.sort();
//! assert_eq!(got, vec![("alice", 1), ("bob", 0), ("carol", 0)]);
//! let mut sys = Vec::new();
//! subs.matches("$SYS/uptime", |who, _| sys.push(*who));
//! assert!(sys.is_empty(), "wildcards at the first level do not match $ topics");
//! ```

/// Keyed by what clients choose (topic levels, client ids): seeded per process. The retained
/// store's tree uses it too.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Subscriptions of subscribers `S`, each with options `V`.
#[derive(Debug)]
pub struct Subscriptions<S, V> {
    root: Node<S, V>,
    len: usize,
}

#[derive(Debug)]
struct Node<S, V> {
    children: HashMap<Box<str>, Node<S, V>>,
    /// Filters that end here.
    here: HashMap<S, V>,
    /// Filters that end here with `/#` (they match here too, and everything below).
    below: HashMap<S, V>,
    /// Shared subscriptions ending here, by group.
    shared: HashMap<Box<str>, Group<S, V>>,
    /// Shared subscriptions ending here with `/#`, by group.
    shared_below: HashMap<Box<str>, Group<S, V>>,
}

impl<S, V> Default for Node<S, V> {
    fn default() -> Self {
        Node {
            children: HashMap::default(),
            here: HashMap::default(),
            below: HashMap::default(),
            shared: HashMap::default(),
            shared_below: HashMap::default(),
        }
    }
}

/// A shared subscription's members; each matching message goes to the next one in turn.
#[derive(Debug)]
struct Group<S, V> {
    members: Vec<(S, V)>,
    next: AtomicUsize,
}

impl<S, V> Node<S, V> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.here.is_empty()
            && self.below.is_empty()
            && self.shared.is_empty()
            && self.shared_below.is_empty()
    }
}

/// A shared subscription's group and the filter after it (`$share/{group}/{filter}`, 5.0
/// §4.8.2); no group and the whole filter for any other.
///
/// ```
/// use girder_mqtt::topic::shared_group;
/// assert_eq!(shared_group("$share/g/a/#"), (Some("g"), "a/#"));
/// assert_eq!(shared_group("a/#"), (None, "a/#"));
/// ```
pub fn shared_group(filter: &str) -> (Option<&str>, &str) {
    match filter
        .strip_prefix("$share/")
        .and_then(|r| r.split_once('/'))
    {
        Some((group, inner)) => (Some(group), inner),
        None => (None, filter),
    }
}

/// A filter taken apart: its shared group, its levels (without a final `#`), and whether it
/// ends with `#`.
fn parse(filter: &str) -> (Option<&str>, Vec<&str>, bool) {
    let (group, filter) = shared_group(filter);
    let mut levels: Vec<&str> = filter.split('/').collect();
    let hash = levels.last() == Some(&"#");
    if hash {
        levels.pop();
    }
    (group, levels, hash)
}

impl<S: Clone + Eq + Hash, V> Default for Subscriptions<S, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Clone + Eq + Hash, V> Subscriptions<S, V> {
    /// An empty table.
    pub fn new() -> Self {
        Subscriptions {
            root: Node::default(),
            len: 0,
        }
    }

    /// Subscriptions held, shared ones included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Subscribes `who` to `filter` (already checked with
    /// [`check_filter`](crate::codec::subscribe::check_filter)) with `options`; returns true if
    /// it is new, false if it replaced `who`'s options for the same filter.
    ///
    /// ```
    /// let mut subs = girder_mqtt::topic::Subscriptions::new();
    /// assert!(subs.subscribe("a/b", 1u32, "qos0"));
    /// assert!(!subs.subscribe("a/b", 1u32, "qos1"));
    /// assert_eq!(subs.len(), 1);
    /// ```
    pub fn subscribe(&mut self, filter: &str, who: S, options: V) -> bool {
        let (group, levels, hash) = parse(filter);
        let mut node = &mut self.root;
        for level in levels {
            node = node.children.entry(level.into()).or_default();
        }
        let new = match group {
            None => {
                let map = if hash {
                    &mut node.below
                } else {
                    &mut node.here
                };
                map.insert(who, options).is_none()
            }
            Some(group) => {
                let groups = if hash {
                    &mut node.shared_below
                } else {
                    &mut node.shared
                };
                let g = groups.entry(group.into()).or_insert_with(|| Group {
                    members: Vec::new(),
                    next: AtomicUsize::new(0),
                });
                match g.members.iter_mut().find(|(s, _)| *s == who) {
                    Some(member) => {
                        member.1 = options;
                        false
                    }
                    None => {
                        g.members.push((who, options));
                        true
                    }
                }
            }
        };
        if new {
            self.len += 1;
        }
        new
    }

    /// Removes `who`'s subscription to `filter`; returns whether it had one. Nodes left empty
    /// are removed, so the table shrinks as clients leave.
    ///
    /// ```
    /// let mut subs = girder_mqtt::topic::Subscriptions::new();
    /// subs.subscribe("a/+", "c", ());
    /// assert!(subs.unsubscribe("a/+", &"c"));
    /// assert!(!subs.unsubscribe("a/+", &"c"));
    /// assert!(subs.is_empty());
    /// ```
    pub fn unsubscribe(&mut self, filter: &str, who: &S) -> bool {
        let (group, levels, hash) = parse(filter);
        let removed = remove(&mut self.root, &levels, group, hash, who);
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Keeps only the subscriptions for which `keep(who, options)` is true, and returns how
    /// many were removed. It walks the whole table: for cleaning up after a subscriber that
    /// went without unsubscribing, not for the common path.
    ///
    /// ```
    /// let mut subs = girder_mqtt::topic::Subscriptions::new();
    /// subs.subscribe("a/b", "alice", 0);
    /// subs.subscribe("$share/g/a/#", "alice", 1);
    /// subs.subscribe("a/+", "bob", 0);
    /// assert_eq!(subs.retain(|who, _| *who != "alice"), 2);
    /// assert_eq!(subs.len(), 1);
    /// ```
    pub fn retain(&mut self, mut keep: impl FnMut(&S, &V) -> bool) -> usize {
        let removed = retain(&mut self.root, &mut keep);
        self.len -= removed;
        removed
    }

    /// Calls `deliver` for every subscription matching the topic name `topic`: each plain
    /// subscription, and one member per shared group (the next in turn). A subscriber with
    /// several matching filters is called once per filter.
    pub fn matches(&self, topic: &str, deliver: impl FnMut(&S, &V)) {
        self.matches_preferring(topic, |_| true, deliver)
    }

    /// As [`matches`](Self::matches), but a shared group's turn passes over members that are
    /// not `preferred` (an offline client, one that is behind), unless none is.
    ///
    /// ```
    /// use girder_mqtt::topic::Subscriptions;
    /// let mut subs = Subscriptions::new();
    /// subs.subscribe("$share/g/t", "offline", false);
    /// subs.subscribe("$share/g/t", "online", true);
    /// for _ in 0..4 {
    ///     let mut got = Vec::new();
    ///     subs.matches_preferring("t", |online| *online, |who, _| got.push(*who));
    ///     assert_eq!(got, ["online"]);
    /// }
    /// ```
    pub fn matches_preferring(
        &self,
        topic: &str,
        prefer: impl Fn(&V) -> bool,
        mut deliver: impl FnMut(&S, &V),
    ) {
        let dollar = topic.starts_with('$');
        // The levels on the stack for the common depths: a publish allocates nothing here.
        const DEPTH: usize = 16;
        let mut stack = [""; DEPTH];
        let mut n = 0;
        for level in topic.split('/') {
            if n == DEPTH {
                let levels: Vec<&str> = topic.split('/').collect();
                return walk(&self.root, &levels, 0, dollar, &prefer, &mut deliver);
            }
            stack[n] = level;
            n += 1;
        }
        walk(&self.root, &stack[..n], 0, dollar, &prefer, &mut deliver);
    }
}

fn walk<S, V>(
    node: &Node<S, V>,
    levels: &[&str],
    depth: usize,
    dollar: bool,
    prefer: &impl Fn(&V) -> bool,
    deliver: &mut impl FnMut(&S, &V),
) {
    // At the root of a `$` topic, wildcards do not match the first level (§4.7.2).
    let wild_ok = !(dollar && depth == 0);
    if wild_ok {
        // `#` here matches this level and everything below it, including nothing more.
        for (s, v) in &node.below {
            deliver(s, v);
        }
        for g in node.shared_below.values() {
            pick(g, prefer, deliver);
        }
    }
    let Some((level, rest)) = levels.split_first() else {
        for (s, v) in &node.here {
            deliver(s, v);
        }
        for g in node.shared.values() {
            pick(g, prefer, deliver);
        }
        return;
    };
    if let Some(child) = node.children.get(*level) {
        walk(child, rest, depth + 1, dollar, prefer, deliver);
    }
    if wild_ok {
        if let Some(plus) = node.children.get("+") {
            walk(plus, rest, depth + 1, dollar, prefer, deliver);
        }
    }
}

/// The next member of a shared group, in turn, passing over those not preferred (if any is).
fn pick<S, V>(g: &Group<S, V>, prefer: &impl Fn(&V) -> bool, deliver: &mut impl FnMut(&S, &V)) {
    let n = g.members.len();
    if n == 0 {
        return;
    }
    let turn = g.next.fetch_add(1, Ordering::Relaxed);
    let i = (0..n)
        .map(|k| (turn + k) % n)
        .find(|&i| prefer(&g.members[i].1))
        .unwrap_or(turn % n);
    if i != turn % n {
        // The turn moves on past the one chosen, so the preferred members still alternate.
        g.next.store(i + 1, Ordering::Relaxed);
    }
    let (s, v) = &g.members[i];
    deliver(s, v);
}

fn remove<S: Eq + Hash, V>(
    node: &mut Node<S, V>,
    levels: &[&str],
    group: Option<&str>,
    hash: bool,
    who: &S,
) -> bool {
    let Some((level, rest)) = levels.split_first() else {
        return match group {
            None => {
                let map = if hash {
                    &mut node.below
                } else {
                    &mut node.here
                };
                map.remove(who).is_some()
            }
            Some(group) => {
                let groups = if hash {
                    &mut node.shared_below
                } else {
                    &mut node.shared
                };
                let Some(g) = groups.get_mut(group) else {
                    return false;
                };
                let before = g.members.len();
                g.members.retain(|(s, _)| s != who);
                let removed = g.members.len() < before;
                if g.members.is_empty() {
                    groups.remove(group);
                }
                removed
            }
        };
    };
    let Some(child) = node.children.get_mut(*level) else {
        return false;
    };
    let removed = remove(child, rest, group, hash, who);
    if child.is_empty() {
        node.children.remove(*level);
    }
    removed
}

fn retain<S, V>(node: &mut Node<S, V>, keep: &mut impl FnMut(&S, &V) -> bool) -> usize {
    let mut removed = 0;
    for map in [&mut node.here, &mut node.below] {
        let before = map.len();
        map.retain(|s, v| keep(s, v));
        removed += before - map.len();
    }
    for groups in [&mut node.shared, &mut node.shared_below] {
        groups.retain(|_, g| {
            let before = g.members.len();
            g.members.retain(|(s, v)| keep(s, v));
            removed += before - g.members.len();
            !g.members.is_empty()
        });
    }
    node.children.retain(|_, child| {
        removed += retain(child, keep);
        !child.is_empty()
    });
    removed
}
