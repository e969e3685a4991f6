// A minimal client of quilt-init's control protocol (init/proto) over the
// socket PID 1 hands a container holding a `spawn` token (fd in
// QUILT_CONTROL_FD). Frames: "QC", u16 LE version 1, postcard body; one
// frame per SOCK_SEQPACKET message. Blocking calls: fine for an agent that
// waits for its children anyway. Variant numbers are the postcard enum
// indices of quilt_proto::Request/Reply (pinned by a test in init/proto).
import { dlopen, FFIType, ptr } from "bun:ffi";

const libc = dlopen("libc.so.6", {
  send: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
  recv: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
});

const fd = Number(process.env.QUILT_CONTROL_FD ?? -1);
const ERRORS = ["malformed", "too-large", "version", "denied", "not-found", "busy", "failed", "deadlock"];

export interface RunResult {
  status: number;
  oom_killed: boolean;
  timed_out: boolean;
  stdout: string;
  stderr_tail: string;
  micros: number;
}
export class Refused extends Error {
  constructor(public code: string, message: string) {
    super(`${code}: ${message}`);
  }
}

function varint(out: number[], n: number | bigint) {
  let v = BigInt(n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
}
function bytes(out: number[], b: Uint8Array) {
  varint(out, b.length);
  for (const x of b) out.push(x);
}

class Reader {
  i = 0;
  constructor(private b: Uint8Array) {}
  u8() {
    if (this.i >= this.b.length) throw new Error("reply truncated");
    return this.b[this.i++];
  }
  varint(): bigint {
    let v = 0n;
    for (let s = 0n; ; s += 7n) {
      const b = this.u8();
      v |= BigInt(b & 0x7f) << s;
      if (!(b & 0x80)) return v;
    }
  }
  bytes() {
    const n = Number(this.varint());
    const out = this.b.subarray(this.i, this.i + n);
    this.i += n;
    return out;
  }
  str() {
    return new TextDecoder().decode(this.bytes());
  }
}

function call(body: number[]): Reader {
  if (fd < 0) throw new Refused("denied", "no control socket (QUILT_CONTROL_FD unset: no spawn token)");
  const frame = new Uint8Array([0x51, 0x43, 1, 0, ...body]);
  if (Number(libc.symbols.send(fd, ptr(frame), frame.length, 0)) !== frame.length) throw new Error("send failed");
  const buf = new Uint8Array(256 * 1024 + 16);
  const n = Number(libc.symbols.recv(fd, ptr(buf), buf.length, 0));
  if (n < 4) throw new Error(`control socket closed (${n})`);
  const r = new Reader(buf.subarray(4, n));
  const variant = Number(r.varint());
  if (variant === 3) {
    const code = ERRORS[Number(r.varint())] ?? "unknown";
    throw new Refused(code, r.str());
  }
  (r as any).variant = variant;
  return r;
}

function result(r: Reader): RunResult {
  const zz = Number(r.varint());
  const status = (zz >>> 1) ^ -(zz & 1);
  const oom_killed = r.u8() === 1;
  const timed_out = r.u8() === 1;
  const stdout = new TextDecoder().decode(r.bytes());
  r.u8(); // stdout_truncated
  const stderr_tail = new TextDecoder().decode(r.bytes());
  const micros = Number(r.varint());
  return { status, oom_killed, timed_out, stdout, stderr_tail, micros };
}

/** Start a child container; returns its id at once. */
export function spawn(bundle: string, input: unknown = {}, timeoutMs = 0): number {
  const body: number[] = [3];
  bytes(body, new TextEncoder().encode(bundle));
  bytes(body, new TextEncoder().encode(JSON.stringify(input)));
  varint(body, timeoutMs);
  const r = call(body);
  if ((r as any).variant !== 4) throw new Error(`unexpected reply ${(r as any).variant}`);
  return Number(r.varint());
}

/** Block until child `id` ends; its result. */
export function wait(id: number): RunResult {
  const body: number[] = [4];
  varint(body, id);
  const r = call(body);
  if ((r as any).variant !== 5) throw new Error(`unexpected reply ${(r as any).variant}`);
  r.varint();
  return result(r);
}

/** Take `units` of counted resource `resource` (e.g. "llm:gpt"); blocks
 * while others hold it; throws Refused("deadlock") if waiting would close a
 * cycle of containers waiting on each other. */
export function acquire(resource: string, units = 1) {
  const body: number[] = [12];
  bytes(body, new TextEncoder().encode(resource));
  varint(body, units);
  const r = call(body);
  if ((r as any).variant !== 11) throw new Error(`unexpected reply ${(r as any).variant}`);
}

/** Give units back. */
export function release(resource: string, units = 1) {
  const body: number[] = [13];
  bytes(body, new TextEncoder().encode(resource));
  varint(body, units);
  const r = call(body);
  if ((r as any).variant !== 12) throw new Error(`unexpected reply ${(r as any).variant}`);
}

/** Run `argv` inside supervised service `service`'s container (token
 * `exec:<service>`); blocks until it ends. */
export function exec(service: string, argv: string[], input = ""): RunResult {
  const body: number[] = [15];
  bytes(body, new TextEncoder().encode(service));
  varint(body, argv.length);
  for (const a of argv) bytes(body, new TextEncoder().encode(a));
  bytes(body, new TextEncoder().encode(input));
  varint(body, 0);
  const r = call(body);
  if ((r as any).variant !== 2) throw new Error(`unexpected reply ${(r as any).variant}`);
  return result(r);
}

/** Stop child `id` now (its `wait` then reports how it ended). */
export function stop(id: number) {
  const body: number[] = [5];
  varint(body, id);
  const r = call(body);
  if ((r as any).variant !== 6) throw new Error(`unexpected reply ${(r as any).variant}`);
}
