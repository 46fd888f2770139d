// A kitchen display as a Node program: the reference automerge-repo client with its WebSocket
// adapter, against `outpost serve --ws-listen` (ws/tests/node_interop.rs drives it). It prints
// one JSON line per step; the Rust test answers by writing on the POS or restarting the server.
import { Repo } from "@automerge/automerge-repo";
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket";

const [url, docUrl] = process.argv.slice(2);
const say = (o) => console.log(JSON.stringify(o));
// A short retry interval, so the reconnect in the test takes a fraction of a second.
const adapter = new WebSocketClientAdapter(url, 200);
const repo = new Repo({ network: [adapter] });
const timer = setTimeout(() => { say({ error: "timed out" }); process.exit(2); }, 60000);

const handle = await repo.find(docUrl);
const until = (pred) =>
  new Promise((resolve) => {
    const check = () => {
      const d = handle.doc();
      if (d && pred(d)) {
        handle.off("change", check);
        resolve(d);
      }
    };
    handle.on("change", check);
    check();
  });

let d = await until((d) => d.orders?.["P1-001"]);
say({ seen: "P1-001", total: d.orders["P1-001"].total });
handle.change((d) => { d.orders["P1-001"].kitchen = { state: "in_progress" }; });
say({ bumped: "P1-001" });

await until((d) => d.orders?.["P1-002"]);
say({ seen: "P1-002" });

// The server goes away: the bump is made offline, and sent once the client is back.
await new Promise((resolve) => adapter.once("peer-disconnected", resolve));
handle.change((d) => { d.orders["P1-002"].kitchen = { state: "ready" }; });
say({ offline_bump: "P1-002" });

await until((d) => d.orders?.["P1-003"]);
say({ seen: "P1-003", resumed: true });
clearTimeout(timer);
await repo.shutdown();
process.exit(0);
