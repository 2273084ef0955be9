// Waveform pane: word spans, the selected token's attribution area and evidence regions, the samples.
import { CanvasPane } from "./pane.js";

export class WavePane extends CanvasPane {
  constructor(view) { super(view, { name: "wave", className: "lx-wave", height: 90 }); }

  draw(f) {
    if (!f.waveform) return;
    f.waveform.draw(this.context(), f.axis, this.width, this.height, {
      theme: f.theme, spans: f.spans, selectedSpan: f.selectedSpan,
      mapCols: f.cols, regions: f.regions, frameS: f.frameS,
    });
  }
}
