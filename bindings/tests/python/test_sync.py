"""Two nodes on loopback: a write on one reaches the other's listener."""

import asyncio
import json
import threading
import time

import pytest

import outpost
from conftest import SITE, TIMEOUT, Recorder

OPEN_POLICY = json.dumps(
    {
        "contexts": {},
        "default_rule": {"read": [], "write": []},
        "relay_roles": [],
        "open": True,
    }
)


def remote_change_from(peer, doc):
    def predicate(rec):
        return any(
            c.doc == doc and c.origin == outpost.ChangeOrigin.REMOTE(peer=peer)
            for c in rec.changes
        )

    return predicate


def test_write_on_one_node_reaches_the_other_through_a_callback(open_node, recorder):
    # Subscribe before the link comes up, so that the connection event is seen too.
    kiosk = open_node("kiosk-1", "kiosk")
    sub = kiosk.subscribe(recorder, doc="menu")
    pos = open_node("pos-1", "pos", peers=[kiosk.local_address()])

    recorder.wait_for(
        lambda r: any(p.peer == "pos-1" for p in r.connected), "kiosk connected to pos"
    )
    assert recorder.connected[0] == outpost.PeerIdentity(site=SITE, peer="pos-1", role="pos")

    pos.put_blocking("menu", "/items/burger", json.dumps({"name": "Burger", "price": 950}))
    recorder.wait_for(remote_change_from("pos-1", "menu"), "the menu change from pos-1")

    change = next(c for c in recorder.changes if c.doc == "menu")
    assert "/items/burger" in change.paths
    assert change.heads
    assert kiosk.get_int_blocking("menu", "/items/burger/price") == 950
    assert kiosk.get_string_blocking("menu", "/items/burger/name") == "Burger"
    assert json.loads(kiosk.get_blocking("menu", "/items/burger")) == {"name": "Burger", "price": 950}

    # The callback ran on a thread of its own, not on this one.
    assert threading.get_ident() not in recorder.threads
    assert not sub.is_cancelled()

    # And back: the kiosk sells, the pos counts.
    pos_events, kiosk_stock = Recorder(), Recorder()
    sub1 = pos.subscribe(pos_events, doc="stock")
    sub2 = kiosk.subscribe(kiosk_stock, doc="stock")
    pos.increment_blocking("stock", "/burger", 20)
    kiosk_stock.wait_for(remote_change_from("pos-1", "stock"), "stock from pos-1")
    kiosk.increment_blocking("stock", "/burger", -1)
    pos_events.wait_for(remote_change_from("kiosk-1", "stock"), "stock from kiosk-1")
    assert pos.get_int_blocking("stock", "/burger") == 19

    status = pos.status_blocking()
    assert status.online
    assert [p.peer for p in status.connected_peers] == ["kiosk-1"]

    # Cancelling stops delivery.
    sub.cancel()
    assert sub.is_cancelled()
    seen = len(recorder.changes)
    pos.put_int_blocking("menu", "/items/burger/price", 990)
    deadline = time.monotonic() + TIMEOUT
    while kiosk.get_int_blocking("menu", "/items/burger/price") != 990:
        assert time.monotonic() < deadline, "the price change never arrived"
        time.sleep(0.02)
    time.sleep(0.2)
    assert len(recorder.changes) == seen


def test_a_blocked_listener_does_not_block_the_node(open_node):
    kiosk = open_node("kiosk-1", "kiosk")
    release = threading.Event()

    class Stuck(Recorder):
        def on_change(self, event):
            super().on_change(event)
            release.wait(TIMEOUT)  # an app doing slow work on the listener thread

    stuck = Stuck()
    sub3 = kiosk.subscribe(stuck)
    pos = open_node("pos-1", "pos", peers=[kiosk.local_address()])
    for price in (900, 950, 1000):
        pos.put_int_blocking("menu", "/items/burger/price", price)
    stuck.wait_for(lambda r: r.changes, "the first change")
    # While the listener is stuck, sync goes on and writes return.
    wait_until(lambda: value_or_none(kiosk, "menu", "/items/burger/price") == 1000, "sync")
    kiosk.put_string_blocking("orders", "/o-1/status", "new")
    assert kiosk.status_blocking().online
    assert len(stuck.changes) == 1
    release.set()
    # Then the queued events are delivered, in order (remote changes may arrive batched).
    stuck.wait_for(lambda r: any(c.doc == "orders" for c in r.changes), "the queued changes")
    # The pos also publishes its health (document "health"), which may come first.
    docs = [c.doc for c in stuck.changes if c.doc != "health"]
    assert docs[0] == "menu" and docs[-1] == "orders", docs


def test_peer_disconnect_and_offline_badge(open_node, recorder):
    pos = open_node("pos-1", "pos")
    kiosk = open_node("kiosk-1", "kiosk", peers=[pos.local_address()])
    sub4 = kiosk.subscribe(recorder)
    assert asyncio.run(kiosk.wait_for_peer("pos-1", int(TIMEOUT * 1000)))
    pos_events = Recorder()
    sub5 = pos.subscribe(pos_events, doc="orders")
    kiosk.put_string_blocking("orders", "/o-1/status", "new")
    pos_events.wait_for(remote_change_from("kiosk-1", "orders"), "the order on the pos")
    deadline = time.monotonic() + TIMEOUT
    while kiosk.status_blocking().unsynced_changes:
        assert time.monotonic() < deadline, f"never synced: {kiosk.status_blocking()}"
        time.sleep(0.02)
    assert kiosk.status_blocking().online

    pos.shutdown_blocking()
    assert pos.is_shut_down()
    recorder.wait_for(
        lambda r: any(p.peer == "pos-1" for p in r.disconnected), "pos-1 disconnected"
    )
    kiosk.put_string_blocking("orders", "/o-1/status", "paid")
    status = kiosk.status_blocking()
    assert not status.online and status.connected_peers == []
    assert status.unsynced_changes == 1

    def orders_status():
        (pos_status,) = [p for p in kiosk.status_blocking().peers if p.peer == "pos-1"]
        assert not pos_status.connected and pos_status.role == "pos"
        (orders,) = [d for d in pos_status.documents if d.doc == "orders"]
        return orders

    # The engine notes "unsynced since" when it handles the write, just after it returns.
    wait_until(lambda: orders_status().unsynced_since_ms is not None, "unsynced_since")
    assert orders_status().unsynced_changes == 1


def test_refused_changes_reach_both_listeners(open_node):
    """A misconfigured POS accepts a kiosk's menu edit and relays it; a well-configured
    POS refuses it, and both ends of that link are told."""
    pos = open_node("pos-1", "pos")
    lax_pos = open_node("pos-2", "pos", peers=[pos.local_address()], policy_json=OPEN_POLICY)
    pos_events, lax_events = Recorder(), Recorder()
    sub6 = pos.subscribe(pos_events)
    sub7 = lax_pos.subscribe(lax_events)
    assert asyncio.run(lax_pos.wait_for_peer("pos-1", int(TIMEOUT * 1000)))
    rogue = open_node(
        "kiosk-9", "kiosk", peers=[lax_pos.local_address()], policy_json=OPEN_POLICY
    )
    rogue.put_int_blocking("menu", "/items/burger/price", 1)

    # Only the menu edit counts: pos-2's open policy also writes its health report where the
    # default policy's genesis keeps `/devices`, which pos-1 refuses too.
    menu = lambda refusals: [x for x in refusals if x.doc == "menu"]  # noqa: E731
    pos_events.wait_for(lambda r: menu(r.refused), "pos-1 refusing the relayed menu edit")
    refused = menu(pos_events.refused)[0]
    assert (refused.peer, refused.doc, refused.refused_by_peer) == ("pos-2", "menu", False)
    assert "kiosk" in refused.reason
    lax_events.wait_for(lambda r: menu(r.refused), "pos-2 told of the refusal")
    told = menu(lax_events.refused)[0]
    assert (told.peer, told.doc, told.refused_by_peer) == ("pos-1", "menu", True)
    # The edit reached pos-2 but not pos-1.
    assert lax_pos.get_int_blocking("menu", "/items/burger/price") == 1
    with pytest.raises(outpost.OutpostError.UnknownDocument):
        pos.get_blocking("menu", "/items/burger/price")


def test_concurrent_writes_are_visible_as_conflicts(open_node, tmp_path):
    pos1 = open_node("pos-1", "pos")
    pos1.put_int_blocking("menu", "/items/burger/price", 900)
    pos2_dir = tmp_path / "pos-2"

    # pos-2 gets the menu, then goes offline; both change the price meanwhile.
    pos2 = open_node("pos-2", "pos", peers=[pos1.local_address()], data_dir=pos2_dir)
    wait_until(lambda: value_or_none(pos2, "menu", "/items/burger/price") == 900, "first sync")
    pos2.shutdown_blocking()
    pos1.put_int_blocking("menu", "/items/burger/price", 950)
    offline = open_node("pos-2", "pos", data_dir=pos2_dir)
    offline.put_int_blocking("menu", "/items/burger/price", 1000)
    offline.shutdown_blocking()

    pos2 = open_node("pos-2", "pos", peers=[pos1.local_address()], data_dir=pos2_dir)
    wait_until(
        lambda: len(pos2.conflicts_blocking("menu", "/items/burger/price")) == 2, "the two prices meeting"
    )
    conflicts = pos2.conflicts_blocking("menu", "/items/burger/price")
    assert sorted(json.loads(c.json) for c in conflicts) == [950, 1000]
    assert conflicts[0].winner and not conflicts[1].winner
    assert sorted(c.author for c in conflicts) == ["pos-1", "pos-2"]
    assert {c.author_role for c in conflicts} == {"pos"}
    assert pos2.get_int_blocking("menu", "/items/burger/price") == json.loads(conflicts[0].json)
    # Both sides agree on the winner.
    wait_until(lambda: len(pos1.conflicts_blocking("menu", "/items/burger/price")) == 2, "pos-1 merge")
    assert pos1.get_int_blocking("menu", "/items/burger/price") == json.loads(conflicts[0].json)


def value_or_none(node, doc, path):
    try:
        return node.get_int_blocking(doc, path)
    except outpost.OutpostError.UnknownDocument:
        return None


def wait_until(predicate, what, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.02)


def test_async_open_and_shutdown(tmp_path, ca):
    async def scenario():
        node = await outpost.Outpost.open(
            outpost.NodeConfig(
                data_dir=str(tmp_path / "async"),
                certificate=ca.issue(SITE, "pos-7", "pos"),
                role="pos",
                listen="127.0.0.1:0",
            )
        )
        node.put_bool_blocking("menu", "/items/fries/available", True)
        assert node.get_bool_blocking("menu", "/items/fries/available") is True
        assert node.identity() == outpost.PeerIdentity(site=SITE, peer="pos-7", role="pos")
        assert not await node.wait_for_peer("pos-1", 50)
        await node.shutdown()
        await node.shutdown()  # twice does nothing
        return node

    node = asyncio.run(scenario())
    assert node.is_shut_down()


def test_refusals_and_sync_arrive_as_typed_events(open_node):
    """The same refusal as above, from the event streams (`events()`), with the link and
    in-sync events; `await_document` tells "not synced yet" from "synced"."""
    pos = open_node("pos-1", "pos")
    lax_pos = open_node("pos-2", "pos", policy_json=OPEN_POLICY)

    seen = []  # every event taken from a stream, so that one arriving early is not missed

    async def first(stream, what, wanted):
        async def loop():
            for e in seen:
                if wanted(e):
                    seen.remove(e)
                    return e
            while True:
                e = await stream.next()
                assert e is not None, f"the stream ended waiting for {what}"
                if wanted(e):
                    return e
                seen.append(e)

        return await asyncio.wait_for(loop(), TIMEOUT)

    async def run():
        pos_events, lax_events = pos.events(), lax_pos.events()
        assert not await lax_pos.await_document("menu", 100), "nothing synced yet"
        lax_pos.add_peer(pos.local_address())
        await first(lax_events, "pos-1 connected",
                    lambda e: e.is_peer_connected() and e.peer.peer == "pos-1")
        seen.clear()
        rogue = open_node("kiosk-9", "kiosk", peers=[lax_pos.local_address()], policy_json=OPEN_POLICY)
        await rogue.put_int("menu", "/items/burger/price", 1)
        assert await lax_pos.await_document("menu", int(TIMEOUT * 1000))
        refused = await first(
            pos_events, "pos-1 refusing",
            lambda e: e.is_change_refused() and e.refused.doc == "menu")
        seen.clear()  # pos-1's other events
        assert (refused.refused.peer, refused.refused.doc, refused.refused.refused_by_peer) == (
            "pos-2", "menu", False)
        told = await first(
            lax_events, "pos-2 told",
            lambda e: e.is_change_refused() and e.refused.doc == "menu")
        assert (told.refused.peer, told.refused.refused_by_peer) == ("pos-1", True)
        await first(lax_events, "in sync with kiosk-9 on the menu",
                    lambda e: e.is_in_sync() and e.doc == "menu" and e.peer == "kiosk-9")
        pos_events.cancel()
        assert await pos_events.next() is None

    asyncio.run(run())


def test_pause_keeps_the_store_and_resume_reconnects(open_node):
    pos = open_node("pos-1", "pos")
    kiosk = open_node("kiosk-1", "kiosk", peers=[pos.local_address()])
    assert asyncio.run(kiosk.wait_for_peer("pos-1", int(TIMEOUT * 1000)))
    asyncio.run(kiosk.pause())
    assert kiosk.is_paused() and not kiosk.status_blocking().online
    kiosk.put_blocking("orders", "/o-1", '{"status": "new"}')  # the store is kept
    kiosk.resume()
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            if pos.get_blocking("orders", "/o-1/status") == '"new"':
                break
        except outpost.OutpostError.UnknownDocument:
            pass
        assert time.monotonic() < deadline, "the order never reached the pos after resume"
        time.sleep(0.02)
