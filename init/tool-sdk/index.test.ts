// Unit tests of the SDK itself (`bun test` in init/tool-sdk; run by
// tests/tests/sdk.rs). The registry is per process, so each file
// registers its own tools.
import { expect, test } from "bun:test";
import { call, Codes, definitionErrors, definitions, defineTool, tool, ToolError } from "./index.ts";

let ran = 0;

class Shop {
  prefix = "sku-";

  @tool({
    description: "Looks up an item.",
    input: {
      type: "object",
      properties: { id: { type: "integer", minimum: 1 }, tags: { type: "array", items: { type: "string" } } },
      required: ["id"],
      additionalProperties: false,
    },
    output: { type: "object", properties: { sku: { type: "string" } }, required: ["sku"] },
  })
  lookup(input: { id: number }) {
    ran++;
    if (input.id === 404) throw new ToolError("not_found", "no item 404");
    if (input.id === 500) throw new Error("database down");
    if (input.id === 13) return { wrong: true };
    return { sku: `${this.prefix}${input.id}` };
  }

  @tool({ name: "renamed", description: "A renamed tool.", input: { type: "object" } })
  method() {
    return "ok";
  }
}
new Shop();

defineTool({ name: "sum", description: "Adds.", input: { type: "object", properties: { xs: { type: "array", items: { type: "number" } } } } }, async (i: { xs?: number[] }) =>
  (i.xs ?? []).reduce((a, b) => a + b, 0),
);

// Broken definitions are collected with their site, not thrown.
defineTool({ name: "9bad", description: "x", input: { type: "object" } }, () => 0);
defineTool({ name: "nodesc", description: " ", input: { type: "object" } }, () => 0);
defineTool({ name: "notobject", description: "x", input: { type: "string" } }, () => 0);
defineTool({ name: "sum", description: "again", input: { type: "object" } }, () => 0);

test("definitions are sorted, renamed, and carry their site", () => {
  const d = definitions();
  expect(d.map((t) => t.name)).toEqual(["lookup", "renamed", "sum"]);
  expect(d[0].output).toEqual({ type: "object", properties: { sku: { type: "string" } }, required: ["sku"] });
  expect(d[1].output).toBeNull();
  expect(d[0].site).toMatch(/index\.test\.ts:\d+$/);
});

test("broken definitions are reported with file and line", () => {
  const e = definitionErrors();
  expect(e.length).toBe(4);
  expect(e[0]).toMatch(/index\.test\.ts:\d+: tool "9bad": the name must be/);
  expect(e[1]).toContain('"nodesc": needs a description');
  expect(e[2]).toContain('"notobject": input must be an object schema');
  expect(e[3]).toMatch(/"sum": defined twice \(first at .*index\.test\.ts:\d+\)/);
});

// With definition errors present, `call` refuses everything (as the build
// would); test the envelope on a clean registry in a child process.
test("calls refuse while definitions are broken", async () => {
  expect(await call("sum", { xs: [1] })).toMatchObject({ error: { code: Codes.failed } });
});

const child = (req: string) => {
  const p = Bun.spawnSync([process.execPath, `${import.meta.dir}/tool-fixture.ts`], {
    stdin: new TextEncoder().encode(req),
    env: { PATH: process.env.PATH ?? "" },
  });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
};

test("serve: result, refusal before the call, tool errors, bad requests", () => {
  let r = child('{"tool":"lookup","input":{"id":7}}');
  expect([r.code, JSON.parse(r.out)]).toEqual([0, { result: { sku: "sku-7" } }]);
  expect(r.err).toContain("looking up 7"); // console.log went to stderr

  r = child('{"tool":"lookup","input":{"id":0,"x":1}}');
  expect(r.code).toBe(2);
  const e = JSON.parse(r.out).error;
  expect(e.code).toBe("invalid_input");
  expect(e.message).toContain("input/id");
  expect(e.message).toContain("input/x: not allowed by the schema");
  expect(r.err).not.toContain("looking up"); // never called

  r = child('{"tool":"lookup","input":{"id":404}}');
  expect([r.code, JSON.parse(r.out)]).toEqual([2, { error: { code: "not_found", message: "no item 404" } }]);
  r = child('{"tool":"lookup","input":{"id":500}}');
  expect([r.code, JSON.parse(r.out).error]).toEqual([1, { code: "tool_failed", message: "database down" }]);
  r = child('{"tool":"lookup","input":{"id":13}}');
  expect([r.code, JSON.parse(r.out).error.code]).toEqual([1, "invalid_output"]);
  r = child('{"tool":"nope"}');
  expect([r.code, JSON.parse(r.out).error.code]).toEqual([2, "unknown_tool"]);
  expect(JSON.parse(r.out).error.message).toContain("lookup, renamed");
  r = child("not json");
  expect([r.code, JSON.parse(r.out).error.code]).toEqual([2, "bad_request"]);
  r = child('{"input":{}}');
  expect([r.code, JSON.parse(r.out).error.code]).toEqual([2, "bad_request"]);
  for (const res of [r]) expect(res.out.trim().split("\n").length).toBe(1);
});

test("describe mode prints the registry and does not read stdin", () => {
  const p = Bun.spawnSync([process.execPath, `${import.meta.dir}/tool-fixture.ts`], {
    env: { PATH: process.env.PATH ?? "", QUILT_TOOL_DESCRIBE: "1" },
  });
  const d = JSON.parse(p.stdout.toString());
  expect(d.errors).toEqual([]);
  expect(d.tools.map((t: { name: string }) => t.name)).toEqual(["lookup", "renamed"]);
  expect(d.tools[0].site).toMatch(/tool-fixture\.ts:\d+$/);
});

test("nothing in the failing cases ran the tool in-process", () => {
  expect(ran).toBe(0);
});
