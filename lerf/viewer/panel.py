"""The control panel of one browser tab: prompt box, canonical phrases, overlay sliders, scale,
view buttons, "3D" and "save". It only holds values and calls back; the session does the work."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from lerf.viewer.backend import QueryResult

SHOW = ("rgb", "depth")


def split_prompts(text: str) -> list[str]:
    """Comma-separated positives: 'red mug, , blue teapot ' -> ['red mug', 'blue teapot']."""
    return [p.strip() for p in text.split(",") if p.strip()]


@dataclass
class PanelState:
    prompts: list[str] = field(default_factory=list)
    show: str = "rgb"
    threshold: float = 0.5  # 0.5: as relevant as the hardest canonical phrase (LERF §3.4)
    opacity: float = 0.7
    scale_m: Optional[float] = None  # None: searched per view (LERF §3.4)


@dataclass
class Actions:
    """What the panel's widgets ask of the session."""

    changed: Callable[[], None]
    canonical: Callable[[list[str]], None]
    snap: Callable[[int], None]
    points: Callable[[], None]
    save: Callable[[], None]


def scale_report(results: list[QueryResult], auto: bool) -> str:
    """One line per positive: '**red mug**: 0.41 m (auto)'."""
    how = "auto" if auto else "manual"
    return "  \n".join(f"**{r.prompt}**: {r.scale_m:.2f} m ({how})" for r in results) or "no prompt"


class Panel:
    def __init__(self, gui, views: dict[str, int], scales_m: list[float], canonical: list[str],
                 language_off: Optional[str], actions: Actions):
        self._views = views
        self.status = gui.add_markdown("starting…")
        self.prompt = gui.add_text("Prompt", "", hint="one or several positives, comma-separated")
        self.canonical = gui.add_text("Canonical", ", ".join(canonical),
                                      hint="negatives of the pairwise softmax (LERF §3.4), comma-separated")
        self.show = gui.add_dropdown("Show", SHOW, initial_value="rgb")
        self.threshold = gui.add_slider("Threshold", 0.0, 1.0, 0.01, PanelState.threshold)
        self.opacity = gui.add_slider("Opacity", 0.0, 1.0, 0.05, PanelState.opacity)
        self.auto_scale = gui.add_checkbox("Automatic scale", True)
        lo, hi = (scales_m[0], scales_m[-1]) if scales_m else (0.0, 2.0)
        step = (hi - lo) / max(len(scales_m) - 1, 1)
        self.scale = gui.add_slider("Scale (m)", lo, hi, step, lo + step * (len(scales_m) // 4), disabled=True)
        self.scales = gui.add_markdown("no prompt")
        self.view = gui.add_dropdown("View", tuple(views), initial_value=next(iter(views)))
        self.snap = gui.add_button("Snap to view")
        self.points = gui.add_button("3D")
        self.save = gui.add_button("Save")
        self.reason = gui.add_markdown(language_off or "", visible=language_off is not None)
        self._wire(actions)
        if language_off is not None:
            for w in (self.prompt, self.canonical, self.threshold, self.opacity, self.auto_scale, self.scale,
                      self.points, self.save):
                w.disabled = True

    def _wire(self, actions: Actions) -> None:
        for w in (self.prompt, self.show, self.threshold, self.opacity, self.scale):
            w.on_update(lambda _: actions.changed())

        @self.auto_scale.on_update
        def _(_) -> None:
            self.scale.disabled = self.auto_scale.value
            actions.changed()

        self.canonical.on_update(lambda _: actions.canonical(split_prompts(self.canonical.value)))
        self.snap.on_click(lambda _: actions.snap(self._views[self.view.value]))
        self.points.on_click(lambda _: actions.points())
        self.save.on_click(lambda _: actions.save())

    def state(self) -> PanelState:
        return PanelState(split_prompts(self.prompt.value), self.show.value, float(self.threshold.value),
                          float(self.opacity.value), None if self.auto_scale.value else float(self.scale.value))

    def set_status(self, text: str) -> None:
        self.status.content = text
