// The inbox's one live channel: Server-Sent Events from /api/v1/inbox/stream, bound to the
// inbox with the filters as arguments (never one channel per circle). If the server has no
// stream endpoint the same callbacks are fed by polling GET /api/v1/inbox?after=CURSOR.

import { get, qs, session } from './api.js';

const POLL_MS = 2000;

/** Live inbox items newer than `after`, delivered oldest first to `onItem`. */
export class InboxLive {
  constructor({ filter, after, onItem }) {
    this.filter = filter;
    this.cursor = after || null;
    this.onItem = onItem;
    this.source = null;
    this.timer = null;
    this.stopped = false;
    this.seen = new Set();
  }

  start() {
    if (typeof EventSource === 'undefined') this.poll();
    else this.connect();
  }

  stop() {
    this.stopped = true;
    if (this.source) this.source.close();
    clearTimeout(this.timer);
    setMode('off');
  }

  deliver(item) {
    if (!item || !item.cursor || this.seen.has(item.cursor)) return;
    this.seen.add(item.cursor);
    this.cursor = item.cursor;
    this.onItem(item);
  }

  connect() {
    const url = `/api/v1/inbox/stream${qs({ ...this.filter, after: this.cursor, access_token: session.token })}`;
    const source = new EventSource(url);
    this.source = source;
    let opened = false;
    source.onopen = () => {
      opened = true;
      setMode('sse');
    };
    source.addEventListener('entry', (e) => {
      try { this.deliver(JSON.parse(e.data)); } catch { /* a malformed event is skipped */ }
    });
    source.addEventListener('resume', (e) => {
      // The server dropped us for lagging: reconnect from the cursor it names.
      let cursor = this.cursor;
      try { cursor = JSON.parse(e.data).cursor || cursor; } catch { /* keep ours */ }
      source.close();
      this.cursor = cursor;
      if (!this.stopped) this.connect();
    });
    source.addEventListener('closed', (e) => {
      // Closed for good (logout elsewhere, suspension): no reconnect, no polling.
      source.close();
      this.stop();
      let reason = '';
      try { reason = JSON.parse(e.data).reason || ''; } catch { /* unknown reason */ }
      if (reason === 'revoked' || reason === 'suspended') window.dispatchEvent(new CustomEvent('tidings:unauthorized'));
    });
    source.onerror = () => {
      if (this.stopped || source.readyState !== EventSource.CLOSED) return;
      // Closed for good: either no stream endpoint (never opened) or a refused reconnect.
      if (!opened) this.poll();
      else this.timer = setTimeout(() => !this.stopped && this.connect(), POLL_MS);
    };
  }

  async poll() {
    setMode('poll');
    try {
      const page = await get(`/inbox${qs({ ...this.filter, after: this.cursor, limit: 100 })}`);
      for (const item of [...page.items].reverse()) this.deliver(item);
    } catch { /* offline for a moment: try again next tick */ }
    if (!this.stopped) this.timer = setTimeout(() => this.poll(), POLL_MS);
  }
}

/** Which live path is in use, for people (a dot in the header) and tests. */
function setMode(mode) {
  document.documentElement.dataset.live = mode;
}
