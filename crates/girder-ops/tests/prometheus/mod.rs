//! Reading the Prometheus text format in tests.

use std::collections::{BTreeSet, HashMap};

/// The metric families whose samples appear in `body` without a `# HELP` or a `# TYPE` line
/// (a histogram's `_bucket`, `_sum` and `_count` samples belong to its family), and how many
/// families there are.
pub fn undocumented(body: &str) -> (Vec<String>, usize) {
    let mut help = BTreeSet::new();
    let mut types = HashMap::new();
    let mut samples = BTreeSet::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help.insert(rest.split(' ').next().unwrap_or_default().to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap_or_default().to_string();
            types.insert(name, parts.next().unwrap_or_default().to_string());
        } else if !line.is_empty() && !line.starts_with('#') {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            samples.insert(line[..end].to_string());
        }
    }
    let family = |sample: &str| -> String {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = sample.strip_suffix(suffix) {
                if matches!(
                    types.get(base).map(String::as_str),
                    Some("histogram" | "summary")
                ) {
                    return base.to_string();
                }
            }
        }
        sample.to_string()
    };
    let families: BTreeSet<String> = samples.iter().map(|s| family(s)).collect();
    let missing = families
        .iter()
        .filter(|f| !help.contains(*f) || !types.contains_key(*f))
        .cloned()
        .collect();
    (missing, families.len())
}
