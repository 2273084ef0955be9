// The shown method's map as a lane of bars (hidden while the comparison shows a difference).
import { drawLane } from "../draw.js";
import { CanvasPane } from "./pane.js";

export const LANE_HEIGHT = 34;

export class LanePane extends CanvasPane {
  constructor(view) { super(view, { name: "lane", className: "lx-lane", height: LANE_HEIGHT }); }

  draw(f) {
    drawLane(this.context(), this.width, this.height, f.diff ? null : f.cols,
      { theme: f.theme, label: f.current ? f.label(f.current.names[0]) : "", color: f.theme.attr2 });
    this.show(!f.diff);
  }
}
