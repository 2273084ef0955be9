import { test } from "node:test";
import assert from "node:assert/strict";
import { sortRows, flaggedTokens, stepFlag, flagTitle, shownColumns } from "../src/audit.js";

test("sortRows: score descending, missing scores last, ties in transcript order", () => {
  const rows = [
    { token: 0, score: 0.1 }, { token: 1, score: null }, { token: 2, score: 0.9 },
    { token: 3, score: 0.1 }, { token: 4, score: NaN }, { token: 5, score: 0.5 },
  ];
  assert.deepEqual(sortRows(rows).map((r) => r.token), [2, 5, 0, 3, 1, 4]);
  assert.deepEqual(rows.map((r) => r.token), [0, 1, 2, 3, 4, 5], "the input is left as it was");
});

test("flaggedTokens lists flagged rows in transcript order", () => {
  const rows = [{ token: 7, flag: true }, { token: 2, flag: false }, { token: 3, flag: true }];
  assert.deepEqual(flaggedTokens(rows), [3, 7]);
});

test("stepFlag moves to the next / previous flag and wraps around", () => {
  const flags = [3, 7, 12];
  assert.equal(stepFlag(flags, -1, 1), 3); // nothing selected yet: the first flag
  assert.equal(stepFlag(flags, 3, 1), 7);
  assert.equal(stepFlag(flags, 5, 1), 7); // from an unflagged token
  assert.equal(stepFlag(flags, 12, 1), 3); // wraps
  assert.equal(stepFlag(flags, 7, -1), 3);
  assert.equal(stepFlag(flags, 3, -1), 12); // wraps
  assert.equal(stepFlag(flags, 9, -1), 7);
  assert.equal(stepFlag([], 4, 1), -1);
});

test("flagTitle and the columns shown", () => {
  assert.equal(flagTitle({ score: 0.8234, error: "substitution" }), "score 0.82 · substitution");
  assert.equal(flagTitle({ score: null }), "score –");
  const keys = (rows) => shownColumns(rows).map((c) => c.key);
  assert.ok(!keys([{ token: 0, score: 1, error: null }]).includes("error"), "no reference, no error column");
  assert.ok(keys([{ token: 0, score: 1, error: "correct" }]).includes("error"));
});
