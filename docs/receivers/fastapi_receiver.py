"""A FastAPI receiver for Tidings webhooks."""

import os

from fastapi import FastAPI, HTTPException, Request, Response

from tidings.verify import InvalidSignature, verify

app = FastAPI()
SECRETS = os.environ.get("WEBHOOK_SECRETS", "").split(",")
seen_ids: set[str] = set()  # use your database in production


@app.post("/webhooks/tidings", status_code=204)
async def tidings_webhook(request: Request) -> Response:
    body = await request.body()  # raw bytes: do not let FastAPI parse the JSON first
    try:
        event = verify(body, request.headers, SECRETS)
    except InvalidSignature:
        raise HTTPException(status_code=401, detail="bad signature") from None
    delivery_id = request.headers["webhook-id"]
    if delivery_id not in seen_ids:
        seen_ids.add(delivery_id)
        handle(event["type"], event["content"])
    return Response(status_code=204)


def handle(event_type: str, content: dict) -> None:
    print(event_type, content)
