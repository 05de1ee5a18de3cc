//! The import graph of the node's modules has no loop (issue 12's rule).
//!
//! Every file under `src/` belongs to a top-level module (`api/ledger.rs`
//! to `api`). A module depends on another when its non-test code names
//! `crate::OTHER`. Test code (`#[cfg(test)]` items, `*_tests.rs`,
//! `test_fixtures.rs`) may reach anywhere and is left out, as are comment
//! lines. A loop means modules that cannot be read, changed or moved apart;
//! docs/layout.md draws the layers this test keeps.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The source of `text` without its `#[cfg(test)]` items.
fn without_test_items(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        // The item ends at its `;` (a `mod x;` declaration) or at the brace
        // that closes its first `{`.
        let (semi, brace) = (after.find(';'), after.find('{'));
        let end = match (semi, brace) {
            (Some(s), Some(b)) if s < b => s + 1,
            (_, Some(b)) => {
                let mut depth = 0usize;
                let mut end = after.len();
                for (i, c) in after[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (Some(s), None) => s + 1,
            (None, None) => after.len(),
        };
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The `crate::NAME` paths named in `code` (plain and in `use crate::{a, b}`
/// groups).
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        // `trib_crate::` or `$crate::` are other crates.
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for part in inner.split(',') {
                let name = ident(part.trim());
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// Module → the modules its non-test code names (comment lines left out), for every file under `src`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let file = rel.file_name().and_then(|f| f.to_str()).unwrap_or("");
            if path.extension().and_then(|e| e.to_str()) != Some("rs")
                || file.ends_with("_tests.rs")
                || file == "tests.rs"
                || file == "test_fixtures.rs"
            {
                continue;
            }
            let top = rel
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .unwrap_or("")
                .trim_end_matches(".rs")
                .to_string();
            if top == "lib" || top == "main" || top == "bin" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source is readable");
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            let names = named_modules(&without_test_items(&code));
            let deps = graph.entry(top.clone()).or_default();
            deps.extend(names.into_iter().filter(|n| *n != top));
        }
    }
    graph
}

/// The loops of `graph`: every strongly connected set of two or more modules.
fn loops(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Two modules are in one loop when each reaches the other.
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for d in graph.get(&m).into_iter().flatten() {
                if graph.contains_key(d) && seen.insert(d.clone()) {
                    todo.push(d.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|m| (m, reach(m))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut placed = BTreeSet::new();
    for m in graph.keys() {
        if placed.contains(m) {
            continue;
        }
        let set: Vec<String> = graph
            .keys()
            .filter(|o| *o == m || (reaches[m].contains(*o) && reaches[*o].contains(m)))
            .cloned()
            .collect();
        if set.len() > 1 {
            placed.extend(set.iter().cloned());
            out.push(set);
        }
    }
    out
}

#[test]
fn the_node_modules_import_each_other_without_a_loop() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(
        graph.contains_key("api") && graph.contains_key("serving"),
        "the graph was not read: {graph:?}"
    );
    let found = loops(&graph);
    let edges = |set: &Vec<String>| -> Vec<String> {
        set.iter()
            .flat_map(|m| {
                graph[m]
                    .iter()
                    .filter(|d| set.contains(d))
                    .map(move |d| format!("{m} -> {d}"))
            })
            .collect()
    };
    assert!(
        found.is_empty(),
        "module loops: {:?}",
        found.iter().map(edges).collect::<Vec<_>>()
    );
}

#[test]
fn a_loop_is_found_and_test_code_is_left_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        std::fs::write(path, text).expect("write");
    };
    write("a.rs", "use crate::b::B;\n");
    write("b/mod.rs", "use crate::{c, d::D};\n");
    write("c.rs", "fn f() { crate::a::g() }\n");
    write(
        "d.rs",
        "//! [`crate::a`]\n#[cfg(test)]\nmod tests {\n    use crate::a;\n}\n",
    );
    write("d_tests.rs", "use crate::a;\n");
    let graph = module_graph(dir.path());
    assert_eq!(
        loops(&graph),
        vec![vec!["a".to_string(), "b".into(), "c".into()]]
    );
    assert!(
        graph["d"].is_empty(),
        "test code and comments count: {:?}",
        graph["d"]
    );
}
