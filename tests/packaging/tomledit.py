"""Editing the packaged TOML configs the way an integrator does with an
editor: change a key in place (keeping the comments around it), comment a
key out, append sections. The result is checked with tomllib, and then by
the binary's own `validate` inside the chroot."""

import json
import re
import tomllib


def lit(value):
    """A Python value as a TOML literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for what we write
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(lit(v) for v in value) + "]"
    raise TypeError(f"no TOML literal for {value!r}")


HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-]+)\s*\]\s*(#.*)?$")
ANY_HEADER = re.compile(r"^\s*\[")


def _table_span(lines, table):
    """(header index, end index) of `[table]`, or None."""
    for i, line in enumerate(lines):
        m = HEADER.match(line)
        if m and m.group(1) == table:
            end = i + 1
            while end < len(lines) and not ANY_HEADER.match(lines[end]):
                end += 1
            return i, end
    return None


def _value_end(lines, i):
    """Index after the last line of the key/value starting at line i (a
    multi-line array ends where its brackets balance)."""
    depth = 0
    j = i
    while j < len(lines):
        text = re.sub(r'"(\\.|[^"\\])*"|\'[^\']*\'', '""', lines[j].split("#")[0] if j > i else lines[j])
        if j == i:
            text = text.split("=", 1)[1] if "=" in text else ""
            text = text.split("#")[0]
        depth += text.count("[") - text.count("]")
        j += 1
        if depth <= 0:
            return j
    return j


def set_keys(text, table, values):
    """Set `key = value` for each item in `[table]`: replace an existing
    (uncommented) line, or add it under the header; add the table at the end
    if the file has none. A None value comments the key out."""
    lines = text.split("\n")
    span = _table_span(lines, table)
    if span is None:
        add = [f"{k} = {lit(v)}" for k, v in values.items() if v is not None]
        block = "\n".join([f"[{table}]"] + add)
        return text.rstrip("\n") + "\n\n" + block + "\n"
    for key, value in values.items():
        start, end = _table_span(lines, table)
        pat = re.compile(rf"^\s*{re.escape(key)}\s*=")
        found = next((i for i in range(start + 1, end) if pat.match(lines[i])), None)
        if found is not None:
            stop = _value_end(lines, found)
            if value is None:
                lines[found:stop] = ["# " + l for l in lines[found:stop]]
            else:
                lines[found:stop] = [f"{key} = {lit(value)}  # set by the packaging test"]
        elif value is not None:
            lines.insert(start + 1, f"{key} = {lit(value)}  # set by the packaging test")
    return "\n".join(lines)


def append(text, block):
    return text.rstrip("\n") + "\n\n" + block.strip("\n") + "\n"


def check(text, what):
    """Parse with tomllib; raise ValueError naming `what` if it is not TOML."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{what} is not valid TOML after editing: {e}\n{text}") from None
