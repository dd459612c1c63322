//! `raftctl node stop|start ID`: a node of a running `raftctl up`, for
//! demonstrations and drills. The request goes to `up` over its control
//! socket ([`crate::control`]); then [`crate::watch`] prints what the
//! cluster does.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cli::LocalNodeArgs;
use crate::control::{self, Request};

/// Stops (`start == false`) or starts node `args.id`, then watches.
pub async fn run(args: &LocalNodeArgs, start: bool) -> Result<()> {
    let data = args
        .data_dir
        .canonicalize()
        .with_context(|| format!("the data dir {}", args.data_dir.display()))?;
    let role = "node".to_string();
    let request = if start {
        Request::Start { role, id: args.id }
    } else {
        Request::Stop { role, id: args.id }
    };
    let send = async {
        let reply = control::call(&data, &request).await?;
        if !reply.ok {
            bail!("{}", reply.message);
        }
        println!("{}", reply.message);
        Ok(())
    };
    if args.watch == 0 {
        return send.await;
    }
    let limit = Duration::from_secs(args.watch);
    crate::watch::watch(&data, args.id, start, limit, send).await?;
    Ok(())
}
