// The live WebSocket client (/api/v1/live): latest values, alarms, status,
// server clock offset, and the "link lost" state.
import { api } from './api.js';

const SILENCE_MS = 1500;     // no frame for this long → link lost
const CONNECT_MS = 5000;     // first snapshot must come within this
const BACKOFF_MIN = 500;
const BACKOFF_MAX = 5000;

/** Sort as the server does: priority (urgent first), newest activation first, normal last. */
export function alarmOrder(a, b) {
  const an = a.state === 'normal' ? 1 : 0;
  const bn = b.state === 'normal' ? 1 : 0;
  if (an !== bn) return an - bn;
  if (a.priority !== b.priority) return b.priority - a.priority;
  const at = a.since_ms ?? a.last_change_ms ?? 0;
  const bt = b.since_ms ?? b.last_change_ms ?? 0;
  if (at !== bt) return bt - at;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * Events (CustomEvent, detail as noted):
 *  - 'snapshot'  {}                     full state replaced
 *  - 'delta'     {tags: [Live]}         values changed
 *  - 'alarm'     {alarm, change, seq}   one alarm transition
 *  - 'alarms'    {}                     alarm list refetched after a gap
 *  - 'status'    {status}
 *  - 'link'      {up, reason, since}    reason: 'closed'|'silent'|'no-data'|'connecting'
 */
export class Live extends EventTarget {
  constructor(url) {
    super();
    this.url = url || Live.defaultUrl();
    /** tag → {tag, v, q, r, ts} */
    this.values = new Map();
    /** alarm name → Alarm */
    this.alarms = new Map();
    this.alarmSeq = null;
    this.flood = false;
    this.status = null;
    this.offset = 0;          // server now − Date.now()
    this.up = false;
    this.reason = 'connecting';
    this.lostSince = Date.now();
    this.ws = null;
    this.backoff = BACKOFF_MIN;
    this.lastFrame = 0;
    this.gotSnapshot = false;
    this.refetching = null;
    this.pendingAlarms = [];
    this.stopped = true;
    this.timer = null;
    this.retryTimer = null;
  }

  static defaultUrl() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${proto}//${location.host}/api/v1/live`;
  }

  /** Server clock in ms. */
  now() { return Date.now() + this.offset; }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
    this.timer = setInterval(() => this.watchdog(), 250);
  }

  stop() {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.retryTimer);
    const old = this.ws;
    this.ws = null;
    if (old) { old.onclose = null; old.onmessage = null; old.close(1000); }
    this.gotSnapshot = false;
    // Stopped means logged out: nothing of the last session stays on screen.
    this.values.clear();
    this.alarms.clear();
    this.lost('closed');
  }

  /** Reconnect now (e.g. after a login). */
  restart() {
    this.backoff = BACKOFF_MIN;
    clearTimeout(this.retryTimer);
    if (this.ws) {
      const old = this.ws;
      this.ws = null;
      old.onclose = null;
      old.close(1000);
    }
    if (!this.stopped) this.connect();
  }

  connect() {
    clearTimeout(this.retryTimer);
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      this.lost('closed');
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    this.gotSnapshot = false;
    this.lastFrame = Date.now();
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      this.lastFrame = Date.now();
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      this.handle(msg);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.lost('closed');
      this.scheduleReconnect();
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  scheduleReconnect() {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    const wait = this.backoff;
    this.backoff = Math.min(BACKOFF_MAX, this.backoff * 2);
    this.retryTimer = setTimeout(() => this.connect(), wait);
  }

  watchdog() {
    if (!this.ws) return;
    const limit = this.gotSnapshot ? SILENCE_MS : CONNECT_MS;
    if (Date.now() - this.lastFrame > limit) {
      // Silent socket: link lost; drop it and reconnect for a fresh snapshot
      // (writes stay disabled until that snapshot).
      const old = this.ws;
      this.ws = null;
      old.onclose = null;
      old.onmessage = null;
      try { old.close(4001, 'silent'); } catch { /* ignore */ }
      this.lost('silent');
      this.scheduleReconnect();
    }
  }

  lost(reason) {
    if (this.up || this.reason !== reason) {
      const wasUp = this.up;
      this.up = false;
      this.reason = reason;
      if (wasUp) this.lostSince = Date.now();
      this.emit('link', { up: false, reason, since: this.lostSince });
    }
  }

  setUp() {
    if (!this.up) {
      this.up = true;
      this.reason = null;
      this.emit('link', { up: true, reason: null, since: null });
    }
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  clock(nowMs) {
    if (typeof nowMs === 'number') this.offset = nowMs - Date.now();
  }

  handle(msg) {
    switch (msg.type) {
      case 'snapshot': {
        this.clock(msg.now_ms);
        this.values.clear();
        for (const t of msg.tags || []) this.values.set(t.tag, t);
        this.alarms.clear();
        for (const a of msg.alarms || []) this.alarms.set(a.name, a);
        this.alarmSeq = msg.alarm_seq ?? null;
        this.status = msg.status || null;
        this.flood = !!(this.status && this.status.flood);
        this.gotSnapshot = true;
        this.backoff = BACKOFF_MIN;
        this.emit('snapshot', {});
        if (this.status) this.emit('status', { status: this.status });
        this.checkDataPath();
        break;
      }
      case 'delta': {
        this.clock(msg.now_ms);
        const tags = msg.tags || [];
        for (const t of tags) this.values.set(t.tag, t);
        this.emit('delta', { tags });
        break;
      }
      case 'alarm':
        this.onAlarm(msg);
        break;
      case 'status':
        this.clock(msg.now_ms);
        this.status = msg.status || null;
        if (this.status) this.flood = !!this.status.flood;
        this.emit('status', { status: this.status });
        this.checkDataPath();
        break;
      default:
        break;
    }
  }

  checkDataPath() {
    if (!this.gotSnapshot) return;
    if (this.status && this.status.data_path_ok === false) this.lost('no-data');
    else this.setUp();
  }

  onAlarm(msg) {
    if (this.refetching) {
      this.pendingAlarms.push(msg);
      return;
    }
    if (this.alarmSeq !== null && msg.seq <= this.alarmSeq) return; // already seen
    if (this.alarmSeq !== null && msg.seq !== this.alarmSeq + 1) {
      this.pendingAlarms.push(msg);
      this.refetchAlarms();
      return;
    }
    this.applyAlarm(msg);
  }

  applyAlarm(msg) {
    this.alarmSeq = msg.seq;
    if (msg.alarm) this.alarms.set(msg.alarm.name, msg.alarm);
    this.emit('alarm', { alarm: msg.alarm, change: msg.change, seq: msg.seq });
  }

  /** GET /api/v1/alarms after a sequence gap; replays what came meanwhile. */
  refetchAlarms() {
    if (this.refetching) return this.refetching;
    this.refetching = (async () => {
      try {
        const res = await api('/api/v1/alarms');
        this.alarms.clear();
        for (const a of res.alarms || []) this.alarms.set(a.name, a);
        this.alarmSeq = res.seq;
        this.flood = !!res.flood;
      } catch (e) {
        console.warn('alarm refetch failed', e);
      }
      const queued = this.pendingAlarms.sort((a, b) => a.seq - b.seq);
      this.pendingAlarms = [];
      this.refetching = null;
      this.emit('alarms', {});
      for (const m of queued) {
        if (this.alarmSeq === null || m.seq > this.alarmSeq) this.onAlarm(m);
      }
    })();
    return this.refetching;
  }

  /** Put an alarm returned by an action (ack/shelve) into the map right away. */
  updateAlarm(alarm) {
    if (!alarm || !alarm.name) return;
    this.alarms.set(alarm.name, alarm);
    this.emit('alarm', { alarm, change: 'local', seq: this.alarmSeq });
  }

  /** Alarms sorted as the server sorts them. */
  sortedAlarms() {
    return [...this.alarms.values()].sort(alarmOrder);
  }
}

let shared = null;
/** The page's one socket. */
export function getLive() {
  if (!shared) shared = new Live();
  return shared;
}
