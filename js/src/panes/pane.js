// The interface every pane shares: one canvas strip on the time axis, drawn from the View's frame.
import { h } from "../dom.js";
import { fitCanvas } from "../draw.js";

/**
 * A pane is a class with `mount(parent)`, `resize(width)`, `draw(frame)` and `destroy()`, and
 * optionally `click(point)` (return true when it handled a click on its canvas). `frame` is what
 * View.frame() builds once per redraw: the axis, theme, current maps (raw and √-scaled per pixel
 * column), regions, word spans, labels, the data objects and the selected and playing tokens.
 * This base class owns one canvas of the given DOM class and height in CSS pixels.
 */
export class CanvasPane {
  constructor(view, { name, className, height, title }) {
    this.view = view;
    this.name = name; // also the View's ui[name] (the e2e tests and the PNG export read the canvas there)
    this.height = height;
    this.width = 1;
    this.canvas = h("canvas", { class: className, title });
  }

  mount(parent) { parent.append(this.canvas); }

  resize(width) { this.width = width; }

  /** The canvas sized to width x height CSS pixels (times devicePixelRatio), as a 2D context. */
  context() { return fitCanvas(this.canvas, this.width, this.height); }

  show(visible) { this.canvas.style.display = visible ? "" : "none"; }

  draw(_frame) {}

  destroy() { this.canvas.remove(); }
}
