// bun-apis: a tool that uses Bun's own APIs inside its container, written
// with @quilt/tool.
//
// Input: {"text": "...", "delay_ms": 25}   (delay_ms optional, 0..=5000, default 10)
// It writes `text` to a file in its tmpfs with Bun.write, reads it back
// with Bun.file, hashes it with Bun.hash (wyhash) and Bun.CryptoHasher
// (SHA-256), waits delay_ms on a setTimeout timer and removes the file.
// Input that breaks the schema is refused by the SDK before the tool runs
// (`invalid_input`, exit 2); a round trip through /tmp that does not give
// back the bytes written fails the tool (`tool_failed`, exit 1).
import { type Context, serve, tool } from "@quilt/tool";

export class BunApis {
  @tool({
    description:
      "Writes a text to the container's /tmp and reads it back (Bun.write, Bun.file), hashes it (Bun.hash, SHA-256) and waits delay_ms on a timer.",
    input: {
      type: "object",
      properties: {
        text: { type: "string" },
        delay_ms: { type: "integer", minimum: 0, maximum: 5000, description: "default: 10" },
      },
      required: ["text"],
      additionalProperties: false,
    },
    output: {
      type: "object",
      properties: {
        bytes: { type: "integer" },
        size: { type: "integer" },
        roundtrip: { type: "boolean" },
        removed: { type: "boolean" },
        wyhash: { type: "string", pattern: "^[0-9a-f]{16}$" },
        sha256: { type: "string", pattern: "^[0-9a-f]{64}$" },
        delay_ms: { type: "integer" },
        timer_ok: { type: "boolean" },
        bun: { type: "string" },
      },
      required: ["bytes", "size", "roundtrip", "removed", "wyhash", "sha256", "delay_ms", "timer_ok", "bun"],
    },
    // No result given: it names the Bun version, which the board decides.
    examples: [{ input: { text: "hello", delay_ms: 0 } }],
  })
  async roundtrip(input: { text: string; delay_ms?: number }, ctx: Context) {
    const { text } = input;
    const delay = input.delay_ms ?? 10;
    // The container's only writable place is its tmpfs at /tmp.
    const dir = process.env.TMPDIR ?? "/tmp";
    const path = `${dir}/bun-apis-${process.pid}.txt`;
    const written = await Bun.write(path, text);
    const file = Bun.file(path);
    const back = await file.text();
    const size = file.size;
    await file.delete();
    const gone = !(await Bun.file(path).exists());
    if (back !== text) throw new Error(`read back ${back.length} chars from ${path}, wrote ${text.length}`);
    ctx.log(`round trip through ${path}: ${written} bytes`);

    const t0 = performance.now();
    await new Promise((resolve) => setTimeout(resolve, delay));
    const slept = performance.now() - t0;

    return {
      bytes: written,
      size,
      roundtrip: back === text,
      removed: gone,
      wyhash: Bun.hash(text).toString(16).padStart(16, "0"),
      sha256: new Bun.CryptoHasher("sha256").update(text).digest("hex"),
      delay_ms: delay,
      timer_ok: slept >= delay - 1,
      bun: Bun.version,
    };
  }
}

await serve(BunApis);
