// A tool module for index.test.ts: served in a child process.
import { serve, tool, ToolError } from "./index.ts";

class Shop {
  prefix = "sku-";

  @tool({
    description: "Looks up an item.",
    input: {
      type: "object",
      properties: { id: { type: "integer", minimum: 1 } },
      required: ["id"],
      additionalProperties: false,
    },
    output: { type: "object", properties: { sku: { type: "string" } }, required: ["sku"] },
  })
  lookup(input: { id: number }) {
    console.log("looking up", input.id);
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

await serve(Shop);
