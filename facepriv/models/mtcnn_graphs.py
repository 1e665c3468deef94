"""TensorFlow side of the MTCNN cascade: P-Net, R-Net and O-Net as compiled graphs.

The networks are rebuilt from the mtcnn package's Keras models with their weights folded in
as constants, so each stage is one graph call per frame with no Keras dispatch, and every
graph takes inputs of unknown size, so new frame sizes never retrace. Each graph holds two
independent halves (two P-Net canvases; two halves of the crops when there are enough of
them) that TensorFlow's two inter-op threads run on both cores. The arithmetic is the
Keras layers', reordered where that is exact or changes only float rounding: the input
normalisation and RGB order are folded into each network's first convolution, so the
graphs read the uint8 BGR frame as it is; PReLU is max(x, a*x) with a*x a 1 x 1 depthwise
convolution (2 cheap passes instead of 5), slopes > 1 applied after the max-pool they
commute with; the box and class heads are one product; O-Net's landmark head is skipped.
P-Net's scores stay within 4e-4 of the package's and the final boxes within 0.02 px on the
evaluation photos and frames.

TensorFlow is imported on first use, never when this module is imported.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from facepriv.errors import ConfigError

LOGGER = logging.getLogger("facepriv.model.mtcnn")
Weights = dict[str, list[np.ndarray]]


def tensorflow(intra_op_threads: int = 0, inter_op_threads: int = 0) -> Any:
    """Import TensorFlow quietly and set its thread pools (0 keeps TensorFlow's choice).

    TensorFlow 2.21 writes oneDNN, CUDA-stub and cuInit lines straight to file
    descriptor 2 whatever TF_CPP_MIN_LOG_LEVEL says; a user would take them for errors.
    Thread counts can only change before TensorFlow runs its first operation: later
    requests that differ are logged and ignored rather than failing the node.
    """
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with _native_stderr_silenced():
            import tensorflow as tf

            tf.config.list_physical_devices()  # device probing prints the cuInit line
    tf = sys.modules["tensorflow"]
    threading = tf.config.threading
    for want, get, put, name in (
        (intra_op_threads, threading.get_intra_op_parallelism_threads,
         threading.set_intra_op_parallelism_threads, "tf_intra_op_threads"),
        (inter_op_threads, threading.get_inter_op_parallelism_threads,
         threading.set_inter_op_parallelism_threads, "tf_inter_op_threads"),
    ):
        if want and get() != want:
            try:
                put(want)
            except RuntimeError:
                LOGGER.warning(
                    "%s=%d ignored: TensorFlow was already running with %d (0 = its default); "
                    "thread counts must be set before the first TensorFlow operation",
                    name, want, get(),
                )
    return tf


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class DirectCall:
    """Runs ``concrete`` (a tf.function's one concrete graph) with the least Python work.

    The public call binds and checks every argument against the signature in Python,
    ~0.4 ms per P-Net call with its ten inputs (3 % of a 1280x720 frame). The cascade
    passes tensors of the right types (others are converted), so the graph is run through
    ConcreteFunction's flat entry point; should a TensorFlow release drop or change that
    private method, the public call takes over for good (``fast`` turns False).
    """

    def __init__(self, tf: Any, concrete: Any) -> None:
        self._tf, self._concrete = tf, concrete
        self._flat = getattr(concrete, "_call_flat", None)
        self._captured = getattr(concrete, "captured_inputs", None)
        self.fast = callable(self._flat) and self._captured is not None

    def __call__(self, *args: Any) -> Any:
        tensor = self._tf.Tensor
        tensors = [a if isinstance(a, tensor) else self._tf.convert_to_tensor(a) for a in args]
        if self.fast:
            try:
                return self._flat(tensors, self._captured)  # type: ignore[misc]
            except (TypeError, AttributeError):
                self.fast = False
        return self._concrete(*tensors)


# ---------------------------------------------------------------------- weights
def load_weights(paths: list[Path]) -> list[Weights]:
    """Layer name -> arrays for P-Net, R-Net and O-Net, read through the package's models.

    Going through the package's own Keras classes checks the files' shapes the same way the
    package does; a missing or unreadable file is a ConfigError that names it.
    """
    import joblib
    from mtcnn.network.onet import ONet
    from mtcnn.network.pnet import PNet
    from mtcnn.network.rnet import RNet

    found = []
    for network, path in zip((PNet, RNet, ONet), paths, strict=True):
        model = network()
        model.build()
        try:
            model.set_weights(joblib.load(path))
        except Exception as err:  # noqa: BLE001 - any unreadable or mismatched file
            raise ConfigError(
                f"cannot load MTCNN weights from {path} ({type(err).__name__}: {err}): "
                f"use the {path.name} file shipped with mtcnn 1.0.0"
            ) from err
        found.append({layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in model.layers})
    return found


class _Layers:
    """The networks' building blocks with weights as graph constants."""

    def __init__(self, tf: Any, weights: Weights) -> None:
        self.tf, self.w = tf, weights
        self.flat_shape: tuple[int, ...] | None = None  # set by flatten for the next dense

    def kernel(self, name: str, raw_bgr: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """A convolution's kernel and bias; ``raw_bgr`` folds in the input normalisation.

        The package feeds its first layers (x - 127.5) / 128 in RGB order; both steps are
        linear, so they fold into the kernel and bias and the graphs read raw BGR pixels
        (0-255): two full passes over the frame (or the crops) fewer, and equal to the
        package up to float rounding.
        """
        kernel, bias = (w.astype(np.float64) for w in self.w[name])
        if raw_bgr:
            kernel = kernel[:, :, ::-1, :] / 128
            bias = bias - 127.5 * kernel.sum(axis=(0, 1, 2))
        return kernel.astype(np.float32), bias.astype(np.float32)

    def conv(self, x: Any, name: str, raw_bgr: bool = False) -> Any:
        kernel, bias = self.kernel(name, raw_bgr)
        return self.tf.nn.bias_add(self.tf.nn.conv2d(x, kernel, 1, "VALID"), bias)

    def flatten(self, x: Any) -> Any:
        """Keras's Permute((2, 1, 3)) + Flatten without the transpose: the next dense layer's
        rows are permuted instead (``dense``), once, when the graph is built."""
        self.flat_shape = tuple(x.shape[1:])
        return self.tf.reshape(x, [-1, int(np.prod(self.flat_shape))])

    def dense(self, x: Any, *names: str) -> Any:
        """One product for several dense heads side by side (one pass instead of several)."""
        kernel = np.concatenate([self.w[n][0] for n in names], axis=-1)
        bias = np.concatenate([self.w[n][1] for n in names])
        if self.flat_shape is not None:  # rows in Keras's (x, y, channel) order -> (y, x, channel)
            height, width, channels = self.flat_shape
            kernel = kernel.reshape(width, height, channels, -1).transpose(1, 0, 2, 3)
            kernel = kernel.reshape(height * width * channels, -1)
            self.flat_shape = None
        if kernel.ndim == 4:
            return self.tf.nn.bias_add(self.tf.nn.conv2d(x, kernel, 1, "VALID"), bias)
        return self.tf.nn.bias_add(self.tf.matmul(x, kernel), bias)

    def _scaled(self, x: Any, scale: np.ndarray) -> Any:
        """x times a per-channel scale, as a 1 x 1 depthwise convolution.

        Exact (one product per output) and faster on this CPU than a broadcast multiply
        (up to 1.4x) or a diagonal 1 x 1 convolution (10-20 %), measured on the networks'
        tensor shapes; PReLU once cost more than the convolutions around it.
        """
        if x.shape.rank == 2:
            return x * scale
        kernel = scale.astype(np.float32).reshape(1, 1, -1, 1)
        return self.tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "VALID")

    def prelu(self, x: Any, name: str) -> Any:
        """Keras's PReLU, bit for bit, for slopes a <= 1: max(x, a*x)."""
        alpha = self.w[name][0].reshape(-1)
        assert alpha.max() <= 1.0, f"{name}: slopes > 1 need conv_prelu_pool"
        return self.tf.maximum(x, self._scaled(x, alpha))

    def conv_prelu_pool(
        self, x: Any, conv: str, prelu: str, size: int, padding: str,
        edges: Any = None, raw_bgr: bool = False,
    ) -> Any:
        """Convolution, PReLU, then a stride-2 max-pool, bit for bit.

        max(x, a*x) is PReLU for slopes a <= 1. Channels with a > 1 pass unchanged: their
        PReLU, min(x, a*x), is increasing, so it commutes with the max-pool and runs after
        it, on a 4x smaller tensor. ``edges`` (M x 6, see ``mtcnn_layout._odd_edges``)
        lists pooled cells to recompute as the maximum of two given inputs only.
        """
        tf = self.tf
        alpha = self.w[prelu][0].reshape(-1)
        x = self.conv(x, conv, raw_bgr)
        x = tf.maximum(x, self._scaled(x, np.minimum(alpha, 1.0)))
        pooled = tf.nn.max_pool2d(x, size, 2, padding)
        if edges is not None:  # a few hundred cells: cheaper than masking x before the pool
            pairs = tf.gather_nd(x[0], tf.reshape(edges[:, 2:], [-1, 2, 2]))
            cells = tf.pad(edges[:, :2], [[0, 0], [1, 0]])
            pooled = tf.tensor_scatter_nd_update(pooled, cells, tf.reduce_max(pairs, axis=1))
        if alpha.max() > 1.0:
            pooled = tf.minimum(pooled, self._scaled(pooled, np.maximum(alpha, 1.0)))
        return pooled


# ---------------------------------------------------------------------- P-Net
def pnet_graph(tf: Any, weights: Weights) -> Any:
    """One call per frame: AREA pyramid, levels packed in two canvases, P-Net, threshold.

    Inputs: the uint8 BGR frame; for each canvas (see ``mtcnn_layout``) its levels'
    (height, width), its index map (the flat level pixel each canvas pixel shows; any pixel
    in the gaps), the pooled cells across odd level edges (``mtcnn_layout._odd_edges``) and
    the output cells that belong to a level; and the face logit margin. The two canvases
    share no data, so with inter-op threads they run on two cores at once; the second may
    hold no level. Cells whose window reaches past their level are computed and ignored.
    Returns, per canvas, the cells whose face-minus-background logit beats the margin,
    their face scores and box offsets.
    """
    nn = _Layers(tf, weights)
    spec = tf.TensorSpec
    canvas_spec = [spec([None, 2], tf.int32), spec([None, None], tf.int32),
                   spec([None, 6], tf.int32), spec([None, None], tf.bool)]

    def branch(image: Any, sizes: Any, index: Any, edges: Any, valid: Any, margin: Any,
               first_from: Any = None) -> Any:
        """``first_from``: the uint8 frame to resize this canvas's first level from, so it
        need not wait for the float cast of the frame (bit-identical, measured)."""
        count = tf.shape(sizes)[0]

        def level(i: Any, found: Any) -> tuple[Any, Any]:
            def resize(source: Any) -> Any:
                return tf.image.resize(source, sizes[i], method="area")

            if first_from is None:
                scaled = resize(image)
            else:
                scaled = tf.cond(i > 0, lambda: resize(image), lambda: resize(first_from))
            return i + 1, found.write(i, tf.reshape(scaled, [-1, 3]))

        levels = tf.TensorArray(tf.float32, size=count, infer_shape=False, element_shape=[None, 3])
        _, levels = tf.while_loop(lambda i, _: i < count, level, [0, levels], parallel_iterations=4)
        canvas = tf.gather(levels.concat(), index)[None]

        x = nn.conv_prelu_pool(canvas, "conv1", "prelu1", 2, "SAME", edges, raw_bgr=True)
        x = nn.prelu(nn.conv(x, "conv2"), "prelu2")
        x = nn.prelu(nn.conv(x, "conv3"), "prelu3")
        heads = nn.dense(x, "conv4-1", "conv4-2")[0]  # H x W x (4 offsets, 2 logits)
        cells = tf.where(tf.logical_and(heads[:, :, 5] - heads[:, :, 4] > margin, valid))
        picked = tf.gather_nd(heads, cells)
        return cells, tf.nn.softmax(picked[:, 4:])[:, 1], picked[:, :4]

    def nothing() -> tuple[Any, Any, Any]:
        return tf.zeros([0, 2], tf.int64), tf.zeros([0]), tf.zeros([0, 4])

    @tf.function(autograph=False, input_signature=[
        spec([None, None, 3], tf.uint8), *canvas_spec, *canvas_spec, spec([], tf.float32),
    ])
    def run(frame: Any, *args: Any) -> Any:
        # The pyramid of the raw frame: AREA resizing is linear, so these are the package's
        # levels of the normalised frame up to rounding (conv1 then normalises). The float
        # cast takes ~1 ms on one core; meanwhile the other resizes the largest level (the
        # first canvas's first, see mtcnn_layout._split) from the uint8 frame.
        image, first, second, margin = tf.cast(frame, tf.float32)[None], args[:4], args[4:8], args[8]
        found = branch(image, *first, margin, first_from=frame[None])
        found += tf.cond(
            tf.shape(second[0])[0] > 0, lambda: branch(image, *second, margin), nothing
        )
        return found

    return run


# ---------------------------------------------------------------------- R-Net, O-Net
def rnet_body(nn: _Layers, x: Any) -> Any:
    x = nn.conv_prelu_pool(x, "conv1", "prelu1", 3, "SAME", raw_bgr=True)
    x = nn.conv_prelu_pool(x, "conv2", "prelu2", 3, "VALID")
    x = nn.prelu(nn.conv(x, "conv3"), "prelu3")
    x = nn.prelu(nn.dense(nn.flatten(x), "fc4"), "prelu4")
    return nn.dense(x, "fc5-1", "fc5-2")


def onet_body(nn: _Layers, x: Any) -> Any:
    x = nn.conv_prelu_pool(x, "conv1", "prelu1", 3, "SAME", raw_bgr=True)
    x = nn.conv_prelu_pool(x, "conv2", "prelu2", 3, "VALID")
    x = nn.conv_prelu_pool(x, "conv3", "prelu3", 2, "SAME")
    x = nn.prelu(nn.conv(x, "conv4"), "prelu4")
    x = nn.prelu(nn.dense(nn.flatten(x), "fc5"), "prelu5")
    return nn.dense(x, "fc6-1", "fc6-3")  # box offsets and class logits; landmarks unused


def crops_graph(tf: Any, weights: Weights, body: Any, side: int, split_from: int) -> Any:
    """One call per stage: crop every box at side x side from the uint8 BGR frame, run the net.

    The package crops its normalised frame, where outside the frame reads 0: here that is
    the raw value 127.5, and conv1 normalises (``_Layers.kernel``); bilinear sampling is
    linear, so the crops are the package's up to rounding. Boxes are (y1, x1, y2, x2) over
    (height, width), the package's convention. From ``split_from`` boxes on they go through
    in two halves that share no data, so with inter-op threads the halves run on two cores
    at once. Returns (N x 4 box offsets, N scores).
    """
    nn = _Layers(tf, weights)

    def half(frame: Any, boxes: Any) -> tuple[Any, Any]:
        indices = tf.zeros(tf.shape(boxes)[:1], tf.int32)
        crops = tf.image.crop_and_resize(
            frame[None], boxes, indices, (side, side), extrapolation_value=127.5
        )
        heads = body(nn, crops)
        return heads[:, :4], tf.nn.softmax(heads[:, 4:])[:, 1]

    def halves(frame: Any, boxes: Any) -> tuple[Any, Any]:
        middle = tf.shape(boxes)[0] // 2
        first, second = half(frame, boxes[:middle]), half(frame, boxes[middle:])
        return tf.concat([first[0], second[0]], 0), tf.concat([first[1], second[1]], 0)

    @tf.function(autograph=False, input_signature=[
        tf.TensorSpec([None, None, 3], tf.uint8), tf.TensorSpec([None, 4], tf.float32),
    ])
    def run(frame: Any, boxes: Any) -> tuple[Any, Any]:
        return tf.cond(tf.shape(boxes)[0] >= split_from, lambda: halves(frame, boxes),
                       lambda: half(frame, boxes))

    return run
