// The hub's live WebSocket (/api/v1/live). Its messages are notices, not
// data: {type: "hello"} after connecting, then {type: "node"|"kpis"|"alarms"|
// "alert", site, node, ...} after the hub stored something, and "ping" to show
// the socket is alive. Pages refetch what a notice names. After any gap (the
// socket closed, the server said 4000 "resync", or nothing came for 12 s) the
// pages refetch everything once the next "hello" arrives.

const SILENCE_MS = 12_000;
const BACKOFF_MIN = 500;
const BACKOFF_MAX = 10_000;

/**
 * Events (CustomEvent, detail as noted):
 *  - 'link'    {up, reason, since}   reason: 'connecting'|'closed'|'silent'|'resync'
 *  - 'resync'  {}                    (re)connected: refetch everything shown
 *  - 'node' | 'kpis' | 'alarms' | 'alert'   the message as received
 */
export class HubLive extends EventTarget {
  constructor(url) {
    super();
    this.url = url || HubLive.defaultUrl();
    this.up = false;
    this.reason = 'connecting';
    this.lostSince = Date.now();
    this.lastUpdate = null; // local ms of the last hello or notice
    this.offset = 0; // server now − Date.now(), when the server sends now_ms
    this.ws = null;
    this.backoff = BACKOFF_MIN;
    this.lastFrame = 0;
    this.stopped = true;
    this.timer = null;
    this.retryTimer = null;
  }

  static defaultUrl() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${proto}//${location.host}/api/v1/live`;
  }

  now() { return Date.now() + this.offset; }

  /** The hub's clock from an answer's `now_ms`: ages count from it. */
  clock(nowMs) { if (typeof nowMs === 'number' && Number.isFinite(nowMs)) this.offset = nowMs - Date.now(); }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
    this.timer = setInterval(() => this.watchdog(), 1000);
  }

  stop() {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.retryTimer);
    this.drop(1000);
    this.lost('closed');
  }

  /** Reconnect now (after a login: the socket needs the new cookie). */
  restart() {
    this.backoff = BACKOFF_MIN;
    clearTimeout(this.retryTimer);
    this.drop(1000);
    if (!this.stopped) this.connect();
  }

  drop(code, why) {
    const old = this.ws;
    this.ws = null;
    if (!old) return;
    old.onclose = null;
    old.onmessage = null;
    try { old.close(code, why); } catch { /* already closing */ }
  }

  connect() {
    clearTimeout(this.retryTimer);
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.lost('closed');
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    this.lastFrame = Date.now();
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      this.lastFrame = Date.now();
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      this.handle(msg);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      // 4000: the server dropped notices for this socket (it lagged): what
      // is on screen may be behind until the next hello.
      this.lost(ev.code === 4000 ? 'resync' : 'closed');
      this.scheduleReconnect(ev.code === 4000);
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  scheduleReconnect(now = false) {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    const wait = now ? 0 : this.backoff;
    this.backoff = Math.min(BACKOFF_MAX, this.backoff * 2);
    this.retryTimer = setTimeout(() => this.connect(), wait);
  }

  watchdog() {
    if (!this.ws) return;
    if (Date.now() - this.lastFrame > SILENCE_MS) {
      this.drop(4001, 'silent');
      this.lost('silent');
      this.scheduleReconnect();
    }
  }

  lost(reason) {
    if (this.up || this.reason !== reason) {
      if (this.up) this.lostSince = Date.now();
      this.up = false;
      this.reason = reason;
      this.emit('link', { up: false, reason, since: this.lostSince });
    }
  }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  handle(msg) {
    this.clock(msg.now_ms);
    switch (msg.type) {
      case 'hello':
        this.backoff = BACKOFF_MIN;
        this.lastUpdate = Date.now();
        this.up = true;
        this.reason = null;
        this.emit('link', { up: true, reason: null, since: null });
        this.emit('resync', {});
        break;
      case 'node':
      case 'kpis':
      case 'alarms':
      case 'alert':
        this.lastUpdate = Date.now();
        this.emit(msg.type, msg);
        break;
      default:
        break; // ping and anything newer
    }
  }
}

let shared = null;
/** The page's one socket. */
export function getLive() {
  if (!shared) shared = new HubLive();
  return shared;
}
