#!/usr/bin/env python3
"""An independent Modbus server (pymodbus) for APOS interoperability tests.

Configured by a JSON spec (a file path argument, or stdin):

    {"transport": "tcp" | "rtu",
     "host": "127.0.0.1", "port": 0,            # tcp; port 0 = pick a free one
     "serial": "/dev/pts/N", "baud": 19200, "parity": "N",   # rtu
     "devices": [{"unit": 1,
                  "holding": [[addr, [u16, ...]], ...],
                  "input":   [[addr, [u16, ...]], ...],
                  "coils":   [[addr, [bool, ...]], ...],
                  "discrete":[[addr, [bool, ...]], ...],
                  "exception": {"holding": 2},   # optional: every access to that area answers this code
                  "delay_ms": 0}]}               # optional: answer slowly

Values are raw registers: encoding typed values is the test's job, so this
server is a plain register store (as a PLC is). Writes land in the store and
read back. When ready it prints one line, `READY port=<N>` (tcp) or
`READY serial=<path>` (rtu), and flushes stdout. SIGTERM stops it.
"""

import asyncio
import json
import signal
import socket
import sys

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator import simcore


# pymodbus 3.16's SimCore looks up an unknown unit id with a dict index and
# raises KeyError, which the request handler answers with exception 04 even
# when ignore_missing_devices=True (that flag only catches NoSuchIdException).
# A real RS-485 slave that is absent stays silent, so raise the exception the
# handler expects.
def _get_device(self, device_id):
    if device_id in self.devices:
        return self.devices[device_id]
    if 0 in self.devices:
        return self.devices[0]
    raise NoSuchIdException(f"no device {device_id}")


simcore.SimCore._SimCore__get_device = _get_device  # pylint: disable=protected-access

# Function codes by area, to route injected exceptions.
AREA_CODES = {
    "coils": {1, 5, 15},
    "discrete": {2},
    "holding": {3, 6, 16, 23},
    "input": {4},
}


def block(entries, bits, size_hint):
    """One contiguous SimData covering every configured address (gaps read 0)."""
    if not entries:
        return [SimData(0, values=[False] if bits else [0], datatype=DataType.BITS if bits else DataType.REGISTERS)]
    end = max(addr + len(vals) for addr, vals in entries)
    values = [False if bits else 0] * max(end, size_hint)
    for addr, vals in entries:
        for i, v in enumerate(vals):
            values[addr + i] = bool(v) if bits else int(v) & 0xFFFF
    return [SimData(0, values=values, datatype=DataType.BITS if bits else DataType.REGISTERS)]


def make_action(spec):
    exceptions = spec.get("exception", {})
    delay = spec.get("delay_ms", 0) / 1000.0

    async def action(function_code, _start, _address, _count, _regs, _set_values):
        if delay:
            await asyncio.sleep(delay)
        for area, code in exceptions.items():
            if function_code in AREA_CODES.get(area, ()):
                return ExcCodes(code)
        return None

    return action


def device(spec):
    return SimDevice(
        id=spec["unit"],
        simdata=(
            block(spec.get("coils", []), True, 16),
            block(spec.get("discrete", []), True, 16),
            block(spec.get("holding", []), False, 16),
            block(spec.get("input", []), False, 16),
        ),
        action=make_action(spec),
    )


def free_port(host):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def main():
    spec = json.load(open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin)
    devices = [device(d) for d in spec["devices"]]
    if spec.get("transport", "tcp") == "tcp":
        host = spec.get("host", "127.0.0.1")
        if host != "127.0.0.1":
            sys.exit("test servers bind 127.0.0.1 only")
        port = spec.get("port", 0) or free_port(host)
        server = ModbusTcpServer(devices, address=(host, port), ignore_missing_devices=True)
        ready = f"READY port={port}"
    else:
        server = ModbusSerialServer(
            devices,
            framer=FramerType.RTU,
            port=spec["serial"],
            baudrate=spec.get("baud", 19200),
            parity=spec.get("parity", "N"),
            bytesize=8,
            stopbits=1,
            # Real slaves stay silent for other unit ids on a shared line.
            ignore_missing_devices=True,
        )
        ready = f"READY serial={spec['serial']}"
    await server.serve_forever(background=True)
    print(ready, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
