//! The page's first HTML, rendered with the top of the grid (`GET /`).
//!
//! `assets/index.html` (compiled in) with its empty `#grid` filled: the
//! first rows of boxes in exactly the markup the page's script builds
//! (`assets/js/grid.js`: `div.row[role=row]` of `span.cell[role=gridcell]`
//! holding `input[type=checkbox][data-index][aria-label]`), each box checked
//! as the gateway's state has it. So a browser paints real boxes before
//! any script runs, and the script adopts these elements instead of
//! building its own (`GridView.reset` reuses rows with the right number of
//! cells). Before the script runs the rows flow in the document (class
//! `ssr` on the grid, `assets/css/app.css`) and the boxes are disabled:
//! without JavaScript the page is a read-only view that links to `/nojs`.
//!
//! The page also carries, in a non-executed `<script type="application/json"
//! id="ssr-chunks">` data block (the CSP forbids inline scripts, not data),
//! the grid's dimensions and the bitsets of the chunks it shows, with their
//! `X-Checkraft-Seq` and ETag, base64: the script seeds its model with them, so it neither shows
//! these boxes as unknown nor fetches them before its socket is live.
//!
//! How many columns and rows: the script remembers its layout in the
//! `checkraft-view=COLSxROWS` cookie; without it the defaults fit a
//! desktop window ([`DEFAULT_COLS`] × [`DEFAULT_ROWS`]). Both are bounded
//! ([`MAX_COLS`], [`MAX_ROWS`]). A page whose layout differs (another
//! width) rebuilds the rows.

use std::fmt::Write as _;

use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

use crate::chunk;
use crate::encoding;
use crate::error::Result;
use crate::gateway::Gateway;
use crate::http::Request;

/// The page's HTML, with the empty grid element the rows go into.
const TEMPLATE: &str = include_str!("../../assets/index.html");
/// The grid element of [`TEMPLATE`], up to its closing `>`, and its end.
const GRID_OPEN: &str = "<div id=\"grid\" class=\"grid\"";
const GRID_CLOSE: &str = "</div>";
/// Columns and rows without a cookie: a 1280 × 800 desktop window.
pub const DEFAULT_COLS: u64 = 34;
/// See [`DEFAULT_COLS`].
pub const DEFAULT_ROWS: u64 = 22;
/// Most columns rendered (a 4K-wide window has about 110).
pub const MAX_COLS: u64 = 160;
/// Most rows rendered.
pub const MAX_ROWS: u64 = 60;
/// The cookie the page writes its layout into.
pub const VIEW_COOKIE: &str = "checkraft-view";

/// The `COLSxROWS` of the view cookie in a `Cookie` header, bounded; the
/// defaults when absent or malformed.
pub fn view(cookie: Option<&str>) -> (u64, u64) {
    let parsed = cookie.and_then(|c| {
        c.split(';').find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            if name != VIEW_COOKIE {
                return None;
            }
            let (cols, rows) = value.split_once('x')?;
            Some((cols.parse::<u64>().ok()?, rows.parse::<u64>().ok()?))
        })
    });
    match parsed {
        Some((c, r)) if c > 0 && r > 0 => (c.min(MAX_COLS), r.min(MAX_ROWS)),
        _ => (DEFAULT_COLS, DEFAULT_ROWS),
    }
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The rows of boxes `[0, cols × rows)` (fewer at the grid's end), in the
/// script's markup; `checked(i)` gives box `i`'s value.
pub fn render_rows(boxes: u64, cols: u64, rows: u64, checked: impl Fn(u64) -> bool) -> String {
    let shown = (cols * rows).min(boxes);
    let mut out = String::with_capacity(shown as usize * 110);
    for row in 0..shown.div_ceil(cols) {
        let _ = write!(
            out,
            "<div class=\"row\" role=\"row\" aria-rowindex=\"{}\">",
            row + 1
        );
        for i in row * cols..((row + 1) * cols).min(shown) {
            let on = if checked(i) { " checked" } else { "" };
            let _ = write!(
                out,
                "<span class=\"cell\" role=\"gridcell\"><input type=\"checkbox\" tabindex=\"-1\" \
                 data-index=\"{i}\" aria-label=\"box {i}\" disabled{on}></span>"
            );
        }
        out.push_str("</div>");
    }
    out
}

/// The page with the top of the grid, or `None` when the template lacks
/// its grid element.
pub fn render(
    boxes: u64,
    chunk_size: u32,
    cols: u64,
    rows: u64,
    chunks: &[crate::gateway::ChunkView],
) -> Option<String> {
    let open = TEMPLATE.find(GRID_OPEN)?;
    let open_end = open + TEMPLATE[open..].find('>')? + 1;
    let close = open_end + TEMPLATE[open_end..].find(GRID_CLOSE)?;
    let checked = |i: u64| {
        chunks
            .iter()
            .find(|v| v.range.start <= i && i < v.range.end)
            .is_some_and(|v| chunk::bit(&v.bits, i - v.range.start))
    };
    let mut data = format!("{{\"boxes\":{boxes},\"chunk_size\":{chunk_size},\"chunks\":[");
    for (n, v) in chunks.iter().enumerate() {
        if n > 0 {
            data.push(',');
        }
        let _ = write!(
            data,
            "{{\"chunk\":{},\"seq\":{},\"etag\":{},\"bits\":\"{}\"}}",
            v.range.id,
            v.seq,
            serde_json::to_string(&v.etag()).expect("a string serializes"),
            base64(&v.bits)
        );
    }
    data.push_str("]}");
    let grid_attrs = &TEMPLATE[open + GRID_OPEN.len()..open_end];
    let mut out = String::with_capacity(TEMPLATE.len() + (cols * rows) as usize * 110);
    out.push_str(&TEMPLATE[..open]);
    let _ = write!(out, "<div id=\"grid\" class=\"grid ssr\"{grid_attrs}");
    out.push_str(&render_rows(boxes, cols, rows, checked));
    out.push_str(GRID_CLOSE);
    let _ = write!(
        out,
        "<script type=\"application/json\" id=\"ssr-chunks\">{data}</script>"
    );
    out.push_str(&TEMPLATE[close + GRID_CLOSE.len()..]);
    Some(out)
}

/// `GET /` and `GET /index.html`: the rendered page (compressed as
/// negotiated, `Cache-Control: no-cache`, the page's security headers), or
/// the bare template while the grid cannot be read (no map, a shard not
/// loaded): the script then fills it as usual.
pub fn page(gateway: &Gateway, req: &Request) -> Result<Response> {
    let cookie = req
        .headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok());
    let (cols, rows) = view(cookie);
    let rendered = (|| -> Result<Option<String>> {
        let map = gateway.current_map()?;
        let Some(grid) = map.grid else {
            return Ok(None);
        };
        let shown = (cols * rows).min(grid.boxes);
        if shown == 0 {
            return Ok(None);
        }
        let last = chunk::chunk_of(&grid, shown - 1);
        let views = (0..=last)
            .map(|id| gateway.chunk(id))
            .collect::<Result<Vec<_>>>()?;
        Ok(render(grid.boxes, grid.chunk_size, cols, rows, &views))
    })();
    let body = match rendered {
        Ok(Some(html)) => html,
        Ok(None) | Err(_) => TEMPLATE.to_string(),
    };
    let coding = req
        .headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .and_then(encoding::negotiate);
    let mut response = match coding {
        Some(coding) => {
            let mut r = Response::new(coding.encode(body.as_bytes()).into());
            r.headers_mut().insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(coding.token()),
            );
            r
        }
        None => Response::new(body.into()),
    };
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::VARY,
        // Not `Cookie`: a rendering for another layout is still a right
        // page (the script re-flows it), and the Service Worker's copy of
        // `/`, taken from the HTTP cache after the page set its cookie,
        // must match it.
        HeaderValue::from_static("Accept-Encoding"),
    );
    for (name, value) in crate::assets::SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_cookie_sets_the_size_within_bounds() {
        assert_eq!(view(None), (DEFAULT_COLS, DEFAULT_ROWS));
        assert_eq!(view(Some("a=b; checkraft-view=20x10")), (20, 10));
        assert_eq!(view(Some("checkraft-view=999x999")), (MAX_COLS, MAX_ROWS));
        assert_eq!(
            view(Some("checkraft-view=0x10")),
            (DEFAULT_COLS, DEFAULT_ROWS)
        );
        assert_eq!(
            view(Some("checkraft-view=wide")),
            (DEFAULT_COLS, DEFAULT_ROWS)
        );
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xff, 0x00, 0x85]), "/wCF");
    }

    #[test]
    fn rows_use_the_scripts_markup_and_state() {
        let html = render_rows(10, 4, 2, |i| i == 5);
        assert_eq!(html.matches("<div class=\"row\" role=\"row\"").count(), 2);
        assert_eq!(html.matches("<input type=\"checkbox\"").count(), 8);
        assert!(html.contains("data-index=\"5\" aria-label=\"box 5\" disabled checked>"));
        assert!(html.contains("data-index=\"4\" aria-label=\"box 4\" disabled>"));
        assert!(!html.contains("data-index=\"8\""));
        // The grid's end cuts the last row short.
        assert_eq!(render_rows(6, 4, 2, |_| false).matches("<input").count(), 6);
    }

    #[test]
    fn the_template_has_its_grid_and_the_page_its_data() {
        assert!(
            TEMPLATE.contains(GRID_OPEN),
            "assets/index.html lost its #grid"
        );
        let view = crate::gateway::ChunkView {
            range: chunk::ChunkRange {
                id: 0,
                start: 0,
                end: 16,
            },
            shard: 1,
            epoch: 1,
            seq: 7,
            bits: vec![0x01, 0x80],
        };
        let html = render(16, 16, 4, 2, &[view]).unwrap();
        assert!(html.contains("class=\"grid ssr\""));
        assert!(html.contains("data-index=\"0\" aria-label=\"box 0\" disabled checked>"));
        assert!(html.contains(
            "id=\"ssr-chunks\">{\"boxes\":16,\"chunk_size\":16,\"chunks\":[{\"chunk\":0,\"seq\":7,\"etag\":\"W/\\\""
        ));
        assert!(html.contains("\"bits\":\"AYA=\"}]}</script>"));
        assert!(!html.contains("<script>"), "no executable inline script");
        assert!(html.ends_with("</html>\n") || html.ends_with("</html>"));
    }
}
