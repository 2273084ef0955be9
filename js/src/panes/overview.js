// Tokens x time overview: one row per token (each scaled to its peak); a click selects the row's token.
import { rowAtY } from "../lookup.js";
import { CanvasPane } from "./pane.js";

export class OverviewPane extends CanvasPane {
  constructor(view) {
    super(view, { name: "overview", className: "lx-overview",
      title: "Tokens x time: click a row to select its token" });
    const n = view.meta.tokens.length;
    this.height = Math.min(Math.max(n * 5, 60), 180);
  }

  draw(f) {
    const ctx = this.context();
    if (f.overview) {
      f.overview.draw(ctx, f.axis, this.width, this.height,
        { theme: f.theme, selected: f.selected, playing: f.playing });
    } else {
      ctx.clearRect(0, 0, this.width, this.height);
    }
  }

  click({ y, target }) {
    if (target !== this.canvas) return false;
    const c = this.canvas;
    this.view.select(rowAtY(y - c.offsetTop, c.clientHeight, this.view.meta.tokens.length));
    return true;
  }
}
