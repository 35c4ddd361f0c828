"""Interactive web viewer on viser: orbit a trained run, type prompts, see relevancy live.

Modules, in the order data flows through them:
- `backend`  the viewer's one door into the rest of lerf (load a run, render, query, 3D, save)
- `camera`   viser's browser camera <-> the project's `Cameras` (OpenGL c2w, pinhole pixels)
- `compose`  what the browser shows: RGB or depth with the turbo relevancy overlay
- `panel`    the GUI controls (prompt box, canonical phrases, sliders, buttons) and their state
- `session`  one browser tab: progressive rendering (preview while moving, full when still)
- `server`   the viser server: one session per tab, clean shutdown
"""
