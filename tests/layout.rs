//! The README's layout section is drawn from the tree: every crate, and
//! every top-level module of the gateway and of each crate, has its line,
//! and every line names something that exists. A module added without its
//! line, or removed with its line left behind, fails here by name.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The first code block after `## Layout`.
fn layout_block() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("\n## Layout\n")
        .nth(1)
        .expect("README.md has a `## Layout` section");
    let block = section
        .split("```")
        .nth(1)
        .expect("the layout section has a code block");
    block.lines().map(str::to_string).collect()
}

/// A top-level entry (no indent) and the entries indented two spaces under
/// it; continuation lines (deeper indents) are descriptions.
struct Section {
    path: String,
    entries: Vec<String>,
}

fn sections(block: &[String]) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for line in block {
        let first = || line.split_whitespace().next().unwrap_or("").to_string();
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            out.push(Section {
                path: first(),
                entries: Vec::new(),
            });
        } else if line.starts_with("  ") && !line[2..].starts_with(' ') {
            let section = out.last_mut().expect("an entry before any section");
            section.entries.push(first());
        }
    }
    out
}

/// The top-level modules of a crate's `src/`: `name.rs` files and `name/`
/// folders.
fn modules(src: &Path) -> BTreeSet<String> {
    std::fs::read_dir(src)
        .unwrap_or_else(|e| panic!("{}: {e}", src.display()))
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().to_string();
            if entry.path().is_dir() {
                Some(format!("{name}/"))
            } else {
                name.ends_with(".rs").then_some(name)
            }
        })
        .collect()
}

#[test]
fn sections_and_entries_are_read() {
    let block: Vec<String> = [
        "src/        the gateway",
        "  main.rs   wiring",
        "            more about main.rs",
        "  proxy/    the dispatcher",
        "crates/a/   a crate",
        "  lib.rs    its map",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let sections = sections(&block);
    assert_eq!(sections.len(), 2);
    assert_eq!(sections[0].path, "src/");
    assert_eq!(sections[0].entries, ["main.rs", "proxy/"]);
    assert_eq!(sections[1].entries, ["lib.rs"]);
}

#[test]
fn the_readme_layout_lists_every_crate_and_module() {
    let root = root();
    let sections = sections(&layout_block());
    let mut missing = Vec::new();
    let mut stale = Vec::new();

    let mut crates: Vec<PathBuf> = vec![root.clone()];
    for entry in std::fs::read_dir(root.join("crates")).unwrap().flatten() {
        if entry.path().join("Cargo.toml").exists() {
            crates.push(entry.path());
        }
    }
    assert!(crates.len() >= 5, "found only {} crates", crates.len());
    for dir in &crates {
        // The gateway's modules are listed under `src/`; a crate's under
        // `crates/<name>/`.
        let heading = if dir == &root {
            "src/".to_string()
        } else {
            format!("{}/", dir.strip_prefix(&root).unwrap().display())
        };
        let Some(section) = sections.iter().find(|s| s.path == heading) else {
            missing.push(format!("{heading} (a crate)"));
            continue;
        };
        for module in modules(&dir.join("src")) {
            if !section.entries.contains(&module) {
                missing.push(format!("{heading}{module}"));
            }
        }
        for entry in &section.entries {
            if !dir.join("src").join(entry).exists() && !dir.join(entry).exists() {
                stale.push(format!("{heading} {entry}"));
            }
        }
    }
    for section in &sections {
        if !root.join(&section.path).exists() {
            stale.push(section.path.clone());
        }
    }
    assert!(
        missing.is_empty() && stale.is_empty(),
        "README.md's layout section: missing {missing:?}; names what does not exist {stale:?}"
    );
}

/// Module -> the modules it imports: for Rust, the top-level modules of a
/// crate's `src/` and the `crate::<module>` paths each one's files name
/// (unit tests excluded); for the dashboard, `import ... from "./x.js"`.
type Graph = std::collections::BTreeMap<String, BTreeSet<String>>;

fn rust_graph(src: &Path) -> Graph {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    fn walk(dir: &Path, module: &str, out: &mut Vec<(String, PathBuf)>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, module, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push((module.to_string(), path));
            }
        }
    }
    for module in modules(src) {
        let name = module.trim_end_matches('/').trim_end_matches(".rs");
        if matches!(name, "lib" | "main" | "bin") {
            continue;
        }
        let path = src.join(&module);
        if path.is_dir() {
            walk(&path, name, &mut files);
        } else {
            files.push((name.to_string(), path));
        }
    }
    let names: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut graph: Graph = names.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for (module, path) in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
        let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
        for (at, _) in text.match_indices("crate::") {
            if text[..at].ends_with(ident) {
                continue;
            }
            let rest = &text[at + "crate::".len()..];
            let targets: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .map(|p| p.trim().split("::").next().unwrap_or("").trim())
                    .collect(),
                None => vec![rest.split(|c: char| !ident(c)).next().unwrap_or("")],
            };
            for target in targets {
                if target != module && names.contains(target) {
                    graph.get_mut(module).unwrap().insert(target.to_string());
                }
            }
        }
    }
    graph
}

fn dashboard_graph(dir: &Path) -> Graph {
    let mut graph = Graph::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.ends_with(".js") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let imports = text
            .lines()
            .filter(|l| l.starts_with("import "))
            .filter_map(|l| l.split("from \"./").nth(1))
            .filter_map(|l| l.split('"').next())
            .map(str::to_string)
            .collect();
        graph.insert(name, imports);
    }
    graph
}

/// A path of imports that comes back to where it started, if any.
fn circle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(graph, next, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(graph, node, &mut Vec::new(), &mut done))
}

#[test]
fn a_circle_is_found() {
    let mut graph = Graph::new();
    graph.insert("a".into(), ["b".to_string()].into());
    graph.insert("b".into(), ["c".to_string()].into());
    graph.insert("c".into(), BTreeSet::new());
    assert_eq!(circle(&graph), None);
    graph.insert("c".into(), ["a".to_string()].into());
    assert_eq!(circle(&graph).unwrap(), ["a", "b", "c", "a"]);
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let root = root();
    let mut found = Vec::new();
    for src in [
        "src",
        "crates/control/src",
        "crates/control-db/src",
        "crates/model/src",
    ] {
        let graph = rust_graph(&root.join(src));
        assert!(graph.len() >= 4, "{src}: found only {graph:?}");
        if src == "src" {
            assert!(graph["proxy"].contains("snapshot"), "{graph:?}");
        }
        if let Some(c) = circle(&graph) {
            found.push(format!("{src}: {}", c.join(" -> ")));
        }
    }
    let dashboard = dashboard_graph(&root.join("crates/control/dashboard"));
    assert!(
        dashboard.len() >= 5,
        "the dashboard's modules: {dashboard:?}"
    );
    if let Some(c) = circle(&dashboard) {
        found.push(format!("dashboard: {}", c.join(" -> ")));
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}
