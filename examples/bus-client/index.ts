// bus-client: sends N requests over the bus pair calc.req / calc.rep to
// examples/bus-server, one at a time, and checks that every reply arrives,
// in order, with the request's correlation id and the right content (every
// little-endian 32-bit word plus one). Requests are written in place in
// the shared slot; replies are checked in place.
//
// Input (stdin, JSON, every field optional):
//   {"requests": 10000, "size": 64, "timeout_ms": 5000, "connect_ms": 10000}
// Output (stdout, one JSON line; exit 1 unless ok):
//   {ok, sent, received, in_order, mismatches, p50_us, p99_us, seconds}
import { Kind, openClient } from "quilt-bus";

type Input = { requests?: number; size?: number; timeout_ms?: number; connect_ms?: number };
const text = await Bun.stdin.text();
let input: Input = {};
try {
  input = text.trim() === "" ? {} : (JSON.parse(text) as Input);
} catch {
  input = {};
}
const requests = Math.max(0, Math.floor(input.requests ?? 10000));
const timeoutMs = input.timeout_ms ?? 5000;
const connectMs = input.connect_ms ?? 10000;

const client = openClient("calc");
// Whole 32-bit words, at most a slot.
const size = Math.min(Math.max(4, Math.floor((input.size ?? 64) / 4) * 4), client.requests.slotSize & ~3);

// The server answers only requests published after it subscribed: knock
// with empty requests until one is answered. Replies come in order, so
// once this one is back no earlier reply is still on its way.
const connectDeadline = performance.now() + connectMs;
let connected = false;
while (!connected && performance.now() < connectDeadline) {
  const reply = client.call(new Uint8Array(0), 50);
  if (reply !== null) {
    reply.release();
    connected = true;
  }
}

let sent = 0;
let received = 0;
let inOrder = true;
let mismatches = 0;
let error: string | undefined = connected ? undefined : `no answer on calc within ${connectMs} ms`;
const rtt = new Float64Array(requests);
const start = performance.now();
for (let i = 0; connected && i < requests; i++) {
  const t0 = Bun.nanoseconds();
  const corr = client.request((slot) => {
    const view = new DataView(slot.buffer, slot.byteOffset, size);
    for (let w = 0; w < size; w += 4) view.setUint32(w, (i * 2654435761 + w) >>> 0, true);
    return size;
  }, timeoutMs);
  if (corr === null) {
    error = `request ${i}: no free slot within ${timeoutMs} ms`;
    break;
  }
  sent++;
  // The next reply must be this request's: anything else is out of order.
  const reply = client.replies.receive(timeoutMs);
  if (reply === null) {
    error = `request ${i} (corr ${corr}): no reply within ${timeoutMs} ms`;
    break;
  }
  rtt[i] = (Bun.nanoseconds() - t0) / 1000;
  received++;
  if (reply.kind !== Kind.Reply || reply.corr !== corr) {
    inOrder = false;
    mismatches++;
  } else {
    const view = new DataView(reply.bytes.buffer, reply.bytes.byteOffset, reply.bytes.length);
    let same = reply.bytes.length === size;
    for (let w = 0; same && w < size; w += 4) {
      same = view.getUint32(w, true) === (((i * 2654435761 + w) >>> 0) + 1) >>> 0;
    }
    if (!same) mismatches++;
  }
  reply.release();
}
const seconds = (performance.now() - start) / 1000;

const done = rtt.subarray(0, received).sort();
const pct = (p: number) => (done.length === 0 ? null : Math.round(done[Math.min(done.length - 1, Math.floor(p * done.length))]! * 10) / 10);
const ok = error === undefined && sent === requests && received === requests && inOrder && mismatches === 0;
const out: Record<string, unknown> = {
  ok,
  sent,
  received,
  in_order: inOrder,
  mismatches,
  p50_us: pct(0.5),
  p99_us: pct(0.99),
  seconds: Math.round(seconds * 1000) / 1000,
  size,
};
if (error !== undefined) out.error = error;
console.log(JSON.stringify(out));
client.close();
process.exit(ok ? 0 : 1);
