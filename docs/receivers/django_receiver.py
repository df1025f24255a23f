"""A Django view for Tidings webhooks (add it to your urls.py)."""

import os

from django.http import HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from tidings.verify import InvalidSignature, verify

SECRETS = os.environ.get("WEBHOOK_SECRETS", "").split(",")
seen_ids: set[str] = set()  # use your database in production


@csrf_exempt  # the signature, not a CSRF token, proves where the request comes from
@require_POST
def tidings_webhook(request):
    try:
        event = verify(request.body, request.headers, SECRETS)
    except InvalidSignature:
        return HttpResponseForbidden("bad signature")
    delivery_id = request.headers["webhook-id"]
    if delivery_id not in seen_ids:
        seen_ids.add(delivery_id)
        handle(event["type"], event["content"])
    return HttpResponse(status=204)


def handle(event_type: str, content: dict) -> None:
    print(event_type, content)
