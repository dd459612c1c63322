//! The commented sample config in testdata/ parses and matches the
//! defaults, so it cannot drift from the code.

use checkraft_node::config::{NodeConfig, Overrides};

#[test]
fn sample_config_matches_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/node.toml");
    let loaded = NodeConfig::load(
        Some(&path),
        Overrides {
            id: Some(1),
            ..Overrides::default()
        },
    )
    .unwrap();
    assert_eq!(
        loaded,
        NodeConfig {
            id: 1,
            ..NodeConfig::default()
        }
    );
}

#[test]
fn unknown_fields_are_errors_and_id_may_be_unset() {
    assert!(
        NodeConfig::load(None, Overrides::default()).is_ok(),
        "id 0 means: take the stored id or wait for one"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "id = 3\nheartbeat = 5\n").unwrap();
    let err = NodeConfig::load(Some(&file), Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("heartbeat"),
        "unknown field should be named: {err}"
    );
}

#[test]
fn sample_config_names_every_field() {
    let sample = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/node.toml"),
    )
    .unwrap();
    let defaults = serde_json::to_value(NodeConfig::default()).unwrap();
    for field in defaults.as_object().unwrap().keys() {
        let set = format!("\n{field} = ");
        let commented = format!("\n# {field} = ");
        assert!(
            sample.contains(&set) || sample.contains(&commented),
            "testdata/node.toml does not mention `{field}`"
        );
    }
}

#[test]
fn the_deployment_examples_load() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/deploy");
    let mut advertised = std::collections::BTreeSet::new();
    for id in 1..=3u64 {
        let path = dir.join(format!("node-{id}.toml"));
        let config = NodeConfig::load(Some(&path), Overrides::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(config.id, id, "{}", path.display());
        assert_ne!(
            config.advertise_addr(),
            config.listen.to_string(),
            "the example shows listen and advertise apart"
        );
        advertised.insert(config.advertise_addr());
    }
    assert_eq!(advertised.len(), 3, "each host advertises its own address");
}
