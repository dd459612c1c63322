//! The deployment files of `docs/deploy/` are valid for the tools that
//! run them: `systemd-analyze verify` on the systemd units, `caddy
//! validate` on the public Caddyfile and on the repository's Caddyfile.
//! Each check is skipped, saying so, where its tool is missing
//! (`integration/run-tests` installs both).

use std::path::{Path, PathBuf};
use std::process::Command;

use checkraft_integration::bin_dir;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

#[test]
fn systemd_units_verify() {
    if !on_path("systemd-analyze") {
        eprintln!("SKIPPED: systemd-analyze is not installed (apt-get install systemd)");
        return;
    }
    // verify checks that ExecStart's binary exists: point the copies at
    // the binaries this workspace built.
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for name in ["checkraft-node.service", "checkraft-gateway.service"] {
        let text = std::fs::read_to_string(repo().join("docs/deploy").join(name)).unwrap();
        assert!(text.contains("ExecStart=/usr/local/bin/"), "{name}");
        for needed in ["Type=notify", "Restart=always", "LimitNOFILE="] {
            assert!(text.contains(needed), "{name} lacks {needed}");
        }
        let local = text.replace(
            "ExecStart=/usr/local/bin/",
            &format!("ExecStart={}/", bin_dir().display()),
        );
        let path = dir.path().join(name);
        std::fs::write(&path, local).unwrap();
        units.push(path);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Complaints about our units name them; anything else (the host's own
    // units) is not ours to judge.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("checkraft-"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify ({}):\n{}",
        out.status,
        ours.join("\n")
    );
}

fn caddy_validate(file: &Path, env: &[(&str, &str)]) {
    let out = Command::new("caddy")
        .args(["validate", "--adapter", "caddyfile", "--config"])
        .arg(file)
        .envs(env.iter().copied())
        .output()
        .expect("run caddy");
    assert!(
        out.status.success(),
        "caddy validate {}:\n{}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn caddyfiles_validate() {
    if !on_path("caddy") {
        eprintln!("SKIPPED: caddy is not installed (apt-get install caddy)");
        return;
    }
    let assets = repo().join("assets").display().to_string();
    caddy_validate(
        &repo().join("docs/deploy/Caddyfile.public"),
        &[("CHECKRAFT_ASSETS", &assets)],
    );
    caddy_validate(
        &repo().join("Caddyfile"),
        &[
            ("CHECKRAFT_ASSETS", &assets),
            ("CHECKRAFT_GATEWAYS", "127.0.0.1:8081 127.0.0.1:8082"),
        ],
    );
}
