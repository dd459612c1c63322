//! systemd readiness (`Type=notify`), through the `sd-notify` crate.

use std::time::Duration;

/// How often [`when_ready`] runs its check.
pub const POLL: Duration = Duration::from_millis(200);

/// Runs `ready` every [`POLL`] until it passes, then sends systemd
/// `READY=1`. Meanwhile, `STATUS=` carries the first line of the reason
/// it gives, sent only when that line changes. Returns at once when
/// `NOTIFY_SOCKET` is unset (not under systemd).
pub async fn when_ready(mut ready: impl FnMut() -> Result<(), String>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let mut last = String::new();
    while let Err(reasons) = ready() {
        let first = reasons.lines().next().unwrap_or_default().to_string();
        if first != last {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&first)]);
            last = first;
        }
        tokio::time::sleep(POLL).await;
    }
    match sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("serving"),
    ]) {
        Ok(()) => tracing::info!("ready: notified systemd"),
        Err(e) => tracing::warn!(error = %e, "ready, but notifying systemd failed"),
    }
}

/// Sends systemd `STOPPING=1`, when `NOTIFY_SOCKET` is set.
pub fn stopping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
}
