// Manual check of the heartbeat (not part of the suite: it takes ~50 s).
import { io } from "socket.io-client";
import WebSocket from "ws";
const [base, token] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const results = {};
for (const transports of [["websocket"], ["polling"], ["polling", "websocket"]]) {
  const s = io(base, { auth: { token }, reconnection: false, transports });
  let pings = 0;
  s.io.on("ping", () => pings++);
  s.on("disconnect", (r) => (results[transports.join("+") + "_disconnect"] = r));
  results[transports.join("+")] = () => ({ pings, connected: s.connected, transport: s.io.engine?.transport?.name });
}
// A raw client that never answers pings.
const ws = new WebSocket(base.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket");
const raw = { msgs: [], closedAt: null };
const t0 = Date.now();
ws.on("open", () => ws.send(`40${JSON.stringify({ token })}`));
ws.on("message", (m) => raw.msgs.push(String(m).slice(0, 20)));
ws.on("close", () => (raw.closedAt = (Date.now() - t0) / 1000));
await sleep(50000);
for (const [k, v] of Object.entries(results)) console.log(k, typeof v === "function" ? JSON.stringify(v()) : v);
console.log("raw", JSON.stringify(raw));
process.exit(0);
