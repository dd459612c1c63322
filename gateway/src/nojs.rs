//! The no-JavaScript fallback: the grid as plain HTML forms.
//!
//! - `GET /nojs?page=N` renders page `N` (of
//!   [`GatewayConfig::nojs_page_boxes`](crate::config::GatewayConfig::nojs_page_boxes)
//!   boxes) as one form whose every box is a submit button
//!   `<button name="set" value="INDEX:1">` (unchecked: submitting checks it)
//!   or `value="INDEX:0"` (checked: submitting unchecks it), with
//!   previous/next links and a jump-to-box form. Without `page`, page 0.
//! - `GET /nojs?box=I` (the jump form) answers `303 See Other` to the page
//!   holding box `I`.
//! - `POST /nojs/set` (`application/x-www-form-urlencoded`,
//!   `set=INDEX:VALUE&page=N`, `VALUE` is `1` or `0`) writes the box
//!   through the normal write path ([`Gateway::set_box`]: acknowledged after
//!   commit) and answers `303 See Other` to `/nojs?page=N#box-INDEX`.
//!
//! Every answer, errors included, is HTML (`text/html; charset=utf-8`)
//! with `Cache-Control: no-store`, `X-Content-Type-Options: nosniff` and a
//! script-free [`CSP`]. Errors are pages with the usual statuses: 400 bad
//! input, 404 a page past the grid, 409 a rejected write, 429 too many
//! writes from the client's address (the per-address limit shared with
//! `PUT /api/boxes`, [`crate::guard::WriteLimiter`]; with `Retry-After`),
//! 503 unavailable (with `Retry-After: 1`), each with a link back. No
//! JavaScript anywhere; everything interpolated is HTML-escaped.

use std::fmt::Write as _;

use checkraft_proto::{ErrorKind, Grid};
use serde::Deserialize;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

use crate::chunk;
use crate::encoding::{accepts_gzip, gzip};
use crate::error::{Error, Result};
use crate::gateway::Gateway;
use crate::guard::WriteLimiter;
use crate::http::{status_of, take_write_token, Request};

/// The pages' `Content-Security-Policy`: no scripts, no external anything,
/// inline styles only, forms post to this origin, no framing.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

/// The pages' content type.
pub const HTML: &str = "text/html; charset=utf-8";

const FORM: &str = "application/x-www-form-urlencoded";

/// `s` with `& < > " '` replaced by character references, safe in text
/// and in quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// How boxes are cut into pages: page `p` covers `[p * per_page,
/// min((p + 1) * per_page, boxes))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// Boxes in the grid.
    pub boxes: u64,
    /// Boxes per page (at least 1).
    pub per_page: u64,
}

impl Paging {
    /// Paging of `boxes` boxes, `per_page` per page (0 counts as 1).
    pub fn new(boxes: u64, per_page: u64) -> Self {
        Self {
            boxes,
            per_page: per_page.max(1),
        }
    }

    /// Number of pages (the last may be partial).
    pub fn pages(&self) -> u64 {
        self.boxes.div_ceil(self.per_page)
    }

    /// The page holding box `index` (which may be past the grid).
    pub fn page_of(&self, index: u64) -> u64 {
        index / self.per_page
    }

    /// The boxes `[start, end)` of page `page`, or `None` past the grid.
    pub fn range(&self, page: u64) -> Option<(u64, u64)> {
        if page >= self.pages() {
            return None;
        }
        let start = page * self.per_page;
        Some((start, start.saturating_add(self.per_page).min(self.boxes)))
    }
}

/// What `GET /nojs` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A page by number.
    Page(u64),
    /// The page holding a box (the jump form).
    Box(u64),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuery {
    page: Option<String>,
    #[serde(rename = "box")]
    box_: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSet {
    set: Option<String>,
    page: Option<String>,
}

/// A parsed `POST /nojs/set` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetForm {
    /// The box.
    pub index: u64,
    /// Its new value.
    pub checked: bool,
    /// The page to return to, when given.
    pub page: Option<u64>,
}

fn number(what: &str, s: &str) -> Result<u64> {
    let s = s.trim();
    if s.is_empty() {
        return Err(Error::BadRequest(format!("{what} is empty")));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::BadRequest(format!(
            "{what} {s:?} is not a non-negative whole number"
        )));
    }
    s.parse()
        .map_err(|_| Error::BadRequest(format!("{what} {s:?} is too large")))
}

/// Parses the query string of `GET /nojs` (without the `?`): `page=N`,
/// `box=I` or nothing (page 0).
pub fn parse_query(query: &str) -> Result<Target> {
    let raw: RawQuery = serde_urlencoded::from_str(query).map_err(|e| {
        Error::BadRequest(format!("the query string must be page=N or box=INDEX: {e}"))
    })?;
    match (raw.page, raw.box_) {
        (Some(_), Some(_)) => Err(Error::BadRequest(
            "give either page=N or box=INDEX, not both".into(),
        )),
        (Some(page), None) => Ok(Target::Page(number("page", &page)?)),
        (None, Some(index)) => Ok(Target::Box(number("box", &index)?)),
        (None, None) => Ok(Target::Page(0)),
    }
}

/// Parses the body of `POST /nojs/set`: `set=INDEX:VALUE` (`VALUE` `1` or
/// `0`) and an optional `page=N`.
pub fn parse_set(body: &[u8]) -> Result<SetForm> {
    let raw: RawSet = serde_urlencoded::from_bytes(body).map_err(|e| {
        Error::BadRequest(format!(
            "the form must be set=INDEX:1 or set=INDEX:0, and optionally page=N: {e}"
        ))
    })?;
    let set = raw
        .set
        .ok_or_else(|| Error::BadRequest("the form has no set=INDEX:VALUE field".into()))?;
    let (index, value) = set.split_once(':').ok_or_else(|| {
        Error::BadRequest(format!("set={set:?} is not of the form INDEX:1 or INDEX:0"))
    })?;
    let index = number("box", index)?;
    let checked = match value.trim() {
        "1" => true,
        "0" => false,
        other => {
            return Err(Error::BadRequest(format!(
                "the value {other:?} of set= must be 1 (check) or 0 (uncheck)"
            )))
        }
    };
    let page = raw.page.map(|p| number("page", &p)).transpose()?;
    Ok(SetForm {
        index,
        checked,
        page,
    })
}

/// The `Location` of a page, anchored at a box.
pub fn location(page: u64, index: Option<u64>) -> String {
    match index {
        Some(i) => format!("/nojs?page={page}#box-{i}"),
        None => format!("/nojs?page={page}"),
    }
}

/// The pages' only styling, inline (the CSP allows no other source): the
/// main page's look (`assets/css/app.css`) in CSS alone. A header bar with
/// the title, the checked count and the jump form; boxes drawn as the app
/// draws its checkboxes (a 20 px square, the accent colour with a tick when
/// checked) in a wrapping grid of 36 px cells; a visible focus ring for
/// keyboard use (Tab moves from box to box, Enter or Space toggles) and a
/// ring on the box a jump or a write returned to (`#box-I`).
const STYLE: &str = ":root{--bg:#f7f7f8;--fg:#1c1e21;--muted:#5f6670;--accent:#1f6feb;\
--line:#d5d8de;color-scheme:light;font-family:system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif}\
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--fg);line-height:1.4}\
.bar{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem 1.25rem;padding:.5rem 1rem;\
background:#fff;border-bottom:1px solid var(--line)}\
.title{font-size:1.2rem;font-weight:700;margin:0;letter-spacing:.02em}\
.title a{color:inherit;text-decoration:none}\
.counters{display:flex;gap:1rem;margin:0}.counters div{display:flex;align-items:baseline;gap:.35rem}\
.counters dt{color:var(--muted);font-size:.85rem}\
.counters dd{margin:0;font-weight:600;font-variant-numeric:tabular-nums}\
.jump{display:flex;align-items:center;gap:.35rem;margin:0}\
.jump label{color:var(--muted);font-size:.85rem}\
.jump input{width:9em;padding:.25rem .4rem;font:inherit}.jump button{font:inherit;padding:.25rem .6rem}\
.mode{margin:0 0 0 auto;color:var(--muted);font-size:.85rem}\
main{padding:.5rem 1rem 1rem}.intro{font-size:1rem;margin:.25rem 0 0}\
main p{margin:.25rem 0;color:var(--muted);font-size:.9rem}\
nav{display:flex;gap:1rem;margin:.5rem 0}nav a{color:#0b57d0}nav span{color:var(--muted)}\
.grid{display:grid;grid-template-columns:repeat(auto-fill,36px)}\
.grid button{position:relative;width:36px;height:36px;margin:0;padding:0;border:0;\
background:none;cursor:pointer;font-size:0;color:transparent}\
.grid button::before{content:\"\";position:absolute;left:8px;top:8px;width:20px;height:20px;\
border:2px solid #6e7781;background:#fff}\
.grid button.on::before{border-color:var(--accent);background:var(--accent)}\
.grid button.on::after{content:\"\";position:absolute;left:15px;top:11px;width:6px;height:11px;\
border:solid #fff;border-width:0 2.5px 2.5px 0;transform:rotate(45deg)}\
.grid button:hover::before{border-color:var(--accent)}\
.grid button:focus-visible{outline:3px solid var(--accent);outline-offset:-3px}\
.grid button:target{outline:3px solid #c2410c;outline-offset:-3px}\
.err{color:#a40e26}\
@media (max-width:600px){.bar{padding:.4rem .6rem;gap:.35rem .8rem}.title{font-size:1rem}\
.grid{grid-template-columns:repeat(auto-fill,30px)}.grid button{width:30px;height:30px}\
.grid button::before{left:5px;top:5px}.grid button.on::after{left:12px;top:8px}}";

/// The header bar of every page: the title (a link to the first page),
/// the checked count when known, and the jump form when the grid is.
fn bar(out: &mut String, boxes: Option<u64>, checked: Option<u64>) {
    out.push_str("<header class=\"bar\"><p class=\"title\"><a href=\"/nojs\">checkraft</a></p>");
    if let Some(n) = checked {
        let _ = write!(
            out,
            "<dl class=\"counters\"><div><dt>checked</dt><dd>{n}</dd></div></dl>"
        );
    }
    if let Some(boxes) = boxes {
        let _ = write!(
            out,
            "<form class=\"jump\" method=\"get\" action=\"/nojs\" role=\"search\">\
             <label for=\"jump\">Jump to box #</label> \
             <input id=\"jump\" name=\"box\" type=\"number\" min=\"0\" max=\"{}\" required> \
             <button type=\"submit\">Go</button></form>",
            boxes.saturating_sub(1)
        );
    }
    out.push_str("<p class=\"mode\">No-JavaScript version</p></header>\n");
}

fn head(out: &mut String, title: &str) {
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>",
        escape(title)
    );
}

fn nav(out: &mut String, paging: &Paging, page: u64) {
    out.push_str("<nav>");
    if page > 0 {
        let _ = write!(
            out,
            "<a rel=\"prev\" href=\"{}\">&larr; Previous</a>",
            escape(&location(page - 1, None))
        );
    } else {
        out.push_str("<span>&larr; Previous</span> ");
    }
    if page + 1 < paging.pages() {
        let _ = write!(
            out,
            "<a rel=\"next\" href=\"{}\">Next &rarr;</a>",
            escape(&location(page + 1, None))
        );
    } else {
        out.push_str("<span>Next &rarr;</span>");
    }
    out.push_str("</nav>\n");
}

/// Page `page` of the grid: `checked(i)` tells box `i`'s value for every
/// box of the page, `total` the grid's checked count when known. `None`
/// past the grid.
pub fn render_page(
    paging: &Paging,
    page: u64,
    total: Option<u64>,
    checked: impl Fn(u64) -> bool,
) -> Option<String> {
    let (start, end) = paging.range(page)?;
    let pages = paging.pages();
    let mut out = String::with_capacity(((end - start) as usize) * 110 + 2048);
    head(
        &mut out,
        &format!(
            "checkraft: boxes {start}–{} (page {} of {pages})",
            end - 1,
            page + 1
        ),
    );
    bar(&mut out, Some(paging.boxes), total);
    let _ = writeln!(
        out,
        "<main><h1 class=\"intro\">Boxes {start} to {} of {} (page {} of {pages})</h1>\
         <p>Press a box to check or uncheck it.</p>",
        end - 1,
        paging.boxes,
        page + 1
    );
    nav(&mut out, paging, page);
    let _ = writeln!(
        out,
        "<form method=\"post\" action=\"/nojs/set\">\
         <input type=\"hidden\" name=\"page\" value=\"{page}\"><div class=\"grid\">"
    );
    for i in start..end {
        let on = checked(i);
        let (class, next, state, text) = if on {
            (" class=\"on\"", 0, "checked", "[x]")
        } else {
            ("", 1, "unchecked", "[ ]")
        };
        // The box is drawn by CSS; the text is for those without it.
        let _ = writeln!(
            out,
            "<button type=\"submit\" id=\"box-{i}\"{class} name=\"set\" value=\"{i}:{next}\" \
             aria-label=\"box {i}, {state}\" title=\"box {i}, {state}\">{text}</button>"
        );
    }
    out.push_str("</div></form>\n");
    nav(&mut out, paging, page);
    out.push_str("</main></body></html>\n");
    Some(out)
}

/// An error page for `e`, with a link back to `back`.
pub fn render_error(e: &Error, back: &str) -> String {
    let hint = match e.kind() {
        ErrorKind::Unavailable => " The cluster cannot serve this right now; trying again is safe.",
        ErrorKind::Conflict => " Nothing was changed; you may try again.",
        _ => "",
    };
    render_message(status_of(e.kind()), &e.to_string(), hint, back)
}

/// An error page of `status` saying `message` and `hint`, with a link
/// back to `back`.
fn render_message(status: StatusCode, message: &str, hint: &str, back: &str) -> String {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let mut out = String::new();
    head(&mut out, &format!("checkraft: {title}"));
    bar(&mut out, None, None);
    let _ = writeln!(
        out,
        "<main><h1>{}</h1><p class=\"err\">{}</p><p>{}</p>\
         <p><a href=\"{}\">Back to the boxes</a></p></main></body></html>",
        escape(&title),
        escape(message),
        escape(hint.trim()),
        escape(back)
    );
    out
}

fn secure(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(HTML));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

fn html(status: StatusCode, body: String, req: &Request) -> Response {
    let gzipped = req
        .headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(accepts_gzip);
    let mut response = if gzipped && body.len() > 1024 {
        let mut r = Response::new(gzip(body.as_bytes()).into());
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        Response::new(body.into())
    };
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    secure(&mut response);
    response
}

fn see_other(to: &str) -> Response {
    let mut response = Response::new(
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>See other</title>\
             </head><body><p><a href=\"{0}\">{0}</a></p></body></html>\n",
            escape(to)
        )
        .into(),
    );
    *response.status_mut() = StatusCode::SEE_OTHER;
    secure(&mut response);
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn error_page(e: &Error, back: &str, req: &Request) -> Response {
    if e.kind() == ErrorKind::Internal {
        tracing::error!(error = %e, "nojs request failed");
    }
    let mut response = html(status_of(e.kind()), render_error(e, back), req);
    if e.kind() == ErrorKind::Unavailable {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn grid(gateway: &Gateway) -> Result<Grid> {
    gateway
        .current_map()?
        .grid
        .ok_or_else(|| Error::Unavailable("the cluster is not initialized".into()))
}

fn paging(gateway: &Gateway) -> Result<Paging> {
    Ok(Paging::new(
        grid(gateway)?.boxes,
        gateway.config.nojs_page_boxes,
    ))
}

/// The page body of `page`, read chunk by chunk from the gateway's state.
fn page_body(gateway: &Gateway, paging: &Paging, page: u64) -> Result<String> {
    let grid = grid(gateway)?;
    let (start, end) = paging.range(page).ok_or_else(|| {
        Error::NotFound(format!(
            "page {page}: the grid has pages 0 to {}",
            paging.pages().saturating_sub(1)
        ))
    })?;
    let mut views = Vec::new();
    for id in chunk::chunk_of(&grid, start)..=chunk::chunk_of(&grid, end - 1) {
        views.push(gateway.chunk(id)?);
    }
    let checked = |i: u64| {
        views
            .iter()
            .find(|v| v.range.start <= i && i < v.range.end)
            .is_some_and(|v| chunk::bit(&v.bits, i - v.range.start))
    };
    let total = gateway.stats().ok().map(|s| s.checked);
    render_page(paging, page, total, checked)
        .ok_or_else(|| Error::NotFound(format!("page {page} is past the grid")))
}

/// `GET /nojs?page=N` and `GET /nojs?box=I`.
pub fn get(gateway: &Gateway, req: &Request) -> Response {
    let outcome = parse_query(&req.query).and_then(|target| {
        let paging = paging(gateway)?;
        match target {
            Target::Box(index) => {
                if index >= paging.boxes {
                    return Err(Error::BadRequest(format!(
                        "box {index} is out of range: the grid has boxes 0 to {}",
                        paging.boxes.saturating_sub(1)
                    )));
                }
                Ok(see_other(&location(paging.page_of(index), Some(index))))
            }
            Target::Page(page) => Ok(html(
                StatusCode::OK,
                page_body(gateway, &paging, page)?,
                req,
            )),
        }
    });
    outcome.unwrap_or_else(|e| error_page(&e, &location(0, None), req))
}

/// `POST /nojs/set`; well-formed writes take a token of the client's
/// address from `limiter`.
pub async fn set(gateway: &Gateway, limiter: &WriteLimiter, req: &Request) -> Response {
    let content_type = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(FORM);
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case(FORM) {
        let e = Error::BadRequest(format!(
            "the form must be sent as {FORM}, not {content_type:?}"
        ));
        return error_page(&e, &location(0, None), req);
    }
    let form = match parse_set(&req.body) {
        Ok(form) => form,
        Err(e) => return error_page(&e, &location(0, None), req),
    };
    let per_page = gateway.config.nojs_page_boxes.max(1);
    let page = form.page.unwrap_or(form.index / per_page);
    let back = location(page, Some(form.index));
    if let Err((secs, message)) = take_write_token(gateway, limiter, req, "nojs") {
        let body = render_message(
            StatusCode::TOO_MANY_REQUESTS,
            &message,
            "Nothing was changed; wait a moment and try again.",
            &back,
        );
        let mut response = html(StatusCode::TOO_MANY_REQUESTS, body, req);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return response;
    }
    match gateway.set_box(form.index, form.checked).await {
        Ok(_) => see_other(&back),
        Err(e) => error_page(&e, &back, req),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>alert("x&y")</script>'"#),
            "&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;&#39;"
        );
        assert_eq!(escape("box 5, ☑"), "box 5, ☑");
        let page = render_error(
            &Error::BadRequest("page \"<img src=x>\" is bad".into()),
            "/nojs?page=0&x=\"<",
        );
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("&lt;img src=x&gt;"), "{page}");
        assert!(
            page.contains("href=\"/nojs?page=0&amp;x=&quot;&lt;\""),
            "{page}"
        );
        assert!(page.contains("400 Bad Request"), "{page}");
        let page = render_error(
            &Error::Unavailable("no leader".into()),
            "/nojs?page=3#box-3001",
        );
        assert!(page.contains("503 Service Unavailable"), "{page}");
        assert!(page.contains("trying again is safe"), "{page}");
        assert!(page.contains("href=\"/nojs?page=3#box-3001\""), "{page}");
    }

    #[test]
    fn page_math() {
        let p = Paging::new(2_500, 1_000);
        assert_eq!(p.pages(), 3);
        assert_eq!(p.range(0), Some((0, 1_000)));
        assert_eq!(p.range(1), Some((1_000, 2_000)));
        assert_eq!(p.range(2), Some((2_000, 2_500)), "the last page is partial");
        assert_eq!(p.range(3), None);
        assert_eq!(p.range(u64::MAX), None);
        assert_eq!(p.page_of(0), 0);
        assert_eq!(p.page_of(999), 0);
        assert_eq!(p.page_of(1_000), 1);
        assert_eq!(p.page_of(2_499), 2);
        let exact = Paging::new(3_000, 1_000);
        assert_eq!(exact.pages(), 3);
        assert_eq!(exact.range(2), Some((2_000, 3_000)));
        assert_eq!(Paging::new(0, 1_000).pages(), 0);
        assert_eq!(Paging::new(10, 0).per_page, 1);
        let huge = Paging::new(u64::MAX, 1_000);
        let last = huge.pages() - 1;
        assert_eq!(huge.range(last).unwrap().1, u64::MAX);
    }

    #[test]
    fn rendering_a_page() {
        let p = Paging::new(2_500, 1_000);
        let html = render_page(&p, 2, Some(1), |i| i == 2_005).unwrap();
        assert_eq!(
            html.matches("<button type=\"submit\" id=\"box-").count(),
            500
        );
        assert!(html.contains(
            "id=\"box-2005\" class=\"on\" name=\"set\" value=\"2005:0\" \
             aria-label=\"box 2005, checked\""
        ));
        assert!(html.contains("id=\"box-2006\" name=\"set\" value=\"2006:1\""));
        assert!(html.contains("aria-label=\"box 2006, unchecked\""));
        assert!(html.contains("rel=\"prev\" href=\"/nojs?page=1\""));
        assert!(!html.contains("rel=\"next\""), "no next on the last page");
        assert!(html.contains("name=\"page\" value=\"2\""));
        assert!(!html.to_ascii_lowercase().contains("<script"));
        let first = render_page(&p, 0, None, |_| false).unwrap();
        assert!(!first.contains("rel=\"prev\""));
        assert!(first.contains("rel=\"next\" href=\"/nojs?page=1\""));
        assert!(render_page(&p, 3, None, |_| false).is_none());
    }

    fn bad(r: Result<impl std::fmt::Debug>) -> String {
        match r {
            Err(e @ Error::BadRequest(_)) => e.to_string(),
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    #[test]
    fn queries_good_and_bad() {
        assert_eq!(parse_query("").unwrap(), Target::Page(0));
        assert_eq!(parse_query("page=3").unwrap(), Target::Page(3));
        assert_eq!(parse_query("page=%203").unwrap(), Target::Page(3));
        assert_eq!(parse_query("box=2500").unwrap(), Target::Box(2500));
        assert!(bad(parse_query("page=abc")).contains("\"abc\""));
        assert!(bad(parse_query("page=-1")).contains("not a non-negative"));
        assert!(bad(parse_query("page=")).contains("empty"));
        assert!(bad(parse_query("page=1e3")).contains("not a non-negative"));
        assert!(bad(parse_query("page=99999999999999999999999")).contains("too large"));
        assert!(bad(parse_query("box=x")).contains("box"));
        assert!(bad(parse_query("page=1&box=2")).contains("not both"));
        assert!(bad(parse_query("page=1&page=2")).contains("page=N"));
        assert!(bad(parse_query("color=red")).contains("page=N"));
    }

    #[test]
    fn set_forms_good_and_bad() {
        let f = parse_set(b"set=5%3A1&page=0").unwrap();
        assert_eq!(
            f,
            SetForm {
                index: 5,
                checked: true,
                page: Some(0)
            }
        );
        let f = parse_set(b"page=2&set=2500:0").unwrap();
        assert_eq!((f.index, f.checked, f.page), (2500, false, Some(2)));
        assert_eq!(parse_set(b"set=7:1").unwrap().page, None);
        assert!(bad(parse_set(b"")).contains("no set="));
        assert!(bad(parse_set(b"page=1")).contains("no set="));
        assert!(bad(parse_set(b"set=5")).contains("INDEX:1"));
        assert!(bad(parse_set(b"set=5:2")).contains("must be 1"));
        assert!(bad(parse_set(b"set=5:true")).contains("must be 1"));
        assert!(bad(parse_set(b"set=x:1")).contains("box"));
        assert!(bad(parse_set(b"set=-5:1")).contains("box"));
        assert!(bad(parse_set(b"set=5:1&page=z")).contains("page"));
        assert!(bad(parse_set(b"set=5:1&set=6:1")).contains("set=INDEX"));
        assert!(bad(parse_set(b"set=5:1&evil=1")).contains("set=INDEX"));
        assert!(bad(parse_set(b"\xff\xfe=\xff")).contains("set=INDEX"));
    }

    #[test]
    fn locations() {
        assert_eq!(location(2, Some(2500)), "/nojs?page=2#box-2500");
        assert_eq!(location(0, None), "/nojs?page=0");
    }
}
