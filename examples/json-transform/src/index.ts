// json-transform: a pure-computation tool, written with @quilt/tool.
//
// Input: {"items": [{"name": "apple", "category": "fruit", "price": 1.5, "qty": 4}, ...],
//         "sort": "total" | "name" | "price"  (optional, default "total")}
// Result: the items with their line totals, sorted (ties by name),
// per-category aggregates (sorted by total, descending) and the grand
// total. Amounts are rounded to cents.
//
// The shape checks the plain version did by hand are the input schema
// now: the SDK refuses input that breaks it (`invalid_input`, exit 2)
// before `transform` runs. examples/hello shows the low-level protocol
// without the SDK.
import { serve, tool } from "@quilt/tool";

type Item = { name: string; category: string; price: number; qty: number };
type Line = Item & { total: number };
type Input = { items: { name: string; category?: string; price: number; qty?: number }[]; sort?: "total" | "name" | "price" };

const cents = (x: number) => Math.round(x * 100) / 100;

const category = {
  type: "object",
  properties: {
    category: { type: "string" },
    count: { type: "integer" },
    qty: { type: "integer" },
    total: { type: "number" },
  },
  required: ["category", "count", "qty", "total"],
};

const line = {
  type: "object",
  properties: {
    name: { type: "string" },
    category: { type: "string" },
    price: { type: "number" },
    qty: { type: "integer" },
    total: { type: "number" },
  },
  required: ["name", "category", "price", "qty", "total"],
};

export class JsonTransform {
  @tool({
    description:
      "Totals a list of priced items: line totals, per-category aggregates and the grand total, sorted by total, name or price.",
    input: {
      type: "object",
      properties: {
        items: {
          type: "array",
          items: {
            type: "object",
            properties: {
              name: { type: "string" },
              category: { type: "string", description: "default: uncategorized" },
              price: { type: "number" },
              qty: { type: "integer", minimum: 0, description: "default: 1" },
            },
            required: ["name", "price"],
          },
        },
        sort: { enum: ["total", "name", "price"], description: "default: total" },
      },
      required: ["items"],
      additionalProperties: false,
    },
    output: {
      type: "object",
      properties: {
        count: { type: "integer" },
        total: { type: "number" },
        categories: { type: "array", items: category },
        items: { type: "array", items: line },
      },
      required: ["count", "total", "categories", "items"],
    },
    examples: [
      {
        input: { items: [{ name: "pear", category: "fruit", price: 2, qty: 3 }, { name: "soap", price: 3.25 }] },
        result: {
          count: 2,
          total: 9.25,
          categories: [
            { category: "fruit", count: 1, qty: 3, total: 6 },
            { category: "uncategorized", count: 1, qty: 1, total: 3.25 },
          ],
          items: [
            { name: "pear", category: "fruit", price: 2, qty: 3, total: 6 },
            { name: "soap", category: "uncategorized", price: 3.25, qty: 1, total: 3.25 },
          ],
        },
      },
    ],
  })
  transform(input: Input) {
    const sort = input.sort ?? "total";
    const lines: Line[] = input.items.map((it) => {
      const item: Item = { name: it.name, category: it.category ?? "uncategorized", price: it.price, qty: it.qty ?? 1 };
      return { ...item, total: cents(item.price * item.qty) };
    });
    const byName = (a: Line, b: Line) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    lines.sort((a, b) => {
      if (sort === "name") return byName(a, b);
      const d = sort === "price" ? b.price - a.price : b.total - a.total;
      return d !== 0 ? d : byName(a, b);
    });
    const groups = new Map<string, { category: string; count: number; qty: number; total: number }>();
    for (const l of lines) {
      const g = groups.get(l.category) ?? { category: l.category, count: 0, qty: 0, total: 0 };
      g.count += 1;
      g.qty += l.qty;
      g.total = cents(g.total + l.total);
      groups.set(l.category, g);
    }
    const categories = [...groups.values()].sort(
      (a, b) => b.total - a.total || (a.category < b.category ? -1 : 1),
    );
    return {
      count: lines.length,
      total: cents(lines.reduce((s, l) => s + l.total, 0)),
      categories,
      items: lines,
    };
  }
}

await serve(JsonTransform);
