"""A card-network client made of pyiso8583 alone: sends one message (given as JSON fields) to ghostcard's ISO 8583
listener with the 2-byte length framing and prints the decoded answer as JSON.

Usage: pyiso8583_client.py HOST:PORT '{"t": "0100", "2": "...", ...}'
"""
import json
import socket
import struct
import sys

import iso8583
from iso8583.specs import default_ascii

host, port = sys.argv[1].rsplit(":", 1)
request, _ = iso8583.encode(json.loads(sys.argv[2]), default_ascii)
with socket.create_connection((host, int(port)), timeout=10) as connection:
    connection.sendall(struct.pack(">H", len(request)) + bytes(request))
    data = b""
    while len(data) < 2 or len(data) < 2 + struct.unpack(">H", data[:2])[0]:
        chunk = connection.recv(4096)
        if not chunk:
            raise SystemExit("the server closed the connection")
        data += chunk
length = struct.unpack(">H", data[:2])[0]
answer, _ = iso8583.decode(data[2 : 2 + length], default_ascii)
print(json.dumps({key: value for key, value in answer.items() if key not in ("p", "1")}))
