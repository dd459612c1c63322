//! `/admin/backups`: the scheduled backups in this node's `backup_dir`
//! (see [`crate::backup_schedule`]). Access is that of `/admin/*`.

use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

use super::reply;
use crate::error::{Error, Result};
use crate::node::Node;

/// `GET /admin/backups`: a [`checkraft_proto::BackupList`].
pub async fn list(node: &Node) -> Result<Response> {
    let listing = crate::backup_schedule::list(node);
    Ok(reply::json(StatusCode::OK, &listing))
}

/// `GET /admin/backups/{name}`: the file. A name that is not a scheduled
/// backup's is a 400, before any path is built from it.
pub async fn download(node: &Node, name: &str) -> Result<Response> {
    let path = crate::backup_schedule::path_of(node, name)
        .map_err(|e| Error::BadRequest(e.to_string()))?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "backup {name}: scheduled backups are off on this node (no backup_dir)"
            ))
        })?;
    let bytes = match tokio::fs::read(&path).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotFound(format!("backup {name}: no such file")))
        }
        Err(e) => {
            return Err(Error::Unavailable(format!(
                "reading {}: {e}",
                path.display()
            )))
        }
    };
    let mut response = Response::new(bytes.into());
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}
