#!/usr/bin/env node
// An independent OPC UA server (node-opcua) for APOS interoperability tests.
//
//   node opcua_server.js [--port 0] [--limits] [--secure --pki DIR [--strict]]
//
// Namespace URI "urn:apos:test:node" with Objects/Plant/{Ramp (Double, +1
// every 100 ms), Counter (Int32), Setpoint (Double, writable)}; string node
// ids "Plant.Ramp" etc. Security None, anonymous. Binds 127.0.0.1 only
// (node-opcua binds to `host`; `hostname` only names the endpoint).
// Prints `READY port=<N>` when serving, then `SESSION name=<name>` for
// every session a client creates; SIGTERM stops it.
//
// `--secure` serves Basic256Sha256 SignAndEncrypt only, with node-opcua's
// own certificate, generated on first start in DIR/own (its SANs come as
// DNS, IP, URI: the order async-opcua 0.19 mishandles). Client
// certificates are accepted on first use unless `--strict`, which rejects
// unknown ones into DIR/rejected (as open62541 with a trust list does);
// put one in DIR/trusted/certs to accept it.
//
// `--limits` states (and enforces) small operation limits, as constrained
// embedded servers do: 6 monitored items per subscription, 4 per
// CreateMonitoredItems call, 3 nodes per Read; and adds Plant/Item0..19
// (Double, Ramp + i) so that a client must batch to read them all.
"use strict";
const net = require("net");
const path = require("path");
const {
  OPCUAServer, DataType, Variant, StatusCodes, OPCUACertificateManager, SecurityPolicy, MessageSecurityMode,
} = require("node-opcua");

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
    s.on("error", reject);
  });
}

(async () => {
  const argPort = process.argv.indexOf("--port");
  let port = argPort > 0 ? parseInt(process.argv[argPort + 1], 10) : 0;
  if (!port) port = await freePort();
  const limits = process.argv.includes("--limits");
  const secure = process.argv.includes("--secure");
  const argPki = process.argv.indexOf("--pki");
  const pki = argPki > 0 ? path.resolve(process.argv[argPki + 1]) : null;
  if (secure && !pki) throw new Error("--secure needs --pki DIR");
  const security = secure
    ? {
        securityPolicies: [SecurityPolicy.Basic256Sha256],
        securityModes: [MessageSecurityMode.SignAndEncrypt],
        serverCertificateManager: new OPCUACertificateManager({
          rootFolder: pki,
          automaticallyAcceptUnknownCertificate: !process.argv.includes("--strict"),
        }),
      }
    : {};
  const server = new OPCUAServer({
    ...security,
    host: "127.0.0.1",
    // Names the generated certificate carries besides the machine's own:
    // clients here connect to 127.0.0.1.
    alternateHostname: ["localhost", "127.0.0.1"],
    serverCapabilities: limits
      ? { maxMonitoredItemsPerSubscription: 6, operationLimits: { maxMonitoredItemsPerCall: 4, maxNodesPerRead: 3 } }
      : undefined,
    port,
    hostname: "127.0.0.1",
    resourcePath: "/apos/",
    allowAnonymous: true,
    buildInfo: { productName: "APOS node-opcua peer" },
  });
  await server.initialize();
  const ns = server.engine.addressSpace.registerNamespace("urn:apos:test:node");
  const plant = ns.addObject({ organizedBy: server.engine.addressSpace.rootFolder.objects, browseName: "Plant", nodeId: "s=Plant" });
  let ramp = 0;
  let setpoint = 42.5;
  ns.addVariable({
    componentOf: plant, browseName: "Ramp", nodeId: "s=Plant.Ramp", dataType: "Double", minimumSamplingInterval: 100,
    value: { get: () => new Variant({ dataType: DataType.Double, value: ramp }) },
  });
  ns.addVariable({
    componentOf: plant, browseName: "Counter", nodeId: "s=Plant.Counter", dataType: "Int32", minimumSamplingInterval: 100,
    value: { get: () => new Variant({ dataType: DataType.Int32, value: Math.floor(ramp) }) },
  });
  ns.addVariable({
    componentOf: plant, browseName: "Setpoint", nodeId: "s=Plant.Setpoint", dataType: "Double", minimumSamplingInterval: 100,
    accessLevel: "CurrentRead | CurrentWrite", userAccessLevel: "CurrentRead | CurrentWrite",
    value: {
      get: () => new Variant({ dataType: DataType.Double, value: setpoint }),
      set: (v) => { setpoint = v.value; return StatusCodes.Good; },
    },
  });
  if (limits) {
    for (let i = 0; i < 20; i++) {
      ns.addVariable({
        componentOf: plant, browseName: `Item${i}`, nodeId: `s=Plant.Item${i}`, dataType: "Double", minimumSamplingInterval: 100,
        value: { get: () => new Variant({ dataType: DataType.Double, value: ramp + i }) },
      });
    }
  }
  setInterval(() => { ramp += 1; }, 100);
  // Tests check what clients call their sessions.
  server.on("create_session", (session) => process.stdout.write(`SESSION name=${session.sessionName}\n`));
  await server.start();
  process.stdout.write(`READY port=${port}\n`);
  const stop = async () => { await server.shutdown(100); process.exit(0); };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
})().catch((e) => { console.error(e); process.exit(1); });
