//! The commented sample config in testdata/ parses and matches the
//! defaults, so it cannot drift from the code.

use checkraft_gateway::config::{GatewayConfig, Overrides};

#[test]
fn sample_config_matches_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/gateway.toml");
    let loaded = GatewayConfig::load(Some(&path), Overrides::default()).unwrap();
    assert_eq!(loaded, GatewayConfig::default());
}
