// anywidget entry: render only mounts and unmounts the View.
import { View } from "./view.js";

export default {
  render({ model, el }) {
    const view = new View(model, el);
    return () => view.destroy();
  },
};
