// Drives the stock socket.io-client against a running Tidings server and asserts what a
// client sees. Run by ../push.rs with the server's base URL: `node scenarios.mjs http://...`.
// Exits non-zero with a message on the first failed expectation.
import { io } from "socket.io-client";
import assert from "node:assert/strict";

const base = process.argv[2];
if (!base) {
  console.error("usage: node scenarios.mjs BASE_URL");
  process.exit(2);
}
const api = `${base}/api/v1`;
const run = Math.random().toString(36).slice(2, 8);

async function call(method, path, token, body) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(api + path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

let users = 0;
async function user(name) {
  const username = `${name}${run}${++users}`;
  let r = await call("POST", "/users", null, { username, password: "correct horse" });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  r = await call("POST", "/sessions", null, { username, password: "correct horse" });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return { name: username, token: r.body.token };
}

async function note(who, content, to, tags = []) {
  const r = await call("POST", "/outbox?wait=routed", who.token, {
    type: "Create",
    object: { type: "Note", content },
    to,
    tag: tags,
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body;
}

// A connected client that records everything it receives.
function connect(auth, opts = {}) {
  const socket = io(base, { auth, reconnection: false, transports: opts.transports ?? ["websocket"] });
  const log = { entries: [], counts: [], ready: null, closed: null, resume: null, disconnect: null, error: null };
  socket.on("ready", (d) => (log.ready = d));
  socket.on("counts", (d) => log.counts.push(d));
  socket.on("entry", (d) => log.entries.push(d));
  socket.on("closed", (d) => (log.closed = d));
  socket.on("resume", (d) => (log.resume = d));
  socket.on("disconnect", (reason) => (log.disconnect = reason));
  socket.on("connect_error", (e) => (log.error = e.message));
  return { socket, log };
}

async function until(what, check, ms = 5000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`timed out waiting for ${what}`);
}

const contents = (log) => log.entries.map((e) => e.activity.object.content);

const scenarios = {
  async "live entries arrive with the REST item shape, over websocket and polling"() {
    const ana = await user("ana");
    for (const transports of [["websocket"], ["polling"]]) {
      const c = connect({ token: ana.token }, { transports });
      await until("ready", () => c.log.ready);
      const posted = await note(ana, `hello ${transports[0]}`, ["public"]);
      await until("entry", () => c.log.entries.length === 1);
      const page = await call("GET", "/inbox?limit=1", ana.token);
      assert.deepEqual(c.log.entries[0], page.body.items[0]);
      assert.equal(c.log.entries[0].activity.id, posted.id);
      c.socket.disconnect();
    }
  },

  async "filters in the handshake and changed live"() {
    const ana = await user("ana");
    const bob = await user("bob");
    const circle = `eng${run}`;
    let r = await call("POST", "/circles", ana.token, { name: circle, description: "eng", visibility: "public", join_policy: "open" });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    r = await call("PUT", `/circles/${circle}/members/${bob.name}`, bob.token);
    assert.ok(r.status < 300, JSON.stringify(r.body));
    const c = connect({ token: bob.token, tags: ["release"] });
    await until("ready", () => c.log.ready);
    await note(ana, "chatter", [`circle:${circle}`]);
    await note(ana, "v1 shipped", [`circle:${circle}`], ["release"]);
    await until("release entry", () => c.log.entries.length === 1);
    assert.deepEqual(contents(c.log), ["v1 shipped"]);
    // Change the filter on the same channel: now only untagged chatter is wanted... by kind.
    const ack = await c.socket.timeout(5000).emitWithAck("filter", { tags: "" , kind: "major" });
    assert.deepEqual(ack, { ok: true });
    await note(ana, "more chatter", [`circle:${circle}`]);
    await until("chatter entry", () => c.log.entries.length === 2);
    assert.deepEqual(contents(c.log), ["v1 shipped", "more chatter"]);
    const bad = await c.socket.timeout(5000).emitWithAck("filter", { kind: "loud" });
    assert.equal(bad.error.code, "invalid_filter");
    c.socket.disconnect();
  },

  async "reconnect with the last cursor: nothing lost, nothing twice"() {
    const ana = await user("ana");
    const first = connect({ token: ana.token });
    await until("ready", () => first.log.ready);
    for (let i = 0; i < 3; i++) await note(ana, `before ${i}`, ["public"]);
    await until("3 entries", () => first.log.entries.length === 3);
    const last = first.log.entries.at(-1).cursor;
    first.socket.disconnect();
    for (let i = 0; i < 5; i++) await note(ana, `while away ${i}`, ["public"]);
    const second = connect({ token: ana.token, after: last });
    await until("backlog", () => second.log.entries.length === 5);
    await note(ana, "after", ["public"]);
    await until("live after backlog", () => second.log.entries.length === 6);
    assert.deepEqual(contents(second.log), [0, 1, 2, 3, 4].map((i) => `while away ${i}`).concat(["after"]));
    // A client that saw nothing resumes from the ready cursor.
    const quiet = connect({ token: ana.token });
    await until("ready", () => quiet.log.ready);
    const start = quiet.log.ready.cursor;
    quiet.socket.disconnect();
    await note(ana, "missed by the quiet one", ["public"]);
    const back = connect({ token: ana.token, after: start });
    await until("missed entry", () => back.log.entries.length === 1);
    assert.deepEqual(contents(back.log), ["missed by the quiet one"]);
    second.socket.disconnect();
    back.socket.disconnect();
  },

  async "unseen and unread counts are pushed when they change"() {
    const ana = await user("ana");
    const bob = await user("bob");
    const post = await note(bob, "my photo", ["public"]);
    const c = connect({ token: bob.token, counts: ["notifications"] });
    await until("first counts", () => c.log.counts.length === 1);
    assert.deepEqual(c.log.counts[0], { notifications: { unseen: 0, unread: 0 } });
    let r = await call("POST", `/activities/${encodeURIComponent(post.id)}/like`, ana.token, {});
    assert.equal(r.status, 201, JSON.stringify(r.body));
    await until("counts after a like", () => c.log.counts.length === 2);
    assert.deepEqual(c.log.counts[1], { notifications: { unseen: 1, unread: 1 } });
    r = await call("POST", "/feeds/notifications/read", bob.token, {});
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await until("counts after read", () => c.log.counts.length === 3);
    assert.deepEqual(c.log.counts[2], { notifications: { unseen: 0, unread: 0 } });
    // Without `auth.counts` no counts arrive.
    const plain = connect({ token: bob.token });
    await until("ready", () => plain.log.ready);
    await call("POST", `/activities/${encodeURIComponent(post.id)}/share`, ana.token, {});
    await until("counts after a share", () => c.log.counts.length === 4);
    assert.deepEqual(plain.log.counts, []);
    const bad = connect({ token: bob.token, counts: "nope" });
    await until("refusal", () => bad.log.error);
    assert.match(bad.log.error, /unknown_feed/);
    c.socket.disconnect();
    plain.socket.disconnect();
  },

  async "bad handshakes are refused with a reason"() {
    for (const [auth, expected] of [
      [{}, "unauthenticated"],
      [{ token: "tdg_nope" }, "unauthenticated"],
      [{ token: (await user("eve")).token, after: "not-a-cursor" }, "invalid_cursor"],
      [{ token: (await user("eve")).token, kind: "loud" }, "invalid_filter"],
    ]) {
      const c = connect(auth);
      await until(`connect_error ${expected}`, () => c.log.error);
      assert.ok(c.log.error.startsWith(expected), c.log.error);
      assert.equal(c.log.entries.length, 0);
      c.socket.disconnect();
    }
  },

  async "another user's inbox is never reachable"() {
    const ana = await user("ana");
    const bob = await user("bob");
    const cat = await user("cat");
    const c = connect({ token: bob.token });
    await until("ready", () => c.log.ready);
    await note(ana, "for cat only", [`user:${cat.name}`]);
    await note(ana, "for bob", [`user:${bob.name}`]);
    await until("bob's entry", () => c.log.entries.length >= 1);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(contents(c.log), ["for bob"]);
    c.socket.disconnect();
  },

  async "the default transports: polling upgraded to websocket, the channel unbroken"() {
    const ana = await user("ana");
    const c = connect({ token: ana.token }, { transports: ["polling", "websocket"] });
    await until("ready", () => c.log.ready);
    await until("upgrade", () => c.socket.io.engine.transport.name === "websocket");
    await note(ana, "after the upgrade", ["public"]);
    await until("entry", () => c.log.entries.length === 1);
    const ack = await c.socket.timeout(5000).emitWithAck("filter", { kind: "major" });
    assert.deepEqual(ack, { ok: true });
    assert.deepEqual(contents(c.log), ["after the upgrade"]);
    c.socket.disconnect();
  },

  async "an unknown namespace is refused"() {
    const ana = await user("ana");
    const socket = io(`${base}/admin`, { auth: { token: ana.token }, reconnection: false, transports: ["websocket"] });
    let error = null;
    socket.on("connect_error", (e) => (error = e.message));
    await until("connect_error", () => error);
    assert.equal(error, "Invalid namespace");
    socket.disconnect();
  },

  async "a revoked token is cut off within a second"() {
    const ana = await user("ana");
    const c = connect({ token: ana.token });
    await until("ready", () => c.log.ready);
    const r = await call("DELETE", "/sessions/current", ana.token);
    assert.ok(r.status < 300, JSON.stringify(r.body));
    const t0 = Date.now();
    await until("closed", () => c.log.closed && c.log.disconnect, 1000);
    assert.equal(c.log.closed.reason, "revoked");
    assert.equal(c.log.disconnect, "io server disconnect");
    assert.ok(Date.now() - t0 <= 1000);
  },
};

const only = process.argv[3];
let failed = 0;
for (const [name, scenario] of Object.entries(scenarios)) {
  if (only && !name.includes(only)) continue;
  const t0 = Date.now();
  try {
    await scenario();
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e.stack ?? e}`);
  }
}
process.exit(failed ? 1 : 0);
