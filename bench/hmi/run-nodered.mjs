#!/usr/bin/env node
// Node-RED + Dashboard 2 peer run of the HMI fan-out bench (bench/hmi).
//
//   node run-nodered.mjs [DURATION_S=60] [--clients 20] [--mode per-update|coalesce] [--pattern even|poll]
//        [--rate 1000] [--tags 1000] [--warmup 5] [--baseline 5] [--settle 5] [--port N] [--keep]
//
// 1. makes a private Node-RED user dir under the temp dir and copies flow.json there,
// 2. starts Node-RED (settings.js: 127.0.0.1 only, admin/editor off) on a free port,
// 3. waits until the dashboard answers (GET /dashboard/_setup),
// 4. starts feed.mjs: RATE updates/s as WebSocket frames to /feed (per-update)
//    or /feed-coalesce (latest per tag, one message per 200 ms),
// 5. waits WARMUP s, runs fanout.mjs against Node-RED's pid,
// 6. stops everything (also on error or Ctrl-C) and removes the user dir,
// 7. prints fanout's JSON line with the feed's figures and versions added.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import net from 'node:net'
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'

const here = path.dirname(fileURLToPath(import.meta.url))
const require = createRequire(import.meta.url)

function parseArgs (argv) {
    const a = { duration: 60, clients: 20, mode: 'per-update', pattern: 'even', rate: 1000, tags: 1000, warmup: 5, baseline: 5, settle: 5, port: 0, keep: false }
    for (let i = 0; i < argv.length; i++) {
        const k = argv[i]
        const take = () => { i++; if (argv[i] === undefined) throw new Error(`${k} needs a value`); return argv[i] }
        switch (k) {
        case '--clients': a.clients = Number(take()); break
        case '--mode': a.mode = take(); break
        case '--pattern': a.pattern = take(); break
        case '--rate': a.rate = Number(take()); break
        case '--tags': a.tags = Number(take()); break
        case '--warmup': a.warmup = Number(take()); break
        case '--baseline': a.baseline = Number(take()); break
        case '--settle': a.settle = Number(take()); break
        case '--port': a.port = Number(take()); break
        case '--duration': a.duration = Number(take()); break
        case '--keep': a.keep = true; break
        default:
            if (/^\d+(\.\d+)?$/.test(k)) a.duration = Number(k)
            else throw new Error(`unknown argument ${k}`)
        }
    }
    if (!['per-update', 'coalesce'].includes(a.mode)) throw new Error('--mode per-update|coalesce')
    if (!['even', 'poll'].includes(a.pattern)) throw new Error('--pattern even|poll')
    return a
}

function freePort () {
    return new Promise((resolve, reject) => {
        const s = net.createServer()
        s.on('error', reject)
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address()
            s.close(() => resolve(port))
        })
    })
}

function version (pkg) {
    try { return require(`${pkg}/package.json`).version } catch { return null }
}

const children = new Map() // name -> ChildProcess
let userDir = null
let keep = false

function killAll (signal = 'SIGKILL') {
    for (const [, c] of children) {
        if (c.exitCode === null && c.signalCode === null) {
            try { process.kill(c.pid, signal) } catch { /* already gone */ }
        }
    }
}

function removeUserDir () {
    if (userDir && !keep) {
        try { fs.rmSync(userDir, { recursive: true, force: true }) } catch { /* best effort */ }
        userDir = null
    }
}

// last-resort cleanup: whatever way this process ends, no child outlives it
process.on('exit', () => { killAll('SIGKILL'); removeUserDir() })
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
        process.stderr.write(`run-nodered: ${sig}, stopping\n`)
        process.exit(130)
    })
}

function waitExit (c, ms) {
    if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve(true)
    return new Promise((resolve) => {
        const t = setTimeout(() => resolve(false), ms)
        c.once('exit', () => { clearTimeout(t); resolve(true) })
    })
}

async function stop (name, ms = 5000) {
    const c = children.get(name)
    if (!c) return
    if (c.exitCode === null && c.signalCode === null) {
        try { process.kill(c.pid, 'SIGTERM') } catch { /* gone */ }
        if (!(await waitExit(c, ms))) {
            try { process.kill(c.pid, 'SIGKILL') } catch { /* gone */ }
            await waitExit(c, 2000)
        }
    }
    children.delete(name)
}

function tail (file, n = 40) {
    try { return fs.readFileSync(file, 'utf8').split('\n').slice(-n).join('\n') } catch { return '' }
}

async function main () {
    const args = parseArgs(process.argv.slice(2))
    keep = args.keep

    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'apos-bench-nodered-'))
    fs.copyFileSync(path.join(here, 'flow.json'), path.join(userDir, 'flows.json'))
    const port = args.port || await freePort()
    const base = `http://127.0.0.1:${port}`
    const logFile = path.join(userDir, 'node-red.log')
    const log = fs.openSync(logFile, 'a')

    // Node-RED, as its own process (its pid is what fanout.mjs measures)
    const redJs = require.resolve('node-red/red.js')
    const nr = spawn(process.execPath, [redJs, '-u', userDir, '-s', path.join(here, 'settings.js'), '--port', String(port)], {
        cwd: here,
        env: { ...process.env, NODE_RED_DISABLE_TELEMETRY: '1', NODE_ENV: 'production' },
        stdio: ['ignore', log, log]
    })
    children.set('node-red', nr)
    process.stderr.write(`run-nodered: Node-RED ${version('node-red')} + dashboard ${version('@flowfuse/node-red-dashboard')}, pid ${nr.pid}, ${base}, user dir ${userDir}\n`)

    // wait until the dashboard answers
    const t0 = Date.now()
    for (;;) {
        if (nr.exitCode !== null) throw new Error(`Node-RED exited (${nr.exitCode}):\n${tail(logFile)}`)
        try {
            const r = await fetch(`${base}/dashboard/_setup`)
            if (r.status === 200) { await r.json(); break }
        } catch { /* not yet */ }
        if (Date.now() - t0 > 60000) throw new Error(`dashboard did not answer within 60 s:\n${tail(logFile)}`)
        await sleep(200)
    }
    process.stderr.write(`run-nodered: dashboard up after ${Date.now() - t0} ms\n`)

    // the feed
    const feedPath = args.mode === 'coalesce' ? '/feed-coalesce' : '/feed'
    const feed = spawn(process.execPath, [path.join(here, 'feed.mjs'), '--url', `ws://127.0.0.1:${port}${feedPath}`,
        '--rate', String(args.rate), '--tags', String(args.tags), '--pattern', args.pattern], { cwd: here, stdio: ['ignore', 'pipe', 'pipe'] })
    children.set('feed', feed)
    let feedOut = ''
    feed.stdout.on('data', (d) => { feedOut += d })
    await new Promise((resolve, reject) => {
        let err = ''
        const t = setTimeout(() => reject(new Error('feed did not connect within 10 s: ' + err)), 10000)
        feed.stderr.on('data', (d) => {
            err += d
            if (err.includes('feed: connected')) { clearTimeout(t); resolve() }
        })
        feed.once('exit', (code) => { clearTimeout(t); reject(new Error(`feed exited (${code}): ${err}`)) })
    })
    feed.removeAllListeners('exit')
    process.stderr.write(`run-nodered: feed (${args.pattern}) at ${args.pattern === 'poll' ? args.tags : args.rate}/s over ${args.tags} tags to ${feedPath}, warming up ${args.warmup} s\n`)
    await sleep(args.warmup * 1000)

    // the load client
    const fan = spawn(process.execPath, [path.join(here, 'fanout.mjs'), '--target', 'nodered', '--url', base,
        '--pid', String(nr.pid), '--clients', String(args.clients), '--duration', String(args.duration),
        '--baseline', String(args.baseline), '--settle', String(args.settle), '--label', `nodered-${args.mode}-${args.pattern}`],
    { cwd: here, stdio: ['ignore', 'pipe', 'inherit'] })
    children.set('fanout', fan)
    let fanOut = ''
    fan.stdout.on('data', (d) => { fanOut += d })
    const fanCode = await new Promise((resolve) => fan.once('exit', (code) => resolve(code)))
    children.delete('fanout')

    // stop the feed (it prints what it sent), then Node-RED
    await stop('feed')
    await stop('node-red')
    fs.closeSync(log)

    const line = fanOut.trim().split('\n').filter((l) => l.startsWith('{')).pop()
    if (!line) throw new Error(`fanout.mjs printed no result (exit ${fanCode}); Node-RED log:\n${tail(logFile)}`)
    const result = JSON.parse(line)
    let feedStats = {}
    try { feedStats = JSON.parse(feedOut.trim().split('\n').pop()) } catch { /* none */ }
    Object.assign(result, {
        mode: args.mode,
        ...feedStats,
        node_version: process.version,
        nodered_version: version('node-red'),
        dashboard_version: version('@flowfuse/node-red-dashboard'),
        socketio_version: version('socket.io')
    })
    if (keep) process.stderr.write(`run-nodered: kept ${userDir}\n`)
    process.stdout.write(JSON.stringify(result) + '\n')
    return fanCode
}

main().then((code) => {
    removeUserDir()
    process.exitCode = code ?? 1
}).catch((err) => {
    process.stderr.write(`run-nodered: ${err.message}\n`)
    process.exitCode = 1
})
