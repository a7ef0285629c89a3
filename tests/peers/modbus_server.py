#!/usr/bin/env python3
"""An independent Modbus server (pymodbus 3.16) for APOS interoperability tests.

Configured by a JSON spec (a file path argument, or stdin):

    {"transport": "tcp" | "rtu",
     "host": "127.0.0.1", "port": 0,            # tcp; port 0 = the OS picks a free one
     "serial": "/dev/pts/N", "baud": 19200, "parity": "N",   # rtu ("N", "E" or "O")
     "devices": [{"unit": 1,
                  "holding": [[addr, [u16, ...]], ...],
                  "input":   [[addr, [u16, ...]], ...],
                  "coils":   [[addr, [bool, ...]], ...],
                  "discrete":[[addr, [bool, ...]], ...],
                  "exception": {"holding": 2},   # optional: every read or write of that area answers this code
                  "delay_ms": 0,                 # optional: every answer of this unit comes this late
                  "sparse": false}]}             # optional: only configured addresses exist (a datasheet's map)

Values are raw registers: encoding typed values is the test's job, so this
server is a plain register store, as a PLC is. Each area is one block from
address 0 to its highest configured address (at least 16 entries): gaps read
0, addresses past the end answer exception 02. With "sparse": true a unit
holds only the configured addresses, as a real meter's register map does: a
read that touches any other address answers exception 02 (pymodbus's own
check of undefined addresses). Only register areas can be sparse: pymodbus
packs coils and discrete inputs into words and fills their holes. Writes land in the store and
read back. A unit id that is not configured gets no answer at all, as an
absent RS-485 slave.

When ready it prints one line, `READY port=<N>` (tcp) or `READY serial=<path>`
(rtu), and flushes stdout. SIGTERM or SIGINT stops it with exit code 0. A bad
spec exits with code 2 and a message on stderr, before READY.
"""

import asyncio
import json
import os
import signal
import sys

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator import simcore

AREAS = ("coils", "discrete", "holding", "input")
DEVICE_KEYS = {"unit", "exception", "delay_ms", "sparse", *AREAS}
SPEC_KEYS = {"transport", "host", "port", "serial", "baud", "parity", "devices"}

# Function codes by area, to route injected exceptions (the same mapping as
# pymodbus.simulator.simruntime.SimRuntime._fx_mapper).
AREA_CODES = {
    "coils": {1, 5, 15},
    "discrete": {2},
    "holding": {3, 6, 16, 22, 23},
    "input": {4},
}


def _get_device(self, device_id):
    if device_id in self.devices:
        return self.devices[device_id]
    if 0 in self.devices:
        return self.devices[0]
    raise NoSuchIdException(f"no device {device_id}")


# pymodbus 3.16's SimCore looks up an unknown unit id with a dict index and
# raises KeyError, which the request handler answers with exception 04 even
# when ignore_missing_devices=True (that flag only catches NoSuchIdException).
# An absent RS-485 slave stays silent, so raise the exception the handler
# expects. The method is private: refuse to run if it moved, rather than
# silently answering 04 again.
if not hasattr(simcore.SimCore, "_SimCore__get_device"):
    sys.exit("modbus_server.py: pymodbus changed SimCore; pin pymodbus==3.16.1 (tests/peers/requirements.txt)")
simcore.SimCore._SimCore__get_device = _get_device  # pylint: disable=protected-access


class SpecError(Exception):
    """The JSON spec is not what this script understands."""


def block(entries, bits, where, sparse=False):
    """One contiguous SimData from address 0 covering every configured address,
    or (sparse) one SimData per configured entry and nothing in between."""
    datatype = DataType.BITS if bits else DataType.REGISTERS
    # pymodbus marks holes between register blocks invalid, but packs bit
    # areas into words with holes filled: only register areas can be sparse.
    if sparse and not bits:
        dense = block(entries, bits, where)[0].values
        blocks = [SimData(addr, values=dense[addr:addr + len(vals)], datatype=datatype)
                  for addr, vals in sorted(entries) if vals]
        # pymodbus wants at least one block per area: an area with no
        # configured address is one undefined address.
        return blocks or [SimData(0, count=1, datatype=DataType.INVALID)]
    end = 16
    if not isinstance(entries, list):
        raise SpecError(f"{where}: a list of [address, [values...]]")
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], list)):
            raise SpecError(f"{where}: each entry is [address, [values...]], got {entry!r}")
        addr, vals = entry
        if not (isinstance(addr, int) and 0 <= addr and addr + len(vals) <= 65536):
            raise SpecError(f"{where}: address {addr!r} (+{len(vals)}) outside 0..65535")
        end = max(end, addr + len(vals))
    values = [False if bits else 0] * end
    for addr, vals in entries:
        for i, v in enumerate(vals):
            if bits:
                values[addr + i] = bool(v)
            elif isinstance(v, int) and 0 <= v <= 0xFFFF:
                values[addr + i] = v
            else:
                raise SpecError(f"{where}: register {addr + i} = {v!r} is not a u16 word")
    return [SimData(0, values=values, datatype=datatype)]


def make_action(spec, where):
    exceptions = spec.get("exception", {})
    if not isinstance(exceptions, dict):
        raise SpecError(f"{where}.exception: an object {{area: code}}")
    for area, code in exceptions.items():
        if area not in AREA_CODES:
            raise SpecError(f"{where}.exception: unknown area {area!r} (one of {', '.join(AREAS)})")
        try:
            ExcCodes(code)
        except ValueError as exc:
            raise SpecError(f"{where}.exception.{area}: {code!r} is not a Modbus exception code") from exc
    delay = spec.get("delay_ms", 0)
    if not (isinstance(delay, (int, float)) and delay >= 0):
        raise SpecError(f"{where}.delay_ms: {delay!r} is not a number of milliseconds")
    delay /= 1000.0

    # SimDevice's action hook runs after pymodbus has checked the address and
    # before it touches the registers; returning an ExcCodes member makes the
    # server answer that exception instead. Awaiting here delays this answer
    # only: pymodbus handles each request in its own task.
    async def action(function_code, _start, _address, _count, _regs, _set_values):
        if delay:
            await asyncio.sleep(delay)
        for area, code in exceptions.items():
            if function_code in AREA_CODES[area]:
                return ExcCodes(code)
        return None

    return action


def device(spec, index):
    where = f"devices[{index}]"
    unknown = set(spec) - DEVICE_KEYS
    if unknown:
        raise SpecError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(DEVICE_KEYS)})")
    unit = spec.get("unit")
    if not (isinstance(unit, int) and 1 <= unit <= 247):
        raise SpecError(f"{where}.unit: {unit!r} is not a unit id 1..247")
    sparse = spec.get("sparse", False)
    if not isinstance(sparse, bool):
        raise SpecError(f"{where}.sparse: {sparse!r} is not true or false")
    return SimDevice(
        id=unit,
        simdata=(
            block(spec.get("coils", []), True, f"{where}.coils", sparse),
            block(spec.get("discrete", []), True, f"{where}.discrete", sparse),
            block(spec.get("holding", []), False, f"{where}.holding", sparse),
            block(spec.get("input", []), False, f"{where}.input", sparse),
        ),
        action=make_action(spec, where),
    )


def load_spec():
    try:
        if len(sys.argv) > 1:
            with open(sys.argv[1], encoding="utf-8") as f:
                spec = json.load(f)
        else:
            spec = json.load(sys.stdin)
    except (OSError, ValueError) as exc:
        raise SpecError(f"cannot read the spec: {exc}") from exc
    if not isinstance(spec, dict):
        raise SpecError("the spec is a JSON object")
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise SpecError(f"unknown keys {sorted(unknown)} (known: {sorted(SPEC_KEYS)})")
    if not spec.get("devices"):
        raise SpecError("no devices")
    return spec


def tcp_server(spec, devices):
    host = spec.get("host", "127.0.0.1")
    if host != "127.0.0.1":
        raise SpecError("test servers bind 127.0.0.1 only")
    # Binding port 0 lets the OS pick a free port atomically; the READY line
    # reports the one it picked.
    server = ModbusTcpServer(devices, address=(host, spec.get("port", 0)), ignore_missing_devices=True)

    def ready():
        return f"READY port={server.transport.sockets[0].getsockname()[1]}"

    return server, ready


def rtu_server(spec, devices):
    path = spec.get("serial")
    if not path:
        raise SpecError("rtu needs \"serial\": the path of the server's end of the line")
    parity = spec.get("parity", "N")
    if parity not in ("N", "E", "O"):
        raise SpecError(f"parity {parity!r} is not N, E or O")
    # Linux pseudo-terminals refuse PARENB (tcsetattr: EINVAL): over a socat
    # PTY pair only parity N opens. Say so instead of a termios traceback.
    if parity != "N" and os.path.realpath(path).startswith("/dev/pts/"):
        raise SpecError(f"{path} is a pseudo-terminal, which has no parity: use \"parity\": \"N\"")
    server = ModbusSerialServer(
        devices,
        framer=FramerType.RTU,
        port=path,
        baudrate=spec.get("baud", 19200),
        parity=parity,
        bytesize=8,
        stopbits=1,
        # Real slaves stay silent for other unit ids on a shared line.
        ignore_missing_devices=True,
    )
    return server, lambda: f"READY serial={path}"


async def main():
    try:
        spec = load_spec()
        devices = [device(d, i) for i, d in enumerate(spec["devices"])]
        transport = spec.get("transport", "tcp")
        if transport == "tcp":
            server, ready = tcp_server(spec, devices)
        elif transport == "rtu":
            server, ready = rtu_server(spec, devices)
        else:
            raise SpecError(f"transport {transport!r} is not tcp or rtu")
    except SpecError as exc:
        print(f"modbus_server.py: bad spec: {exc}", file=sys.stderr)
        sys.exit(2)
    # Handlers first, so a SIGTERM right after READY still stops cleanly.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.serve_forever(background=True)
    except RuntimeError as exc:  # pymodbus's way to say listen() failed
        print(f"modbus_server.py: cannot serve {transport}: {exc}", file=sys.stderr)
        sys.exit(1)
    print(ready(), flush=True)
    await stop.wait()
    await server.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
