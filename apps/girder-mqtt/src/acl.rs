//! What each client may read and write: an ACL file in Mosquitto's `acl_file` syntax.
//!
//! ```text
//! # Anonymous clients: the topic lines before any user line.
//! topic read public/#
//!
//! user alice
//! topic readwrite alice/#
//! topic deny alice/secrets/#
//!
//! # Every client, with %c its client id and %u its user name.
//! pattern write devices/%c/status
//! ```
//!
//! `topic [read|write|readwrite|deny] FILTER` (the access defaults to `readwrite`) applies to the
//! user named by the last `user` line, or to anonymous clients before any; `pattern` lines apply
//! to every client. A `deny` that matches wins over any grant. With an ACL file, what is not
//! granted is denied. A SUBSCRIBE is granted only if a readable entry covers the whole filter
//! (every topic the filter matches), so `#` is refused to a client that may read only `a/#`.
//! A `%c` or `%u` holding `/`, `+` or `#` matches nothing, so a client cannot widen its own
//! pattern by choosing its name.
//!
//! ```
//! use girder_mqtt::acl::{Access, Acl};
//! let acl = Acl::parse("user alice\ntopic readwrite alice/#\ntopic deny alice/secrets/#\npattern write devices/%c/status\n").unwrap();
//! assert!(acl.allows(Some("alice"), "c1", "alice/notes", Access::Write));
//! assert!(!acl.allows(Some("alice"), "c1", "alice/secrets/key", Access::Read));
//! assert!(acl.allows(None, "c1", "devices/c1/status", Access::Write));
//! assert!(!acl.allows(None, "c1", "devices/c2/status", Access::Write));
//! assert!(acl.may_subscribe(Some("alice"), "c1", "alice/+/x"));
//! assert!(!acl.may_subscribe(Some("alice"), "c1", "#"));
//! ```

use std::collections::HashMap;
use std::path::Path;

/// What a client wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Receive messages published to it.
    Read,
    /// Publish to it.
    Write,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Grant {
    fn allows(self, access: Access) -> bool {
        matches!(
            (self, access),
            (Grant::ReadWrite, _) | (Grant::Read, Access::Read) | (Grant::Write, Access::Write)
        )
    }
}

#[derive(Debug, Clone)]
struct Rule {
    grant: Grant,
    filter: String,
}

/// Why an ACL file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AclError {
    /// The file could not be opened or read.
    #[error("cannot read the ACL file: {0}")]
    Io(#[from] std::io::Error),
    /// A line this syntax does not have.
    #[error("ACL file line {line}: {why}")]
    BadLine {
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
}

/// An ACL file's rules.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    anonymous: Vec<Rule>,
    users: HashMap<String, Vec<Rule>>,
    patterns: Vec<Rule>,
}

impl Acl {
    /// Reads the file at `path`.
    pub fn load(path: &Path) -> Result<Self, AclError> {
        Self::parse(&std::fs::read_to_string(path)?)
    }

    /// Reads an ACL file's text.
    pub fn parse(text: &str) -> Result<Self, AclError> {
        let mut acl = Acl::default();
        let mut user: Option<String> = None;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: String| AclError::BadLine { line: i + 1, why };
            let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim();
            match keyword {
                "user" if !rest.is_empty() => user = Some(rest.to_string()),
                "topic" | "pattern" => {
                    let rule = parse_rule(rest).map_err(bad)?;
                    let rules = match (keyword, &user) {
                        ("pattern", _) => &mut acl.patterns,
                        (_, Some(u)) => acl.users.entry(u.clone()).or_default(),
                        (_, None) => &mut acl.anonymous,
                    };
                    rules.push(rule);
                }
                other => return Err(bad(format!("unknown or incomplete line {other:?}"))),
            }
        }
        Ok(acl)
    }

    /// True if the client (`username`, or anonymous; `client_id`) may `access` the topic name
    /// `topic`.
    pub fn allows(
        &self,
        username: Option<&str>,
        client_id: &str,
        topic: &str,
        access: Access,
    ) -> bool {
        let mut granted = false;
        for (rule, filter) in self.rules(username, client_id) {
            if !matches(&filter, topic) {
                continue;
            }
            if rule.grant == Grant::Deny {
                return false;
            }
            granted |= rule.grant.allows(access);
        }
        granted
    }

    /// True if the client may subscribe to `filter` (for a shared subscription, the filter
    /// after `$share/{group}/`): a readable rule covers every topic it matches, and no deny rule
    /// covers it.
    pub fn may_subscribe(&self, username: Option<&str>, client_id: &str, filter: &str) -> bool {
        let mut granted = false;
        for (rule, acl_filter) in self.rules(username, client_id) {
            if rule.grant == Grant::Deny {
                if covers(&acl_filter, filter) {
                    return false;
                }
                continue;
            }
            granted |= rule.grant.allows(Access::Read) && covers(&acl_filter, filter);
        }
        granted
    }

    /// True if some topic `filter` matches may be denied to the client although the filter
    /// was granted: a deny rule that applies to it overlaps the filter (`a/#` granted, `a/secret`
    /// denied). Its deliveries are then checked one by one ([`allows`](Self::allows) with
    /// [`Access::Read`]), as Mosquitto checks each message it sends.
    ///
    /// ```
    /// use girder_mqtt::acl::Acl;
    /// let acl = Acl::parse("topic read a/#\ntopic deny a/secret\n").unwrap();
    /// assert!(acl.may_subscribe(None, "c1", "a/#"));
    /// assert!(acl.denies_within(None, "c1", "a/#"));
    /// assert!(!acl.denies_within(None, "c1", "a/open/+"));
    /// ```
    pub fn denies_within(&self, username: Option<&str>, client_id: &str, filter: &str) -> bool {
        self.rules(username, client_id)
            .any(|(rule, denied)| rule.grant == Grant::Deny && overlaps(&denied, filter))
    }

    /// The rules that apply to a client, with patterns' `%c` and `%u` filled in (a pattern whose
    /// substitute is missing or holds `/`, `+` or `#` is left out).
    fn rules<'a>(
        &'a self,
        username: Option<&'a str>,
        client_id: &'a str,
    ) -> impl Iterator<Item = (&'a Rule, String)> + 'a {
        let own = match username {
            Some(u) => self.users.get(u).map(Vec::as_slice).unwrap_or(&[]),
            None => &self.anonymous,
        };
        let safe = |s: &str| !s.is_empty() && !s.contains(['/', '+', '#']);
        let patterns = self.patterns.iter().filter_map(move |rule| {
            let mut filter = rule.filter.clone();
            if filter.contains("%c") {
                if !safe(client_id) {
                    return None;
                }
                filter = filter.replace("%c", client_id);
            }
            if filter.contains("%u") {
                match username {
                    Some(u) if safe(u) => filter = filter.replace("%u", u),
                    _ => return None,
                }
            }
            Some((rule, filter))
        });
        own.iter().map(|r| (r, r.filter.clone())).chain(patterns)
    }
}

fn parse_rule(rest: &str) -> Result<Rule, String> {
    let (grant, filter) = match rest.split_once(char::is_whitespace) {
        Some((word, filter)) => match word {
            "read" => (Grant::Read, filter.trim()),
            "write" => (Grant::Write, filter.trim()),
            "readwrite" => (Grant::ReadWrite, filter.trim()),
            "deny" => (Grant::Deny, filter.trim()),
            // No access word: the whole rest is the filter (which may hold spaces).
            _ => (Grant::ReadWrite, rest),
        },
        None => (Grant::ReadWrite, rest),
    };
    if filter.is_empty() {
        return Err("a rule without a topic".into());
    }
    let checked = filter.replace("%c", "c").replace("%u", "u");
    crate::codec::subscribe::check_filter(&checked).map_err(|e| e.to_string())?;
    Ok(Rule {
        grant,
        filter: filter.to_string(),
    })
}

/// Does the filter `filter` match the topic name `topic` (§4.7, the `$` rule included)?
fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Is there a topic both filters match? (The `$` rule is left out: a check it would have
/// spared is only a check too many.)
fn overlaps(a: &str, b: &str) -> bool {
    let mut x = a.split('/');
    let mut y = b.split('/');
    loop {
        match (x.next(), y.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (None, None) => return true,
            (Some(p), Some(q)) if p == q || p == "+" || q == "+" => {}
            _ => return false,
        }
    }
}

/// Does `outer` match every topic `inner` matches?
fn covers(outer: &str, inner: &str) -> bool {
    // Wildcards at the first level do not reach `$` topics (§4.7.2).
    if inner.starts_with('$') && (outer.starts_with('+') || outer.starts_with('#')) {
        return false;
    }
    let mut o = outer.split('/');
    let mut i = inner.split('/');
    loop {
        match (o.next(), i.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(level)) if level != "#" => {}
            (Some(a), Some(b)) if a == b && a != "+" && a != "#" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}
