// The Kotlin scenario of outpost-ffi, run on the JVM by bindings/test.sh: two nodes on
// loopback with generated certificates; a write on one reaches the other's listener; bad
// input raises the right OutpostException. Plain main() so that only kotlinc, the Kotlin
// stdlib, kotlinx-coroutines and JNA are needed.
package dev.outpost.test

import dev.outpost.ChangeEvent
import dev.outpost.ChangeOrigin
import dev.outpost.FleetCa
import dev.outpost.NodeConfig
import dev.outpost.NodeListener
import dev.outpost.Outpost
import dev.outpost.OutpostException
import dev.outpost.PeerIdentity
import dev.outpost.RefusedChange
import dev.outpost.TxOp
import java.nio.file.Files
import java.nio.file.Path
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.TimeUnit
import java.util.concurrent.locks.ReentrantLock
import kotlin.concurrent.withLock
import dev.outpost.DeviceCertificate
import dev.outpost.JsonCodec
import dev.outpost.Query
import dev.outpost.QueryFilter
import dev.outpost.NodeEvent
import dev.outpost.SyncStatus
import dev.outpost.awaitDocument
import dev.outpost.eventFlow
import dev.outpost.QueryUpdate
import dev.outpost.queryUpdates
import dev.outpost.where
import dev.outpost.readme.KioskScreen
import dev.outpost.readme.MenuItem
import dev.outpost.onBackground
import dev.outpost.onForeground
import dev.outpost.shutdownAndClose
import dev.outpost.lastSync
import dev.outpost.peersFlow
import dev.outpost.queryFlow
import dev.outpost.read
import dev.outpost.statusFlow
import dev.outpost.statusState
import dev.outpost.waitForPeer
import dev.outpost.watchValue
import dev.outpost.write
import kotlin.time.Duration.Companion.milliseconds
import kotlin.time.Duration.Companion.seconds
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.asCoroutineDispatcher
import kotlinx.coroutines.cancel
import kotlinx.coroutines.cancelAndJoin
import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout

const val SITE = "paris-11"
const val TIMEOUT_MS = 10_000L

/** Records what a NodeListener is told and lets the test wait for it. */
class Recorder : NodeListener {
    private val lock = ReentrantLock()
    private val changed = lock.newCondition()
    val changes = CopyOnWriteArrayList<ChangeEvent>()
    val connected = CopyOnWriteArrayList<PeerIdentity>()
    val disconnected = CopyOnWriteArrayList<PeerIdentity>()
    val refused = CopyOnWriteArrayList<RefusedChange>()
    val threads = CopyOnWriteArrayList<Long>()

    private fun <T> record(into: MutableList<T>, item: T) = lock.withLock {
        into.add(item)
        threads.add(Thread.currentThread().id)
        changed.signalAll()
    }

    override fun onChange(event: ChangeEvent) = record(changes, event)
    override fun onPeerConnected(peer: PeerIdentity) = record(connected, peer)
    override fun onPeerDisconnected(peer: PeerIdentity) = record(disconnected, peer)
    override fun onChangeRefused(refused: RefusedChange) = record(this.refused, refused)

    fun waitFor(what: String, predicate: (Recorder) -> Boolean) = lock.withLock {
        val deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(TIMEOUT_MS)
        while (!predicate(this)) {
            val left = deadline - System.nanoTime()
            check(left > 0) {
                "timed out waiting for $what: changes=$changes connected=$connected refused=$refused"
            }
            changed.awaitNanos(left)
        }
    }
}

/** An app type, with a hand-written codec (kotlinx-serialization's runtime is not on npm). */
data class Order(val status: String, val placedAt: Long, val total: Long)

val ORDER = JsonCodec(
    decode = { json ->
        fun field(name: String) = Regex("\"$name\"\\s*:\\s*(\"([^\"]*)\"|-?\\d+)").find(json)
            ?: error("no $name in $json")
        Order(
            status = field("status").groupValues[2],
            placedAt = field("placedAt").groupValues[1].toLong(),
            total = field("total").groupValues[1].toLong(),
        )
    },
    encode = { o -> """{"status": "${o.status}", "placedAt": ${o.placedAt}, "total": ${o.total}}""" },
)

class Scenario(private val dir: Path) {
    val ca = FleetCa.generate("test-fleet")
    private val nodes = mutableListOf<Outpost>()

    fun open(
        peer: String,
        role: String,
        peers: List<String> = emptyList(),
        expectRole: String? = null,
        ticketPrefix: String? = null,
    ): Outpost {
        val config = NodeConfig(
            dataDir = dir.resolve(peer).toString(),
            certificate = ca.issue(SITE, peer, role),
            role = expectRole,
            listen = "127.0.0.1:0",
            peers = peers,
            ticketPrefix = ticketPrefix,
        )
        return Outpost.openBlocking(config).also { nodes.add(it) }
    }

    fun shutdownAll() = nodes.forEach { it.shutdownBlocking(); it.close() }

    fun writeOnOneNodeSeenOnTheOther() {
        // Subscribe before the link comes up, so that the connection is seen too.
        val kiosk = open("kiosk-1", "kiosk", expectRole = "kiosk")
        val events = Recorder()
        val subscription = kiosk.subscribe(events, doc = "menu")
        val pos = open("pos-1", "pos", peers = listOf(kiosk.localAddress()!!))
        events.waitFor("pos-1 connected") { r -> r.connected.any { it.peer == "pos-1" } }
        check(events.connected.first() == PeerIdentity(site = SITE, peer = "pos-1", role = "pos"))

        pos.putBlocking("menu", "/items/burger", """{"name": "Burger", "price": 950}""")
        events.waitFor("the menu change from pos-1") { r ->
            r.changes.any { it.origin == ChangeOrigin.Remote(peer = "pos-1") }
        }
        check(kiosk.getIntBlocking("menu", "/items/burger/price") == 950L)
        check(kiosk.getStringBlocking("menu", "/items/burger/name") == "Burger")
        check("/items/burger" in events.changes.first().paths) { events.changes.first().paths }
        check(Thread.currentThread().id !in events.threads) { "callback ran on the caller's thread" }

        // The kiosk takes an order and sells a burger; the pos sees both.
        val posEvents = Recorder()
        // Kept: a subscription ends when its handle is closed or collected.
        val posSubscription = pos.subscribe(posEvents)
        pos.incrementBlocking("stock", "/burger", 20)
        runBlocking { check(kiosk.waitForPeer("pos-1", 5_000u)) }
        waitUntil("stock on the kiosk") { runCatching { kiosk.getIntBlocking("stock", "/burger") }.getOrNull() == 20L }
        // Orders as the README lays them out: one per key under /orders of the day.
        val day = "orders/2026-12-01"
        kiosk.transactBlocking(
            day,
            listOf(
                TxOp.Put(path = "/orders/K1-001", json = """{"status": "new"}"""),
                TxOp.Push(path = "/orders/K1-001/items", json = """{"sku": "burger", "qty": 1}"""),
            ),
        )
        // The sale is retried (say, after an error): its write id makes it count once.
        val sale = listOf(TxOp.Increment(path = "/burger", delta = -1))
        check(kiosk.transactOnceBlocking("stock", "sale/K1-001/burger", sale))
        check(!kiosk.transactOnceBlocking("stock", "sale/K1-001/burger", sale))
        posEvents.waitFor("the kiosk's order and sale") { r ->
            r.changes.count { it.origin == ChangeOrigin.Remote(peer = "kiosk-1") } >= 2
        }
        waitUntil("stock on the pos") { pos.getIntBlocking("stock", "/burger") == 19L }
        check(pos.getStringBlocking(day, "/orders/K1-001/status") == "new")

        // The kitchen printer's durable feed: every order not yet acknowledged, once per batch
        // (one item per order: the policy says the items of `orders` are `/orders/*`).
        val printer = pos.feed("kitchen-1/printer", doc = day)
        val tickets = printer.nextBlocking(5_000u) ?: error("no batch for the printer")
        check(tickets.doc == day && tickets.items == listOf("/orders/K1-001")) { tickets }
        printer.ackBlocking(tickets)
        check(printer.nextBlocking(50u) == null)

        val status = pos.statusBlocking()
        check(status.online && status.connectedPeers.map { it.peer } == listOf("kiosk-1")) { status }

        subscription.cancel()
        check(subscription.isCancelled())
        posSubscription.close()
        waitUntil("the subscriptions' tasks to end") { pos.liveTasks() == 0u && kiosk.liveTasks() == 0u }
    }

    fun streamsTypedValuesAndQueries() = runBlocking {
        val kiosk = open("kiosk-5", "kiosk")
        val pos = open("pos-5", "pos", peers = listOf(kiosk.localAddress()!!))
        val day = "orders/2026-12-01"

        // A live order, typed: null before the document exists, then each new value.
        val order = Channel<Order?>(Channel.UNLIMITED)
        val watching = launch(Dispatchers.IO) { kiosk.watchValue(day, "/orders/K5-001", ORDER).collect { order.send(it) } }
        check(withTimeout(TIMEOUT_MS) { order.receive() } == null) { "an unsynced document reads as null" }
        check(kiosk.read(day, "/orders/K5-001", ORDER) == null)
        kiosk.write(day, "/orders/K5-001", Order(status = "new", placedAt = 30, total = 950), ORDER)
        check(withTimeout(TIMEOUT_MS) { order.receive() } == Order("new", 30, 950))
        check(kiosk.read(day, "/orders/K5-001", ORDER) == Order("new", 30, 950))
        // Cancelling the collector ends the watch in Rust.
        check(kiosk.liveTasks() == 1u) { "${kiosk.liveTasks()} tasks" }
        watching.cancelAndJoin()
        withTimeout(TIMEOUT_MS) { while (kiosk.liveTasks() != 0u) delay(10) }

        // Today's new orders, sorted by time, as a list that updates itself.
        val newOrders = Query(
            collection = "/orders",
            filters = listOf(QueryFilter(path = "/status", equalsJson = "\"new\"")),
            sortBy = "/placedAt",
            limit = 10u,
        )
        val lists = Channel<List<Order>>(Channel.CONFLATED)
        val querying = launch(Dispatchers.IO) { kiosk.queryFlow(day, newOrders, ORDER).collect { lists.send(it) } }
        suspend fun awaitList(what: String, want: List<Long>) = withTimeout(TIMEOUT_MS) {
            var got = lists.receive()
            while (got.map { it.placedAt } != want) got = lists.receive()
            got
        }
        awaitList("the first order", listOf(30))
        kiosk.write(day, "/orders/K5-002", Order("new", 10, 450), ORDER)
        kiosk.write(day, "/orders/K5-003", Order("done", 20, 700), ORDER)
        awaitList("two new orders, sorted", listOf(10, 30))
        kiosk.putStringBlocking(day, "/orders/K5-001/status", "done")
        awaitList("one left", listOf(10))
        querying.cancelAndJoin()

        // Status and peers as flows instead of polling; durations and times as such.
        val online = withTimeout(TIMEOUT_MS) { kiosk.statusFlow().first { it.online } }
        check(online.connectedPeers.map { it.peer } == listOf("pos-5")) { online }
        val peers = withTimeout(TIMEOUT_MS) { pos.peersFlow().first { it.isNotEmpty() } }
        check(peers.map { it.peer } == listOf("kiosk-5")) { peers }
        check(kiosk.waitForPeer("pos-5", 5.seconds))
        val scope = CoroutineScope(Dispatchers.IO)
        val state = kiosk.statusState(scope)
        withTimeout(TIMEOUT_MS) { state.first { it.online } }
        withTimeout(TIMEOUT_MS) {
            state.first { s -> s.peers.any { p -> p.documents.any { it.lastSync != null } } }
        }
        scope.cancel()
        withTimeout(TIMEOUT_MS) { while (kiosk.liveTasks() != 0u || pos.liveTasks() != 0u) delay(10) }

        // The device key never shows in toString(), nor in a config that carries it.
        val cert = ca.issue(SITE, "kiosk-6", "kiosk")
        check("PRIVATE KEY" !in cert.toString() && "kiosk-6" in cert.toString()) { cert.toString() }
        val config = NodeConfig(dataDir = "/tmp/x", certificate = cert)
        check("PRIVATE KEY" !in config.toString()) { config.toString() }
        check("PRIVATE KEY" in cert.keyPem()) { "keyPem() is the explicit way to the key" }
        check(DeviceCertificate.fromPem(cert.certPem(), cert.keyPem(), cert.caPem()).identity().peer == "kiosk-6")
    }

    fun aSubscriptionCapturingTheNodeIsCollected() {
        val kiosk = open("kiosk-7", "kiosk")
        // The listener captures the node, as app code often does; only the handle is dropped.
        fun subscribeAndForget() {
            kiosk.subscribe(object : NodeListener {
                override fun onChange(event: ChangeEvent) { kiosk.documentsBlocking() }
                override fun onPeerConnected(peer: PeerIdentity) {}
                override fun onPeerDisconnected(peer: PeerIdentity) {}
                override fun onChangeRefused(refused: RefusedChange) {}
            })
        }
        subscribeAndForget()
        check(kiosk.liveTasks() == 1u)
        waitUntil("the garbage collector to end the forgotten subscription") {
            System.gc()
            kiosk.liveTasks() == 0u
        }
    }

    fun anOrderAndItsStockAreOneSuspendTransaction() {
        val kiosk = open("kiosk-4", "kiosk", ticketPrefix = "K4")
        val day = "orders/2026-12-02"
        // One thread for the caller and a ticker: a call that blocked its thread would starve
        // the ticker for as long as the writes take.
        val ui = java.util.concurrent.Executors.newSingleThreadExecutor { r -> Thread(r, "ui") }
        val dispatcher = ui.asCoroutineDispatcher()
        try {
            runBlocking(dispatcher) {
                kiosk.incrementBlocking(day, "/stock/burger", 50)
                var ticks = 0
                val ticker = launch { while (true) { ticks++; delay(1) } }
                val started = System.nanoTime()
                val tickets = (1..20).map {
                    kiosk.transactWithTicket(day, listOf(
                        TxOp.Put(path = "/orders/{ticket}", json = """{"ticket": "{ticket}", "status": "new", "total": 950}"""),
                        TxOp.Increment(path = "/stock/burger", delta = -1),
                    ))
                }
                val ms = (System.nanoTime() - started) / 1_000_000
                ticker.cancelAndJoin()
                println("20 suspend transactWithTicket calls: $ms ms, the caller's thread ticked $ticks times meanwhile")
                check(tickets.first() == "K4-001" && tickets.last() == "K4-020") { tickets }
                check(ticks > 0) { "the caller's thread never ran while 20 durable writes took $ms ms" }
                check(kiosk.getInt(day, "/stock/burger") == 30L)
                // All or nothing: an op that fails (a counter on a string) leaves no order and no
                // decrement behind, and the exception says which path.
                kiosk.putString(day, "/stock/fries", "n/a")
                val e = runCatching {
                    kiosk.transactWithTicket(day, listOf(
                        TxOp.Put(path = "/orders/{ticket}", json = """{"status": "new"}"""),
                        TxOp.Increment(path = "/stock/burger", delta = -1),
                        TxOp.Increment(path = "/stock/fries", delta = -1),
                    ))
                }.exceptionOrNull()
                check(e is OutpostException.WrongType) { "expected WrongType, got $e" }
                check(kiosk.getInt(day, "/stock/burger") == 30L)
                check(kiosk.get(day, "/orders/K4-021") == null)
                check(kiosk.transactOnce(day, "sale-1", listOf(TxOp.Increment(path = "/sold", delta = 1))))
                check(!kiosk.transactOnce(day, "sale-1", listOf(TxOp.Increment(path = "/sold", delta = 1))))
                kiosk.push(day, "/log", "\"opened\"")
                kiosk.delete(day, "/log")
                check(kiosk.conflicts(day, "/sold").single().json == "1")
                check(day in kiosk.documents()) { kiosk.documents() }
            }
        } finally {
            dispatcher.close()
        }
    }

    /** Exhaustive over the sealed class: the compiler fails this file if a case is missing. */
    fun describe(e: NodeEvent): String = when (e) {
        is NodeEvent.PeerConnected -> "connected ${e.peer.peer}"
        is NodeEvent.PeerDisconnected -> "disconnected ${e.peer.peer}"
        is NodeEvent.ChangeRefused -> "refused ${e.refused.doc}: ${e.refused.reason}"
        is NodeEvent.ConnectionRefused -> "connection of ${e.peer.peer} refused: ${e.reason}"
        is NodeEvent.Revoked -> "revoked ${e.peer}: ${e.reason}"
        is NodeEvent.InSync -> "in sync with ${e.peer} on ${e.doc}"
        is NodeEvent.RemoteChange -> "${e.changes} changes to ${e.doc} from ${e.peer}"
        is NodeEvent.ProtocolError -> "protocol error from ${e.peer}: ${e.message}"
        is NodeEvent.StorageFailed -> "storage failed: ${e.error}"
        is NodeEvent.Lagged -> "missed ${e.skipped}"
    }

    fun eventsAreTypedAndStatusIsPushed() {
        val pos = open("pos-5", "pos")
        val kiosk = open("kiosk-5", "kiosk")
        runBlocking {
            withTimeout(TIMEOUT_MS) {
                val events = Channel<NodeEvent>(Channel.UNLIMITED)
                val statuses = Channel<SyncStatus>(Channel.CONFLATED)
                val collectors = CoroutineScope(Dispatchers.Default)
                collectors.launch { kiosk.eventFlow().collect { events.send(it) } }
                collectors.launch { kiosk.statusFlow().collect { statuses.send(it) } }
                suspend fun awaitEvent(what: String, p: (NodeEvent) -> Boolean): NodeEvent {
                    while (true) {
                        val e = events.receive()
                        println("  event: ${describe(e)}")
                        if (p(e)) return e
                    }
                }
                suspend fun awaitStatus(p: (SyncStatus) -> Boolean): SyncStatus {
                    while (true) {
                        val s = statuses.receive()
                        if (p(s)) return s
                    }
                }
                // Not synced yet is not "empty": awaitDocument says which.
                check(!kiosk.awaitDocument("menu", 200.milliseconds)) { "the menu exists before any sync" }
                delay(100) // the collectors subscribed
                kiosk.addPeer(pos.localAddress()!!)
                awaitEvent("pos-5 connected") { it is NodeEvent.PeerConnected && it.peer.peer == "pos-5" }
                pos.put("menu", "/items/burger/price", "950")
                check(kiosk.awaitDocument("menu", 10.seconds)) { "the menu never arrived" }
                awaitEvent("in sync on the menu") { it is NodeEvent.InSync && it.doc == "menu" && it.peer == "pos-5" }

                // The badge follows a write and its acknowledgement without a poll.
                val written = System.nanoTime()
                kiosk.put("orders", "/o-9", """{"status": "new"}""")
                awaitStatus { s ->
                    s.online && s.unsyncedChanges == 0uL &&
                        s.peers.any { p -> p.documents.any { it.doc == "orders" && it.lastSyncMs != null } }
                }
                println("  status showed the order synced ${(System.nanoTime() - written) / 1_000_000} ms after the write")

                // A revocation reaches the app as a typed event.
                check(kiosk.revoke(ca.revoke(SITE, "kiosk-9", "stolen")))
                val revoked = awaitEvent("the revocation") { it is NodeEvent.Revoked } as NodeEvent.Revoked
                check(revoked.peer == "kiosk-9" && revoked.reason == "stolen") { revoked }
                collectors.cancel()
            }
        }
        waitUntil("the stream and watch tasks to end") { kiosk.liveTasks() == 0u }
    }

    fun pauseResumeAndReopenAtOnce() {
        val pos = open("pos-6", "pos")
        val config = NodeConfig(
            dataDir = dir.resolve("kiosk-6").toString(),
            certificate = ca.issue(SITE, "kiosk-6", "kiosk"),
            listen = "127.0.0.1:0",
            peers = listOf(pos.localAddress()!!),
        )
        runBlocking {
            withTimeout(TIMEOUT_MS) {
                var kiosk = Outpost.open(config)
                val port = kiosk.localAddress()!!
                kiosk.statusFlow().first { it.online }
                kiosk.onBackground()
                check(kiosk.isPaused() && !kiosk.status().online) { "links up after pause" }
                kiosk.put("orders", "/o-1", """{"status": "new"}""") // the store is kept
                val resumed = System.nanoTime()
                kiosk.onForeground()
                while (runCatching { pos.get("orders", "/o-1/status") }.getOrNull() != "\"new\"") {
                    delay(10)
                }
                println("  resumed: the order written in the background reached the pos in ${(System.nanoTime() - resumed) / 1_000_000} ms")
                // shutdownAndClose returns with the port and the directory released: reopen at once.
                kiosk.shutdownAndClose()
                kiosk = Outpost.open(config.copy(listen = port))
                check(kiosk.localAddress() == port)
                check(kiosk.get("orders", "/o-1/status") == "\"new\"")
                kiosk.shutdownAndClose()
            }
        }
    }

    fun errorsCarryTheirContext() {
        val kiosk = open("kiosk-7", "kiosk")
        runBlocking {
            kiosk.putString("orders", "/o-1/status", "new")
            val wrong = runCatching { kiosk.increment("orders", "/o-1/status", 1) }.exceptionOrNull()
            check(wrong is OutpostException.WrongType && wrong.doc == "orders" && wrong.path == "/o-1/status" && !wrong.retryable) { "$wrong" }
            val unknown = runCatching { kiosk.getInt("stock", "/burger") }.exceptionOrNull()
            check(unknown is OutpostException.UnknownDocument && unknown.doc == "stock" && unknown.retryable) { "$unknown" }
            val refused = runCatching { kiosk.putInt("menu", "/items/burger/price", 1) }.exceptionOrNull()
            check(refused is OutpostException.NotPermitted && refused.doc == "menu" && "kiosk" in refused.reason) { "$refused" }
            // A codec failure is the library's error, naming where.
            kiosk.put("orders", "/o-2", """{"status": "new"}""")
            val decoded = runCatching { kiosk.read("orders", "/o-2", ORDER) }.exceptionOrNull()
            check(decoded is OutpostException.InvalidJson && decoded.doc == "orders" && decoded.path == "/o-2") { "$decoded" }
        }
    }

    /** The kiosk app's first lines of bindings/README.md (package dev.outpost.readme), run. */
    fun theReadmeKioskRuns() {
        val pos = open("pos-8", "pos")
        val kiosk = open("kiosk-8", "kiosk", peers = listOf(pos.localAddress()!!), ticketPrefix = "K1")
        val menuCodec = JsonCodec(
            decode = { json ->
                MenuItem(
                    name = Regex("\"name\"\\s*:\\s*\"([^\"]*)\"").find(json)!!.groupValues[1],
                    price = Regex("\"price\"\\s*:\\s*(\\d+)").find(json)!!.groupValues[1].toLong(),
                )
            },
            encode = { m: MenuItem -> """{"name": "${m.name}", "price": ${m.price}}""" },
        )
        val scope = CoroutineScope(Dispatchers.Default)
        runBlocking {
            withTimeout(TIMEOUT_MS) {
                pos.put("menu", "/items", """{"fries": {"name": "Fries", "price": 350}, "burger": {"name": "Burger", "price": 950}}""")
                val screen = KioskScreen(kiosk, scope, menuCodec)
                val menu = screen.menu.first { it.size == 2 }
                check(menu.map { it.name } == listOf("Burger", "Fries")) { menu }
                val day = "2026-12-03"
                check(screen.order(day, "burger", 2, 1900) == "K1-001")
                while (runCatching { pos.getInt("orders/$day", "/stock/burger") }.getOrNull() != -2L) delay(10)
                check(pos.getString("orders/$day", "/orders/K1-001/status") == "new")
                screen.badge.first { it == "synced" }
                check(kiosk.revoke(ca.revoke(SITE, "kiosk-9", "stolen")))
                val alerts = screen.alerts.first { a -> a.any { "kiosk-9 revoked" in it } }
                println("  README kiosk: menu $menu, badge ${screen.badge.value}, alerts $alerts")
            }
        }
        scope.cancel()
        waitUntil("the README kiosk's collectors to end") { kiosk.liveTasks() == 0u }
    }

    fun liveQueriesHaveKeysDiffsTypedFiltersAndSurviveBadItems() {
        val kiosk = open("kiosk-10", "kiosk")
        val day = "orders/2026-12-04"
        runBlocking {
            withTimeout(TIMEOUT_MS) {
                kiosk.put(day, "/orders", """{
                    "K1-001": {"status": "new", "placedAt": 1, "total": 500, "customer": {"table": 2}},
                    "K1-002": {"status": "cooking", "placedAt": 2, "total": 1500, "customer": {"table": 2}},
                    "K1-003": {"status": "new", "placedAt": 3, "total": 2500, "customer": {"table": 5}}
                }""")
                val query = Query(
                    collection = "/orders",
                    conditions = listOf(
                        where("/status") isIn listOf("new", "cooking"),
                        where("/total") atLeast 1000,
                        where("/customer/table") eq 2,
                    ),
                    sortBy = "/placedAt",
                )
                val updates = Channel<QueryUpdate<Order>>(Channel.UNLIMITED)
                val scope = CoroutineScope(Dispatchers.Default)
                scope.launch { kiosk.queryUpdates(day, query, ORDER).collect { updates.send(it) } }
                val first = updates.receive()
                check(first.rows.map { it.key } == listOf("K1-002") && first.diff.initial) { first }
                // A new match placed later: one inserted position, nothing removed.
                kiosk.put(day, "/orders/K1-004", """{"status": "new", "placedAt": 4, "total": 1200, "customer": {"table": 2}}""")
                val second = updates.receive()
                check(second.rows.map { it.key } == listOf("K1-002", "K1-004")) { second }
                check(second.diff.inserted == listOf(1u) && second.diff.removed.isEmpty() && second.diff.changed.isEmpty()) { second.diff }
                // A change in place.
                kiosk.putString(day, "/orders/K1-002/status", "new")
                val third = updates.receive()
                check(third.diff.changed == listOf(0u) && third.rows[0].value!!.status == "new") { third.diff }
                // An item the codec cannot read (no placedAt) is a row with an error; the stream goes on.
                kiosk.put(day, "/orders/K1-005", """{"status": "new", "total": 3000, "customer": {"table": 2}}""")
                val fourth = updates.receive()
                val bad = fourth.rows.single { it.key == "K1-005" }
                check(bad.value == null && bad.error is OutpostException.InvalidJson) { bad }
                kiosk.putString(day, "/orders/K1-004/status", "done")
                val fifth = updates.receive()
                check(fifth.rows.map { it.key } == listOf("K1-002", "K1-005") && fifth.diff.removed == listOf(1u)) { fifth }
                // The top N: a limit keeps the first after sorting.
                val top = kiosk.queryUpdates(day, query.copy(conditions = emptyList(), sortBy = "/total", descending = true, limit = 2u), ORDER).first()
                check(top.rows.map { it.key } == listOf("K1-005", "K1-003") && top.total == 5L) { top }
                scope.cancel()
            }
        }
        waitUntil("the query tasks to end") { kiosk.liveTasks() == 0u }
    }

    fun ticketsComeWithTheOrder() {
        val kiosk = open("kiosk-3", "kiosk", ticketPrefix = "K3")
        val order = listOf(
            TxOp.Put(path = "/orders/{ticket}", json = """{"ticket": "{ticket}", "total": 950}"""),
        )
        check(kiosk.transactWithTicketBlocking("orders/2026-12-01", order) == "K3-001")
        check(kiosk.transactWithTicketBlocking("orders/2026-12-01", order) == "K3-002")
        check(kiosk.getStringBlocking("orders/2026-12-01", "/orders/K3-002/ticket") == "K3-002")
        expect<OutpostException.NotPermitted>("a kiosk marking an order paid") {
            kiosk.putBlocking("orders/2026-12-01", "/orders/K3-001/payment", """{"amount": 950}""")
        }
    }

    fun badInputRaisesTheRightException() {
        val kiosk = open("kiosk-2", "kiosk")
        expect<OutpostException.InvalidPath>("a path without /") { kiosk.putBlocking("orders", "o-1", "1") }
        expect<OutpostException.InvalidJson>("bad JSON") { kiosk.putBlocking("orders", "/o-1", "{nope") }
        expect<OutpostException.InvalidName>("a bad document name") { kiosk.putBlocking("Orders!", "/o-1", "1") }
        val e = expect<OutpostException.NotPermitted>("a kiosk writing the menu") {
            kiosk.putIntBlocking("menu", "/items/burger/price", 1)
        }
        check("kiosk" in e.message!!) { e.message!! }
        kiosk.putStringBlocking("orders", "/o-1/status", "new")
        expect<OutpostException.WrongType>("incrementing a string") { kiosk.incrementBlocking("orders", "/o-1/status", 1) }
        expect<OutpostException.UnknownDocument>("an unknown document") { kiosk.getBlocking("stock", "/burger") }
        expect<OutpostException.InvalidConfig>("a pos certificate in a kiosk app") {
            open("pos-9", "pos", expectRole = "kiosk")
        }
        kiosk.shutdownBlocking()
        expect<OutpostException.ShutDown>("a call after shutdown") { kiosk.getBlocking("orders", "/o-1") }
    }
}

inline fun <reified E : OutpostException> expect(what: String, block: () -> Unit): E {
    try {
        block()
    } catch (e: OutpostException) {
        check(e is E) { "$what: expected ${E::class.simpleName}, got $e" }
        return e
    }
    error("$what: expected ${E::class.simpleName}, nothing was thrown")
}

fun waitUntil(what: String, predicate: () -> Boolean) {
    val deadline = System.currentTimeMillis() + TIMEOUT_MS
    while (!predicate()) {
        check(System.currentTimeMillis() < deadline) { "timed out waiting for $what" }
        Thread.sleep(20)
    }
}

fun main() {
    val dir = Files.createTempDirectory("outpost-kotlin-test")
    val tests = listOf<Pair<String, Scenario.() -> Unit>>(
        "write on one node, seen on the other" to { writeOnOneNodeSeenOnTheOther() },
        "bad input raises the right exception" to { badInputRaisesTheRightException() },
        "tickets come with the order" to { ticketsComeWithTheOrder() },
        "an order and its stock are one suspend transaction" to { anOrderAndItsStockAreOneSuspendTransaction() },
        "events are typed and status is pushed" to { eventsAreTypedAndStatusIsPushed() },
        "pause, resume and reopen at once" to { pauseResumeAndReopenAtOnce() },
        "errors carry their context" to { errorsCarryTheirContext() },
        "the README's kiosk runs" to { theReadmeKioskRuns() },
        "live queries have keys, diffs, typed filters and survive bad items" to { liveQueriesHaveKeysDiffsTypedFiltersAndSurviveBadItems() },
        "streams, typed values and live queries" to { streamsTypedValuesAndQueries() },
        "a subscription capturing the node is collected" to { aSubscriptionCapturingTheNodeIsCollected() },
    )
    var passed = 0
    var failed = 0
    for ((name, test) in tests) {
        val scenario = Scenario(dir.resolve("t$passed$failed"))
        try {
            scenario.test()
            passed++
            println("ok: $name")
        } catch (e: Throwable) {
            failed++
            println("FAILED: $name")
            e.printStackTrace()
        } finally {
            scenario.shutdownAll()
        }
    }
    dir.toFile().deleteRecursively()
    println("kotlin: $passed passed, $failed failed")
    if (failed > 0) kotlin.system.exitProcess(1)
}
