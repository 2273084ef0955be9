// anywidget entry: render mounts the recorder bar and the View of the shown take, and unmounts them.
import { View } from "./view.js";
import { mountWithTakes } from "./takes.js";

export default {
  render({ model, el }) {
    return mountWithTakes(model, el, (m, host) => new View(m, host));
  },
};
