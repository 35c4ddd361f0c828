"""One browser tab: its camera, its panel, and a render thread that draws progressively — a small
preview while the camera moves, the full-resolution frame (with the overlay) once it is still."""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass
from typing import Optional

import numpy as np

from lerf.viewer.backend import Backend, Cameras, Geometry, QueryInUseError, max_relevancy
from lerf.viewer.camera import (c2w_from_viser, image_size, pinhole, pose_key, resize, vertical_fov,
                                viser_from_c2w)
from lerf.viewer.compose import frame_image
from lerf.viewer.panel import Actions, Panel, PanelState, scale_report


@dataclass
class ViewerOptions:
    host: str = "127.0.0.1"
    port: int = 8080  # 0: any free port; a busy port moves on to the next free one
    device: str = "auto"
    chunk: int = 8192  # rays per forward pass
    resolution: int = 0  # full-frame height in pixels; 0 = the run's image height
    preview_resolution: int = 64  # frame height while the camera moves
    still_s: float = 0.2  # the camera counts as still after this long without an update


@dataclass
class Frame:
    """The last full-resolution frame: reused when only the panel changes (no re-render)."""

    key: object
    cameras: Cameras
    geometry: Geometry
    results: list


class Session:
    def __init__(self, client, backend: Backend, opts: ViewerOptions):
        self.client, self.backend, self.opts = client, backend, opts
        self.full_h = opts.resolution or backend.cameras.height
        self.preview_h = min(opts.preview_resolution, self.full_h)
        self.panel = Panel(client.gui, backend.views(), backend.scales_m, backend.canonical_phrases,
                           backend.language_off_reason,
                           Actions(self.changed, self.set_canonical, self.snap, self.show_points, self.save))
        self._version = 0
        self._moved_at = 0.0
        self._snapped: Optional[int] = None
        self._frame: Optional[Frame] = None
        self._points = None
        self._wake, self._stop = threading.Event(), threading.Event()
        client.camera.on_update(self._camera_moved)
        self._thread = threading.Thread(target=self._loop, name=f"lerf-viewer-tab-{client.client_id}", daemon=True)
        self._thread.start()
        self.snap(next(iter(backend.views().values())))  # open on the first held-out view

    # -- events from the browser ----------------------------------------------------------------
    def _camera_moved(self, _camera) -> None:
        self._moved_at = time.monotonic()
        self.changed()

    def changed(self) -> None:
        self._version += 1
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    # -- the render loop ------------------------------------------------------------------------
    def _loop(self) -> None:
        shown: tuple[int, bool] = (-1, False)  # (version, full resolution?) on screen
        while not self._stop.is_set():
            self._wake.wait(timeout=0.05)
            self._wake.clear()
            version = self._version
            if shown == (version, True) or self.client.camera.update_timestamp == 0.0:
                continue
            full = time.monotonic() - self._moved_at >= self.opts.still_s
            if shown == (version, False) and not full:
                continue  # the preview of this camera is up; wait for it to settle
            try:
                self._draw(full)
                shown = (version, full)
            except Exception as err:  # a bad prompt or a render failure: say so, keep serving
                self.panel.set_status(f"error: {err}")
                traceback.print_exc()
                shown = (version, True)

    def _camera(self, height: int) -> tuple[Cameras, object]:
        """The browser's camera at `height` rows; exactly the dataset camera after a snap, until
        the user moves away (so held-out views match their images pixel for pixel)."""
        cam = self.client.camera
        c2w = c2w_from_viser(cam.wxyz, cam.position)
        data = self.backend.cameras
        # Compared on every frame, never cleared: the browser's echo of a snap arrives in pieces.
        if (self._snapped is not None and np.allclose(c2w, data.c2w[self._snapped].numpy(), atol=1e-3)
                and abs(cam.aspect - data.width / data.height) < 0.01):  # else the browser would stretch it
            return resize(data, self._snapped, height), ("view", self._snapped, height)
        w, h = image_size(cam.aspect, height)
        return pinhole(c2w, cam.fov, w, h), pose_key(c2w, cam.fov, w, h)

    def _draw(self, full: bool) -> None:
        t0 = time.perf_counter()
        state = self.panel.state()
        if not full:
            cameras, key = self._camera(self.preview_h)
            geometry = self.backend.render(cameras, key, with_language=False)
            image = frame_image(geometry, state.show, None, state.threshold, state.opacity)
            self.client.scene.set_background_image(image, format="jpeg", jpeg_quality=90)
            self.panel.set_status(f"preview {image.shape[1]}×{image.shape[0]} · {time.perf_counter() - t0:.2f} s")
            return
        frame = self._full_frame(state)
        rel = max_relevancy(frame.results)
        image = frame_image(frame.geometry, state.show, rel, state.threshold, state.opacity)
        self.client.scene.set_background_image(image, format="png")
        self.panel.scales.content = scale_report(frame.results, state.scale_m is None)
        overlay = f" · overlay: {', '.join(state.prompts)}" if frame.results else ""
        self.panel.set_status(f"full {image.shape[1]}×{image.shape[0]} · {time.perf_counter() - t0:.2f} s{overlay}")

    def _full_frame(self, state: PanelState) -> Frame:
        """Geometry is rendered only for a new camera (or when prompts first need the language
        cache); prompts, sliders and canonical phrases reuse it."""
        cameras, key = self._camera(self.full_h)
        prompts = state.prompts if self.backend.engine is not None else []
        old = self._frame
        if old is None or old.key != key or (prompts and old.geometry.language is None):
            geometry = self.backend.render(cameras, key, with_language=bool(prompts))
        else:
            geometry = old.geometry
        results = [self.backend.query(p, cameras, key, state.scale_m) for p in prompts]
        self._frame = Frame(key, cameras, geometry, results)
        return self._frame

    # -- actions ----------------------------------------------------------------------------------
    def snap(self, view: int) -> None:
        """Move the browser camera onto dataset view `view` (pose and vertical field of view)."""
        cams = self.backend.cameras
        wxyz, position = viser_from_c2w(cams.c2w[view].numpy())
        self._snapped = view
        with self.client.atomic():
            self.client.camera.fov = vertical_fov(float(cams.fy_px[view]), cams.height)
            self.client.camera.position = position
            self.client.camera.wxyz = wxyz
        self.changed()

    def set_canonical(self, phrases: list[str]) -> None:
        if not phrases:
            self.panel.set_status("canonical phrases: give at least one (kept the previous ones)")
            return
        self.backend.set_canonical_phrases(phrases)
        self.changed()

    def show_points(self) -> None:
        """Toggle the 3D answer to the first prompt: the points the .ply export writes."""
        if self._points is not None:
            self._points.remove()
            self._points = None
            return
        prompts = self.panel.state().prompts
        if not prompts:
            self.panel.set_status("3D: type a prompt first")
            return
        self.panel.set_status(f"3D: finding '{prompts[0]}' (renders every training depth once)…")
        found = self.backend.relevant_points(prompts[0])
        self._points = self.client.scene.add_point_cloud(
            "/relevant_points", found.points.numpy(), found.colors.numpy(), point_size=0.01)
        self.panel.set_status(f"3D: {found.points.shape[0]} of {found.candidates} relevant points for "
                              f"'{prompts[0]}' seen by enough training views")

    def save(self) -> None:
        frame = self._frame
        if frame is None or not frame.results:
            self.panel.set_status("save: type a prompt first")
            return
        try:
            written = self.backend.save(frame.results, frame.geometry)
        except QueryInUseError as err:
            self.panel.set_status(f"save refused: {err}")
            return
        self.panel.set_status("saved " + ", ".join(str(p) for p in written))
