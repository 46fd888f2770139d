// The kitchen display: the day's orders live from the device that serves this page, over
// automerge-repo's WebSocket protocol, and a bump button that writes the kitchen status
// (`/orders/<id>/kitchen`, what the `kds` role may write).
//
// Open it as /kds/#token=TOKEN[&day=YYYY-MM-DD] with a token from
// `outpost token issue --role kds --name kitchen-screen-1`. The token rides in the fragment,
// which never reaches a server or a log; the page takes it and clears the address bar. It
// then asks the device for the id of `orders/<day>` (GET /v1/documents) and follows it.
// Everything it loads (this bundle, Automerge's wasm) comes from the device: it works with
// no internet.
import { Repo, initializeWasm, Automerge, cbor } from "@automerge/automerge-repo/slim";
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.hash.slice(1));
const token = params.get("token") || "";
const screen = params.get("name") || "kitchen-screen";
history.replaceState(null, "", location.pathname + location.search);

const localDay = () => {
  const d = new Date();
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
};
const day = params.get("day") || localDay();
$("day").textContent = day;

// Refusals the device sends (a write refused, a document this token may not read) and those
// of the listing: shown on the screen, most recent last.
const refusals = [];
const refuse = (text) => {
  refusals.push(text);
  const box = $("refusal");
  box.textContent = refusals.slice(-3).join("\n");
  box.classList.add("shown");
};
const status = (state, text) => {
  $("status").dataset.state = state;
  $("status").textContent = text;
};

// The reference adapter only logs the server's `error` messages; the screen shows them.
class Adapter extends WebSocketClientAdapter {
  receiveMessage(bytes) {
    try {
      const m = cbor.decode(new Uint8Array(bytes));
      if (m && m.type === "error") refuse(`refused by the device: ${m.message}`);
    } catch (_) {
      // The adapter itself reports what it cannot decode.
    }
    return super.receiveMessage(bytes);
  }
}

const NEXT = { new: "in_progress", in_progress: "ready" };
const LABEL = { new: "Start", in_progress: "Ready" };

function render(handle) {
  const doc = handle.doc() || {};
  const orders = Object.entries(doc.orders || {}).sort(([a], [b]) => a.localeCompare(b));
  $("empty").style.display = orders.length ? "none" : "block";
  const list = $("orders");
  list.replaceChildren(
    ...orders.map(([id, order]) => {
      const state = order.kitchen?.state || "new";
      const li = document.createElement("li");
      li.dataset.order = id;
      li.dataset.state = state;
      const items = Array.isArray(order.items) ? order.items.join(", ") : "";
      li.innerHTML = `<div class="id"></div><div class="items"></div><div class="total"></div><div class="state" data-testid="state"></div>`;
      li.querySelector(".id").textContent = id;
      li.querySelector(".items").textContent = items;
      li.querySelector(".total").textContent = order.total != null ? `total ${order.total}` : "";
      li.querySelector(".state").textContent = state.replace("_", " ");
      if (NEXT[state]) {
        const b = document.createElement("button");
        b.textContent = LABEL[state];
        b.dataset.testid = "bump";
        b.addEventListener("click", () => bump(handle, id, NEXT[state]));
        li.append(b);
      }
      return li;
    }),
  );
}

function bump(handle, id, next) {
  handle.change((d) => {
    const order = d.orders?.[id];
    if (!order) return;
    const at = new Date().toISOString();
    if (order.kitchen) {
      order.kitchen.state = next;
      order.kitchen.at = at;
      order.kitchen.by = screen;
    } else {
      order.kitchen = { state: next, at, by: screen };
    }
  });
}

async function main() {
  if (!token) {
    refuse("no token: open this page as /kds/#token=… with a token from `outpost token issue --role kds`");
    status("offline", "no token");
    return;
  }
  await initializeWasm(fetch(new URL("automerge.wasm", location.href)));
  const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/?token=${encodeURIComponent(token)}`;
  const adapter = new Adapter(wsUrl, 1000);
  adapter.on("peer-candidate", () => status("live", "live"));
  adapter.on("peer-disconnected", () => status("offline", "offline: reconnecting…"));
  const repo = new Repo({ network: [adapter] });
  window.outpost = { repo, Automerge, day };

  const name = `orders/${day}`;
  const reply = await fetch(`/v1/documents?name=${encodeURIComponent(name)}`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  const body = await reply.text();
  if (!reply.ok) {
    refuse(`refused by the device (${reply.status}): ${body}`);
    window.outpost.ready = "refused";
    return;
  }
  // `?name=` answers that one document: {name, documentId, url, exists}.
  const listed = JSON.parse(body);
  if (!listed?.url) {
    refuse(`the device lists no ${name}`);
    return;
  }
  window.outpost.url = listed.url;
  // The day's document may not exist on the device yet (no order taken): ask again.
  for (;;) {
    try {
      const handle = await repo.find(listed.url);
      window.outpost.handle = handle;
      handle.on("change", () => render(handle));
      render(handle);
      window.outpost.ready = "live";
      return;
    } catch (e) {
      $("empty").textContent = `no orders yet today (${e.message})`;
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}

main().catch((e) => refuse(`the display failed: ${e.message || e}`));
