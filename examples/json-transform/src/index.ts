// json-transform: a pure-computation Quilt tool.
//
// stdin:  {"items": [{"name": "apple", "category": "fruit", "price": 1.5, "qty": 4}, ...],
//          "sort": "total" | "name" | "price"  (optional, default "total")}
// stdout: one JSON object: the items with their line totals, sorted (ties by
//         name), per-category aggregates (sorted by total, descending) and the
//         grand total. Amounts are rounded to cents.
// exit:   0 on success; 2 with {"ok": false, "error": "..."} on stdout when
//         the input is not JSON or not of the shape above.

type Item = { name: string; category: string; price: number; qty: number };
type Line = Item & { total: number };

class InputError extends Error {}

const cents = (x: number) => Math.round(x * 100) / 100;

function parseItems(input: unknown): { items: Item[]; sort: string } {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new InputError("input must be a JSON object with an \"items\" array");
  }
  const { items, sort = "total" } = input as { items?: unknown; sort?: unknown };
  if (!Array.isArray(items)) throw new InputError("\"items\" must be an array");
  if (sort !== "total" && sort !== "name" && sort !== "price") {
    throw new InputError("\"sort\" must be \"total\", \"name\" or \"price\"");
  }
  return {
    sort,
    items: items.map((it, i) => {
      const o = (typeof it === "object" && it !== null ? it : {}) as Record<string, unknown>;
      const qty = o.qty ?? 1;
      if (typeof o.name !== "string") throw new InputError(`items[${i}].name must be a string`);
      if (typeof o.price !== "number" || !Number.isFinite(o.price)) {
        throw new InputError(`items[${i}].price must be a finite number`);
      }
      if (typeof qty !== "number" || !Number.isInteger(qty) || qty < 0) {
        throw new InputError(`items[${i}].qty must be a non-negative integer`);
      }
      const category = typeof o.category === "string" ? o.category : "uncategorized";
      return { name: o.name, category, price: o.price, qty };
    }),
  };
}

export function transform(input: unknown) {
  const { items, sort } = parseItems(input);
  const lines: Line[] = items.map((it) => ({ ...it, total: cents(it.price * it.qty) }));
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
    ok: true,
    count: lines.length,
    total: cents(lines.reduce((s, l) => s + l.total, 0)),
    categories,
    items: lines,
  };
}

const text = await Bun.stdin.text();
let input: unknown;
try {
  input = JSON.parse(text);
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: `input is not JSON: ${(e as Error).message}` }));
  process.exit(2);
}
try {
  console.log(JSON.stringify(transform(input)));
} catch (e) {
  if (!(e instanceof InputError)) throw e;
  console.log(JSON.stringify({ ok: false, error: e.message }));
  process.exit(2);
}
