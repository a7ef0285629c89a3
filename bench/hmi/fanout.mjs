#!/usr/bin/env node
// HMI live-update fan-out load client (bench/hmi).
//
// Opens N clients for D seconds against APOS (`GET /api/v1/live`, WebSocket)
// or against Node-RED + Dashboard 2 (socket.io, as the dashboard's own browser
// client connects) and measures:
//   - update latency = receive time (Date.now()) - the value's generation or
//     acquisition timestamp (ms, same machine, same clock): p50/p90/p99/max;
//   - updates received per client (and per second), frames per client;
//   - the server process's CPU over the measurement window, from
//     /proc/<pid>/stat utime+stime, as % of one core (also before clients);
//   - the server's VmRSS (/proc/<pid>/status) just before the clients connect
//     and its peak while they are connected (sampled every 100 ms):
//     extra = peak - before.
//
//   node fanout.mjs --target apos    --url http://127.0.0.1:PORT --pid PID --user U --password P
//   node fanout.mjs --target nodered --url http://127.0.0.1:PORT --pid PID
//   options: --clients 20 --duration 60 --baseline 5 --settle 5 --connect-timeout 20
//            --dashboard /dashboard (Node-RED: ui-base path)
//            --logins shared|per-client (APOS: one login for all clients, or one each)
//            --workers 2 (threads the clients are spread over)
//
// One JSON line on stdout (see README.md for the fields), a table on stderr.
// Exit code 0 when every client stayed connected and received updates, else 2.
import fs from 'node:fs'
import os from 'node:os'
import { execSync } from 'node:child_process'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import { setTimeout as sleep } from 'node:timers/promises'
import WebSocket from 'ws'
import { io } from 'socket.io-client'

// ---------------------------------------------------------------- arguments
function parseArgs (argv) {
    const a = {
        target: null,
        url: null,
        pid: null,
        user: null,
        password: null,
        clients: 20,
        duration: 60,
        baseline: 5,
        settle: 5,
        connectTimeout: 20,
        dashboard: '/dashboard',
        logins: 'shared',
        workers: 2,
        label: null
    }
    for (let i = 0; i < argv.length; i++) {
        const k = argv[i]
        const v = argv[i + 1]
        const take = () => { i++; if (v === undefined) throw new Error(`${k} needs a value`); return v }
        switch (k) {
        case '--target': a.target = take(); break
        case '--url': a.url = take().replace(/\/+$/, ''); break
        case '--pid': a.pid = Number(take()); break
        case '--user': a.user = take(); break
        case '--password': a.password = take(); break
        case '--clients': a.clients = Number(take()); break
        case '--duration': a.duration = Number(take()); break
        case '--baseline': a.baseline = Number(take()); break
        case '--settle': a.settle = Number(take()); break
        case '--connect-timeout': a.connectTimeout = Number(take()); break
        case '--dashboard': a.dashboard = '/' + take().replace(/^\/+|\/+$/g, ''); break
        case '--logins': a.logins = take(); break
        case '--workers': a.workers = Number(take()); break
        case '--label': a.label = take(); break
        case '-h':
        case '--help':
            process.stderr.write(fs.readFileSync(new URL(import.meta.url)).toString().split('\nimport ')[0] + '\n')
            process.exit(0)
            break
        default: throw new Error(`unknown argument ${k}`)
        }
    }
    if (!['apos', 'nodered'].includes(a.target)) throw new Error('--target apos|nodered is required')
    if (!a.url) throw new Error('--url http://HOST:PORT is required')
    if (!Number.isInteger(a.pid) || a.pid <= 0) throw new Error('--pid PID (the server process) is required')
    if (!fs.existsSync(`/proc/${a.pid}/stat`)) throw new Error(`no process ${a.pid}`)
    if (!['shared', 'per-client'].includes(a.logins)) throw new Error('--logins shared|per-client')
    if (!(a.clients >= 1) || !(a.duration > 0)) throw new Error('--clients >= 1 and --duration > 0')
    return a
}

// ---------------------------------------------------------------- /proc
let CLK_TCK = 100
try { CLK_TCK = Number(execSync('getconf CLK_TCK').toString().trim()) || 100 } catch { /* keep 100 */ }

/** utime + stime of a process, in seconds */
function procCpuSeconds (pid) {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ') // f[0] is field 3 (state)
    return (Number(f[11]) + Number(f[12])) / CLK_TCK // fields 14 and 15
}

/** busy CPU seconds of the whole machine (all cores), from /proc/stat */
function hostBusySeconds () {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0) // user..steal (guest is inside user)
    return (total - f[3] - f[4]) / CLK_TCK // minus idle and iowait
}

/** VmRSS of a process, in kB (null when it has gone) */
function procRssKb (pid) {
    try {
        const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
        return m ? Number(m[1]) : null
    } catch {
        return null
    }
}

// ---------------------------------------------------------------- latency
/** 1 ms buckets up to 120 s, plus exact max and sum */
class Histogram {
    constructor () {
        this.buckets = new Uint32Array(120001)
        this.n = 0
        this.sum = 0
        this.max = -Infinity
        this.min = Infinity
        this.negative = 0
    }

    add (ms) {
        if (ms < 0) { this.negative++; ms = 0 }
        this.n++
        this.sum += ms
        if (ms > this.max) this.max = ms
        if (ms < this.min) this.min = ms
        this.buckets[Math.min(Math.round(ms), this.buckets.length - 1)]++
    }

    /** q in [0,1]: smallest bucket value v with at least q*n samples <= v */
    quantile (q) {
        if (this.n === 0) return null
        const want = Math.max(1, Math.ceil(q * this.n))
        let seen = 0
        for (let i = 0; i < this.buckets.length; i++) {
            seen += this.buckets[i]
            if (seen >= want) return i
        }
        return this.buckets.length - 1
    }
}

// ---------------------------------------------------------------- clients
class ClientStats {
    constructor (id) {
        this.id = id
        this.updates = 0 // tag updates with a timestamp received in the window
        this.frames = 0 // messages (WebSocket frames / socket.io events) carrying updates, in the window
        this.initial = 0 // values received in snapshots / widget-load replies (not timed)
        this.disconnects = 0
        this.lagging = 0 // APOS close code 4000
        this.errors = []
        this.ready = false
        this.lastRxMs = 0
        this.transport = null
        this.bytes = 0 // message payload bytes in the window (no WebSocket framing)
    }
}

const state = { measuring: false, hist: new Histogram(), stopping: false }

function record (st, ts, now) {
    if (!state.measuring) return
    if (typeof ts !== 'number' || !Number.isFinite(ts)) return
    st.updates++
    state.hist.add(now - ts)
}

// ---- APOS: POST /api/v1/session, then ws /api/v1/live with the cookie
async function aposLogin (args) {
    if (args.user === null) return null // anonymous_view
    const res = await fetch(args.url + '/api/v1/session', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ user: args.user, password: args.password ?? '' })
    })
    if (res.status !== 200) {
        throw new Error(`login as ${args.user}: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`)
    }
    const cookies = typeof res.headers.getSetCookie === 'function'
        ? res.headers.getSetCookie()
        : [res.headers.get('set-cookie') ?? '']
    for (const c of cookies) {
        const m = /(?:^|[,\s])apos_session=([^;,\s]*)/.exec(c)
        if (m) return `apos_session=${m[1]}`
    }
    throw new Error('login answered 200 without an apos_session cookie')
}

function aposConnect (args, st, cookie, onReady) {
    const wsUrl = args.url.replace(/^http/, 'ws') + '/api/v1/live'
    const headers = cookie ? { Cookie: cookie } : {}
    const ws = new WebSocket(wsUrl, { headers, perMessageDeflate: false })
    st.close = () => ws.close(1000)
    st.transport = 'websocket'
    ws.on('message', (data, isBinary) => {
        const now = Date.now()
        st.lastRxMs = now
        if (state.measuring) st.bytes += data.length
        if (isBinary) return
        let m
        try { m = JSON.parse(data.toString()) } catch (e) { st.errors.push('bad JSON: ' + e.message); return }
        if (m.type === 'snapshot') {
            st.initial += Array.isArray(m.tags) ? m.tags.length : 0
            if (!st.ready) { st.ready = true; onReady() }
        } else if (m.type === 'delta' && Array.isArray(m.tags)) {
            if (state.measuring) st.frames++
            for (const t of m.tags) record(st, t.ts, now)
        }
    })
    ws.on('unexpected-response', (_req, res) => {
        st.errors.push(`live: HTTP ${res.statusCode}`)
        if (!st.ready) onReady(new Error(`GET /api/v1/live: HTTP ${res.statusCode}`))
    })
    ws.on('error', (err) => { st.errors.push(err.message) })
    ws.on('close', (code) => {
        if (state.stopping) return
        st.disconnects++
        if (code === 4000) st.lagging++
        // as the page does: reconnect and take a new snapshot
        setTimeout(() => { if (!state.stopping) aposConnect(args, st, cookie, () => {}) }, 100)
    })
}

// ---- Node-RED Dashboard 2: GET <base>/_setup, socket.io at its path,
// ui-config, then widget-load + msg-input:<id> for each widget of the page
let noderedSetup = null
async function noderedPrepare (args) {
    const res = await fetch(args.url + args.dashboard + '/_setup')
    if (res.status !== 200) throw new Error(`GET ${args.dashboard}/_setup: HTTP ${res.status}`)
    noderedSetup = await res.json()
    if (!noderedSetup?.socketio?.path) throw new Error('_setup has no socketio.path')
    return null
}

function noderedHandle (st, msg, now) {
    const p = msg?.payload
    if (Array.isArray(p)) {
        for (const u of p) record(st, u?.ts, now)
    } else if (p && typeof p === 'object') {
        record(st, p.ts, now)
    }
}

function noderedConnect (args, st, _cookie, onReady) {
    const sock = io(args.url, {
        path: noderedSetup.socketio.path,
        forceNew: true, // one engine.io connection per client, never multiplexed
        reconnection: false, // as the dashboard's client; we reconnect ourselves below
        transports: ['polling', 'websocket'] // the server refuses a direct websocket start
    })
    st.close = () => sock.disconnect()
    const subscribed = new Set()
    sock.on('ui-config', (_baseId, cfg) => {
        for (const id of Object.keys(cfg?.widgets ?? {})) {
            if (subscribed.has(id)) continue
            subscribed.add(id)
            sock.on('msg-input:' + id, (msg) => {
                const now = Date.now()
                st.lastRxMs = now
                if (state.measuring) st.frames++
                noderedHandle(st, msg, now)
            })
            sock.on('widget-load:' + id, (msg) => {
                const p = msg?.payload
                st.initial += Array.isArray(p) ? p.length : (p ? 1 : 0)
            })
            sock.emit('widget-load', id) // as each mounted widget does
        }
        if (!st.ready) { st.ready = true; onReady() }
    })
    sock.on('connect', () => {
        const engine = sock.io.engine
        st.transport = engine.transport.name
        engine.on('upgrade', (t) => { st.transport = t.name })
        engine.on('data', (d) => { if (state.measuring) st.bytes += typeof d === 'string' ? Buffer.byteLength(d) : d.byteLength })
    })
    sock.on('connect_error', (err) => {
        st.errors.push('connect_error: ' + err.message)
        if (!st.ready) onReady(err)
    })
    sock.on('disconnect', (reason) => {
        if (state.stopping) return
        st.disconnects++
        st.errors.push('disconnect: ' + reason)
        setTimeout(() => { if (!state.stopping) noderedConnect(args, st, null, () => {}) }, 100)
    })
}

// ---------------------------------------------------------------- worker
// The clients run in --workers worker threads (default 2), so that decoding
// 20 x 1,000 socket.io events a second is not serialised on one thread and
// the load client adds as little latency as it can on this machine.
function connectAll (args, clients, cookies, connect) {
    return Promise.all(clients.map((st, i) => new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`client ${st.id}: not ready after ${args.connectTimeout} s (${st.errors.slice(-1)[0] ?? 'no error'})`)), args.connectTimeout * 1000)
        connect(args, st, cookies[i], (err) => {
            clearTimeout(timer)
            if (err) reject(new Error(`client ${st.id}: ${err.message}`))
            else resolve()
        })
    })))
}

async function workerMain () {
    const { args, cookies, setup, first } = workerData
    noderedSetup = setup
    const connect = args.target === 'apos' ? aposConnect : noderedConnect
    const clients = cookies.map((_, i) => new ClientStats(first + i))
    const loop = monitorEventLoopDelay({ resolution: 10 })
    parentPort.on('message', (m) => {
        if (m.type === 'start') {
            loop.enable()
            state.measuring = true
        } else if (m.type === 'stop') {
            state.measuring = false
            loop.disable()
            state.stopping = true
            for (const st of clients) { try { st.close?.() } catch { /* gone */ } }
            const h = state.hist
            parentPort.postMessage({
                type: 'result',
                hist: { buckets: h.buckets, n: h.n, sum: h.sum, max: h.max, min: h.min, negative: h.negative },
                clients: clients.map((st) => ({
                    id: st.id, updates: st.updates, frames: st.frames, bytes: st.bytes, initial: st.initial,
                    disconnects: st.disconnects, lagging: st.lagging, errors: st.errors.slice(0, 10), transport: st.transport
                })),
                loopP99Ms: loop.count ? loop.percentile(99) / 1e6 : 0
            })
        }
    })
    try {
        await connectAll(args, clients, cookies, connect)
        parentPort.postMessage({ type: 'ready' })
    } catch (err) {
        parentPort.postMessage({ type: 'error', message: err.message })
    }
}

// ---------------------------------------------------------------- main
function pct (x) { return Math.round(x * 100) / 100 }
function mb (kb) { return kb === null || kb === undefined ? null : Math.round((kb / 1024) * 100) / 100 }

async function main () {
    const args = parseArgs(process.argv.slice(2))
    const pid = args.pid

    // logins / setup before anything is measured (a password hash must not count as fan-out memory)
    let cookies = []
    if (args.target === 'apos') {
        if (args.logins === 'shared') {
            const c = await aposLogin(args)
            cookies = Array(args.clients).fill(c)
        } else {
            for (let i = 0; i < args.clients; i++) cookies.push(await aposLogin(args))
        }
    } else {
        await noderedPrepare(args)
        cookies = Array(args.clients).fill(null)
    }

    // server CPU with the feed running and no client connected
    let baselineCpuPct = null
    if (args.baseline > 0) {
        const c0 = procCpuSeconds(pid)
        const w0 = performance.now()
        await sleep(args.baseline * 1000)
        baselineCpuPct = ((procCpuSeconds(pid) - c0) / ((performance.now() - w0) / 1000)) * 100
    }

    const rssBeforeKb = procRssKb(pid)
    let rssPeakKb = rssBeforeKb
    const rssSeriesMb = [] // one sample a second from just before the clients connect
    let rssTicks = 0
    const rssTimer = setInterval(() => {
        const r = procRssKb(pid)
        if (r !== null && r > rssPeakKb) rssPeakKb = r
        if (rssTicks++ % 10 === 0) rssSeriesMb.push(r === null ? null : Math.round(r / 1024))
    }, 100)

    // connect every client (spread over the workers), wait until each has its snapshot / ui-config
    const nWorkers = Math.max(1, Math.min(args.workers, args.clients))
    const workers = []
    const tConnect = performance.now()
    const ready = []
    for (let w = 0, first = 0; w < nWorkers; w++) {
        const count = Math.floor(args.clients / nWorkers) + (w < args.clients % nWorkers ? 1 : 0)
        const worker = new Worker(new URL(import.meta.url), {
            workerData: { args, cookies: cookies.slice(first, first + count), setup: noderedSetup, first }
        })
        workers.push(worker)
        ready.push(new Promise((resolve, reject) => {
            const t = setTimeout(() => reject(new Error(`worker ${w}: clients not ready after ${args.connectTimeout + 5} s`)), (args.connectTimeout + 5) * 1000)
            worker.once('error', (e) => { clearTimeout(t); reject(e) })
            worker.once('message', (m) => {
                clearTimeout(t)
                if (m.type === 'ready') resolve()
                else reject(new Error(m.message ?? 'worker failed'))
            })
        }))
        first += count
    }
    try {
        await Promise.all(ready)
    } catch (err) {
        for (const w of workers) w.terminate()
        throw err
    }
    const connectMs = performance.now() - tConnect
    const rssConnectedKb = procRssKb(pid)

    // let the connection transient pass (e.g. socket.io's polling-to-websocket
    // upgrade, snapshot sending) before the window; RSS peak still covers it
    if (args.settle > 0) await sleep(args.settle * 1000)
    let rssWindowPeakKb = procRssKb(pid) ?? 0
    const rssWindowKb = []
    const rssWindowTimer = setInterval(() => {
        const r = procRssKb(pid)
        if (r !== null && r > rssWindowPeakKb) rssWindowPeakKb = r
        if (r !== null) rssWindowKb.push(r)
    }, 100)

    // measurement window
    const results = workers.map((w) => new Promise((resolve) => w.once('message', resolve)))
    const selfCpu0 = process.cpuUsage() // the whole load-client process, all threads
    const cpu0 = procCpuSeconds(pid)
    const host0 = hostBusySeconds()
    const w0 = performance.now()
    for (const w of workers) w.postMessage({ type: 'start' })
    await sleep(args.duration * 1000)
    for (const w of workers) w.postMessage({ type: 'stop' })
    const cpu1 = procCpuSeconds(pid)
    const host1 = hostBusySeconds()
    const window = (performance.now() - w0) / 1000
    const selfCpu = process.cpuUsage(selfCpu0)
    const rssEnd = procRssKb(pid)
    if (rssEnd !== null && rssEnd > rssPeakKb) rssPeakKb = rssEnd
    if (rssEnd !== null && rssEnd > rssWindowPeakKb) rssWindowPeakKb = rssEnd
    clearInterval(rssTimer)
    clearInterval(rssWindowTimer)

    const parts = await Promise.all(results)
    for (const w of workers) w.terminate()
    const h = new Histogram()
    const clients = []
    let loopP99 = 0
    for (const r of parts) {
        for (let i = 0; i < h.buckets.length; i++) h.buckets[i] += r.hist.buckets[i]
        h.n += r.hist.n
        h.sum += r.hist.sum
        h.max = Math.max(h.max, r.hist.max)
        h.min = Math.min(h.min, r.hist.min)
        h.negative += r.hist.negative
        clients.push(...r.clients)
        loopP99 = Math.max(loopP99, r.loopP99Ms)
    }

    const perClientRate = clients.map((st) => st.updates / window)
    const framesRate = clients.map((st) => st.frames / window)
    const sum = (xs) => xs.reduce((a, b) => a + b, 0)
    const disconnects = sum(clients.map((st) => st.disconnects))
    const starved = clients.filter((st) => st.updates === 0).length
    const result = {
        bench: 'hmi-fanout',
        target: args.target,
        label: args.label,
        url: args.url,
        pid,
        clients: args.clients,
        duration_s: pct(window),
        cpu_pct: pct(((cpu1 - cpu0) / window) * 100),
        cpu_baseline_pct: baselineCpuPct === null ? null : pct(baselineCpuPct),
        rss_before_mb: mb(rssBeforeKb),
        rss_peak_mb: mb(rssPeakKb),
        rss_extra_mb: rssBeforeKb === null ? null : mb(rssPeakKb - rssBeforeKb),
        rss_connected_mb: mb(rssConnectedKb),
        rss_window_median_mb: rssWindowKb.length ? mb(rssWindowKb.sort((x, y) => x - y)[rssWindowKb.length >> 1]) : null,
        rss_window_peak_mb: mb(rssWindowPeakKb),
        rss_end_mb: mb(rssEnd),
        rss_series_mb: rssSeriesMb,
        latency_p50_ms: h.quantile(0.5),
        latency_p90_ms: h.quantile(0.9),
        latency_p99_ms: h.quantile(0.99),
        latency_max_ms: h.n ? h.max : null,
        latency_mean_ms: h.n ? pct(h.sum / h.n) : null,
        latency_samples: h.n,
        latency_negative: h.negative,
        updates_total: sum(clients.map((st) => st.updates)),
        updates_per_client_per_s: pct(sum(perClientRate) / clients.length),
        updates_per_client_per_s_min: pct(Math.min(...perClientRate)),
        updates_per_client_per_s_max: pct(Math.max(...perClientRate)),
        frames_per_client_per_s: pct(sum(framesRate) / clients.length),
        bytes_per_client_per_s: Math.round(sum(clients.map((st) => st.bytes)) / clients.length / window),
        initial_values_per_client: Math.round(sum(clients.map((st) => st.initial)) / clients.length),
        connect_ms: Math.round(connectMs),
        settle_s: args.settle,
        disconnects,
        lagging_closes: sum(clients.map((st) => st.lagging)),
        clients_without_updates: starved,
        client_transports: clients.reduce((m, st) => { m[st.transport] = (m[st.transport] ?? 0) + 1; return m }, {}),
        errors: [...new Set(clients.flatMap((st) => st.errors))].slice(0, 10),
        client_workers: nWorkers,
        client_cpu_pct: pct(((selfCpu.user + selfCpu.system) / 1e6 / window) * 100),
        client_loop_delay_p99_ms: pct(loopP99),
        host_cores: os.cpus().length,
        host_busy_pct: pct(((host1 - host0) / window) * 100),
        host_other_busy_pct: pct(((host1 - host0 - (cpu1 - cpu0)) / window) * 100 - ((selfCpu.user + selfCpu.system) / 1e6 / window) * 100),
        host_loadavg: os.loadavg().map((x) => pct(x)),
        clk_tck: CLK_TCK
    }
    process.stdout.write(JSON.stringify(result) + '\n')

    const row = (k, v) => process.stderr.write(`  ${k.padEnd(42)} ${v}\n`)
    process.stderr.write(`\nHMI fan-out: ${args.target} ${args.url} (pid ${pid}), ${args.clients} clients x ${pct(window)} s\n`)
    row('server CPU (% of one core)', `${result.cpu_pct}   (before clients: ${result.cpu_baseline_pct ?? '-'})`)
    row('server RSS before / peak / extra', `${result.rss_before_mb} / ${result.rss_peak_mb} / ${result.rss_extra_mb} MB`)
    row('server RSS in window: median / peak / end', `${result.rss_window_median_mb} / ${result.rss_window_peak_mb} / ${result.rss_end_mb} MB`)
    row('latency p50 / p90 / p99 / max', `${result.latency_p50_ms} / ${result.latency_p90_ms} / ${result.latency_p99_ms} / ${result.latency_max_ms} ms`)
    row('latency samples', `${result.latency_samples}`)
    row('updates per client per s', `${result.updates_per_client_per_s}  (min ${result.updates_per_client_per_s_min}, max ${result.updates_per_client_per_s_max})`)
    row('frames / bytes per client per s', `${result.frames_per_client_per_s} / ${result.bytes_per_client_per_s}`)
    row('disconnects / lagging closes', `${result.disconnects} / ${result.lagging_closes}`)
    row('load client CPU / loop delay p99', `${result.client_cpu_pct} % (${nWorkers} workers) / ${result.client_loop_delay_p99_ms} ms`)
    row('host busy / of it not server nor client', `${result.host_busy_pct} % / ${result.host_other_busy_pct} % of one core (${result.host_cores} cores)`)
    if (result.errors.length) row('errors', result.errors.join('; '))

    const ok = disconnects === 0 && starved === 0 && h.n > 0
    setTimeout(() => process.exit(ok ? 0 : 2), 200)
}

if (isMainThread) {
    main().catch((err) => {
        process.stderr.write(`fanout: ${err.message}\n`)
        process.exit(1)
    })
} else {
    workerMain()
}
