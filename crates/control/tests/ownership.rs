//! One owner per table: the control database's tables are read and written
//! only by `floopy-control-db` (its `tables` modules, the gateway's load
//! and the limits exchange), and its rows are read by column name. The
//! handlers, the jobs, the commands and the gateway call those functions;
//! a query against one of the tables anywhere else, or a positional
//! `row.get(0)` in the control crates, fails here with the file and line.
//! Tests and benchmarks seed and inspect the database directly and are not
//! checked.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The tables the migrations create.
fn tables() -> Vec<String> {
    let mut tables = Vec::new();
    let dir = workspace().join("crates/control-db/migrations");
    for entry in std::fs::read_dir(&dir).expect("the migrations") {
        let sql = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let lower = sql.to_lowercase();
        for part in lower.split("create table").skip(1) {
            let name: String = part
                .trim_start()
                .trim_start_matches("if not exists")
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && !tables.contains(&name) {
                tables.push(name);
            }
        }
    }
    tables
}

/// The product's source files outside `floopy-control-db`: the gateway's
/// `src/` and every other crate's `src/`.
fn product_sources() -> Vec<PathBuf> {
    let root = workspace();
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    for entry in std::fs::read_dir(root.join("crates")).unwrap().flatten() {
        if entry.file_name() != "control-db" {
            rust_files(&entry.path().join("src"), &mut files);
        }
    }
    files
}

/// Whether `text` names `table` in one of SQL's table positions: after
/// `FROM`, `INTO`, `UPDATE`, `JOIN` or `TABLE` (any case) and whitespace.
fn queries_table(text: &str, table: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(table).any(|(at, _)| {
        let before = &text[..at];
        let after = &text[at + table.len()..];
        if after.starts_with(ident) || !before.ends_with(char::is_whitespace) {
            return false;
        }
        let before = before.trim_end();
        let word_start = before.rfind(|c: char| !ident(c)).map_or(0, |i| i + 1);
        let word = &before[word_start..];
        ["FROM", "INTO", "UPDATE", "JOIN", "TABLE"]
            .iter()
            .any(|k| word.eq_ignore_ascii_case(k))
    })
}

#[test]
fn the_tables_are_found() {
    let tables = tables();
    for expected in [
        "api_keys",
        "organizations",
        "audit_log",
        "budgets",
        "alerts",
    ] {
        assert!(
            tables.iter().any(|t| t == expected),
            "{expected} not in {tables:?}"
        );
    }
    assert!(queries_table(
        "\"SELECT id FROM api_keys WHERE\"",
        "api_keys"
    ));
    assert!(queries_table("insert into  budgets (", "budgets"));
    assert!(!queries_table("let api_keys = keys.len();", "api_keys"));
    assert!(!queries_table("u64::from(alerts::fire(&tx))", "alerts"));
    assert!(!queries_table("FROM api_keys_old", "api_keys"));
}

#[test]
fn only_the_control_database_crate_queries_its_tables() {
    let tables = tables();
    let files = product_sources();
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for table in &tables {
                if queries_table(line, table) {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "queries of the control database outside floopy-control-db (add a function to its \
         tables module instead):\n{}",
        found.join("\n")
    );
}

/// A call `.get(<digits>)` or `.get::<_, T>(<digits>)`: a column by
/// position.
fn positional_get(line: &str) -> bool {
    let mut rest = line;
    while let Some(at) = rest.find(".get") {
        let after = &rest[at + 4..];
        let after = match after.strip_prefix("::<") {
            Some(generic) => match generic.find(">(") {
                Some(end) => &generic[end + 1..],
                None => "",
            },
            None => after,
        };
        if let Some(args) = after.strip_prefix('(') {
            let digits: String = args.chars().take_while(|c| c.is_ascii_digit()).collect();
            if !digits.is_empty() && args[digits.len()..].starts_with(')') {
                return true;
            }
        }
        rest = &rest[at + 4..];
    }
    false
}

#[test]
fn rows_are_read_by_column_name() {
    assert!(positional_get("let id: Uuid = row.get(0);"));
    assert!(positional_get("row.get::<_, i64>(6)"));
    assert!(!positional_get("row.try_get(\"id\")?"));
    assert!(!positional_get("map.get(&key)"));
    let root = workspace();
    let mut files = Vec::new();
    rust_files(&root.join("crates/control-db/src"), &mut files);
    rust_files(&root.join("crates/control/src"), &mut files);
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if positional_get(line) {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "columns read by position (read them by name with try_get):\n{}",
        found.join("\n")
    );
}
