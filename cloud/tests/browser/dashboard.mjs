// Opens the fleet dashboard of a running outpost-cloud in Debian's chromium (headless) and
// checks what a person sees. Driven by cloud/tests/dashboard.rs:
//
//   node dashboard.mjs URL TOKEN SCREENSHOT.png
//
// 1. enters the token, waits for the sites `lyon` and `paris` (online) and for `nice` under
//    "Went quiet";
// 2. opens `paris`: no order yet today, 20 burgers in stock;
// 3. prints "WAITING <today>" and waits for the order `p-live`, which the Rust test writes on
//    the paris device at that moment: it must appear without reloading the page;
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
  await page.goto(url + "/dashboard");
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Open the dashboard" }).click();

  const sites = page.getByTestId("sites");
  const row = (site) => sites.locator(`tr[data-site="${site}"]`);
  await row("paris").getByText("online").waitFor({ timeout: 30000 });
  await row("lyon").getByText("online").waitFor({ timeout: 30000 });
  await row("nice").getByText("quiet").waitFor({ timeout: 30000 });
  const quiet = await page.getByTestId("quiet").innerText();
  if (!quiet.includes("nice")) throw new Error(`"Went quiet" shows ${JSON.stringify(quiet)}, not nice`);
  const parisRow = await row("paris").innerText();
  if (!/\b1 \/ 1\b/.test(parisRow)) throw new Error(`paris should show 1 / 1 devices: ${parisRow}`);

  await row("paris").click();
  const orders = page.getByTestId("orders");
  await orders.getByText("no orders").waitFor({ timeout: 30000 });
  await page.getByTestId("stock").locator('tr[data-item="burger"]').getByText("20").waitFor({ timeout: 30000 });

  const today = await page.locator("#day").inputValue();
  console.log(`WAITING ${today}`);
  await orders.locator('tr[data-order="p-live"]').getByText("1250").waitFor({ timeout: 60000 });
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
