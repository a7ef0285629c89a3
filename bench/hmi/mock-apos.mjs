#!/usr/bin/env node
// A stand-in for APOS's HMI live endpoint, only to check fanout.mjs's `apos`
// target against the documented contract (docs/hmi-api.md, "Live updates")
// while the real server is not at hand. It is NOT a peer and its figures mean
// nothing about APOS.
//
//   node mock-apos.mjs [--port 0] [--tags 1000] [--rate 1000]
//   -> prints "mock-apos: listening on http://127.0.0.1:PORT pid PID" to stderr
//
// POST /api/v1/session {"user":"bench","password":"bench"} -> 200 + Set-Cookie apos_session
// GET  /api/v1/live (WebSocket, needs the cookie): snapshot, then a delta every
// 200 ms with the latest value per tag since the last one; entries {tag,v,q,r,ts}
// where ts is when the (simulated) sample was taken.
import http from 'node:http'
import crypto from 'node:crypto'
import { WebSocketServer } from 'ws'

const args = { port: 0, tags: 1000, rate: 1000 }
for (let i = 2; i < process.argv.length; i += 2) {
    const k = process.argv[i].replace(/^--/, '')
    if (!(k in args)) throw new Error(`unknown argument ${process.argv[i]}`)
    args[k] = Number(process.argv[i + 1])
}

const sessions = new Set()
const live = new Map() // tag -> Live
const changed = new Map() // since the last delta
const names = Array.from({ length: args.tags }, (_, i) => 'tag' + String(i + 1).padStart(4, '0'))
let next = 0
let made = 0
const t0 = Date.now()
setInterval(() => {
    const now = Date.now()
    const due = Math.floor(((now - t0) * args.rate) / 1000)
    while (made < due) {
        const i = next
        next = (next + 1) % args.tags
        const e = { tag: names[i], v: Math.round(Math.random() * 10000) / 100, q: 'good', r: null, ts: now }
        live.set(e.tag, e)
        changed.set(e.tag, e)
        made++
    }
}, 10)

const server = http.createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/api/v1/session') {
        let body = ''
        req.on('data', (d) => { body += d })
        req.on('end', () => {
            let b = {}
            try { b = JSON.parse(body) } catch { /* bad */ }
            if (b.user !== 'bench' || b.password !== 'bench') {
                res.writeHead(401, { 'content-type': 'application/problem+json' })
                res.end('{"type":"about:blank","title":"Unauthorized","status":401,"detail":"bad login"}')
                return
            }
            const id = crypto.randomBytes(16).toString('hex')
            sessions.add(id)
            res.writeHead(200, {
                'content-type': 'application/json',
                'set-cookie': `apos_session=${id}; HttpOnly; SameSite=Strict; Path=/`
            })
            res.end(JSON.stringify({ user: b.user, role: 'viewer', csrf: 'x', expires_ms: Date.now() + 3600e3 }))
        })
        return
    }
    res.writeHead(404)
    res.end()
})

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false })
server.on('upgrade', (req, socket, head) => {
    const m = /(?:^|;\s*)apos_session=([0-9a-f]+)/.exec(req.headers.cookie ?? '')
    if (req.url !== '/api/v1/live' || !m || !sessions.has(m[1])) {
        socket.end('HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n')
        return
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
        ws.send(JSON.stringify({ type: 'snapshot', now_ms: Date.now(), alarm_seq: 0, tags: [...live.values()], alarms: [], status: {} }))
    })
})
setInterval(() => {
    if (changed.size === 0) return
    const frame = JSON.stringify({ type: 'delta', now_ms: Date.now(), tags: [...changed.values()] })
    changed.clear()
    for (const ws of wss.clients) ws.send(frame)
}, 200)
setInterval(() => {
    const frame = JSON.stringify({ type: 'status', now_ms: Date.now(), status: { data_path_ok: true } })
    for (const ws of wss.clients) ws.send(frame)
}, 1000)

server.listen(args.port, '127.0.0.1', () => {
    process.stderr.write(`mock-apos: listening on http://127.0.0.1:${server.address().port} pid ${process.pid}\n`)
})
process.on('SIGTERM', () => process.exit(0))
process.on('SIGINT', () => process.exit(0))
