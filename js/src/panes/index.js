// The panes of the view, top to bottom. A new pane: a file in this folder exporting a CanvasPane
// subclass (see pane.js), and one line here.
import { WavePane } from "./wave.js";
import { SpectrogramPane } from "./spectrogram.js";
import { LanePane } from "./lane.js";
import { ComparePane } from "./compare.js";
import { OverviewPane } from "./overview.js";
import { PatchingPane } from "./layers.js";
import { ContrastPane } from "./contrast.js";
import { TakePane } from "./takes.js";

export const PANES = [
  WavePane,
  SpectrogramPane,
  LanePane,
  ComparePane,
  ContrastPane,
  PatchingPane,
  TakePane,
  OverviewPane,
];
