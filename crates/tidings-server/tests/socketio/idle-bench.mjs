// Load tool (not a test): holds N idle Socket.IO websocket connections open and reports the
// server's resident memory per connection, then publishes once to a circle and times the event
// on every connection. Usage (see README, "Live connections"):
//   node idle-bench.mjs BASE_URL TOKENS_FILE N SERVER_PID CIRCLE
import { io } from "socket.io-client";
import { readFileSync } from "node:fs";

const [base, tokensFile, countArg, pidArg, circle] = process.argv.slice(2);
if (!base || !tokensFile || !countArg || !pidArg) {
  console.error("usage: node idle-bench.mjs BASE_URL TOKENS_FILE N SERVER_PID [CIRCLE]");
  process.exit(2);
}
if (!/^http:\/\/(127\.|localhost)/.test(base)) {
  console.error("loopback targets only");
  process.exit(2);
}
const count = Math.min(Number(countArg), 100000);
const tokens = readFileSync(tokensFile, "utf8")
  .split("\n")
  .map((l) => l.split(/\s+/)[1])
  .filter(Boolean);
const rssKiB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pidArg}/status`, "utf8"))[1]);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const before = rssKiB();
const sockets = [];
let ready = 0;
let failed = 0;
const arrivals = [];
let publishedAt = 0;
for (let i = 0; i < count; i += 500) {
  const batch = [];
  for (let j = i; j < Math.min(i + 500, count); j++) {
    const socket = io(base, {
      auth: { token: tokens[j % tokens.length] },
      transports: ["websocket"],
      reconnection: false,
      forceNew: true,
    });
    socket.on("entry", () => arrivals.push(performance.now() - publishedAt));
    sockets.push(socket);
    batch.push(
      new Promise((resolve) => {
        socket.once("ready", () => { ready++; resolve(); });
        socket.once("connect_error", () => { failed++; resolve(); });
      }),
    );
  }
  await Promise.all(batch);
}
await sleep(3000);
const idle = rssKiB();
const perConnection = ((idle - before) * 1024) / ready;
console.log(JSON.stringify({ connections: ready, failed, server_rss_before_kib: before, server_rss_idle_kib: idle, bytes_per_connection: Math.round(perConnection) }));

if (circle) {
  publishedAt = performance.now();
  const res = await fetch(`${base}/api/v1/outbox`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${tokens[0]}` },
    body: JSON.stringify({ type: "Create", object: { type: "Note", content: "socket.io fan-out" }, to: [`circle:${circle}`] }),
  });
  const deadline = performance.now() + 10000;
  while (arrivals.length < ready && performance.now() < deadline) await sleep(5);
  arrivals.sort((a, b) => a - b);
  const q = (p) => arrivals[Math.min(arrivals.length - 1, Math.floor(p * arrivals.length))]?.toFixed(1);
  console.log(JSON.stringify({ publish_status: res.status, received: arrivals.length, p50_ms: q(0.5), p99_ms: q(0.99), max_ms: q(1) }));
}
for (const s of sockets) s.disconnect();
process.exit(0);
