// The compare method's lane: its map side by side, or the difference shown − compare (diverging).
import { drawLane, drawDiffLane } from "../draw.js";
import { CanvasPane } from "./pane.js";
import { LANE_HEIGHT } from "./lane.js";

export class ComparePane extends CanvasPane {
  constructor(view) { super(view, { name: "lane2", className: "lx-lane2", height: LANE_HEIGHT }); }

  draw(f) {
    this.show(!!f.cols2);
    if (!f.cols2) return;
    const ctx = this.context(), [a, b] = f.current.names;
    if (f.diff) {
      drawDiffLane(ctx, this.width, this.height, f.raw, f.raw2,
        { theme: f.theme, label: `${f.label(a)} − ${f.methods[b]?.label}` });
    } else {
      drawLane(ctx, this.width, this.height, f.cols2, { theme: f.theme, label: f.label(b), color: f.theme.attr2 });
    }
  }
}
