#!/usr/bin/env node
// Tag update generator for the Node-RED peer of the HMI fan-out bench.
//
// Sends RATE updates per second, round-robin over TAGS tags (so with the
// defaults every tag changes once per second, as a 1 s Modbus poll of 1,000
// registers does for APOS), as WebSocket text frames, one update per frame:
//   {"tag":"tag0001","v":52.37,"q":"good","ts":1733160000123}
// `ts` is Date.now() (ms) when the update was generated; the load client's
// latency is its receive time minus this.
//
//   node feed.mjs --url ws://127.0.0.1:1880/feed [--rate 1000] [--tags 1000] [--duration S]
//                 [--pattern even|poll]
//
// --pattern even (default): the updates are spread evenly, RATE/100 every 10 ms.
// --pattern poll: every tag at once once a second, all with the same ts, as
//   one Modbus poll cycle delivers them to APOS (RATE is then TAGS per second).
//
// Prints "feed: connected" to stderr once the socket is open, and on exit
// (SIGTERM/SIGINT or --duration) one JSON line with what it sent to stdout.
import WebSocket from 'ws'

function parseArgs (argv) {
    const a = { url: null, rate: 1000, tags: 1000, duration: 0, tick: 10, pattern: 'even' }
    for (let i = 0; i < argv.length; i++) {
        const k = argv[i]
        const v = argv[i + 1]
        switch (k) {
        case '--url': a.url = v; i++; break
        case '--rate': a.rate = Number(v); i++; break
        case '--tags': a.tags = Number(v); i++; break
        case '--duration': a.duration = Number(v); i++; break
        case '--tick': a.tick = Number(v); i++; break
        case '--pattern': a.pattern = v; i++; break
        default: throw new Error(`feed.mjs: unknown argument ${k}`)
        }
    }
    if (!a.url) throw new Error('feed.mjs: --url ws://HOST:PORT/PATH is required')
    if (!['even', 'poll'].includes(a.pattern)) throw new Error('feed.mjs: --pattern even|poll')
    if (a.pattern === 'poll') a.rate = a.tags
    return a
}

const args = parseArgs(process.argv.slice(2))
const names = Array.from({ length: args.tags }, (_, i) => 'tag' + String(i + 1).padStart(4, '0'))

let sent = 0
let next = 0 // next tag index
let t0 = 0
let maxBacklog = 0
let timer = null
let done = false

function value (i, now) {
    return Math.round((50 + 40 * Math.sin(now / 7000 + i)) * 100) / 100
}

function pollTick (ws) {
    const now = Date.now()
    const due = (Math.floor((now - t0) / 1000) + 1) * args.tags // a cycle at t0, t0+1 s, ...
    const backlog = due - sent
    if (backlog > maxBacklog) maxBacklog = backlog
    while (sent < due) {
        for (let i = 0; i < args.tags; i++) {
            ws.send(`{"tag":"${names[i]}","v":${value(i, now)},"q":"good","ts":${now}}`)
        }
        sent += args.tags
    }
}

function tick (ws) {
    const now = Date.now()
    const due = Math.floor(((now - t0) * args.rate) / 1000)
    const backlog = due - sent
    if (backlog > maxBacklog) maxBacklog = backlog
    while (sent < due) {
        const i = next
        next = (next + 1) % args.tags
        ws.send(`{"tag":"${names[i]}","v":${value(i, now)},"q":"good","ts":${Date.now()}}`)
        sent++
    }
}

function finish (code) {
    if (done) return
    done = true
    if (timer) clearInterval(timer)
    const elapsed = t0 ? (Date.now() - t0) / 1000 : 0
    process.stdout.write(JSON.stringify({
        feed_sent: sent,
        feed_elapsed_s: Math.round(elapsed * 1000) / 1000,
        feed_rate_per_s: elapsed > 0 ? Math.round((sent / elapsed) * 10) / 10 : 0,
        feed_max_backlog: maxBacklog,
        feed_tags: args.tags,
        feed_pattern: args.pattern
    }) + '\n', () => process.exit(code))
}

const ws = new WebSocket(args.url, { perMessageDeflate: false })
ws.on('open', () => {
    process.stderr.write('feed: connected\n')
    t0 = Date.now()
    const step = args.pattern === 'poll' ? pollTick : tick
    step(ws)
    timer = setInterval(() => step(ws), args.tick)
    if (args.duration > 0) setTimeout(() => finish(0), args.duration * 1000)
})
ws.on('error', (err) => {
    process.stderr.write(`feed: ${err.message}\n`)
    finish(1)
})
ws.on('close', () => {
    if (!done) {
        process.stderr.write('feed: socket closed by the server\n')
        finish(1)
    }
})
process.on('SIGTERM', () => finish(0))
process.on('SIGINT', () => finish(0))
