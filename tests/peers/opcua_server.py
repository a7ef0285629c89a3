#!/usr/bin/env python3
"""An independent OPC UA server (Python asyncua) for APOS interoperability tests.

    opcua_server.py [--port 0] [--period 0.1]
                    [--secure --pki DIR --user NAME --password PW
                     [--user-cert DIR]]

`--secure` serves only Basic256Sha256 SignAndEncrypt with user-name
authentication (NAME/PW); the server certificate and key are created in DIR
(`server_cert.der`, `server_key.pem`) on first start and reused after.
`--user-cert DIR` also accepts an X.509 user identity: the one certificate
`DIR/user_cert.der` (key `DIR/user_key.pem`), created on first start; any
other user certificate is refused with BadUserAccessDenied.

Serves, under namespace URI `urn:apos:test` (its index is whatever the
server assigns; clients should resolve it by URI):

    Objects/Plant/Ramp        Double, +1.0 every period
    Objects/Plant/Counter     Int32,  +1 every period
    Objects/Plant/Toggle      Boolean, flips every period
    Objects/Plant/Name        String "APOS test"
    Objects/Plant/Setpoint    Double, writable by clients, initially 42.5
    Objects/Plant/Future      Double, like Ramp but with source timestamp
                              2100-01-01 (a device with a wrong clock)

Node ids are string ids: ns=<idx>;s=Plant.Ramp etc. Binds 127.0.0.1 only.
Prints `READY port=<N> ns=<idx>` when serving; SIGTERM stops it.
"""

import argparse
import asyncio
import logging
import signal
import socket

from datetime import datetime, timezone

from pathlib import Path

from asyncua import Server, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.server.user_managers import UserManager
from asyncua.crypto.permission_rules import User, UserRole
from cryptography.x509.oid import ExtendedKeyUsageOID

NS_URI = "urn:apos:test"


class OneUser(UserManager):
    def __init__(self, name, password, cert_der=None):
        self.name, self.password, self.cert_der = name, password, cert_der

    def get_user(self, iserver, username=None, password=None, certificate=None):
        # asyncua passes a DER certificate with every token: the secure
        # channel's for a user name, the token's own for an X.509 identity.
        if username is not None:
            ok = username == self.name and password == self.password
        else:
            ok = self.cert_der is not None and certificate == self.cert_der
        return User(role=UserRole.User) if ok else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--period", type=float, default=0.1)
    ap.add_argument("--secure", action="store_true")
    ap.add_argument("--pki")
    ap.add_argument("--user", default="apos")
    ap.add_argument("--password", default="s3cret")
    ap.add_argument("--user-cert")
    a = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    port = a.port or free_port()

    user_cert = None
    if a.user_cert:
        ud = Path(a.user_cert)
        ud.mkdir(parents=True, exist_ok=True)
        await setup_self_signed_certificate(
            ud / "user_key.pem",
            ud / "user_cert.der",
            "urn:apos:test:user",
            "127.0.0.1",
            [ExtendedKeyUsageOID.CLIENT_AUTH],
            {"countryName": "DE", "organizationName": "APOS tests", "commonName": "apos-user"},
        )
        user_cert = (ud / "user_cert.der").read_bytes()
    server = Server(user_manager=OneUser(a.user, a.password, user_cert) if a.secure else None)
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/apos/")
    server.set_server_name("APOS asyncua peer")
    if a.secure:
        pki = Path(a.pki)
        pki.mkdir(parents=True, exist_ok=True)
        uri = "urn:apos:test:asyncua-peer"
        await server.set_application_uri(uri)
        await setup_self_signed_certificate(
            pki / "server_key.pem",
            pki / "server_cert.der",
            uri,
            "127.0.0.1",
            [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
            {"countryName": "DE", "organizationName": "APOS tests", "commonName": "asyncua-peer"},
        )
        await server.load_certificate(str(pki / "server_cert.der"))
        await server.load_private_key(str(pki / "server_key.pem"))
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        tokens = [ua.UserNameIdentityToken]
        if user_cert is not None:
            tokens.append(ua.X509IdentityToken)
        server.set_identity_tokens(tokens)
    else:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace(NS_URI)
    plant = await server.nodes.objects.add_object(ua.NodeId("Plant", idx), ua.QualifiedName("Plant", idx))

    async def var(name, value, vtype):
        v = await plant.add_variable(ua.NodeId(f"Plant.{name}", idx), ua.QualifiedName(name, idx), ua.Variant(value, vtype))
        return v

    ramp = await var("Ramp", 0.0, ua.VariantType.Double)
    counter = await var("Counter", 0, ua.VariantType.Int32)
    toggle = await var("Toggle", False, ua.VariantType.Boolean)
    await var("Name", "APOS test", ua.VariantType.String)
    sp = await var("Setpoint", 42.5, ua.VariantType.Double)
    await sp.set_writable()
    future = await var("Future", 0.0, ua.VariantType.Double)
    y2100 = datetime(2100, 1, 1, tzinfo=timezone.utc)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async with server:
        print(f"READY port={port} ns={idx}", flush=True)
        n = 0
        while not stop.is_set():
            n += 1
            await ramp.write_value(ua.Variant(float(n), ua.VariantType.Double))
            await counter.write_value(ua.Variant(n, ua.VariantType.Int32))
            await toggle.write_value(ua.Variant(n % 2 == 1, ua.VariantType.Boolean))
            await future.write_value(ua.DataValue(
                ua.Variant(float(n), ua.VariantType.Double),
                SourceTimestamp=y2100,
                ServerTimestamp=datetime.now(timezone.utc),
            ))
            try:
                await asyncio.wait_for(stop.wait(), a.period)
            except asyncio.TimeoutError:
                pass


if __name__ == "__main__":
    asyncio.run(main())
