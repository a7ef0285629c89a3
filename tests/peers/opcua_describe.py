#!/usr/bin/env python3
"""Describe OPC UA variables with an independent client (Python asyncua).

    opcua_describe.py ENDPOINT NODE [NODE ...]

NODE is `nsu=<uri>;s=<id>` (or any asyncua node id string). Prints one JSON
object per node: its type definition, and its EngineeringUnits and EURange
properties when present.
"""

import asyncio
import json
import sys

from asyncua import Client, ua


async def main():
    endpoint, nodes = sys.argv[1], sys.argv[2:]
    async with Client(endpoint) as c:
        for text in nodes:
            if text.startswith("nsu="):
                uri, ident = text[4:].split(";", 1)
                idx = await c.get_namespace_index(uri)
                text = f"ns={idx};{ident}"
            node = c.get_node(text)
            td = await node.read_type_definition()
            out = {"node": text, "type_definition": td.to_string() if td is not None else None}
            for prop in await node.get_properties():
                name = (await prop.read_browse_name()).Name
                v = await prop.read_value()
                if name == "EngineeringUnits":
                    out["eu"] = {"display_name": v.DisplayName.Text, "unit_id": v.UnitId, "namespace": v.NamespaceUri}
                elif name == "EURange":
                    out["eu_range"] = [v.Low, v.High]
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
