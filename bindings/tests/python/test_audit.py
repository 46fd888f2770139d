"""The audit trail of sync through the bindings: a link's open and close, and the POS
acknowledging a kiosk's order ("when did it reach the other device?")."""

import asyncio
import time

import pytest

import outpost
from conftest import TIMEOUT


def wait_for_entries(node, what, **query):
    deadline = time.monotonic() + TIMEOUT
    while True:
        entries = node.audit_blocking(**query)
        if entries:
            return entries
        assert time.monotonic() < deadline, f"no audit entry: {what}"
        time.sleep(0.02)


def test_links_and_acknowledgements_are_in_the_audit_trail(open_node):
    pos = open_node("pos-1", "pos")
    kiosk = open_node("kiosk-1", "kiosk", peers=[pos.local_address()])
    assert asyncio.run(kiosk.wait_for_peer("pos-1", int(TIMEOUT * 1000)))
    kiosk.put_string_blocking("orders", "/orders/K1-001/status", "new")

    (opened,) = wait_for_entries(pos, "the kiosk's link at the POS", kinds=["link_opened"], peer="kiosk-1")
    assert (opened.site, opened.role, opened.dialed_by_us) == ("paris-11", "kiosk", False)
    acks = wait_for_entries(
        kiosk, "the POS acknowledging the order", kinds=["acknowledged"], peer="pos-1", doc="orders"
    )
    assert acks[-1].heads and acks[-1].count >= 1 and acks[-1].at_ms >= opened.at_ms - 1000

    pos.shutdown_blocking()
    (closed,) = wait_for_entries(kiosk, "the link closed at the kiosk", kinds=["link_closed"])
    assert closed.peer == "pos-1" and "shutting down" in closed.detail
    everything = kiosk.audit_blocking()
    assert [e.at_ms for e in everything] == sorted(e.at_ms for e in everything)
    assert len(kiosk.audit_blocking(limit=1)) == 1
    with pytest.raises(outpost.OutpostError):
        kiosk.audit_blocking(kinds=["nonsense"])
