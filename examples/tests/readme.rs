//! The README's programs are the examples CI runs, word for word: a snippet that drifts from
//! the code that runs fails here.

/// The first ```rust block after `heading` in the README.
fn snippet(readme: &str, heading: &str) -> String {
    let at = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let rest = &readme[at..];
    let start = rest.find("```rust\n").expect("a rust block") + "```rust\n".len();
    let len = rest[start..].find("```\n").expect("the block ends");
    rest[start..start + len].to_string()
}

fn check(heading: &str, example: &str) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let code = std::fs::read_to_string(format!("{root}/examples/{example}")).unwrap();
    assert_eq!(
        snippet(&readme, heading).trim_end(),
        code.trim_end(),
        "README's {heading:?} differs from examples/{example}"
    );
}

#[test]
fn the_supervised_server_in_the_readme_is_the_example_that_runs() {
    check("## A supervised server", "supervised_server.rs");
}

#[test]
fn across_nodes_in_the_readme_is_the_example_that_runs() {
    check("## Across nodes", "across_nodes.rs");
}

#[test]
fn protecting_a_service_in_the_readme_is_the_example_that_runs() {
    check("## Protecting a service", "protect_a_service.rs");
}
