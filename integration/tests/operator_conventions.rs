//! What operators expect of every binary: `--version`, and JSON log lines
//! on request (`--log-format json`, or `log_format` through the
//! environment), each carrying the process's span fields.

use std::time::Duration;

use checkraft_integration::{bin_dir, free_port, TEST_CLUSTER_SECRET, TEST_GATEWAY_SECRET};

#[test]
fn every_binary_answers_version() {
    for name in ["checkraft-node", "checkraft-gateway", "raftctl"] {
        let out = std::process::Command::new(bin_dir().join(name))
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name} --version: {}", out.status);
        assert_eq!(
            text.trim(),
            format!("{name} {}", env!("CARGO_PKG_VERSION")),
            "{name}"
        );
    }
}

/// Runs `binary args` with `env` for a moment, then returns its stdout.
async fn logs_of(binary: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let child = tokio::process::Command::new(bin_dir().join(binary))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = child.id().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("stops on SIGTERM")
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_lines(text: &str, span_field: &str, expected: u64) {
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 2, "too few log lines: {text}");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        assert!(v["fields"]["message"].is_string(), "{line}");
        assert_eq!(v["span"][span_field], expected, "{line}");
    }
}

#[tokio::test]
async fn nodes_and_gateways_log_json_lines_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let data = dir.path().join("node").display().to_string();
    let node = logs_of(
        "checkraft-node",
        &[
            "--id",
            "7",
            "--listen",
            &listen,
            "--data-dir",
            &data,
            "--log-format",
            "json",
        ],
        &[("CHECKRAFT_NODE_CLUSTER_SECRET", TEST_CLUSTER_SECRET)],
    )
    .await;
    json_lines(&node, "node_id", 7);

    let listen = format!("127.0.0.1:{}", free_port());
    let gateway = logs_of(
        "checkraft-gateway",
        &["--id", "4", "--listen", &listen, "--cluster", "127.0.0.1:9"],
        &[
            ("CHECKRAFT_GATEWAY_GATEWAY_SECRET", TEST_GATEWAY_SECRET),
            ("CHECKRAFT_GATEWAY_LOG_FORMAT", "json"),
        ],
    )
    .await;
    json_lines(&gateway, "gateway_id", 4);
}
