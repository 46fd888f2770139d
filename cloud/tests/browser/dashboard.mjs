// Opens the fleet dashboard of a running outpost-cloud in Debian's chromium (headless) and
// checks what a person sees. Driven by cloud/tests/dashboard.rs:
//
//   node dashboard.mjs URL TOKEN SCREENSHOT.png
//
// 1. opens /dashboard#token=TOKEN (the fragment never reaches the server; the page takes it
//    and removes it from the address bar), waits for the sites `lyon` and `paris` (online)
//    and for `nice` under "Went quiet"; paris counts 2 / 2 devices up (the kiosk talks only
//    to the POS) and 1 revoked;
// 2. opens `paris`: the revoked kitchen device marked revoked, no order yet today, 20
//    burgers in stock;
// 3. prints "WAITING <today>" and waits for the order `K1-live` (stored at /orders/K1-live,
//    the README's layout), which the Rust test writes on the paris POS at that moment: it
//    must appear as its own row without reloading the page;
// 4. saves a screenshot and exits 0. Any failure exits 1 with the reason on stderr.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, token, screenshot] = process.argv.slice(2);
if (!url || !token || !screenshot) {
  console.error("usage: node dashboard.mjs URL TOKEN SCREENSHOT.png");
  process.exit(2);
}

const profile = mkdtempSync(join(tmpdir(), "outpost-chromium-"));
// A fresh profile (--user-data-dir) each run, given the way playwright takes it.
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 720 },
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
  ],
});
let failed = false;
const page = await browser.newPage();
try {
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  // The page must not reach anything but this cloud.
  page.on("request", (r) => {
    if (!r.url().startsWith(url)) errors.push("request outside the cloud: " + r.url());
  });
  const sent = [];
  page.on("request", (r) => sent.push(r.url()));
  await page.goto(url + "/dashboard#token=" + encodeURIComponent(token));

  const sites = page.getByTestId("sites");
  const row = (site) => sites.locator(`tr[data-site="${site}"]`);
  await row("paris").getByText("online").waitFor({ timeout: 30000 });
  await row("lyon").getByText("online").waitFor({ timeout: 30000 });
  await row("nice").getByText("quiet").waitFor({ timeout: 30000 });
  const quiet = await page.getByTestId("quiet").innerText();
  if (!quiet.includes("nice")) throw new Error(`"Went quiet" shows ${JSON.stringify(quiet)}, not nice`);
  const parisRow = await row("paris").innerText();
  if (!/\b2 \/ 2 \(1 revoked\)/.test(parisRow)) throw new Error(`paris should show 2 / 2 devices (1 revoked): ${parisRow}`);
  if (page.url().includes(token)) throw new Error(`the token stayed in the address bar: ${page.url()}`);
  if (sent.some((u) => u.includes(token))) throw new Error("the token was sent in a URL");

  await row("paris").click();
  const orders = page.getByTestId("orders");
  await orders.getByText("no orders").waitFor({ timeout: 30000 });
  await page.getByTestId("devices").locator('tr[data-device="kitchen-1"]').getByText("revoked").waitFor({ timeout: 30000 });
  await page.getByTestId("devices").locator('tr[data-device="kiosk-1"]').getByText("up").waitFor({ timeout: 30000 });
  await page.getByTestId("stock").locator('tr[data-item="burger"]').getByText("20").waitFor({ timeout: 30000 });

  const today = await page.locator("#day").inputValue();
  console.log(`WAITING ${today}`);
  await orders.locator('tr[data-order="K1-live"]').getByText("1250").waitFor({ timeout: 60000 });
  const rows = await orders.locator("tr").count();
  if (rows !== 1) throw new Error(`one row per order, got ${rows}`);
  console.log("LIVE ORDER SEEN");
  if (errors.length) throw new Error("page errors: " + errors.join("; "));
} catch (e) {
  failed = true;
  console.error("dashboard check failed:", e.message);
} finally {
  await page.screenshot({ path: screenshot, fullPage: true }).catch((e) => console.error("no screenshot:", e.message));
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
