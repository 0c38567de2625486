// A correct sender on nodemailer: a ledger file in the state dir records
// each recipient after its 250, a Message-ID is fixed per recipient so a
// re-send after doubt is the same message, 4xx and lost connections are
// retried, 5xx bounces. The pooled transport keeps its connection open
// between messages, so a message whose 250 the process may not have read
// when it died is still in flight at the server: in doubt, as it should be.
import { appendFileSync, readFileSync, existsSync } from "node:fs";
import { createHash } from "node:crypto";
import nodemailer from "nodemailer";

const env = process.env;
const [host, port] = env.ONECOPY_SMTP_ADDR.split(":");
const ledger = `${env.ONECOPY_STATE_DIR}/node-ledger.log`;
const done = new Set(existsSync(ledger) ? readFileSync(ledger, "utf8").split("\n").filter(Boolean) : []);
const list = readFileSync(env.ONECOPY_RECIPIENTS, "utf8").split("\n").map((l) => l.trim()).filter(Boolean);
const transport = nodemailer.createTransport({ host, port: Number(port), secure: false, ignoreTLS: true, pool: true, maxConnections: 1 });

let stopping = false;
process.on("SIGTERM", () => { stopping = true; }); // finish the message in hand, then stop

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const seen = new Set();
for (const to of list) {
  const key = to.toLowerCase();
  if (done.has(key) || seen.has(key)) continue;
  seen.add(key);
  if (stopping) break;
  const id = createHash("sha256").update(`${env.ONECOPY_CAMPAIGN}\0${key}`).digest("hex").slice(0, 32);
  for (let tries = 0; ; tries++) {
    try {
      await transport.sendMail({ from: "newsletter@example.com", to, subject: "Our news", text: "Hello!\n", messageId: `<${id}@node-ledger.example>` });
      appendFileSync(ledger, key + "\n"); // recorded after the 250
      break;
    } catch (err) {
      if (err.responseCode >= 500 && err.responseCode !== 521) {
        appendFileSync(ledger, key + "\n"); // bounced for good
        console.error(`bounced ${to}: ${err.response}`);
        break;
      }
      await sleep(Math.min(20 * 2 ** tries, 1000)); // 4xx, or a lost connection: the same message again
    }
  }
}
transport.close();
if (stopping) {
  console.error("interrupted: rerun to continue");
  process.exit(1);
}
