// A self-service kiosk on outpost, in Kotlin (Android or JVM): shows the menu, takes an
// order, counts stock, and shows an "offline / N unsynced" badge. Copy what you need.
//
// Run with a provisioned certificate directory (cert.pem, key.pem, ca.pem) and the POS
// address:   Kiosk <cert-dir> <data-dir> <pos-ip:port>
// or with no arguments for a demo: a throwaway fleet, with a POS on loopback.
package dev.outpost.examples

import dev.outpost.ChangeEvent
import dev.outpost.FleetCa
import dev.outpost.NodeConfig
import dev.outpost.NodeListener
import dev.outpost.Outpost
import dev.outpost.OutpostException
import dev.outpost.PeerIdentity
import dev.outpost.RefusedChange
import dev.outpost.TxOp
import dev.outpost.loadDeviceCertificate
import java.nio.file.Files
import kotlinx.coroutines.runBlocking

/** Called on outpost's listener thread; on Android, post to the main thread before touching views. */
class KioskListener(private val node: () -> Outpost) : NodeListener {
    override fun onChange(event: ChangeEvent) {
        if (event.doc == "menu") println("menu changed: burger now ${node().getIntBlocking("menu", "/items/burger/price")}")
    }
    override fun onPeerConnected(peer: PeerIdentity) = println("online: ${peer.peer} (${peer.role})")
    override fun onPeerDisconnected(peer: PeerIdentity) = println("lost ${peer.peer}")
    override fun onChangeRefused(refused: RefusedChange) = println("refused: ${refused.reason}")
}

fun main(args: Array<String>) {
    val demo = args.isEmpty()
    val ca = if (demo) FleetCa.generate("demo") else null
    val dataDir = args.getOrNull(1) ?: Files.createTempDirectory("kiosk").toString()
    // The demo's POS, which owns the menu. A real kiosk dials the counter POS instead.
    val pos = ca?.let {
        Outpost.openBlocking(NodeConfig(dataDir = "$dataDir/pos", certificate = it.issue("demo-site", "pos-1", "pos"), listen = "127.0.0.1:0"))
    }
    pos?.putBlocking("menu", "/items/burger", """{"name": "Burger", "price": 950, "available": true}""")

    lateinit var node: Outpost
    node = Outpost.openBlocking(NodeConfig(
        dataDir = "$dataDir/kiosk",
        certificate = ca?.issue("demo-site", "kiosk-1", "kiosk") ?: loadDeviceCertificate(args[0]),
        role = "kiosk",
        listen = if (demo) "127.0.0.1:0" else "0.0.0.0:7733",
        peers = listOf(pos?.localAddress() ?: args[2]),
    ))
    val subscription = node.subscribe(KioskListener { node }, doc = "menu")
    runBlocking { node.waitForPeer("pos-1", 5_000u) }

    // An order is one change, keyed by an id that no other device can pick, in the day's
    // partition under /orders (the README's layout: one item per order in every feed).
    val orderId = "kiosk-1-${System.currentTimeMillis()}"
    val day = "orders/${java.time.LocalDate.now(java.time.ZoneOffset.UTC)}"
    node.transactBlocking(day, listOf(
        TxOp.Put(path = "/orders/$orderId", json = """{"status": "new", "items": []}"""),
        TxOp.Push(path = "/orders/$orderId/items", json = """{"sku": "burger", "qty": 1}"""),
    ))
    // Stock is a counter: two kiosks selling the last burger offline both count.
    node.incrementBlocking("stock", "/burger", -1)

    try {
        node.putIntBlocking("menu", "/items/burger/price", 1)
    } catch (e: OutpostException.NotPermitted) {
        println("kiosks do not edit the menu: ${e.reason}")
    }

    val status = node.statusBlocking()
    println(if (status.online) "badge: online, ${status.unsyncedChanges} unsynced" else "badge: offline, ${status.unsyncedChanges} unsynced")

    subscription.cancel()
    runBlocking { node.shutdown(); pos?.shutdown() }
    node.close()
    pos?.close()
}
