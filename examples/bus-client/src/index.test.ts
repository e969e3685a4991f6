import { expect, test } from "bun:test";
import { call } from "@quilt/tool";
import "./index.ts";

// The exchange itself needs the bus (init/bus-ffi/tests/bun_pair.rs runs it
// against bus-server on the host; tests/tests/bus.rs in QEMU). Here: what
// is refused before any channel is opened.

test("the schema refuses bad input", async () => {
  for (const [input, where] of [
    [{ requests: -1 }, "input/requests"],
    [{ size: "64" }, "input/size"],
    [{ timeout: 5 }, "input/timeout"],
  ] as const) {
    const env = (await call("measure", input)) as { error: { code: string; message: string } };
    expect(env.error.code).toBe("invalid_input");
    expect(env.error.message).toContain(where);
  }
});

test("no bus token, no channel", async () => {
  const saved = process.env.QUILT_BUS;
  delete process.env.QUILT_BUS;
  try {
    expect(await call("measure", { requests: 1 })).toEqual({
      error: { code: "no_channel", message: "this container holds no bus:calc.req:pub token (it has: none)" },
    });
  } finally {
    if (saved !== undefined) process.env.QUILT_BUS = saved;
  }
});
