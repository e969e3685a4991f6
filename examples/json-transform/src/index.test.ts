import { expect, test } from "bun:test";
import { call } from "@quilt/tool";
import "./index.ts";

const items = [
  { name: "pear", category: "fruit", price: 2, qty: 3 },
  { name: "apple", category: "fruit", price: 1.5, qty: 4 },
  { name: "soap", category: "home", price: 3.25, qty: 1 },
  { name: "kiwi", price: 0.5 },
];

test("totals, sorts by total with ties by name, aggregates per category", async () => {
  expect(await call("transform", { items })).toEqual({
    result: {
      count: 4,
      total: 15.75,
      categories: [
        { category: "fruit", count: 2, qty: 7, total: 12 },
        { category: "home", count: 1, qty: 1, total: 3.25 },
        { category: "uncategorized", count: 1, qty: 1, total: 0.5 },
      ],
      items: [
        { name: "apple", category: "fruit", price: 1.5, qty: 4, total: 6 },
        { name: "pear", category: "fruit", price: 2, qty: 3, total: 6 },
        { name: "soap", category: "home", price: 3.25, qty: 1, total: 3.25 },
        { name: "kiwi", category: "uncategorized", price: 0.5, qty: 1, total: 0.5 },
      ],
    },
  });
});

test("sorts by name or price", async () => {
  const byName = (await call("transform", { items, sort: "name" })) as { result: { items: { name: string }[] } };
  expect(byName.result.items.map((i) => i.name)).toEqual(["apple", "kiwi", "pear", "soap"]);
  const byPrice = (await call("transform", { items, sort: "price" })) as { result: { items: { name: string }[] } };
  expect(byPrice.result.items.map((i) => i.name)).toEqual(["soap", "pear", "apple", "kiwi"]);
});

test("the schema refuses bad input before the tool runs", async () => {
  for (const [input, where] of [
    [{ items: [{ name: "x", price: "1" }] }, "input/items/0/price"],
    [{ items: [{ name: "x", price: 1, qty: -1 }] }, "input/items/0/qty"],
    [{ items: [], sort: "size" }, "input/sort"],
    [{ items: [], extra: 1 }, "input/extra"],
    [{}, "input"],
  ] as const) {
    const env = (await call("transform", input)) as { error: { code: string; message: string } };
    expect(env.error.code).toBe("invalid_input");
    expect(env.error.message).toContain(where);
  }
});
