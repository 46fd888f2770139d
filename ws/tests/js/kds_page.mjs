// The kitchen display page (served by `outpost serve --ws-listen` at /kds/) in Debian's
// chromium, headless, driven by playwright-core. ws/tests/kds_browser.rs runs it:
//
//   node kds_page.mjs KDS_BASE KDS_TOKEN GUEST_BASE GUEST_TOKEN DAY SCREENSHOT_DIR
//
// 1. opens KDS_BASE/kds/#token=KDS_TOKEN&day=DAY (the kitchen's device), waits for the order P1-001 (written on the POS
//    before), prints "WAITING" and waits for P1-002, which the Rust test writes on the POS
//    then: it must appear without a reload ("SEEN P1-002 <ms>");
// 2. bumps P1-002 (the button writes /orders/P1-002/kitchen) and prints "BUMPED P1-002";
// 3. opens GUEST_BASE/kds/ (the POS) with a guest's token: the device refuses the day's orders (shown on the
//    page); then, as a tampered page would, pushes an order of its own into the day's
//    document through the page's repo: the device refuses it, and the page shows why
//    ("GUEST REFUSED <text>");
// 4. saves kds.png and kds-guest.png in SCREENSHOT_DIR and exits 0; a failure exits 1 with
//    the reason on stderr. The pages must load nothing from anywhere but the device.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [base, kdsToken, guestBase, guestToken, day, shots] = process.argv.slice(2);
if (!shots) {
  console.error("usage: node kds_page.mjs KDS_BASE KDS_TOKEN GUEST_BASE GUEST_TOKEN DAY SCREENSHOT_DIR");
  process.exit(2);
}
const T = 30000;
const profile = mkdtempSync(join(tmpdir(), "outpost-kds-chromium-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1024, height: 600 },
  // A managed screen trusts the fleet CA; this throwaway profile does not have it (the CA
  // chain itself is checked by the wss test of ws/tests/wss.rs).
  ignoreHTTPSErrors: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
  ],
});
const errors = [];
const watch = (page, what, origin) => {
  page.on("pageerror", (e) => errors.push(`${what}: ${e.message}`));
  page.on("request", (r) => {
    if (!r.url().startsWith(origin)) errors.push(`${what}: a request outside the device: ${r.url()}`);
  });
};
let failed = false;
const kds = await browser.newPage();
let guest;
try {
  watch(kds, "kds", base);
  await kds.goto(`${base}/kds/#token=${encodeURIComponent(kdsToken)}&day=${day}&name=kitchen-screen-1`);
  const order = (page, id) => page.locator(`li[data-order="${id}"]`);
  await order(kds, "P1-001").waitFor({ timeout: T });
  if (kds.url().includes(kdsToken)) throw new Error(`the token stayed in the address bar: ${kds.url()}`);
  console.log("SEEN P1-001");
  const asked = Date.now();
  console.log("WAITING");
  await order(kds, "P1-002").getByText("total 400").waitFor({ timeout: T });
  console.log(`SEEN P1-002 ${Date.now() - asked}`);
  await order(kds, "P1-002").getByRole("button", { name: "Start" }).click();
  await kds.locator('li[data-order="P1-002"][data-state="in_progress"]').waitFor({ timeout: T });
  console.log("BUMPED P1-002");
  const docUrl = await kds.evaluate(() => window.outpost.url);

  guest = await browser.newPage();
  watch(guest, "guest", guestBase);
  await guest.goto(`${guestBase}/kds/#token=${encodeURIComponent(guestToken)}&day=${day}&name=guest-7`);
  const refusal = guest.getByTestId("refusal");
  await refusal.getByText("403").waitFor({ timeout: T });
  await guest.waitForFunction(() => window.outpost?.ready === "refused", null, { timeout: T });
  // A tampered page: an order of its own pushed into the day's document.
  await guest.evaluate((url) => {
    const { repo, Automerge } = window.outpost;
    const doc = Automerge.from({ orders: { "G-666": { items: ["free burger"], total: 0 } } });
    repo.import(Automerge.save(doc), { docId: url.replace("automerge:", "") });
  }, docUrl);
  await refusal.getByText("may not read or write").waitFor({ timeout: T });
  console.log(`GUEST REFUSED ${JSON.stringify(await refusal.innerText())}`);
  if (await guest.locator("li[data-order]").count()) throw new Error("the guest page shows orders");
  if (await kds.getByTestId("refusal").isVisible()) {
    throw new Error(`the kitchen screen shows a refusal: ${await kds.getByTestId("refusal").innerText()}`);
  }
  if (errors.length) throw new Error("page errors: " + errors.join("; "));
} catch (e) {
  failed = true;
  console.error("kds page check failed:", e.message);
} finally {
  await kds.screenshot({ path: join(shots, "kds.png"), fullPage: true }).catch((e) => console.error("no screenshot:", e.message));
  if (guest) await guest.screenshot({ path: join(shots, "kds-guest.png"), fullPage: true }).catch(() => {});
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
