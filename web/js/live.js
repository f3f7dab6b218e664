// The client's one live channel: Server-Sent Events from /api/v1/inbox/stream, bound to the
// inbox with the filters as arguments (never one channel per circle), and asking for the
// notification counts on the same connection (`counts=notifications` → `counts` events). If
// the server has no stream endpoint the same callbacks are fed by polling
// GET /api/v1/inbox?after=CURSOR and GET /api/v1/feeds.
//
// The channel belongs to the app, not to a page: it runs while someone is logged in so the
// header's badge stays live everywhere. The home page binds its filter and resume cursor to it
// (`bindInbox`), which reconnects the same channel with the new arguments.

import { get, qs, session } from './api.js';
import { NOTIFICATIONS_FEED, refreshNotificationCounts, setNotificationCounts } from './badge.js';

const POLL_MS = 2000;
/** Without `counts` events, new entries may be notifications: re-read the counts this soon. */
const COUNTS_REFRESH_MS = 300;

/** Live inbox items newer than `after`, delivered oldest first to `onItem`; counts to `onCounts`. */
export class InboxLive {
  constructor({ filter = {}, after = null, onItem = null, onCounts = null } = {}) {
    this.filter = filter;
    this.cursor = after || null;
    this.onItem = onItem;
    this.onCounts = onCounts;
    this.source = null;
    this.timer = null;
    this.stopped = false;
    this.seen = new Set();
    /** Whether this server sends `counts` events (then entries need no counts refresh). */
    this.countsArrive = false;
    this.countsTimer = null;
  }

  start() {
    if (typeof EventSource === 'undefined') this.poll();
    else this.connect();
  }

  stop() {
    this.stopped = true;
    if (this.source) this.source.close();
    clearTimeout(this.timer);
    clearTimeout(this.countsTimer);
    setMode('off');
  }

  /** Changes the arguments of the one channel and reconnects it from `after`. */
  rebind({ filter = {}, after = null, onItem = null }) {
    this.filter = filter;
    this.cursor = after || this.cursor;
    this.onItem = onItem;
    this.seen = new Set();
    if (this.stopped) return;
    if (this.source) {
      this.source.close();
      this.source = null;
      clearTimeout(this.timer);
      this.connect();
    }
    // While polling, the next tick already reads with the new arguments.
  }

  deliver(item) {
    if (!item || !item.cursor || this.seen.has(item.cursor)) return;
    this.seen.add(item.cursor);
    this.cursor = item.cursor;
    if (this.onItem) this.onItem(item);
    if (!this.countsArrive) this.refreshCountsSoon();
  }

  refreshCountsSoon() {
    clearTimeout(this.countsTimer);
    this.countsTimer = setTimeout(() => { if (!this.stopped) refreshNotificationCounts(); }, COUNTS_REFRESH_MS);
  }

  counts(payload) {
    if (payload && this.onCounts) this.onCounts(payload);
  }

  connect() {
    const url = `/api/v1/inbox/stream${qs({ ...this.filter, after: this.cursor, counts: NOTIFICATIONS_FEED, access_token: session.token })}`;
    const source = new EventSource(url);
    this.source = source;
    let opened = false;
    source.onopen = () => {
      opened = true;
      setMode('sse');
    };
    source.addEventListener('ready', (e) => {
      // Without a cursor of our own, resume from where the server started us.
      if (!this.cursor && e.lastEventId) this.cursor = e.lastEventId;
    });
    source.addEventListener('entry', (e) => {
      try { this.deliver(JSON.parse(e.data)); } catch { /* a malformed event is skipped */ }
    });
    source.addEventListener('counts', (e) => {
      this.countsArrive = true;
      // For people nothing shows; tests read which path fed the badge.
      document.documentElement.dataset.counts = 'sse';
      try { this.counts(JSON.parse(e.data)); } catch { /* a malformed event is skipped */ }
    });
    source.addEventListener('resume', (e) => {
      // The server dropped us for lagging: reconnect from the cursor it names.
      let cursor = this.cursor;
      try { cursor = JSON.parse(e.data).cursor || cursor; } catch { /* keep ours */ }
      source.close();
      this.cursor = cursor;
      if (!this.stopped && this.source === source) this.connect();
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
      if (this.stopped || this.source !== source || source.readyState !== EventSource.CLOSED) return;
      // Closed for good: either no stream endpoint (never opened) or a refused reconnect.
      if (!opened) this.poll();
      else this.timer = setTimeout(() => !this.stopped && this.connect(), POLL_MS);
    };
  }

  async poll() {
    this.source = null;
    setMode('poll');
    try {
      const page = await get(`/inbox${qs({ ...this.filter, after: this.cursor, limit: 100 })}`);
      for (const item of [...page.items].reverse()) this.deliver(item);
      if (!page.items.length) await refreshNotificationCounts();
    } catch { /* offline for a moment: try again next tick */ }
    if (!this.stopped) this.timer = setTimeout(() => this.poll(), POLL_MS);
  }
}

/** Which live path is in use, for people (a dot in the header) and tests. */
function setMode(mode) {
  document.documentElement.dataset.live = mode;
}

/** The app's one channel while someone is logged in, and the token it was opened with. */
let channel = null;
let channelToken = null;

/** Starts the channel after login (no-op if it runs); the badge gets its first counts at once. */
export function startLive() {
  if (channel && channelToken === session.token) return;
  stopLive();
  if (!session.token) return;
  channelToken = session.token;
  refreshNotificationCounts();
  channel = new InboxLive({
    onCounts: (payload) => setNotificationCounts(payload[NOTIFICATIONS_FEED]),
  });
  channel.start();
}

/** Stops the channel (logout, ended session). */
export function stopLive() {
  if (channel) channel.stop();
  channel = null;
  channelToken = null;
}

/**
 * Binds the inbox page to the channel: its filter and resume cursor become the channel's
 * arguments and new items go to `onItem`. Returns the unbind function.
 */
export function bindInbox({ filter, after, onItem }) {
  startLive();
  if (!channel) return () => {};
  const bound = channel;
  bound.rebind({ filter, after, onItem });
  return () => {
    // The channel stays open for the badge; entries simply have no page to go to.
    if (bound.onItem === onItem) bound.onItem = null;
  };
}
