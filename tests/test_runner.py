"""The runner: channel check, end-of-stream rule, num_iter and release on every exit."""

from __future__ import annotations

from typing import Any

import pytest

from facepriv.api import build_nodes
from facepriv.config import parse_run_config
from facepriv.errors import ConfigError
from facepriv.nodes.input.visual import Node as VisualInput
from facepriv.runner import Pipeline, check_channel


class Probe:
    """A minimal pipeline node that records what the runner does with it."""

    def __init__(self, name: str, inputs: list[str], outputs: list[str], fail_at: int | None = None,
                 interrupt_at: int | None = None) -> None:
        self.node_name, self.inputs, self.outputs = name, inputs, outputs
        self.failed_items: list[str] = []
        self.calls: list[dict[str, Any]] = []
        self.released: list[bool] = []
        self.fail_at, self.interrupt_at = fail_at, interrupt_at

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(dict(inputs))
        if self.fail_at == len(self.calls):
            raise RuntimeError("boom")
        if self.interrupt_at == len(self.calls):
            raise KeyboardInterrupt
        return {key: len(self.calls) for key in self.outputs if key != "none"}

    def release(self, completed: bool = True) -> None:
        self.released.append(completed)


def test_channel_check_names_node_missing_keys_and_pool():
    with pytest.raises(ConfigError) as err:
        check_channel([
            ("input.visual", ["none"], ["img", "filename", "pipeline_end"]),
            ("draw.mosaic_bbox", ["img", "bboxes"], ["img"]),
        ])
    message = str(err.value)
    assert "'draw.mosaic_bbox' needs bboxes" in message
    assert "img, filename, pipeline_end" in message


def test_channel_check_first_node_takes_no_input():
    with pytest.raises(ConfigError, match="cannot come first"):
        check_channel([("model.mtcnn", ["img"], ["bboxes"])])


def test_channel_check_runs_before_any_node_is_built(sample_video):
    # model.mtcnn would import TensorFlow; the check must fail before that.
    config = parse_run_config(
        {"nodes": [{"input.visual": {"source": str(sample_video)}}, "draw.mosaic_bbox"]}, "t"
    )
    with pytest.raises(ConfigError, match="needs bboxes"):
        build_nodes(config)


def test_all_and_none_pseudo_inputs_pass_the_check():
    check_channel([("a.b", ["none"], ["img"]), ("c.d", ["all"], ["none"])])


def test_end_of_stream_only_pipeline_end_nodes_run_on_last_tick(sample_video):
    source = VisualInput(source=str(sample_video))
    drawer = Probe("draw.x", ["img"], ["img"])
    closer = Probe("output.y", ["img", "pipeline_end"], ["none"])
    summary = Pipeline([source, drawer, closer]).run()
    assert summary.iterations == 517  # every frame of the clip, then the end tick
    assert len(drawer.calls) == 517
    assert len(closer.calls) == 518
    assert closer.calls[-1]["pipeline_end"] is True
    assert drawer.released == [True] and closer.released == [True]


def test_num_iter_stops_early_and_still_completes(sample_video):
    source = VisualInput(source=str(sample_video))
    sink = Probe("output.y", ["img", "pipeline_end"], ["none"])
    summary = Pipeline([source, sink]).run(num_iter=5)
    assert summary.iterations == 5
    assert len(sink.calls) == 5
    assert sink.released == [True]


def test_a_node_ending_the_pipeline_stops_after_its_tick(sample_video):
    source = VisualInput(source=str(sample_video))
    quitter = Probe("output.screen", ["img"], ["pipeline_end"])  # sets pipeline_end=1 (truthy)
    after = Probe("output.z", ["img"], ["none"])
    summary = Pipeline([source, quitter, after]).run()
    assert summary.iterations == 0 and len(after.calls) == 0
    assert after.released == [True]


def test_nodes_are_released_as_incomplete_on_error_and_ctrl_c(sample_video):
    for probe in (Probe("a.b", ["img"], ["none"], fail_at=3),
                  Probe("a.b", ["img"], ["none"], interrupt_at=3)):
        source = VisualInput(source=str(sample_video))
        after = Probe("c.d", ["img"], ["none"])
        with pytest.raises((RuntimeError, KeyboardInterrupt)):
            Pipeline([source, probe, after]).run()
        assert probe.released == [False] and after.released == [False]


def test_failed_items_are_collected_in_the_summary(sample_video):
    source = VisualInput(source=str(sample_video))
    sink = Probe("x.y", ["img"], ["none"])
    sink.failed_items.append("bad.jpg: damaged")
    assert Pipeline([source, sink]).run(num_iter=1).failed_items == ["bad.jpg: damaged"]


class Delay:
    """A node that holds every frame until ``lag`` later ones arrived (or the stream ended)."""

    node_name, inputs, outputs = "dabble.delay", ["all", "pipeline_end"], ["delayed"]

    def __init__(self, lag: int) -> None:
        self.lag, self.waiting, self.end = lag, [], None
        self.failed_items: list[str] = []
        self.released: list[bool] = []

    def run(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        if not inputs:
            return self._next()
        if inputs.get("pipeline_end"):
            if not self.waiting:
                return {}
            self.end = dict(inputs)
            return None
        self.waiting.append(dict(inputs, delayed=True))
        return self._next()

    def pending(self) -> bool:
        return self.end is not None  # after the end, held frames (then the end) go out without input

    def _next(self) -> dict[str, Any] | None:
        if self.waiting and (self.end is not None or len(self.waiting) > self.lag):
            return self.waiting.pop(0)
        if not self.waiting and self.end is not None:
            end, self.end = self.end, None
            return end
        return None

    def release(self, completed: bool = True) -> None:
        self.released.append(completed)


def test_a_node_can_hold_frames_and_hand_them_on_in_order_before_the_end(sample_video):
    source = VisualInput(source=str(sample_video))
    delay = Delay(lag=7)
    sink = Probe("output.y", ["img", "frame_info", "pipeline_end"], ["none"])
    ticks = []
    summary = Pipeline([source, delay, sink]).run(on_tick=lambda: ticks.append(len(sink.calls)))
    assert summary.iterations == 517  # frames out, held ones included
    # on_tick (a supervisor's sign of life) comes on every tick, also while frames are held
    assert ticks[:8] == [0] * 7 + [1] and len(ticks) == 518 + 7 + 1
    frames = sink.calls[:-1]
    assert [call["frame_info"].index for call in frames] == list(range(517))
    assert all(call["img"] is not None for call in frames)
    assert sink.calls[-1]["pipeline_end"] is True and len(sink.calls) == 518
    assert delay.released == [True] and sink.released == [True]


def test_num_iter_counts_frames_handed_on_not_frames_read(sample_video):
    source = VisualInput(source=str(sample_video))
    sink = Probe("output.y", ["img", "frame_info", "pipeline_end"], ["none"])
    summary = Pipeline([source, Delay(lag=3), sink]).run(num_iter=5)
    assert summary.iterations == 5
    assert [call["frame_info"].index for call in sink.calls] == [0, 1, 2, 3, 4]
