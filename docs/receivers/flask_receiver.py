"""A Flask receiver for Tidings webhooks."""

import os

from flask import Flask, abort, request

from tidings.verify import InvalidSignature, verify

app = Flask(__name__)
# During a rotation, list both secrets: "whsec_new,whsec_old".
SECRETS = os.environ.get("WEBHOOK_SECRETS", "").split(",")
seen_ids: set[str] = set()  # use your database in production


@app.post("/webhooks/tidings")
def tidings_webhook():
    try:
        # The raw bytes, exactly as received: re-serialised JSON would not verify.
        event = verify(request.get_data(), request.headers, SECRETS)
    except InvalidSignature:
        abort(401)
    delivery_id = request.headers["webhook-id"]
    if delivery_id in seen_ids:  # at-least-once: the same delivery may come twice
        return "", 204
    seen_ids.add(delivery_id)
    handle(event["type"], event["content"])
    return "", 204  # any 2xx within 10 s; do slow work after answering


def handle(event_type: str, content: dict) -> None:
    print(event_type, content)
