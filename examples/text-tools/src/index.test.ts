import { expect, test } from "bun:test";
import { call } from "@quilt/tool";
import "./index.ts";

test("count counts and ranks", async () => {
  expect(await call("count", { text: "the cat and the hat\nthe end", top: 2 })).toEqual({
    result: { words: 7, lines: 2, chars: 27, top: [{ word: "the", count: 3 }, { word: "and", count: 1 }] },
  });
});

test("count refuses unknown fields", async () => {
  expect(await call("count", { text: "x", lang: "en" })).toMatchObject({ error: { code: "invalid_input" } });
});

test("slug", async () => {
  expect(await call("slug", { title: "Ça va? Déjà 10 heures!" })).toEqual({ result: "ca-va-deja-10-heures" });
  expect(await call("slug", { title: "!!!" })).toEqual({ error: { code: "empty_slug", message: "the title has no letters or digits" } });
});
