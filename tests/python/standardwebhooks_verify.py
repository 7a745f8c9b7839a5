"""Verifies webhook deliveries with the PyPI package `standardwebhooks` (an implementation independent of ours).

Reads a JSON object on standard input: {"secret": "whsec_…", "deliveries": [{"body": "...", "headers": {...}}]}.
Prints one line per delivery: the verified payload's `id` (an event) or `type` (a decision request), or
"INVALID <reason>".
"""

import json
import sys

from standardwebhooks.webhooks import Webhook

request = json.load(sys.stdin)
webhook = Webhook(request["secret"])
for delivery in request["deliveries"]:
    try:
        payload = webhook.verify(delivery["body"], delivery["headers"])
        print(payload.get("id", payload.get("type")))
    except Exception as error:  # the package raises its own WebhookVerificationError
        print(f"INVALID {error}")
