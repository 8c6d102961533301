use super::*;
use floopy_model::{hash_key, DEFAULT_PROJECT_ID};

const MINIMAL: &str = r#"
server:
  listen: "127.0.0.1:8080"
  admin_listen: "127.0.0.1:9090"
providers:
  - name: local
    kind: openai
    base_url: "http://127.0.0.1:1/prefix/"
    models: [m1]
pricing:
  - { model: m1, input_per_mtok_usd: 2.5, output_per_mtok_usd: 10 }
control:
  source: file
  orgs:
    - id: "0190a000-0000-7000-8000-000000000001"
      name: "Org"
      plan: starter
      projects:
        - { id: "0190a000-0000-7000-8000-0000000000c1", name: "Checkout", slug: "checkout" }
      api_keys:
        - id: "0190a000-0000-7000-8000-00000000000a"
          name: "dev"
          environment: development
          default_project_id: "0190a000-0000-7000-8000-0000000000c1"
          secret: "fpk_0123456789abcdefghijklmnopqrstuv"
      environment_limits:
        - { environment: development, rpm: 60, monthly_cost_usd: 12.5 }
log_sink:
  kind: file
  path: "var/logs.jsonl"
"#;

fn errors_of(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

fn assert_error(text: &str, expected: &str) {
    let errors = errors_of(text);
    assert!(
        errors.iter().any(|e| e.contains(expected)),
        "expected an error containing {expected:?}, got {errors:#?}"
    );
}

#[test]
fn minimal_config_loads_with_defaults() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    assert_eq!(config.server.grace_period_seconds, 10);
    let p = &config.providers[0];
    assert_eq!(p.endpoint.path_prefix, "/prefix");
    assert_eq!(p.endpoint.host_header, "127.0.0.1:1");
    assert!(!p.endpoint.tls);
    assert_eq!(
        config.prices[0].1.cached_input, 2_500_000,
        "cached defaults to input"
    );
    let ControlSource::File(data) = &config.control else {
        panic!("the file control source");
    };
    assert_eq!(data.projects.len(), 2, "the Default project is added");
    assert!(data.projects.iter().any(|p| p.id == DEFAULT_PROJECT_ID));
    assert_eq!(
        data.environment_limits[0].monthly_cost_micro_usd,
        Some(12_500_000)
    );
    assert_eq!(
        data.api_keys[0].hash,
        hash_key(b"fpk_0123456789abcdefghijklmnopqrstuv")
    );
}

#[test]
fn unknown_fields_are_errors_with_their_path() {
    let text = MINIMAL.replace("    kind: openai", "    kind: openai\n    colour: red");
    assert_error(&text, "providers[0].colour: unknown field `colour`");
}

#[test]
fn an_unknown_key_with_an_empty_name_at_the_root_is_named_root() {
    // Found by the config fuzz target: the error had an empty path.
    let text = format!("{MINIMAL}\n\"\": 1\n");
    let errors = errors_of(&text);
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("(root): unknown field ``")),
        "{errors:?}"
    );
}

#[test]
fn wrong_types_name_the_field() {
    let text = MINIMAL.replace("rpm: 60", "rpm: lots");
    assert_error(&text, "control.orgs[0].environment_limits[0].rpm");
}

#[test]
fn every_semantic_error_is_reported_with_its_path() {
    let text = MINIMAL
        .replace("http://127.0.0.1:1/prefix/", "ftp://x")
        .replace("slug: \"checkout\"", "slug: \"Check Out\"")
        .replace("fpk_0123456789abcdefghijklmnopqrstuv", "short")
        .replace("input_per_mtok_usd: 2.5", "input_per_mtok_usd: -1");
    let errors = errors_of(&text);
    for expected in [
        "providers[0].base_url: \"ftp://x\" must start with http:// or https://",
        "control.orgs[0].projects[0].slug",
        "control.orgs[0].api_keys[0].secret: must look like fpk_",
        "pricing[0].input_per_mtok_usd: -1 is not an amount in USD",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "missing {expected:?} in {errors:#?}"
        );
    }
}

#[test]
fn serde_parses_names_addresses_and_non_zero_numbers_with_their_path() {
    for (from, to, expected) in [
        (
            "kind: openai",
            "kind: cohere",
            "providers[0].kind: unknown variant `cohere`, expected `openai` or `anthropic`",
        ),
        (
            "environment: development\n          default",
            "environment: prod\n          default",
            "control.orgs[0].api_keys[0].environment: unknown variant `prod`",
        ),
        (
            "plan: starter",
            "plan: gold",
            "control.orgs[0].plan: unknown variant `gold`",
        ),
        (
            "rpm: 60",
            "rpm: 0",
            "control.orgs[0].environment_limits[0].rpm: invalid value",
        ),
        (
            "listen: \"127.0.0.1:8080\"",
            "listen: \"nowhere\"",
            "server.listen: invalid",
        ),
        (
            "source: file",
            "source: yaml",
            "control.source: unknown variant `yaml`",
        ),
        (
            "kind: file",
            "kind: syslog",
            "log_sink.kind: unknown variant `syslog`",
        ),
    ] {
        assert!(MINIMAL.contains(from), "{from}");
        let errors = errors_of(&MINIMAL.replacen(from, to, 1));
        assert!(
            errors.len() == 1 && errors[0].starts_with(expected),
            "expected {expected:?}, got {errors:#?}"
        );
    }
}

#[test]
fn plan_quota_counts_the_default_project() {
    let text = MINIMAL.replace("plan: starter", "plan: free");
    assert_error(
        &text,
        "control.orgs[0].projects: 2 projects (Default included) exceed the plan's quota of 1",
    );
}

#[test]
fn key_must_reference_a_project_of_its_org() {
    let text = MINIMAL.replace(
        "default_project_id: \"0190a000-0000-7000-8000-0000000000c1\"",
        "default_project_id: \"0190a000-0000-7000-8000-0000000000ff\"",
    );
    assert_error(
        &text,
        "control.orgs[0].api_keys[0].default_project_id: project 0190a000-0000-7000-8000-0000000000ff is not a project of this org",
    );
}

#[test]
fn an_ipv6_provider_keeps_its_brackets_in_the_host_header() {
    let text = MINIMAL.replace("http://127.0.0.1:1/prefix/", "http://[::1]:8443");
    let config = parse_with(&text, Resolve::Skip).unwrap();
    let endpoint = &config.providers[0].endpoint;
    assert_eq!(endpoint.host_header, "[::1]:8443");
    assert_eq!(
        endpoint.host, "::1",
        "SNI and resolution take the bare address"
    );
    let text = MINIMAL.replace("http://127.0.0.1:1/prefix/", "http://[::1]");
    let config = parse_with(&text, Resolve::Skip).unwrap();
    assert_eq!(config.providers[0].endpoint.host_header, "[::1]");
}

#[test]
fn a_credential_that_cannot_be_a_header_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key");
    // A line break inside the key (the trailing one is trimmed).
    std::fs::write(&file, "sk-abc\ndef\n").unwrap();
    let text = MINIMAL.replace(
        "    models: [m1]",
        &format!(
            "    credential: {{ file: {:?} }}\n    models: [m1]",
            file.display().to_string()
        ),
    );
    let errors = errors_of(&text);
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("providers[0].credential:")),
        "{errors:?}"
    );
    std::fs::write(&file, "sk-abc-def\n").unwrap();
    let config = parse_with(&text, Resolve::Skip).unwrap();
    let header = config.providers[0].credential_header.as_ref().unwrap();
    assert_eq!(header, "Bearer sk-abc-def");
    assert!(header.is_sensitive());
}

#[test]
fn missing_credential_variable_is_named() {
    let text = MINIMAL.replace(
        "    models: [m1]",
        "    credential: { env: FLOOPY_TEST_SURELY_UNSET_VARIABLE }\n    models: [m1]",
    );
    assert_error(
        &text,
        "providers[0].credential.env: environment variable FLOOPY_TEST_SURELY_UNSET_VARIABLE is not set",
    );
}

#[test]
fn duplicate_models_and_slugs_are_rejected() {
    let text = MINIMAL.replace(
        "        - { id: \"0190a000-0000-7000-8000-0000000000c1\", name: \"Checkout\", slug: \"checkout\" }",
        "        - { id: \"0190a000-0000-7000-8000-0000000000c1\", name: \"Checkout\", slug: \"checkout\" }\n        - { id: \"0190a000-0000-7000-8000-0000000000c2\", name: \"Again\", slug: \"checkout\" }",
    );
    assert_error(&text, "slug \"checkout\" is already used in this org");
}

#[test]
fn shipped_example_configs_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            // The reference config reads provider keys from the environment.
            std::env::set_var("OPENAI_API_KEY", "sk-test");
            std::env::set_var("ANTHROPIC_API_KEY", "sk-ant-test");
            if let Err(errors) = load_with(&path, Resolve::Skip) {
                panic!("{} is invalid:\n{errors}", path.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 1, "no example configuration found in conf/");
}

/// The names serde lists as accepted when `text` has an unknown one: every
/// field of the struct (or every variant of the enum) at that place.
fn accepted_names(text: &str, unknown: &str) -> Vec<String> {
    let errors = errors_of(text);
    let message = errors
        .first()
        .unwrap_or_else(|| panic!("{unknown} was accepted"));
    let list = message
        .split_once("expected ")
        .unwrap_or_else(|| panic!("no list of names in {message}"))
        .1;
    let names: Vec<String> = list
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert!(!names.is_empty(), "{message}");
    names
}

#[test]
fn the_reference_configuration_documents_every_field_and_choice() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let reference = std::fs::read_to_string(dir.join("conf/gateway.yaml")).unwrap();
    // Where a field can be written: "name:" after indentation, "- " or "# ".
    let documents_field = |name: &str| {
        reference.lines().any(|line| {
            let line = line.trim_start().trim_start_matches(['#', '-', ' ']);
            line.starts_with(&format!("{name}:"))
        })
    };
    let comments: String = reference
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let documents_choice = |name: &str| {
        comments
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .any(|word| word == name)
    };
    let x = "zz_unknown: 1";
    let with_pricing = |s: &str| {
        s.replace(
            "output_per_mtok_usd: 10 }",
            &format!("output_per_mtok_usd: 10, {x} }}"),
        )
    };
    let structs = [
        ("(root)", format!("{MINIMAL}{x}\n")),
        (
            "server",
            MINIMAL.replace("server:\n", &format!("server:\n  {x}\n")),
        ),
        ("limits", format!("{MINIMAL}limits:\n  {x}\n")),
        ("timeouts", format!("{MINIMAL}timeouts:\n  {x}\n")),
        (
            "providers[]",
            MINIMAL.replace("    kind: openai", &format!("    kind: openai\n    {x}")),
        ),
        (
            "credential",
            MINIMAL.replace(
                "    kind: openai",
                &format!("    kind: openai\n    credential: {{{x}}}"),
            ),
        ),
        ("pricing[]", with_pricing(MINIMAL)),
        (
            "control",
            MINIMAL.replace("  source: file", &format!("  source: file\n  {x}")),
        ),
        (
            "orgs[]",
            MINIMAL.replace(
                "      plan: starter",
                &format!("      plan: starter\n      {x}"),
            ),
        ),
        (
            "projects[]",
            MINIMAL.replace(
                "slug: \"checkout\" }",
                &format!("slug: \"checkout\", {x} }}"),
            ),
        ),
        (
            "api_keys[]",
            MINIMAL.replace(
                "          name: \"dev\"",
                &format!("          name: \"dev\"\n          {x}"),
            ),
        ),
        (
            "environment_limits[]",
            MINIMAL.replace(
                "monthly_cost_usd: 12.5 }",
                &format!("monthly_cost_usd: 12.5, {x} }}"),
            ),
        ),
        (
            "log_sink",
            MINIMAL.replace("  kind: file", &format!("  kind: file\n  {x}")),
        ),
    ];
    let mut missing = Vec::new();
    for (section, text) in &structs {
        for field in accepted_names(text, section) {
            if !documents_field(&field) {
                missing.push(format!("{section}.{field}"));
            }
        }
    }
    let enums = [
        (
            "providers[].kind",
            MINIMAL.replace("kind: openai", "kind: zz"),
        ),
        (
            "control.source",
            MINIMAL.replace("source: file", "source: zz"),
        ),
        ("plan", MINIMAL.replace("plan: starter", "plan: zz")),
        (
            "environment",
            MINIMAL.replace("environment: development\n", "environment: zz\n"),
        ),
        (
            "log_sink.kind",
            MINIMAL.replace("  kind: file", "  kind: zz"),
        ),
        (
            "log_sink.compression",
            MINIMAL.replace("  kind: file", "  kind: file\n  compression: zz"),
        ),
    ];
    for (field, text) in &enums {
        for choice in accepted_names(text, field) {
            if !documents_choice(&choice) {
                missing.push(format!("{field}: {choice}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "conf/gateway.yaml does not document: {missing:#?}"
    );
}

#[test]
fn the_clickhouse_sink_is_checked() {
    let text = MINIMAL.replace(
        "  kind: file\n  path: \"var/logs.jsonl\"",
        "  kind: clickhouse\n  url: \"http://127.0.0.1:8123/\"\n  spool_dir: \"var/s\"",
    );
    let config = parse(&text).unwrap();
    match &config.log_sink {
        crate::logs::config::LogSinkConfig::ClickHouse(ch) => {
            assert_eq!(ch.url, "http://127.0.0.1:8123");
            assert_eq!(ch.database, "default");
            assert_eq!(ch.spool_dir, std::path::PathBuf::from("var/s"));
        }
        other => panic!("{other:?}"),
    }
    assert_error(
        &text.replace("http://127.0.0.1:8123/", "https://ch:8443"),
        "log_sink.url: \"https://ch:8443\" is not http://host:port",
    );
    assert_error(
        &text.replace("  url: \"http://127.0.0.1:8123/\"\n", ""),
        "log_sink.url: required for kind: clickhouse",
    );
    assert_error(
        &format!("{text}  topic: \"t\"\n"),
        "log_sink.topic: only for kind: kafka",
    );
    assert_error(
        &format!("{text}  database: \"a-b\"\n"),
        "log_sink.database: \"a-b\" is not a database name",
    );
    assert_error(
        &MINIMAL.replace("  kind: file", "  kind: file\n  url: \"http://x:1\""),
        "log_sink.url: only for kind: clickhouse",
    );
}
