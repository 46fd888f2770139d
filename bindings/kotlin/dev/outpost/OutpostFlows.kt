// Hand-written Kotlin layer over the generated bindings (bindings/generated/kotlin/dev/outpost/outpost.kt):
// Flows for live values, status and queries, typed access through a JsonCodec, Duration and
// Instant instead of milliseconds. Ship it next to the generated file (the AAR does).
package dev.outpost

import java.time.Instant
import kotlin.time.Duration
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.SharingStarted
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.conflate
import kotlinx.coroutines.flow.distinctUntilChanged
import kotlinx.coroutines.flow.flow
import kotlinx.coroutines.flow.map
import kotlinx.coroutines.flow.stateIn

/**
 * Turns the JSON text that crosses the FFI into an app type and back. With
 * kotlinx.serialization: `jsonCodec(Order.serializer())` (see bindings/README.md); Moshi or
 * Gson adapters fit the same way.
 */
interface JsonCodec<T> {
    fun decode(json: String): T
    fun encode(value: T): String
}

/** A codec from two functions. */
fun <T> JsonCodec(decode: (String) -> T, encode: (T) -> String): JsonCodec<T> =
    object : JsonCodec<T> {
        override fun decode(json: String): T = decode(json)
        override fun encode(value: T): String = encode(value)
    }

/**
 * The JSON at [path] of [doc] now, then each time it changes; `null` while the document has not
 * synced here (or nothing is at the path). Conflated: a slow collector gets the latest value.
 * Cancelling the collector ends the watch in Rust (its handle is closed).
 */
fun Outpost.watchJson(doc: String, path: String = ""): Flow<String?> =
    flow {
        watch(doc, path).use { w ->
            while (true) {
                val snapshot = w.next() ?: break
                emit(snapshot.json)
            }
        }
    }.conflate()

/** [watchJson] decoded with [codec]. */
fun <T> Outpost.watchValue(doc: String, path: String = "", codec: JsonCodec<T>): Flow<T?> =
    watchJson(doc, path).map { json -> json?.let(codec::decode) }

/** The sync status now, then each time it changes (instead of polling `status()`). */
fun Outpost.statusFlow(): Flow<SyncStatus> =
    flow {
        watchStatus().use { w ->
            while (true) {
                emit(w.next() ?: break)
            }
        }
    }.conflate()

/** [statusFlow] as a `StateFlow` in [scope], watched while someone collects it. */
fun Outpost.statusState(scope: CoroutineScope, initial: SyncStatus = OFFLINE): StateFlow<SyncStatus> =
    statusFlow().stateIn(scope, SharingStarted.WhileSubscribed(5_000), initial)

/** The connected peers now, then each time one connects or disconnects. */
fun Outpost.peersFlow(): Flow<List<PeerIdentity>> =
    statusFlow().map { it.connectedPeers }.distinctUntilChanged()

/** The status of a node with no link, e.g. a `StateFlow`'s initial value. */
val OFFLINE: SyncStatus = SyncStatus(online = false, connectedPeers = emptyList(), unsyncedChanges = 0uL, peers = emptyList())

/**
 * The items of [query] over [doc], decoded with [codec], now and each time the result changes.
 * Evaluated in Rust from the changed paths only; the list is sorted and limited as the query says.
 */
fun <T> Outpost.queryFlow(doc: String, query: Query, codec: JsonCodec<T>): Flow<List<T>> =
    flow {
        watchQuery(doc, query).use { w ->
            while (true) {
                val result = w.next() ?: break
                emit(result.items.map { codec.decode(it.json) })
            }
        }
    }.conflate()

/** The value at [path] of [doc] decoded with [codec]; `null` if the document has not synced here yet. */
suspend fun <T> Outpost.read(doc: String, path: String = "", codec: JsonCodec<T>): T? =
    try {
        get(doc, path)?.let(codec::decode)
    } catch (e: OutpostException.UnknownDocument) {
        null
    }

/** Writes [value] at [path] of [doc], encoded with [codec]; returns once stored (flushed with durable writes). */
suspend fun <T> Outpost.write(doc: String, path: String, value: T, codec: JsonCodec<T>) =
    put(doc, path, codec.encode(value))

/** `readBlocking`: [read] on the calling thread (not on a UI thread). */
fun <T> Outpost.readBlocking(doc: String, path: String = "", codec: JsonCodec<T>): T? =
    try {
        getBlocking(doc, path)?.let(codec::decode)
    } catch (e: OutpostException.UnknownDocument) {
        null
    }

/** Waits until device [peer] is connected, at most [timeout]. */
suspend fun Outpost.waitForPeer(peer: String, timeout: Duration): Boolean =
    waitForPeer(peer, timeout.inWholeMilliseconds.coerceIn(0, UInt.MAX_VALUE.toLong()).toUInt())

/** When both sides last had the same state. */
val DocumentSyncStatus.lastSync: Instant? get() = lastSyncMs?.let { Instant.ofEpochMilli(it.toLong()) }

/** Since when the peer has lacked some changes. */
val DocumentSyncStatus.unsyncedSince: Instant? get() = unsyncedSinceMs?.let { Instant.ofEpochMilli(it.toLong()) }
