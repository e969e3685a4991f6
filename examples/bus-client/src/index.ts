// bus-client: a tool, written with @quilt/tool, that sends N requests over
// the bus pair calc.req / calc.rep to examples/bus-server, one at a time,
// and checks that every reply arrives, in order, with the request's
// correlation id and the right content (every little-endian 32-bit word
// plus one). Requests are written in place in the shared slot; replies are
// checked in place.
//
// The bus comes through the SDK's helpers: ctx.busChannels() says which
// channels this container's signed tokens granted, ctx.bus() loads the
// board's quilt-bus package (kept out of the bundle by quilt build, so it
// always matches the board's libquiltbus.so). A lost, late, reordered or
// wrong reply fails the tool (tool_failed, exit 1) with the counts so far.
import { type Context, serve, tool, ToolError } from "@quilt/tool";
// Types only (erased by the bundler): the package itself is the board's.
import type * as QuiltBus from "quilt-bus";

type Input = { requests?: number; size?: number; timeout_ms?: number; connect_ms?: number };

export class BusClient {
  @tool({
    description:
      "Sends N requests to the calc service over the shared-memory bus (calc.req/calc.rep), checks every reply and reports round-trip times.",
    input: {
      type: "object",
      properties: {
        requests: { type: "integer", minimum: 0, maximum: 10000000, description: "default: 10000" },
        size: { type: "integer", minimum: 0, description: "bytes per request, whole 32-bit words, at most a slot; default: 64" },
        timeout_ms: { type: "integer", minimum: 1, description: "per request; default: 5000" },
        connect_ms: { type: "integer", minimum: 1, description: "waiting for the server; default: 10000" },
      },
      additionalProperties: false,
    },
    output: {
      type: "object",
      properties: {
        sent: { type: "integer" },
        received: { type: "integer" },
        in_order: { type: "boolean" },
        mismatches: { type: "integer" },
        p50_us: { type: ["number", "null"] },
        p99_us: { type: ["number", "null"] },
        seconds: { type: "number" },
        size: { type: "integer" },
      },
      required: ["sent", "received", "in_order", "mismatches", "p50_us", "p99_us", "seconds", "size"],
    },
  })
  async measure(input: Input, ctx: Context) {
    const held = ctx.busChannels().map((c) => `${c.topic}:${c.role}`);
    for (const need of ["calc.req:pub", "calc.rep:sub"]) {
      if (!held.includes(need)) {
        throw new ToolError("no_channel", `this container holds no bus:${need} token (it has: ${held.join(", ") || "none"})`);
      }
    }
    const bus: typeof QuiltBus = await ctx.bus();
    const client = bus.openClient("calc");
    try {
      return exchange(bus, client, input);
    } finally {
      client.close();
    }
  }
}

function exchange(bus: typeof QuiltBus, client: QuiltBus.Client, input: Input) {
  const requests = input.requests ?? 10000;
  const timeoutMs = input.timeout_ms ?? 5000;
  const connectMs = input.connect_ms ?? 10000;
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
    if (reply.kind !== bus.Kind.Reply || reply.corr !== corr) {
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

  const counts = `sent ${sent}, received ${received}, in order ${inOrder}, mismatches ${mismatches}`;
  if (error !== undefined) throw new Error(`${error} (${counts})`);
  if (!inOrder || mismatches !== 0) throw new Error(`wrong replies (${counts})`);
  const done = rtt.subarray(0, received).sort();
  const pct = (p: number) =>
    done.length === 0 ? null : Math.round(done[Math.min(done.length - 1, Math.floor(p * done.length))]! * 10) / 10;
  return {
    sent,
    received,
    in_order: inOrder,
    mismatches,
    p50_us: pct(0.5),
    p99_us: pct(0.99),
    seconds: Math.round(seconds * 1000) / 1000,
    size,
  };
}

await serve(BusClient);
