// quilt-bus: the shared-memory bus of Quilt for Bun tools.
//
// A thin wrapper over libquiltbus.so (init/bus-ffi, loaded with bun:ffi).
// quilt-init hands a container its channels as inherited fds named in the
// QUILT_BUS environment variable; open them by topic. Payloads are never
// copied: a loaned slot and a received message are Uint8Array views over
// the shared mapping (toArrayBuffer over the slot's address).
//
// Rules that keep views safe (the library cannot enforce them):
// - a received message's `bytes` are valid until `release()` (or the
//   subscriber's next receive / close); they are mapped read-only, so
//   writing into them crashes the process;
// - a loaned slot is valid until `publish()`;
// - nothing is valid after `close()` (the memory is unmapped);
// - on a drop-oldest channel the publisher may overwrite a message while
//   you read it: act on what you read only if `valid()` is true after
//   reading (or use `copy()`). Block-mode channels (request/reply) are
//   never overwritten.
//
// Calls block the JS thread while they wait (bun:ffi is synchronous);
// `Server.serve` waits in short slices and yields to the event loop in
// between, so signals and timers still run.

import { dlopen, type Pointer, toArrayBuffer } from "bun:ffi";

/** What a message is (the slot's kind word). */
export const Kind = { Data: 0, Request: 1, Reply: 2 } as const;
export type Kind = (typeof Kind)[keyof typeof Kind];

/** Negative return codes of libquiltbus (include/quiltbus.h). */
export const Code = {
  Timeout: -1,
  Full: -2,
  Evicted: -3,
  NoLoan: -4,
  TooLong: -5,
  Invalid: -6,
  Corrupt: -7,
  WrongRole: -8,
  System: -9,
  Internal: -10,
} as const;

const ABI_VERSION = 1;
const PUB = 0;
const SUB = 1;
/** Polls before sleeping in a futex when a call waits. */
const DEFAULT_SPINS = 2000;
/** Corrupt (skipped) messages tolerated in one receive call. */
const MAX_CORRUPT_SKIPS = 64;

const libPath = process.env.QUILT_BUS_LIB || `${import.meta.dir}/libquiltbus.so`;
const lib = dlopen(libPath, {
  qbus_abi_version: { args: [], returns: "u32" },
  qbus_last_error: { args: ["ptr", "usize"], returns: "usize" },
  qbus_open_spec: { args: ["ptr", "ptr", "u32", "u32"], returns: "ptr" },
  qbus_close: { args: ["ptr"], returns: "void" },
  qbus_slot_size: { args: ["ptr"], returns: "i64_fast" },
  qbus_lost: { args: ["ptr"], returns: "i64_fast" },
  qbus_loan: { args: ["ptr", "i64", "ptr", "ptr"], returns: "i32" },
  qbus_publish: { args: ["ptr", "u64", "u64", "u32"], returns: "i64_fast" },
  qbus_wait: { args: ["ptr", "i64", "ptr"], returns: "i32" },
  qbus_validate: { args: ["ptr", "ptr"], returns: "i32" },
  qbus_consume: { args: ["ptr", "ptr"], returns: "i32" },
}).symbols;

if (lib.qbus_abi_version() !== ABI_VERSION) {
  throw new Error(`${libPath} implements bus ABI ${lib.qbus_abi_version()}, quilt-bus wants ${ABI_VERSION}`);
}

// Scratch out-parameters (JS is single-threaded; a Worker loads its own
// copy of this module). BigUint64Array for 8-byte alignment, read through
// 32-bit halves to stay in plain numbers (addresses are < 2^53).
const sampleWords = new BigUint64Array(5); // struct QbusSample, 40 bytes
const sample32 = new Uint32Array(sampleWords.buffer);
const loanWords = new BigUint64Array(1);
const loan32 = new Uint32Array(loanWords.buffer);
const errorBuf = new Uint8Array(1024);
const u64 = (words: Uint32Array, i: number) => words[i]! + words[i + 1]! * 0x1_0000_0000;

/** A failed bus call: `code` is one of `Code`, `message` says why. */
export class BusError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
    this.name = "BusError";
  }
}

function lastError(): string {
  const n = Number(lib.qbus_last_error(errorBuf, errorBuf.length));
  return new TextDecoder().decode(errorBuf.subarray(0, Math.min(n, errorBuf.length - 1)));
}

function fail(code: number, what: string): never {
  throw new BusError(code, `${what}: ${lastError()}`);
}

/** Milliseconds (undefined or negative: forever) to the ABI's nanoseconds. */
function ns(timeoutMs: number | undefined): number {
  return timeoutMs === undefined || timeoutMs < 0 ? -1 : Math.round(timeoutMs * 1e6);
}

function cString(s: string): Uint8Array {
  return new TextEncoder().encode(`${s}\0`);
}

export interface OpenOptions {
  /** Polls before sleeping when waiting (0: sleep at once; 0xffffffff: never sleep). */
  spins?: number;
  /** The QUILT_BUS string to use instead of the environment's. */
  spec?: string;
}

abstract class Endpoint {
  protected handle: Pointer | null;
  /** Payload bytes per slot. */
  readonly slotSize: number;
  /** Full-slot views by slot address: one external ArrayBuffer per slot, ever. */
  private views = new Map<number, Uint8Array>();

  constructor(
    readonly topic: string,
    role: number,
    options: OpenOptions,
  ) {
    const spec = options.spec ?? process.env.QUILT_BUS;
    const handle = lib.qbus_open_spec(
      spec === undefined ? null : cString(spec),
      cString(topic),
      role,
      options.spins ?? DEFAULT_SPINS,
    );
    if (handle === null) fail(Code.Invalid, `open ${topic}`);
    this.handle = handle;
    this.slotSize = lib.qbus_slot_size(handle) as number;
  }

  protected get h(): Pointer {
    if (this.handle === null) throw new BusError(Code.Invalid, `${this.topic} is closed`);
    return this.handle;
  }

  protected view(address: number): Uint8Array {
    let v = this.views.get(address);
    if (v === undefined) {
      v = new Uint8Array(toArrayBuffer(address as Pointer, 0, this.slotSize));
      this.views.set(address, v);
    }
    return v;
  }

  /** Releases the endpoint; every view obtained from it becomes invalid. */
  close(): void {
    if (this.handle !== null) lib.qbus_close(this.handle);
    this.handle = null;
    this.views.clear();
  }
}

/** The publishing end of a channel: loan a slot, write it in place, publish. */
export class Publisher extends Endpoint {
  constructor(topic: string, options: OpenOptions = {}) {
    super(topic, PUB, options);
  }

  /**
   * Loans the next slot (`slotSize` bytes, in shared memory). Waits up to
   * `timeoutMs` for space on a block-mode channel (undefined: forever, 0:
   * not at all); null if none freed up.
   */
  loan(timeoutMs?: number): Uint8Array | null {
    const rc = lib.qbus_loan(this.h, ns(timeoutMs), loanWords, null);
    if (rc === Code.Timeout || rc === Code.Full) return null;
    if (rc !== 0) fail(rc, `loan on ${this.topic}`);
    return this.view(u64(loan32, 0));
  }

  /** Publishes the loaned slot's first `len` bytes; returns the sequence number. */
  publish(len: number, corr = 0, kind: Kind = Kind.Data): number {
    const seq = lib.qbus_publish(this.h, len, corr, kind) as number;
    if (seq < 0) fail(seq, `publish on ${this.topic}`);
    return seq;
  }

  /** Copies `bytes` into a slot and publishes it; null if no space in time. */
  send(bytes: Uint8Array, corr = 0, kind: Kind = Kind.Data, timeoutMs?: number): number | null {
    if (bytes.length > this.slotSize) {
      throw new BusError(Code.TooLong, `${bytes.length} bytes exceed the slot size ${this.slotSize} of ${this.topic}`);
    }
    const slot = this.loan(timeoutMs);
    if (slot === null) return null;
    slot.set(bytes);
    return this.publish(bytes.length, corr, kind);
  }
}

/** A received message, in place in shared memory; valid until `release()`. */
export class Message {
  constructor(
    private readonly sub: Subscriber,
    /** Sequence number on the channel. */
    readonly seq: number,
    /** Correlation id (request/reply). */
    readonly corr: number,
    readonly kind: Kind,
    /** The payload, a read-only view of the slot: do not write into it. */
    readonly bytes: Uint8Array,
  ) {}

  /** Whether what was read so far is the message (false: overwritten meanwhile, drop-oldest). */
  valid(): boolean {
    return this.sub.validate(this);
  }

  /** A private copy of the payload, or null if it was overwritten while copying. */
  copy(): Uint8Array | null {
    const out = this.bytes.slice();
    return this.valid() ? out : null;
  }

  /** Frees the slot (block mode: makes room for the publisher); `bytes` dies. */
  release(): void {
    this.sub.release(this);
  }
}

/** A subscribing end of a channel: receives messages in place, newest-first join. */
export class Subscriber extends Endpoint {
  private held: Message | null = null;

  constructor(topic: string, options: OpenOptions = {}) {
    super(topic, SUB, options);
  }

  /**
   * The next message, waiting up to `timeoutMs` (undefined: forever, 0:
   * not at all); null on timeout. Until it is released, receiving again
   * returns the same message.
   */
  receive(timeoutMs?: number): Message | null {
    for (let skips = 0; ; skips++) {
      const rc = lib.qbus_wait(this.h, ns(timeoutMs), sampleWords);
      if (rc === Code.Timeout) return null;
      if (rc === Code.Corrupt && skips < MAX_CORRUPT_SKIPS) continue;
      if (rc !== 1) fail(rc, `receive on ${this.topic}`);
      break;
    }
    const len = u64(sample32, 6);
    const m = new Message(
      this,
      u64(sample32, 0),
      u64(sample32, 2),
      sample32[8] as Kind,
      this.view(u64(sample32, 4)).subarray(0, len),
    );
    this.held = m;
    return m;
  }

  /** Messages lost so far (overwritten before being read, or malformed). */
  lost(): number {
    return lib.qbus_lost(this.h) as number;
  }

  /** @internal */
  validate(m: Message): boolean {
    if (m !== this.held) return false;
    const rc = lib.qbus_validate(this.h, null);
    if (rc < 0) fail(rc, `validate on ${this.topic}`);
    return rc === 1;
  }

  /** @internal */
  release(m: Message): void {
    if (m !== this.held) return;
    this.held = null;
    const rc = lib.qbus_consume(this.h, null);
    if (rc !== 0) fail(rc, `release on ${this.topic}`);
  }

  override close(): void {
    this.held = null;
    super.close();
  }
}

/** Opens `topic` for publishing (needs the token `bus:<topic>:pub`). */
export function openPublisher(topic: string, options?: OpenOptions): Publisher {
  return new Publisher(topic, options);
}

/** Opens `topic` for receiving (needs the token `bus:<topic>:sub`). */
export function openSubscriber(topic: string, options?: OpenOptions): Subscriber {
  return new Subscriber(topic, options);
}

/** A request body: bytes to copy, or a function filling the slot in place and returning the length. */
export type Body = Uint8Array | ((slot: Uint8Array) => number);

/**
 * The asking side of `<name>`: publishes on `<name>.req`, receives on
 * `<name>.rep` (tokens `bus:<name>.req:pub` and `bus:<name>.rep:sub`).
 */
export class Client {
  readonly requests: Publisher;
  readonly replies: Subscriber;
  private nextCorr = 1;

  constructor(
    readonly name: string,
    options: OpenOptions = {},
  ) {
    // Subscribe first: a reply published before we join would be missed.
    this.replies = new Subscriber(`${name}.rep`, options);
    this.requests = new Publisher(`${name}.req`, options);
  }

  /** Sends a request; returns its correlation id, or null if no slot freed up in time. */
  request(body: Body, timeoutMs?: number): number | null {
    const slot = this.requests.loan(timeoutMs);
    if (slot === null) return null;
    let len: number;
    if (typeof body === "function") {
      len = body(slot);
    } else {
      if (body.length > slot.length) {
        throw new BusError(Code.TooLong, `${body.length} bytes exceed the slot size ${slot.length} of ${this.requests.topic}`);
      }
      slot.set(body);
      len = body.length;
    }
    const corr = this.nextCorr;
    this.requests.publish(len, corr, Kind.Request);
    this.nextCorr = corr >= Number.MAX_SAFE_INTEGER ? 1 : corr + 1;
    return corr;
  }

  /**
   * Waits for the reply to `corr`, releasing and skipping replies to other
   * (abandoned) requests; null on timeout. Release the reply when done.
   */
  waitReply(corr: number, timeoutMs?: number): Message | null {
    const deadline = timeoutMs === undefined || timeoutMs < 0 ? Infinity : performance.now() + timeoutMs;
    for (;;) {
      const left = deadline === Infinity ? undefined : Math.max(0, deadline - performance.now());
      const m = this.replies.receive(left);
      if (m === null) return null;
      if (m.kind === Kind.Reply && m.corr === corr) return m;
      m.release();
    }
  }

  /** `request` then `waitReply`; null on timeout. */
  call(body: Body, timeoutMs?: number): Message | null {
    const corr = this.request(body, timeoutMs);
    return corr === null ? null : this.waitReply(corr, timeoutMs);
  }

  close(): void {
    this.requests.close();
    this.replies.close();
  }
}

/** Writes the reply to `request` into `reply` (the slot, in place) and returns its length. */
export type Handler = (request: Uint8Array, reply: Uint8Array, info: { corr: number; seq: number }) => number;

/**
 * The answering side of `<name>`: receives on `<name>.req`, replies on
 * `<name>.rep` (tokens `bus:<name>.req:sub` and `bus:<name>.rep:pub`).
 */
export class Server {
  readonly requests: Subscriber;
  readonly replies: Publisher;
  /** Requests answered. */
  served = 0;
  /** Requests overwritten while being handled (drop-oldest request channel): not answered. */
  overwritten = 0;

  constructor(
    readonly name: string,
    options: OpenOptions = {},
  ) {
    this.requests = new Subscriber(`${name}.req`, options);
    this.replies = new Publisher(`${name}.rep`, options);
  }

  /**
   * Answers one request (zero-copy both ways), waiting up to `timeoutMs`
   * for it; false if none came, or if no reply slot freed up in time (the
   * request stays pending for the next call).
   */
  serveOne(handler: Handler, timeoutMs?: number): boolean {
    const deadline = timeoutMs === undefined || timeoutMs < 0 ? Infinity : performance.now() + timeoutMs;
    const left = () => (deadline === Infinity ? undefined : Math.max(0, deadline - performance.now()));
    let req: Message | null;
    for (;;) {
      req = this.requests.receive(left());
      if (req === null) return false;
      if (req.kind === Kind.Request) break;
      req.release();
    }
    const slot = this.replies.loan(left());
    if (slot === null) return false;
    const len = Math.min(handler(req.bytes, slot, { corr: req.corr, seq: req.seq }) | 0, slot.length);
    if (!req.valid()) {
      this.overwritten++;
      req.release();
      return true;
    }
    this.replies.publish(Math.max(0, len), req.corr, Kind.Reply);
    req.release();
    this.served++;
    return true;
  }

  /**
   * Answers requests until `signal` aborts, waiting in slices of `idleMs`
   * and yielding to the event loop between slices (and every `batch`
   * requests) so signal handlers and timers run. Resolves to `served`.
   */
  async serve(handler: Handler, options: { signal?: AbortSignal; idleMs?: number; batch?: number } = {}): Promise<number> {
    const idleMs = options.idleMs ?? 50;
    const batch = options.batch ?? 256;
    while (!options.signal?.aborted) {
      for (let n = 0; n < batch && this.serveOne(handler, idleMs); n++) {
        if (options.signal?.aborted) break;
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    return this.served;
  }

  close(): void {
    this.requests.close();
    this.replies.close();
  }
}

/** Opens the client end of `<name>.req` / `<name>.rep`. */
export function openClient(name: string, options?: OpenOptions): Client {
  return new Client(name, options);
}

/** Opens the server end of `<name>.req` / `<name>.rep`. */
export function openServer(name: string, options?: OpenOptions): Server {
  return new Server(name, options);
}
