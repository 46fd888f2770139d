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

/**
 * Decodes [json] with [codec]; a failure of the codec (any exception) becomes
 * [OutpostException.InvalidJson] naming [doc] and [path], so apps catch one error type.
 */
fun <T> decodeOrThrow(codec: JsonCodec<T>, json: String, doc: String?, path: String?): T =
    try {
        codec.decode(json)
    } catch (e: OutpostException) {
        throw e
    } catch (e: Exception) {
        throw OutpostException.InvalidJson(
            "cannot decode the value at ${path ?: "?"} of ${doc ?: "?"} with the app's codec: ${e.message ?: e}",
            doc, path, null, false,
        ).also { it.initCause(e) }
    }

/** Encodes [value] with [codec]; a failure becomes [OutpostException.InvalidJson] naming [doc] and [path]. */
fun <T> encodeOrThrow(codec: JsonCodec<T>, value: T, doc: String?, path: String?): String =
    try {
        codec.encode(value)
    } catch (e: OutpostException) {
        throw e
    } catch (e: Exception) {
        throw OutpostException.InvalidJson(
            "cannot encode the value for ${path ?: "?"} of ${doc ?: "?"} with the app's codec: ${e.message ?: e}",
            doc, path, null, false,
        ).also { it.initCause(e) }
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
    watchJson(doc, path).map { json -> json?.let { decodeOrThrow(codec, it, doc, path) } }

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

/**
 * Every event of the node from now on as a sealed class ([NodeEvent.PeerConnected],
 * [NodeEvent.ChangeRefused], [NodeEvent.Revoked], [NodeEvent.ConnectionRefused],
 * [NodeEvent.InSync], [NodeEvent.ProtocolError], [NodeEvent.StorageFailed], ...), in order and
 * not conflated: a `when` over it is exhaustive. Cancelling the collector ends the stream in Rust.
 */
fun Outpost.eventFlow(): Flow<NodeEvent> =
    flow {
        events().use { s ->
            while (true) {
                emit(s.next() ?: break)
            }
        }
    }

/**
 * Waits until document [name] exists here (written here or synced from a peer), at most
 * [timeout]: `true` once it does (reads then tell "empty" by `null`), `false` if it has not
 * synced yet.
 */
suspend fun Outpost.awaitDocument(name: String, timeout: Duration): Boolean =
    awaitDocument(name, timeout.inWholeMilliseconds.coerceIn(0, UInt.MAX_VALUE.toLong()).toUInt())

/** The status of a node with no link, e.g. a `StateFlow`'s initial value. */
val OFFLINE: SyncStatus = SyncStatus(online = false, connectedPeers = emptyList(), unsyncedChanges = 0uL, peers = emptyList())

/** One item of a live query: its [key] in the collection and its [value], or the [error] decoding it. */
data class Row<T>(val key: String, val value: T?, val error: OutpostException?)

/**
 * A live query's result: the [rows] (sorted and limited as the query says), how many items match
 * ([total], before the limit), and the [diff] from the previous update of the same flow
 * (`removed` positions in the previous rows, `inserted` and `changed` positions in these; for a
 * RecyclerView's `notifyItemRangeRemoved/Inserted/Changed` or a `DiffUtil`-free adapter).
 */
data class QueryUpdate<T>(val rows: List<Row<T>>, val total: Long, val diff: QueryDiff)

/**
 * The rows of [query] over [doc] now, then each time the result changes, with keys and diffs.
 * Evaluated in Rust from the changed paths only; an item that [codec] cannot decode is a [Row]
 * with an [OutpostException.InvalidJson] error and the stream goes on. Only changed items are
 * decoded again. Not conflated here (each diff follows the previous one); Rust conflates for a
 * slow collector and the diff then spans the skipped results.
 */
fun <T> Outpost.queryUpdates(doc: String, query: Query, codec: JsonCodec<T>): Flow<QueryUpdate<T>> =
    flow {
        watchQuery(doc, query).use { w ->
            var decoded = HashMap<String, Pair<String, Row<T>>>()
            while (true) {
                val result = w.next() ?: break
                val next = HashMap<String, Pair<String, Row<T>>>(result.items.size * 2)
                val rows = result.items.map { item ->
                    val kept = decoded[item.key]
                    val row = if (kept != null && kept.first == item.json) {
                        kept.second
                    } else {
                        val path = "${query.collection}/${item.key}"
                        try {
                            Row(item.key, decodeOrThrow(codec, item.json, doc, path), null)
                        } catch (e: OutpostException) {
                            Row<T>(item.key, null, e)
                        }
                    }
                    next[item.key] = item.json to row
                    row
                }
                decoded = next
                emit(QueryUpdate(rows, result.total.toLong(), result.diff))
            }
        }
    }

/**
 * The items of [query] over [doc], decoded with [codec], now and each time the result changes
 * (conflated). Items the codec cannot decode are left out (see [queryUpdates] for them, with keys
 * and diffs); the flow does not end because of one.
 */
fun <T> Outpost.queryFlow(doc: String, query: Query, codec: JsonCodec<T>): Flow<List<T>> =
    queryUpdates(doc, query, codec).map { u -> u.rows.mapNotNull { it.value } }.conflate()

/** JSON text of a filter value: a string, number, boolean or `null`. */
fun jsonOf(value: Any?): String = when (value) {
    null -> "null"
    is String -> buildString {
        append('"')
        for (c in value) {
            when {
                c == '"' -> append("\\\"")
                c == '\\' -> append("\\\\")
                c < ' ' -> append("\\u%04x".format(c.code))
                else -> append(c)
            }
        }
        append('"')
    }
    is Boolean, is Int, is Long, is Short, is Byte -> value.toString()
    is Number -> value.toDouble().also { require(it.isFinite()) { "not a finite number: $value" } }.toString()
    else -> throw IllegalArgumentException("a filter value is a String, Number, Boolean or null, not ${value::class}")
}

/** Typed query conditions: `where("/status") eq "new"`, `where("/total") atLeast 1000`, `where("/customer/table") isIn listOf(1, 2)`. */
class Where(private val path: String) {
    infix fun eq(value: Any?): Filter = Filter.Equals(path, jsonOf(value))
    infix fun ne(value: Any?): Filter = Filter.NotEquals(path, jsonOf(value))
    infix fun isIn(values: Collection<Any?>): Filter = Filter.In(path, values.map(::jsonOf))
    infix fun atLeast(value: Any): Filter = Filter.Range(path, jsonOf(value), null, false, false)
    infix fun greaterThan(value: Any): Filter = Filter.Range(path, jsonOf(value), null, true, false)
    infix fun atMost(value: Any): Filter = Filter.Range(path, null, jsonOf(value), false, false)
    infix fun lessThan(value: Any): Filter = Filter.Range(path, null, jsonOf(value), false, true)
    fun between(min: Any, max: Any): Filter = Filter.Range(path, jsonOf(min), jsonOf(max), false, false)
    fun exists(): Filter = Filter.Exists(path)
}

/** A condition on the item's field at [path] (a JSON Pointer inside the item, e.g. `/customer/table`). */
fun where(path: String) = Where(path)

/** The value at [path] of [doc] decoded with [codec]; `null` if the document has not synced here yet. */
suspend fun <T> Outpost.read(doc: String, path: String = "", codec: JsonCodec<T>): T? =
    try {
        get(doc, path)?.let { decodeOrThrow(codec, it, doc, path) }
    } catch (e: OutpostException.UnknownDocument) {
        null
    }

/** Writes [value] at [path] of [doc], encoded with [codec]; returns once stored (flushed with durable writes). */
suspend fun <T> Outpost.write(doc: String, path: String, value: T, codec: JsonCodec<T>) =
    put(doc, path, encodeOrThrow(codec, value, doc, path))

/** `readBlocking`: [read] on the calling thread (not on a UI thread). */
fun <T> Outpost.readBlocking(doc: String, path: String = "", codec: JsonCodec<T>): T? =
    try {
        getBlocking(doc, path)?.let { decodeOrThrow(codec, it, doc, path) }
    } catch (e: OutpostException.UnknownDocument) {
        null
    }

/**
 * Call when the app goes to the background (Android: `ProcessLifecycleOwner`'s `ON_STOP`; SwiftUI:
 * `scenePhase == .background`): the links close, the store stays open. Returns once they are closed.
 */
suspend fun Outpost.onBackground() = pause()

/**
 * Call when the app comes to the foreground (`ON_START`, `scenePhase == .active`): back on the
 * network, and every peer dialed now rather than after its backoff.
 */
fun Outpost.onForeground() {
    resume()
    reconnectNow()
}

/**
 * Shuts the node down and frees the handle; when it returns the data directory and the port are
 * released, so a new node may open them at once. Use it instead of `close()` alone, which frees
 * the handle and shuts down on a thread of its own, after it returns.
 */
suspend fun Outpost.shutdownAndClose() {
    try {
        shutdown()
    } finally {
        close()
    }
}

/** Waits until device [peer] is connected, at most [timeout]. */
suspend fun Outpost.waitForPeer(peer: String, timeout: Duration): Boolean =
    waitForPeer(peer, timeout.inWholeMilliseconds.coerceIn(0, UInt.MAX_VALUE.toLong()).toUInt())

/** When both sides last had the same state. */
val DocumentSyncStatus.lastSync: Instant? get() = lastSyncMs?.let { Instant.ofEpochMilli(it.toLong()) }

/** Since when the peer has lacked some changes. */
val DocumentSyncStatus.unsyncedSince: Instant? get() = unsyncedSinceMs?.let { Instant.ofEpochMilli(it.toLong()) }
