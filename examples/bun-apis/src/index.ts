// bun-apis: a Quilt tool that uses Bun's own APIs inside its container.
//
// stdin:  {"text": "...", "delay_ms": 25}   (delay_ms optional, 0..=5000, default 10)
// It writes `text` to a file in its tmpfs with Bun.write, reads it back with
// Bun.file, hashes it with Bun.hash (wyhash) and Bun.CryptoHasher (SHA-256),
// waits delay_ms on a setTimeout timer, removes the file and prints one JSON
// object. Exit 0 on success; 2 with {"ok": false, "error": "..."} on stdout
// for input that is not JSON or not of that shape; 1 if the round trip
// through /tmp does not give back the bytes written.

function fail(code: number, error: string): never {
  console.log(JSON.stringify({ ok: false, error }));
  process.exit(code);
}

let input: { text?: unknown; delay_ms?: unknown };
try {
  input = JSON.parse(await Bun.stdin.text());
} catch (e) {
  fail(2, `input is not JSON: ${(e as Error).message}`);
}
if (typeof input !== "object" || input === null || typeof input.text !== "string") {
  fail(2, "input must be a JSON object with a string \"text\"");
}
const text = input.text as string;
const delay = input.delay_ms ?? 10;
if (typeof delay !== "number" || !Number.isInteger(delay) || delay < 0 || delay > 5000) {
  fail(2, "\"delay_ms\" must be an integer in 0..=5000");
}

// The container's only writable place is its tmpfs at /tmp.
const dir = process.env.TMPDIR ?? "/tmp";
const path = `${dir}/bun-apis-${process.pid}.txt`;
const written = await Bun.write(path, text);
const file = Bun.file(path);
const back = await file.text();
const size = file.size;
await file.delete();
const gone = !(await Bun.file(path).exists());
if (back !== text) fail(1, `read back ${back.length} chars from ${path}, wrote ${text.length}`);

const t0 = performance.now();
await new Promise((resolve) => setTimeout(resolve, delay));
const slept = performance.now() - t0;

console.log(
  JSON.stringify({
    ok: true,
    bytes: written,
    size,
    roundtrip: back === text,
    removed: gone,
    wyhash: Bun.hash(text).toString(16).padStart(16, "0"),
    sha256: new Bun.CryptoHasher("sha256").update(text).digest("hex"),
    delay_ms: delay,
    timer_ok: slept >= delay - 1,
    bun: Bun.version,
  }),
);
