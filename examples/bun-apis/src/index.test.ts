import { expect, test } from "bun:test";
import { call } from "@quilt/tool";
import "./index.ts";

test("round trip through a temporary file, hashes and the timer", async () => {
  expect(await call("roundtrip", { text: "hello", delay_ms: 20 })).toEqual({
    result: {
      bytes: 5,
      size: 5,
      roundtrip: true,
      removed: true,
      // Bun.hash is wyhash with seed 0.
      wyhash: "0e24bbd9f93f532d",
      // SHA-256("hello"), as `sha256sum` gives it.
      sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
      delay_ms: 20,
      timer_ok: true,
      bun: Bun.version,
    },
  });
});

test("the schema refuses bad input", async () => {
  for (const [input, where] of [
    [{ text: 5 }, "input/text"],
    [{ text: "x", delay_ms: 6000 }, "input/delay_ms"],
    [{ text: "x", delay_ms: 1.5 }, "input/delay_ms"],
  ] as const) {
    const env = (await call("roundtrip", input)) as { error: { code: string; message: string } };
    expect(env.error.code).toBe("invalid_input");
    expect(env.error.message).toContain(where);
  }
});
