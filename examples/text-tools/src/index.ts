// text-tools: two small text tools in one bundle, written with @quilt/tool.
// The plain-protocol examples (hello, json-transform, bun-apis) show the
// low-level stdin/stdout contract without the SDK.
import { serve, tool, ToolError } from "@quilt/tool";

export class TextTools {
  @tool({
    description: "Counts the words, lines and characters of a text; optionally the most frequent words.",
    input: {
      type: "object",
      properties: {
        text: { type: "string" },
        top: { type: "integer", minimum: 1, maximum: 50 },
      },
      required: ["text"],
      additionalProperties: false,
    },
    output: {
      type: "object",
      properties: {
        words: { type: "integer" },
        lines: { type: "integer" },
        chars: { type: "integer" },
        top: { type: "array", items: { type: "object", properties: { word: { type: "string" }, count: { type: "integer" } } } },
      },
      required: ["words", "lines", "chars"],
    },
    examples: [{ input: { text: "a b a", top: 1 }, result: { words: 3, lines: 1, chars: 5, top: [{ word: "a", count: 2 }] } }],
  })
  count(input: { text: string; top?: number }) {
    const words = input.text.toLowerCase().match(/[\p{L}\p{N}']+/gu) ?? [];
    const result: { words: number; lines: number; chars: number; top?: { word: string; count: number }[] } = {
      words: words.length,
      lines: input.text === "" ? 0 : input.text.split("\n").length,
      chars: [...input.text].length,
    };
    if (input.top) {
      const freq = new Map<string, number>();
      for (const w of words) freq.set(w, (freq.get(w) ?? 0) + 1);
      result.top = [...freq]
        .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
        .slice(0, input.top)
        .map(([word, count]) => ({ word, count }));
    }
    return result;
  }

  @tool({
    description: "Turns a title into a URL slug (lower case, ASCII, dashes).",
    input: {
      type: "object",
      properties: { title: { type: "string", minLength: 1, maxLength: 200 } },
      required: ["title"],
    },
    output: { type: "string" },
    examples: [{ input: { title: "Hello, World" }, result: "hello-world" }],
  })
  slug(input: { title: string }) {
    const s = input.title
      .normalize("NFKD")
      .replace(/[\u0300-\u036f]/g, "")
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, "-")
      .replace(/^-|-$/g, "");
    if (s === "") throw new ToolError("empty_slug", "the title has no letters or digits");
    return s;
  }
}

await serve(TextTools);
