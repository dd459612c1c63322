//! The commented sample config in testdata/ parses and matches the
//! defaults, so it cannot drift from the code.

use checkraft_gateway::config::{GatewayConfig, Overrides};

#[test]
fn sample_config_matches_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/gateway.toml");
    let loaded = GatewayConfig::load(Some(&path), Overrides::default()).unwrap();
    assert_eq!(loaded, GatewayConfig::default());
}

#[test]
fn sample_config_names_every_field() {
    let sample = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/gateway.toml"),
    )
    .unwrap();
    let defaults = serde_json::to_value(GatewayConfig::default()).unwrap();
    for field in defaults.as_object().unwrap().keys() {
        let set = format!("\n{field} = ");
        let commented = format!("\n# {field} = ");
        assert!(
            sample.contains(&set) || sample.contains(&commented),
            "testdata/gateway.toml does not mention `{field}`"
        );
    }
}

#[test]
fn the_deployment_example_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/deploy/gateway.toml");
    let config = GatewayConfig::load(Some(&path), Overrides::default()).unwrap();
    assert_eq!(config.cluster.len(), 3);
    assert_eq!(config.trusted_proxies.len(), 3);
}
