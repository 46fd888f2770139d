"""The document API of one node, and bad input raising the right OutpostError."""

import asyncio
import json
import threading
import time

import pytest

import outpost
from conftest import SITE, Recorder


@pytest.fixture
def kiosk(open_node):
    return open_node("kiosk-1", "kiosk", role="kiosk")


@pytest.fixture
def local(tmp_path):
    node = outpost.Outpost.open_local(str(tmp_path / "local"))
    yield node
    node.shutdown_blocking()


def test_values_lists_counters_and_transactions(local):
    local.put_blocking("menu", "/items/burger", '{"name": "Burger", "price": 950, "tags": ["beef"]}')
    local.put_double_blocking("menu", "/items/burger/weight", 0.25)
    local.push_blocking("menu", "/items/burger/tags", '"grill"')
    local.insert_blocking("menu", "/items/burger/tags", 0, '"new"')
    assert json.loads(local.get_blocking("menu", "/items/burger/tags")) == ["new", "beef", "grill"]
    assert local.get_double_blocking("menu", "/items/burger/weight") == 0.25
    assert local.get_blocking("menu", "/items/none") is None
    assert local.get_string_blocking("menu", "/items/none") is None

    local.increment_blocking("stock", "/burger", 5)
    local.increment_blocking("stock", "/burger", -2)
    assert local.get_int_blocking("stock", "/burger") == 3

    local.transact_blocking(
        "orders",
        [
            outpost.TxOp.PUT(path="/o-1", json='{"status": "new", "items": []}'),
            outpost.TxOp.PUSH(path="/o-1/items", json='{"sku": "burger", "qty": 2}'),
            outpost.TxOp.INCREMENT(path="/o-1/total", delta=1900),
            outpost.TxOp.INSERT(path="/o-1/items", index=0, json='{"sku": "fries", "qty": 1}'),
        ],
    )
    order = json.loads(local.get_blocking("orders", "/o-1"))
    assert order == {
        "status": "new",
        "items": [{"sku": "fries", "qty": 1}, {"sku": "burger", "qty": 2}],
        "total": 1900,
    }

    # A failing operation rolls the whole transaction back.
    with pytest.raises(outpost.OutpostError.NotFound):
        local.transact_blocking(
            "orders",
            [
                outpost.TxOp.PUT(path="/o-1/status", json='"paid"'),
                outpost.TxOp.DELETE(path="/o-1/missing"),
            ],
        )
    assert local.get_string_blocking("orders", "/o-1/status") == "new"

    # A write with an id applies once, however often it is retried.
    sale = [outpost.TxOp.INCREMENT(path="/burger", delta=-1)]
    assert local.transact_once_blocking("stock", "sale/K1-042/burger", sale) is True
    assert local.transact_once_blocking("stock", "sale/K1-042/burger", sale) is False
    assert local.get_int_blocking("stock", "/burger") == 2

    local.delete_blocking("orders", "/o-1/total")
    assert local.get_blocking("orders", "/o-1/total") is None
    assert local.documents_blocking() == ["menu", "orders", "stock"]
    assert local.identity() is None and local.local_address() is None
    assert not local.status_blocking().online

    conflicts = local.conflicts_blocking("menu", "/items/burger/price")
    assert len(conflicts) == 1 and conflicts[0].winner and json.loads(conflicts[0].json) == 950


def test_local_changes_reach_a_path_listener(local):
    local.put_int_blocking("menu", "/items/burger/price", 900)
    rec = Recorder()
    sub = local.subscribe(rec, doc="menu", path="/items/fries")
    local.put_int_blocking("menu", "/items/burger/price", 950)  # not below /items/fries
    local.put_int_blocking("stock", "/fries", 3)  # another document
    local.put_bool_blocking("menu", "/items/fries/available", False)
    rec.wait_for(lambda r: r.changes, "the fries change")
    change = rec.changes[0]
    assert change.doc == "menu"
    assert all(p.startswith("/items/fries") for p in change.paths), change.paths
    assert change.origin == outpost.ChangeOrigin.LOCAL()
    assert len(rec.changes) == 1
    sub.cancel()


def test_a_listener_that_raises_keeps_receiving(local):
    class Flaky(Recorder):
        def on_change(self, event):
            super().on_change(event)
            if len(self.changes) == 1:
                raise RuntimeError("listener bug")

    rec = Flaky()
    sub = local.subscribe(rec)  # kept: a subscription ends when its handle is dropped
    local.put_int_blocking("stock", "/a", 1)
    # Waiting changes to one document are delivered merged: write the second once the first
    # (which raises) was delivered.
    rec.wait_for(lambda r: len(r.changes) == 1, "the first change")
    local.put_int_blocking("stock", "/b", 2)
    rec.wait_for(lambda r: len(r.changes) == 2, "the next change despite the exception")


def test_invalid_pointer(kiosk):
    with pytest.raises(outpost.OutpostError.InvalidPath) as e:
        kiosk.put_blocking("orders", "o-1/status", '"new"')
    assert "JSON Pointer" in str(e.value)
    with pytest.raises(outpost.OutpostError.InvalidPath):
        kiosk.get_blocking("orders", "/o-1/~2")


def test_invalid_json_and_names(kiosk):
    with pytest.raises(outpost.OutpostError.InvalidJson) as e:
        kiosk.put_blocking("orders", "/o-1", "{not json")
    assert "not valid JSON" in str(e.value)
    with pytest.raises(outpost.OutpostError.InvalidJson):
        kiosk.transact_blocking("orders", [outpost.TxOp.PUT(path="/o-1", json="nope")])
    with pytest.raises(outpost.OutpostError.InvalidName):
        kiosk.put_blocking("Orders!", "/o-1", "1")
    with pytest.raises(outpost.OutpostError.InvalidValue):
        kiosk.put_double_blocking("orders", "/o-1/total", float("nan"))


def test_wrong_role_may_not_write(kiosk):
    with pytest.raises(outpost.OutpostError.NotPermitted) as e:
        kiosk.put_int_blocking("menu", "/items/burger/price", 1)
    assert "kiosk" in str(e.value) and "menu" in str(e.value)
    # What the kiosk may write works.
    kiosk.put_string_blocking("orders", "/o-1/status", "new")
    kiosk.increment_blocking("stock", "/burger", -1)


def test_certificate_of_another_role_than_the_app_expects(tmp_path, ca):
    config = outpost.NodeConfig(
        data_dir=str(tmp_path / "x"),
        certificate=ca.issue(SITE, "pos-1", "pos"),
        role="kiosk",
        listen="127.0.0.1:0",
    )
    with pytest.raises(outpost.OutpostError.InvalidConfig) as e:
        outpost.Outpost.open_blocking(config)
    assert "role pos" in str(e.value) and "kiosk" in str(e.value)


def test_bad_config_and_certificates(tmp_path, ca):
    good = ca.issue(SITE, "pos-1", "pos")
    with pytest.raises(outpost.OutpostError.InvalidConfig):
        outpost.Outpost.open_blocking(
            outpost.NodeConfig(data_dir=str(tmp_path), certificate=good, listen="nowhere")
        )
    with pytest.raises(outpost.OutpostError.InvalidConfig):
        outpost.Outpost.open_blocking(
            outpost.NodeConfig(
                data_dir=str(tmp_path), certificate=good, listen="127.0.0.1:0", policy_json="{}"
            )
        )
    other_fleet = outpost.FleetCa.generate("other")
    with pytest.raises(outpost.OutpostError.Certificate):
        outpost.DeviceCertificate.from_pem(good.cert_pem(), good.key_pem(), other_fleet.cert_pem())
    with pytest.raises(outpost.OutpostError.InvalidName):
        ca.issue(SITE, "Not A Peer", "pos")


def test_type_and_state_errors(kiosk):
    kiosk.put_string_blocking("orders", "/o-1/status", "new")
    with pytest.raises(outpost.OutpostError.WrongType):
        kiosk.increment_blocking("orders", "/o-1/status", 1)
    with pytest.raises(outpost.OutpostError.WrongType):
        kiosk.get_int_blocking("orders", "/o-1/status")
    with pytest.raises(outpost.OutpostError.NotFound):
        kiosk.delete_blocking("orders", "/o-2")
    with pytest.raises(outpost.OutpostError.IndexOutOfRange):
        kiosk.insert_blocking("orders", "/o-1/items", 3, "1")
    with pytest.raises(outpost.OutpostError.UnknownDocument):
        kiosk.get_blocking("stock", "/burger")
    kiosk.shutdown_blocking()
    with pytest.raises(outpost.OutpostError.ShutDown):
        kiosk.get_blocking("orders", "/o-1")
    # Every variant is an OutpostError.
    assert issubclass(outpost.OutpostError.ShutDown, outpost.OutpostError)


def test_certificates_round_trip_through_files(tmp_path, ca):
    cert = ca.issue(SITE, "kitchen-1", "kitchen")
    outpost.save_device_certificate(cert, str(tmp_path / "cert"))
    loaded = outpost.load_device_certificate(str(tmp_path / "cert"))
    assert loaded.cert_pem() == cert.cert_pem() and loaded.ca_pem() == cert.ca_pem()
    # The key is only read explicitly, never printed.
    assert "PRIVATE KEY" in loaded.key_pem()
    for printed in (str(loaded), repr(loaded), repr(outpost.NodeConfig(data_dir="x", certificate=loaded))):
        assert "PRIVATE KEY" not in printed, printed
    assert str(loaded) == "DeviceCertificate(kitchen-1 of paris-11, role kitchen)"
    assert outpost.certificate_identity(loaded) == outpost.PeerIdentity(
        site=SITE, peer="kitchen-1", role="kitchen"
    )
    ca.save(str(tmp_path / "ca"))
    again = outpost.FleetCa.load(str(tmp_path / "ca"))
    assert again.cert_pem() == ca.cert_pem()
    with pytest.raises(outpost.OutpostError.Storage):
        outpost.load_device_certificate(str(tmp_path / "missing"))


def test_a_feed_resumes_where_it_was_acknowledged(local):
    day = "orders/2026-12-01"
    local.put_blocking(day, "/orders/K1-001", '{"sku": "burger"}')
    local.put_blocking(day, "/orders/K1-002", '{"sku": "fries"}')
    local.put_blocking("menu", "/burger/price", "950")
    # No path: the policy says what an item of `orders` is (`/orders/*`, one per order).
    feed = local.feed("kitchen-1/printer", context="orders")
    batch = feed.next_blocking(1000)
    assert batch.doc == day
    assert batch.items == ["/orders/K1-001", "/orders/K1-002"]
    assert feed.next_blocking(50) is None, "delivered once per session, menu changes not in this feed"
    feed.ack_blocking(batch)

    local.put_blocking(day, "/orders/K1-002/status", '"ready"')
    local.put_blocking(day, "/orders/K1-003", '{"sku": "cola"}')
    assert feed.next_blocking(1000).items == ["/orders/K1-002", "/orders/K1-003"]
    # Not acknowledged: a new feed of the same consumer (as after a restart) delivers it again.
    again = local.feed("kitchen-1/printer", context="orders", path="/orders")
    assert again.next_blocking(1000).items == ["/orders/K1-002", "/orders/K1-003"]

    # The callback form: another consumer, from the beginning, acknowledged as it returns.
    got = []
    done = threading.Event()

    class Erp(outpost.FeedListener):
        def on_batch(self, batch):
            got.extend(batch.items)
            if len(set(got)) == 3:
                done.set()
            return True

    sub = local.consume("erp", Erp(), doc=day, path="/orders/*")
    assert done.wait(5), got
    sub.cancel()
    assert sorted(set(got)) == ["/orders/K1-001", "/orders/K1-002", "/orders/K1-003"]
    with pytest.raises(outpost.OutpostError.InvalidName):
        local.feed("no spaces allowed")


def test_tickets_are_issued_with_the_order_and_steps_belong_to_roles(open_node, local):
    kiosk = open_node("kiosk-1", "kiosk", ticket_prefix="K1")
    day = "orders/2026-12-01"
    order = [
        outpost.TxOp.PUT(path="/orders/{ticket}", json='{"ticket": "{ticket}", "total": 950}'),
        outpost.TxOp.PUSH(path="/orders/{ticket}/items", json='{"sku": "burger"}'),
    ]
    assert kiosk.transact_with_ticket_blocking(day, order) == "K1-001"
    assert kiosk.transact_with_ticket_blocking(day, order) == "K1-002"
    assert kiosk.get_string_blocking(day, "/orders/K1-002/ticket") == "K1-002"
    assert json.loads(kiosk.get_blocking(day, "/orders/K1-001/items")) == [{"sku": "burger"}]
    # A kiosk may not mark an order paid: that step is a POS's.
    with pytest.raises(outpost.OutpostError.NotPermitted):
        kiosk.put_blocking(day, "/orders/K1-001/payment", '{"amount": 950}')
    # A failed transaction leaves a gap, never a repeated number.
    with pytest.raises(outpost.OutpostError.NotPermitted):
        kiosk.transact_with_ticket_blocking(
            day, order + [outpost.TxOp.PUT(path="/orders/{ticket}/closed", json="true")]
        )
    assert kiosk.transact_with_ticket_blocking(day, order) == "K1-004"
    # Without a prefix, the error says what to configure.
    with pytest.raises(outpost.OutpostError.InvalidConfig, match="ticket prefix"):
        local.transact_with_ticket_blocking(day, order)
    with pytest.raises(outpost.OutpostError.InvalidName):
        open_node("kiosk-2", "kiosk", ticket_prefix="k2")


def test_a_watch_and_a_live_query_from_asyncio(local):
    async def run():
        watch = local.watch("menu", "/items/burger/price")
        first = await asyncio.wait_for(watch.next(), 10)
        assert first.json is None  # the document does not exist yet: null, not an error
        local.put_blocking("menu", "/items/burger/price", "950")
        second = await asyncio.wait_for(watch.next(), 10)
        assert second.json == "950"
        query = outpost.Query(
            collection="/orders",
            filters=[outpost.QueryFilter(path="/status", equals_json='"new"')],
            sort_by="/at",
            descending=False,
            limit=None,
        )
        orders = local.watch_query("orders/2026-12-01", query)
        assert (await asyncio.wait_for(orders.next(), 10)).total == 0
        local.put_blocking("orders/2026-12-01", "/orders/K1-002", '{"status": "new", "at": 2}')
        local.put_blocking("orders/2026-12-01", "/orders/K1-001", '{"status": "new", "at": 1}')
        local.put_blocking("orders/2026-12-01", "/orders/K1-003", '{"status": "done", "at": 0}')
        result = await asyncio.wait_for(orders.next(), 10)
        while result.total < 2:
            result = await asyncio.wait_for(orders.next(), 10)
        assert [i.key for i in result.items] == ["K1-001", "K1-002"]
        watch.cancel()
        assert await asyncio.wait_for(watch.next(), 10) is None
        del orders  # dropping the handle ends the watch

    asyncio.run(run())
    deadline = time.monotonic() + 10
    while local.live_tasks() != 0:
        assert time.monotonic() < deadline, f"{local.live_tasks()} watch tasks left"
        time.sleep(0.01)


def test_an_order_and_its_stock_are_one_awaited_transaction(open_node):
    kiosk = open_node("kiosk-4", "kiosk", ticket_prefix="K4")
    day = "orders/2026-12-02"
    order = [
        outpost.TxOp.PUT(path="/orders/{ticket}", json='{"ticket": "{ticket}", "total": 950}'),
        outpost.TxOp.INCREMENT(path="/stock/burger", delta=-1),
    ]

    async def run():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        beat = asyncio.create_task(ticker())
        started = time.monotonic()
        tickets = [await kiosk.transact_with_ticket(day, order) for _ in range(10)]
        took = time.monotonic() - started
        beat.cancel()
        print(f"10 awaited transact_with_ticket: {took * 1000:.1f} ms, event loop ticked {ticks} times")
        assert tickets[0] == "K4-001" and tickets[-1] == "K4-010"
        assert ticks > 0, "the event loop was blocked for the whole time"
        assert await kiosk.get_int(day, "/stock/burger") == -10
        await kiosk.put_string(day, "/stock/fries", "n/a")
        with pytest.raises(outpost.OutpostError.WrongType):
            await kiosk.transact_with_ticket(
                day, order + [outpost.TxOp.INCREMENT(path="/stock/fries", delta=-1)]
            )
        assert await kiosk.get_int(day, "/stock/burger") == -10, "nothing of a failed transaction"
        assert await kiosk.transact_once(day, "sale-1", [outpost.TxOp.INCREMENT(path="/sold", delta=1)])
        assert not await kiosk.transact_once(day, "sale-1", [outpost.TxOp.INCREMENT(path="/sold", delta=1)])
        assert [json.loads(c.json) for c in await kiosk.conflicts(day, "/sold")] == [1]
        assert day in await kiosk.documents()

    asyncio.run(run())


def test_errors_carry_document_path_and_retryable(local):
    local.put_string_blocking("orders", "/o-1/status", "new")
    with pytest.raises(outpost.OutpostError.WrongType) as wrong:
        local.increment_blocking("orders", "/o-1/status", 1)
    assert (wrong.value.doc, wrong.value.path, wrong.value.retryable) == ("orders", "/o-1/status", False)
    with pytest.raises(outpost.OutpostError.UnknownDocument) as unknown:
        local.get_blocking("stock", "/burger")
    assert (unknown.value.doc, unknown.value.retryable) == ("stock", True)
    with pytest.raises(outpost.OutpostError.InvalidJson) as bad:
        local.put_blocking("orders", "/o-2", "{nope")
    assert (bad.value.doc, bad.value.path) == ("orders", "/o-2")
    assert "not valid JSON" in bad.value.reason


def test_a_live_query_gives_keys_diffs_and_typed_filters(local):
    day = "orders/2026-12-04"

    async def run():
        await local.put(day, "/orders", json.dumps({
            "K1-001": {"status": "new", "total": 500, "customer": {"table": 2}},
            "K1-002": {"status": "cooking", "total": 1500, "customer": {"table": 2}},
            "K1-003": {"status": "new", "total": 2500, "customer": {"table": 5}},
        }))
        query = outpost.Query(
            collection="/orders",
            filters=[],
            conditions=[
                outpost.Filter.IN(path="/status", jsons=['"new"', '"cooking"']),
                outpost.Filter.RANGE(path="/total", min_json="1000", max_json=None,
                                     min_exclusive=False, max_exclusive=False),
            ],
            sort_by="/total",
            descending=True,
            limit=None,
        )
        watch = local.watch_query(day, query)
        first = await asyncio.wait_for(watch.next(), 10)
        assert [i.key for i in first.items] == ["K1-003", "K1-002"] and first.diff.initial
        await local.put(day, "/orders/K1-004", '{"status": "new", "total": 2000, "customer": {"table": 2}}')
        second = await asyncio.wait_for(watch.next(), 10)
        assert [i.key for i in second.items] == ["K1-003", "K1-004", "K1-002"]
        assert (second.diff.inserted, second.diff.removed, second.diff.changed) == ([1], [], [])
        watch.cancel()

    asyncio.run(run())
