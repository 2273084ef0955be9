// Log-Mel pane: the spectrogram, dimmed where the selected token does not rest, with its map traced.
import { CanvasPane } from "./pane.js";

export class SpectrogramPane extends CanvasPane {
  constructor(view) { super(view, { name: "spec", className: "lx-spec", height: 110 }); }

  draw(f) {
    if (!f.spectrogram) return;
    f.spectrogram.draw(this.context(), f.axis, this.width, this.height, { theme: f.theme, mapCols: f.cols });
  }
}
