// Another take of the same word (minimal pairs: "ship" / "sheep"): its map for the word at the same
// place in its transcript, under this take's lane, or this take's map minus it ("difference"). Both
// takes are drawn from their own start, on this take's time axis. The kernel answers
// {type: "take_map", take, token, key, ...} + float32 map (widget/record.py).
import { drawLane, drawDiffLane } from "../draw.js";
import { pixelMax } from "../mapstore.js";
import { typedArray } from "../codecs.js";
import { onTrait } from "../dom.js";
import { CanvasPane } from "./pane.js";
import { LANE_HEIGHT } from "./lane.js";

export class TakePane extends CanvasPane {
  constructor(view) {
    super(view, { name: "take2", className: "lx-take2", height: LANE_HEIGHT,
      title: "The compared take's map for the same word (aligned at each take's start)" });
    this.data = null; // the last reply
    this.asked = null; // the key of the last request
    const model = view.model;
    const onMsg = (msg, buffers) => {
      if (msg.type !== "take_map" || msg.key !== this.asked) return;
      this.data = { ...msg, map: msg.error ? null : typedArray("float32", buffers[0]).slice() };
      if (view._frame) this.draw(view._frame);
    };
    model.on("msg:custom", onMsg);
    this.offs = [() => model.off("msg:custom", onMsg), onTrait(model, "compare_take", () => view.drawAll())];
  }

  draw(f) {
    const model = this.view.model, other = model.get("compare_take");
    const on = !this.view.standalone && other != null && other >= 0 && other !== model.get("take") && !!f.current;
    this.show(on);
    if (!on) return;
    const token = f.current.token, method = f.current.names[0], params = this.view.params();
    const key = `${other}|${this.view.store.key(token, method, params)}`;
    if (key !== this.asked) {
      this.asked = key;
      model.send({ type: "take_map", take: other, token, method, params, key });
    }
    const ctx = this.context(), d = this.data?.key === key ? this.data : null;
    const name = `take ${other + 1}`;
    if (!d?.map) {
      drawLane(ctx, this.width, this.height, null,
        { theme: f.theme, label: d?.error ? `${name}: ${d.error}` : `${name}: computing…`, color: f.theme.attr2 });
      return;
    }
    const raw2 = pixelMax(d.map, d.start_frame, f.frameS, f.axis);
    const diff = f.diff || model.get("compare_mode") === "diff";
    this.canvas.__drawn = diff ? "diff" : "side"; // what was last drawn (the e2e test reads it)
    const mine = JSON.stringify(this.view.meta.words[this.view.tokenWord[token]]?.text?.trim() ?? "");
    const theirs = JSON.stringify(d.word.trim());
    if (diff) {
      drawDiffLane(ctx, this.width, this.height, f.raw, raw2,
        { theme: f.theme, label: `this take ${mine} − ${name} ${theirs} (each from its start)` });
    } else {
      drawLane(ctx, this.width, this.height, raw2.map(Math.sqrt),
        { theme: f.theme, label: `${name} · ${theirs} · ${d.duration_s.toFixed(2)} s · √ scale`, color: f.theme.attr2 });
    }
  }

  destroy() {
    for (const off of this.offs.splice(0)) off();
    super.destroy();
  }
}
