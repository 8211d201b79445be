//! Retained messages (§3.3.1.3): the last retained message of each topic, kept for future
//! subscribers, in a trie of topic levels so a new subscription's filter finds its matches by
//! walking the levels it names (`+` every child, `#` a whole subtree) rather than every
//! retained topic.
//!
//! A retained message with an empty payload removes the topic's retained message. Wildcards
//! at the first level do not reach `$` topics (§4.7.2).
//!
//! ```
//! use girder_mqtt::retained::Retained;
//! let mut r = Retained::new();
//! r.set("home/kitchen/temp", "21");
//! r.set("home/hall/temp", "19");
//! r.set("$SYS/uptime", "5");
//! let mut got = Vec::new();
//! r.matching("home/+/temp", |topic, m| got.push((topic.to_string(), *m)));
//! got.sort();
//! assert_eq!(got, vec![("home/hall/temp".into(), "19"), ("home/kitchen/temp".into(), "21")]);
//! let mut all = Vec::new();
//! r.matching("#", |topic, _| all.push(topic.to_string()));
//! assert_eq!(all.len(), 2, "# does not reach $SYS");
//! ```

use crate::topic::HashMap;

/// Retained messages `M` by topic.
#[derive(Debug)]
pub struct Retained<M> {
    root: Level<M>,
    len: usize,
}

#[derive(Debug)]
struct Level<M> {
    children: HashMap<Box<str>, Level<M>>,
    message: Option<M>,
}

impl<M> Default for Level<M> {
    fn default() -> Self {
        Level {
            children: HashMap::default(),
            message: None,
        }
    }
}

impl<M> Default for Retained<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> Retained<M> {
    /// None retained.
    pub fn new() -> Self {
        Retained {
            root: Level::default(),
            len: 0,
        }
    }

    /// Topics with a retained message.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when none is retained.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Retains `message` for `topic` (a topic name, no wildcards), replacing what was there;
    /// returns the message it replaced.
    pub fn set(&mut self, topic: &str, message: M) -> Option<M> {
        let mut level = &mut self.root;
        for name in topic.split('/') {
            level = level.children.entry(name.into()).or_default();
        }
        let old = level.message.replace(message);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes `topic`'s retained message (what an empty retained PUBLISH does); returns it.
    /// Levels left empty go, so the trie shrinks with what it holds.
    ///
    /// ```
    /// let mut r = girder_mqtt::retained::Retained::new();
    /// r.set("a/b", 1);
    /// assert_eq!(r.remove("a/b"), Some(1));
    /// assert_eq!(r.remove("a/b"), None);
    /// assert!(r.is_empty());
    /// ```
    pub fn remove(&mut self, topic: &str) -> Option<M> {
        let levels: Vec<&str> = topic.split('/').collect();
        let old = remove(&mut self.root, &levels);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Calls `found` with each retained topic and message that the filter `filter` matches.
    pub fn matching(&self, filter: &str, mut found: impl FnMut(&str, &M)) {
        let levels: Vec<&str> = filter.split('/').collect();
        let mut path = String::new();
        walk(&self.root, &levels, 0, &mut path, &mut found);
    }
}

impl<M> Retained<M> {
    /// Calls `found` with every retained message, `$` topics included (for saving them).
    ///
    /// ```
    /// let mut r = girder_mqtt::retained::Retained::new();
    /// r.set("a/b", 1);
    /// r.set("$SYS/x", 2);
    /// let mut all = Vec::new();
    /// r.each(|m| all.push(*m));
    /// all.sort();
    /// assert_eq!(all, vec![1, 2]);
    /// ```
    pub fn each(&self, mut found: impl FnMut(&M)) {
        fn visit<M>(level: &Level<M>, found: &mut impl FnMut(&M)) {
            if let Some(m) = &level.message {
                found(m);
            }
            for child in level.children.values() {
                visit(child, found);
            }
        }
        visit(&self.root, &mut found);
    }
}

fn remove<M>(level: &mut Level<M>, names: &[&str]) -> Option<M> {
    let Some((name, rest)) = names.split_first() else {
        return level.message.take();
    };
    let child = level.children.get_mut(*name)?;
    let old = remove(child, rest);
    if child.message.is_none() && child.children.is_empty() {
        level.children.remove(*name);
    }
    old
}

fn walk<M>(
    level: &Level<M>,
    filter: &[&str],
    depth: usize,
    path: &mut String,
    found: &mut impl FnMut(&str, &M),
) {
    let Some((part, rest)) = filter.split_first() else {
        if let Some(m) = &level.message {
            found(path, m);
        }
        return;
    };
    match *part {
        "#" => {
            // `a/#` matches `a` itself too.
            if depth > 0 {
                if let Some(m) = &level.message {
                    found(path, m);
                }
            }
            for (name, child) in &level.children {
                if depth == 0 && name.starts_with('$') {
                    continue;
                }
                descend(child, name, path, depth == 0, |child, path| {
                    every(child, path, found)
                });
            }
        }
        "+" => {
            for (name, child) in &level.children {
                if depth == 0 && name.starts_with('$') {
                    continue;
                }
                descend(child, name, path, depth == 0, |child, path| {
                    walk(child, rest, depth + 1, path, found)
                });
            }
        }
        name => {
            if let Some(child) = level.children.get(name) {
                descend(child, name, path, depth == 0, |child, path| {
                    walk(child, rest, depth + 1, path, found)
                });
            }
        }
    }
}

/// Every message at and below `level`.
fn every<M>(level: &Level<M>, path: &mut String, found: &mut impl FnMut(&str, &M)) {
    if let Some(m) = &level.message {
        found(path, m);
    }
    for (name, child) in &level.children {
        descend(child, name, path, false, |child, path| {
            every(child, path, found)
        });
    }
}

/// Runs `f` on `child` with `name` added to `path` (after a `/` unless it is the `first`
/// level), then takes it off again.
fn descend<M>(
    child: &Level<M>,
    name: &str,
    path: &mut String,
    first: bool,
    f: impl FnOnce(&Level<M>, &mut String),
) {
    let len = path.len();
    if !first {
        path.push('/');
    }
    path.push_str(name);
    f(child, path);
    path.truncate(len);
}
