// Tokens x time overview: one row per token (each scaled to its peak); a click selects the row's token.
import { rowAtY } from "../lookup.js";
import { CanvasPane } from "./pane.js";

const heightFor = (nTokens) => Math.min(Math.max(nTokens * 5, 60), 180);

export class OverviewPane extends CanvasPane {
  constructor(view) {
    super(view, { name: "overview", className: "lx-overview",
      title: "Tokens x time: click a row to select its token" });
    this.height = heightFor(view.meta.tokens.length);
  }

  draw(f) {
    this.height = heightFor(this.view.meta.tokens.length); // grows while a recording is decoded
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
    const rows = this.view.overview?.nTokens ?? this.view.meta.tokens.length; // the rows drawn
    this.view.select(rowAtY(y - c.offsetTop, c.clientHeight, rows));
    return true;
  }
}
