// The JavaScript side of cloud/tests/interop.rs, using the @automerge/automerge package.
//
//   node interop.mjs dump FILE   load Automerge bytes, print {"value": ..., "heads": [...]}
//   node interop.mjs make FILE   build a document, save it to FILE, print the same shape
//
// Values are printed as plain JSON: counters as their totals, text and strings as strings.
import * as A from "@automerge/automerge";
import { readFileSync, writeFileSync } from "node:fs";

function plain(doc) {
  return JSON.parse(
    JSON.stringify(A.toJS(doc), (_key, v) =>
      v instanceof A.ImmutableString || v instanceof A.RawString ? v.toString() : v,
    ),
  );
}

function report(doc) {
  process.stdout.write(JSON.stringify({ value: plain(doc), heads: A.getHeads(doc) }));
}

const [command, file] = process.argv.slice(2);
if (command === "dump" && file) {
  report(A.load(new Uint8Array(readFileSync(file))));
} else if (command === "make" && file) {
  let doc = A.from({
    items: {
      tea: { name: "Thé vert", price: 350, available: true, tags: ["hot", "drink"] },
      "a/b": { note: null, ratio: 0.25 },
    },
    sold: new A.Counter(12),
  });
  doc = A.change(doc, (d) => {
    d.sold.increment(-2);
    d.items.tea.price = 360;
  });
  writeFileSync(file, A.save(doc));
  report(doc);
} else {
  process.stderr.write("usage: node interop.mjs dump|make FILE\n");
  process.exit(2);
}
