#!/usr/bin/env python3
"""A raw Modbus responder with the faults real devices have, for APOS tests.

pymodbus (modbus_server.py) always answers correctly framed, complete
answers. Devices in the field do not: this script speaks the protocol by
hand (raw sockets for TCP, pyserial for RTU) so it can answer wrongly on
purpose. It shares no code with pymodbus or with our drivers.

Spec (JSON, a file path argument or stdin):

    {"transport": "tcp" | "rtu",
     "port": 0,                           # tcp, on 127.0.0.1; 0 = the OS picks
     "serial": "/dev/pts/N",              # rtu: the responder's end of a PTY pair
     "units": {"1": "ok", "2": "short"}}  # unit id -> behaviour

Every register (holding or input) of every unit reads as its own address
(register 7 holds 7), every coil and discrete input as address % 2 == 1.
Behaviours:

- "ok":      correct answers;
- "short":   a read of N registers is answered with N-1 (byte count and
             framing consistent, so only the length is wrong); bit reads
             with one byte fewer than needed;
- "crc":     (rtu) correct answers with a corrupted CRC;
- "silent":  no answer at all;
- "close":   (tcp) close the connection on the first request.

Unit ids not listed get no answer. Prints `READY port=<N>` or
`READY serial=<path>` when serving; SIGTERM stops it. Answers FC 1-4 only
(others get exception 01).
"""

import asyncio
import json
import signal
import struct
import sys

BEHAVIOURS = {"ok", "short", "crc", "silent", "close"}


def crc16(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def answer_pdu(pdu: bytes, behaviour: str) -> bytes:
    """The response PDU for a request PDU (function code first)."""
    fc = pdu[0]
    if fc not in (1, 2, 3, 4) or len(pdu) < 5:
        return bytes([fc | 0x80, 1])
    addr, count = struct.unpack(">HH", pdu[1:5])
    if fc in (3, 4):
        n = count - 1 if behaviour == "short" else count
        words = [(addr + i) & 0xFFFF for i in range(max(n, 0))]
        return bytes([fc, 2 * len(words)]) + b"".join(struct.pack(">H", w) for w in words)
    nbytes = (count + 7) // 8
    if behaviour == "short":
        nbytes -= 1
    bits = bytearray(max(nbytes, 0))
    for i in range(min(count, 8 * len(bits))):
        if (addr + i) % 2 == 1:
            bits[i // 8] |= 1 << (i % 8)
    return bytes([fc, len(bits)]) + bytes(bits)


async def serve_tcp(spec, units):
    async def client(reader, writer):
        try:
            while True:
                header = await reader.readexactly(7)
                tid, _proto, length, unit = struct.unpack(">HHHB", header)
                pdu = await reader.readexactly(length - 1)
                behaviour = units.get(unit, "silent")
                if behaviour == "close":
                    break
                if behaviour == "silent":
                    continue
                rsp = answer_pdu(pdu, behaviour)
                writer.write(struct.pack(">HHHB", tid, 0, len(rsp) + 1, unit) + rsp)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(client, "127.0.0.1", spec.get("port", 0))
    return server, f"READY port={server.sockets[0].getsockname()[1]}"


def rtu_loop(path, units, stop):
    import serial  # pyserial; imported here so TCP needs only the stdlib

    port = serial.Serial(path, 19200, timeout=0.05)
    buf = b""
    while not stop.is_set():
        buf += port.read(256)
        # Requests for FC 1-4 are 8 bytes; resynchronise on anything else.
        while len(buf) >= 8:
            frame, buf = buf[:8], buf[8:]
            if crc16(frame[:6]) != struct.unpack("<H", frame[6:8])[0]:
                buf = b""
                break
            unit = frame[0]
            behaviour = units.get(unit, "silent")
            if behaviour in ("silent", "close"):
                continue
            adu = bytes([unit]) + answer_pdu(frame[1:6], behaviour)
            crc = crc16(adu)
            if behaviour == "crc":
                crc ^= 0x5A5A
            port.write(adu + struct.pack("<H", crc))
    port.close()


async def main():
    try:
        spec = json.load(open(sys.argv[1], encoding="utf-8") if len(sys.argv) > 1 else sys.stdin)
        units = {int(k): v for k, v in spec["units"].items()}
        bad = {v for v in units.values() if v not in BEHAVIOURS}
        if bad:
            raise ValueError(f"unknown behaviours {sorted(bad)} (known: {sorted(BEHAVIOURS)})")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"modbus_quirks.py: bad spec: {exc}", file=sys.stderr)
        sys.exit(2)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if spec.get("transport", "tcp") == "tcp":
        server, ready = await serve_tcp(spec, units)
        print(ready, flush=True)
        await stop.wait()
        server.close()
    else:
        import threading

        halt = threading.Event()
        thread = threading.Thread(target=rtu_loop, args=(spec["serial"], units, halt), daemon=True)
        thread.start()
        print(f"READY serial={spec['serial']}", flush=True)
        await stop.wait()
        halt.set()
        thread.join(2)


if __name__ == "__main__":
    asyncio.run(main())
