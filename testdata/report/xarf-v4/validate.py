#!/usr/bin/python3
"""Validates X-ARF v4 reports, one JSON object per line on stdin, against the
official schema files next to this script (see SOURCE.md), with Debian's
python3-jsonschema. Prints one line per error and exits 1 if there is any."""
import json
import os
import sys

import jsonschema

here = os.path.dirname(os.path.abspath(__file__))
store = {}
for rel in ("xarf-v4-master.json", "xarf-core.json", "types/infrastructure-botnet.json"):
    with open(os.path.join(here, rel)) as f:
        doc = json.load(f)
    store[doc["$id"]] = doc
master = store["https://xarf.org/schemas/v4/xarf-v4-master.json"]
cls = jsonschema.Draft202012Validator
cls.check_schema(master)
resolver = jsonschema.RefResolver.from_schema(master, store=store)
validator = cls(master, resolver=resolver, format_checker=cls.FORMAT_CHECKER)

bad = 0
n = 0
for lineno, line in enumerate(sys.stdin, 1):
    if not line.strip():
        continue
    n += 1
    report = json.loads(line)
    for err in sorted(validator.iter_errors(report), key=lambda e: list(e.absolute_path)):
        bad += 1
        path = "/".join(str(p) for p in err.absolute_path)
        print(f"report {lineno}: {path or '(root)'}: {err.message}")
print(f"{n} reports, {bad} errors", file=sys.stderr)
sys.exit(1 if bad or n == 0 else 0)
