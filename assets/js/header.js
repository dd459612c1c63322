// The page's chrome outside the grid: the counters, the connection label
// and <html data-connection>, the offline banner and the notice. Like
// grid.js it decides nothing: it writes what page-state.js computed, and
// only what changed.

const NOTICE_MS = 3_500;
const COOKIE = "checkraft-view";

export class Header {
  /** @param {Document} doc */
  constructor(doc) {
    const $ = (sel) => doc.querySelector(sel);
    this.doc = doc;
    this.root = doc.documentElement;
    this.grid = $("#grid");
    this.checked = $("#checked-count");
    this.online = $("#online-count");
    this.notice = $("#notice");
    this.banner = $("#offline-banner");
    this.label = $("#connection-label");
    this.noticeTimer = null;
  }

  counters({ checked, online }) {
    for (const [el, v] of [[this.checked, checked], [this.online, online]]) {
      if (v === null || v === undefined) {
        el.removeAttribute("data-value");
        el.textContent = "–";
      } else {
        el.dataset.value = String(v);
        el.textContent = v.toLocaleString("en-US");
      }
    }
  }

  /** @param {{connection: string, offline: boolean, endpoint: string|null, label: string}} c page-state.connectionView */
  connection(c) {
    const data = this.root.dataset;
    if (data.connection !== c.connection) data.connection = c.connection;
    if (c.endpoint && data.endpoint !== c.endpoint) data.endpoint = c.endpoint;
    if (this.banner.hidden === c.offline) this.banner.hidden = !c.offline;
    this.grid.setAttribute("aria-readonly", c.offline ? "true" : "false");
    if (this.label.textContent !== c.label) this.label.textContent = c.label;
  }

  /** Shows `text` for NOTICE_MS. */
  showNotice(text) {
    this.notice.textContent = text;
    this.notice.hidden = false;
    clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => { this.notice.hidden = true; }, NOTICE_MS);
  }

  /** Tells the server the layout, so its next rendered page has as many
   * columns and rows as this one (gateway/src/ssr.rs). */
  rememberView(L) {
    const value = `${L.cols}x${Math.max(1, L.poolRows - 2 * L.overscan)}`;
    if (this.doc.cookie.includes(`${COOKIE}=${value}`)) return;
    this.doc.cookie = `${COOKIE}=${value}; path=/; max-age=31536000; samesite=lax`;
  }
}
