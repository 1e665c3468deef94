"""Real ONNX detector files for model.onnx_detector tests, built with onnx.helper.

``constant_detector``: the output is a fixed tensor (plus 0 x the input, so the input is
used). ``magenta_detector``: a small convolutional network whose one candidate per 4 x 4
cell scores how much of a box-sized window around it is saturated magenta, so the best
box sits on a magenta rectangle drawn on a photo, wherever it is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CELL = 4  # input pixels per candidate of magenta_detector


def _save(nodes, inputs_hw, output_shape, initializers, path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes, "detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, *inputs_hw])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output_shape))],
        [numpy_helper.from_array(np.asarray(value), name) for name, value in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def constant_detector(path: Path, output: np.ndarray, input_hw: tuple[int, int] = (320, 320)) -> Path:
    """A detector whose output is always ``output`` (float32)."""
    from onnx import helper

    output = np.asarray(output, dtype=np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=1),
        helper.make_node("Reshape", ["mean", "one_shape"], ["mean1"]),
        helper.make_node("Mul", ["mean1", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "constant"], ["output0"]),
    ]
    ones = [1] * output.ndim
    initializers = {"one_shape": np.array(ones, dtype=np.int64), "zero": np.zeros(ones, np.float32),
                    "constant": output}
    return _save(nodes, input_hw, output.shape, initializers, path)


def magenta_detector(path: Path, input_hw: tuple[int, int], box_hw: tuple[int, int],
                     layout: str = "yolov8") -> Path:
    """One class; every candidate has a box of ``box_hw`` input pixels (multiples of 8)
    centred on its cell, scored by the share of magenta (red minus green > 0.8) inside it."""
    from onnx import helper

    rows, cols = input_hw[0] // CELL, input_hw[1] // CELL
    kh, kw = box_hw[0] // CELL, box_hw[1] // CELL
    count = rows * cols
    # Cell (i, j)'s window spans cells i - kh/2 + 1 .. i + kh/2: its centre is (i + 1) * CELL.
    centres_y, centres_x = (np.arange(rows) + 1.0) * CELL, (np.arange(cols) + 1.0) * CELL
    grid_y, grid_x = np.meshgrid(centres_y, centres_x, indexing="ij")
    fields = {
        "cx": grid_x.reshape(1, 1, count), "cy": grid_y.reshape(1, 1, count),
        "w": np.full((1, 1, count), box_hw[1]), "h": np.full((1, 1, count), box_hw[0]),
    }
    initializers = {name: value.astype(np.float32) for name, value in fields.items()}
    initializers["rg"] = np.array([1.0, -1.0, 0.0], np.float32).reshape(1, 3, 1, 1)  # the blob is RGB
    initializers["bias"] = np.array([-0.8], np.float32)
    initializers["gain"] = np.array(5.0, np.float32)
    initializers["flat"] = np.array([1, 1, count], np.int64)
    nodes = [
        helper.make_node("Conv", ["images", "rg", "bias"], ["redness"]),
        helper.make_node("Relu", ["redness"], ["over"]),
        helper.make_node("Mul", ["over", "gain"], ["mask"]),
        helper.make_node("AveragePool", ["mask"], ["cells"], kernel_shape=[CELL, CELL], strides=[CELL, CELL]),
        helper.make_node("AveragePool", ["cells"], ["window"], kernel_shape=[kh, kw],
                         pads=[kh // 2 - 1, kw // 2 - 1, kh // 2, kw // 2], count_include_pad=1),
        helper.make_node("Reshape", ["window", "flat"], ["score"]),
        helper.make_node("Concat", ["cx", "cy", "w", "h", "score"], ["channels"], axis=1),
    ]
    if layout == "yolov8":
        shape = (1, 5, count)
        nodes[-1].output[0] = "output0"
    else:  # [1, N, 6]: box, objectness (the score), one class probability of 1
        initializers["one"] = np.ones((1, 1, count), np.float32)
        nodes[-1] = helper.make_node("Concat", ["cx", "cy", "w", "h", "score", "one"], ["channels"], axis=1)
        nodes.append(helper.make_node("Transpose", ["channels"], ["output0"], perm=[0, 2, 1]))
        shape = (1, count, 6)
    return _save(nodes, input_hw, shape, initializers, path)
