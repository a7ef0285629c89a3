// Node-RED settings for the HMI fan-out peer (bench/hmi).
//
// Started by run-nodered.mjs as
//   node node_modules/node-red/red.js -u <temp dir> -s settings.js --port <free port>
// The user dir is a fresh temp dir (flows.json is copied there), never the repo.
// Nothing here needs credentials; nothing reaches the network.
//
// Environment:
//   NR_ADMIN=1        serve the editor/admin API at /admin (loopback only); default off
//   NR_LOG_LEVEL=...  console log level (default "warn")
module.exports = {
    uiHost: '127.0.0.1', // loopback only (HTTP, dashboard, socket.io and the feed websocket)
    uiPort: Number(process.env.NR_PORT) || 1880, // --port on the command line wins
    flowFile: 'flows.json',
    flowFilePretty: false,
    credentialSecret: false, // the flow has no credentials; silences the key warning

    httpAdminRoot: process.env.NR_ADMIN === '1' ? '/admin' : false,
    disableEditor: process.env.NR_ADMIN !== '1',
    httpNodeRoot: '/',

    logging: {
        console: {
            level: process.env.NR_LOG_LEVEL || 'warn',
            metrics: false,
            audit: false
        }
    },

    // no phoning home, no installs, no update checks
    telemetry: { enabled: false },
    diagnostics: { enabled: false, ui: false },
    runtimeState: { enabled: false, ui: false },
    externalModules: {
        autoInstall: false,
        palette: { allowInstall: false, allowUpload: false },
        modules: { allowInstall: false }
    },
    functionExternalModules: false,
    exportGlobalContextKeys: false,
    contextStorage: { default: { module: 'memory' } },
    editorTheme: { projects: { enabled: false }, tours: false },

    // Dashboard 2 settings (defaults: socket.io at /dashboard/socket.io, 1 MB max buffer)
    dashboard: {}
}
