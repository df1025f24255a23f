def test_create_webhook_and_publish(api):
    wh = api.create_webhook(events=["item.created"])
    assert wh["secret"].startswith("whsec_")
    r = api.publish("item.created", {"item_id": 1})
    assert r.status_code == 202, r.text
    assert r.json()["deliveries"] == 1
