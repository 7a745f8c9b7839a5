"""Oracle for ghostcard's ISO 8583 tests, using pyiso8583 with specs.default_ascii.

Reads JSON lines {"fields": {"t": MTI, "2": ..., ...}, "bytes": HEX} where HEX is what ghostcard encoded. For each,
prints one JSON line: {"decoded": fields pyiso8583 decodes from ghostcard's bytes (without bitmaps),
"encoded": HEX of what pyiso8583 encodes from the same fields}.
"""
import json
import sys

import iso8583
from iso8583.specs import default_ascii

for line in sys.stdin:
    case = json.loads(line)
    decoded, _ = iso8583.decode(bytes.fromhex(case["bytes"]), default_ascii)
    decoded = {key: value for key, value in decoded.items() if key not in ("p", "1")}
    encoded, _ = iso8583.encode(dict(case["fields"]), default_ascii)
    print(json.dumps({"decoded": decoded, "encoded": bytes(encoded).hex()}))
